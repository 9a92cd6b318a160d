//! Shared harness for integration tests: a private data directory and config, the real `otpd`
//! binary for admin commands, and the real daemon started and stopped by pid.
#![allow(dead_code)]

pub mod cache_attacks;
pub mod http;

use std::io::{BufRead, BufReader, Write};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_otpd");

/// A secret used by tests whose codes are cross-checked with oathtool.
pub const SECRET_B32: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"; // "12345678901234567890"

pub struct Env {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Env {
    /// A fresh data directory and a config file: `extra` is appended to a base that points
    /// data_dir at the temp directory and switches the socket and RADIUS off unless `extra`
    /// sets them.
    pub fn new(extra: &str) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("otpd.toml");
        let top = format!("data_dir = \"{}\"\n", dir.path().join("data").display());
        let mut base = String::new();
        if !extra.contains("[socket]") {
            base.push_str(&format!(
                "[socket]\npath = \"{}\"\n",
                dir.path().join("otpd.sock").display()
            ));
        }
        if !extra.contains("[radius]") {
            base.push_str("[radius]\nlisten = []\n");
        }
        // data_dir first, then `extra` (its top-level keys must come before its tables), then
        // the base tables.
        std::fs::write(&config, format!("{top}{extra}\n{base}")).expect("write config");
        let env = Env { dir, config };
        env.ok(&["init"], None);
        env
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn socket_path(&self) -> PathBuf {
        self.dir.path().join("otpd.sock")
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--config").arg(&self.config).args(args);
        c.env_remove("OTPD_CONFIG");
        c
    }

    /// Runs `otpd ARGS` with optional standard input.
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut c = self.cmd(args);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn otpd");
        if let Some(s) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(s.as_bytes())
                .expect("write stdin");
        } else {
            drop(child.stdin.take());
        }
        child.wait_with_output().expect("wait otpd")
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "otpd {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Creates `user` with `pin`, an active token of `kind` ("totp"/"hotp") on SECRET_B32,
    /// and sets `level`. Returns the token serial.
    pub fn enrol(&self, user: &str, pin: &str, kind: &str, level: &str) -> String {
        self.ok(
            &["user", "add", user, "--pin-stdin"],
            Some(&format!("{pin}\n")),
        );
        let out = self.ok(
            &[
                "token", "add", user, "--type", kind, "--secret", SECRET_B32, "--active", "--json",
            ],
            None,
        );
        let v: serde_json::Value = serde_json::from_str(&out).expect("token json");
        self.ok(&["user", "set", user, "--level", level], None);
        v["serial"].as_str().expect("serial").to_string()
    }

    /// `otpd check` with the password on stdin; returns the parsed JSON answer.
    pub fn check(&self, user: &str, service: &str, password: &str) -> serde_json::Value {
        let out = self.run(
            &["check", user, "--service", service, "--json"],
            Some(&format!("{password}\n")),
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "check output is not JSON ({e}): {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    pub fn start(&self) -> Daemon {
        Daemon::start(self)
    }
}

/// The real daemon, started by the test and ended by its pid when dropped.
pub struct Daemon {
    pub child: Child,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    pub fn start(env: &Env) -> Daemon {
        let mut c = env.cmd(&["serve"]);
        c.env("RUST_LOG", "");
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn otpd serve");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("otpd ready") {
                    let _ = tx.send(());
                }
                log2.lock().expect("log lock").push(line);
            }
        });
        let mut d = Daemon { child, log };
        if rx.recv_timeout(Duration::from_secs(20)).is_err() {
            let _ = d.child.kill();
            panic!("daemon did not become ready:\n{}", d.log_text());
        }
        d
    }

    pub fn log_text(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: what a crash or power cut looks like to the process.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        // SAFETY: signalling our own child by its pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("daemon did not stop within 10 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A free UDP port on 127.0.0.1 (bound then released).
pub fn free_udp_port() -> u16 {
    not_handed_out(false, || {
        UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("free port")
            .port()
    })
}

/// A port that `pick` chose and that this test process has not handed out before. The
/// socket that found it is closed again, so two picks in a row can give the same port while
/// nothing listens on the first yet (one in about 20,000 pairs here; bench/run.sh once
/// started otpd with its HTTP and metrics endpoints on one port that way).
fn not_handed_out(tcp: bool, pick: impl Fn() -> u16) -> u16 {
    static HANDED: Mutex<std::collections::BTreeSet<(bool, u16)>> =
        Mutex::new(std::collections::BTreeSet::new());
    loop {
        let port = pick();
        if HANDED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((tcp, port))
        {
            return port;
        }
    }
}

/// Requires a command from a Debian package; fails (never skips) with the package name.
pub fn require(cmd: &str, package: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "`{cmd}` is missing: install the Debian package {package} (tests/run.sh does this)"
    );
}

