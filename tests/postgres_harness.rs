//! The PostgreSQL harness (tests/products/postgres.rs) does what the tests of several nodes
//! rely on: a primary with a synchronous standby whose commits reach the standby, a
//! synchronous standby that really holds commits back when it is gone, the hard kill and the
//! promotion, and a two-host URL that finds whichever node accepts writes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job

mod products;

use products::postgres::{Cluster, Replication};
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn primary_with_sync_standby_replicates_and_promotes() {
    let started = Instant::now();
    let mut c = Cluster::with_standby(Replication::Sync);
    eprintln!(
        "primary + synchronous standby up in {:?}",
        started.elapsed()
    );
    assert_eq!(
        c.primary.sql("SHOW synchronous_standby_names"),
        "s1",
        "the primary waits for s1"
    );
    assert!(!c.primary.in_recovery());
    assert!(c.standby().in_recovery());

    // A commit on the primary is on the standby: with synchronous_commit = on it is flushed
    // there when the commit returns; replay may trail a moment, so wait for it.
    c.primary
        .sql("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'one')");
    c.wait_standby_caught_up();
    assert_eq!(c.standby().sql("SELECT v FROM t WHERE id = 1"), "one");
    let (ok, text) = c
        .standby()
        .try_sql_in("otpd", "INSERT INTO t VALUES (2, 'two')");
    assert!(
        !ok && text.contains("read-only"),
        "the standby refuses writes: {text}"
    );

    // The two-host URL with target_session_attrs=read-write lands on the primary.
    let psql = products::postgres::bin_dir().join("psql");
    let via_url = |url: &str| {
        let out = Command::new(&psql)
            .args(["-X", "-A", "-t", "-c", "SELECT pg_is_in_recovery()", url])
            .output()
            .expect("psql");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(via_url(&c.url_both()), "f");

    // Kill the primary the hard way, promote: the standby has the data and takes writes, and
    // the same URL now finds it.
    c.kill_primary();
    assert!(!c.primary.is_running());
    let t = Instant::now();
    c.promote();
    eprintln!("promoted in {:?}", t.elapsed());
    assert!(!c.standby().in_recovery());
    assert_eq!(c.standby().sql("SELECT v FROM t WHERE id = 1"), "one");
    c.standby().sql("INSERT INTO t VALUES (2, 'two')");
    assert_eq!(c.standby().sql("SELECT count(*) FROM t"), "2");
    assert_eq!(via_url(&c.url_both()), "f");

    // A new synchronous standby for the promoted node: its commits reach it.
    c.rebuild_standby();
    c.standby().sql("INSERT INTO t VALUES (3, 'three')");
    let rebuilt = c.rebuilt.as_ref().expect("rebuilt");
    let deadline = Instant::now() + Duration::from_secs(10);
    while rebuilt.sql("SELECT count(*) FROM t") != "3" {
        assert!(Instant::now() < deadline, "the rebuilt standby lags");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(rebuilt.in_recovery());
}

#[test]
fn a_sync_primary_without_its_standby_holds_commits_back() {
    let mut c = Cluster::with_standby(Replication::Sync);
    c.primary.sql("CREATE TABLE t (id int)");
    c.stop_standby();
    // The commit is written locally but does not return while no synchronous standby
    // acknowledges it: the client gives up (statement_timeout does not apply to the wait,
    // so the psql is killed by `timeout`).
    let psql = products::postgres::bin_dir().join("psql");
    let t = Instant::now();
    let out = Command::new("timeout")
        .arg("3")
        .arg(&psql)
        .args(["-X", "-c", "INSERT INTO t VALUES (1)", &c.url()])
        .output()
        .expect("timeout psql");
    assert!(
        !out.status.success() && t.elapsed() >= Duration::from_secs(3),
        "the commit returned without its synchronous standby: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // Back with its standby, commits return again.
    c.standby_mut().restart();
    c.primary.sql("INSERT INTO t VALUES (2)");
}

#[test]
fn an_async_standby_streams_without_holding_commits() {
    let mut c = Cluster::with_standby(Replication::Async);
    assert_eq!(c.primary.sql("SHOW synchronous_standby_names"), "");
    c.primary.sql("CREATE TABLE t (id int)");
    c.stop_standby();
    // Nothing waits for the standby: the commit returns at once.
    c.primary.sql("INSERT INTO t VALUES (1)");
    assert_eq!(c.primary.sql("SELECT count(*) FROM t"), "1");
}
