//! The real `pam_otpd.so` in real libpam (pamtester under pam_wrapper) against the real
//! daemon: every verdict becomes the right PAM code, a stopped or hung daemon gives the
//! configured failure within the timeout, the first-pass options stack with a password module
//! (pam_matrix as the normal password store), and account management denies switched-off
//! services. pam_module/tests/pam_wrapper.rs tests the module against a scripted server; this
//! file is about the two real halves together.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job
mod common;

use common::Env;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SUCCESS_AUTH: &str = "pamtester: successfully authenticated";
const SUCCESS_ACCT: &str = "pamtester: account management done";
const AUTH_ERR: &str = "pamtester: Authentication failure";
const PERM_DENIED: &str = "pamtester: Permission denied";
const AUTHINFO_UNAVAIL: &str =
    "pamtester: Authentication service cannot retrieve authentication info";

/// pam_wrapper picks its runtime dir racily: pamtester runs of this process take turns.
static PAMTESTER: Mutex<()> = Mutex::new(());
const HARNESS_BROKEN: &[&str] = &[
    "Failed to create pam_wrapper config dir",
    "Failed to copy config files",
    "Critical error - immediate abort",
];

const WEBMAIL: &str = "192.0.2.10";
const MAIL_CLIENT: &str = "198.51.100.7";

struct Outcome {
    success: bool,
    output: String,
    elapsed: Duration,
}

struct World {
    env: Env,
    services: PathBuf,
    module: PathBuf,
}

impl World {
    /// Users: alice web-otp, bob web-only, carol app-passwords, eve everywhere; all PIN 1234
    /// with an HOTP token on the test secret. pam_matrix knows every user's normal password
    /// `normal-pw`.
    fn new() -> World {
        common::require("pamtester", "pamtester");
        let env = Env::with_tables(
            "",
            &format!(
                "[services.web]\npam_services = [\"roundcube\"]\nrhosts = [\"{WEBMAIL}/32\"]\n\
                 relogin_cache = true\n"
            ),
        );
        env.enrol("alice", "1234", "hotp", "web-otp");
        env.enrol("bob", "1234", "hotp", "web-only");
        env.enrol("carol", "1234", "hotp", "app-passwords");
        env.enrol("eve", "1234", "hotp", "everywhere");
        let services = env.path().join("pam.d");
        std::fs::create_dir_all(&services).expect("pam.d");
        let mut passdb = String::new();
        for user in ["alice", "bob", "carol", "eve"] {
            for svc in ["imap", "sshd"] {
                passdb.push_str(&format!("{user}:normal-pw:{svc}\n"));
            }
        }
        std::fs::write(env.path().join("passdb"), passdb).expect("passdb");
        World {
            env,
            services,
            module: common::pam_module_path(),
        }
    }

    fn sock(&self) -> String {
        self.env.socket_path().display().to_string()
    }

    /// A service file; `OTPD` stands for the module with `socket=`, `MATRIX` for pam_matrix
    /// with its passdb, `SET_ITEMS` for pam_set_items.
    fn service(&self, name: &str, text: &str) {
        let text = text
            .replace(
                "OTPD",
                &format!("{} socket={}", self.module.display(), self.sock()),
            )
            .replace(
                "MATRIX",
                &format!(
                    "{} passdb={}",
                    common::pam_wrapper_module("pam_matrix.so").display(),
                    self.env.path().join("passdb").display()
                ),
            )
            .replace(
                "SET_ITEMS",
                &common::pam_wrapper_module("pam_set_items.so")
                    .display()
                    .to_string(),
            );
        std::fs::write(self.services.join(name), text).expect("service file");
    }

    /// The stack docs/mail.md recommends for Dovecot.
    fn recommended(&self, name: &str, extra: &str) {
        self.service(
            name,
            &format!(
                "auth [success=done ignore=ignore default=die] OTPD {extra}\n\
                 auth required MATRIX\n\
                 account required OTPD {extra}\n\
                 account required pam_permit.so\n"
            ),
        );
    }

