//! Shared harness for integration tests: a private data directory and config, the real `otpd`
//! binary for admin commands, and the real daemon started and stopped by pid.
#![allow(dead_code)]

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
        let mut base = format!("data_dir = \"{}\"\n", dir.path().join("data").display());
        if !extra.contains("[socket]") {
            base.push_str(&format!(
                "[socket]\npath = \"{}\"\n",
                dir.path().join("otpd.sock").display()
            ));
        }
        if !extra.contains("[radius]") {
            base.push_str("[radius]\nlisten = []\n");
        }
        // Top-level keys in `extra` must come before any table: put it first.
        std::fs::write(&config, format!("{extra}\n{base}")).expect("write config");
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
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free port")
        .port()
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

impl Env {
    /// Like `Env::new`, for configurations with tables: `top` holds top-level keys and
    /// `tables` the `[section]` parts. (`Env::new` appends `data_dir` after `extra`, where
    /// it would land inside the last table of `extra`.) The socket and RADIUS get the same
    /// defaults as in `Env::new` unless `tables` sets them.
    pub fn with_tables(top: &str, tables: &str) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("otpd.toml");
        let mut text = format!(
            "{top}\ndata_dir = \"{}\"\n{tables}\n",
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
