//! YubiKeys checked by a validation server: a YK-VAL-style server on 127.0.0.1
//! (tests/fake_ykval.py, Python) signs its answers with HMAC-SHA1 over the sorted
//! parameters. A good OTP is accepted, a replay refused (REPLAYED_OTP), a bad signature
//! refused, a server that hangs gives a clear Reject within the configured timeout, and a
//! second URL takes over from a dead first one. Over RADIUS, logins that wait for a hanging
//! server do not keep the socket unread.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job
mod common;
mod harden;
use common::Env;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const API_KEY: &str = "c2VjcmV0LWtleS1mb3ItdGVzdHM="; // "secret-key-for-tests"
const PUBLIC_ID: &str = "vvccccfhcbbc";

/// The fake validation server, killed by its pid when dropped.
struct Ykval {
    child: Child,
    port: u16,
}

impl Ykval {
    fn start(mode: &str) -> Ykval {
        common::require("python3", "python3");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fake_ykval.py");
        let mut child = Command::new("python3")
            .args([script, API_KEY, mode])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start fake_ykval.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("port line");
        let port = line.trim().parse().expect("fake_ykval.py prints its port");
        Ykval { child, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/wsapi/2.0/verify", self.port)
    }
}

impl Drop for Ykval {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn yubico_settings(urls: &[String], timeout: &str) -> String {
    let list = urls
        .iter()
        .map(|u| format!("\"{u}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "yubico.api_urls = [{list}]\nyubico.client_id = \"42\"\nyubico.api_key = \"{API_KEY}\"\n\
         yubico.timeout = \"{timeout}\"\nlockout.free_failures = 100\nlockout.max_failures = 0\n"
    )
}

fn env_with(urls: &[String], timeout: &str) -> Env {
    let env = Env::new(&yubico_settings(urls, timeout));
    enrol_alice(&env);
    env
}

/// alice: PIN 1234 and a YubiKey checked by the validation server.
fn enrol_alice(env: &Env) {
    env.ok(&["user", "add", "alice", "--pin-stdin"], Some("1234\n"));
    let out = env.ok(
        &[
            "token",
            "add",
            "alice",
            "--type",
            "yubikey-remote",
            "--public-id",
            PUBLIC_ID,
            "--active",
            "--json",
        ],
        None,
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["type"], "yubikey-remote");
    env.ok(&["user", "set", "alice", "--level", "everywhere"], None);
}

/// A fresh OTP-shaped string with the given public id (the server does not decrypt).
fn otp(public_id: &str, n: u8) -> String {
    const MODHEX: &[u8] = b"cbdefghijklnrtuv";
    let tail: String = (0..32u8)
        .map(|i| MODHEX[usize::from(i.wrapping_mul(7).wrapping_add(n) % 16)] as char)
        .collect();
    format!("{public_id}{tail}")
}

fn reason(v: &serde_json::Value) -> String {
    v["reason"].as_str().unwrap_or("").to_string()
}

#[test]
fn good_otp_accepted_replay_and_foreign_key_refused() {
    let server = Ykval::start("ok");
    let env = env_with(&[server.url()], "2s");
    let o = otp(PUBLIC_ID, 1);
    let v = env.check("alice", "vpn", &format!("1234{o}"));
    assert_eq!(v["verdict"], "accept", "{v}");
    let v = env.check("alice", "vpn", &format!("1234{o}"));
    assert_eq!(v["verdict"], "reject", "{v}");
    assert!(reason(&v).contains("REPLAYED_OTP"), "{v}");
    // Another key's OTP, good at the server, is refused here before any request.
    let v = env.check("alice", "vpn", &format!("1234{}", otp("vvccccfhcbbd", 2)));
    assert_eq!(v["verdict"], "reject", "{v}");
    assert!(reason(&v).contains("another YubiKey"), "{v}");
    // Wrong PIN with a fresh OTP: refused.
    let v = env.check("alice", "vpn", &format!("9999{}", otp(PUBLIC_ID, 3)));
    assert_eq!(v["verdict"], "reject", "{v}");
    let v = env.check("alice", "vpn", &format!("1234{}", otp(PUBLIC_ID, 4)));
    assert_eq!(v["verdict"], "accept", "{v}");
    let list = env.ok(&["token", "list", "alice", "--json"], None);
    assert!(
        !list.contains("\"last_used_at\": null"),
        "use recorded: {list}"
    );
}

#[test]
fn server_answer_with_a_bad_signature_is_refused() {
    let server = Ykval::start("badsig");
    let env = env_with(&[server.url()], "2s");
    let v = env.check("alice", "vpn", &format!("1234{}", otp(PUBLIC_ID, 1)));
    assert_eq!(v["verdict"], "reject", "{v}");
    assert!(reason(&v).contains("signature"), "{v}");
}

#[test]
fn replayed_otp_answer_is_refused() {
    let server = Ykval::start("replayed");
    let env = env_with(&[server.url()], "2s");
    let v = env.check("alice", "vpn", &format!("1234{}", otp(PUBLIC_ID, 1)));
    assert_eq!(v["verdict"], "reject", "{v}");
    assert!(reason(&v).contains("REPLAYED_OTP"), "{v}");
}

#[test]
fn hanging_server_gives_a_clear_reject_within_the_timeout() {
    let server = Ykval::start("hang");
    let env = env_with(&[server.url()], "1s");
    let t = Instant::now();
    let v = env.check("alice", "vpn", &format!("1234{}", otp(PUBLIC_ID, 1)));
    let took = t.elapsed();
    assert_eq!(v["verdict"], "reject", "{v}");
    assert!(reason(&v).contains("did not answer within 1s"), "{v}");
    // The CLI process starts, opens the store and exits too: allow for that, not for a hang.
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    let audit = common::audit_of(&env, "alice");
    let last = audit.last().expect("audited");
    assert!(
        last["reason"]
            .as_str()
            .unwrap_or("")
            .contains("did not answer"),
        "{last}"
    );
}

#[test]
fn second_url_takes_over_from_a_dead_one_and_no_server_is_a_clear_reject() {
    let dead = format!(
        "http://127.0.0.1:{}/wsapi/2.0/verify",
        common::free_tcp_port()
    );
    let server = Ykval::start("ok");
    let env = env_with(&[dead.clone(), server.url()], "2s");
    let v = env.check("alice", "vpn", &format!("1234{}", otp(PUBLIC_ID, 1)));
    assert_eq!(v["verdict"], "accept", "{v}");

    let env = env_with(&[dead], "2s");
    let v = env.check("alice", "vpn", &format!("1234{}", otp(PUBLIC_ID, 2)));
    assert_eq!(v["verdict"], "reject", "{v}");
    assert!(reason(&v).contains("cannot be reached"), "{v}");
}

#[test]
fn enrolment_needs_a_configured_server() {
    let env = Env::new("");
    env.ok(&["user", "add", "bob", "--pin-stdin"], Some("1234\n"));
    let out = env.run(
        &[
            "token",
            "add",
            "bob",
            "--type",
            "yubikey-remote",
            "--public-id",
            PUBLIC_ID,
        ],
        None,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("[yubico]"), "{err}");
    // A bad key in [yubico] stops otpd at start, naming the key.
    let cfg = env.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[yubico]\nclient_id = \"42\"\napi_key = \"c2hvcnQ=\"\n",
    )
    .expect("cfg");
    let out = Command::new(common::BIN)
        .args(["--config", cfg.to_str().expect("path"), "config", "check"])
        .output()
        .expect("otpd");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("yubico.api_key") && err.contains("20 bytes"),
        "{err}"
    );
}

/// A daemon with one receiving RADIUS thread (`receive_threads = 1`) and alice's YubiKey
/// checked by a validation server that never answers (5 s timeout).
fn alice_behind_a_hanging_server() -> (Ykval, Env, u16) {
    let server = Ykval::start("hang");
    let (env, port) = harden::radius_env(
        &yubico_settings(&[server.url()], "5s"),
        "",
        "receive_threads = 1",
    );
    enrol_alice(&env);
    (server, env, port)
}

/// One thread receives RADIUS (`receive_threads = 1`), and three logins of alice each wait
/// 5 s for a server that never answers. Each lends its receiving to a parked thread
/// (src/blocking.rs), so bob's HOTP login, sent after them, is answered at once; without
/// that it would wait behind them for the whole timeout.
#[test]
fn logins_waiting_for_a_hanging_server_do_not_hold_up_other_radius_logins() {
    use harden::*;
    let (_server, env, port) = alice_behind_a_hanging_server();
    env.enrol("bob", "5678", "hotp", "everywhere");
    let d = env.start();
    let started = Instant::now();
    let waiting: Vec<(Nas, Request)> = (0..3u8)
        .map(|i| {
            let nas = Nas::bound("127.0.0.1:0", port);
            let req = access_request(
                10 + i,
                b"alice",
                format!("1234{}", otp(PUBLIC_ID, i)).as_bytes(),
                &[],
            );
            nas.send(&req.bytes);
            (nas, req)
        })
        .collect();
    // Let all three reach the validation server.
    std::thread::sleep(Duration::from_millis(300));
    let bob = Nas::bound("127.0.0.1:0", port);
    let req = access_request(
        1,
        b"bob",
        format!("5678{}", common::hotp_code(0)).as_bytes(),
        &[],
    );
    let (answer, took) = bob
        .ask(&req, Duration::from_secs(4))
        .expect("bob is answered while alice's logins wait for the server");
    assert_eq!(answer[0], ACCESS_ACCEPT, "bob's code is good");
    assert!(
        took < Duration::from_millis(2000),
        "bob waited {took:?} behind the hanging logins"
    );
    assert!(
        started.elapsed() < Duration::from_millis(4500),
        "the hanging logins must still be waiting when bob is answered: the test measured nothing"
    );
    for (i, (nas, req)) in waiting.iter().enumerate() {
        let a = nas
            .recv(Duration::from_secs(8))
            .unwrap_or_else(|| panic!("alice's login {i} got no answer"));
        assert!(response_ok(&a, req), "login {i}: a valid answer");
        assert_eq!(a[0], ACCESS_REJECT, "login {i}: the server never answered");
    }
    let log = d.log_text();
    assert!(log.contains("1 receiving at a time"), "{log}");
    assert!(d.stop().success(), "clean exit on SIGTERM");
}

/// The same with the logins in one burst: alice's login, which waits 5 s for a server that
/// never answers, and right behind it in the socket's queue the logins of 15 others,
/// so that the receiving thread takes them together (src/front/radius/waiting.rs). Before it
/// sleeps, alice's thread hands the ones it has not decided to another thread: they are
/// answered at once, not after her timeout. Three bursts, alice's at the head of each.
#[test]
fn a_login_waiting_for_a_hanging_server_does_not_hold_up_the_logins_taken_with_it() {
    use harden::bursts::burst;
    use harden::*;
    let (_server, env, port) = alice_behind_a_hanging_server();
    let others: Vec<String> = (0..15).map(|i| format!("u{i:02}")).collect();
    for u in &others {
        env.enrol(u, "5678", "hotp", "everywhere");
    }
    let _d = env.start();
    let mut id = 0u8;
    for round in 0..3u8 {
        let nas = Nas::bound("127.0.0.1:0", port);
        let mut reqs = Vec::new();
        id = id.wrapping_add(1);
        reqs.push(access_request(
            id,
            b"alice",
            format!("1234{}", otp(PUBLIC_ID, round)).as_bytes(),
            &[],
        ));
        for u in &others {
            id = id.wrapping_add(1);
            let pw = format!("5678{}", common::hotp_code(u64::from(round)));
            reqs.push(access_request(id, u.as_bytes(), pw.as_bytes(), &[]));
        }
        // Alice's answer comes after 5 s; the others' must not wait for it.
        let others_only = &reqs[1..];
        for r in &reqs[..1] {
            nas.send(&r.bytes);
        }
        let started = Instant::now();
        let codes = burst(&nas, others_only);
        let took = started.elapsed();
        assert!(
            codes.iter().all(|c| *c == Some(ACCESS_ACCEPT)),
            "round {round}: {codes:?}"
        );
        assert!(
            took < Duration::from_millis(2000),
            "round {round}: the others waited {took:?} behind alice's hanging login"
        );
        let a = nas
            .answer_to(&reqs[0], Duration::from_secs(8))
            .unwrap_or_else(|| panic!("round {round}: alice got no answer"));
        assert_eq!(
            a[0], ACCESS_REJECT,
            "round {round}: the server never answered"
        );
    }
}

/// The socket decides a login on the tokio worker thread that read it. Eight logins of
/// alice (more than the daemon has worker threads on any machine we run) each wait 5 s for a
/// server that never answers; each moves its worker's other connections to another thread
/// before it sleeps (src/blocking.rs), so bob's login over the socket, sent after them, is
/// answered at once. Without that the workers would all sleep and bob would wait 5 s.
#[test]
fn logins_waiting_for_a_hanging_server_do_not_hold_up_other_socket_logins() {
    let server = Ykval::start("hang");
    let env = env_with(&[server.url()], "5s");
    env.enrol("bob", "5678", "hotp", "everywhere");
    let d = env.start();
    let started = Instant::now();
    let path = env.socket_path();
    let waiting: Vec<_> = (0..8u8)
        .map(|i| {
            let path = path.clone();
            std::thread::spawn(move || {
                let req = serde_json::json!({"op": "check", "user": "alice",
                    "password": format!("1234{}", otp(PUBLIC_ID, i)), "service": "vpn"});
                common::socket_call(&path, &req)
            })
        })
        .collect();
    // Let all eight reach the validation server.
    std::thread::sleep(Duration::from_millis(500));
    let asked = Instant::now();
    let req = serde_json::json!({"op": "check", "user": "bob",
        "password": format!("5678{}", common::hotp_code(0)), "service": "vpn"});
    let answer = common::socket_call(&path, &req);
    let took = asked.elapsed();
    assert_eq!(answer["verdict"], "accept", "bob's code is good: {answer}");
    assert!(
        took < Duration::from_millis(2000),
        "bob waited {took:?} behind the hanging logins"
    );
    assert!(
        started.elapsed() < Duration::from_millis(4500),
        "the hanging logins must still be waiting when bob is answered: the test measured nothing"
    );
    for (i, t) in waiting.into_iter().enumerate() {
        let a = t.join().expect("alice's login thread");
        assert_eq!(
            a["verdict"], "reject",
            "login {i}: the server never answered: {a}"
        );
    }
    assert!(d.stop().success(), "clean exit on SIGTERM");
}
