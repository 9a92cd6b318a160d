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
pub(in crate::store) mod feed;
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
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
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
    /// The daemon's account cache and the change feed that keeps it true (`feed.rs`);
    /// `None` for one-shot commands and tests, which read every login.
    feed: Option<Arc<feed::Feed>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database and brings its schema up to date.
    pub fn open(path: &Path) -> StoreResult<SqliteStore> {
        Self::open_with_checkpoint(path, commit::WAL_CHECKPOINT_PAGES)
    }

    /// [`SqliteStore::open`] with a cache of up to `accounts` accounts and their tokens in
    /// memory (`[store] cache_accounts`; 0: none): the daemon's store.
    pub fn open_cached(path: &Path, accounts: usize) -> StoreResult<SqliteStore> {
        Self::open_full(path, commit::WAL_CHECKPOINT_PAGES, accounts)
    }

    /// [`SqliteStore::open`] with another checkpoint interval: tests use a small one to see
    /// many WAL restarts in few writes.
    pub fn open_with_checkpoint(path: &Path, wal_pages: u32) -> StoreResult<SqliteStore> {
        Self::open_full(path, wal_pages, 0)
    }

    fn open_full(path: &Path, wal_pages: u32, cache_accounts: usize) -> StoreResult<SqliteStore> {
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
        // After the migration: the feed reads `changes`.
        let feed = match cache_accounts {
            0 => None,
            n => Some(feed::Feed::open(path, n)?),
        };
        Ok(SqliteStore {
            pool,
            next: AtomicUsize::new(0),
            committer: Some(Committer::start(path, wal_pages, feed.clone())?),
            feed,
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
            feed: None,
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
            feed: None,
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
        opened: Default::default(),
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
mod tests;
