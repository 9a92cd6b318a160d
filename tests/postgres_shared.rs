//! State that several otpd nodes must share, end to end: two real `otpd serve` processes (A
//! and B) on one real PostgreSQL (a primary with a synchronous standby, started by the test
//! from Debian's packages), each with its own socket, both with the same key file. Each test
//! begins something on one node and finishes it, or tries it again, on the other:
//!
//! - a two-step login begun on A ends on B; the State is then spent on both nodes;
//! - a State sent to A and to B at the same moment is used once (20 rounds);
//! - an e-mailed code sent by A is used on B, then refused on A (and the other way round);
//!   the hourly send limit counts the sends of both nodes; a backup code used on A is
//!   refused on B;
//! - failures split over A and B lock the account at the configured total, also those from
//!   a familiar source (their own bucket);
//! - a source blocked by failures split over A and B is blocked on both;
//! - the webmail re-login cache hits on B after the Accept on A;
//! - after a failover (the primary killed, the standby promoted) the shared state starts
//!   empty (UNLOGGED): an old State is refused, the cache misses, and both nodes serve.
//!
//! How they fail on the old behaviour (each node's own memory for States, the re-login cache
//! with a random key per process, per-source counters in memory, and a gate that trusted its
//! memory over the account row for 2 s after its own failure): B does not know A's State
//! ("unknown or already used"), B misses A's re-login entry, B does not see A's source
//! failures, and the fifth attempt, on A, is evaluated (and accepted with the right code)
//! although A and B counted four failures together. The State race and the e-mailed code's
//! reuse held before too (a State was unknown to the other node; e-mailed codes were in the
//! database already): they guard the new shared paths against a State used twice.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job

mod common;
mod products;

use common::{audit_of, hotp_code, socket_call, Daemon, Env, SmtpSink};
use products::postgres::{Cluster, Replication};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// Two otpd nodes on one database, with the daemons running.
struct Pair {
    a: Env,
    b: Env,
    // Dropped in this order: the daemons, then the database.
    _da: Daemon,
    _db: Daemon,
    cluster: Cluster,
    _keys: tempfile::TempDir,
}

/// A node's configuration: its own data directory and socket, the shared key file and
/// database. `top`: top-level keys; `tables`: more tables.
fn node(name: &str, url: &str, key: &Path, top: &str, tables: &str) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("otpd.toml");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("data dir");
    let text = format!(
        "{top}\ndata_dir = \"{}\"\nkey_file = \"{}\"\n\n[store]\nkind = \"postgres\"\n\
         url = \"{url}\"\nnode_name = \"{name}\"\n\n{tables}\n\n[socket]\npath = \"{}\"\n\n\
         [radius]\nlisten = []\n",
        data.display(),
        key.display(),
        dir.path().join("otpd.sock").display()
    );
    std::fs::write(&config, text).expect("write config");
    Env { dir, config }
}

impl Pair {
    fn start(top: &str, tables: &str) -> Pair {
        let cluster = Cluster::with_standby(Replication::Sync);
        let keys = tempfile::tempdir().expect("tempdir");
        let key = keys.path().join("otpd.key");
        let url = cluster.url();
        let a = node("a", &url, &key, top, tables);
        let b = node("b", &url, &key, top, tables);
        // A makes the key file and the schema; B only uses them.
        a.ok(&["init"], None);
        let da = a.start();
        let db = b.start();
        Pair {
            a,
            b,
            _da: da,
            _db: db,
            cluster,
            _keys: keys,
        }
    }
}

fn ask(
    env: &Env,
    service: &str,
    rhost: Option<&str>,
    password: &str,
    state: Option<&str>,
) -> Value {
    let mut req = json!({"op": "check", "user": "alice", "password": password,
                         "service": service, "client": "pam"});
    if let Some(r) = rhost {
        req["rhost"] = json!(r);
    }
    if let Some(s) = state {
        req["state"] = json!(s);
    }
    socket_call(&env.socket_path(), &req)
}

/// What each counted failure said of its count, sorted: two nodes' audit records are not
/// listed in the order their logins were decided (each node commits its own batches).
fn failure_counts(reasons: &[String]) -> Vec<&str> {
    let mut counts: Vec<&str> = reasons
        .iter()
        .filter_map(|r| r.strip_prefix("wrong or used code; "))
        .collect();
    counts.sort_unstable();
    counts
}

