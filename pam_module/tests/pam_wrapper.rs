//! The built `libpam_otpd.so` driven by real libpam through pamtester, with pam_wrapper
//! pointing libpam at service files in a temp dir. The daemon is a scripted Unix-socket
//! server in this process that records every request line.
//!
//! Needs the Debian packages pamtester and libpam-wrapper; a missing one fails the test
//! with the package name, because a skipped PAM test looks exactly like a passing one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

static PAMTESTER: Mutex<()> = Mutex::new(());

/// Output that means pam_wrapper's private config dir was clobbered, not a module result.
const HARNESS_BROKEN: &[&str] = &[
    "Failed to create pam_wrapper config dir",
    "Failed to copy config files",
    "illegal module type",
    "pam_parse:",
    "Critical error - immediate abort",
];
use std::thread;
use std::time::{Duration, Instant};

const PAM_MATRIX: &str = "/usr/lib/x86_64-linux-gnu/pam_wrapper/pam_matrix.so";
const PAM_SET_ITEMS: &str = "/usr/lib/x86_64-linux-gnu/pam_wrapper/pam_set_items.so";

// pam_strerror texts of Linux-PAM, which pamtester prints after "pamtester: ".
const SUCCESS_AUTH: &str = "pamtester: successfully authenticated";
const SUCCESS_ACCT: &str = "pamtester: account management done";
const AUTH_ERR: &str = "pamtester: Authentication failure";
const PERM_DENIED: &str = "pamtester: Permission denied";
const AUTHINFO_UNAVAIL: &str =
    "pamtester: Authentication service cannot retrieve authentication info";

fn module_path() -> PathBuf {
    // The test binary lives in <target>/<profile>/deps/. `cargo test` rebuilds the cdylib of
    // this package right there, but only `cargo build` copies it up to <profile>/, so the
    // copy one level up may be stale: deps/ comes first.
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(deps) = exe.parent() {
            candidates.push(deps.join("libpam_otpd.so"));
            if let Some(profile_dir) = deps.parent() {
                candidates.push(profile_dir.join("libpam_otpd.so"));
            }
        }
    }
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        candidates.push(Path::new(&dir).join("debug/deps/libpam_otpd.so"));
        candidates.push(Path::new(&dir).join("debug/libpam_otpd.so"));
    }
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| panic!("libpam_otpd.so not found in {candidates:?}"))
}

fn pam_wrapper_lib() -> PathBuf {
    let listed = Command::new("dpkg")
        .args(["-L", "libpam-wrapper"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    listed
        .lines()
        .map(PathBuf::from)
        .chain([PathBuf::from("/usr/lib/x86_64-linux-gnu/libpam_wrapper.so")])
        .find(|p| p.file_name().is_some_and(|n| n == "libpam_wrapper.so") && p.is_file())
        .unwrap_or_else(|| {
            panic!("libpam_wrapper.so not found: install the Debian package libpam-wrapper")
        })
}

fn pamtester_bin() -> PathBuf {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join("pamtester"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("pamtester not found: install the Debian package pamtester"))
}

fn pam_set_items() -> &'static str {
    assert!(
        Path::new(PAM_SET_ITEMS).is_file(),
        "{PAM_SET_ITEMS} not found: install the Debian package libpam-wrapper"
    );
    PAM_SET_ITEMS
}

fn pam_matrix() -> &'static str {
    assert!(
        Path::new(PAM_MATRIX).is_file(),
        "{PAM_MATRIX} not found: install the Debian package libpam-wrapper"
    );
    PAM_MATRIX
}

/// How the fake daemon answers.
#[derive(Clone)]
enum Script {
    /// One response line per request line, in order across connections; when they run out
    /// the connection is closed without an answer.
    Answers(Vec<String>),
    /// Reads the request and then says nothing, holding the connection open.
    Silent,
}

struct FakeOtpd {
    requests: Arc<Mutex<Vec<Value>>>,
    connections: Arc<Mutex<usize>>,
}

