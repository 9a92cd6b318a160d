//! E-mailed codes end to end: the real daemon sends through a real SMTP server on 127.0.0.1
//! (tests/fake_smtp.py on Python's aiosmtpd), the test reads the code from the received
//! message and completes the login over the Unix socket (challenge + State, and PIN+code in
//! one field) and over PAM (the real pam_otpd.so under pam_wrapper, pamtester answering the
//! conversation). Expired, reused and replaced codes, the hourly limit and relays that are
//! down, hang or refuse are refused with clear audit reasons.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job
mod common;
use common::{audit_of, pam_module_path, pam_wrapper_lib, socket_call, Env, SmtpSink};
use serde_json::{json, Value};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// alice: PIN 1234, level everywhere, an active e-mail token. Returns its serial.
fn alice(env: &Env) -> String {
    env.ok(&["user", "add", "alice", "--pin-stdin"], Some("1234\n"));
    let out = env.ok(
        &[
            "token",
            "add",
            "alice",
            "--type",
            "email",
            "--address",
            "alice@example.org",
            "--active",
            "--json",
        ],
        None,
    );
    let v: Value = serde_json::from_str(&out).expect("token json");
    assert_eq!(v["address"], "a***@example.org", "{v}");
    env.ok(&["user", "set", "alice", "--level", "everywhere"], None);
    v["serial"].as_str().expect("serial").to_string()
}

fn check(env: &Env, password: &str, state: Option<&str>) -> Value {
    let mut req = json!({"op": "check", "user": "alice", "password": password,
                         "service": "vpn", "client": "pam"});
    if let Some(s) = state {
        req["state"] = json!(s);
    }
    socket_call(&env.socket_path(), &req)
}

/// alice's audit once it holds at least `n` records. The daemon queues audit records for its
/// next group commit rather than waiting for them, so one can land just after the answer.
fn settled(env: &Env, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let recs = audit_of(env, "alice");
        if recs.len() >= n || Instant::now() > deadline {
            assert!(
                recs.len() >= n,
                "{} audit records, not {n}: {recs:?}",
                recs.len()
            );
            return recs;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The reason of alice's `n`th audit record (1-based).
fn reason_at(env: &Env, n: usize) -> String {
    settled(env, n)[n - 1]["reason"]
        .as_str()
        .expect("reason")
        .to_string()
}

#[test]
fn socket_challenge_one_field_reuse_and_replacement() {
    let sink = SmtpSink::start("ok");
    let env = Env::new(&sink.config(""));
    let serial = alice(&env);
    let daemon = env.start();

    // The PIN alone: a code goes out, the answer is a Challenge with a State.
    let d = check(&env, "1234", None);
    assert_eq!(d["verdict"], "challenge", "{d}");
    assert_eq!(
        d["message"],
        "A code was sent to a***@example.org; enter it"
    );
    let state = d["state"].as_str().expect("state").to_string();
    let m = sink.wait_for(1);
    assert_eq!(m["to"], json!(["alice@example.org"]), "{m}");
    assert_eq!(m["from"], "otpd@example.org", "{m}");
    assert_eq!(m["subject"], "Login code for alice", "{m}");
    assert!(
        m["body"].as_str().expect("body").contains("valid for 1h"),
        "{m}"
    );
    let code = sink.code(1);
    assert_eq!(code.len(), 8, "{m}");

    // The State and the code alone log in.
    let d = check(&env, &code, Some(&state));
    assert_eq!(d["verdict"], "accept", "{d}");
    let rec = settled(&env, 2);
    let last = &rec[1];
    assert_eq!(last["serial"], serial.as_str());
    assert_eq!(last["reason"], "ok: e-mail code used");

    // Used once: PIN+code in one field is refused now.
    let d = check(&env, &format!("1234{code}"), None);
    assert_eq!(d["verdict"], "reject", "{d}");
    assert!(reason_at(&env, 3).contains("e-mail code already used"));

    // A new code replaces the old one: of two sent, only the second works, typed in one
    // field as a mail client would.
    assert_eq!(check(&env, "1234", None)["verdict"], "challenge");
    let second = sink.code(2);
    assert_eq!(check(&env, "1234", None)["verdict"], "challenge");
    let third = sink.code(3);
    assert_ne!(second, third);
    let d = check(&env, &format!("1234{second}"), None);
    assert_eq!(d["verdict"], "reject", "replaced code: {d}");
    let d = check(&env, &format!("1234{third}"), None);
    assert_eq!(d["verdict"], "accept", "{d}");

    // No code in the audit or the log; the list shows the address masked.
    settled(&env, 7);
    let audit = env.ok(&["audit", "--user", "alice", "--json"], None);
    let log = daemon.log_text();
    for c in [&code, &second, &third] {
        assert!(!audit.contains(c.as_str()), "code in the audit:\n{audit}");
        assert!(!log.contains(c.as_str()), "code in the log:\n{log}");
    }
    let list = env.ok(&["token", "list", "alice"], None);
    assert!(list.contains("email"), "{list}");
    assert!(list.contains("a***@example.org"), "{list}");
    assert!(!list.contains("alice@example.org"), "{list}");
    assert!(daemon.stop().success());
}

#[test]
fn parallel_logins_with_one_code_accept_exactly_once() {
    let sink = SmtpSink::start("ok");
    let env = Env::new(&sink.config(""));
    alice(&env);
    let _daemon = env.start();
    assert_eq!(check(&env, "1234", None)["verdict"], "challenge");
    let password = format!("1234{}", sink.code(1));
    let env = std::sync::Arc::new(env);
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let (env, pw) = (env.clone(), password.clone());
            std::thread::spawn(move || check(&env, &pw, None)["verdict"].clone())
        })
        .collect();
    let verdicts: Vec<Value> = threads
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect();
    let accepts = verdicts.iter().filter(|v| **v == "accept").count();
    assert_eq!(accepts, 1, "{verdicts:?}");
}