/// `oathtool` output for a TOTP code at unix time `t` or an HOTP counter.
pub fn oathtool(args: &[&str]) -> String {
    require("oathtool", "oathtool");
    let out = Command::new("oathtool")
        .args(args)
        .output()
        .expect("oathtool");
    assert!(
        out.status.success(),
        "oathtool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn hotp_code(counter: u64) -> String {
    oathtool(&["--hotp", "-b", SECRET_B32, "-c", &counter.to_string()])
}

pub fn totp_code_now() -> String {
    oathtool(&["--totp", "-b", SECRET_B32])
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

impl Daemon {
    /// True while the daemon process has not exited.
    pub fn child_alive(&self) -> bool {
        // SAFETY: signal 0 only checks that our own child still exists.
        let alive = unsafe { libc::kill(self.child.id() as i32, 0) == 0 };
        alive && !self.log_text().contains("panicked")
    }
}

/// Requires a Python module (from PyPI); fails, never skips, naming what to install.
pub fn require_python_module(module: &str, pip_name: &str) {
    require("python3", "python3");
    let ok = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "the Python module `{module}` is missing: `python3 -m pip install {pip_name}` \
         (tests/run.sh does this)"
    );
}

/// Runs a Python script with arguments; returns its trimmed standard output.
pub fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A Yubico OTP made by Python's `yubiotp` package (independent of otpd's decoder):
/// private id and AES key in hex, public id in modhex, use counter and session counter.
pub fn yubiotp(
    private_id: &str,
    aes_key: &str,
    public_id: &str,
    use_ctr: u16,
    session: u8,
) -> String {
    require_python_module("yubiotp", "yubiotp");
    python(
        "import sys, random\n\
         from binascii import unhexlify\n\
         from yubiotp.otp import OTP, encode_otp\n\
         uid, key, pid, use, ses = sys.argv[1:6]\n\
         otp = OTP(unhexlify(uid), int(use), random.randrange(0xffffff), int(ses), random.randrange(0xffff))\n\
         print(encode_otp(otp, unhexlify(key), pid.encode()).decode())\n",
        &[private_id, aes_key, public_id, &use_ctr.to_string(), &session.to_string()],
    )
}

/// The newest audit records of a user, as JSON objects, once the audit has settled
/// ([`audit_settled`]).
pub fn audit_of(env: &Env, user: &str) -> Vec<serde_json::Value> {
    audit_settled(env, &["audit", "--user", user, "--json"])
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("audit json line"))
        .collect()
}

/// A free TCP port on 127.0.0.1 (bound then released): nothing listens there afterwards.
pub fn free_tcp_port() -> u16 {
    not_handed_out(true, || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("free port")
            .port()
    })
}

/// One request over the daemon's Unix socket (wire protocol v1): sends `request` as one line
/// and returns the parsed response line.
pub fn socket_call(path: &Path, request: &serde_json::Value) -> serde_json::Value {
    use std::os::unix::net::UnixStream;
    let mut s =
        UnixStream::connect(path).unwrap_or_else(|e| panic!("connect to {}: {e}", path.display()));
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(format!("{request}\n").as_bytes())
        .expect("write request");
    let mut line = String::new();
    BufReader::new(&s)
        .read_line(&mut line)
        .expect("read response");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("response is not JSON ({e}): {line:?}"))
}

impl Env {
    /// Like `Env::new`, for configs with tables: `top_level` keys go first, then `data_dir`,
    /// then `tables` (which may set `[socket]` or `[radius]`; otherwise the socket goes to the
    /// temp dir and RADIUS is off, as in `new`).
    pub fn with_tables(top_level: &str, tables: &str) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("otpd.toml");
        let mut text = format!(
            "{top_level}\ndata_dir = \"{}\"\n{tables}\n",
            dir.path().join("data").display()
        );
        if !tables.contains("[socket]") {
            text.push_str(&format!(
                "[socket]\npath = \"{}\"\n",
                dir.path().join("otpd.sock").display()
            ));
        }
        if !tables.contains("[radius]") {
            text.push_str("[radius]\nlisten = []\n");
        }
        std::fs::write(&config, text).expect("write config");
        let env = Env { dir, config };
        env.ok(&["init"], None);
        env
    }
}

/// The freshly built `pam_otpd.so`. otpd lists pam_otpd as a dev-dependency so that
/// `cargo test` builds it; cargo puts the cdylib next to the test binaries in `deps/` (only
/// `cargo build` copies it one level up, where it may be stale), so `deps/` comes first.
pub fn pam_module_path() -> PathBuf {
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(deps) = exe.parent() {
            candidates.push(deps.join("libpam_otpd.so"));
            if let Some(profile) = deps.parent() {
                candidates.push(profile.join("libpam_otpd.so"));
            }
        }
    }
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!("libpam_otpd.so not found in {candidates:?}: run `cargo build -p pam_otpd`")
        })
}

