//! Failover of the PostgreSQL primary under load, with two otpd nodes started from
//! conf/otpd-cluster.toml (both database hosts in one url, target_session_attrs=read-write):
//!
//! - the primary killed with `pg_ctl -m immediate` while clients log in over the Unix
//!   sockets of both nodes, the synchronous standby promoted: every Accept any client got
//!   has its counter on the new primary and is rejected when replayed; logins in flight at
//!   the kill are answered Reject or not at all; nothing is accepted while there is no
//!   primary; both nodes carry on against the new primary without a restart;
//! - the negative control: an asynchronous standby that is behind when the primary dies
//!   lets a used code in a second time after the failover when `allow_async_replication =
//!   true` (printed), the same steps with a synchronous standby never accept a code twice,
//!   and without the setting otpd refuses to start against the asynchronous primary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job

mod common;
mod products;

use common::{oathtool, Daemon, Env, SECRET_B32};
use products::postgres::{Cluster, Replication};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the test adds to the shipped file: a wide HOTP window (a client moves on to its next
/// code after every attempt, answered or not) and no lockout (rejects while the database is
/// away must not lock the test's accounts).
const TEST_TABLES: &str = "
[hotp]
window = 100
[lockout]
free_failures = 1000
max_failures = 0
per_source_max_failures = 0
source_max_failures = 0
";

/// conf/otpd-cluster.toml for one node of `c`: its hosts, ports, paths and name put in.
fn node_config(c: &Cluster, dir: &Path, key: &Path, name: &str, extra_store: &str) -> PathBuf {
    let shipped =
        std::fs::read_to_string(products::repo().join("conf/otpd-cluster.toml")).expect("conf");
    let standby_port = c.standby.as_ref().map(|s| s.port).expect("a standby");
    let mut text = shipped
        .replace(
            "otpd@db1.example.org:5432",
            &format!("postgres@127.0.0.1:{}", c.primary.port),
        )
        .replace("db2.example.org:5432", &format!("127.0.0.1:{standby_port}"))
        .replace("/var/lib/otpd", &dir.join("data").display().to_string())
        .replace("/etc/otpd/keys/otpd.key", &key.display().to_string())
        .replace(
            "/run/otpd/otpd.sock",
            &dir.join("otpd.sock").display().to_string(),
        )
        .replace(
            "node_name = \"otpd1\"",
            &format!("node_name = \"{name}\"{extra_store}"),
        )
        .replace(
            "0.0.0.0:1812",
            &format!("127.0.0.1:{}", common::free_udp_port()),
        )
        .replace("address = \"192.0.2.1\"", "address = \"127.0.0.1\"");
    // The test runs as root: the socket lets root in (allow_uids = [0]) as shipped.
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        for from in ["example.org", "/etc/otpd", "/run/otpd", "192.0.2."] {
            assert!(!line.contains(from), "{from} left in the config: {line}");
        }
    }
    text.push_str(TEST_TABLES);
    let path = dir.join("otpd.toml");
    std::fs::write(&path, text).expect("write config");
    std::fs::create_dir_all(dir.join("data")).expect("data dir");
    path
}

/// Two nodes (or one) of otpd on the cluster, sharing node a's key file.
fn nodes(c: &Cluster, names: &[&str], extra_store: &str) -> Vec<Env> {
    let mut out: Vec<Env> = Vec::new();
    for name in names {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = match out.first() {
            Some(first) => first.path().join("data").join("otpd.key"),
            None => dir.path().join("data").join("otpd.key"),
        };
        let config = node_config(c, dir.path(), &key, name, extra_store);
        let env = Env { dir, config };
        if out.is_empty() {
            // The key file and the schema; also on the primary of the negative control,
            // whose standby is asynchronous (only `serve` is refused there).
            let mut init = env.cmd(&["init"]);
            init.env("OTPD__STORE__ALLOW_ASYNC_REPLICATION", "true");
            let (ok, text) = products::run(&mut init);
            assert!(ok, "otpd init: {text}");
        }
        out.push(env);
    }
    out
}

/// HOTP codes 0..n of SECRET_B32, made by oathtool in one call.
fn hotp_codes(n: u64) -> Vec<String> {
    let out = oathtool(&[
        "--hotp",
        "-b",
        SECRET_B32,
        "-c",
        "0",
        "-w",
        &(n - 1).to_string(),
    ]);
    let codes: Vec<String> = out.lines().map(|l| l.trim().to_string()).collect();
    assert_eq!(codes.len() as u64, n);
    codes
}

