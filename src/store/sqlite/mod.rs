//! The embedded SQLite store: WAL, `synchronous=FULL`, a few connections for reads and admin
//! writes, and one writer thread that group-commits the logins' writes (see `commit/`).
//!
//! Files: this one opens the database and holds the row mappings; `login.rs`, `admin.rs` and
//! `audit.rs` implement the traits of the same names; `import.rs` the bulk import;
//! `schema.rs` the migrations; `commit/` the writer thread and its queue.
//!
//! FULL because a counter update guards against replay: an Accept must not leave before the
//! counter that makes its code used is on disk, or a power cut would make the code valid again.

mod admin;
mod api_keys;
mod audit;
pub(super) mod commit;
mod devices;
mod import;
mod login;
pub(super) mod schema;

use super::{StoreError, StoreResult};
use crate::model::{Account, AuditRecord, NewToken, Token, TokenKind, TokenState};
use crate::tokens::oath::Algorithm;
use commit::{Answer, Committer, Op};
use rusqlite::{params, Connection, Row};
use schema::MIGRATIONS;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::Duration;

/// Connections for reads and admin writes in a file store. Every login reads its account and
/// tokens; with one connection behind one mutex those reads queue behind each other.
const READ_CONNECTIONS: usize = 4;

pub struct SqliteStore {
    /// Connections for reads and admin writes; one for an in-memory database (a second
    /// connection would open a different, empty database).
    pool: Vec<Mutex<Connection>>,
    next: AtomicUsize,
    /// The group-committing writer of a file store: counter advances, failure counts and
    /// audit records go through it. `None` in memory and read-only, where writes run directly.
    committer: Option<Committer>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database and brings its schema up to date.
    pub fn open(path: &Path) -> StoreResult<SqliteStore> {
        Self::open_with_checkpoint(path, commit::WAL_CHECKPOINT_PAGES)
    }

    /// [`SqliteStore::open`] with another checkpoint interval: tests use a small one to see
    /// many WAL restarts in few writes.
    pub fn open_with_checkpoint(path: &Path, wal_pages: u32) -> StoreResult<SqliteStore> {
        let fresh = !path.exists();
        let conn = Connection::open(path).map_err(|e| StoreError::Open {
            path: path.display().to_string(),
            msg: e.to_string(),
        })?;
        if fresh {
            // The database holds sealed secrets and keyed hashes: nobody else needs to read it.
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        let mut conn = Self::setup(conn)?;
        migrate(&mut conn)?;
        let mut pool = vec![Mutex::new(conn)];
        for _ in 1..READ_CONNECTIONS {
            let c = Connection::open(path).map_err(|e| StoreError::Open {
                path: path.display().to_string(),
                msg: e.to_string(),
            })?;
            pool.push(Mutex::new(Self::setup(c)?));
        }
        Ok(SqliteStore {
            pool,
            next: AtomicUsize::new(0),
            committer: Some(Committer::start(path, wal_pages)?),
        })
    }

    /// A private in-memory database, for tests.
    pub fn open_in_memory() -> StoreResult<SqliteStore> {
        let mut conn = Self::setup(Connection::open_in_memory()?)?;
        migrate(&mut conn)?;
        Ok(SqliteStore {
            pool: vec![Mutex::new(conn)],
            next: AtomicUsize::new(0),
            committer: None,
        })
    }

    fn setup(conn: Connection) -> StoreResult<Connection> {
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        Ok(conn)
    }

    /// A free connection of the pool, or (all busy) the next one in turn.
    pub(super) fn conn(&self) -> MutexGuard<'_, Connection> {
        let n = self.pool.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        for i in 0..n {
            match self.pool[(start + i) % n].try_lock() {
                Ok(g) => return g,
                // A panic while holding the lock cannot leave SQLite half-written
                // (transactions roll back), so a poisoned lock is safe to take over.
                Err(TryLockError::Poisoned(p)) => return p.into_inner(),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        self.pool[start].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A write through the group committer, or directly where there is none.
    /// Without a committer, each write is a transaction of its own, so an op of two
    /// statements (a backup code and its token's last use) stays one step there too.
    fn write(&self, op: Op) -> StoreResult<Answer> {
        match &self.committer {
            Some(c) => c.write(op),
            None => {
                let mut conn = self.conn();
                let tx = conn.transaction()?;
                let answer = commit::apply(&tx, &op)?;
                tx.commit()?;
                answer
            }
        }
    }

    /// A write nobody waits for: queued for the next batch, or done now without a committer.
    fn write_later(&self, op: Op) -> StoreResult<()> {
        match &self.committer {
            Some(c) => c.write_later(op),
            None => self.write(op).map(|_| ()),
        }
    }

    /// The `bool` of a conditional write (`Answer::Advanced`).
    fn write_won(&self, op: Op) -> StoreResult<bool> {
        self.write(op)?.won()
    }

    #[cfg(test)]
    pub(super) fn committer(&self) -> Option<&Committer> {
        self.committer.as_ref()
    }

    /// Opens a database file without creating it or migrating it (to inspect a backup).
    pub fn open_existing_readonly(path: &Path) -> StoreResult<SqliteStore> {
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| StoreError::Open {
            path: path.display().to_string(),
            msg: e.to_string(),
        })?;
        Ok(SqliteStore {
            pool: vec![Mutex::new(conn)],
            next: AtomicUsize::new(0),
            committer: None,
        })
    }
}

fn migrate(conn: &mut Connection) -> StoreResult<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::TooNew {
            found: version,
            known,
        });
    }
    for (i, step) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    backfill_skeletons(conn)
}

