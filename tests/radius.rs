//! The RADIUS front-end against the real daemon: FreeRADIUS's `radclient` as the NAS, and
//! packets built by this test (after RFC 2865 / 3579, independently of otpd's code) where
//! the test must see the bytes: answers verified here, retransmissions, malformed packets.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job
mod common;
mod harden;

use common::{hotp_code, oathtool, totp_code_now, unix_now, Daemon, Env, SECRET_B32};
use harden::{attr, hmac_md5, random_auth, Nas, Request, SECRET};
use md5::{Digest, Md5};
use std::time::Duration;

/// A daemon with RADIUS on a free port and one client, 127.0.0.1, in class `vpn`.
struct Rig {
    env: Env,
    daemon: Daemon,
    port: u16,
}

fn rig(require_ma: bool, two_step: bool) -> Rig {
    rig_with(require_ma, two_step, "")
}

/// `radius_extra`: more `[radius]` keys.
fn rig_with(require_ma: bool, two_step: bool, radius_extra: &str) -> Rig {
    let port = common::free_udp_port();
    let services = if two_step {
        "[services.vpn]\nchallenge_on_pin_only = true\n"
    } else {
        ""
    };
    let tables = format!(
        "{services}\
         [radius]\n\
         listen = [\"127.0.0.1:{port}\"]\n\
         duplicate_window = \"30s\"\n\
         {radius_extra}\n\
         [[radius.clients]]\n\
         name = \"test-nas\"\n\
         address = \"127.0.0.1\"\n\
         secret = \"{SECRET}\"\n\
         service = \"vpn\"\n\
         require_message_authenticator = {require_ma}\n"
    );
    let env = Env::with_tables("", &tables);
    let daemon = env.start();
    Rig { env, daemon, port }
}

/// radclient's answer (exit status, everything it printed), waiting 2 s for it.
fn radclient(port: u16, command: &str, secret: &str, input: &str) -> (bool, String) {
    common::radclient(port, command, secret, input, 2)
}

/// Alice's PIN 1234 and the TOTP code of now, through radclient with `secret`.
fn alice_now(port: u16, secret: &str, with_ma: bool) -> (bool, String) {
    let password = format!("1234{}", totp_code_now());
    radclient(
        port,
        "auth",
        secret,
        &pap_input("alice", &password, with_ma),
    )
}

fn pap_input(user: &str, password: &str, with_ma: bool) -> String {
    let mut s = format!("User-Name = \"{user}\", User-Password = \"{password}\"");
    if with_ma {
        s.push_str(", Message-Authenticator = 0x00");
    }
    s.push('\n');
    s
}

// ---- packets built by the test ------------------------------------------------------------
// The packet helpers and the NAS socket are tests/harden's; the Message-Authenticator of
// answers is checked here twice, with the `hmac` crate and with HMAC written out.

/// RFC 2104 HMAC over plain MD5, written out here so the test does not trust otpd's code
/// nor a single implementation.
fn hmac_md5_by_hand(key: &[u8], msg: &[u8]) -> [u8; 16] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..16].copy_from_slice(&Md5::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Md5::digest([ipad.as_slice(), msg].concat());
    Md5::digest([opad.as_slice(), inner.as_slice()].concat()).into()
}

/// A request; with `ma`, a correct Message-Authenticator as the first attribute.
fn request(code: u8, id: u8, attrs: &[Vec<u8>], ma: bool) -> Request {
    let auth = random_auth();
    let mut body = Vec::new();
    if ma {
        body.extend(attr(80, &[0; 16]));
    }
    for a in attrs {
        body.extend_from_slice(a);
    }
    let mut p = vec![code, id];
    p.extend_from_slice(&((20 + body.len()) as u16).to_be_bytes());
    p.extend_from_slice(&auth);
    p.extend(body);
    if ma {
        let m = hmac_md5(SECRET.as_bytes(), &p);
        p[22..38].copy_from_slice(&m);
    }
    Request { bytes: p, auth }
}