/// pam_wrapper (Debian libpam-wrapper): libpam reads service files from a directory of ours.
pub fn pam_wrapper_lib() -> PathBuf {
    let p = PathBuf::from("/usr/lib/x86_64-linux-gnu/libpam_wrapper.so");
    assert!(
        p.is_file(),
        "{} is missing: install the Debian package libpam-wrapper",
        p.display()
    );
    p
}

/// A module shipped with libpam-wrapper: `pam_matrix.so` (a password store in a file, lines
/// `user:password:service`) or `pam_set_items.so` (sets PAM items from the environment).
pub fn pam_wrapper_module(name: &str) -> PathBuf {
    let p = Path::new("/usr/lib/x86_64-linux-gnu/pam_wrapper").join(name);
    assert!(
        p.is_file(),
        "{} is missing: install the Debian package libpam-wrapper",
        p.display()
    );
    p
}

/// `otpd ARGS` (an `audit` query) once the daemon's audit has settled: audit records are
/// committed with the next group commit, a moment after the answer went out (docs/
/// performance.md), so a test that reads the audit right after an answer reads until two
/// reads 100 ms apart agree (at most 5 s).
pub fn audit_settled(env: &Env, args: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = env.ok(args, None);
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = env.ok(args, None);
        if now == last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// The fake SMTP relay (tests/fake_smtp.py on Python's aiosmtpd), killed by its pid when
/// dropped. Modes: "ok", "refuse" (550 to every message), "hang" (never says a word).
pub struct SmtpSink {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl SmtpSink {
    pub fn start(mode: &str) -> SmtpSink {
        SmtpSink::start_with(mode, &[])
    }

    /// `args` follow the mode: the certificate and key files for "starttls" and "tls".
    pub fn start_with(mode: &str, args: &[&Path]) -> SmtpSink {
        if mode != "hang" {
            require_python_module("aiosmtpd", "aiosmtpd");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fake_smtp.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(dir.path())
            .arg(mode)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tests/fake_smtp.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("port line");
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("fake_smtp.py did not print its port: {line:?}"));
        SmtpSink { child, port, dir }
    }

    /// `[email]` keys (dotted, for `Env::new`) that point otpd at this relay; `extra` adds
    /// or overrides keys (`email.validity = "2s"\n`).
    pub fn config(&self, extra: &str) -> String {
        // TOML refuses a key twice: the plain connection only unless `extra` sets one.
        let tls = if extra.contains("email.tls") {
            ""
        } else {
            "email.tls = \"none\"\n"
        };
        format!(
            "email.host = \"127.0.0.1\"\nemail.port = {}\n{tls}\
             email.from = \"otpd <otpd@example.org>\"\nemail.subject = \"Login code for {{user}}\"\n\
             email.body = \"Your code: {{code}}\\nvalid for {{validity}}\\n\"\n{extra}",
            self.port
        )
    }

    /// Every message received so far, oldest first.
    pub fn messages(&self) -> Vec<serde_json::Value> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .expect("read mail dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| {
                serde_json::from_str(&std::fs::read_to_string(p).expect("read message"))
                    .expect("message json")
            })
            .collect()
    }

    /// Waits (up to 10 s) for the `n`th message (1-based) and returns it.
    pub fn wait_for(&self, n: usize) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut m = self.messages();
            if m.len() >= n {
                return m.swap_remove(n - 1);
            }
            assert!(
                Instant::now() < deadline,
                "message #{n} did not arrive within 10 s; got {}",
                m.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The code of the `n`th message: the digits after "Your code: " in its body.
    pub fn code(&self, n: usize) -> String {
        let m = self.wait_for(n);
        let body = m["body"].as_str().expect("body");
        let after = body
            .split("Your code: ")
            .nth(1)
            .unwrap_or_else(|| panic!("no code in {body:?}"));
        after.chars().take_while(char::is_ascii_digit).collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The daemon's log without terminal colour codes.
pub fn plain_log(d: &Daemon) -> String {
    let raw = d.log_text();
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for n in chars.by_ref() {
                if n.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `radclient -x -r 1 -t TIMEOUT 127.0.0.1:PORT COMMAND SECRET` with `input` on standard
/// input: (exit status, everything it printed).
pub fn radclient(
    port: u16,
    command: &str,
    secret: &str,
    input: &str,
    timeout_s: u32,
) -> (bool, String) {
    radclient_to(
        &format!("127.0.0.1:{port}"),
        &[],
        command,
        secret,
        input,
        timeout_s,
    )
}

/// [`radclient`] to any server address (`[::1]:1812`), with more options (`-6`).
pub fn radclient_to(
    server: &str,
    options: &[&str],
    command: &str,
    secret: &str,
    input: &str,
    timeout_s: u32,
) -> (bool, String) {
    require("radclient", "freeradius-utils");
    let mut child = Command::new("radclient")
        .args(options)
        .args(["-x", "-r", "1", "-t", &timeout_s.to_string()])
        .arg(server)
        .args([command, secret])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn radclient");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write radclient input");
    let out = child.wait_with_output().expect("radclient");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
