//! The account cache of nodes on PostgreSQL (store/cache.rs, store/postgres/feed.rs), attacked
//! the way a stale cache would be exploited: a token disabled, a PIN changed, an account
//! locked or counters advanced by another writer (another node, the CLI, an admin's own SQL),
//! then a login on a node that had the account in memory, at once. None may be decided on
//! the old data. The negative control shows the cache really serves: without the database's
//! announcements, the disabled token would be accepted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job

mod common;
mod harden;
mod products;

use common::cache_attacks::{self, verdict, NO_LOCKOUT};
use common::Env;
use products::postgres::Cluster;
use std::path::Path;

fn node(url: &str, name: &str, key: Option<&Path>, extra: &str) -> Env {
    let top = key
        .map(|k| format!("key_file = \"{}\"", k.display()))
        .unwrap_or_default();
    Env::with_tables(
        &top,
        &format!(
            "[store]\nkind = \"postgres\"\nurl = \"{url}\"\nnode_name = \"{name}\"\n\
             allow_async_replication = true\n{extra}\n"
        ),
    )
}

/// Nodes A and B on the cluster's primary with the same key file, both serving.
fn two_nodes(c: &Cluster, extra: &str) -> (Env, Env, common::Daemon, common::Daemon) {
    let a = node(&c.url(), "A", None, extra);
    let b = node(&c.url(), "B", Some(&a.path().join("data/otpd.key")), extra);
    let (da, db) = (a.start(), b.start());
    (a, b, da, db)
}

#[test]
fn a_token_disabled_elsewhere_is_refused_at_once() {
    let c = Cluster::primary();
    let (a, b, _da, _db) = two_nodes(&c, NO_LOCKOUT);
    // Disabled by the CLI of node B (another process) or by an admin's own SQL, then the
    // code at once on node A, which has ann in memory.
    cache_attacks::disabled_token(&a, &b, &|s| {
        c.primary.sql_in("otpd", s);
    });
}

/// The same attack over node A's RADIUS port, where requests that wait on the socket together
/// are decided after one round trip of the feed: ann's request comes among 15 others at once,
/// right after node B's CLI disabled her token.
#[test]
fn a_token_disabled_elsewhere_is_refused_in_a_burst_of_radius_requests() {
    let c = Cluster::primary();
    let port = common::free_udp_port();
    let radius = format!("{NO_LOCKOUT}{}", harden::bursts::radius_tables(port));
    let a = node(&c.url(), "A", None, &radius);
    let b = node(
        &c.url(),
        "B",
        Some(&a.path().join("data/otpd.key")),
        NO_LOCKOUT,
    );
    let (da, _db) = (a.start(), b.start());
    let bursts = std::panic::catch_unwind(|| harden::bursts::disabled_token_in_bursts(port, &b))
        .unwrap_or_else(|e| {
            eprintln!("node A's log:\n{}", da.log_text());
            std::panic::resume_unwind(e)
        });
    println!("{bursts} bursts of {} requests", harden::bursts::BURST);
}

#[test]
fn a_pin_or_level_changed_elsewhere_counts_at_once() {
    let c = Cluster::primary();
    let (a, b, _da, _db) = two_nodes(&c, NO_LOCKOUT);
    cache_attacks::changed_pin_and_level(&a, &b);
}

#[test]
fn counters_and_locks_from_another_node_hold_here() {
    let c = Cluster::primary();
    // Locks after 3 failures in a row, whichever node saw them.
    let lock = "[lockout]\nfree_failures = 3\nmax_failures = 3\nlock_duration = \"1h\"\n\
        per_source_max_failures = 0\nsource_max_failures = 0\n";
    let (a, b, _da, _db) = two_nodes(&c, lock);
    a.enrol("cay", "1234", "hotp", "everywhere");
    a.enrol("dan", "1234", "hotp", "everywhere");
    assert_eq!(
        verdict(&a, "cay", &format!("1234{}", common::hotp_code(0))),
        "accept"
    );
    // B accepts far more codes than A's look-ahead window (10): had A kept cay's old
    // counter, the next code would be out of its window.
    for n in 1..=35 {
        assert_eq!(
            verdict(&b, "cay", &format!("1234{}", common::hotp_code(n))),
            "accept",
            "B code {n}"
        );
    }
    assert_eq!(
        verdict(&a, "cay", &format!("1234{}", common::hotp_code(36))),
        "accept",
        "A after B"
    );
    // A code B already used is refused on A too.
    assert_eq!(
        verdict(&a, "cay", &format!("1234{}", common::hotp_code(35))),
        "reject"
    );

    // dan in A's memory, then locked by failures on B: A refuses his right code.
    assert_eq!(
        verdict(&a, "dan", &format!("1234{}", common::hotp_code(0))),
        "accept"
    );
    for _ in 0..3 {
        assert_eq!(verdict(&b, "dan", "1234000000"), "reject");
    }
    assert_eq!(
        c.primary.sql_in(
            "otpd",
            "SELECT locked_until IS NOT NULL FROM accounts WHERE name = 'dan'"
        ),
        "t"
    );
    assert_eq!(
        verdict(&a, "dan", &format!("1234{}", common::hotp_code(1))),
        "reject",
        "locked on B"
    );
    // Unlocked elsewhere: A lets him in at once.
    b.ok(&["user", "unlock", "dan"], None);
    assert_eq!(
        verdict(&a, "dan", &format!("1234{}", common::hotp_code(1))),
        "accept",
        "unlocked"
    );
}