/// An Access-Request for `user`/`password` with a Message-Authenticator (tests/harden).
fn access_request(id: u8, user: &str, password: &str, more: &[Vec<u8>]) -> Request {
    harden::access_request(id, user.as_bytes(), password.as_bytes(), more)
}

/// Verifies an answer as a careful NAS would (Response Authenticator, Message-Authenticator
/// first and correct, identifier) and returns its attributes.
fn verify_answer(answer: &[u8], req: &Request) -> Vec<(u8, Vec<u8>)> {
    assert!(answer.len() >= 38, "answer too short: {answer:?}");
    let len = u16::from_be_bytes([answer[2], answer[3]]) as usize;
    assert_eq!(len, answer.len(), "length field");
    assert_eq!(answer[1], req.bytes[1], "identifier echoed");
    let mut z = answer.to_vec();
    z[4..20].copy_from_slice(&req.auth);
    let ra = Md5::digest([&z[..], SECRET.as_bytes()].concat());
    assert_eq!(
        &answer[4..20],
        ra.as_slice(),
        "Response Authenticator (RFC 2865 §3)"
    );
    assert_eq!(
        (answer[20], answer[21]),
        (80, 18),
        "Message-Authenticator is the first attribute"
    );
    z[22..38].fill(0);
    let ma = hmac_md5(SECRET.as_bytes(), &z);
    assert_eq!(ma, hmac_md5_by_hand(SECRET.as_bytes(), &z));
    assert_eq!(
        &answer[22..38],
        &ma,
        "Message-Authenticator (RFC 3579 §3.2)"
    );
    let mut attrs = Vec::new();
    let mut i = 20;
    while i < len {
        let l = answer[i + 1] as usize;
        assert!(l >= 2 && i + l <= len, "attribute lengths");
        attrs.push((answer[i], answer[i + 2..i + l].to_vec()));
        i += l;
    }
    attrs
}

fn attr_values(attrs: &[(u8, Vec<u8>)], t: u8) -> Vec<Vec<u8>> {
    attrs
        .iter()
        .filter(|(k, _)| *k == t)
        .map(|(_, v)| v.clone())
        .collect()
}

fn audit_lines(env: &Env, user: &str) -> Vec<serde_json::Value> {
    common::audit_settled(env, &["audit", "--user", user, "--json", "--limit", "0"])
        .lines()
        .map(|l| serde_json::from_str(l).expect("audit json"))
        .collect()
}

/// The audit once at least `n` records are there and a further moment has passed. The daemon
/// queues audit records for its next group commit instead of waiting for them (store/commit.rs),
/// so a record can land a little after the answer; the pause lets an unwanted extra record
/// land too, so a count that is too high still fails.
fn audit_settled(env: &Env, user: &str, n: usize) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while audit_lines(env, user).len() < n && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    audit_lines(env, user)
}

/// A six-digit code that is none of the codes valid around now.
fn wrong_totp_code() -> String {
    let near = oathtool(&[
        "--totp",
        "-b",
        SECRET_B32,
        "-N",
        &format!("@{}", unix_now() - 60),
        "-w",
        "4",
    ]);
    (0..1_000_000u32)
        .map(|n| format!("{:06}", (n * 7919 + 123_457) % 1_000_000))
        .find(|c| !near.lines().any(|l| l.trim() == c))
        .expect("a wrong code")
}

/// The summary line the daemon logs when it stops.
fn stop_summary(rig: Rig) -> String {
    let log = rig.daemon.log.clone();
    let st = rig.daemon.stop();
    assert!(st.success(), "clean exit on SIGTERM: {st:?}");
    let text = log.lock().expect("log").join("\n");
    text.lines()
        .find(|l| l.contains("RADIUS stopped:"))
        .unwrap_or_else(|| panic!("no RADIUS summary in the log:\n{text}"))
        .to_string()
}

// ---- tests ---------------------------------------------------------------------------------

