//! The systemd unit: its own command lines boot the daemon, which reports READY=1, pings the
//! watchdog and says STOPPING=1; and its hardening stays at an exposure of 2.0 or lower.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job
mod common;

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// ExecStart=/ExecStartPre= of systemd/otpd.service with the binary and config swapped for
/// the test's.
fn unit_command(key: &str, env: &common::Env) -> Vec<String> {
    let unit =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/otpd.service"))
            .expect("unit file");
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in the unit"));
    line.split_whitespace()
        .map(|w| match w {
            "/usr/sbin/otpd" => common::BIN.to_string(),
            "/etc/otpd/otpd.toml" => env.config.display().to_string(),
            other => other.to_string(),
        })
        .collect()
}

fn recv_until(sock: &UnixDatagram, want: &str, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    while Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = msg.contains(want);
            seen.push(msg);
            if done {
                return seen;
            }
        }
    }
    panic!("no {want} within {within:?}; got {seen:?}");
}

#[test]
fn unit_command_line_reports_ready_watchdog_and_stopping() {
    let env = common::Env::new("");
    let pre = unit_command("ExecStartPre", &env);
    let out = Command::new(&pre[0])
        .args(&pre[1..])
        .output()
        .expect("ExecStartPre");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let notify = env.path().join("notify.sock");
    let sock = UnixDatagram::bind(&notify).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let start = unit_command("ExecStart", &env);
    let mut child = Command::new(&start[0])
        .args(&start[1..])
        .env("NOTIFY_SOCKET", &notify)
        .env("WATCHDOG_USEC", "400000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ExecStart");
    let pid = child.id();
    let guard = Guard(pid);
    recv_until(&sock, "READY=1", Duration::from_secs(20));
    recv_until(&sock, "WATCHDOG=1", Duration::from_secs(5));
    // SAFETY: signalling the child we started, by its pid.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    recv_until(&sock, "STOPPING=1", Duration::from_secs(10));
    let st = child.wait().expect("wait");
    assert!(st.success(), "exit status {st}");
    std::mem::forget(guard);
}

/// Kills the child by pid if the test fails half-way.
struct Guard(u32);
impl Drop for Guard {
    fn drop(&mut self) {
        // SAFETY: the pid is our own child's.
        unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
    }
}

#[test]
fn systemd_analyze_security_exposure_is_at_most_2() {
    common::require("systemd-analyze", "systemd");
    let unit = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/otpd.service");
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager", unit])
        .output()
        .expect("systemd-analyze");
    let text = String::from_utf8_lossy(&out.stdout);
    let level: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for otpd.service:").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no exposure figure in: {text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    println!("systemd-analyze security exposure: {level}");
    assert!(level <= 2.0, "exposure {level} > 2.0");
}

/// `systemd-analyze verify` accepts the unit as shipped (with the installed binary's path
/// swapped for the one just built, since verify checks that ExecStart= is executable).
/// tests/package.rs verifies the unit the package installs.
#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    common::require("systemd-analyze", "systemd");
    let unit =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/otpd.service"))
            .expect("unit file");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("otpd.service");
    std::fs::write(&path, unit.replace("/usr/sbin/otpd", common::BIN)).expect("write unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Other units on the machine may draw complaints; none may be about ours.
    assert!(
        out.status.success() && !text.contains("otpd.service:"),
        "systemd-analyze verify: {text}"
    );
}

/// A capability in the bounding set does nothing for a non-root service without the same
/// one in AmbientCapabilities=: the unit either grants one on purpose (both lines) or none.
/// otpd needs none (1812, the socket and the metrics port are unprivileged).
#[test]
fn the_unit_grants_no_capability() {
    let unit =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/otpd.service"))
            .expect("unit file");
    let value = |key: &str| -> Vec<String> {
        unit.lines()
            .filter_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(|v| v.trim().to_string())
            .collect()
    };
    assert_eq!(value("CapabilityBoundingSet"), [""], "{unit}");
    assert!(value("AmbientCapabilities").iter().all(String::is_empty));
}
