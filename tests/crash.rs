//! Single use survives a crash: RADIUS load from several clients, SIGKILL in the middle of it,
//! restart, and every code that got an Access-Accept is sent again: all must be rejected. The
//! database passes SQLite's integrity check afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job
mod common;

// The benchmark's own RADIUS client and account derivation (written from the RFCs, not
// shared with the server), so this test and the benchmark speak the same protocol.
#[allow(dead_code)]
#[path = "../src/bin/otpd-bench/accounts.rs"]
mod accounts;
#[allow(dead_code)]
#[path = "../src/bin/otpd-bench/radius.rs"]
mod radius;

use common::Env;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "crash-test-secret-0123";
const ACCOUNTS: usize = 64;
const CLIENTS: usize = 8;

fn rig() -> (Env, u16) {
    let port = common::free_udp_port();
    // Replays are failures: no throttle or lock, so every reject below is the counter's doing.
    let tables = format!(
        "[lockout]\nfree_failures = 1000000\nmax_failures = 0\nper_source_max_failures = 0\n\
         source_max_failures = 0\n\
         [radius]\nlisten = [\"127.0.0.1:{port}\"]\n\
         [[radius.clients]]\nname = \"nas\"\naddress = \"127.0.0.1\"\nsecret = \"{SECRET}\"\n\
         service = \"vpn\"\n"
    );
    let env = Env::with_tables("", &tables);
    let acc = accounts::Accounts::new("crash", "u", ACCOUNTS);
    let mut lines = Vec::new();
    acc.write_otpd(&mut lines, "everywhere").expect("accounts");
    let file = env.path().join("accounts.jsonl");
    std::fs::write(&file, lines).expect("write");
    env.ok(&["user", "import", file.to_str().expect("path")], None);
    (env, port)
}

/// Sends one login and waits up to `wait` for its verified answer code (None: no answer in
/// time; the socket's read timeout also ends the wait).
fn login(
    sock: &UdpSocket,
    (id, auth): (u8, [u8; 16]),
    user: &str,
    password: &str,
    wait: Duration,
) -> Option<u8> {
    let mut p = Vec::new();
    radius::access_request(
        &mut p,
        id,
        &auth,
        user,
        password.as_bytes(),
        SECRET.as_bytes(),
    );
    sock.send(&p).ok()?;
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            // A receive with a timeout is never restarted after a signal (signal(7)).
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        };
        if n >= 20 && buf[1] == id {
            return radius::verify_reply(&buf[..n], &auth, SECRET.as_bytes(), true).ok();
        }
    }
    None
}

fn socket(port: u16, timeout: Duration) -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(timeout)).expect("timeout");
    s
}

#[test]
fn accepted_codes_stay_used_after_sigkill_under_load() {
    let (env, port) = rig();
    let acc = Arc::new(accounts::Accounts::new("crash", "u", ACCOUNTS));
    let daemon = env.start();
    let stop = Arc::new(AtomicBool::new(false));
    // (account, counter) of every code that got an Access-Accept.
    let accepted = Arc::new(Mutex::new(Vec::<(usize, u64)>::new()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (acc, stop, accepted) = (acc.clone(), stop.clone(), accepted.clone());
            std::thread::spawn(move || {
                let sock = socket(port, Duration::from_millis(200));
                let mine: Vec<usize> = (c..ACCOUNTS).step_by(CLIENTS).collect();
                let mut next = vec![0u64; ACCOUNTS];
                let mut id = 0u8;
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let a = mine[(n as usize) % mine.len()];
                    n += 1;
                    let counter = next[a];
                    // Whatever the answer, the next login of this account uses the next code.
                    next[a] += 1;
                    id = id.wrapping_add(1);
                    let mut auth = [0u8; 16];
                    auth[..8].copy_from_slice(&n.to_le_bytes());
                    auth[8] = c as u8;
                    let pw = acc.otp_password(a, counter);
                    let answer = login(
                        &sock,
                        (id, auth),
                        &acc.users[a],
                        &pw,
                        Duration::from_millis(500),
                    );
                    if answer == Some(radius::ACCESS_ACCEPT) {
                        accepted.lock().expect("lock").push((a, counter));
                    }
                }
            })
        })
        .collect();
    // Load for a while, then the crash in the middle of it.
    let t0 = Instant::now();
    while accepted.lock().expect("lock").len() < 300 && t0.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    daemon.kill9();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client");
    }
    let accepted = accepted.lock().expect("lock").clone();
    assert!(
        accepted.len() >= 300,
        "only {} accepts before the crash",
        accepted.len()
    );

    let daemon = env.start();
    // Each replay waits for its answer: a slow one (a debug build's commit on a disk still
    // writing back a build) is judged, only a missing one fails, with the daemon's log.
    let sock = socket(port, Duration::from_secs(5));
    let mut again = Vec::new();
    for (i, (a, counter)) in accepted.iter().enumerate() {
        let mut auth = [0xa5u8; 16];
        auth[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let answer = login(
            &sock,
            (i as u8, auth),
            &acc.users[*a],
            &acc.otp_password(*a, *counter),
            Duration::from_secs(5),
        );
        assert!(
            answer.is_some(),
            "no answer to the replay of {a}/{counter} within 5 s; the daemon's log:\n{}",
            daemon.log_text()
        );
        if answer == Some(radius::ACCESS_ACCEPT) {
            again.push((*a, *counter));
        }
    }
    assert!(
        again.is_empty(),
        "{} of {} accepted codes were accepted again after the crash: {again:?}",
        again.len(),
        accepted.len()
    );
    assert!(daemon.stop().success());

    let db = rusqlite::Connection::open(env.path().join("data").join("otpd.db")).expect("db");
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(check, "ok");
}
