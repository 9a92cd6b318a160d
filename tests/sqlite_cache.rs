//! The daemon's account cache on SQLite (store/cache.rs, store/sqlite/feed.rs), attacked the
//! way a stale cache would be exploited: a token disabled, deleted or reseeded, a PIN or
//! level changed, an account locked, unlocked or its counter moved by another process (the
//! CLI, an admin's own `sqlite3`), then a login at once, on a daemon that had the account
//! in memory. None may be decided on the old data. The negative control shows the cache
//! really serves: without the triggers' rows in `changes`, a disabled token is accepted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job

mod common;
mod harden;

use common::cache_attacks::{self, verdict, NO_LOCKOUT};
use common::Env;

/// An admin's own SQL, from a connection of this process (not the daemon's).
fn sql(env: &Env, statement: &str) {
    let db = rusqlite::Connection::open(env.path().join("data").join("otpd.db")).expect("db");
    db.busy_timeout(std::time::Duration::from_secs(10))
        .expect("busy timeout");
    db.execute_batch(statement).expect(statement);
}

/// `otpd_account_cache_hits_total` from the daemon's metrics endpoint.
fn hits(port: u16) -> u64 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect metrics");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut page = String::new();
    s.read_to_string(&mut page).expect("read");
    page.lines()
        .find_map(|l| l.strip_prefix("otpd_account_cache_hits_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no hits counter in {page}"))
}

#[test]
fn a_token_disabled_or_deleted_by_another_process_is_refused_at_once() {
    let env = Env::new(NO_LOCKOUT);
    let _d = env.start();
    cache_attacks::disabled_token(&env, &env, &|s| sql(&env, s));
}

/// The same attack over RADIUS, where requests that wait on the socket together are decided
/// after one pass of the feed's barrier: ann's request comes among 15 others at once.
#[test]
fn a_token_disabled_by_another_process_is_refused_in_a_burst_of_radius_requests() {
    let port = common::free_udp_port();
    let env = Env::with_tables(
        "",
        &format!("{NO_LOCKOUT}{}", harden::bursts::radius_tables(port)),
    );
    let _d = env.start();
    let bursts = harden::bursts::disabled_token_in_bursts(port, &env);
    println!("{bursts} bursts of {} requests", harden::bursts::BURST);
}

#[test]
fn a_pin_or_level_changed_by_another_process_counts_at_once() {
    let env = Env::new(NO_LOCKOUT);
    let _d = env.start();
    cache_attacks::changed_pin_and_level(&env, &env);
}

#[test]
fn counters_moved_and_locks_set_by_another_process_hold_at_once() {
    // A lock is what an admin sets below; the replays of cay's codes must not reach it.
    let lock = "[lockout]\nfree_failures = 10\nmax_failures = 10\nlock_duration = \"1h\"\n\
        per_source_max_failures = 0\nsource_max_failures = 0\n";
    let env = Env::new(lock);
    let _d = env.start();
    env.enrol("cay", "1234", "hotp", "everywhere");
    env.enrol("dan", "1234", "hotp", "everywhere");
    // Twice: the first login's read may be evicted by the enrolment's own change rows.
    for n in 0..2 {
        assert_eq!(
            verdict(&env, "cay", &format!("1234{}", common::hotp_code(n))),
            "accept"
        );
    }
    // Codes used by another process (`otpd check`, the CLI's own login) far beyond the
    // daemon's look-ahead window (10): the next one must work on the daemon at once (had it
    // kept cay's old counter, the code would be out of its window), and none of the used
    // ones afterwards.
    for n in 2..=36 {
        let out = env.ok(
            &[
                "check",
                "cay",
                "--password",
                &format!("1234{}", common::hotp_code(n)),
            ],
            None,
        );
        assert!(out.contains("accept"), "CLI code {n}: {out}");
    }
    assert_eq!(
        verdict(&env, "cay", &format!("1234{}", common::hotp_code(37))),
        "accept",
        "the code after the CLI's"
    );
    for n in [2, 20, 36, 37] {
        assert_eq!(
            verdict(&env, "cay", &format!("1234{}", common::hotp_code(n))),
            "reject",
            "code {n}, used already"
        );
    }
    // Set forward by an admin's SQL (what a resynchronisation does): the next code after it
    // works at once.
    sql(&env, "UPDATE tokens SET last_counter = 40 WHERE account_id = (SELECT id FROM accounts WHERE name = 'cay')");
    assert_eq!(
        verdict(&env, "cay", &format!("1234{}", common::hotp_code(41))),
        "accept",
        "after the counter was set"
    );

    // dan in the daemon's memory, then locked by an admin: his right code is refused.
    assert_eq!(
        verdict(&env, "dan", &format!("1234{}", common::hotp_code(0))),
        "accept"
    );
    sql(
        &env,
        "UPDATE accounts SET failures = 3, locked_until = strftime('%s','now') + 3600 WHERE name = 'dan'",
    );
    assert_eq!(
        verdict(&env, "dan", &format!("1234{}", common::hotp_code(1))),
        "reject",
        "locked by SQL"
    );
    env.ok(&["user", "unlock", "dan"], None);
    assert_eq!(
        verdict(&env, "dan", &format!("1234{}", common::hotp_code(1))),
        "accept",
        "unlocked by the CLI"
    );
}

