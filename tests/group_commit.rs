//! The engine over a file store with group commit: parallel logins share commits, yet every
//! code is accepted once and every Accept is on disk when it is returned.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job
use otpd::admin::{Admin, TokenOptions};
use otpd::config::Config;
use otpd::crypto::{Keys, MasterKey};
use otpd::engine::{CheckRequest, Engine, Verdict};
use otpd::model::TokenKind;
use otpd::store::{AdminStore, AuditStore, LoginStore, SqliteStore};
use otpd::tokens::oath::{hotp, Algorithm};
use std::sync::Arc;

const SECRET: &[u8] = b"12345678901234567890";
const SECRET_B32: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

fn world(dir: &std::path::Path, users: usize) -> (Arc<Engine>, Arc<SqliteStore>) {
    world_with(
        users,
        SqliteStore::open(&dir.join("otpd.db")).expect("store"),
    )
}

fn world_with(users: usize, store: SqliteStore) -> (Arc<Engine>, Arc<SqliteStore>) {
    let mut cfg = Config::default();
    // Losers of a race count as failures; no throttling, so every round is decided on its own.
    cfg.lockout.free_failures = 1_000_000;
    cfg.lockout.max_failures = 0;
    let cfg = Arc::new(cfg.finish().expect("config"));
    let store = Arc::new(store);
    let dyn_store: Arc<dyn AdminStore> = store.clone();
    let keys = Arc::new(Keys::new(&MasterKey::from_bytes([5u8; 32])));
    let admin = Admin::new(cfg.clone(), dyn_store.clone(), keys.clone());
    for i in 0..users {
        let u = format!("user{i}");
        admin.add_user(&u, Some("1234"), None).expect("user");
        admin
            .add_token(
                &u,
                TokenOptions {
                    kind: TokenKind::Hotp,
                    secret_b32: Some(SECRET_B32.to_string().into()),
                    digits: 6,
                    algorithm: Algorithm::Sha1,
                    period: 30,
                    label: String::new(),
                    active: true,
                },
            )
            .expect("token");
        admin.set_user(&u, None, Some("everywhere")).expect("level");
    }
    (Arc::new(Engine::new(cfg, dyn_store, keys)), store)
}

fn req(user: &str, counter: u64) -> CheckRequest {
    CheckRequest {
        user: user.into(),
        password: format!("1234{}", hotp(Algorithm::Sha1, SECRET, counter, 6)).into(),
        service: "vpn".into(),
        rhost: None,
        client: Some("test".into()),
        state: None,
        defer_is_reject: false,
        device: Default::default(),
        code_only: false,
    }
}

#[test]
fn sixteen_parallel_identical_checks_give_exactly_one_accept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (engine, _store) = world(dir.path(), 1);
    for counter in 0..10u64 {
        let verdicts: Vec<Verdict> = (0..16)
            .map(|_| {
                let e = engine.clone();
                std::thread::spawn(move || e.check(&req("user0", counter)).verdict)
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().expect("join"))
            .collect();
        let accepts = verdicts.iter().filter(|v| **v == Verdict::Accept).count();
        assert_eq!(accepts, 1, "counter {counter}: {verdicts:?}");
    }
}

#[test]
fn parallel_logins_of_many_users_share_commits_and_are_all_durable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (engine, store) = world(dir.path(), 32);
    let before = otpd::metrics::get().store_batch.count();
    let handles: Vec<_> = (0..32)
        .map(|i| {
            let e = engine.clone();
            std::thread::spawn(move || {
                (0..20u64)
                    .map(|c| e.check(&req(&format!("user{i}"), c)).verdict)
                    .filter(|v| *v == Verdict::Accept)
                    .count()
            })
        })
        .collect();
    let accepted: usize = handles.into_iter().map(|h| h.join().expect("join")).sum();
    assert_eq!(accepted, 32 * 20);
    let commits = otpd::metrics::get().store_batch.count() - before;
    // 640 advances and 640 audit records: with group commit far fewer commits than writes.
    assert!(
        commits < 1280,
        "{commits} commits for 1280 writes: no batching"
    );
    // Every accepted counter is in the database as another connection reads it.
    drop(engine);
    drop(store);
    let fresh = SqliteStore::open(&dir.path().join("otpd.db")).expect("reopen");
    for t in fresh.tokens(None).expect("tokens") {
        assert_eq!(t.last_counter, 19, "{}", t.user);
    }
    assert_eq!(
        fresh.integrity_check().expect("integrity"),
        "ok",
        "integrity_check"
    );
    let audit = fresh.audit(&Default::default()).expect("audit");
    assert_eq!(
        audit.len(),
        640,
        "every audit record committed by the clean shutdown"
    );
}

