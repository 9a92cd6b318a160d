#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job
mod common;

/// The harness itself: init, enrol, check, and a daemon that starts and stops by SIGTERM.
#[test]
fn harness_enrols_checks_and_runs_the_daemon() {
    let env = common::Env::new("");
    common::Env::enrol(&env, "alice", "1234", "hotp", "everywhere");
    let v = env.check("alice", "vpn", &format!("1234{}", common::hotp_code(0)));
    assert_eq!(v["verdict"], "accept", "{v}");
    let d = env.start();
    assert!(d.stop().success());
}
