//! The gate's own tests (gate.rs).

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The row after `failed` calls, as the store would hold it.
fn row(failures: u32, last: i64, locked_until: Option<i64>) -> Account {
    Account {
        failures,
        last_failure: Some(last),
        locked_until,
        ..acct()
    }
}

fn acct() -> Account {
    Account {
        id: 7,
        name: "alice".into(),
        level: "everywhere".into(),
        pin_salt: None,
        pin_hash: None,
        has_pin: true,
        failures: 0,
        last_failure: None,
        locked_until: None,
        created_at: 0,
        familiar_sources: Vec::new(),
        unlocks: 0,
    }
}

fn cfg() -> LockoutConfig {
    LockoutConfig {
        free_failures: 3,
        delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(60),
        max_failures: 6,
        lock_duration: Duration::from_secs(100),
        ..LockoutConfig::default()
    }
}

/// Three failures at once, and the third locks.
fn three_then_locked() -> LockoutConfig {
    LockoutConfig {
        free_failures: 3,
        max_failures: 3,
        delay: Duration::from_secs(60),
        ..cfg()
    }
}

#[test]
fn parallel_attempts_take_their_slots_before_they_are_evaluated() {
    let g = Arc::new(Gate::new());
    let evaluated = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..64)
        .map(|_| {
            let (g, evaluated) = (g.clone(), evaluated.clone());
            std::thread::spawn(move || {
                if let Ok(p) = g.enter(&acct(), false, None, 10_000, &cfg()) {
                    evaluated.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(5));
                    p.failed(10, &cfg(), None);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    assert_eq!(evaluated.load(Ordering::SeqCst), 3, "free failures only");
}

#[test]
fn attempts_that_only_wait_for_others_get_in_when_those_succeed() {
    let g = Gate::new();
    let c = cfg();
    let held: Vec<_> = (0..3)
        .map(|_| g.enter(&acct(), false, None, 0, &c).expect("free"))
        .collect();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| g.enter(&acct(), false, None, 0, &c).map(|p| p.succeeded()));
        std::thread::sleep(Duration::from_millis(20));
        for p in held {
            p.succeeded();
        }
        assert!(waiter.join().expect("join").is_ok());
    });
    assert_eq!(g.len(), 0, "nothing kept for a healthy account");
}

#[test]
fn a_lock_that_ends_needs_the_full_count_again() {
    let g = Gate::new();
    let c = cfg();
    let mut a = acct();
    let mut now = 0;
    for _ in 0..6 {
        now += 100;
        let n = g
            .enter(&a, false, None, now * 1000, &c)
            .expect("admitted")
            .failed(now, &c, None);
        a = row(n.failures, now, n.locked.then_some(now + 100));
    }
    assert!(matches!(
        g.enter(&a, false, None, now * 1000, &c),
        Err(Refusal::Locked { .. })
    ));
    now += 100;
    let n = g
        .enter(&a, false, None, now * 1000, &c)
        .expect("lock over")
        .failed(now, &c, None);
    assert_eq!((n.failures, n.locked), (1, false));
}

#[test]
fn familiar_sources_have_their_own_bucket() {
    let g = Gate::new();
    let c = LockoutConfig {
        lock_duration: Duration::from_secs(1000),
        ..cfg()
    };
    let mut a = acct();
    for i in 0..6 {
        let now = i * 100;
        let n = g
            .enter(&a, false, None, now * 1000, &c)
            .expect("admitted")
            .failed(now, &c, None);
        a = row(n.failures, now, n.locked.then_some(now + 1000));
    }
    assert!(g.enter(&a, false, None, 600_000, &c).is_err());
    g.enter(&a, true, None, 600_000, &c)
        .expect("familiar gets in")
        .succeeded();
    // The user's success forgives the guesses from elsewhere too (and clears the row).
    assert!(g.enter(&acct(), false, None, 600_000, &c).is_ok());
}

