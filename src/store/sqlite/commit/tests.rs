use super::Op;
use crate::model::AuditRecord;
use crate::store::{
    AdminStore, Advance, AuditStore, CommitMode, Completion, LoginStore, Outcome, SqliteStore,
    StoreError, StoreResult,
};
use rusqlite::Connection;
use std::sync::Arc;
use std::time::Duration;

/// A counter advance that waits for its commit, as a `bool`.
fn waited(s: &SqliteStore, tok: i64, counter: i64) -> StoreResult<bool> {
    match s.advance_counter(tok, counter, 0, 1, false, CommitMode::Wait)? {
        Advance::Durable(won) => Ok(won),
        Advance::Pending(_) => panic!("a waited advance came back pending"),
    }
}

/// Sends the outcome, and what `probe` sees at that moment, down a channel.
struct ToChannel<T: Send + 'static> {
    tx: std::sync::mpsc::Sender<(Outcome, T)>,
    probe: Box<dyn FnOnce() -> T + Send>,
}

impl<T: Send + 'static> Completion for ToChannel<T> {
    fn complete(self: Box<Self>, outcome: Outcome) {
        let seen = (self.probe)();
        let _ = self.tx.send((outcome, seen));
    }
}

fn store() -> (tempfile::TempDir, Arc<SqliteStore>, i64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = SqliteStore::open(&dir.path().join("c.db")).expect("open");
    let acct = s
        .create_account("alice", "everywhere", None, 0)
        .expect("account");
    let tok = s
        .insert_token(&crate::model::NewToken {
            serial: "HOTP0001".into(),
            account_id: acct,
            kind: crate::model::TokenKind::Hotp,
            state: crate::model::TokenState::Active,
            algorithm: crate::tokens::oath::Algorithm::Sha1,
            digits: 6,
            period: 0,
            sealed_secret: vec![1, 2, 3],
            label: String::new(),
            created_at: 0,
            public_id: None,
            address: None,
        })
        .expect("token");
    (dir, Arc::new(s), tok)
}

fn rec(ts_ms: i64) -> AuditRecord {
    AuditRecord {
        ts_ms,
        user: "alice".into(),
        service: "vpn".into(),
        rhost: None,
        client: None,
        verdict: "accept".into(),
        reason: "ok".into(),
        serial: None,
    }
}

#[test]
fn sixteen_parallel_advances_to_one_counter_win_once() {
    let (_d, s, tok) = store();
    for round in 0..20 {
        let wins: usize = (0..16)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || waited(&s, tok, round))
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().expect("join").expect("advance"))
            .filter(|won| *won)
            .count();
        assert_eq!(wins, 1, "round {round}");
    }
}

#[test]
fn an_advance_is_on_disk_when_it_returns() {
    let (d, s, tok) = store();
    assert!(waited(&s, tok, 7).expect("advance"));
    // Another connection (another process would see the same) reads the new counter.
    let other = Connection::open(d.path().join("c.db")).expect("open");
    let c: i64 = other
        .query_row(
            "SELECT last_counter FROM tokens WHERE id = ?1",
            [tok],
            |r| r.get(0),
        )
        .expect("read");
    assert_eq!(c, 7);
    assert!(!waited(&s, tok, 7).expect("replay"));
    assert!(!waited(&s, tok, 3).expect("older"));
}

