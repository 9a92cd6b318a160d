//! Key rotation, backup and restore (issue 8) through the real binary and the library.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job
mod common;

use common::{hotp_code, Env};
use otpd::admin::{self, Admin, TokenOptions};
use otpd::config::Config;
use otpd::engine::{CheckRequest, Engine, Verdict};
use otpd::model::TokenKind;
use otpd::tokens::oath::Algorithm;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn key_path(env: &Env) -> std::path::PathBuf {
    env.path().join("data/otpd.key")
}

#[test]
fn rotation_reseals_everything_and_pins_keep_working() {
    let env = Env::new("");
    env.enrol("alice", "1234", "hotp", "everywhere");
    env.enrol("bob", "5678", "totp", "everywhere");
    let old_key = std::fs::read(key_path(&env)).expect("key");
    let out = env.ok(&["key", "rotate"], None);
    assert!(out.contains("2 secrets re-sealed"), "{out}");
    let new_key = std::fs::read(key_path(&env)).expect("key");
    assert_ne!(old_key, new_key);
    assert_eq!(new_key.len(), 32);
    assert!(!env.path().join("data/otpd.key.new").exists());
    // Same PINs (keyed hashes survive), tokens open under the new key.
    assert_eq!(
        env.check("alice", "vpn", &format!("1234{}", hotp_code(0)))["verdict"],
        "accept"
    );
    assert_eq!(
        env.check("bob", "vpn", &format!("5678{}", common::totp_code_now()))["verdict"],
        "accept"
    );
    // The old key is gone and opens nothing any more.
    std::fs::write(key_path(&env), &old_key).expect("put old key back");
    let out = env.run(
        &["check", "alice", "--service", "vpn", "--json"],
        Some(&format!("1234{}\n", hotp_code(1))),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not the key they were sealed with"), "{err}");
    std::fs::write(key_path(&env), &new_key).expect("restore new key");
    // Rotating twice works as well.
    env.ok(&["key", "rotate"], None);
    assert_eq!(
        env.check("alice", "vpn", &format!("1234{}", hotp_code(1)))["verdict"],
        "accept"
    );
}

#[test]
fn interrupted_rotation_leaves_a_working_installation_and_finishes() {
    let env = Env::new("");
    env.enrol("alice", "1234", "hotp", "everywhere");
    let key = key_path(&env);
    let next = env.path().join("data/otpd.key.new");
    // Crash after the new key was written, before the transaction: nothing sealed under it.
    otpd::crypto::create_key_file(&next).expect("next key");
    assert_eq!(
        env.check("alice", "vpn", &format!("1234{}", hotp_code(0)))["verdict"],
        "accept"
    );
    let out = env.ok(&["key", "rotate"], None);
    assert!(out.contains("finished an interrupted rotation"), "{out}");
    assert!(!next.exists());
    assert_eq!(
        env.check("alice", "vpn", &format!("1234{}", hotp_code(1)))["verdict"],
        "accept"
    );
    // Crash after the transaction, before the rename: the database is sealed under KEY.new
    // while KEY still holds the old key.
    let before = std::fs::read(&key).expect("key");
    env.ok(&["key", "rotate"], None);
    let after = std::fs::read(&key).expect("key");
    otpd::crypto::write_key_file(&next, &after.try_into().expect("32 bytes")).expect("new");
    std::fs::remove_file(&key).expect("rm");
    otpd::crypto::write_key_file(&key, &before.try_into().expect("32 bytes")).expect("old back");
    assert_eq!(
        env.check("alice", "vpn", &format!("1234{}", hotp_code(2)))["verdict"],
        "accept"
    );
    env.ok(&["key", "rotate"], None);
    assert!(!next.exists());
    assert_eq!(
        env.check("alice", "vpn", &format!("1234{}", hotp_code(3)))["verdict"],
        "accept"
    );
}

#[test]
fn a_serving_engine_follows_a_rotation_without_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    }
    .finish()
    .expect("config");
    admin::init(&cfg).expect("init");
    let (store, keys) = admin::open(&cfg).expect("open");
    let cfg = Arc::new(cfg);
    let a = Admin::new(cfg.clone(), store.clone(), keys.clone());
    a.add_user("alice", Some("1234"), None).expect("user");
    a.add_token(
        "alice",
        TokenOptions {
            kind: TokenKind::Hotp,
            secret_b32: Some(common::SECRET_B32.to_string().into()),
            digits: 6,
            algorithm: Algorithm::Sha1,
            period: 30,
            label: String::new(),
            active: true,
        },
    )
    .expect("token");
    a.set_user("alice", None, Some("everywhere"))
        .expect("level");
    // This engine stands for the running daemon: it loaded the old key and keeps it.
    let engine = Engine::new(cfg.clone(), store, keys);
    let check = |c: u64| {
        engine
            .check(&CheckRequest {
                user: "alice".into(),
                password: format!("1234{}", hotp_code(c)).into(),
                service: "vpn".into(),
                ..CheckRequest::default()
            })
            .verdict
    };
    assert_eq!(check(0), Verdict::Accept);
    admin::rotate_key(&cfg).expect("rotate");
    assert_eq!(
        check(1),
        Verdict::Accept,
        "engine must re-read the rotated key"
    );
}