#[test]
fn a_cut_feed_stops_the_cache_and_a_new_one_starts_it_empty() {
    let c = Cluster::primary();
    let a = node(&c.url(), "A", None, NO_LOCKOUT);
    let da = a.start();
    let serial = a.enrol("eve", "1234", "hotp", "everywhere");
    assert_eq!(
        verdict(&a, "eve", &format!("1234{}", common::hotp_code(0))),
        "accept"
    );
    for round in 0..5 {
        // The feed's session ended by the server (a restart, a network cut, a killed
        // backend), and a change made while it is gone: its announcement is lost.
        let killed = c.primary.sql_in(
            "otpd",
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = 'otpd' AND application_name = 'otpd@A feed'",
        );
        assert_eq!(killed, "1", "round {round}: the feed's session");
        c.primary.sql_in(
            "otpd",
            &format!("UPDATE tokens SET state = 'disabled' WHERE serial = '{serial}'"),
        );
        let pw = format!("1234{}", common::hotp_code(1 + round));
        // Odd rounds: eve logs in while the feed is down; even rounds: once it is back.
        if round % 2 == 0 {
            wait_for_feed(&c, &a);
        }
        assert_eq!(
            verdict(&a, "eve", &pw),
            "reject",
            "round {round}: disabled while cut"
        );
        c.primary.sql_in(
            "otpd",
            &format!("UPDATE tokens SET state = 'active' WHERE serial = '{serial}'"),
        );
        assert_eq!(verdict(&a, "eve", &pw), "accept", "round {round}: enabled");
        wait_for_feed(&c, &a);
    }
    let log = da.log_text();
    assert!(log.contains("change feed ended"), "{log}");
}

/// Waits until A's feed listens again (a login makes it run a round, an empty query, and
/// notice a lost session).
fn wait_for_feed(c: &Cluster, a: &Env) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let _ = verdict(a, "nobody", "1234000000");
        let n = c.primary.sql_in(
            "otpd",
            "SELECT count(*) FROM pg_stat_activity WHERE datname = 'otpd'
             AND application_name = 'otpd@A feed' AND query = ''",
        );
        if n == "1" {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the feed did not come back"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The negative control: the same attack as the first test with the database's announcements
/// switched off (their triggers dropped). The node that has the account in memory then
/// accepts a disabled token: the cache serves, and the announcements are what keep it true.
#[test]
fn without_announcements_a_stale_cache_would_accept_a_disabled_token() {
    let c = Cluster::primary();
    let a = node(&c.url(), "A", None, NO_LOCKOUT);
    let _da = a.start();
    let serial = a.enrol("fay", "1234", "hotp", "everywhere");
    // Twice: a first read may be evicted by the enrolment's own announcement, which comes
    // after it (a login whose account is not held reads without waiting for the feed).
    for n in 0..2 {
        assert_eq!(
            verdict(&a, "fay", &format!("1234{}", common::hotp_code(n))),
            "accept"
        );
    }
    c.primary
        .sql_in("otpd", "DROP TRIGGER tokens_changed ON tokens");
    c.primary.sql_in(
        "otpd",
        &format!("UPDATE tokens SET state = 'disabled' WHERE serial = '{serial}'"),
    );
    let v = verdict(&a, "fay", &format!("1234{}", common::hotp_code(2)));
    println!("negative control: a disabled token, no announcement: {v}");
    assert_eq!(
        v, "accept",
        "the cache did not serve: this test proves nothing"
    );
    // With caching off the same login is refused.
    let b = node(
        &c.url(),
        "B",
        Some(&a.path().join("data/otpd.key")),
        "cache_accounts = 0\n",
    );
    let _db = b.start();
    assert_eq!(
        verdict(&b, "fay", &format!("1234{}", common::hotp_code(3))),
        "reject"
    );
}