#[test]
fn radclient_pin_totp_accepted_and_wrong_code_rejected() {
    let r = rig(true, false);
    r.env.enrol("alice", "1234", "totp", "everywhere");
    let (ok, out) = alice_now(r.port, SECRET, true);
    assert!(ok && out.contains("Received Access-Accept"), "{out}");
    assert!(out.contains("Message-Authenticator = 0x"), "{out}");

    let (ok, out) = radclient(
        r.port,
        "auth",
        SECRET,
        &pap_input("alice", &format!("1234{}", wrong_totp_code()), true),
    );
    assert!(!ok && out.contains("Received Access-Reject"), "{out}");
    assert!(out.contains("Reply-Message = \"Login failed\""), "{out}");
    let audit = audit_settled(&r.env, "alice", 2);
    assert_eq!(audit.len(), 2, "{audit:?}");
    assert!(audit
        .iter()
        .all(|a| a["client"] == "test-nas" && a["service"] == "vpn"));
}

#[test]
fn wrong_secret_gets_no_answer() {
    let r = rig(true, false);
    r.env.enrol("alice", "1234", "totp", "everywhere");
    let (ok, out) = alice_now(r.port, "not-the-shared-secret", true);
    assert!(!ok && out.contains("No reply"), "{out}");
    assert!(audit_lines(&r.env, "alice").is_empty(), "never validated");
    let summary = stop_summary(r);
    assert!(summary.contains("bad Message-Authenticator 1"), "{summary}");
}

#[test]
fn request_without_message_authenticator_dropped_when_required() {
    let r = rig(true, false);
    r.env.enrol("alice", "1234", "totp", "everywhere");
    let (ok, out) = alice_now(r.port, SECRET, false);
    assert!(!ok && out.contains("No reply"), "{out}");
    assert!(audit_lines(&r.env, "alice").is_empty(), "never validated");
    let summary = stop_summary(r);
    assert!(summary.contains("no Message-Authenticator 1"), "{summary}");
}

#[test]
fn request_without_message_authenticator_answered_when_not_required() {
    let r = rig(false, false);
    r.env.enrol("alice", "1234", "totp", "everywhere");
    let (ok, out) = alice_now(r.port, SECRET, false);
    assert!(ok && out.contains("Received Access-Accept"), "{out}");
    // The answer carries a Message-Authenticator all the same; checked byte by byte.
    let nas = Nas::new(r.port);
    let req = request(
        1,
        5,
        &[
            attr(1, b"alice"),
            attr(2, &[0u8; 16]), // whatever it decodes to, it is a wrong password
        ],
        false,
    );
    let answer = nas.exchange(&req.bytes).expect("an answer");
    assert_eq!(answer[0], 3, "Access-Reject");
    verify_answer(&answer, &req);
    // Present but wrong, it is dropped even from a client that need not send it.
    let mut bad = request(1, 6, &[attr(1, b"alice"), attr(2, &[0u8; 16])], true);
    bad.bytes[25] ^= 0x40;
    assert!(nas.exchange(&bad.bytes).is_none());
}

#[test]
fn answers_are_signed_and_carry_proxy_state() {
    let r = rig(true, false);
    r.env.enrol("bob", "5678", "hotp", "everywhere");
    let nas = Nas::new(r.port);
    let req = access_request(
        17,
        "bob",
        &format!("5678{}", hotp_code(0)),
        &[
            attr(33, b"proxy-one"),
            attr(33, b"proxy-two"),
            attr(31, b"198.51.100.23"),
        ],
    );
    let answer = nas.exchange(&req.bytes).expect("an answer");
    assert_eq!(answer[0], 2, "Access-Accept");
    let attrs = verify_answer(&answer, &req);
    assert_eq!(
        attr_values(&attrs, 33),
        vec![b"proxy-one".to_vec(), b"proxy-two".to_vec()],
        "Proxy-State copied back in order"
    );
    let audit = audit_settled(&r.env, "bob", 1);
    assert_eq!(audit.len(), 1);
    assert_eq!(
        audit[0]["rhost"], "198.51.100.23",
        "Calling-Station-Id is the rhost"
    );

    let req = access_request(18, "bob", "5678000000", &[attr(4, &[192, 0, 2, 9])]);
    let answer = nas.exchange(&req.bytes).expect("an answer");
    assert_eq!(answer[0], 3, "Access-Reject");
    let attrs = verify_answer(&answer, &req);
    assert_eq!(attr_values(&attrs, 18), vec![b"Login failed".to_vec()]);
    let audit = audit_settled(&r.env, "bob", 2);
    let newest = audit.last().expect("audit");
    // Issue 14: the NAS's own address is not where the user is; without Calling-Station-Id
    // the login has no source (it was NAS-IP-Address before, which let guesses through one
    // NAS block every user behind it).
    assert_eq!(newest["rhost"], serde_json::Value::Null, "no user source");
}