fn verdict(v: &Value) -> &str {
    v["verdict"]
        .as_str()
        .unwrap_or_else(|| panic!("no verdict: {v}"))
}

/// alice's audit reasons, newest first, once at least `n` records are there (audit records
/// are committed with the next batch, a moment after the answer).
fn reasons(env: &Env, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let recs = audit_of(env, "alice");
        if recs.len() >= n || Instant::now() > deadline {
            assert!(
                recs.len() >= n,
                "{} audit records, not {n}: {recs:?}",
                recs.len()
            );
            // `otpd audit` lists the newest records oldest first: newest first here.
            return recs
                .iter()
                .rev()
                .map(|r| r["reason"].as_str().unwrap_or("").to_string())
                .collect();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

const TWO_STEP: &str = "[services.vpn]\nchallenge_on_pin_only = true\n";

#[test]
fn a_two_step_login_begun_on_a_ends_on_b_and_its_state_is_then_spent_on_both() {
    let p = Pair::start("", TWO_STEP);
    p.a.enrol("alice", "1234", "hotp", "everywhere");
    let d = ask(&p.a, "vpn", None, "1234", None);
    assert_eq!(verdict(&d), "challenge", "{d}");
    let state = d["state"].as_str().expect("state").to_string();
    let d = ask(&p.b, "vpn", None, &hotp_code(0), Some(&state));
    assert_eq!(verdict(&d), "accept", "B finishes A's login: {d}");
    // Used once: again on B and on A, with the next valid code, refused.
    for env in [&p.b, &p.a] {
        let d = ask(env, "vpn", None, &hotp_code(1), Some(&state));
        assert_eq!(verdict(&d), "reject", "{d}");
    }
    // Counted, not taken from the top: two nodes' audit batches may land in either order.
    let rs = reasons(&p.a, 4);
    assert_eq!(
        rs.iter()
            .filter(|r| r.contains("unknown or already used"))
            .count(),
        2,
        "{rs:#?}"
    );
}

#[test]
fn a_state_sent_to_a_and_b_at_once_is_used_once() {
    let p = Pair::start("", TWO_STEP);
    p.a.enrol("alice", "1234", "hotp", "everywhere");
    let mut next = 0u64;
    for round in 0..20 {
        // The PIN alone alternately on A and B; both codes valid, so only the State decides.
        let first = if round % 2 == 0 { &p.a } else { &p.b };
        let d = ask(first, "vpn", None, "1234", None);
        let state = d["state"].as_str().expect("state").to_string();
        let (ca, cb) = (hotp_code(next), hotp_code(next + 1));
        let (va, vb) = std::thread::scope(|s| {
            let ta = s.spawn(|| ask(&p.a, "vpn", None, &ca, Some(&state)));
            let tb = s.spawn(|| ask(&p.b, "vpn", None, &cb, Some(&state)));
            (ta.join().expect("a"), tb.join().expect("b"))
        });
        let won: Vec<bool> = [&va, &vb].iter().map(|v| verdict(v) == "accept").collect();
        assert_eq!(
            won.iter().filter(|w| **w).count(),
            1,
            "round {round}: exactly one Accept: {va} {vb}"
        );
        next += if won[0] { 1 } else { 2 };
    }
    eprintln!("20 rounds, one Accept each");
}

#[test]
fn an_emailed_code_sent_by_a_is_used_on_b_then_refused() {
    let smtp = SmtpSink::start("ok");
    let p = Pair::start(&smtp.config(""), "");
    p.a.ok(&["user", "add", "alice", "--pin-stdin"], Some("1234\n"));
    p.a.ok(
        &[
            "token",
            "add",
            "alice",
            "--type",
            "email",
            "--address",
            "alice@example.org",
            "--active",
        ],
        None,
    );
    p.a.ok(&["user", "set", "alice", "--level", "everywhere"], None);

    // Sent by A, answered with A's State on B, then the same code in one field on A.
    let d = ask(&p.a, "vpn", None, "1234", None);
    assert_eq!(verdict(&d), "challenge", "{d}");
    let state = d["state"].as_str().expect("state").to_string();
    let code = smtp.code(1);
    let d = ask(&p.b, "vpn", None, &code, Some(&state));
    assert_eq!(verdict(&d), "accept", "{d}");
    let d = ask(&p.a, "vpn", None, &format!("1234{code}"), None);
    assert_eq!(verdict(&d), "reject", "used on B: {d}");

    // Sent by B, used in one field on A, then with B's State on B.
    let d = ask(&p.b, "vpn", None, "1234", None);
    assert_eq!(verdict(&d), "challenge", "{d}");
    let state = d["state"].as_str().expect("state").to_string();
    let code = smtp.code(2);
    let d = ask(&p.a, "vpn", None, &format!("1234{code}"), None);
    assert_eq!(verdict(&d), "accept", "{d}");
    let d = ask(&p.b, "vpn", None, &code, Some(&state));
    assert_eq!(verdict(&d), "reject", "used on A: {d}");
}

#[test]
fn the_send_limit_counts_the_sends_of_both_nodes() {
    let smtp = SmtpSink::start("ok");
    let p = Pair::start(&smtp.config("email.max_per_hour = 3\n"), "");
    p.a.ok(&["user", "add", "alice", "--pin-stdin"], Some("1234\n"));
    p.a.ok(
        &[
            "token",
            "add",
            "alice",
            "--type",
            "email",
            "--address",
            "alice@example.org",
            "--active",
        ],
        None,
    );
    p.a.ok(&["user", "set", "alice", "--level", "everywhere"], None);
    for (i, env) in [&p.a, &p.b, &p.a].into_iter().enumerate() {
        let d = ask(env, "vpn", None, "1234", None);
        assert_eq!(verdict(&d), "challenge", "send {}: {d}", i + 1);
    }
    let d = ask(&p.b, "vpn", None, "1234", None);
    assert_eq!(verdict(&d), "reject", "the fourth send, on B: {d}");
    let rs = reasons(&p.a, 4);
    assert!(rs.iter().any(|r| r.contains("rate limit")), "{rs:#?}");
    smtp.wait_for(3);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(smtp.messages().len(), 3, "no fourth message");
}

#[test]
fn a_backup_code_used_on_a_is_refused_on_b() {
    let p = Pair::start("", "");
    p.a.enrol("alice", "1234", "totp", "everywhere");
    let out =
        p.a.ok(&["backup-codes", "generate", "alice", "--json"], None);
    let v: Value = serde_json::from_str(&out).expect("codes json");
    let code = v["codes"][0].as_str().expect("a code").to_string();
    let d = ask(&p.a, "vpn", None, &format!("1234{code}"), None);
    assert_eq!(verdict(&d), "accept", "{d}");
    let d = ask(&p.b, "vpn", None, &format!("1234{code}"), None);
    assert_eq!(verdict(&d), "reject", "used on A: {d}");
}

#[test]
fn failures_split_over_a_and_b_lock_the_account_at_the_configured_total() {
    // No delay before the lock and no per-source limit: only the account's count decides.
    let p = Pair::start(
        "",
        "[lockout]\nfree_failures = 4\nmax_failures = 4\nlock_duration = \"10m\"\n\
         per_source_max_failures = 0\n",
    );
    p.a.enrol("alice", "1234", "hotp", "everywhere");
    for (i, env) in [&p.a, &p.b, &p.a, &p.b].into_iter().enumerate() {
        let d = ask(env, "ssh", None, "1234000000", None);
        assert_eq!(verdict(&d), "reject", "failure {}: {d}", i + 1);
    }
    // Locked on both nodes: the right code is not even looked at.
    let right = format!("1234{}", hotp_code(0));
    for env in [&p.a, &p.b] {
        let d = ask(env, "ssh", None, &right, None);
        assert_eq!(verdict(&d), "reject", "locked: {d}");
    }
    let rs = reasons(&p.a, 6);
    eprintln!("{rs:#?}");
    // Each node commits its audit records in batches of its own, so records of two nodes
    // need not be listed in the order their logins were decided (a CI run listed B's fourth
    // failure before A's third): the counts are checked as a set. Every failure counted the
    // others' (1 to 4, each once), the fourth locked, and both right codes met the lock.
    assert_eq!(
        failure_counts(&rs),
        [
            "1 failures in a row",
            "2 failures in a row",
            "3 failures in a row",
            "4 failures in a row, account locked"
        ],
        "{rs:#?}"
    );
    assert_eq!(
        rs.iter()
            .filter(|r| r.starts_with("account locked for"))
            .count(),
        2,
        "{rs:#?}"
    );
    let show = p.a.ok(&["user", "show", "alice", "--json"], None);
    let v: Value = serde_json::from_str(&show).expect("user json");
    assert_eq!(v["failures"], 4, "{v}");
    assert_eq!(v["locked"], true, "{v}");
}

#[test]
fn failures_from_a_familiar_source_split_over_a_and_b_add_up() {
    let p = Pair::start(
        "",
        "[lockout]\nfree_failures = 4\nmax_failures = 4\nlock_duration = \"10m\"\n\
         per_source_max_failures = 0\n",
    );
    p.a.enrol("alice", "1234", "hotp", "everywhere");
    let home = Some("198.51.100.7");
    let d = ask(&p.a, "ssh", home, &format!("1234{}", hotp_code(0)), None);
    assert_eq!(verdict(&d), "accept", "{d}");
    // The familiar source is a queued write: wait until the row has it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p
        .cluster
        .primary
        .sql("SELECT familiar FROM accounts WHERE name = 'alice'")
        .contains("198.51.100.7")
    {
        assert!(
            Instant::now() < deadline,
            "the source never became familiar"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for env in [&p.a, &p.b, &p.a, &p.b] {
        let d = ask(env, "ssh", home, "1234000000", None);
        assert_eq!(verdict(&d), "reject", "{d}");
    }
    let right = format!("1234{}", hotp_code(1));
    let d = ask(&p.b, "ssh", home, &right, None);
    assert_eq!(verdict(&d), "reject", "the familiar bucket is locked: {d}");
    // As a set (audit batches of two nodes may land in either order): each failure counted
    // the others', 1 to 4 once each, the fourth locked.
    let rs = reasons(&p.a, 6);
    assert_eq!(
        failure_counts(&rs),
        [
            "1 failures in a row from familiar sources",
            "2 failures in a row from familiar sources",
            "3 failures in a row from familiar sources",
            "4 failures in a row from familiar sources, account locked"
        ],
        "{rs:#?}"
    );
    // From elsewhere the user still gets in: the guesses at home locked only that bucket.
    let d = ask(&p.a, "ssh", Some("203.0.113.9"), &right, None);
    assert_eq!(verdict(&d), "accept", "{d}");
}

#[test]
fn a_source_is_blocked_by_failures_split_over_a_and_b() {
    let p = Pair::start(
        "",
        "[lockout]\nfree_failures = 10\nmax_failures = 20\nper_source_max_failures = 3\n",
    );
    p.a.enrol("alice", "1234", "hotp", "everywhere");
    let from = Some("203.0.113.66");
    for env in [&p.a, &p.b, &p.a] {
        let d = ask(env, "ssh", from, "1234000000", None);
        assert_eq!(verdict(&d), "reject", "{d}");
    }
    let right = format!("1234{}", hotp_code(0));
    let d = ask(&p.b, "ssh", from, &right, None);
    assert_eq!(verdict(&d), "reject", "blocked on B after A, B, A: {d}");
    let rs = reasons(&p.a, 4);
    assert!(
        rs.iter().any(|r| r.contains("source address blocked")),
        "{rs:#?}"
    );
    // From elsewhere the user gets in.
    let d = ask(&p.a, "ssh", Some("198.51.100.1"), &right, None);
    assert_eq!(verdict(&d), "accept", "{d}");
}

#[test]
fn the_relogin_cache_hits_on_b_after_an_accept_on_a() {
    let p = Pair::start(
        "",
        "[services.web]\nrhosts = [\"192.0.2.10/32\"]\nrelogin_cache = true\n",
    );
    p.a.enrol("alice", "1234", "hotp", "everywhere");
    let webmail = Some("192.0.2.10");
    let pw = format!("1234{}", hotp_code(0));
    let d = ask(&p.a, "imap", webmail, &pw, None);
    assert_eq!(verdict(&d), "accept", "{d}");
    for env in [&p.b, &p.a, &p.b] {
        let d = ask(env, "imap", webmail, &pw, None);
        assert_eq!(verdict(&d), "accept", "a page view on either node: {d}");
    }
    let rs = reasons(&p.a, 4);
    assert_eq!(
        rs.iter().filter(|r| r.contains("re-login cache")).count(),
        3,
        "{rs:#?}"
    );
    // Not from another address: the code is used.
    let d = ask(&p.b, "imap", Some("192.0.2.11"), &pw, None);
    assert_eq!(verdict(&d), "reject", "{d}");
}

/// The SQL of the PostgreSQL shared state, held to the rules of the memory one
/// (store/shared/tests.rs), on a real database through the store's own pool: a State taken
/// once (16 threads), the per-user bound, re-login idle and maximum, windows that block and
/// start afresh, buckets that lock and forget an ended lock, several counters in one read.
#[test]
fn the_postgres_shared_state_keeps_the_contract() {
    use otpd::store::shared::{Challenge, Count, ReloginEntry};
    let cluster = Cluster::primary();
    let cfg = otpd::config::Config::from_toml_str(&format!(
        "[store]\nkind = \"postgres\"\nurl = \"{}\"\nallow_async_replication = true\n",
        cluster.url()
    ))
    .expect("config");
    let store = otpd::store::open_configured(&cfg).expect("open");
    let s = store.shared_state().expect("PostgreSQL shares its state");
    let c = |user: &str, expires_ms| Challenge {
        user: user.into(),
        client: Some("nas".into()),
        class: "vpn".into(),
        sealed_pin: vec![1, 2, 3],
        expires_ms,
    };
    let key = |n: u8| [n; 32];

    assert!(s
        .put_challenge(&key(1), &c("alice", 10_000), 0, 4)
        .expect("put"));
    let won = std::thread::scope(|sc| {
        let ts: Vec<_> = (0..16)
            .map(|_| sc.spawn(|| s.take_challenge(&key(1)).expect("take")))
            .collect();
        ts.into_iter()
            .filter_map(|t| t.join().expect("join"))
            .collect::<Vec<_>>()
    });
    assert_eq!(won, vec![c("alice", 10_000)], "taken exactly once");
    for n in 10..16u8 {
        s.put_challenge(&key(n), &c("bob", 10_000), i64::from(n), 4)
            .expect("put");
    }
    assert_eq!(
        s.take_challenge(&key(11)).expect("take"),
        None,
        "oldest dropped"
    );
    assert!(s.take_challenge(&key(12)).expect("take").is_some());

    let e = |now_ms| ReloginEntry {
        serial: "TOTP1",
        now_ms,
        idle_ms: 60_000,
        max_ms: 300_000,
    };
    s.relogin_put(&key(2), e(0)).expect("put");
    let hit = s.relogin_hit(&key(2), 59_000).expect("hit").expect("live");
    assert_eq!((hit.serial.as_str(), hit.created_ms), ("TOTP1", 0));
    assert!(
        s.relogin_hit(&key(2), 118_000).expect("hit").is_some(),
        "idle restarted"
    );
    assert!(
        s.relogin_hit(&key(2), 179_000).expect("hit").is_none(),
        "idle ran out"
    );
    s.relogin_put(&key(3), e(0)).expect("put");
    for t in [50_000, 100_000, 150_000, 200_000, 250_000, 300_000] {
        assert!(s.relogin_hit(&key(3), t).expect("hit").is_some(), "{t}");
    }
    assert!(
        s.relogin_hit(&key(3), 301_000).expect("hit").is_none(),
        "max"
    );

    let w = Count::Window {
        window: 600,
        block: 900,
        max: 3,
    };
    for (i, now) in [100, 101, 102].into_iter().enumerate() {
        assert_eq!(
            s.count("src\nx", now, w).expect("count").failures,
            i as u32 + 1
        );
    }
    let got = s.counters(&["src\ny", "src\nx"]).expect("read");
    assert_eq!(got[0], None);
    assert_eq!(got[1].map(|c| (c.failures, c.until)), Some((3, Some(1002))));
    // Blocked past the window: still counting; after block and window: afresh.
    assert_eq!(s.count("src\nx", 800, w).expect("count").failures, 4);
    assert_eq!(s.count("src\nx", 2000, w).expect("count").failures, 1);
    s.forget("src\nx").expect("forget");
    assert_eq!(s.counters(&["src\nx"]).expect("read"), vec![None]);

    let b = Count::Bucket {
        lock_at: 2,
        lock_until: 500,
        keep: 86_400,
    };
    assert_eq!(s.count("fam\n1", 10, b).expect("count").until, None);
    let k = s.count("fam\n1", 11, b).expect("count");
    assert_eq!((k.failures, k.last, k.until), (2, Some(11), Some(500)));
    let k = s.count("fam\n1", 12, b).expect("count");
    assert_eq!((k.failures, k.until), (3, Some(500)), "a lock is not moved");
    let k = s.count("fam\n1", 600, b).expect("count");
    assert_eq!(
        (k.failures, k.until),
        (1, None),
        "an ended lock starts afresh"
    );
    // The same rule as in memory, step by step.
    let mut mem = otpd::store::shared::Counter {
        since: 700,
        ..Default::default()
    };
    for now in [700, 701, 702, 703, 1300, 1301] {
        mem = mem.bumped(now, w);
        let pg = s.count("src\nrule", now, w).expect("count");
        assert_eq!(pg, mem, "at {now}");
    }
    // What a login pays for it (a figure for docs/cluster-state.md, not a bound): one read of
    // a source's counters, and a failure's two upserts.
    let n = 500;
    let t = Instant::now();
    for _ in 0..n {
        s.counters(&["src\nx", "pair\nx\nalice"]).expect("read");
    }
    let read = t.elapsed() / n;
    let t = Instant::now();
    for i in 0..n {
        s.count(&format!("src\n{i}"), 3000, w).expect("count");
    }
    let count = t.elapsed() / n;
    eprintln!("one counters read: {read:?}; one counted failure (upsert): {count:?}");
}

/// The shared state is in UNLOGGED tables: a failover starts it empty. A State issued before
/// the primary died is unknown afterwards (never accepted), the re-login cache misses (the
/// used code is refused), and both nodes issue and take new States on the promoted primary.
#[test]
fn after_a_failover_the_shared_state_starts_empty_and_serves_again() {
    let mut cluster = Cluster::with_standby(Replication::Sync);
    let keys = tempfile::tempdir().expect("tempdir");
    let key = keys.path().join("otpd.key");
    // Both hosts: the nodes find whichever accepts writes.
    let url = cluster.url_both();
    let tables =
        format!("{TWO_STEP}\n[services.web]\nrhosts = [\"192.0.2.10/32\"]\nrelogin_cache = true\n");
    let a = node("a", &url, &key, "", &tables);
    let b = node("b", &url, &key, "", &tables);
    a.ok(&["init"], None);
    let _da = a.start();
    let _db = b.start();
    a.enrol("alice", "1234", "hotp", "everywhere");
    let d = ask(&a, "vpn", None, "1234", None);
    assert_eq!(verdict(&d), "challenge", "{d}");
    let old_state = d["state"].as_str().expect("state").to_string();
    let webmail = Some("192.0.2.10");
    let pw = format!("1234{}", hotp_code(0));
    let d = ask(&a, "imap", webmail, &pw, None);
    assert_eq!(verdict(&d), "accept", "{d}");
    assert_eq!(verdict(&ask(&b, "imap", webmail, &pw, None)), "accept");

    cluster.kill_primary();
    cluster.promote();
    cluster.rebuild_standby();
    // Serving again: a new two-step login begun on A (bounded wait for the reconnect).
    let deadline = Instant::now() + Duration::from_secs(60);
    let new_state = loop {
        let d = ask(&a, "vpn", None, "1234", None);
        if verdict(&d) == "challenge" {
            break d["state"].as_str().expect("state").to_string();
        }
        assert!(Instant::now() < deadline, "A never served again: {d}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let d = ask(&b, "vpn", None, &hotp_code(1), Some(&old_state));
    assert_eq!(
        verdict(&d),
        "reject",
        "a State from before the failover: {d}"
    );
    let d = ask(&b, "vpn", None, &hotp_code(1), Some(&new_state));
    assert_eq!(
        verdict(&d),
        "accept",
        "B finishes A's login on the new primary: {d}"
    );
    let d = ask(&b, "imap", webmail, &pw, None);
    assert_eq!(
        verdict(&d),
        "reject",
        "the cache is empty and the code used: {d}"
    );
}