impl FakeOtpd {
    fn start(dir: &Path, script: Script) -> FakeOtpd {
        let path = dir.join("otpd.sock");
        let listener = UnixListener::bind(&path).expect("bind fake otpd");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let (req, conns) = (requests.clone(), connections.clone());
        // The thread ends with the test process; it owns nothing the test waits for.
        thread::spawn(move || {
            let mut answers = match &script {
                Script::Answers(a) => a.clone().into_iter(),
                Script::Silent => Vec::new().into_iter(),
            };
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                *conns.lock().expect("lock") += 1;
                let mut reader = BufReader::new(&stream);
                let mut line = String::new();
                while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                    let value = serde_json::from_str(line.trim_end())
                        .unwrap_or_else(|_| Value::String(line.clone()));
                    req.lock().expect("lock").push(without_deadline(value));
                    line.clear();
                    if let Script::Silent = script {
                        thread::sleep(Duration::from_secs(10));
                        break;
                    }
                    match answers.next() {
                        Some(answer) => {
                            let _ = (&stream).write_all(format!("{answer}\n").as_bytes());
                        }
                        None => break,
                    }
                }
            }
        });
        FakeOtpd {
            requests,
            connections,
        }
    }

    fn answering(dir: &Path, answers: &[Value]) -> FakeOtpd {
        Self::start(
            dir,
            Script::Answers(answers.iter().map(Value::to_string).collect()),
        )
    }

    fn requests(&self) -> Vec<Value> {
        self.requests.lock().expect("lock").clone()
    }

    fn connections(&self) -> usize {
        *self.connections.lock().expect("lock")
    }
}

struct Outcome {
    success: bool,
    /// stdout and stderr together: pamtester's verdict line, the conversation's prompts and
    /// messages, and pam_wrapper's rendering of pam_syslog lines.
    output: String,
    elapsed: Duration,
}

struct Pam {
    dir: tempfile::TempDir,
    module: PathBuf,
    wrapper: PathBuf,
    pamtester: PathBuf,
}

impl Pam {
    fn new() -> Pam {
        Pam {
            dir: tempfile::tempdir().expect("tempdir"),
            module: module_path(),
            wrapper: pam_wrapper_lib(),
            pamtester: pamtester_bin(),
        }
    }

    /// Socket and passdb live here; service files in `services/` below, because
    /// pam_wrapper copies everything in PAM_WRAPPER_SERVICE_DIR and fails on a socket.
    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn services(&self) -> PathBuf {
        let dir = self.path().join("services");
        std::fs::create_dir_all(&dir).expect("create services dir");
        dir
    }

    fn sock(&self) -> String {
        self.path().join("otpd.sock").display().to_string()
    }

    /// Writes a service file; `OTPD` in `lines` stands for the module's absolute path.
    fn service(&self, name: &str, lines: &str) {
        let text = lines.replace("OTPD", &self.module.display().to_string());
        std::fs::write(self.services().join(name), text).expect("write service file");
    }

    fn passdb(&self, lines: &str) -> String {
        let path = self.path().join("passdb");
        std::fs::write(&path, lines).expect("write passdb");
        path.display().to_string()
    }

