//! A node cut off from PostgreSQL without a word: the network drops every packet to the
//! server (an iptables DROP rule on its port, as a failed switch or a partition would),
//! so no reset ever comes and a read waits for an answer that cannot arrive. The node must
//! answer its logins Reject within about its timeouts instead of hanging for TCP's
//! retransmission limit (about 15 minutes on Linux), and serve again by itself once the
//! network is back (docs/cluster.md, the failure table).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job

mod common;
mod products;

use common::Env;
use products::postgres::Cluster;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Drops every packet sent to `port` on this host while it lives.
struct Partition(u16);

impl Partition {
    fn start(port: u16) -> Partition {
        common::require("iptables", "iptables");
        iptables("-I", port);
        Partition(port)
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        iptables("-D", self.0);
    }
}

fn iptables(op: &str, port: u16) {
    let out = Command::new("iptables")
        .args([
            op,
            "INPUT",
            "-p",
            "tcp",
            "--dport",
            &port.to_string(),
            "-j",
            "DROP",
        ])
        .output()
        .expect("run iptables");
    assert!(
        out.status.success(),
        "iptables {op}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A check over the socket, waiting up to `wait` for the answer: `None` when none came.
fn check(path: &Path, user: &str, password: &str, wait: Duration) -> Option<Value> {
    let mut s = UnixStream::connect(path).expect("connect");
    s.set_read_timeout(Some(wait)).expect("timeout");
    let req = json!({"op":"check","user":user,"password":password,"service":"vpn"});
    s.write_all(format!("{req}\n").as_bytes()).expect("write");
    let mut line = String::new();
    match BufReader::new(&s).read_line(&mut line) {
        Ok(n) if n > 0 => Some(serde_json::from_str(&line).expect("json answer")),
        _ => None,
    }
}

#[test]
fn a_node_cut_off_without_a_reset_rejects_within_its_timeouts_and_recovers() {
    let c = Cluster::primary();
    let env = Env::with_tables(
        "",
        &format!(
            "[store]\nkind = \"postgres\"\nurl = \"{}\"\nnode_name = \"A\"\n\
             allow_async_replication = true\nstatement_timeout = \"2s\"\n\
             connect_timeout = \"1s\"\n\
             [lockout]\nfree_failures = 1000\nmax_failures = 0\n\
             per_source_max_failures = 0\nsource_max_failures = 0\n",
            c.url()
        ),
    );
    env.enrol("ann", "1234", "hotp", "everywhere");
    let d = env.start();
    let path = env.socket_path();
    let code = |n: u64| format!("1234{}", common::hotp_code(n));
    let first = check(&path, "ann", &code(0), Duration::from_secs(10)).expect("answer");
    assert_eq!(first["verdict"], "accept", "{first}");

    let cut = Partition::start(c.primary.port);
    // Several logins at once: the one that leads the cache's barrier, those that wait for
    // it, and the database reads after it all meet the dead network.
    let started = Instant::now();
    let logins: Vec<_> = (1..=4u64)
        .map(|n| {
            let (path, pw) = (path.clone(), code(n));
            std::thread::spawn(move || check(&path, "ann", &pw, Duration::from_secs(30)))
        })
        .collect();
    for (i, t) in logins.into_iter().enumerate() {
        let a = t.join().expect("login thread");
        let took = started.elapsed();
        let a = a.unwrap_or_else(|| panic!("login {i}: no answer in {took:?} while cut off"));
        assert_eq!(
            a["verdict"],
            "reject",
            "login {i} while cut off: {a}\n{}",
            common::plain_log(&d)
        );
        eprintln!("login {i} while cut off: {took:?}: {a}");
        assert!(
            took < Duration::from_secs(12),
            "login {i} answered only after {took:?}: the node hung on the dead network"
        );
    }

    drop(cut);
    // Back by itself: a fresh code is accepted within a few seconds, without a restart.
    let back = Instant::now();
    let mut n = 10;
    loop {
        let a = check(&path, "ann", &code(n), Duration::from_secs(30)).expect("answer");
        if a["verdict"] == "accept" {
            eprintln!(
                "accepted again {:?} after the network came back",
                back.elapsed()
            );
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(20),
            "still no accept {:?} after the network came back: {a}",
            back.elapsed()
        );
        n += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(d.stop().success(), "clean exit on SIGTERM");
}
