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

/// Ends the daemon (or cargo, if the test fails during the build) by its pid.
struct KillOnDrop(u32);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: our own child's pid.
        unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
    }
}
