//! Reading and pruning the audit (the login appends through
//! [`LoginStore::append_audit`](super::LoginStore::append_audit)), and the counts a running
//! daemon reports.

use super::StoreResult;
use crate::model::{AuditFilter, AuditRecord};

pub trait AuditStore: Send + Sync {
    /// The newest records matching `filter` (up to its limit, 0 = all), oldest first.
    fn audit(&self, filter: &AuditFilter) -> StoreResult<Vec<AuditRecord>>;
    /// Deletes audit records older than `before_ms`; returns how many. Durable before it
    /// returns.
    fn prune_audit(&self, before_ms: i64) -> StoreResult<usize>;
}

/// How much the store holds, for `otpd status`: counted by the store, not loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub accounts: u64,
    pub tokens: u64,
}

/// What the running daemon asks of the database besides logins: the audit's pruning, the
/// watchdog's probe and `status`'s counts.
pub trait DaemonStore: AuditStore + StatusStore {}

impl<T: AuditStore + StatusStore + ?Sized> DaemonStore for T {}

/// What the daemon's own housekeeping asks: is the database answering, and how much is in it.
pub trait StatusStore: Send + Sync {
    /// One cheap read; `Err` when the database does not answer.
    fn ping(&self) -> StoreResult<()>;
    fn counts(&self) -> StoreResult<Counts>;
}
