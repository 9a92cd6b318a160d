//! SIGHUP (`systemctl reload otpd`): a good file takes effect, a bad one is refused with the
//! key named and the running configuration stays.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job
mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// The verdict the daemon gives over its socket for a user it does not know.
fn unknown_user_verdict(env: &common::Env) -> String {
    let mut s = UnixStream::connect(env.socket_path()).expect("connect socket");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(
        b"{\"op\":\"check\",\"user\":\"nobody-here\",\"password\":\"1234123456\",\"service\":\"vpn\"}\n",
    )
    .expect("send");
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).expect("answer");
    let v: serde_json::Value = serde_json::from_str(&line).expect("json answer");
    v["verdict"].as_str().expect("verdict").to_string()
}

fn sighup(d: &common::Daemon) {
    // SAFETY: signalling our own child by its pid.
    unsafe {
        libc::kill(d.pid() as i32, libc::SIGHUP);
    }
}

fn wait_log(d: &common::Daemon, want: &str, nth: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let log = d.log_text();
        if log.matches(want).count() >= nth {
            return log;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "no `{want}` (#{nth}) in the daemon's log:\n{}",
        d.log_text()
    );
}

#[test]
fn reload_applies_a_good_file_and_refuses_a_bad_one() {
    let env = common::Env::new("unknown_user = \"defer\"\n");
    let original = std::fs::read_to_string(&env.config).expect("config");
    let d = env.start();
    assert_eq!(unknown_user_verdict(&env), "defer");

    std::fs::write(
        &env.config,
        original.replace("unknown_user = \"defer\"", "unknown_user = \"reject\""),
    )
    .expect("write");
    sighup(&d);
    wait_log(&d, "configuration reloaded", 1);
    assert_eq!(unknown_user_verdict(&env), "reject", "the new file applies");

    std::fs::write(&env.config, format!("bogus_key = 1\n{original}")).expect("write");
    sighup(&d);
    let log = wait_log(&d, "reload refused", 1);
    assert!(log.contains("bogus_key"), "the bad key is named:\n{log}");
    assert_eq!(
        unknown_user_verdict(&env),
        "reject",
        "the running config stays"
    );

    // A key read only at start is reported, not silently ignored.
    std::fs::write(
        &env.config,
        original.replace(
            "[radius]\nlisten = []",
            "[radius]\nlisten = [\"127.0.0.1:1\"]",
        ),
    )
    .expect("write");
    sighup(&d);
    let log = wait_log(&d, "configuration reloaded", 2);
    assert!(
        log.contains("`radius.listen` changed: takes effect at the next restart"),
        "{log}"
    );

    // Still alive and stops cleanly after all that.
    assert!(d.child_alive());
    assert!(d.stop().success());
}