#[test]
fn audit_records_keep_their_order_across_threads_and_batches() {
    let (d, s, tok) = store();
    // Each thread's records must come out in the order that thread queued them.
    let handles: Vec<_> = (0..4i64)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..500i64 {
                    s.append_audit(rec(t * 1_000_000 + i)).expect("append");
                    if i % 50 == 0 {
                        waited(&s, tok, t * 1000 + i).expect("advance");
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("join");
    }
    drop(Arc::try_unwrap(s).ok().expect("last reference"));
    let s2 = SqliteStore::open(&d.path().join("c.db")).expect("reopen");
    let all = s2.audit(&Default::default()).expect("audit");
    assert_eq!(all.len(), 2000, "every queued record is committed on drop");
    for t in 0..4i64 {
        let mine: Vec<i64> = all
            .iter()
            .map(|r| r.ts_ms)
            .filter(|ts| ts / 1_000_000 == t)
            .collect();
        let mut sorted = mine.clone();
        sorted.sort_unstable();
        assert_eq!(mine, sorted, "thread {t} out of order");
    }
}

fn audit_rows(d: &tempfile::TempDir, ts_ms: i64) -> i64 {
    Connection::open(d.path().join("c.db"))
        .expect("open")
        .query_row(
            "SELECT count(*) FROM audit WHERE ts_ms = ?1",
            [ts_ms],
            |r| r.get(0),
        )
        .expect("read")
}

fn advance_to_1(c: &super::Committer, tok: i64) -> StoreResult<super::Answer> {
    c.write(Op::Advance {
        token_id: tok,
        counter: 1,
        drift: 0,
        now: 1,
        activate: false,
    })
}

#[test]
fn an_advance_leaves_the_audit_records_held_before_it_for_a_later_commit() {
    let (d, _s, tok) = store();
    // A second writer on the same file that holds audit records for a minute: the advance
    // queued after one must commit without it, and a clean close must still commit it.
    let c = super::Committer::start_holding(
        &d.path().join("c.db"),
        4000,
        Duration::from_secs(60),
        None,
    )
    .expect("committer");
    c.write_later(Op::Audit(rec(42))).expect("queue audit");
    let won = advance_to_1(&c, tok).expect("advance");
    assert!(matches!(won, super::Answer::Advanced(true)));
    assert_eq!(
        audit_rows(&d, 42),
        0,
        "the audit record rode with the advance"
    );
    drop(c);
    assert_eq!(
        audit_rows(&d, 42),
        1,
        "the held record is committed on close"
    );
}

#[test]
fn a_held_audit_record_is_committed_once_due_with_nothing_to_share_it() {
    let (d, s, _tok) = store();
    s.append_audit(rec(43)).expect("append");
    // Due after AUDIT_HOLD (5 ms) and a linger of 2 ms; a second is far beyond that.
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    while audit_rows(&d, 43) == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(audit_rows(&d, 43), 1, "still held after a second");
}

#[test]
fn failures_count_atomically_under_parallel_calls() {
    let (_d, s, _tok) = store();
    let id = s.account("alice").expect("a").expect("alice").id;
    let mut seen: Vec<u32> = (0..32)
        .map(|_| {
            let s = s.clone();
            std::thread::spawn(move || s.record_failure(id, 5, 0, 0))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().expect("join").expect("failure"))
        .collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=32).collect::<Vec<u32>>(),
        "each call saw its own count"
    );
    s.clear_failures(id).expect("clear");
    assert_eq!(s.account("alice").expect("a").expect("alice").failures, 0);
}

#[test]
fn a_failure_after_an_ended_lock_starts_a_fresh_count() {
    let (_d, s, _tok) = store();
    let id = s.account("alice").expect("a").expect("alice").id;
    for now in 1..=3 {
        s.record_failure(id, now, 3, 100).expect("failure");
    }
    let a = s.account("alice").expect("a").expect("alice");
    assert_eq!((a.failures, a.locked_until), (3, Some(100)));
    // Still locked at 99 (another process's login): counted on, the lock not moved. At
    // 100 the lock is over: one, and no lock.
    assert_eq!(s.record_failure(id, 99, 3, 199).expect("failure"), 4);
    assert_eq!(s.record_failure(id, 100, 3, 200).expect("failure"), 1);
    let a = s.account("alice").expect("a").expect("alice");
    assert_eq!((a.failures, a.locked_until), (1, None));
    // Unlocking counts the unlock, so a running daemon sees it.
    s.unlock_account(id).expect("unlock");
    let a = s.account("alice").expect("a").expect("alice");
    assert_eq!((a.failures, a.unlocks), (0, 1));
}

#[test]
fn familiar_sources_round_trip() {
    let (_d, s, _tok) = store();
    let id = s.account("alice").expect("a").expect("alice").id;
    let list = vec!["192.0.2.1".to_string(), "2001:db8::/64".to_string()];
    s.set_familiar_sources(id, &list).expect("set");
    // Queued without a wait: an audit-free advance later makes it durable.
    s.clear_failures(id).expect("a waited write");
    let a = s.account("alice").expect("a").expect("alice");
    assert_eq!(a.familiar_sources, list);
}

