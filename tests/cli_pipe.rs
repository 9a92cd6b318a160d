//! The CLI treats a closed pipe as the normal end of its output (`otpd audit | head -1`):
//! exit 0, no panic message. The reading end is closed before otpd starts, so every write
//! fails with EPIPE, however little otpd prints.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job
mod common;

use common::Env;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::Stdio;

/// A pipe whose reading end is already closed; its writing end as a child's stdout.
fn closed_pipe() -> Stdio {
    let mut fds = [0i32; 2];
    // SAFETY: pipe(2) fills the two descriptors on success.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
    // SAFETY: both descriptors are fresh and owned by nobody else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    Stdio::from(write)
}

fn run_into_closed_pipe(env: &Env, args: &[&str]) {
    let out = env
        .cmd(args)
        .stdin(Stdio::null())
        .stdout(closed_pipe())
        .stderr(Stdio::piped())
        .output()
        .expect("run otpd");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "otpd {args:?} into a closed pipe: {} {err}",
        out.status
    );
    assert!(!err.contains("panicked"), "otpd {args:?}: {err}");
    assert!(err.is_empty(), "otpd {args:?} wrote to stderr: {err}");
}

#[test]
fn closed_pipe_is_a_normal_end_of_output() {
    let env = Env::new("");
    env.enrol("alice", "1234", "hotp", "everywhere");
    env.enrol("bob", "1234", "hotp", "off");
    env.check("alice", "vpn", "1234000000");
    env.check("bob", "vpn", "whatever");
    for args in [
        &["audit"][..],
        &["audit", "--json"],
        &["user", "list"],
        &["token", "list"],
        &["config", "check"],
    ] {
        run_into_closed_pipe(&env, args);
    }
    // The same through a real shell pipeline with pipefail, as an admin types it.
    let cmd = format!(
        "set -o pipefail; '{}' --config '{}' audit | head -1 >/dev/null",
        common::BIN,
        env.config.display()
    );
    let out = std::process::Command::new("bash")
        .args(["-c", &cmd])
        .output()
        .expect("bash");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{} {err}", out.status);
    assert!(!err.contains("panicked"), "{err}");
}
