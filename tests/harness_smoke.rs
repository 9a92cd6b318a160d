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

mod harden;

/// The RADIUS test client waits for its whole time even when its process is stopped and
/// continued meanwhile: a receive with a timeout then fails with EINTR (signal(7)), which it
/// once took for "no answer", so a burst ended early and counted answers still on their way
/// as never sent (CI of 6fb8475, tests/postgres_cache.rs). Here a child process stops and
/// continues this test process while it waits for an answer that comes 1.5 s late.
#[test]
fn the_radius_test_client_waits_on_through_a_stop_and_continue() {
    use std::net::UdpSocket;
    use std::time::{Duration, Instant};
    let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = server.local_addr().expect("addr").port();
    let nas = harden::Nas::new(port);
    nas.send(b"ping");
    let answering = std::thread::spawn(move || {
        let mut buf = [0u8; 16];
        let (_, nas_addr) = server.recv_from(&mut buf).expect("ping");
        std::thread::sleep(Duration::from_millis(1500));
        server.send_to(b"pong", nas_addr).expect("pong");
    });
    let me = std::process::id();
    let mut stopper = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "sleep 0.3; kill -STOP {me}; sleep 0.2; kill -CONT {me}"
        ))
        .spawn()
        .expect("sh");
    let start = Instant::now();
    let got = nas.recv(Duration::from_secs(5));
    let waited = start.elapsed();
    assert!(
        stopper.wait().expect("sh").success(),
        "the stop and continue"
    );
    answering.join().expect("answering thread");
    assert_eq!(
        got.as_deref(),
        Some(&b"pong"[..]),
        "no answer after {waited:?}, although it came at 1.5 s"
    );
}
