//! The SQLite store's own tests: opening, migrations, the row mappings and the plans of
//! the login's statements.

use super::*;
use crate::model::AuditFilter;
use crate::store::{AdminStore, AuditStore, LoginStore};

fn rec(ts_ms: i64) -> AuditRecord {
    AuditRecord {
        ts_ms,
        user: "u".into(),
        service: "vpn".into(),
        rhost: None,
        client: None,
        verdict: "reject".into(),
        reason: "r".into(),
        serial: None,
    }
}

/// The cached statement `sql` has run, and never scanned a table nor was re-prepared.
fn ran_without_scan_or_re_prepare(conn: &Connection, sql: &str) {
    let st = conn.prepare_cached(sql).expect("the cached statement");
    assert!(
        st.get_status(rusqlite::StatementStatus::VmStep) > 0,
        "not the statement the store used: {sql}"
    );
    assert_eq!(
        st.get_status(rusqlite::StatementStatus::RePrepare),
        0,
        "re-prepared: {sql}"
    );
    assert_eq!(
        st.get_status(rusqlite::StatementStatus::FullscanStep),
        0,
        "scanned: {sql}"
    );
}

/// The login path's reads must neither scan nor be re-prepared on every call (both
/// cost more than the rest of a login together).
#[test]
fn an_accounts_tokens_are_found_by_index_without_re_preparing() {
    let s = SqliteStore::open_in_memory().expect("store");
    for i in 0..5 {
        let id = s
            .create_account(&format!("u{i}"), "off", None, 0)
            .expect("account");
        s.insert_token(&NewToken {
            serial: format!("S{i}"),
            account_id: id,
            kind: TokenKind::Hotp,
            state: TokenState::Active,
            algorithm: Algorithm::Sha1,
            digits: 6,
            period: 0,
            sealed_secret: vec![1],
            label: String::new(),
            created_at: 0,
            public_id: None,
            address: None,
        })
        .expect("token");
    }
    for i in 0..5 {
        let t = s.tokens(Some(&format!("u{i}"))).expect("tokens");
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].serial, format!("S{i}"));
        assert_eq!(t[0].user, format!("u{i}"));
    }
    assert_eq!(s.tokens(None).expect("all").len(), 5);
    let conn = s.conn();
    let sql = format!(
        "SELECT {TOKEN_COLS} FROM tokens t JOIN accounts a ON a.id = t.account_id
             WHERE t.account_id = (SELECT id FROM accounts WHERE name = ?1) ORDER BY a.name, t.id"
    );
    ran_without_scan_or_re_prepare(&conn, &sql);
    let plan: Vec<String> = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .expect("plan")
        .query_map(["u1"], |r| r.get::<_, String>(3))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("plan rows");
    assert!(
        plan.iter().all(|p| !p.starts_with("SCAN")),
        "a scan in {plan:?}"
    );
}

/// What a login reads in one statement equals the two reads it replaced, for accounts
/// with no, one and two tokens; and the statement neither scans nor is re-prepared.
#[test]
fn an_account_and_its_tokens_in_one_read() {
    let s = SqliteStore::open_in_memory().expect("store");
    for (i, n) in [0usize, 1, 2].into_iter().enumerate() {
        let id = s
            .create_account(&format!("u{i}"), "off", None, 0)
            .expect("account");
        for k in 0..n {
            s.insert_token(&NewToken {
                serial: format!("S{i}-{k}"),
                account_id: id,
                kind: TokenKind::Totp,
                state: TokenState::Active,
                algorithm: Algorithm::Sha256,
                digits: 8,
                period: 30,
                sealed_secret: vec![k as u8, 7],
                label: format!("label {k}"),
                created_at: 5,
                public_id: None,
                address: None,
            })
            .expect("token");
        }
    }
    for i in 0..3 {
        let name = format!("u{i}");
        let found = s.account_with_tokens(&name).expect("read").expect("found");
        let (a, t) = &*found;
        let a2 = s.account(&name).expect("read").expect("found");
        assert_eq!(format!("{a:?}"), format!("{a2:?}"));
        let t2 = s.tokens(Some(&name)).expect("tokens");
        assert_eq!(t.len(), i, "{name}");
        assert_eq!(format!("{t:?}"), format!("{t2:?}"));
    }
    assert!(s.account_with_tokens("nobody").expect("read").is_none());
    ran_without_scan_or_re_prepare(&s.conn(), &ACCOUNT_WITH_TOKENS_SQL);
}

