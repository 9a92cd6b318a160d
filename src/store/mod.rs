//! Persistence behind traits split by who uses them, so a PostgreSQL store can follow
//! without touching the engine or the administration:
//!
//! - [`LoginStore`] (login.rs): what a login reads and writes; the only store the engine
//!   holds. Its docs are the contract on durability, atomicity and what "won" means.
//! - [`AdminStore`] (admin.rs): accounts, tokens, app passwords, backup codes, meta values,
//!   key rotation, import, backup and restore; everything a login needs too.
//! - [`AuditStore`] and [`StatusStore`] (audit.rs): reading and pruning the audit; the
//!   daemon's liveness probe and counts.
//! - [`DeviceStore`] (devices.rs): trusted devices, reached through
//!   [`LoginStore::devices`] (a store without them answers `None`).
//! - [`SharedStateStore`] (shared/): short-lived state every node must see (open States of
//!   two-step logins, the re-login cache, per-source and familiar-source failure counters).
//! - [`Ticket`] (ticket.rs): the answer of a conditional write asked for with
//!   [`CommitMode::Defer`], and the [`Completion`] that runs once it is durable.
//!
//! The store stores: it makes no decisions, except that its conditional writes decide which
//! of two requests using the same code wins, the one primitive single-use codes rest on.
//! [`SqliteStore`] (sqlite/) is the one implementation.

pub mod admin;
pub mod api_keys;
pub mod audit;
pub mod cache;
pub mod copy;
pub mod devices;
pub mod login;
pub mod postgres;
pub mod shared;
pub mod sqlite;
pub mod ticket;

pub use admin::{AdminStore, ImportAccount, ImportToken};
pub use api_keys::ApiKeyStore;
pub use audit::{AuditStore, Counts, DaemonStore, StatusStore};
pub use devices::{DeviceStore, NewDevice, TrustedDevice};
pub use login::{Advance, CommitMode, Found, LoginStore};
pub use postgres::PgStore;
pub use shared::{MemoryShared, SharedStateStore};
pub use sqlite::SqliteStore;
pub use ticket::{Completion, Outcome, Ticket};

use crate::config::{Config, StoreKind};
use std::path::Path;
use std::sync::Arc;

/// Opens (creating if needed) the SQLite database file at `path` and brings its schema up to
/// date: a backup being made or restored, or the installation's own file.
pub fn open(path: &Path) -> StoreResult<Arc<dyn AdminStore>> {
    Ok(Arc::new(SqliteStore::open(path)?))
}

/// Opens the store the configuration names (`[store] kind`): the SQLite file of
/// `database`, or PostgreSQL at `[store] url`; with [`open`] and [`open_readonly`], the one
/// place outside the implementations that names them.
pub fn open_configured(cfg: &Config) -> StoreResult<Arc<dyn AdminStore>> {
    match cfg.store.kind {
        StoreKind::Sqlite => Ok(Arc::new(SqliteStore::open_cached(
            &cfg.database_path(),
            cfg.store.cache_accounts(),
        )?)),
        StoreKind::Postgres => Ok(Arc::new(PgStore::open(&cfg.store)?)),
    }
}

/// Opens an existing database (a backup) to inspect it: not created, not migrated.
pub fn open_readonly(path: &Path) -> StoreResult<Arc<dyn AdminStore>> {
    Ok(Arc::new(SqliteStore::open_existing_readonly(path)?))
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("database {path}: {msg}")]
    Open { path: String, msg: String },
    #[error(
        "database schema version {found} is newer than this otpd knows ({known}); upgrade otpd"
    )]
    TooNew { found: i64, known: i64 },
    #[error("{0} already exists")]
    Exists(String),
    #[error(
        "user `{name}` looks like the existing user `{existing}` (the same letters up to case, \
         width or look-alike characters of other scripts); choose a name that cannot be \
         mistaken for it"
    )]
    LooksLike { name: String, existing: String },
    #[error("{0} not found")]
    NotFound(String),
    #[error("re-sealing token {serial}: {msg}; nothing was changed")]
    Reseal { serial: String, msg: String },
    #[error("database holds a bad value: {0}")]
    Corrupt(String),
    #[error("database: {}", postgres_message(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// What the configured store cannot do, or will not do as configured; says what to do.
    #[error("{0}")]
    Refused(String),
    /// A group commit failed (nothing of its batch is on disk) or the writer stopped.
    #[error("database commit: {0}")]
    Commit(String),
    /// A store that does not implement this yet (its trait method's default).
    #[error("this store does not support {0} yet")]
    Unsupported(&'static str),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// tokio-postgres displays a server error as "db error" and keeps what the server said in its
/// source: both, and whatever caused a connection error.
fn postgres_message(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {} ({})", db.severity(), db.message(), db.code().code());
    }
    let mut msg = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        msg.push_str(": ");
        msg.push_str(&c.to_string());
        cause = c.source();
    }
    msg
}

/// Key rotation's callback: (serial, old sealed blob) to the blob sealed under the new key.
pub type ResealFn<'a> = dyn FnMut(&str, &[u8]) -> Result<Vec<u8>, String> + 'a;

/// The schema version this build creates and reads.
pub fn schema_version() -> i64 {
    sqlite::schema::MIGRATIONS.len() as i64
}