#[test]
fn backup_under_load_restores_to_a_sound_database() {
    let env = Env::new("");
    env.enrol("alice", "1234", "hotp", "everywhere");
    env.enrol("bob", "5678", "totp", "web-otp");
    let stop = Arc::new(AtomicBool::new(false));
    let env = Arc::new(env);
    // Load: a stream of logins writing counters and audit records while backups are taken.
    let load = {
        let (env, stop) = (env.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut c = 0u64;
            while !stop.load(Ordering::SeqCst) && c < 500 {
                let v = env.check("alice", "vpn", &format!("1234{}", hotp_code(c)));
                assert_eq!(v["verdict"], "accept", "{v}");
                c += 1;
            }
            c
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut backups = Vec::new();
    for i in 0..3 {
        let b = env.path().join(format!("backup-{i}.db"));
        let out = env.ok(&["backup", b.to_str().expect("path")], None);
        assert!(out.contains("integrity ok"), "{out}");
        backups.push(b);
    }
    stop.store(true, Ordering::SeqCst);
    let used = load.join().expect("load thread");
    assert!(used > 0);
    // Never overwrites a backup.
    let out = env.run(&["backup", backups[0].to_str().expect("path")], None);
    assert!(!out.status.success());
    // Each backup passes SQLite's own integrity check as a plain file.
    for b in &backups {
        let conn = rusqlite::Connection::open(b).expect("open backup");
        let ok: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .expect("check");
        assert_eq!(ok, "ok");
    }
    // Restore needs --yes, then the restored database validates logins.
    let last = backups[2].to_str().expect("path");
    let out = env.run(&["restore", last], None);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--yes"));
    let out = env.ok(&["restore", last, "--yes"], None);
    assert!(out.contains("HOTP counters are as in the backup"), "{out}");
    let next = hotp_code(used + 1);
    assert_eq!(
        env.check("alice", "vpn", &format!("1234{next}"))["verdict"],
        "accept"
    );
    // TOTP codes up to the restore were burnt: the current one no longer works...
    assert_eq!(
        env.check("bob", "web", &format!("5678{}", common::totp_code_now()))["verdict"],
        "reject"
    );
    let users = env.ok(&["user", "list", "--json"], None);
    assert!(users.contains("alice") && users.contains("bob"));
}

#[test]
fn restore_refuses_a_backup_sealed_under_another_key() {
    let env = Env::new("");
    env.enrol("alice", "1234", "hotp", "everywhere");
    let b = env.path().join("before-rotation.db");
    env.ok(&["backup", b.to_str().expect("path")], None);
    env.ok(&["key", "rotate"], None);
    let out = env.run(&["restore", b.to_str().expect("path"), "--yes"], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("taken under another key"), "{err}");
    // Nothing was changed.
    assert_eq!(
        env.check("alice", "vpn", &format!("1234{}", hotp_code(0)))["verdict"],
        "accept"
    );
    let junk = env.path().join("junk.db");
    std::fs::write(&junk, b"not a database at all, not even close to sqlite").expect("junk");
    let out = env.run(&["restore", junk.to_str().expect("path"), "--yes"], None);
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}

/// `otpd key rotate` run as root (the admin's usual way) keeps the key readable by the
/// service: the new key file gets the old one's owner and group, still mode 0600. The test
/// plays the service user with uid/gid 65534 (nobody/nogroup), so it needs root.
#[test]
fn rotation_as_root_keeps_the_key_file_owner() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // SAFETY: geteuid(2) has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test changes a file's owner and needs root (CI runs as root); run as root"
    );
    let env = Env::new("");
    env.enrol("alice", "1234", "hotp", "everywhere");
    let key = key_path(&env);
    std::os::unix::fs::chown(&key, Some(65534), Some(65534)).expect("chown key");
    env.ok(&["key", "rotate"], None);
    let meta = std::fs::metadata(&key).expect("key");
    assert_eq!(
        (meta.uid(), meta.gid()),
        (65534, 65534),
        "the rotated key must keep the old key's owner and group"
    );
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(
        env.check("alice", "vpn", &format!("1234{}", hotp_code(0)))["verdict"],
        "accept"
    );
}