#[test]
fn retransmission_gets_identical_answer_and_one_validation() {
    let r = rig(true, false);
    r.env.enrol("bob", "5678", "hotp", "everywhere");
    let nas = Nas::new(r.port);

    // The client retries after the answer "got lost": the very same bytes.
    let req = access_request(42, "bob", &format!("5678{}", hotp_code(0)), &[]);
    let first = nas.exchange(&req.bytes).expect("first answer");
    let again = nas
        .exchange(&req.bytes)
        .expect("answer to the retransmission");
    assert_eq!(first[0], 2, "Access-Accept");
    assert_eq!(first, again, "byte-identical answers");
    verify_answer(&again, &req);
    assert_eq!(audit_settled(&r.env, "bob", 1).len(), 1, "validated once");

    // Copies sent back to back, while the first is still being validated.
    let req = access_request(43, "bob", &format!("5678{}", hotp_code(1)), &[]);
    for _ in 0..3 {
        nas.send(&req.bytes);
    }
    let mut answers = Vec::new();
    while let Some(a) = nas.recv(Duration::from_millis(1500)) {
        answers.push(a);
    }
    assert!(!answers.is_empty(), "at least one answer");
    let late = nas.exchange(&req.bytes).expect("answer from the cache");
    answers.push(late);
    assert!(
        answers.iter().all(|a| *a == answers[0]),
        "identical answers"
    );
    assert_eq!(answers[0][0], 2, "Access-Accept, not 'code already used'");
    assert_eq!(
        audit_settled(&r.env, "bob", 2).len(),
        2,
        "one validation per login"
    );

    // Same identifier, new authenticator: a new request, validated again.
    let req = access_request(43, "bob", &format!("5678{}", hotp_code(1)), &[]);
    let answer = nas.exchange(&req.bytes).expect("answer");
    assert_eq!(answer[0], 3, "a used code is rejected");
    assert_eq!(audit_settled(&r.env, "bob", 3).len(), 3);
    let summary = stop_summary(r);
    assert!(
        !summary.contains("duplicates answered from cache 0,"),
        "{summary}"
    );
}