#[test]
fn an_expired_code_is_rejected() {
    let sink = SmtpSink::start("ok");
    let env = Env::new(&sink.config("email.validity = \"2s\"\n"));
    alice(&env);
    let _daemon = env.start();
    let d = check(&env, "1234", None);
    assert_eq!(d["verdict"], "challenge", "{d}");
    let code = sink.code(1);
    assert!(sink.wait_for(1)["body"]
        .as_str()
        .expect("body")
        .contains("valid for 2s"));
    std::thread::sleep(Duration::from_millis(3100));
    let d = check(&env, &code, d["state"].as_str());
    assert_eq!(d["verdict"], "reject", "{d}");
    assert_eq!(d["message"], "Login failed");
    let why = reason_at(&env, 2);
    assert!(why.contains("e-mail code expired"), "{why}");
}

#[test]
fn the_sixth_send_within_the_hour_is_refused() {
    let sink = SmtpSink::start("ok");
    let env = Env::new(&sink.config(""));
    alice(&env);
    let _daemon = env.start();
    for i in 1..=5 {
        let d = check(&env, "1234", None);
        assert_eq!(d["verdict"], "challenge", "send {i}: {d}");
    }
    let d = check(&env, "1234", None);
    assert_eq!(d["verdict"], "reject", "{d}");
    assert_eq!(d["message"], "Login failed");
    let why = reason_at(&env, 6);
    assert_eq!(
        why,
        "e-mail code not sent: rate limit, 5 codes within the hour already (email.max_per_hour)"
    );
    sink.wait_for(5);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.messages().len(), 5, "no sixth message");
    // The last code sent still works.
    let d = check(&env, &format!("1234{}", sink.code(5)), None);
    assert_eq!(d["verdict"], "accept", "{d}");
}

#[test]
fn a_relay_that_is_down_hangs_or_refuses_gives_a_clear_reject_in_time() {
    // Nothing listens on the port: over the socket of the real daemon.
    let port = common::free_tcp_port();
    let env = Env::new(&format!(
        "email.host = \"127.0.0.1\"\nemail.port = {port}\nemail.tls = \"none\"\n\
         email.from = \"otpd@example.org\"\nemail.timeout = \"2s\"\n"
    ));
    alice(&env);
    let daemon = env.start();
    let start = Instant::now();
    let d = check(&env, "1234", None);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(d["verdict"], "reject", "{d}");
    assert_eq!(
        d["message"], "Login failed",
        "the user sees nothing of the relay"
    );
    assert_eq!(
        reason_at(&env, 1),
        format!("e-mail code not sent: connection refused by 127.0.0.1:{port}")
    );
    // The PIN was right: not a failure.
    let users = env.ok(&["user", "show", "alice", "--json"], None);
    let u: Value = serde_json::from_str(&users).expect("user json");
    assert_eq!(u["failures"], 0, "{u}");
    drop(daemon);

    // A relay that takes the connection and never answers: Reject within email.timeout.
    let hang = SmtpSink::start("hang");
    let env = Env::new(&hang.config("email.timeout = \"1s\"\n"));
    alice(&env);
    let start = Instant::now();
    let d = env.check("alice", "vpn", "1234");
    let took = start.elapsed();
    assert_eq!(d["verdict"], "reject", "{d}");
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    let why = d["reason"].as_str().expect("reason");
    assert_eq!(
        why,
        format!(
            "e-mail code not sent: the relay 127.0.0.1:{} did not finish within 1s",
            hang.port
        )
    );

    // A relay that says no.
    let refuse = SmtpSink::start("refuse");
    let env = Env::new(&refuse.config(""));
    alice(&env);
    let d = env.check("alice", "vpn", "1234");
    assert_eq!(d["verdict"], "reject", "{d}");
    let why = d["reason"].as_str().expect("reason");
    assert!(
        why.starts_with(&format!(
            "e-mail code not sent: the relay 127.0.0.1:{} refused: permanent error (550)",
            refuse.port
        )),
        "{why}"
    );
}