/// Runs the threads `spawn` starts so that their writes share one batch with a write
/// that fails: another connection holds the write lock, the writer's next batch (one
/// advance to 1) waits in BEGIN IMMEDIATE, and everything queued meanwhile (a poison,
/// then `spawn`'s writes) forms the batch after it. Returns the threads' results.
fn in_a_failed_batch<T: Send + 'static>(
    d: &tempfile::TempDir,
    s: &Arc<SqliteStore>,
    tok: i64,
    spawn: impl FnOnce() -> Vec<std::thread::JoinHandle<T>>,
) -> Vec<T> {
    let c = s.committer().expect("a file store has a committer");
    let other = Connection::open(d.path().join("c.db")).expect("open");
    other.execute_batch("BEGIN IMMEDIATE").expect("lock");
    let first = std::thread::spawn({
        let s = s.clone();
        move || waited(&s, tok, 1)
    });
    std::thread::sleep(Duration::from_millis(100));
    c.write_later(Op::Poison).expect("queue poison");
    let waiters = spawn();
    std::thread::sleep(Duration::from_millis(200));
    other.execute_batch("COMMIT").expect("unlock");
    assert!(first.join().expect("join").expect("first batch commits"));
    waiters
        .into_iter()
        .map(|w| w.join().expect("join"))
        .collect()
}

#[test]
fn a_failed_batch_answers_every_waiter_with_an_error() {
    let (d, s, tok) = store();
    let results = in_a_failed_batch(&d, &s, tok, || {
        (10..14)
            .map(|n| {
                let s = s.clone();
                std::thread::spawn(move || waited(&s, tok, n))
            })
            .collect()
    });
    for r in results {
        assert!(
            matches!(r, Err(StoreError::Commit(_))),
            "a waiter in the failed batch must get an error, got {r:?}"
        );
    }
    // Nothing of the failed batch reached the disk, and the writer goes on working.
    assert_eq!(
        s.token("HOTP0001").expect("t").expect("token").last_counter,
        1
    );
    assert!(waited(&s, tok, 2).expect("after"));
}

/// The outcome a deferred advance's ticket delivers.
fn deferred_outcome(advance: impl FnOnce() -> StoreResult<Advance>) -> Outcome {
    let ticket = match advance() {
        Ok(Advance::Pending(t)) => t,
        other => panic!("a deferred advance returns a ticket, got {other:?}"),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    ticket.then(Box::new(ToChannel {
        tx,
        probe: Box::new(|| ()),
    }));
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the outcome arrives")
        .0
}

fn deferred(s: &SqliteStore, tok: i64, counter: i64) -> StoreResult<Advance> {
    s.advance_counter(tok, counter, 0, 1, false, CommitMode::Defer)
}

/// A deferred advance to `counter`: its outcome arrives on the channel with what `probe`
/// saw on the thread that delivered it, at that moment.
fn deferred_probed<T: Send + 'static>(
    s: &SqliteStore,
    tok: i64,
    counter: i64,
    probe: impl FnOnce() -> T + Send + 'static,
) -> std::sync::mpsc::Receiver<(Outcome, T)> {
    let Ok(Advance::Pending(ticket)) = deferred(s, tok, counter) else {
        panic!("a deferred advance returns a ticket");
    };
    let (tx, rx) = std::sync::mpsc::channel();
    ticket.then(Box::new(ToChannel {
        tx,
        probe: Box::new(probe),
    }));
    rx
}

/// The last counter on disk, as a fresh connection sees it.
fn counter_on_disk(path: &std::path::Path) -> i64 {
    Connection::open(path)
        .expect("open")
        .query_row("SELECT last_counter FROM tokens", [], |r| r.get(0))
        .expect("read")
}

#[test]
fn a_deferred_advance_hears_won_once_it_is_on_disk() {
    let (d, s, tok) = store();
    let path = d.path().join("c.db");
    let rx = deferred_probed(&s, tok, 5, move || counter_on_disk(&path));
    let (outcome, on_disk) = rx.recv_timeout(Duration::from_secs(10)).expect("outcome");
    assert!(matches!(outcome, Ok(true)), "{outcome:?}");
    assert_eq!(on_disk, 5, "committed before the outcome was delivered");
}

#[test]
fn a_deferred_advance_that_another_login_beat_hears_lost() {
    let (_d, s, tok) = store();
    assert!(waited(&s, tok, 7).expect("first"));
    let outcome = deferred_outcome(|| deferred(&s, tok, 6));
    assert!(matches!(outcome, Ok(false)), "{outcome:?}");
}