/// Fills in the look-alike key of accounts that have none: those of a database from before
/// the column, and of a restored older backup. Found through the column's index, so once
/// every row has one this costs a lookup per open.
fn backfill_skeletons(conn: &mut Connection) -> StoreResult<()> {
    let tx = conn.transaction()?;
    let rows: Vec<(i64, String)> = {
        let mut st = tx.prepare("SELECT id, name FROM accounts WHERE skeleton IS NULL")?;
        let it = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        it.collect::<Result<_, _>>()?
    };
    if rows.is_empty() {
        return Ok(());
    }
    {
        let mut up = tx.prepare("UPDATE accounts SET skeleton = ?2 WHERE id = ?1")?;
        for (id, name) in &rows {
            up.execute(params![id, crate::confusable::skeleton(name)])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Of `accounts a`, in the order `account_from_row` reads them.
const ACCOUNT_COLS: &str = "a.id, a.name, a.level, a.pin_salt, a.pin_hash, a.failures, \
    a.last_failure, a.locked_until, a.created_at, a.familiar, a.unlocks";
/// How many columns `ACCOUNT_COLS` has: where a joined token row starts.
const ACCOUNT_NCOLS: usize = 11;

fn account_from_row(r: &Row) -> rusqlite::Result<Account> {
    let pin_hash: Option<Vec<u8>> = r.get(4)?;
    Ok(Account {
        id: r.get(0)?,
        name: r.get(1)?,
        level: r.get(2)?,
        pin_salt: r.get(3)?,
        has_pin: pin_hash.is_some(),
        pin_hash,
        failures: r.get(5)?,
        last_failure: r.get(6)?,
        locked_until: r.get(7)?,
        created_at: r.get(8)?,
        familiar_sources: r
            .get_ref(9)?
            .as_str()?
            .split('\n')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        unlocks: r.get(10)?,
    })
}

const TOKEN_COLS: &str = "t.id, t.serial, a.name, t.account_id, t.kind, t.state, t.algorithm, \
    t.digits, t.period, t.secret, t.last_counter, t.drift, t.label, t.created_at, t.last_used_at, \
    t.public_id, t.address";

fn bad(what: &str, v: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("unknown {what} `{v}`").into(),
    )
}

/// What every login reads (`account_with_tokens`); built once, not per login.
static ACCOUNT_WITH_TOKENS_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {ACCOUNT_COLS}, {TOKEN_COLS} FROM accounts a
         LEFT JOIN tokens t ON t.account_id = a.id
         WHERE a.name = (SELECT ?1) ORDER BY t.id"
    )
});

fn token_from_row(r: &Row) -> rusqlite::Result<Token> {
    token_from_row_at(r, 0)
}

/// A token whose `TOKEN_COLS` start at column `at`.
fn token_from_row_at(r: &Row, at: usize) -> rusqlite::Result<Token> {
    let kind: String = r.get(at + 4)?;
    let state: String = r.get(at + 5)?;
    let alg: String = r.get(at + 6)?;
    Ok(Token {
        id: r.get(at)?,
        serial: r.get(at + 1)?,
        user: r.get(at + 2)?,
        account_id: r.get(at + 3)?,
        kind: TokenKind::parse(&kind).ok_or_else(|| bad("token type", kind))?,
        state: TokenState::parse(&state).ok_or_else(|| bad("token state", state))?,
        algorithm: Algorithm::parse(&alg).ok_or_else(|| bad("algorithm", alg))?,
        digits: r.get(at + 7)?,
        period: r.get(at + 8)?,
        sealed_secret: r.get(at + 9)?,
        last_counter: r.get(at + 10)?,
        drift: r.get(at + 11)?,
        label: r.get(at + 12)?,
        created_at: r.get(at + 13)?,
        last_used_at: r.get(at + 14)?,
        public_id: r.get(at + 15)?,
        address: r.get(at + 16)?,
    })
}

fn audit_from_row(r: &Row) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        ts_ms: r.get(0)?,
        user: r.get(1)?,
        service: r.get(2)?,
        rhost: r.get(3)?,
        client: r.get(4)?,
        verdict: r.get(5)?,
        reason: r.get(6)?,
        serial: r.get(7)?,
    })
}

/// `last_counter` of a token never used (the column's default).
const NO_COUNTER: i64 = -1;

/// The one token INSERT, for `otpd token add` and the bulk import alike. Returns its id.
fn insert_token_row(
    conn: &Connection,
    t: &NewToken,
    account_id: i64,
    last_counter: i64,
) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "INSERT INTO tokens (serial, account_id, kind, state, algorithm, digits, period,
                             secret, label, created_at, public_id, address, last_counter)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        t.serial,
        account_id,
        t.kind.as_str(),
        t.state.as_str(),
        t.algorithm.as_str().to_ascii_lowercase(),
        t.digits,
        t.period,
        t.sealed_secret,
        t.label,
        t.created_at,
        t.public_id,
        t.address,
        last_counter
    ])?;
    Ok(conn.last_insert_rowid())
}

fn one_row(changed: usize, what: &str) -> StoreResult<()> {
    if changed == 0 {
        Err(StoreError::NotFound(what.to_string()))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
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
            let (a, t) = s.account_with_tokens(&name).expect("read").expect("found");
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
            s.append_audit(&rec(ts)).expect("append");
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
}