#[test]
fn without_email_config_the_login_is_refused_and_config_check_says_so() {
    let env = Env::new("");
    alice(&env);
    let d = env.check("alice", "vpn", "1234");
    assert_eq!(d["verdict"], "reject", "{d}");
    assert_eq!(
        d["reason"],
        "e-mail code not sent: [email] is not configured (no email.host)"
    );
    let out = env.ok(&["config", "check"], None);
    assert!(
        out.contains("e-mail:    not configured (no [email] host)"),
        "{out}"
    );
    // A pending token needs a code sent to it: refused, with the way out named.
    let out = env.run(
        &[
            "token",
            "add",
            "alice",
            "--type",
            "email",
            "--address",
            "alice@example.org",
        ],
        None,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("enrol with --active"), "{err}");

    let sink = SmtpSink::start("ok");
    let env = Env::new(&sink.config(""));
    let out = env.ok(&["config", "check"], None);
    assert!(
        out.contains(&format!(
            "e-mail:    configured: relay 127.0.0.1:{} (none)",
            sink.port
        )),
        "{out}"
    );
}

#[test]
fn a_pending_token_is_activated_with_the_code_sent_at_enrolment() {
    let sink = SmtpSink::start("ok");
    let env = Env::new(&sink.config(""));
    env.ok(&["user", "add", "bob", "--pin-stdin"], Some("1234\n"));
    for bad in [
        "bob",
        "bob@@example.org",
        "bob @example.org",
        "Bob <bob@example.org>",
    ] {
        let out = env.run(
            &["token", "add", "bob", "--type", "email", "--address", bad],
            None,
        );
        assert!(!out.status.success(), "{bad} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--address"), "{bad}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let out = env.ok(
        &[
            "token",
            "add",
            "bob",
            "--type",
            "email",
            "--address",
            "bob@example.org",
            "--json",
        ],
        None,
    );
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["state"], "pending", "{v}");
    assert_eq!(v["code_sent_to"], "b***@example.org", "{v}");
    let serial = v["serial"].as_str().expect("serial");
    let first = sink.code(1);
    // A new code replaces the first one.
    let out = env.ok(&["token", "send-code", serial], None);
    assert!(out.contains("b***@example.org"), "{out}");
    let second = sink.code(2);
    let out = env.run(&["token", "activate", serial, &first], None);
    assert!(!out.status.success(), "the replaced code activated");
    env.ok(&["token", "activate", serial, &second], None);
    let show = env.ok(&["token", "show", serial], None);
    assert!(show.contains("state:      active"), "{show}");
    assert!(show.contains("address:    bob@example.org"), "{show}");
}

// --- PAM: the real module, driven by pamtester under pam_wrapper, against the daemon ---

struct Pamtester {
    child: std::process::Child,
}

impl Pamtester {
    /// `pamtester -I rhost=... otpd-email alice authenticate` with the module alone in the
    /// stack; its standard input stays open for the answers.
    fn start(env: &Env) -> Pamtester {
        common::require("pamtester", "pamtester");
        let services = env.path().join("pam.d");
        std::fs::create_dir_all(&services).expect("pam.d");
        std::fs::write(
            services.join("otpd-email"),
            format!(
                "auth required {} socket={} service=vpn timeout=20000\n",
                pam_module_path().display(),
                env.socket_path().display()
            ),
        )
        .expect("service file");
        let child = Command::new("pamtester")
            .args([
                "-I",
                "rhost=192.0.2.7",
                "otpd-email",
                "alice",
                "authenticate",
            ])
            .env("LD_PRELOAD", pam_wrapper_lib())
            .env("PAM_WRAPPER", "1")
            .env("PAM_WRAPPER_SERVICE_DIR", &services)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pamtester");
        Pamtester { child }
    }