#[test]
fn prune_audit_drops_only_old_records() {
    let s = SqliteStore::open_in_memory().expect("store");
    for ts in [1_000, 2_000, 3_000] {
        s.append_audit(rec(ts)).expect("append");
    }
    assert_eq!(s.prune_audit(2_500).expect("prune"), 2);
    let left = s.audit(&AuditFilter::default()).expect("audit");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].ts_ms, 3_000);
}

#[test]
fn migrations_are_recorded_and_rerun_safely() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("m.db");
    let s = SqliteStore::open(&p).expect("open");
    assert_eq!(s.schema_version().expect("v"), MIGRATIONS.len() as i64);
    drop(s);
    let s = SqliteStore::open(&p).expect("reopen");
    assert_eq!(s.integrity_check().expect("check"), "ok");
}

#[test]
fn look_alike_names_are_refused_and_old_databases_get_their_skeletons() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("old.db");
    {
        // A database as the version before the skeleton column left it, with two accounts
        // that already look alike (nothing refused them then).
        let mut c = Connection::open(&p).expect("open");
        let before = MIGRATIONS
            .iter()
            .position(|m| m.contains("ADD COLUMN skeleton"))
            .expect("the skeleton step");
        for (i, step) in MIGRATIONS.iter().enumerate().take(before) {
            c.execute_batch(step).expect("step");
            c.pragma_update(None, "user_version", (i + 1) as i64)
                .expect("version");
        }
        let tx = c.transaction().expect("tx");
        for name in ["alice", "Alice", "bob"] {
            tx.execute(
                "INSERT INTO accounts (name, level, created_at) VALUES (?1, 'off', 1)",
                [name],
            )
            .expect("insert");
        }
        tx.commit().expect("commit");
    }
    let s = SqliteStore::open(&p).expect("upgrade");
    let missing: i64 = s
        .conn()
        .query_row(
            "SELECT count(*) FROM accounts WHERE skeleton IS NULL",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(missing, 0, "every old account has its skeleton");
    for (name, like) in [("ALICE", "alice"), ("b\u{3bf}b", "bob"), ("ｂｏｂ", "bob")] {
        match s.create_account(name, "off", None, 2) {
            Err(StoreError::LooksLike { existing, .. }) => assert_eq!(existing, like),
            other => panic!("{name}: {other:?}"),
        }
    }
    assert!(matches!(
        s.create_account("alice", "off", None, 2),
        Err(StoreError::Exists(_))
    ));
    s.create_account("carol", "off", None, 2)
        .expect("a new name");
    // The check is a lookup in the skeleton index, not a scan of every account.
    let plan: String = s
        .conn()
        .query_row(
            "EXPLAIN QUERY PLAN SELECT 1 FROM accounts WHERE skeleton = 'x'",
            [],
            |r| r.get(3),
        )
        .expect("plan");
    assert!(plan.contains("accounts_skeleton"), "{plan}");
    // Logins still find names exactly.
    assert!(s.account("Alice").expect("read").is_some());
    assert!(s.account("ALICE").expect("read").is_none());
}

#[test]
fn an_email_tokens_address_moves_out_of_public_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("old.db");
    {
        // A database as the version before the address column left it: the e-mail
        // token's address in public_id, next to a YubiKey's public id.
        let c = Connection::open(&p).expect("open");
        let before = MIGRATIONS
            .iter()
            .position(|m| m.contains("ADD COLUMN address"))
            .expect("the address step");
        for (i, step) in MIGRATIONS.iter().enumerate().take(before) {
            c.execute_batch(step).expect("step");
            c.pragma_update(None, "user_version", (i + 1) as i64)
                .expect("version");
        }
        c.execute_batch(
            "INSERT INTO accounts (id, name, level, created_at) VALUES (1, 'alice', 'off', 1);
                 INSERT INTO tokens (serial, account_id, kind, state, algorithm, digits, period,
                                     secret, label, created_at, public_id)
                 VALUES ('MAIL1', 1, 'email', 'active', 'sha1', 6, 0, x'', '', 1,
                         'alice@example.org'),
                        ('YK1', 1, 'yubikey', 'active', 'sha1', 44, 0, x'', '', 1,
                         'cbcdcecfcgch');",
        )
        .expect("old rows");
    }
    let s = SqliteStore::open(&p).expect("upgrade");
    let mail = s.token("MAIL1").expect("read").expect("e-mail token");
    assert_eq!(mail.address.as_deref(), Some("alice@example.org"));
    assert_eq!(mail.public_id, None);
    let yk = s.token("YK1").expect("read").expect("yubikey");
    assert_eq!(yk.public_id.as_deref(), Some("cbcdcecfcgch"));
    assert_eq!(yk.address, None);
}