    fn run(&self, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Outcome {
        let _turn = PAMTESTER.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = self.run_once(args, stdin, env);
        for _ in 0..2 {
            if !HARNESS_BROKEN.iter().any(|s| out.output.contains(s)) {
                break;
            }
            eprintln!("pam_wrapper harness trouble, retrying:\n{}", out.output);
            std::thread::sleep(Duration::from_millis(200));
            out = self.run_once(args, stdin, env);
        }
        out
    }

    fn run_once(&self, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Outcome {
        let start = Instant::now();
        let mut child = Command::new("pamtester")
            .args(args)
            .env("LD_PRELOAD", common::pam_wrapper_lib())
            .env("PAM_WRAPPER", "1")
            .env("PAM_WRAPPER_SERVICE_DIR", &self.services)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pamtester");
        if let Some(mut input) = child.stdin.take() {
            let _ = input.write_all(stdin.as_bytes());
        }
        let out = child.wait_with_output().expect("pamtester");
        Outcome {
            success: out.status.success(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            elapsed: start.elapsed(),
        }
    }

    fn auth(&self, service: &str, user: &str, rhost: &str, stdin: &str) -> Outcome {
        self.run(
            &[
                "-I",
                &format!("rhost={rhost}"),
                service,
                user,
                "authenticate",
            ],
            stdin,
            &[],
        )
    }

    fn acct(&self, service: &str, user: &str) -> Outcome {
        self.run(&[service, user, "acct_mgmt"], "", &[])
    }
}

#[track_caller]
fn expect(o: &Outcome, success: bool, text: &str) {
    assert_eq!(o.success, success, "pamtester exit status:\n{}", o.output);
    assert!(
        o.output.contains(text),
        "expected {text:?} in:\n{}",
        o.output
    );
}

fn otp(counter: u64) -> String {
    format!("1234{}\n", common::hotp_code(counter))
}

#[test]
fn every_verdict_becomes_the_right_pam_code() {
    let w = World::new();
    let d = w.env.start();
    w.service("sshd", "auth required OTPD\naccount required OTPD\n");
    // Service names otpd does not map need `service=` (an unknown service is a Reject).
    w.service("imap-alone", "auth required OTPD service=mail\n");
    w.recommended("imap", "");

    // accept → PAM_SUCCESS
    expect(
        &w.auth("sshd", "eve", MAIL_CLIENT, &otp(0)),
        true,
        SUCCESS_AUTH,
    );
    // reject → PAM_AUTH_ERR (the same code again is a replay)
    expect(
        &w.auth("sshd", "eve", MAIL_CLIENT, &otp(0)),
        false,
        AUTH_ERR,
    );
    expect(
        &w.auth("sshd", "eve", MAIL_CLIENT, "1234000000\n"),
        false,
        AUTH_ERR,
    );
    // deny → PAM_AUTH_ERR in auth, with the daemon's message shown
    let o = w.auth("imap", "bob", MAIL_CLIENT, "normal-pw\nnormal-pw\n");
    expect(&o, false, AUTH_ERR);
    assert!(o.output.contains("switched off"), "{}", o.output);
    // defer → PAM_IGNORE: the normal password decides in the recommended stack...
    expect(
        &w.auth("imap", "alice", MAIL_CLIENT, "normal-pw\nnormal-pw\n"),
        true,
        SUCCESS_AUTH,
    );
    expect(
        &w.auth("imap", "alice", MAIL_CLIENT, "normal-pw\nwrong\n"),
        false,
        AUTH_ERR,
    );
    // ...and alone it never logs anybody in.
    expect(
        &w.auth("imap-alone", "alice", MAIL_CLIENT, "normal-pw\n"),
        false,
        PERM_DENIED,
    );
    // An unknown user is deferred (unknown_user = "defer") and meets the password module.
    expect(
        &w.auth("imap", "mallory", MAIL_CLIENT, "x\nx\n"),
        false,
        AUTH_ERR,
    );

    // Account management: deny → PAM_PERM_DENIED (SSH keys skip auth, not this).
    let o = w.acct("sshd", "bob");
    expect(&o, false, PERM_DENIED);
    assert!(o.output.contains("switched off"), "{}", o.output);
    expect(&w.acct("sshd", "eve"), true, SUCCESS_ACCT);
    expect(&w.acct("imap", "alice"), true, SUCCESS_ACCT);
    // ignore (unknown user) → PAM_IGNORE, the next account module decides.
    expect(&w.acct("imap", "mallory"), true, SUCCESS_ACCT);

    let audit = common::audit_settled(&w.env, &["audit", "--json"]);
    assert!(audit.contains("\"client\":\"pam\""), "{audit}");
    assert!(!audit.contains("normal-pw"), "{audit}");
    d.stop();
}

#[test]
fn levels_through_pam_web_address_app_passwords_and_relogin() {
    let w = World::new();
    let out = w.env.ok(
        &[
            "app-password",
            "add",
            "carol",
            "--label",
            "K-9 Mail",
            "--json",
        ],
        None,
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let app_pw = v["password"].as_str().expect("password").to_string();
    let d = w.env.start();
    w.recommended("imap", "");

    // web-otp: the webmail's address needs PIN+OTP, and the same login works again (page
    // views), but the normal password does not.
    let pw = otp(0);
    expect(&w.auth("imap", "alice", WEBMAIL, &pw), true, SUCCESS_AUTH);
    expect(&w.auth("imap", "alice", WEBMAIL, &pw), true, SUCCESS_AUTH);
    expect(
        &w.auth("imap", "alice", WEBMAIL, "normal-pw\nnormal-pw\n"),
        false,
        AUTH_ERR,
    );
    // app-passwords: the normal password is refused for IMAP, the app password works.
    expect(
        &w.auth("imap", "carol", MAIL_CLIENT, "normal-pw\nnormal-pw\n"),
        false,
        AUTH_ERR,
    );
    expect(
        &w.auth("imap", "carol", MAIL_CLIENT, &format!("{app_pw}\n")),
        true,
        SUCCESS_AUTH,
    );
    d.stop();
}

#[test]
fn stopped_or_hung_daemon_gives_the_configured_failure_in_time() {
    let w = World::new();
    w.service(
        "fail",
        "auth required OTPD service=ssh timeout=800\n\
         account required OTPD service=ssh timeout=800\n",
    );
    w.recommended("defer", "service=mail timeout=800 on_unavailable=defer");

    // Never started: no socket.
    let o = w.auth("fail", "eve", MAIL_CLIENT, &otp(0));
    expect(&o, false, AUTHINFO_UNAVAIL);
    assert!(o.output.contains("failing closed"), "{}", o.output);
    expect(&w.acct("fail", "eve"), false, AUTHINFO_UNAVAIL);
    let o = w.auth("defer", "eve", MAIL_CLIENT, "x\nnormal-pw\n");
    expect(&o, true, SUCCESS_AUTH);
    assert!(o.output.contains("deferring"), "{}", o.output);

    // Started and stopped: the socket file is gone with it.
    let d = w.env.start();
    expect(
        &w.auth("fail", "eve", MAIL_CLIENT, &otp(0)),
        true,
        SUCCESS_AUTH,
    );
    d.stop();
    let o = w.auth("fail", "eve", MAIL_CLIENT, &otp(1));
    expect(&o, false, AUTHINFO_UNAVAIL);
    assert!(o.elapsed < Duration::from_millis(800), "{:?}", o.elapsed);

    // Hung: the daemon is stopped with SIGSTOP; the kernel still queues connections, nobody
    // answers. The module gives up after timeout=800 ms.
    let d = w.env.start();
    // SAFETY: signalling our own child by its pid.
    unsafe { libc::kill(d.pid() as i32, libc::SIGSTOP) };
    let o = w.auth("fail", "eve", MAIL_CLIENT, &otp(1));
    expect(&o, false, AUTHINFO_UNAVAIL);
    assert!(o.output.contains("timeout=800 ms"), "{}", o.output);
    assert!(
        o.elapsed >= Duration::from_millis(800) && o.elapsed < Duration::from_millis(2500),
        "{:?}",
        o.elapsed
    );
    let o = w.auth("defer", "eve", MAIL_CLIENT, "x\nnormal-pw\n");
    expect(&o, true, SUCCESS_AUTH);
    assert!(o.elapsed < Duration::from_millis(2500), "{:?}", o.elapsed);
    // SAFETY: as above.
    unsafe { libc::kill(d.pid() as i32, libc::SIGCONT) };
    // Awake again, it answers (the queued requests were given up by their clients).
    expect(
        &w.auth("fail", "eve", MAIL_CLIENT, &otp(2)),
        true,
        SUCCESS_AUTH,
    );
    d.stop();
}

#[test]
fn first_pass_options_stack_with_the_normal_password_module() {
    let w = World::new();
    let d = w.env.start();
    for option in ["use_first_pass", "try_first_pass"] {
        // An earlier module asked for the password (pam_set_items puts $PAM_AUTHTOK there);
        // otpd takes it without asking again, and pam_matrix is the normal password after it.
        w.service(
            "stack",
            &format!(
                "auth required SET_ITEMS\n\
                 auth [success=done ignore=ignore default=die] OTPD service=mail {option} \
                 prompt=Second_prompt:\n\
                 auth required MATRIX\n"
            ),
        );
        // everywhere: accepted from the first password; pam_matrix is never reached, so no
        // input at all is needed.
        let code = otp(if option == "use_first_pass" { 0 } else { 1 });
        let o = w.run(
            &["-I", "rhost=198.51.100.7", "stack", "eve", "authenticate"],
            "",
            &[("PAM_AUTHTOK", code.trim_end())],
        );
        expect(&o, true, SUCCESS_AUTH);
        assert!(
            !o.output.contains("Second prompt"),
            "{option}: {}",
            o.output
        );
        // web-otp from a mail client: otpd defers without prompting; pam_matrix asks and
        // decides on the normal password.
        let o = w.run(
            &["-I", "rhost=198.51.100.7", "stack", "alice", "authenticate"],
            "normal-pw\n",
            &[("PAM_AUTHTOK", "normal-pw")],
        );
        expect(&o, true, SUCCESS_AUTH);
        assert!(
            !o.output.contains("Second prompt"),
            "{option}: {}",
            o.output
        );
        // A wrong PIN+OTP on the first pass ends the stack (default=die).
        let o = w.run(
            &["-I", "rhost=198.51.100.7", "stack", "eve", "authenticate"],
            "normal-pw\n",
            &[("PAM_AUTHTOK", "1234000000")],
        );
        expect(&o, false, AUTH_ERR);
    }
    // try_first_pass without an earlier password prompts (with prompt=) and goes on.
    w.service(
        "ask",
        "auth [success=done ignore=ignore default=die] OTPD service=ssh try_first_pass \
         prompt=PIN_and_code:\n\
         auth required MATRIX\n",
    );
    let o = w.auth("ask", "eve", MAIL_CLIENT, &otp(2));
    expect(&o, true, SUCCESS_AUTH);
    assert!(o.output.contains("PIN and code: "), "{}", o.output);
    // use_first_pass without one fails without asking the daemon.
    w.service("strict", "auth required OTPD service=ssh use_first_pass\n");
    let o = w.auth("strict", "eve", MAIL_CLIENT, &otp(3));
    expect(&o, false, AUTH_ERR);
    assert!(
        o.output.contains("no earlier module set a password"),
        "{}",
        o.output
    );
    d.stop();
}

/// A daemon that stalls longer than the module's timeout (SIGSTOP here; a slow disk does the
/// same) must not spend the code of a login whose caller has given up: the module sends its
/// deadline, the daemon drops the queued request unevaluated once it runs again and says so
/// in the audit, and the user's retry with the same code is accepted.
#[test]
fn a_request_whose_caller_gave_up_is_dropped_and_its_code_stays_unspent() {
    let w = World::new();
    w.service(
        "stall",
        "auth required OTPD service=ssh timeout=800\n\
         account required OTPD service=ssh timeout=800\n",
    );
    let d = w.env.start();
    let code = otp(0);
    // SAFETY: signalling our own child by its pid.
    unsafe { libc::kill(d.pid() as i32, libc::SIGSTOP) };
    let o = w.auth("stall", "eve", MAIL_CLIENT, &code);
    // Longer than the 800 ms budget before the daemon may run again.
    std::thread::sleep(Duration::from_millis(1200));
    // SAFETY: as above.
    unsafe { libc::kill(d.pid() as i32, libc::SIGCONT) };
    expect(&o, false, AUTHINFO_UNAVAIL);

    // The queued request is read and handled once the daemon runs: wait (bounded) for its
    // audit record before the retry, so the retry cannot overtake it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let dropped = loop {
        let audit = common::audit_of(&w.env, "eve");
        if let Some(rec) = audit.iter().find(|r| {
            r["reason"]
                .as_str()
                .is_some_and(|s| s.contains("caller gave up"))
        }) {
            break rec.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no record of the abandoned request within 10 s; audit: {audit:#?}"
        );
        assert!(
            !audit.iter().any(|r| r["verdict"] == "accept"),
            "the abandoned request was evaluated and spent the code: {audit:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        dropped["reason"],
        "caller gave up (deadline passed) before evaluation"
    );
    assert_ne!(dropped["verdict"], "accept");

    // The same code, typed again: still unspent.
    expect(
        &w.auth("stall", "eve", MAIL_CLIENT, &code),
        true,
        SUCCESS_AUTH,
    );
    // And now spent: every code works once.
    expect(&w.auth("stall", "eve", MAIL_CLIENT, &code), false, AUTH_ERR);
    let audit = common::audit_of(&w.env, "eve");
    assert_eq!(
        audit.iter().filter(|r| r["verdict"] == "accept").count(),
        1,
        "{audit:#?}"
    );
    d.stop();
}

/// A PAM service name that no class lists gets the same answer in auth and account, at every
/// level: Reject and Deny ("unknown service"), not Deny in one and the `*` cell in the other.
#[test]
fn an_unmapped_pam_service_is_refused_in_auth_and_account_alike() {
    let w = World::new();
    let d = w.env.start();
    w.service(
        "unmapped-svc",
        "auth required OTPD\naccount required OTPD\n",
    );
    w.env.ok(&["user", "set", "alice", "--level", "off"], None);
    for user in ["alice", "eve"] {
        expect(
            &w.auth("unmapped-svc", user, MAIL_CLIENT, &otp(0)),
            false,
            AUTH_ERR,
        );
        expect(&w.acct("unmapped-svc", user), false, PERM_DENIED);
    }
    let log = d.log_text();
    assert!(
        log.contains("account phase: deny") && log.contains("unknown service `unmapped-svc`"),
        "{log}"
    );
    d.stop();
}