#[test]
fn an_unknown_name_is_throttled_like_an_account() {
    let g = Gate::new();
    let c = LockoutConfig {
        delay: Duration::from_secs(60),
        ..cfg()
    };
    let ghost = g.ghost("mallory");
    assert!(ghost.id < 0);
    assert_eq!(ghost.id, g.ghost("mallory").id);
    assert_ne!(ghost.id, g.ghost("mallorz").id);
    for _ in 0..3 {
        g.enter(&ghost, false, None, 0, &c)
            .expect("free")
            .failed(0, &c, None);
    }
    // Its memory is not replaced by a row, however long it is quiet.
    assert!(matches!(
        g.enter(&ghost, false, None, 30_000, &c),
        Err(Refusal::Throttled { .. })
    ));
}

#[test]
fn the_row_wins_again_once_the_entry_is_quiet() {
    let g = Gate::new();
    let c = LockoutConfig {
        delay: Duration::from_secs(60),
        ..cfg()
    };
    for _ in 0..3 {
        g.enter(&acct(), false, None, 0, &c)
            .expect("free")
            .failed(0, &c, None);
    }
    // A row read before those commits (failures 0) does not undo them ...
    assert!(matches!(
        g.enter(&acct(), false, None, 500, &c),
        Err(Refusal::Throttled { .. })
    ));
    // ... an admin's unlock (from any process) does, at once ...
    let unlocked = Account {
        unlocks: 1,
        ..acct()
    };
    g.enter(&unlocked, false, None, 600, &c)
        .expect("unlocked")
        .failed(0, &c, None);
    // ... and after SYNC_MS the row counts again.
    assert!(g.enter(&unlocked, false, None, 3_000, &c).is_ok());
}

#[test]
fn another_nodes_failures_in_the_row_count_at_once() {
    let g = Gate::new();
    let c = LockoutConfig {
        free_failures: 6,
        ..cfg()
    };
    // This node counted one failure just now; the row (read by the next login) holds five,
    // four of them another node's.
    g.enter(&acct(), false, None, 0, &c)
        .expect("free")
        .failed(0, &c, Some(5));
    let n = g
        .enter(&row(5, 0, None), false, None, 100, &c)
        .expect("admitted")
        .failed(0, &c, Some(6));
    assert_eq!((n.failures, n.locked), (6, true));
    // A row read while the lock holds locks this node too, even right after its own failure.
    let g2 = Gate::new();
    g2.enter(&acct(), false, None, 0, &c)
        .expect("free")
        .failed(0, &c, None);
    assert!(matches!(
        g2.enter(&row(6, 0, Some(100)), false, None, 500, &c),
        Err(Refusal::Locked { .. })
    ));
}

#[test]
fn an_old_rows_ended_lock_does_not_wipe_newer_failures() {
    let g = Gate::new();
    let c = three_then_locked();
    // After a lock that ended at 100 s: two fresh failures at 101 s.
    for _ in 0..2 {
        g.enter(&acct(), false, None, 101_000, &c)
            .expect("free")
            .failed(101, &c, None);
    }
    // A login that read the row before those failures (the old, ended lock) must see them.
    let stale = row(3, 90, Some(100));
    let n = g
        .enter(&stale, false, None, 101_500, &c)
        .expect("the third")
        .failed(101, &c, None);
    assert_eq!((n.failures, n.locked), (3, true));
}

#[test]
fn a_failure_read_back_from_the_row_before_it_is_counted_in_memory_counts_once() {
    let g = Gate::new();
    let c = three_then_locked();
    // Three attempts in flight; the first two fail and are written (rows 1 and 2).
    let mut held: Vec<_> = (0..3)
        .map(|_| g.enter(&acct(), false, None, 10_000, &c).expect("free"))
        .collect();
    for n in 1..=2 {
        let p = held.remove(0);
        assert_eq!(p.failed(10, &c, Some(n)).failures, n);
    }
    // The third's write lands (row 3, locked) and another login reads that row and is
    // refused before the third's own count reaches memory: the row's 3 already holds it.
    let written = row(3, 10, Some(110));
    assert!(matches!(
        g.enter(&written, false, None, 10_010, &c),
        Err(Refusal::Locked { .. })
    ));
    let n = held.remove(0).failed(10, &c, Some(3));
    assert_eq!((n.failures, n.locked), (3, true), "counted twice");
}
