//! The contract of [`SharedStateStore`], run on the memory implementation; `conformance`
//! takes any implementation, so another store can be held to the same.

use super::*;
use std::sync::Arc;

fn challenge(user: &str, expires_ms: i64) -> Challenge {
    Challenge {
        user: user.into(),
        client: Some("nas".into()),
        class: "vpn".into(),
        sealed_pin: vec![1, 2, 3],
        expires_ms,
    }
}

fn key(n: u8) -> Key {
    [n; 32]
}

/// What every implementation must do.
pub(crate) fn conformance(s: &dyn SharedStateStore) {
    // A State is taken once.
    assert!(s
        .put_challenge(&key(1), &challenge("alice", 10_000), 0, 4)
        .expect("put"));
    assert_eq!(
        s.take_challenge(&key(1)).expect("take"),
        Some(challenge("alice", 10_000))
    );
    assert_eq!(s.take_challenge(&key(1)).expect("again"), None);
    // At most `per_user` open per user, the oldest go.
    for n in 10..16 {
        assert!(s
            .put_challenge(&key(n), &challenge("bob", 10_000), i64::from(n), 4)
            .expect("put"));
    }
    assert_eq!(
        s.take_challenge(&key(10)).expect("take"),
        None,
        "oldest dropped"
    );
    assert_eq!(
        s.take_challenge(&key(11)).expect("take"),
        None,
        "oldest dropped"
    );
    assert!(s.take_challenge(&key(12)).expect("take").is_some());

    // Re-login: idle and max end an entry; a hit restarts the idle time.
    let e = |now_ms| ReloginEntry {
        serial: "TOTP1",
        now_ms,
        idle_ms: 60_000,
        max_ms: 300_000,
    };
    s.relogin_put(&key(2), e(0)).expect("put");
    let hit = s.relogin_hit(&key(2), 59_000).expect("hit").expect("live");
    assert_eq!((hit.serial.as_str(), hit.created_ms), ("TOTP1", 0));
    assert!(s.relogin_hit(&key(2), 118_000).expect("hit").is_some());
    assert!(
        s.relogin_hit(&key(2), 179_000).expect("hit").is_none(),
        "idle"
    );
    s.relogin_put(&key(3), e(0)).expect("put");
    for t in [50_000, 100_000, 150_000, 200_000, 250_000, 300_000] {
        assert!(s.relogin_hit(&key(3), t).expect("hit").is_some(), "{t}");
    }
    assert!(
        s.relogin_hit(&key(3), 301_000).expect("hit").is_none(),
        "max"
    );
    s.relogin_put(&key(4), e(0)).expect("put");
    s.relogin_forget(&key(4)).expect("forget");
    assert!(s.relogin_hit(&key(4), 1).expect("hit").is_none());

    // Windows: blocked at max, a new window after it ran out.
    let w = Count::Window {
        window: 600,
        block: 900,
        max: 3,
    };
    for (i, now) in [100, 101, 102].into_iter().enumerate() {
        let c = s.count("src\nx", now, w).expect("count");
        assert_eq!(c.failures, i as u32 + 1);
    }
    let got = s.counters(&["src\nx", "src\ny"]).expect("read");
    assert_eq!(got[0].map(|c| (c.failures, c.until)), Some((3, Some(1002))));
    assert_eq!(got[1], None);
    assert_eq!(s.count("src\nx", 2000, w).expect("count").failures, 1);
    s.forget("src\nx").expect("forget");
    assert_eq!(s.counters(&["src\nx"]).expect("read"), vec![None]);

    // Buckets: locked at lock_at, and an ended lock starts afresh.
    let b = Count::Bucket {
        lock_at: 2,
        lock_until: 500,
        keep: 86_400,
    };
    assert_eq!(s.count("fam\n1", 10, b).expect("count").until, None);
    let c = s.count("fam\n1", 11, b).expect("count");
    assert_eq!((c.failures, c.last, c.until), (2, Some(11), Some(500)));
    let c = s.count("fam\n1", 12, b).expect("count");
    assert_eq!((c.failures, c.until), (3, Some(500)), "a lock is not moved");
    let c = s.count("fam\n1", 600, b).expect("count");
    assert_eq!((c.failures, c.until), (1, None), "lock over: afresh");
}

#[test]
fn memory_keeps_the_contract() {
    conformance(&MemoryShared::new());
}

#[test]
fn a_state_is_taken_once_under_a_race() {
    let s = Arc::new(MemoryShared::new());
    assert!(s
        .put_challenge(&key(9), &challenge("alice", 10_000), 0, 4)
        .expect("put"));
    let won: usize = (0..16)
        .map(|_| {
            let s = s.clone();
            std::thread::spawn(move || s.take_challenge(&key(9)).expect("take").is_some())
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| usize::from(t.join().expect("join")))
        .sum();
    assert_eq!(won, 1);
}

#[test]
fn relogin_entries_are_bounded_oldest_first() {
    let s = MemoryShared::with_relogin_bound(3);
    let e = |now_ms| ReloginEntry {
        serial: "T",
        now_ms,
        idle_ms: 600_000,
        max_ms: 3_600_000,
    };
    for n in 0..5u8 {
        s.relogin_put(&key(n), e(i64::from(n))).expect("put");
    }
    assert_eq!(s.sizes().1, 3);
    assert!(s.relogin_hit(&key(0), 10).expect("hit").is_none());
    assert!(s.relogin_hit(&key(4), 10).expect("hit").is_some());
    for t in 0..100 {
        s.relogin_put(&key(4), e(20 + t)).expect("put");
    }
    assert_eq!(s.sizes().1, 3);
}

#[test]
fn counters_stay_bounded_under_a_flood_of_sources() {
    let s = MemoryShared::new();
    let w = Count::Window {
        window: 600,
        block: 900,
        max: 5,
    };
    for i in 0..(super::memory_bound() as u32 + 5_000) {
        s.count(&format!("src\n{i}"), i64::from(i / 1000), w)
            .expect("count");
    }
    assert!(s.sizes().2 <= super::memory_bound());
}
