//! The README's first command, verbatim, on a clean copy of the repository: `cargo run
//! --release -- serve` in a directory that holds only what `git archive HEAD` gives (no
//! target/, no otpd-data/, nothing untracked) must build, set itself up and say "otpd ready".
//!
//! Two departures from a new user's terminal, both for the test machine's sake and neither
//! touching what the command does: CARGO_TARGET_DIR points at this checkout's own target
//! directory, so the dependencies already compiled for release (by `cargo deb` or an earlier
//! run) are reused instead of rebuilt from nothing (otpd itself is still compiled from the
//! copy); and OTPD__SOCKET__PATH / OTPD__RADIUS__LISTEN move the socket and RADIUS to a
//! private path and a free port, because as root (CI) the built-in /run/otpd/otpd.sock and
//! 127.0.0.1:1812 could belong to an installed otpd or another test. The copy is of the
//! committed HEAD: uncommitted changes are not in it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job
mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A cold release build on a small CI machine takes minutes; this only bounds a hang.
const BUILD_AND_START: Duration = Duration::from_secs(40 * 60);

#[test]
fn readme_first_command_runs_verbatim_from_a_clean_copy() {
    common::require("git", "git");
    let repo = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{repo}/README.md")).expect("README.md");
    assert!(
        readme.contains("cargo run --release -- serve "),
        "README's first command is no longer `cargo run --release -- serve`: update this test"
    );

    let tmp = tempfile::tempdir().expect("tempdir");
    let copy = tmp.path().join("otpd");
    std::fs::create_dir(&copy).expect("copy dir");
    let archive = Command::new("sh")
        .arg("-c")
        .arg("git -C \"$1\" archive --format=tar HEAD | tar -x -C \"$2\"")
        .args(["sh", repo])
        .arg(&copy)
        .output()
        .expect("git archive");
    assert!(
        archive.status.success(),
        "git archive HEAD of {repo} failed (this test needs a git checkout): {}",
        String::from_utf8_lossy(&archive.stderr)
    );

    let port = common::free_udp_port();
    let mut child = Command::new(env!("CARGO"))
        .args(["run", "--release", "--", "serve"])
        .current_dir(&copy)
        .env("CARGO_TARGET_DIR", format!("{repo}/target"))
        .env("OTPD__SOCKET__PATH", tmp.path().join("otpd.sock"))
        .env("OTPD__RADIUS__LISTEN", format!("127.0.0.1:{port}"))
        .env_remove("OTPD_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cargo run");
    // `cargo run` execs the binary: after the build this pid is the daemon's.
    let pid = child.id();
    let guard = KillOnDrop(pid);
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().expect("stderr");
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx2.send(line);
        }
    });
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let started = Instant::now();
    let mut seen = Vec::new();
    loop {
        let left = BUILD_AND_START.saturating_sub(started.elapsed());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let ready = line.contains("otpd ready");
                seen.push(line);
                if ready {
                    break;
                }
            }
            Err(_) => panic!(
                "no \"otpd ready\" within {BUILD_AND_START:?}:\n{}",
                seen.join("\n")
            ),
        }
    }
    println!("build and start took {:?}", started.elapsed());
    let out = seen.join("\n");
    assert!(out.contains("state directory"), "{out}");
    // It set itself up in ./otpd-data, with the key file private.
    let key = copy.join("otpd-data/otpd.key");
    let mode = std::fs::metadata(&key)
        .unwrap_or_else(|e| panic!("{}: {e}\n{out}", key.display()))
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(copy.join("otpd-data/otpd.db").exists());

    five_minute_path(&copy, &format!("{repo}/target/release/otpd"));

    // SAFETY: signalling the process we started, by its pid.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        assert!(Instant::now() < deadline, "otpd did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    std::mem::forget(guard);
    assert!(status.success(), "exit status {status}");
}

/// The README's "first login in five minutes", in the copy next to the running daemon, with
/// the binary `cargo run` built. The token gets a known secret (`--secret`) so that oathtool
/// can play the authenticator app. As the README says: the code used for activation is spent,
/// so the first check with it is rejected, and the app's next code is accepted.
fn five_minute_path(dir: &std::path::Path, bin: &str) {
    let otpd = |args: &[&str], stdin: Option<&str>| -> (bool, String) {
        let mut c = Command::new(bin)
            .args(args)
            .current_dir(dir)
            .env_remove("OTPD_CONFIG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("otpd");
        if let Some(text) = stdin {
            use std::io::Write;
            c.stdin
                .take()
                .expect("stdin")
                .write_all(text.as_bytes())
                .expect("stdin");
        }
        drop(c.stdin.take());
        let o = c.wait_with_output().expect("otpd");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        (o.status.success(), text)
    };
    let must = |args: &[&str], stdin: Option<&str>| -> String {
        let (ok, text) = otpd(args, stdin);
        assert!(ok, "otpd {args:?}: {text}");
        text
    };
    must(&["user", "add", "alice", "--pin-stdin"], Some("1234\n"));
    let added = must(
        &[
            "token",
            "add",
            "alice",
            "--type",
            "totp",
            "--secret",
            common::SECRET_B32,
        ],
        None,
    );
    let serial = added
        .lines()
        .find_map(|l| l.strip_prefix("serial:"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| panic!("no serial in: {added}"));
    let step = common::unix_now() / 30;
    let code = common::totp_code_now();
    must(&["token", "activate", &serial, &code], None);
    must(&["user", "set", "alice", "--level", "everywhere"], None);
    let (ok, text) = otpd(
        &["check", "alice", "--service", "vpn"],
        Some(&format!("1234{code}\n")),
    );
    assert!(!ok, "the activation code must be spent: {text}");
    let audit = must(&["audit"], None);
    assert!(audit.contains("wrong or used code"), "{audit}");
    // The app's next code.
    let deadline = Instant::now() + Duration::from_secs(40);
    while common::unix_now() / 30 <= step {
        assert!(Instant::now() < deadline, "the clock does not move");
        std::thread::sleep(Duration::from_millis(200));
    }
    let next = common::totp_code_now();
    let checked = must(
        &["check", "alice", "--service", "vpn"],
        Some(&format!("1234{next}\n")),
    );
    assert!(checked.contains("accept"), "{checked}");
    let audit = must(&["audit"], None);
    assert!(audit.contains("verdict=accept"), "{audit}");
}

/// Ends the daemon (or cargo, if the test fails during the build) by its pid.
struct KillOnDrop(u32);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: our own child's pid.
        unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
    }
}
