//! `otpd status` asks the running daemon over its socket; a stopped daemon is a clear error.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job
mod common;

#[test]
fn status_reports_the_running_daemon_and_a_stopped_one_clearly() {
    let env = common::Env::new("");
    env.enrol("alice", "1234", "hotp", "everywhere");
    let d = env.start();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = env.ok(&["status", "--json"], None);
    let v: serde_json::Value = serde_json::from_str(&out).expect("status json");
    assert_eq!(v["store"], "ok", "{v}");
    assert_eq!(v["accounts"], 1, "{v}");
    assert_eq!(v["tokens"], 1, "{v}");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(v["requests"]["accept"].is_u64(), "{v}");
    assert!(
        v["uptime_s"].as_u64() >= Some(1),
        "uptime counts from the start: {v}"
    );
    let text = env.ok(&["status"], None);
    assert!(text.contains("store:    ok"), "{text}");
    assert!(d.stop().success());

    let out = env.run(&["status"], None);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not answer on"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