/// The cache serves (hits), and the rows the feed has read are deleted, not kept for ever.
#[test]
fn the_cache_serves_and_the_change_rows_are_cleared() {
    let port = common::free_tcp_port();
    let env = Env::new(&format!(
        "{NO_LOCKOUT}[metrics]\nlisten = \"127.0.0.1:{port}\"\n"
    ));
    let _d = env.start();
    env.enrol("gus", "1234", "hotp", "everywhere");
    let before = hits(port);
    for n in 0..50 {
        assert_eq!(
            verdict(&env, "gus", &format!("1234{}", common::hotp_code(n))),
            "accept"
        );
    }
    let served = hits(port) - before;
    assert!(served >= 45, "only {served} of 50 logins from the cache");
    // 1,500 failures, each a row in `changes` (the failure count changed), and no login
    // that uses the cache: the writer has the feed read at least once a second and deletes
    // the rows it has read.
    for _ in 0..1500 {
        assert_eq!(verdict(&env, "gus", "1234000000"), "reject");
    }
    let db = rusqlite::Connection::open(env.path().join("data").join("otpd.db")).expect("db");
    let rows = || -> i64 {
        db.query_row("SELECT count(*) FROM changes", [], |r| r.get(0))
            .expect("count")
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while rows() >= 1100 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} change rows kept after 10 s",
            rows()
        );
        // A commit, after which the writer reads the feed or deletes what it read.
        assert_eq!(verdict(&env, "gus", "1234000000"), "reject");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// The negative control: the first test's attack with the trigger that announces a token's
/// change dropped. The daemon, which has the account in memory, then accepts a disabled
/// token: the cache serves, and the triggers are what keep it true. With the cache off the
/// same login is refused.
#[test]
fn without_the_trigger_a_stale_cache_would_accept_a_disabled_token() {
    let env = Env::new(NO_LOCKOUT);
    let d = env.start();
    let serial = env.enrol("fay", "1234", "hotp", "everywhere");
    // Twice: the first login's read may be evicted by the enrolment's own change rows.
    for n in 0..2 {
        assert_eq!(
            verdict(&env, "fay", &format!("1234{}", common::hotp_code(n))),
            "accept"
        );
    }
    sql(&env, "DROP TRIGGER tokens_changed");
    sql(
        &env,
        &format!("UPDATE tokens SET state = 'disabled' WHERE serial = '{serial}'"),
    );
    let v = verdict(&env, "fay", &format!("1234{}", common::hotp_code(2)));
    println!("negative control: a disabled token, no change row: {v}");
    assert_eq!(
        v, "accept",
        "the cache did not serve: this test proves nothing"
    );
    drop(d);
    // The same database, the daemon started again with the cache off.
    let mut cfg = std::fs::read_to_string(&env.config).expect("config");
    cfg.push_str("\n[store]\ncache_accounts = 0\n");
    std::fs::write(&env.config, cfg).expect("config");
    let off = &env;
    let _d = off.start();
    assert_eq!(
        verdict(off, "fay", &format!("1234{}", common::hotp_code(3))),
        "reject"
    );
}