#[test]
fn only_a_deferred_advance_returns_a_ticket_and_a_waited_one_waits() {
    let (_d, s, tok) = store();
    assert!(waited(&s, tok, 3).expect("waited"));
    // Waited for its commit: a second, lower advance loses for real.
    assert!(!waited(&s, tok, 2).expect("waited"));
    let outcome = deferred_outcome(|| deferred(&s, tok, 4));
    assert!(matches!(outcome, Ok(true)), "{outcome:?}");
    assert!(!waited(&s, tok, 4).expect("waited"));
    // A store without a group committer has no queue to defer to: it answers durably.
    let mem = SqliteStore::open_in_memory().expect("memory");
    assert!(matches!(
        mem.advance_counter(tok, 1, 0, 1, false, CommitMode::Defer),
        Ok(Advance::Durable(false))
    ));
}

#[test]
fn a_deferred_advance_in_a_failed_batch_hears_the_error() {
    let (d, s, tok) = store();
    let outcomes = in_a_failed_batch(&d, &s, tok, || {
        let s = s.clone();
        vec![std::thread::spawn(move || {
            deferred_outcome(|| deferred(&s, tok, 10))
        })]
    });
    assert!(
        matches!(outcomes[..], [Err(StoreError::Commit(_))]),
        "{outcomes:?}"
    );
    assert_eq!(
        s.token("HOTP0001").expect("t").expect("token").last_counter,
        1,
        "nothing of the failed batch on disk"
    );
}

