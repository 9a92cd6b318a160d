//! Short-lived state that every node answering logins must see: the open States of two-step
//! logins, the webmail re-login cache, and the failure counters that are not an account row
//! (per source, per source and account, and the account's familiar-source bucket).
//!
//! Nothing here is a secret a stolen database could use: States and re-login entries are
//! named by keyed hashes under a sub-key of the key file (the State itself and the password
//! never reach the store), and the PIN a two-step login carries to its second step is sealed.
//! Losing all of it (a restart of the only node, or of the database holding it in UNLOGGED
//! tables) costs users one more PIN prompt or one more full login, and forgives counted
//! guesses that the account rows do not hold; it never lets anything in.
//!
//! Two implementations: [`MemoryShared`] (memory.rs), the one a single host uses, with the
//! speed and the bounds the engine always had; and PostgreSQL's (store/postgres/shared.rs),
//! for several nodes on one database. The store hands the engine the one that fits
//! ([`crate::store::LoginStore::shared_state`]).

mod memory;

pub use memory::MemoryShared;

use super::StoreResult;
use crate::model::Account;

/// The name of a State or a re-login entry in the store: a keyed hash, never the thing itself.
pub type Key = [u8; 32];

/// An open two-step login, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub user: String,
    pub client: Option<String>,
    pub class: String,
    /// The PIN the first step proved, sealed under the key file with the State's key as
    /// associated data (engine/challenge.rs).
    pub sealed_pin: Vec<u8>,
    pub expires_ms: i64,
}

/// What a re-login cache hit returns: the token of the first login and when that was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloginHit {
    pub serial: String,
    pub created_ms: i64,
}

/// A re-login entry to store: the token of the Accept, its idle and maximum life.
#[derive(Debug, Clone, Copy)]
pub struct ReloginEntry<'a> {
    pub serial: &'a str,
    pub now_ms: i64,
    pub idle_ms: i64,
    pub max_ms: i64,
}

/// A failure counter. Two kinds share the shape:
/// - a window (per source): `since` starts the window, `until` ends a block;
/// - a bucket (an account's familiar sources): `last` is the latest failure, `until` ends a
///   lock, and a lock that has ended is forgotten with its failures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counter {
    pub failures: u32,
    pub since: i64,
    pub last: Option<i64>,
    pub until: Option<i64>,
}

/// How a failure is counted (seconds throughout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// Failures within `window` seconds of the first; at `max`, blocked for `block` seconds.
    /// A window that has run out (and is not blocked) starts afresh.
    Window { window: i64, block: i64, max: u32 },
    /// Failures in a row; at `lock_at` (0 = never) locked until `lock_until`. A lock that has
    /// ended (`until <= now`) is forgotten with its failures first. Kept `keep` seconds after
    /// the latest failure unless a lock lasts longer.
    Bucket {
        lock_at: u32,
        lock_until: i64,
        keep: i64,
    },
}

impl Counter {
    /// The counter after one more failure at `now`: the rule both implementations follow
    /// (PostgreSQL's SQL says the same in its own words).
    pub fn bumped(self, now: i64, how: Count) -> Counter {
        match how {
            Count::Window { window, block, max } => {
                let mut c = self;
                if now >= c.since.saturating_add(window) && c.until.is_none_or(|u| now >= u) {
                    c = Counter {
                        since: now,
                        ..Counter::default()
                    };
                }
                c.failures = c.failures.saturating_add(1);
                c.last = Some(now);
                if c.failures >= max {
                    c.until = Some(now.saturating_add(block));
                }
                c
            }
            Count::Bucket {
                lock_at,
                lock_until,
                ..
            } => {
                let mut c = self;
                if c.until.is_some_and(|u| u <= now) {
                    c = Counter::default();
                }
                if c.failures == 0 {
                    c.since = now;
                }
                c.failures = c.failures.saturating_add(1);
                c.last = Some(now);
                if c.until.is_none() && lock_at > 0 && c.failures >= lock_at {
                    c.until = Some(lock_until);
                }
                c
            }
        }
    }

    /// When the counter means nothing any more and may be dropped (seconds).
    pub fn expires(&self, how: Count) -> i64 {
        let until = self.until.unwrap_or(i64::MIN);
        match how {
            Count::Window { window, .. } => self.since.saturating_add(window).max(until),
            Count::Bucket { keep, .. } => self
                .last
                .unwrap_or(self.since)
                .saturating_add(keep)
                .max(until),
        }
    }
}

/// The short-lived state shared by every node. Every write is atomic against every other
/// node; none is durable beyond what the implementation says (memory: the process; PostgreSQL:
/// UNLOGGED tables, emptied by a crash of the database). An error means nothing changed, and
/// the engine then answers Reject, never Accept.
pub trait SharedStateStore: Send + Sync {
    /// Stores a new open State under `key`. At most `per_user` States stay open per user: the
    /// oldest go. `false`: no room (a bound on memory), nothing stored.
    fn put_challenge(
        &self,
        key: &Key,
        c: &Challenge,
        now_ms: i64,
        per_user: usize,
    ) -> StoreResult<bool>;
    /// Removes the State and returns it, expired or not: of any number of callers on any
    /// number of nodes, exactly one gets it.
    fn take_challenge(&self, key: &Key) -> StoreResult<Option<Challenge>>;

    /// A live entry for `key`, its idle time started again; an expired one is dropped.
    fn relogin_hit(&self, key: &Key, now_ms: i64) -> StoreResult<Option<ReloginHit>>;
    /// Stores (or replaces) the entry for `key`.
    fn relogin_put(&self, key: &Key, e: ReloginEntry<'_>) -> StoreResult<()>;
    fn relogin_forget(&self, key: &Key) -> StoreResult<()>;

    /// The counters named by `keys`, in order (one read for all of them).
    fn counters(&self, keys: &[&str]) -> StoreResult<Vec<Option<Counter>>>;
    /// Counts one failure at `now` and returns the counter after it.
    fn count(&self, key: &str, now: i64, how: Count) -> StoreResult<Counter>;
    /// Forgets the counter (a success).
    fn forget(&self, key: &str) -> StoreResult<()>;
}

/// The counter of failures from one source over all accounts.
pub fn counter_for_source(source: &str) -> String {
    format!("src\n{source}")
}

/// The counter of failures from one source against one account (by name: an unknown name
/// counts too).
pub fn counter_for_pair(source: &str, user: &str) -> String {
    format!("pair\n{source}\n{user}")
}

/// The bucket of an account's failures from its familiar sources, since the admin's last
/// unlock (`unlocks`, the account row's count of them): an unlock starts a new bucket, on
/// every node at once, without a write here (the old one expires).
pub fn counter_for_familiar(account: &Account) -> String {
    format!("fam\n{}\n{}", account.id, account.unlocks)
}

#[cfg(test)]
fn memory_bound() -> usize {
    memory::MAX_COUNTERS
}

#[cfg(test)]
mod tests;