#[test]
fn two_step_login_with_state() {
    let r = rig(true, true);
    r.env.enrol("carol", "2468", "hotp", "everywhere");

    // radclient as the VPN client: PIN first, then the code with the State it got.
    let (ok, out) = radclient(r.port, "auth", SECRET, &pap_input("carol", "2468", true));
    assert!(!ok && out.contains("Received Access-Challenge"), "{out}");
    assert!(
        out.contains("Reply-Message = \"Enter your one-time code\""),
        "{out}"
    );
    let state = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("State = "))
        .unwrap_or_else(|| panic!("no State in {out}"))
        .to_string();
    let input = format!(
        "User-Name = \"carol\", User-Password = \"{}\", State = {state}, \
         Message-Authenticator = 0x00\n",
        hotp_code(0)
    );
    let (ok, out) = radclient(r.port, "auth", SECRET, &input);
    assert!(ok && out.contains("Received Access-Accept"), "{out}");
    // A State works once.
    let input = format!(
        "User-Name = \"carol\", User-Password = \"{}\", State = {state}, \
         Message-Authenticator = 0x00\n",
        hotp_code(1)
    );
    let (ok, out) = radclient(r.port, "auth", SECRET, &input);
    assert!(!ok && out.contains("Received Access-Reject"), "{out}");

    // The same with packets built here, and the Access-Challenge verified byte by byte.
    let nas = Nas::new(r.port);
    let req = access_request(1, "carol", "2468", &[]);
    let answer = nas.exchange(&req.bytes).expect("challenge");
    assert_eq!(answer[0], 11, "Access-Challenge");
    let attrs = verify_answer(&answer, &req);
    let state = attr_values(&attrs, 24).pop().expect("State");
    assert!(state.len() >= 32, "at least 128 random bits, hex");
    // Another user cannot use carol's State, and showing it spends it.
    r.env.enrol("dave", "2468", "hotp", "everywhere");
    let req = access_request(2, "dave", &hotp_code(1), &[attr(24, &state)]);
    let answer = nas.exchange(&req.bytes).expect("answer");
    assert_eq!(answer[0], 3, "foreign State: Access-Reject");
    let req = access_request(3, "carol", &hotp_code(1), &[attr(24, &state)]);
    let answer = nas.exchange(&req.bytes).expect("answer");
    assert_eq!(answer[0], 3, "spent State: Access-Reject");
    // A fresh round trip works.
    let req = access_request(4, "carol", "2468", &[]);
    let answer = nas.exchange(&req.bytes).expect("challenge");
    let state = attr_values(&verify_answer(&answer, &req), 24)
        .pop()
        .expect("State");
    let req = access_request(5, "carol", &hotp_code(1), &[attr(24, &state)]);
    let answer = nas.exchange(&req.bytes).expect("answer");
    assert_eq!(answer[0], 2, "Access-Accept");
    verify_answer(&answer, &req);
}

#[test]
fn status_server_answered() {
    let r = rig(true, false);
    let (ok, out) = radclient(r.port, "status", SECRET, "Message-Authenticator = 0x00\n");
    assert!(ok && out.contains("Received Access-Accept"), "{out}");
    let nas = Nas::new(r.port);
    let req = request(12, 99, &[attr(33, b"ps")], true);
    let answer = nas.exchange(&req.bytes).expect("status answer");
    assert_eq!(answer[0], 2, "Access-Accept");
    let attrs = verify_answer(&answer, &req);
    assert_eq!(attr_values(&attrs, 33), vec![b"ps".to_vec()]);
    // RFC 5997: without Message-Authenticator it is dropped.
    let req = request(12, 100, &[], false);
    assert!(nas.exchange(&req.bytes).is_none());
}

#[test]
fn chap_gets_pap_required() {
    let r = rig(true, false);
    r.env.enrol("alice", "1234", "totp", "everywhere");
    let (ok, out) = radclient(
        r.port,
        "auth",
        SECRET,
        "User-Name = \"alice\", CHAP-Password = \"1234123456\", Message-Authenticator = 0x00\n",
    );
    assert!(!ok && out.contains("Received Access-Reject"), "{out}");
    assert!(out.contains("Reply-Message = \"PAP required\""), "{out}");
    let log = r.daemon.log_text();
    assert!(log.contains("CHAP login; otpd needs PAP"), "{log}");
}