#[test]
fn the_wal_starts_over_under_steady_writes_and_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A checkpoint every 50 WAL pages instead of thousands, so that few writes restart the
    // WAL many times.
    let store = SqliteStore::open_with_checkpoint(&dir.path().join("otpd.db"), 50).expect("store");
    let (engine, store) = world_with(16, store);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Readers that never pause, as the login threads of a busy daemon.
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (s, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = s.tokens(Some("user3")).expect("read");
                }
            })
        })
        .collect();
    let writers: Vec<_> = (0..16)
        .map(|i| {
            let e = engine.clone();
            std::thread::spawn(move || {
                for c in 0..225u64 {
                    assert_eq!(
                        e.check(&req(&format!("user{i}"), c)).verdict,
                        Verdict::Accept
                    );
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        r.join().expect("reader");
    }
    // Without checkpoints that complete, the WAL would never start over and would keep every
    // frame (it once grew to gigabytes; 2,907 frames here with checkpoints switched off). Each
    // restart adds one to the checkpoint sequence number in the WAL header (bytes 12..16, big
    // endian; zero when the file was created).
    let path = dir.path().join("otpd.db-wal");
    let wal = std::fs::read(&path).expect("wal");
    let restarts = u32::from_be_bytes(wal[12..16].try_into().expect("header"));
    let frames = wal.len().saturating_sub(32) / (4096 + 24);
    assert!(restarts >= 3, "the WAL started over {restarts} times");
    // Near the 50-page interval plus what readers held on to (164 to 211 frames seen).
    assert!(frames < 1000, "WAL of {frames} frames");
}

#[test]
fn an_account_without_an_active_token_still_pays_a_durable_write() {
    // Its login has no failure count to raise, yet its answer must cost the write a wrong
    // code's costs: without one it came about 300 µs sooner and told that the account exists
    // but has no usable token (examples/timing.rs, docs/security.md#timing). It shares the
    // unknown-user write, which changes the database every time.
    let dir = tempfile::tempdir().expect("tempdir");
    let (engine, store) = world(dir.path(), 1);
    let serial = store.tokens(Some("user0")).expect("tokens")[0]
        .serial
        .clone();
    store
        .set_token_state(&serial, otpd::model::TokenState::Disabled)
        .expect("disable");
    for counter in 0..3 {
        let d = engine.check(&req("user0", counter));
        assert_eq!(d.verdict, Verdict::Reject);
        assert_eq!(d.reason, "no active token");
    }
    assert_written_not_counted(dir.path(), &store, 3);
}

#[test]
fn a_filler_password_for_a_known_account_still_pays_a_durable_write() {
    // A password with control characters (sshd's "\x08\n\r\x7fINCORRECT" for logins it
    // refuses itself) is not counted; an unknown user's login with it pays the unknown-user
    // write, so a known account's must too, or it came about 315 µs sooner and told that the
    // account exists (examples/timing.rs, docs/security.md#timing).
    let dir = tempfile::tempdir().expect("tempdir");
    let (engine, store) = world(dir.path(), 1);
    for _ in 0..3 {
        let d = engine.check(&CheckRequest {
            password: "\x08\n\r\x7fINCORRECT".to_string().into(),
            ..req("user0", 0)
        });
        assert_eq!(d.verdict, Verdict::Reject);
        assert!(d.reason.contains("not counted"), "{d:?}");
    }
    assert_written_not_counted(dir.path(), &store, 3);
}

#[test]
fn a_wrong_app_password_still_pays_a_durable_write() {
    // Not counted (a random app password cannot be guessed), but without the unknown-user
    // write it came about 180 µs sooner than an unknown user's answer and told that the
    // account exists (examples/timing.rs, docs/security.md#timing).
    let dir = tempfile::tempdir().expect("tempdir");
    let (engine, store) = world(dir.path(), 1);
    store.set_level("user0", "app-passwords").expect("level");
    for _ in 0..3 {
        let d = engine.check(&CheckRequest {
            password: "abcd-efgh-ijkl-mnop-qrst".to_string().into(),
            service: "mail".into(),
            ..req("user0", 0)
        });
        assert_eq!(d.verdict, Verdict::Reject);
        assert!(d.reason.contains("app password"), "{d:?}");
    }
    assert_written_not_counted(dir.path(), &store, 3);
}

/// `logins` uncounted failures of user0 each made the uncounted write (an account row's
/// `probes` went up by one each time, or the unknown-user count in `meta`), and user0's
/// failure count stayed 0.
fn assert_written_not_counted(dir: &std::path::Path, store: &SqliteStore, logins: i64) {
    let other = rusqlite::Connection::open(dir.join("otpd.db")).expect("open");
    let count: i64 = other
        .query_row(
            "SELECT (SELECT total(probes) FROM accounts)
                  + coalesce((SELECT value FROM meta WHERE name = 'unknown_user_failures'), 0)",
            [],
            |r| r.get::<_, f64>(0),
        )
        .map(|n| n as i64)
        .expect("the uncounted write happened");
    assert_eq!(count, logins, "one durable write per login");
    let failures = store
        .account("user0")
        .expect("read")
        .expect("user0")
        .failures;
    assert_eq!(failures, 0, "not counted against the account");
}
