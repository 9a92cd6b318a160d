//! The embedded SQLite store: WAL, `synchronous=FULL`, a few connections for reads and admin
//! writes, and one writer thread that group-commits the logins' writes (see `commit.rs`).
//!
//! FULL because a counter update guards against replay: an Accept must not leave before the
//! counter that makes its code used is on disk, or a power cut would make the code valid again.

use super::commit::{self, Answer, Committer, Op};
use super::schema::MIGRATIONS;
use super::{Store, StoreError, StoreResult};
use crate::model::{
    Account, AppPassword, AuditFilter, AuditRecord, BackupCode, EmailCode, NewToken, Token,
    TokenKind, TokenState,
};
use crate::tokens::oath::Algorithm;
use rusqlite::{params, Connection, OptionalExtension, Row};
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

    /// A consistent copy of the live database into a new file, taken in one step of SQLite's
    /// online backup API: one read transaction, so writers (WAL) keep going meanwhile and the
    /// copy is a snapshot, not a mix of before and after.
    pub fn backup_to(&self, dest: &Path) -> StoreResult<()> {
        let conn = self.conn();
        let mut dst = Connection::open(dest).map_err(|e| StoreError::Open {
            path: dest.display().to_string(),
            msg: e.to_string(),
        })?;
        let _ = std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o600));
        copy_all(&conn, &mut dst)?;
        // A backup is one self-contained file: no WAL beside it.
        dst.pragma_update(None, "journal_mode", "DELETE")?;
        Ok(())
    }

    /// Replaces this database's content with `src`'s (restore), in one step.
    pub fn restore_from(&self, src: &SqliteStore) -> StoreResult<()> {
        let from = src.conn();
        let mut to = self.conn();
        copy_all(&from, &mut to)
    }

    /// Makes every TOTP code up to `now` used: after a restore, codes used since the backup
    /// must not work again. Returns how many tokens moved.
    pub fn burn_totp_until(&self, now: i64) -> StoreResult<usize> {
        let conn = self.conn();
        let totp = conn.execute(
            "UPDATE tokens SET last_counter = MAX(last_counter, ?1 / period)
             WHERE kind = 'totp' AND period > 0",
            [now],
        )?;
        // mOTP codes are time-based too: 10-second steps.
        let motp = conn.execute(
            "UPDATE tokens SET last_counter = MAX(last_counter, ?1 / 10) WHERE kind = 'motp'",
            [now],
        )?;
        Ok(totp + motp)
    }

    /// Drops every e-mail code: after a restore, a code sent (and maybe used) since the
    /// backup must not work again. Returns how many were dropped.
    pub fn clear_email_codes(&self) -> StoreResult<usize> {
        Ok(self.conn().execute("DELETE FROM email_codes", [])?)
    }

    pub fn schema_version(&self) -> StoreResult<i64> {
        Ok(self
            .conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
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

    /// Groups of accounts whose names look alike (same `confusable::skeleton`), each sorted
    /// by age: possible only for accounts made before otpd refused look-alikes.
    pub fn look_alike_groups(&self) -> StoreResult<Vec<Vec<String>>> {
        let conn = self.conn();
        let mut st = conn.prepare(
            "SELECT a.skeleton, a.name FROM accounts a
             WHERE a.skeleton IN (SELECT skeleton FROM accounts
                                  GROUP BY skeleton HAVING count(*) > 1)
             ORDER BY a.skeleton, a.id",
        )?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for row in rows {
            let (skeleton, name) = row?;
            match groups.last_mut() {
                Some((s, names)) if *s == skeleton => names.push(name),
                _ => groups.push((skeleton, vec![name])),
            }
        }
        Ok(groups.into_iter().map(|(_, names)| names).collect())
    }

    pub fn integrity_check(&self) -> StoreResult<String> {
        Ok(self
            .conn()
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
    }
}

/// All pages in one backup step (-1): one read transaction on the source, hence a snapshot.
/// (rusqlite's run_to_completion refuses -1.) Busy or locked: wait and try again, bounded.
fn copy_all(from: &Connection, to: &mut Connection) -> StoreResult<()> {
    use rusqlite::backup::{Backup, StepResult};
    let b = Backup::new(from, to)?;
    for _ in 0..500 {
        match b.step(-1)? {
            StepResult::Done => return Ok(()),
            StepResult::More | StepResult::Busy | StepResult::Locked => {
                std::thread::sleep(Duration::from_millis(20))
            }
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    Err(StoreError::Open {
        path: "backup".into(),
        msg: "the database stayed busy for 10 s; try again".into(),
    })
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

fn one_row(changed: usize, what: &str) -> StoreResult<()> {
    if changed == 0 {
        Err(StoreError::NotFound(what.to_string()))
    } else {
        Ok(())
    }
}

impl Store for SqliteStore {
    fn create_account(
        &self,
        name: &str,
        level: &str,
        pin: Option<(&[u8], &[u8])>,
        now: i64,
    ) -> StoreResult<i64> {
        let conn = self.conn();
        let (salt, hash) = match pin {
            Some((s, h)) => (Some(s), Some(h)),
            None => (None, None),
        };
        let skeleton = crate::confusable::skeleton(name);
        // One statement: the look-alike check and the insert cannot be split by another
        // admin adding a look-alike name at the same moment.
        let res = conn.execute(
            "INSERT INTO accounts (name, level, pin_salt, pin_hash, created_at, skeleton)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6
             WHERE NOT EXISTS (SELECT 1 FROM accounts WHERE skeleton = ?6 AND name <> ?1)",
            params![name, level, salt, hash, now, skeleton],
        );
        match res {
            Ok(0) => {
                let same: Option<i64> = conn
                    .query_row("SELECT id FROM accounts WHERE name = ?1", [name], |r| {
                        r.get(0)
                    })
                    .optional()?;
                if same.is_some() {
                    return Err(StoreError::Exists(format!("user `{name}`")));
                }
                let existing: String = conn.query_row(
                    "SELECT name FROM accounts WHERE skeleton = ?1 ORDER BY id LIMIT 1",
                    [&skeleton],
                    |r| r.get(0),
                )?;
                Err(StoreError::LooksLike {
                    name: name.to_string(),
                    existing,
                })
            }
            Ok(_) => Ok(conn.last_insert_rowid()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(StoreError::Exists(format!("user `{name}`")))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn account(&self, name: &str) -> StoreResult<Option<Account>> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(&format!(
            "SELECT {ACCOUNT_COLS} FROM accounts a WHERE a.name = ?1"
        ))?;
        Ok(st.query_row([name], account_from_row).optional()?)
    }

    /// One statement, so one read transaction: its file locks and the page reads after the
    /// last commit are paid once per login instead of twice (docs/performance.md). The name
    /// is compared with `(SELECT ?1)`: with `a.name = ?1` in a join SQLite re-prepares the
    /// statement at every use (2.5 times slower, measured).
    fn account_with_tokens(&self, name: &str) -> StoreResult<Option<(Account, Vec<Token>)>> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(&ACCOUNT_WITH_TOKENS_SQL)?;
        let mut rows = st.query([name])?;
        let mut found: Option<(Account, Vec<Token>)> = None;
        while let Some(r) = rows.next()? {
            let (_, tokens) = match &mut found {
                Some(f) => f,
                None => found.insert((account_from_row(r)?, Vec::new())),
            };
            // An account without tokens comes as one row with NULL token columns.
            if r.get::<_, Option<i64>>(ACCOUNT_NCOLS)?.is_some() {
                tokens.push(token_from_row_at(r, ACCOUNT_NCOLS)?);
            }
        }
        Ok(found)
    }

    fn accounts(&self) -> StoreResult<Vec<Account>> {
        let conn = self.conn();
        let mut st = conn.prepare(&format!(
            "SELECT {ACCOUNT_COLS} FROM accounts a ORDER BY a.name"
        ))?;
        let rows = st.query_map([], account_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn set_level(&self, name: &str, level: &str) -> StoreResult<()> {
        let n = self.conn().execute(
            "UPDATE accounts SET level = ?2 WHERE name = ?1",
            params![name, level],
        )?;
        one_row(n, &format!("user `{name}`"))
    }

    fn set_pin(&self, name: &str, salt: &[u8], hash: &[u8]) -> StoreResult<()> {
        let n = self.conn().execute(
            "UPDATE accounts SET pin_salt = ?2, pin_hash = ?3 WHERE name = ?1",
            params![name, salt, hash],
        )?;
        one_row(n, &format!("user `{name}`"))
    }

    fn delete_account(&self, name: &str) -> StoreResult<()> {
        let n = self
            .conn()
            .execute("DELETE FROM accounts WHERE name = ?1", [name])?;
        one_row(n, &format!("user `{name}`"))
    }

    fn record_failure(
        &self,
        account_id: i64,
        now: i64,
        lock_at: u32,
        lock_until: i64,
    ) -> StoreResult<u32> {
        // One statement on the single writer: read-increment-write cannot interleave.
        match self.write(Op::Failure {
            account_id,
            now,
            lock_at,
            lock_until,
        })? {
            Answer::Failures(n) => Ok(n),
            other => Err(StoreError::Commit(format!("unexpected answer {other:?}"))),
        }
    }

    fn set_familiar_sources(&self, account_id: i64, sources: &[String]) -> StoreResult<()> {
        self.write_later(Op::Familiar {
            account_id,
            sources: sources.join("\n"),
        })
    }

    fn unlock_account(&self, account_id: i64) -> StoreResult<()> {
        self.write(Op::Unlock { account_id }).map(|_| ())
    }

    fn clear_failures(&self, account_id: i64) -> StoreResult<()> {
        self.write(Op::ClearFailures { account_id }).map(|_| ())
    }

    fn record_unknown_failure(&self, now: i64) -> StoreResult<()> {
        self.write(Op::UnknownFailure { now }).map(|_| ())
    }

    fn insert_token(&self, t: &NewToken) -> StoreResult<i64> {
        let conn = self.conn();
        let res = conn.execute(
            "INSERT INTO tokens (serial, account_id, kind, state, algorithm, digits, period,
                                 secret, label, created_at, public_id, address)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                t.serial,
                t.account_id,
                t.kind.as_str(),
                t.state.as_str(),
                t.algorithm.as_str().to_ascii_lowercase(),
                t.digits,
                t.period,
                t.sealed_secret,
                t.label,
                t.created_at,
                t.public_id,
                t.address
            ],
        );
        match res {
            Ok(_) => Ok(conn.last_insert_rowid()),
            Err(rusqlite::Error::SqliteFailure(e, msg))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                if msg.is_some_and(|m| m.contains("public_id")) {
                    Err(StoreError::Exists(format!(
                        "a YubiKey with public id `{}`",
                        t.public_id.as_deref().unwrap_or("")
                    )))
                } else {
                    Err(StoreError::Exists(format!("token `{}`", t.serial)))
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    fn token(&self, serial: &str) -> StoreResult<Option<Token>> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(&format!(
            "SELECT {TOKEN_COLS} FROM tokens t JOIN accounts a ON a.id = t.account_id
             WHERE t.serial = ?1"
        ))?;
        Ok(st.query_row([serial], token_from_row).optional()?)
    }

    fn tokens(&self, account: Option<&str>) -> StoreResult<Vec<Token>> {
        let conn = self.conn();
        // `?1 IS NULL OR a.name = ?1` would scan every account (the plan cannot know ?1):
        // hundreds of microseconds per login with 10,000 accounts. And `a.name = ?1` in the
        // join marks the statement to be re-prepared whenever its bindings are cleared, which
        // rusqlite's statement cache does on every use: the id by subquery avoids both.
        let filter = if account.is_some() {
            "t.account_id = (SELECT id FROM accounts WHERE name = ?1)"
        } else {
            "?1 IS NULL"
        };
        let mut st = conn.prepare_cached(&format!(
            "SELECT {TOKEN_COLS} FROM tokens t JOIN accounts a ON a.id = t.account_id
             WHERE {filter} ORDER BY a.name, t.id"
        ))?;
        let rows = st.query_map([account], token_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn set_token_state(&self, serial: &str, state: TokenState) -> StoreResult<()> {
        let n = self.conn().execute(
            "UPDATE tokens SET state = ?2 WHERE serial = ?1",
            params![serial, state.as_str()],
        )?;
        one_row(n, &format!("token `{serial}`"))
    }

    fn delete_token(&self, serial: &str) -> StoreResult<()> {
        let n = self
            .conn()
            .execute("DELETE FROM tokens WHERE serial = ?1", [serial])?;
        one_row(n, &format!("token `{serial}`"))
    }

    fn advance_counter(
        &self,
        token_id: i64,
        counter: i64,
        drift: i64,
        now: i64,
        activate: bool,
    ) -> StoreResult<bool> {
        // Returns once the batch holding this update is committed with synchronous=FULL, or
        // at once with a provisional win inside a deferral window (commit.rs).
        self.write_won(Op::Advance {
            token_id,
            counter,
            drift,
            now,
            activate,
        })
    }

    fn meta(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        let conn = self.conn();
        Ok(conn
            .query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?)
    }

    fn init_meta(&self, name: &str, value: &[u8]) -> StoreResult<Vec<u8>> {
        let conn = self.conn();
        // One statement each: a second process writing the same name at the same time keeps
        // the first value, and both read back the same one.
        conn.execute(
            "INSERT INTO meta (name, value) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING",
            params![name, value],
        )?;
        Ok(
            conn.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
                r.get(0)
            })?,
        )
    }

    fn reseal_all(
        &self,
        reseal: &mut super::ResealFn<'_>,
        meta: &[(&str, &[u8])],
    ) -> StoreResult<usize> {
        let mut conn = self.conn();
        // IMMEDIATE: take the write lock first, so no token is added between read and write.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let rows: Vec<(i64, String, Vec<u8>)> = {
            let mut st = tx.prepare("SELECT id, serial, secret FROM tokens")?;
            let it = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            it.collect::<Result<_, _>>()?
        };
        for (id, serial, blob) in &rows {
            let new = reseal(serial, blob).map_err(|msg| StoreError::Reseal {
                serial: serial.clone(),
                msg,
            })?;
            tx.execute(
                "UPDATE tokens SET secret = ?2 WHERE id = ?1",
                params![id, new],
            )?;
        }
        for (name, value) in meta {
            tx.execute(
                "INSERT INTO meta (name, value) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                params![name, value],
            )?;
        }
        tx.commit()?;
        Ok(rows.len())
    }

    fn append_audit(&self, r: &AuditRecord) -> StoreResult<()> {
        // Queued, not waited for: committed in order with the writes around it, at the
        // latest with the next batch. A crash can lose the last batch's records (commit.rs).
        match &self.committer {
            Some(c) => c.write_later(Op::Audit(r.clone())),
            None => commit::apply(&self.conn(), &Op::Audit(r.clone()))?.map(|_| ()),
        }
    }

    fn prune_audit(&self, before_ms: i64) -> StoreResult<usize> {
        Ok(self
            .conn()
            .execute("DELETE FROM audit WHERE ts_ms < ?1", [before_ms])?)
    }

    fn audit(&self, f: &AuditFilter) -> StoreResult<Vec<AuditRecord>> {
        let conn = self.conn();
        let limit = if f.limit == 0 {
            i64::MAX
        } else {
            f.limit as i64
        };
        // Newest `limit` rows, shown oldest first as a log reads.
        let mut st = conn.prepare_cached(
            "SELECT * FROM (
                SELECT ts_ms, user, service, rhost, client, verdict, reason, serial, id
                FROM audit WHERE (?1 IS NULL OR user = ?1) AND (?2 IS NULL OR ts_ms >= ?2)
                ORDER BY id DESC LIMIT ?3) ORDER BY id",
        )?;
        let rows = st.query_map(params![f.user, f.since_ms, limit], audit_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn insert_app_password(
        &self,
        account_id: i64,
        label: &str,
        services: &[String],
        salt: &[u8],
        hash: &[u8],
        now: i64,
    ) -> StoreResult<i64> {
        let conn = self.conn();
        let res = conn.execute(
            "INSERT INTO app_passwords (account_id, label, services, salt, hash, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![account_id, label, services.join(","), salt, hash, now],
        );
        match res {
            Ok(_) => Ok(conn.last_insert_rowid()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(StoreError::Exists(format!("app password `{label}`")))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn app_passwords(&self, account_id: i64) -> StoreResult<Vec<AppPassword>> {
        let conn = self.conn();
        // `(SELECT ?1)`, not `?1`: compared directly with a column of a non-unique index, a
        // parameter marks the statement to be prepared again whenever it is bound anew
        // (SQLite's STAT4 planning in the bundled build), about 100 µs per login; that made a
        // wrong app password's answer slower than other failed logins' (docs/security.md).
        let mut st = conn.prepare_cached(
            "SELECT id, account_id, label, services, salt, hash, created_at, last_used_at,
                    last_used_from
             FROM app_passwords WHERE account_id = (SELECT ?1) ORDER BY id",
        )?;
        let rows = st.query_map([account_id], |r| {
            let services: String = r.get(3)?;
            Ok(AppPassword {
                id: r.get(0)?,
                account_id: r.get(1)?,
                label: r.get(2)?,
                services: services
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
                salt: r.get(4)?,
                hash: r.get(5)?,
                created_at: r.get(6)?,
                last_used_at: r.get(7)?,
                last_used_from: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn delete_app_password(&self, id: i64) -> StoreResult<()> {
        let n = self
            .conn()
            .execute("DELETE FROM app_passwords WHERE id = ?1", [id])?;
        one_row(n, &format!("app password {id}"))
    }

    fn touch_app_password(&self, id: i64, now: i64, from: Option<&str>) -> StoreResult<()> {
        // With the group commit, not a write of its own: every IMAP login with an app password
        // otherwise waited for the write lock and paid an fsync for a timestamp.
        self.write_later(Op::TouchAppPassword {
            id,
            now,
            from: from.map(str::to_string),
        })
    }

    fn mark_token_used(&self, token_id: i64, now: i64, activate: bool) -> StoreResult<()> {
        self.write(Op::TokenUsed {
            token_id,
            now,
            activate,
        })
        .map(|_| ())
    }

    fn replace_backup_codes(&self, token_id: i64, codes: &[(Vec<u8>, Vec<u8>)]) -> StoreResult<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute("DELETE FROM backup_codes WHERE token_id = ?1", [token_id])?;
        for (salt, hash) in codes {
            tx.execute(
                "INSERT INTO backup_codes (token_id, salt, hash) VALUES (?1, ?2, ?3)",
                params![token_id, salt, hash],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn backup_codes(&self, token_id: i64) -> StoreResult<Vec<BackupCode>> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(
            // `(SELECT ?1)`: see app_passwords().
            "SELECT id, salt, hash FROM backup_codes
             WHERE token_id = (SELECT ?1) AND used_at IS NULL ORDER BY id",
        )?;
        let rows = st.query_map([token_id], |r| {
            Ok(BackupCode {
                id: r.get(0)?,
                salt: r.get(1)?,
                hash: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn use_backup_code(&self, token_id: i64, code_id: i64, now: i64) -> StoreResult<bool> {
        // Durable before the answer, as a counter advance.
        self.write_won(Op::UseBackupCode {
            token_id,
            code_id,
            now,
        })
    }

    fn backup_code_counts(&self, token_id: i64) -> StoreResult<(u32, u32)> {
        Ok(self.conn().query_row(
            "SELECT COUNT(*) FILTER (WHERE used_at IS NULL), COUNT(*)
             FROM backup_codes WHERE token_id = ?1",
            [token_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?)
    }

    fn take_email_send(
        &self,
        account_id: i64,
        now: i64,
        since: i64,
        max: u32,
    ) -> StoreResult<bool> {
        let mut conn = self.conn();
        // IMMEDIATE: count and insert under one write lock, so parallel logins cannot all
        // see room for one more.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute(
            "DELETE FROM email_sends WHERE account_id = ?1 AND sent_at < ?2",
            params![account_id, since],
        )?;
        let n: u32 = tx.query_row(
            "SELECT COUNT(*) FROM email_sends WHERE account_id = ?1",
            [account_id],
            |r| r.get(0),
        )?;
        if n >= max {
            tx.commit()?;
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO email_sends (account_id, sent_at) VALUES (?1, ?2)",
            params![account_id, now],
        )?;
        tx.commit()?;
        Ok(true)
    }

    fn replace_email_code(
        &self,
        token_id: i64,
        salt: &[u8],
        hash: &[u8],
        now: i64,
        expires_at: i64,
    ) -> StoreResult<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Delete and insert rather than update: the new row gets a new id, so a claim on the
        // old code can never redeem the new one.
        tx.execute("DELETE FROM email_codes WHERE token_id = ?1", [token_id])?;
        tx.execute(
            "INSERT INTO email_codes (token_id, salt, hash, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![token_id, salt, hash, now, expires_at],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn email_code(&self, token_id: i64) -> StoreResult<Option<EmailCode>> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(
            "SELECT id, salt, hash, expires_at, used_at IS NOT NULL FROM email_codes
             WHERE token_id = ?1",
        )?;
        Ok(st
            .query_row([token_id], |r| {
                Ok(EmailCode {
                    id: r.get(0)?,
                    salt: r.get(1)?,
                    hash: r.get(2)?,
                    expires_at: r.get(3)?,
                    used: r.get(4)?,
                })
            })
            .optional()?)
    }

    fn use_email_code(
        &self,
        token_id: i64,
        code_id: i64,
        now: i64,
        activate: bool,
    ) -> StoreResult<bool> {
        self.write_won(Op::UseEmailCode {
            token_id,
            code_id,
            now,
            activate,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