#[test]
fn malformed_packets_dropped_and_daemon_keeps_answering() {
    let r = rig(true, false);
    r.env.enrol("bob", "5678", "hotp", "everywhere");
    let nas = Nas::new(r.port);
    let good = access_request(7, "bob", &format!("5678{}", hotp_code(0)), &[]);
    let n = good.bytes.len();

    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    cases.push(("shorter than a header", good.bytes[..12].to_vec()));
    cases.push((
        "truncated (length field says more)",
        good.bytes[..n - 3].to_vec(),
    ));
    let mut b = good.bytes.clone();
    b[2..4].copy_from_slice(&19u16.to_be_bytes());
    cases.push(("length field below 20", b));
    let mut b = good.bytes.clone();
    b[2..4].copy_from_slice(&5000u16.to_be_bytes());
    cases.push(("length field above 4096", b));
    let mut b = good.bytes.clone();
    b[39] = 250; // User-Name's length overflows the packet
    cases.push(("attribute length overflow", b));
    let mut b = good.bytes.clone();
    b[39] = 0;
    cases.push(("attribute length zero", b));
    let mut b = good.bytes.clone();
    b[39] = 1;
    cases.push(("attribute length one", b));
    let mut b = good.bytes.clone();
    b.push(1); // a lone attribute type byte inside the length
    let len = b.len() as u16;
    b[2..4].copy_from_slice(&len.to_be_bytes());
    cases.push(("attribute header cut", b));
    let mut big = good.bytes.clone();
    big.resize(5000, 0);
    cases.push(("datagram of 5000 bytes", big));
    let mut big = vec![1u8, 8, 0x10, 0x01];
    big.extend_from_slice(&[0u8; 16]);
    while big.len() < 4097 {
        big.extend(attr(26, &[0u8; 200]));
    }
    cases.push(("4097+ bytes with a matching length field", big));
    let mut b = good.bytes.clone();
    b[0] = 99;
    cases.push(("unknown code", b));
    let mut b = good.bytes.clone();
    b[0] = 4;
    cases.push(("Accounting-Request", b));
    let mut b = good.bytes.clone();
    b[0] = 2;
    cases.push(("an Access-Accept sent to the server", b));
    cases.push(("empty datagram", Vec::new()));

    for (what, bytes) in &cases {
        nas.send(bytes);
        assert!(
            nas.recv(Duration::from_millis(300)).is_none(),
            "{what}: must get no answer"
        );
    }
    let answer = nas
        .exchange(&good.bytes)
        .expect("valid request still answered");
    assert_eq!(answer[0], 2, "Access-Accept");
    verify_answer(&answer, &good);
    let (ok, out) = radclient(r.port, "status", SECRET, "Message-Authenticator = 0x00\n");
    assert!(ok, "{out}");
    assert_eq!(audit_settled(&r.env, "bob", 1).len(), 1);
    let summary = stop_summary(r);
    // 10 malformed, 3 with a code that is not a request to this server.
    assert!(summary.contains("malformed 11"), "{summary}");
    assert!(summary.contains("unknown code 3"), "{summary}");
}

#[test]
fn unknown_source_is_dropped_and_logged() {
    let r = rig(true, false);
    // 127.0.0.2 is loopback too, but no configured client.
    let stranger = Nas::bound("127.0.0.2:0", r.port);
    let req = request(12, 1, &[], true);
    assert!(stranger.exchange(&req.bytes).is_none());
    let log = r.daemon.log_text();
    assert!(log.contains("which is not a configured client"), "{log}");
    let summary = stop_summary(r);
    assert!(summary.contains("unknown source 1"), "{summary}");
}

#[test]
fn excess_requests_are_dropped_and_counted() {
    let r = rig_with(true, false, "max_in_flight = 1");
    r.env.enrol("bob", "5678", "hotp", "everywhere");
    let nas = Nas::new(r.port);
    // Two hundred different logins at once: with one validation allowed in flight, most of them
    // find no room and get no answer (a NAS retries those). An unknown user, so that no
    // failure count throttles bob afterwards.
    let reqs: Vec<Request> = (0..200u8)
        .map(|i| access_request(i, "nobody", "5678000000", &[]))
        .collect();
    for req in &reqs {
        nas.send(&req.bytes);
    }
    let mut answered = 0;
    while let Some(a) = nas.recv(Duration::from_millis(1500)) {
        let req = reqs.iter().find(|q| q.bytes[1] == a[1]).expect("known id");
        verify_answer(&a, req);
        answered += 1;
    }
    assert!((1..200).contains(&answered), "answered {answered} of 200");
    // Afterwards there is room again.
    let req = access_request(250, "bob", &format!("5678{}", hotp_code(0)), &[]);
    let answer = nas.exchange(&req.bytes).expect("answer after the burst");
    assert_eq!(answer[0], 2, "Access-Accept");
    let summary = stop_summary(r);
    let dropped = 200 - answered;
    assert!(
        summary.contains(&format!("dropped for load {dropped},")),
        "{dropped} dropped: {summary}"
    );
}