    fn run(&self, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Outcome {
        // pam_wrapper 1.1.4 picks its runtime dir /tmp/pam.X (one of 62 letters) with
        // lstat-then-mkdir and carries on if mkdir fails, so two pamtester processes started
        // together can share one config dir and delete it under each other. Tests run in
        // parallel threads; the pamtester runs must not.
        let _serial = PAMTESTER
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // The race above also exists with pam_wrapper users outside this process. Its
        // symptoms are harness errors our module can never produce; only those are retried.
        let mut outcome = self.run_once(args, stdin, env);
        for _ in 0..2 {
            if !HARNESS_BROKEN.iter().any(|s| outcome.output.contains(s)) {
                break;
            }
            eprintln!("pam_wrapper harness trouble, retrying:\n{}", outcome.output);
            thread::sleep(Duration::from_millis(200));
            outcome = self.run_once(args, stdin, env);
        }
        outcome
    }

    fn run_once(&self, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Outcome {
        let start = Instant::now();
        let mut child = Command::new(&self.pamtester)
            .args(args)
            .env("LD_PRELOAD", &self.wrapper)
            .env("PAM_WRAPPER", "1")
            .env("PAM_WRAPPER_SERVICE_DIR", self.services())
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pamtester");
        if let Some(mut input) = child.stdin.take() {
            // pamtester may exit before reading everything; that is not an error here.
            let _ = input.write_all(stdin.as_bytes());
        }
        let out = child.wait_with_output().expect("wait for pamtester");
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

    fn auth(&self, service: &str, stdin: &str) -> Outcome {
        self.run(
            &["-I", "rhost=192.0.2.7", service, "alice", "authenticate"],
            stdin,
            &[],
        )
    }

    fn acct(&self, service: &str) -> Outcome {
        self.run(&[service, "alice", "acct_mgmt"], "", &[])
    }
}

#[track_caller]
fn expect(outcome: &Outcome, success: bool, text: &str) {
    assert_eq!(
        outcome.success, success,
        "pamtester exit status; output:\n{}",
        outcome.output
    );
    assert!(
        outcome.output.contains(text),
        "expected {text:?} in pamtester output:\n{}",
        outcome.output
    );
}

/// A check request carries the module's deadline, which differs from run to run: it is
/// checked here (a wall-clock time in ms, ahead of now by at most the module's timeout plus
/// slack) and taken out, so tests compare the rest exactly. A check without one, or with a
/// deadline that is not what the module's timeout says, keeps a marker that fails those
/// comparisons.
fn without_deadline(mut value: Value) -> Value {
    let Some(obj) = value.as_object_mut() else {
        return value;
    };
    if obj.get("op") != Some(&json!("check")) {
        return value;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    match obj.remove("deadline_ms").and_then(|d| d.as_u64()) {
        // Every test here runs with timeouts of at most 10 s; the exchange started before now.
        Some(d) if d > now.saturating_sub(1000) && d <= now + 10_000 => {}
        other => {
            obj.insert(
                "deadline_ms".into(),
                json!(format!("bad: {other:?}, now {now}")),
            );
        }
    }
    value
}

fn check_request(service: &str, password: &str) -> Value {
    json!({"op":"check","user":"alice","password":password,"service":service,
           "rhost":"192.0.2.7","client":"pam"})
}

/// One service with the module alone, talking to `sock`.
fn only_otpd(pam: &Pam, name: &str, extra: &str) {
    pam.service(
        name,
        &format!(
            "auth required OTPD socket={} {extra}\naccount required OTPD socket={} {extra}\n",
            pam.sock(),
            pam.sock()
        ),
    );
}

#[test]
fn accept_succeeds_and_the_request_is_exactly_the_contract() {
    let pam = Pam::new();
    let otpd = FakeOtpd::answering(pam.path(), &[json!({"verdict":"accept"})]);
    only_otpd(&pam, "imap", "");
    let out = pam.auth("imap", "1234287082\n");
    expect(&out, true, SUCCESS_AUTH);
    assert_eq!(otpd.requests(), vec![check_request("imap", "1234287082")]);
    assert_eq!(otpd.connections(), 1);
}

#[test]
fn reject_is_authentication_failure_without_showing_the_message() {
    let pam = Pam::new();
    let otpd = FakeOtpd::answering(
        pam.path(),
        &[json!({"verdict":"reject","message":"wrong code for alice"})],
    );
    only_otpd(&pam, "imap", "");
    let out = pam.auth("imap", "1234000000\n");
    expect(&out, false, AUTH_ERR);
    assert!(!out.output.contains("wrong code"), "{}", out.output);
    assert_eq!(otpd.requests().len(), 1);
}

#[test]
fn deny_is_authentication_failure_and_shows_the_message() {
    let pam = Pam::new();
    let _otpd = FakeOtpd::answering(
        pam.path(),
        &[json!({"verdict":"deny","message":"IMAP is switched off for this account"})],
    );
    only_otpd(&pam, "imap", "");
    let out = pam.auth("imap", "1234287082\n");
    expect(&out, false, AUTH_ERR);
    assert!(
        out.output.contains("IMAP is switched off for this account"),
        "{}",
        out.output
    );
}

#[test]
fn deny_message_is_suppressed_with_pam_silent() {
    let pam = Pam::new();
    let _otpd = FakeOtpd::answering(
        pam.path(),
        &[json!({"verdict":"deny","message":"IMAP is switched off"})],
    );
    only_otpd(&pam, "imap", "");
    let out = pam.run(&["imap", "alice", "authenticate(PAM_SILENT)"], "x\n", &[]);
    expect(&out, false, AUTH_ERR);
    assert!(!out.output.contains("switched off"), "{}", out.output);
}

#[test]
fn defer_alone_in_the_stack_is_permission_denied() {
    // Linux-PAM turns a stack in which every module returned PAM_IGNORE into
    // PAM_PERM_DENIED: the module's defer can never log anybody in by itself.
    let pam = Pam::new();
    let _otpd = FakeOtpd::answering(pam.path(), &[json!({"verdict":"defer"})]);
    only_otpd(&pam, "imap", "");
    expect(&pam.auth("imap", "secret\n"), false, PERM_DENIED);
}

/// The recommended stack: otpd first, the normal password module after it. pam_matrix
/// (unlike pam_unix with try_first_pass) always prompts again, hence a second input line.
fn recommended_stack(pam: &Pam, name: &str, extra: &str) {
    let passdb = pam.passdb(&format!("alice:normal-pw:{name}\n"));
    pam.service(
        name,
        &format!(
            "auth [success=done ignore=ignore default=die] OTPD socket={} {extra}\n\
             auth required {} passdb={passdb}\n",
            pam.sock(),
            pam_matrix()
        ),
    );
}

#[test]
fn defer_falls_through_to_the_password_module() {
    let pam = Pam::new();
    let otpd = FakeOtpd::answering(
        pam.path(),
        &[json!({"verdict":"defer"}), json!({"verdict":"defer"})],
    );
    recommended_stack(&pam, "imap", "");
    expect(
        &pam.auth("imap", "normal-pw\nnormal-pw\n"),
        true,
        SUCCESS_AUTH,
    );
    expect(&pam.auth("imap", "normal-pw\nwrong\n"), false, AUTH_ERR);
    assert_eq!(otpd.requests().len(), 2);
}

#[test]
fn reject_and_deny_stop_the_recommended_stack() {
    for verdict in ["reject", "deny"] {
        let pam = Pam::new();
        let _otpd = FakeOtpd::answering(pam.path(), &[json!({ "verdict": verdict })]);
        recommended_stack(&pam, "imap", "");
        // The password module would accept "normal-pw"; default=die must not let it run.
        let out = pam.auth("imap", "normal-pw\nnormal-pw\n");
        expect(&out, false, AUTH_ERR);
    }
}

#[test]
fn challenge_round_trip_carries_state_and_the_typed_answer() {
    let pam = Pam::new();
    let otpd = FakeOtpd::answering(
        pam.path(),
        &[
            json!({"verdict":"challenge","message":"Code from your token:","state":"tx-42"}),
            json!({"verdict":"accept"}),
        ],
    );
    only_otpd(&pam, "sshd", "");
    let out = pam.auth("sshd", "1234\n287082\n");
    expect(&out, true, SUCCESS_AUTH);
    assert!(
        out.output.contains("Code from your token:"),
        "{}",
        out.output
    );
    let mut second = check_request("sshd", "287082");
    second["state"] = json!("tx-42");
    assert_eq!(otpd.requests(), vec![check_request("sshd", "1234"), second]);
}

#[test]
fn challenge_without_message_uses_a_default_prompt_and_wrong_answer_fails() {
    let pam = Pam::new();
    let otpd = FakeOtpd::answering(
        pam.path(),
        &[
            json!({"verdict":"challenge","state":"s"}),
            json!({"verdict":"reject"}),
        ],
    );
    only_otpd(&pam, "sshd", "");
    let out = pam.auth("sshd", "1234\n000000\n");
    expect(&out, false, AUTH_ERR);
    assert!(out.output.contains("One-time code: "), "{}", out.output);
    assert_eq!(otpd.requests().len(), 2);
}

#[test]
fn endless_challenges_stop_after_three_rounds() {
    let pam = Pam::new();
    let challenge = json!({"verdict":"challenge","message":"Again:","state":"s"});
    let otpd = FakeOtpd::answering(pam.path(), &vec![challenge; 10]);
    only_otpd(&pam, "sshd", "");
    let out = pam.auth("sshd", "a\nb\nc\nd\ne\nf\n");
    expect(&out, false, AUTH_ERR);
    assert!(
        out.output.contains("more than 3 challenges"),
        "{}",
        out.output
    );
    // The first check plus three answers.
    assert_eq!(otpd.requests().len(), 4);
}

#[test]
fn missing_socket_fails_closed_with_a_syslog_line() {
    let pam = Pam::new();
    only_otpd(&pam, "imap", "");
    let out = pam.auth("imap", "1234287082\n");
    expect(&out, false, AUTHINFO_UNAVAIL);
    let line = format!(
        "otpd unreachable at {}: cannot connect: no such socket; failing closed",
        pam.sock()
    );
    assert!(out.output.contains(&line), "{}", out.output);
    assert!(!out.output.contains("1234287082"), "{}", out.output);
}

#[test]
fn missing_socket_with_defer_lets_the_normal_password_decide() {
    let pam = Pam::new();
    recommended_stack(&pam, "imap", "on_unavailable=defer");
    let out = pam.auth("imap", "normal-pw\nnormal-pw\n");
    expect(&out, true, SUCCESS_AUTH);
    assert!(
        out.output.contains("deferring to the next module"),
        "{}",
        out.output
    );
    expect(&pam.auth("imap", "x\nwrong\n"), false, AUTH_ERR);
}

#[test]
fn silent_daemon_fails_within_the_timeout() {
    let pam = Pam::new();
    let otpd = FakeOtpd::start(pam.path(), Script::Silent);
    only_otpd(&pam, "imap", "timeout=700");
    let out = pam.auth("imap", "1234287082\n");
    expect(&out, false, AUTHINFO_UNAVAIL);
    assert!(
        out.output
            .contains("no answer in time (read) (timeout=700 ms)"),
        "{}",
        out.output
    );
    assert!(
        out.elapsed >= Duration::from_millis(700),
        "{:?}",
        out.elapsed
    );
    assert!(
        out.elapsed < Duration::from_millis(1700),
        "{:?}",
        out.elapsed
    );
    assert_eq!(otpd.requests().len(), 1);
}

#[test]
fn silent_daemon_with_defer_falls_through_in_time() {
    let pam = Pam::new();
    let _otpd = FakeOtpd::start(pam.path(), Script::Silent);
    recommended_stack(&pam, "imap", "timeout=500 on_unavailable=defer");
    let out = pam.auth("imap", "x\nnormal-pw\n");
    expect(&out, true, SUCCESS_AUTH);
    assert!(
        out.elapsed < Duration::from_millis(1500),
        "{:?}",
        out.elapsed
    );
}

#[test]
fn garbage_error_and_dropped_answers_count_as_unavailable() {
    for (answer, logged) in [
        (
            "this is not json".to_string(),
            "unreadable response from otpd",
        ),
        (
            json!({"verdict":"maybe"}).to_string(),
            "unknown verdict \"maybe\"",
        ),
        (
            json!({"error":"store is locked"}).to_string(),
            "otpd answered error: store is locked",
        ),
    ] {
        let pam = Pam::new();
        let _otpd = FakeOtpd::start(pam.path(), Script::Answers(vec![answer]));
        only_otpd(&pam, "imap", "");
        let out = pam.auth("imap", "1234287082\n");
        expect(&out, false, AUTHINFO_UNAVAIL);
        assert!(out.output.contains(logged), "{}", out.output);
        assert!(out.output.contains("failing closed"), "{}", out.output);
    }
    // A daemon that closes without answering.
    let pam = Pam::new();
    let _otpd = FakeOtpd::start(pam.path(), Script::Answers(vec![]));
    only_otpd(&pam, "imap", "");
    let out = pam.auth("imap", "1234287082\n");
    expect(&out, false, AUTHINFO_UNAVAIL);
    assert!(
        out.output
            .contains("connection closed before a full response"),
        "{}",
        out.output
    );
}

/// pam_wrapper's pam_set_items.so copies the environment variable PAM_AUTHTOK into the
/// PAM_AUTHTOK item, like a password module before us that asked the user.
#[test]
fn first_pass_options_reuse_the_password_of_the_module_before() {
    for option in ["use_first_pass", "try_first_pass"] {
        let pam = Pam::new();
        let otpd = FakeOtpd::answering(pam.path(), &[json!({"verdict":"accept"})]);
        pam.service(
            "vpn",
            &format!(
                "auth required {}\nauth required OTPD socket={} {option} prompt=Second_prompt:\n",
                pam_set_items(),
                pam.sock()
            ),
        );
        // No input at all: a prompt would read EOF and fail the conversation.
        let out = pam.run(
            &["-I", "rhost=192.0.2.7", "vpn", "alice", "authenticate"],
            "",
            &[("PAM_AUTHTOK", "1234287082")],
        );
        expect(&out, true, SUCCESS_AUTH);
        assert!(
            !out.output.contains("Second prompt"),
            "{option}: {}",
            out.output
        );
        assert_eq!(
            otpd.requests(),
            vec![check_request("vpn", "1234287082")],
            "{option}"
        );
    }
}

/// A trap for anyone testing a stack with pam_matrix in front: pam_matrix sets PAM_AUTHTOK
/// and then wipes that very string in place (wipe_authtok on the pointer pam_get_item gave
/// it), so every later module finds an empty password. The module passes on what libpam
/// holds, without prompting a second time.
#[test]
fn after_pam_matrix_the_stored_password_is_empty() {
    for option in ["use_first_pass", "try_first_pass"] {
        let pam = Pam::new();
        let otpd = FakeOtpd::answering(pam.path(), &[json!({"verdict":"reject"})]);
        let passdb = pam.passdb("alice:1234287082:vpn\n");
        pam.service(
            "vpn",
            &format!(
                "auth requisite {} passdb={passdb}\nauth required OTPD socket={} {option} prompt=Second_prompt:\n",
                pam_matrix(),
                pam.sock()
            ),
        );
        let out = pam.auth("vpn", "1234287082\n");
        expect(&out, false, AUTH_ERR);
        assert!(
            !out.output.contains("Second prompt"),
            "{option}: {}",
            out.output
        );
        assert_eq!(otpd.requests(), vec![check_request("vpn", "")], "{option}");
    }
}

#[test]
fn use_first_pass_without_an_earlier_password_fails_without_asking_the_daemon() {
    let pam = Pam::new();
    let otpd = FakeOtpd::answering(pam.path(), &[json!({"verdict":"accept"})]);
    only_otpd(&pam, "vpn", "use_first_pass");
    let out = pam.auth("vpn", "1234287082\n");
    expect(&out, false, AUTH_ERR);
    assert!(
        out.output
            .contains("use_first_pass given but no earlier module set a password"),
        "{}",
        out.output
    );
    assert!(otpd.requests().is_empty());
}

#[test]
fn prompt_argument_is_used_in_both_spellings() {
    for (arg, shown) in [
        ("prompt=PIN_and_code:", "PIN and code: "),
        ("[prompt=PIN + code, no space:]", "PIN + code, no space: "),
    ] {
        let pam = Pam::new();
        let _otpd = FakeOtpd::answering(pam.path(), &[json!({"verdict":"accept"})]);
        only_otpd(&pam, "imap", arg);
        let out = pam.auth("imap", "1234287082\n");
        expect(&out, true, SUCCESS_AUTH);
        assert!(out.output.contains(shown), "{arg}: {}", out.output);
    }
}

#[test]
fn service_argument_replaces_the_pam_service_name() {
    let pam = Pam::new();
    let otpd = FakeOtpd::answering(
        pam.path(),
        &[json!({"verdict":"accept"}), json!({"verdict":"allow"})],
    );
    only_otpd(&pam, "dovecot", "service=mail");
    expect(&pam.auth("dovecot", "1234287082\n"), true, SUCCESS_AUTH);
    expect(&pam.acct("dovecot"), true, SUCCESS_ACCT);
    let got = otpd.requests();
    assert_eq!(got[0], check_request("mail", "1234287082"));
    assert_eq!(got[1]["service"], json!("mail"));
}

#[test]
fn acct_mgmt_allow_deny_ignore() {
    let pam = Pam::new();
    let otpd = FakeOtpd::answering(
        pam.path(),
        &[
            json!({"verdict":"allow"}),
            json!({"verdict":"deny","message":"SSH is switched off for this account"}),
            json!({"verdict":"ignore"}),
        ],
    );
    only_otpd(&pam, "sshd", "");
    expect(&pam.acct("sshd"), true, SUCCESS_ACCT);
    let denied = pam.acct("sshd");
    expect(&denied, false, PERM_DENIED);
    assert!(
        denied
            .output
            .contains("SSH is switched off for this account"),
        "{}",
        denied.output
    );
    // Alone in the stack, PAM_IGNORE again ends as PAM_PERM_DENIED.
    expect(&pam.acct("sshd"), false, PERM_DENIED);
    let account = json!({"op":"account","user":"alice","service":"sshd","rhost":null});
    assert_eq!(
        otpd.requests(),
        vec![account.clone(), account.clone(), account]
    );
}

#[test]
fn acct_mgmt_ignore_passes_to_the_next_account_module() {
    let pam = Pam::new();
    let _otpd = FakeOtpd::answering(pam.path(), &[json!({"verdict":"ignore"})]);
    pam.service(
        "sshd",
        &format!(
            "account required OTPD socket={}\naccount required pam_permit.so\n",
            pam.sock()
        ),
    );
    expect(&pam.acct("sshd"), true, SUCCESS_ACCT);
}

#[test]
fn acct_mgmt_unavailable_fails_or_defers() {
    let pam = Pam::new();
    only_otpd(&pam, "sshd", "");
    let out = pam.acct("sshd");
    expect(&out, false, AUTHINFO_UNAVAIL);
    assert!(out.output.contains("failing closed"), "{}", out.output);

    pam.service(
        "sshd2",
        &format!(
            "account required OTPD socket={} on_unavailable=defer\naccount required pam_permit.so\n",
            pam.sock()
        ),
    );
    let out = pam.acct("sshd2");
    expect(&out, true, SUCCESS_ACCT);
    assert!(
        out.output.contains("deferring to the next module"),
        "{}",
        out.output
    );
}

#[test]
fn rhost_is_null_when_unset_and_sent_when_set() {
    let pam = Pam::new();
    let otpd = FakeOtpd::answering(
        pam.path(),
        &[json!({"verdict":"accept"}), json!({"verdict":"accept"})],
    );
    only_otpd(&pam, "imap", "");
    expect(
        &pam.run(&["imap", "alice", "authenticate"], "pw\n", &[]),
        true,
        SUCCESS_AUTH,
    );
    expect(&pam.auth("imap", "pw\n"), true, SUCCESS_AUTH);
    let got = otpd.requests();
    assert_eq!(got[0]["rhost"], Value::Null);
    assert!(got[0].as_object().is_some_and(|o| o.contains_key("rhost")));
    assert_eq!(got[1]["rhost"], json!("192.0.2.7"));
}

#[test]
fn unknown_arguments_are_logged_and_debug_never_logs_secrets() {
    let pam = Pam::new();
    let _otpd = FakeOtpd::answering(
        pam.path(),
        &[
            json!({"verdict":"challenge","message":"Code:","state":"secret-state-77"}),
            json!({"verdict":"accept"}),
        ],
    );
    only_otpd(&pam, "imap", "debug frobnicate=1");
    // Level 2 shows LOG_DEBUG; level 3 would add pam_wrapper's own trace of PAM_AUTHTOK.
    let out = pam.run(
        &["-I", "rhost=192.0.2.7", "imap", "alice", "authenticate"],
        "pin-9876\ncode-5432\n",
        &[("PAM_WRAPPER_DEBUGLEVEL", "2")],
    );
    expect(&out, true, SUCCESS_AUTH);
    assert!(
        out.output
            .contains("unknown argument \"frobnicate=1\" ignored"),
        "{}",
        out.output
    );
    assert!(
        out.output
            .contains("check user=alice service=imap rhost=192.0.2.7 round=1: accept"),
        "{}",
        out.output
    );
    for secret in ["pin-9876", "code-5432", "secret-state-77"] {
        assert!(
            !out.output.contains(secret),
            "{secret} leaked:\n{}",
            out.output
        );
    }
}