#[test]
fn every_unknown_user_failure_writes_to_the_database() {
    // A commit that changes nothing returns without an fsync, far sooner than a known
    // account's failure count: unknown users paced apart were answered 242 µs (81 %)
    // sooner (examples/timing.rs 1000 5). Each such write must change the database,
    // also within one second.
    let (d, s, _tok) = store();
    let other = Connection::open(d.path().join("c.db")).expect("open");
    let version = || -> i64 {
        other
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .expect("data_version")
    };
    s.record_uncounted(None, 100).expect("first");
    for n in 0..3 {
        let before = version();
        s.record_uncounted(None, 100).expect("again, same second");
        assert_ne!(
            version(),
            before,
            "write {n} within one second changed nothing"
        );
    }
    let count: i64 = other
        .query_row(
            "SELECT value FROM meta WHERE name = 'unknown_user_failures'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(count, 4);
}

#[test]
fn an_uncounted_answer_writes_to_the_account_row_it_names() {
    let (d, s, _tok) = store();
    let id = s.account("alice").expect("a").expect("alice").id;
    let other = Connection::open(d.path().join("c.db")).expect("open");
    let version = || -> i64 {
        other
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .expect("data_version")
    };
    for n in 1..=3 {
        let before = version();
        s.record_uncounted(Some(id), 100).expect("write");
        assert_ne!(version(), before, "write {n} changed nothing");
        let probes: i64 = other
            .query_row("SELECT probes FROM accounts WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .expect("probes");
        assert_eq!(probes, n);
    }
    let a = s.account("alice").expect("a").expect("alice");
    assert_eq!(a.failures, 0, "nothing counted");
    // A row that is gone: the meta write instead, still a change.
    let before = version();
    s.record_uncounted(Some(id + 1000), 100).expect("write");
    assert_ne!(version(), before);
}

#[test]
fn the_idle_writer_lends_its_connection_and_a_read_there_sees_other_writers() {
    let (d, s, tok) = store();
    assert!(waited(&s, tok, 1).expect("advance"));
    let committer = s.committer.as_ref().expect("a committer");
    // One write in the last batch: the writer is quiet, and asleep once it has answered.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let lent = loop {
        if let Some(conn) = committer.idle_conn() {
            break Some(conn);
        }
        if std::time::Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    assert!(lent.is_some(), "the idle writer never lent its connection");
    drop(lent);
    // Another process (the CLI) switches the token off: the next read, on the writer's
    // connection or not, sees it.
    Connection::open(d.path().join("c.db"))
        .expect("open")
        .execute("UPDATE tokens SET state = 'disabled' WHERE id = ?1", [tok])
        .expect("disable");
    let found = s
        .account_with_tokens("alice")
        .expect("read")
        .expect("alice");
    let tokens = &found.1;
    assert_eq!(tokens[0].state, crate::model::TokenState::Disabled);
}

/// A store whose writer's last batch was one login and which now sleeps: the next login
/// commits on its own thread.
fn store_after_one_login() -> (tempfile::TempDir, Arc<SqliteStore>, i64) {
    let (d, s, tok) = store();
    assert!(waited(&s, tok, 1).expect("advance"));
    let committer = s.committer.as_ref().expect("a committer");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while committer.idle_conn().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the writer never slept"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    (d, s, tok)
}

#[test]
fn a_login_while_the_writer_sleeps_commits_on_its_own_thread_before_it_is_answered() {
    let (d, s, tok) = store_after_one_login();
    let path = d.path().join("c.db");
    let rx = deferred_probed(&s, tok, 2, move || {
        (std::thread::current().id(), counter_on_disk(&path))
    });
    let (outcome, (answered_on, on_disk)) =
        rx.recv_timeout(Duration::from_secs(10)).expect("outcome");
    assert!(matches!(outcome, Ok(true)), "{outcome:?}");
    assert_eq!(on_disk, 2, "committed before the outcome was delivered");
    assert_eq!(
        answered_on,
        std::thread::current().id(),
        "handed to the writer's thread although it slept"
    );
    // A second login of the same code loses, wherever it is committed.
    assert!(!waited(&s, tok, 2).expect("again"));
}

#[test]
fn a_login_while_another_process_writes_is_queued_not_stuck_on_its_own_thread() {
    let (d, s, tok) = store_after_one_login();
    // The CLI holds the write lock (an import): the login must not wait in SQLite's busy
    // handler on its own thread, but go to the writer, which waits for the lock.
    let other = Connection::open(d.path().join("c.db")).expect("open");
    other.execute_batch("BEGIN IMMEDIATE").expect("lock");
    let started = std::time::Instant::now();
    let rx = deferred_probed(&s, tok, 2, || std::thread::current().id());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the login waited for the other process on its own thread: {:?}",
        started.elapsed()
    );
    std::thread::sleep(Duration::from_millis(100));
    assert!(rx.try_recv().is_err(), "answered while the lock was held");
    other.execute_batch("COMMIT").expect("unlock");
    let (outcome, answered_on) = rx.recv_timeout(Duration::from_secs(10)).expect("outcome");
    assert!(matches!(outcome, Ok(true)), "{outcome:?}");
    assert_ne!(answered_on, std::thread::current().id());
    // The writer's own wait for other processes is whole again.
    other.execute_batch("BEGIN IMMEDIATE").expect("lock again");
    let late = std::thread::spawn({
        let s = s.clone();
        move || waited(&s, tok, 3)
    });
    std::thread::sleep(Duration::from_millis(300));
    other.execute_batch("COMMIT").expect("unlock again");
    assert!(late.join().expect("join").expect("waited out the lock"));
}

#[test]
fn audit_records_of_a_commit_the_full_disk_failed_are_kept_for_the_next() {
    let (d, _s, tok) = store();
    let c = super::Committer::start_holding(&d.path().join("c.db"), 4000, Duration::ZERO, None)
        .expect("committer");
    // The database may not grow by a page: SQLite answers SQLITE_FULL, as on a full disk.
    let pages: i64 = c
        .with_conn(|conn| {
            let n: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            conn.pragma_update(None, "max_page_count", n)?;
            Ok::<_, rusqlite::Error>(n)
        })
        .expect("a file store's writer")
        .expect("limit the pages");
    assert!(pages > 0);
    for i in 0..300 {
        c.write_later(Op::Audit(rec(1_000 + i))).expect("queue");
    }
    // A waited write after them fails with the batch that cannot grow the file.
    let full = advance_to_1(&c, tok);
    assert!(
        full.is_err(),
        "the batch should fail on the page limit: {full:?}"
    );
    // Space is back: the next commit takes the records the failed one could not.
    c.with_conn(|conn| conn.pragma_update(None, "max_page_count", 1_000_000))
        .expect("a file store's writer")
        .expect("lift the limit");
    let won = advance_to_1(&c, tok).expect("advance");
    assert!(matches!(won, super::Answer::Advanced(true)));
    drop(c);
    let n: i64 = Connection::open(d.path().join("c.db"))
        .expect("open")
        .query_row(
            "SELECT count(*) FROM audit WHERE ts_ms BETWEEN 1000 AND 1299",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(n, 300, "audit records lost with the failed commit");
}