    fn answer(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .expect("answer pamtester");
        stdin.flush().expect("flush");
    }

    fn finish(mut self) -> (bool, String) {
        drop(self.child.stdin.take());
        let out = self.child.wait_with_output().expect("pamtester");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}

#[test]
fn pam_conversation_asks_for_the_mailed_code() {
    let sink = SmtpSink::start("ok");
    let env = Env::new(&sink.config(""));
    alice(&env);
    let _daemon = env.start();

    // Two steps: the PIN at the password prompt, then the code at the module's prompt,
    // typed only once the message has arrived.
    let mut p = Pamtester::start(&env);
    p.answer("1234");
    let code = sink.code(1);
    p.answer(&code);
    let (ok, out) = p.finish();
    assert!(ok, "{out}");
    assert!(
        out.contains("pamtester: successfully authenticated"),
        "{out}"
    );
    assert!(
        out.contains("A code was sent to a***@example.org; enter it"),
        "{out}"
    );

    // A wrong code at the prompt fails.
    let mut p = Pamtester::start(&env);
    p.answer("1234");
    sink.wait_for(2);
    p.answer("00000000");
    let (ok, out) = p.finish();
    assert!(!ok, "{out}");
    assert!(out.contains("Authentication failure"), "{out}");

    // One field, as a mail client through Dovecot would: PIN followed by the code that the
    // login before sent.
    let code = sink.code(2);
    let mut p = Pamtester::start(&env);
    p.answer(&format!("1234{code}"));
    let (ok, out) = p.finish();
    assert!(ok, "{out}");
    assert!(!out.contains("A code was sent"), "no second code: {out}");
}

// --- RADIUS: radclient as the NAS, Access-Challenge with State and Reply-Message ---

/// radclient's answer to an Access-Request, waiting up to 15 s (the relay's mail round trip).
fn radclient(port: u16, secret: &str, input: &str) -> (bool, String) {
    common::radclient(port, "auth", secret, input, 15)
}

#[test]
fn radius_access_challenge_carries_the_mail_round_trip() {
    const SECRET: &str = "email-test-radius-secret";
    let sink = SmtpSink::start("ok");
    let port = common::free_udp_port();
    // No challenge_on_pin_only for vpn: the e-mail token alone brings the Access-Challenge.
    let env = Env::with_tables(
        &sink.config(""),
        &format!(
            "[radius]\nlisten = [\"127.0.0.1:{port}\"]\n\n[[radius.clients]]\nname = \"nas\"\n\
             address = \"127.0.0.1\"\nsecret = \"{SECRET}\"\nservice = \"vpn\"\n\
             require_message_authenticator = true\n"
        ),
    );
    alice(&env);
    let _daemon = env.start();
    let pin_only =
        "User-Name = \"alice\", User-Password = \"1234\", Message-Authenticator = 0x00\n";

    let (ok, out) = radclient(port, SECRET, pin_only);
    assert!(!ok && out.contains("Received Access-Challenge"), "{out}");
    assert!(
        out.contains("Reply-Message = \"A code was sent to a***@example.org; enter it\""),
        "{out}"
    );
    let state = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("State = "))
        .unwrap_or_else(|| panic!("no State in {out}"))
        .to_string();
    let code = sink.code(1);
    let answer = |code: &str, state: &str| {
        format!(
            "User-Name = \"alice\", User-Password = \"{code}\", State = {state}, \
             Message-Authenticator = 0x00\n"
        )
    };
    let (ok, out) = radclient(port, SECRET, &answer(&code, &state));
    assert!(ok && out.contains("Received Access-Accept"), "{out}");

    // The code works once: a fresh State with the used code is refused.
    let (_, out) = radclient(port, SECRET, pin_only);
    let state = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("State = "))
        .unwrap_or_else(|| panic!("no State in {out}"))
        .to_string();
    let (ok, out) = radclient(port, SECRET, &answer(&code, &state));
    assert!(!ok && out.contains("Received Access-Reject"), "{out}");
    // The mail that second challenge sent has the code that works.
    let (_, out) = radclient(port, SECRET, pin_only);
    let state = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("State = "))
        .unwrap_or_else(|| panic!("no State in {out}"))
        .to_string();
    let (ok, out) = radclient(port, SECRET, &answer(&sink.code(3), &state));
    assert!(ok && out.contains("Received Access-Accept"), "{out}");
}