#[test]
fn reload_brings_a_new_client_secret_into_force() {
    let r = rig(true, false);
    let status =
        |secret: &str| radclient(r.port, "status", secret, "Message-Authenticator = 0x00\n");
    let (ok, out) = status(SECRET);
    assert!(ok && out.contains("Received Access-Accept"), "{out}");
    let text = std::fs::read_to_string(&r.env.config).expect("config");
    let new_secret = "a-brand-new-shared-secret";
    std::fs::write(&r.env.config, text.replace(SECRET, new_secret)).expect("write");
    // SAFETY: signalling our own child by its pid.
    unsafe {
        libc::kill(r.daemon.pid() as i32, libc::SIGHUP);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !r.daemon.log_text().contains("configuration reloaded") {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            r.daemon.log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (ok, out) = status(SECRET);
    assert!(!ok, "the old secret no longer works: {out}");
    let (ok, out) = status(new_secret);
    assert!(ok && out.contains("Received Access-Accept"), "{out}");
}

#[test]
fn radclient_over_ipv6_loopback() {
    // A NAS on an IPv6 network: the daemon listens on [::1] and knows the client by its IPv6
    // address; radclient speaks to it over IPv6 (-6).
    let port = common::free_udp_port();
    let tables = format!(
        "[radius]\n\
         listen = [\"[::1]:{port}\"]\n\
         [[radius.clients]]\n\
         name = \"nas6\"\n\
         address = \"::1\"\n\
         secret = \"{SECRET}\"\n\
         service = \"vpn\"\n"
    );
    let env = Env::with_tables("", &tables);
    let _daemon = env.start();
    env.enrol("alice", "1234", "hotp", "everywhere");
    let ask = |password: String| {
        let server = format!("[::1]:{port}");
        let input = pap_input("alice", &password, true);
        common::radclient_to(&server, &["-6"], "auth", SECRET, &input, 2).1
    };
    let out = ask(format!("1234{}", hotp_code(0)));
    assert!(out.contains("Received Access-Accept"), "{out}");
    let out = ask(format!("1234{}", hotp_code(0)));
    assert!(
        out.contains("Received Access-Reject"),
        "code used once: {out}"
    );
    let audit = audit_settled(&env, "alice", 2);
    assert!(
        audit.iter().all(|a| a["client"] == "nas6"),
        "both from the IPv6 client: {audit:?}"
    );
}

#[test]
fn sixteen_parallel_requests_with_one_code_get_one_accept() {
    // Sixteen different Access-Requests carrying the same PIN + code at once (a NAS that
    // retries with new packets, or an attacker racing the user): their counter advances meet
    // in the store, and only the one that wins there may be answered Access-Accept, however
    // the answers leave (the store's writer sends those that waited for their commit).
    let r = rig(true, false);
    r.env.enrol("dave", "1357", "hotp", "everywhere");
    let nas = Nas::new(r.port);
    let password = format!("1357{}", hotp_code(0));
    let reqs: Vec<Request> = (0..16u8)
        .map(|i| access_request(100 + i, "dave", &password, &[]))
        .collect();
    for req in &reqs {
        nas.send(&req.bytes);
    }
    let mut verdicts = Vec::new();
    while let Some(a) = nas.recv(Duration::from_millis(2000)) {
        let req = reqs.iter().find(|q| q.bytes[1] == a[1]).expect("known id");
        verify_answer(&a, req);
        verdicts.push(a[0]);
    }
    assert_eq!(verdicts.len(), 16, "every request answered: {verdicts:?}");
    assert_eq!(
        verdicts.iter().filter(|&&v| v == 2).count(),
        1,
        "one Access-Accept: {verdicts:?}"
    );
    assert_eq!(
        verdicts.iter().filter(|&&v| v == 3).count(),
        15,
        "fifteen Access-Rejects: {verdicts:?}"
    );
    let audit = audit_settled(&r.env, "dave", 16);
    assert_eq!(audit.len(), 16, "{audit:?}");
    assert_eq!(
        audit.iter().filter(|a| a["verdict"] == "accept").count(),
        1,
        "the audit says what the NAS heard: {audit:?}"
    );
}