/// One check over a node's socket: the verdict, or None when no answer came within `wait`
/// (the daemon closed the connection, or is still waiting for the database).
fn check(sock: &Path, user: &str, password: &str, wait: Duration) -> Option<String> {
    let mut s = UnixStream::connect(sock).ok()?;
    s.set_read_timeout(Some(wait)).ok()?;
    let req = json!({"op": "check", "user": user, "password": password, "service": "vpn",
                     "client": "pam"});
    s.write_all(format!("{req}\n").as_bytes()).ok()?;
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).ok()?;
    let v: Value = serde_json::from_str(&line).ok()?;
    v["verdict"].as_str().map(str::to_string)
}

#[derive(Debug, Clone)]
struct Attempt {
    user: String,
    counter: u64,
    node: usize,
    sent: Instant,
    answered: Option<Instant>,
    verdict: Option<String>,
}

fn last_counter(node: &products::postgres::Node, user: &str) -> i64 {
    node.sql(&format!(
        "SELECT t.last_counter FROM tokens t JOIN accounts a ON a.id = t.account_id \
         WHERE a.name = '{user}'"
    ))
    .parse()
    .expect("last_counter")
}

#[test]
fn killing_the_primary_under_load_loses_no_accept_and_both_nodes_carry_on() {
    let mut c = Cluster::with_standby(Replication::Sync);
    let envs = nodes(&c, &["a", "b"], "");
    const USERS: usize = 12;
    let users: Vec<String> = (0..USERS).map(|i| format!("user{i}")).collect();
    for u in &users {
        envs[0].enrol(u, "1234", "hotp", "everywhere");
    }
    let mut daemons: Vec<Daemon> = envs.iter().map(|e| e.start()).collect();
    let socks: Vec<PathBuf> = envs.iter().map(|e| e.socket_path()).collect();
    let codes = Arc::new(hotp_codes(3000));

    let stop = Arc::new(AtomicBool::new(false));
    let log: Arc<Mutex<Vec<Attempt>>> = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(i, user)| {
            let (user, socks, codes, stop, log) = (
                user.clone(),
                socks.clone(),
                codes.clone(),
                stop.clone(),
                log.clone(),
            );
            std::thread::spawn(move || {
                let mut counter = 0u64;
                while !stop.load(Ordering::SeqCst) && (counter as usize) < codes.len() {
                    let node = (i + counter as usize) % 2;
                    let sent = Instant::now();
                    let verdict = check(
                        &socks[node],
                        &user,
                        &format!("1234{}", codes[counter as usize]),
                        Duration::from_secs(15),
                    );
                    let answered = verdict.as_ref().map(|_| Instant::now());
                    let accepted = verdict.as_deref() == Some("accept");
                    log.lock().unwrap().push(Attempt {
                        user: user.clone(),
                        counter,
                        node,
                        sent,
                        answered,
                        verdict,
                    });
                    // The next code whatever the answer: an unanswered one may be used.
                    counter += 1;
                    if !accepted {
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            })
        })
        .collect();

    let accepts = |log: &Mutex<Vec<Attempt>>, after: Instant, node: usize| {
        log.lock()
            .unwrap()
            .iter()
            .filter(|a| a.sent > after && a.node == node && a.verdict.as_deref() == Some("accept"))
            .count()
    };
    let start = Instant::now();
    let deadline = start + Duration::from_secs(60);
    while accepts(&log, start, 0) + accepts(&log, start, 1) < 60 {
        assert!(
            Instant::now() < deadline,
            "no load before the kill: {:?}",
            log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let t_kill = Instant::now();
    c.kill_primary();
    let t_dead = Instant::now();
    // The nodes notice, the in-flight logins end; then the standby takes over.
    std::thread::sleep(Duration::from_secs(2));
    let t_promote_start = Instant::now();
    c.promote();
    let t_promoted = Instant::now();
    // The promoted node gets a synchronous standby of its own (Patroni's strict synchronous
    // mode: until it has one, its commits would not be replicated, and the nodes' batches
    // are refused).
    c.rebuild_standby();
    let t_rebuilt = Instant::now();
    eprintln!(
        "killed the primary in {:?}; promoted the standby {:?} after the kill, in {:?}; a new \
         synchronous standby for it in {:?}",
        t_dead - t_kill,
        t_promote_start - t_kill,
        t_promoted - t_promote_start,
        t_rebuilt - t_promoted
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    while accepts(&log, t_rebuilt, 0) < 10 || accepts(&log, t_rebuilt, 1) < 10 {
        assert!(
            Instant::now() < deadline,
            "the nodes do not accept again after the promotion: a {} b {}\n--- a:\n{}\n--- b:\n{}",
            accepts(&log, t_rebuilt, 0),
            accepts(&log, t_rebuilt, 1),
            common::plain_log(&daemons[0]),
            common::plain_log(&daemons[1])
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let t_recovered = Instant::now();
    stop.store(true, Ordering::SeqCst);
    for t in clients {
        t.join().expect("client thread");
    }
    let log = log.lock().unwrap().clone();
    let new_primary = c.standby();

    // Every Accept a client got: its counter is on the new primary.
    let accepted: Vec<&Attempt> = log
        .iter()
        .filter(|a| a.verdict.as_deref() == Some("accept"))
        .collect();
    for a in &accepted {
        let on_disk = last_counter(new_primary, &a.user);
        assert!(
            on_disk >= a.counter as i64,
            "{} got Accept for counter {} but the new primary has last_counter {on_disk}",
            a.user,
            a.counter
        );
    }
    // Logins in flight at the kill: sent before it, answered after it or never. Answered
    // once the primary was gone: Reject or nothing, never Accept. (One answered while
    // pg_ctl was still stopping it may be an Accept whose commit the standby had already
    // acknowledged; that it is on the new primary is checked above with every Accept.)
    let in_flight: Vec<&Attempt> = log
        .iter()
        .filter(|a| a.sent < t_kill && a.answered.is_none_or(|t| t > t_kill))
        .collect();
    for a in &in_flight {
        if a.answered.is_none_or(|t| t > t_dead) {
            assert_ne!(
                a.verdict.as_deref(),
                Some("accept"),
                "in flight at the kill: {a:?}"
            );
        }
    }
    // Nothing is accepted while there is no primary.
    for a in &log {
        if a.sent > t_dead && a.answered.is_some_and(|t| t < t_promote_start) {
            assert_ne!(
                a.verdict.as_deref(),
                Some("accept"),
                "accepted without a primary: {a:?}"
            );
        }
    }
    // Replaying every accepted code, on the other node than it was accepted on: Reject.
    for a in &accepted {
        let node = 1 - a.node;
        let v = check(
            &socks[node],
            &a.user,
            &format!("1234{}", codes[a.counter as usize]),
            Duration::from_secs(15),
        );
        assert_eq!(
            v.as_deref(),
            Some("reject"),
            "replay of {a:?} on node {node}"
        );
    }
    // Both nodes are the processes started at the beginning.
    for d in daemons.iter_mut() {
        assert!(
            matches!(d.child.try_wait(), Ok(None)),
            "node {} ended:\n{}",
            d.pid(),
            d.log_text()
        );
    }
    let answered = |v: &str| {
        log.iter()
            .filter(|a| a.verdict.as_deref() == Some(v))
            .count()
    };
    eprintln!(
        "{} logins: {} accepted, {} rejected, {} unanswered; {} in flight at the kill ({} \
         accepted before the primary was gone, {} rejected, {} unanswered); both nodes \
         accepted again {:?} after the new primary had its standby; {} accepted codes \
         replayed, all rejected",
        log.len(),
        answered("accept"),
        answered("reject"),
        log.iter().filter(|a| a.verdict.is_none()).count(),
        in_flight.len(),
        in_flight
            .iter()
            .filter(|a| a.verdict.as_deref() == Some("accept"))
            .count(),
        in_flight
            .iter()
            .filter(|a| a.verdict.as_deref() == Some("reject"))
            .count(),
        in_flight.iter().filter(|a| a.verdict.is_none()).count(),
        t_recovered - t_rebuilt,
        accepted.len()
    );
    for d in daemons {
        let log = d.log.clone();
        let status = d.stop();
        std::thread::sleep(Duration::from_millis(200));
        let log = log.lock().unwrap().join("\n");
        let tail: String = log
            .lines()
            .filter(|l| !l.contains("otpd::audit"))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(status.success(), "a node ended with {status}:\n{tail}");
    }
}

/// `otpd serve` that must not start: its exit status and what it said.
fn refused_start(env: &Env) -> (bool, String) {
    let mut child = env
        .cmd(&["serve"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn otpd serve");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(_st) = child.try_wait().expect("wait") {
            let out = child.wait_with_output().expect("output");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            return (out.status.success(), text);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("otpd serve kept running against an asynchronous primary");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A code accepted while the standby is away, then the primary killed and the standby
/// (behind) promoted: how often did that code get Accept, before and after the failover?
/// Bob's logins (his own token) only tell when the node serves again.
fn accepts_of_one_code_across_a_lost_failover(
    replication: Replication,
    allow_async: bool,
) -> (Option<String>, Option<String>) {
    let mut c = Cluster::with_standby(replication);
    let extra = if allow_async {
        "\nallow_async_replication = true"
    } else {
        ""
    };
    // Accepted on node a, replayed on node b after the failover.
    let envs = nodes(&c, &["a", "b"], extra);
    let env = &envs[0];
    env.enrol("alice", "1234", "hotp", "everywhere");
    env.enrol("bob", "1234", "hotp", "everywhere");
    let daemons: Vec<Daemon> = envs.iter().map(|e| e.start()).collect();
    let (sock_a, sock_b) = (envs[0].socket_path(), envs[1].socket_path());
    let codes = hotp_codes(200);
    let wait = Duration::from_secs(20);
    assert_eq!(
        check(&sock_a, "alice", &format!("1234{}", codes[0]), wait).as_deref(),
        Some("accept")
    );
    c.wait_standby_caught_up();
    // The standby goes away (a network problem, a restart): with a synchronous standby the
    // commit waits for it; with an asynchronous one it does not.
    c.stop_standby();
    // A synchronous commit waits for as long as the standby is away (statement_timeout does
    // not end that wait): the client gives up after 8 s.
    let first = check(
        &sock_a,
        "alice",
        &format!("1234{}", codes[1]),
        Duration::from_secs(8),
    );
    c.kill_primary();
    c.standby_mut().restart();
    c.promote();
    if replication == Replication::Sync {
        c.rebuild_standby();
    }
    // Node b serves again (bob's own codes tell, without touching alice's counter).
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut n = 0;
    loop {
        let v = check(&sock_b, "bob", &format!("1234{}", codes[n]), wait);
        n += 1;
        if v.as_deref() == Some("accept") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node b does not serve after the failover:\n{}",
            common::plain_log(&daemons[1])
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let replay = check(&sock_b, "alice", &format!("1234{}", codes[1]), wait);
    for d in daemons {
        assert!(d.stop().success());
    }
    (first, replay)
}

#[test]
fn negative_control_an_async_standby_lets_a_used_code_in_again_after_failover() {
    // Without the setting, otpd refuses to start against a primary without a synchronous
    // standby, and says which setting would allow it.
    let c = Cluster::with_standby(Replication::Async);
    let envs = nodes(&c, &["a"], "");
    let (ok, text) = refused_start(&envs[0]);
    assert!(!ok, "otpd started against an asynchronous primary:\n{text}");
    assert!(text.contains("allow_async_replication"), "{text}");
    assert!(text.contains("synchronous standby"), "{text}");
    drop(c);

    let (first, replay) = accepts_of_one_code_across_a_lost_failover(Replication::Async, true);
    println!(
        "NEGATIVE CONTROL (asynchronous standby, allow_async_replication = true): HOTP code 1 \
         of alice answered {first:?} on node a before the failover and {replay:?} when \
         replayed on node b after it"
    );
    assert_eq!(
        first.as_deref(),
        Some("accept"),
        "the commit did not wait for the standby"
    );
    assert_eq!(
        replay.as_deref(),
        Some("accept"),
        "the promoted asynchronous standby never had the counter: the used code is valid again"
    );

    let (first, replay) = accepts_of_one_code_across_a_lost_failover(Replication::Sync, false);
    println!(
        "SAME STEPS, synchronous standby (the default): HOTP code 1 of alice answered {first:?} \
         on node a before the failover and {replay:?} on node b after it"
    );
    assert_ne!(
        first.as_deref(),
        Some("accept"),
        "accepted while the synchronous standby was away"
    );
    let accepts = [&first, &replay]
        .iter()
        .filter(|v| v.as_deref() == Some("accept"))
        .count();
    assert!(accepts <= 1, "one code, {accepts} accepts");
}