#[test]
fn restore_warns_about_old_counters_and_drops_pending_codes() {
    let sink = SmtpSink::start("ok");
    let env = Env::new(&sink.config(""));
    alice(&env);
    // A code is pending when the backup is taken; it must not come back with the restore.
    assert_eq!(env.check("alice", "vpn", "1234")["verdict"], "challenge");
    let code = sink.code(1);
    let backup = env.path().join("backup.db");
    env.ok(&["backup", backup.to_str().expect("path")], None);
    let out = env.ok(&["restore", backup.to_str().expect("path"), "--yes"], None);
    assert!(
        out.contains(
            "warning: local YubiKey counters, mOTP and HOTP counters and backup codes are as \
             old as the backup"
        ),
        "{out}"
    );
    assert!(out.contains("e-mailed codes were dropped"), "{out}");
    let d = env.check("alice", "vpn", &format!("1234{code}"));
    assert_eq!(d["verdict"], "reject", "{d}");
    assert!(
        d["reason"]
            .as_str()
            .expect("reason")
            .contains("no e-mail code was sent"),
        "{d}"
    );
}

/// A test CA and a relay certificate for 127.0.0.1 signed by it, made with the openssl
/// command: (CA certificate, relay certificate, relay key).
fn test_pki(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    common::require("openssl", "openssl");
    let ext = dir.join("relay.ext");
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext file");
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=otpd test CA"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    run(&ca);
    let mut csr = vec!["req", "-subj", "/CN=127.0.0.1"];
    csr.extend(ec);
    csr.extend(["-keyout", "relay.key", "-out", "relay.csr"]);
    run(&csr);
    run(&[
        "x509",
        "-req",
        "-in",
        "relay.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "relay.ext",
        "-out",
        "relay.pem",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("relay.pem"),
        dir.join("relay.key"),
    )
}

#[test]
fn starttls_and_smtps_with_an_internal_ca() {
    let pki = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = test_pki(pki.path());
    for (mode, tls) in [("starttls", "starttls"), ("tls", "tls")] {
        let sink = SmtpSink::start_with(mode, &[&cert, &key]);
        // Trusted through ca_file: the code arrives and logs in.
        let env = Env::new(&sink.config(&format!(
            "email.tls = \"{tls}\"\nemail.ca_file = \"{}\"\nemail.username = \"otpd\"\n\
             email.password = \"relay-secret\"\n",
            ca.display()
        )));
        alice(&env);
        let d = env.check("alice", "vpn", "1234");
        assert_eq!(d["verdict"], "challenge", "{mode}: {d}");
        let d = env.check("alice", "vpn", &format!("1234{}", sink.code(1)));
        assert_eq!(d["verdict"], "accept", "{mode}: {d}");

        // Without the CA the relay's certificate is not trusted: a clear TLS reason.
        let env = Env::new(&sink.config(&format!("email.tls = \"{tls}\"\n")));
        alice(&env);
        let d = env.check("alice", "vpn", "1234");
        assert_eq!(d["verdict"], "reject", "{mode}: {d}");
        let why = d["reason"].as_str().expect("reason");
        assert!(
            why.starts_with(&format!(
                "e-mail code not sent: TLS with 127.0.0.1:{} failed",
                sink.port
            )),
            "{mode}: {why}"
        );
        assert_eq!(sink.messages().len(), 1, "{mode}: nothing sent untrusted");

        // A wrong relay password: the relay's refusal is named.
        let env = Env::new(&sink.config(&format!(
            "email.tls = \"{tls}\"\nemail.ca_file = \"{}\"\nemail.username = \"otpd\"\n\
             email.password = \"wrong\"\n",
            ca.display()
        )));
        alice(&env);
        let d = env.check("alice", "vpn", "1234");
        assert_eq!(d["verdict"], "reject", "{mode}: {d}");
        let why = d["reason"].as_str().expect("reason");
        assert!(
            why.contains("refused: permanent error (535)"),
            "{mode}: {why}"
        );
        assert!(
            !why.contains("wrong"),
            "{mode}: the password is not echoed: {why}"
        );
    }
}
