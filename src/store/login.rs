//! What a login needs of the store: the only store interface the engine holds.
//!
//! The contract a store implementation keeps (SQLite today, PostgreSQL next):
//! - **Reads** see every write that returned before them (or whose ticket resolved), from
//!   this process or another one sharing the database.
//! - **Conditional writes** (`advance_counter`, `use_backup_code`, `use_email_code`,
//!   `take_email_send`, `record_failure`) are atomic: check and change happen as one step
//!   against every other writer, on every node. Of two requests making the same claim,
//!   exactly one **wins** (`true`); the other gets `false` and changes nothing. "Won" is the
//!   only thing an Accept may rest on.
//! - **Durable** means on stable storage: a crash or power cut after the call returned (or
//!   its ticket resolved) does not undo it. Conditional writes that return `true` are
//!   durable before they return, unless the caller asked for [`CommitMode::Defer`] and got a
//!   [`Ticket`]: then nothing is promised until the ticket resolves.
//! - **Bookkeeping** writes documented as "queued" (`set_familiar_sources`,
//!   `touch_app_password`, `append_audit`) may be lost in a crash, but are applied in the
//!   order they were made, relative to the other writes of the same caller.
//! - An error means the write did not happen (or its batch was rolled back as a whole); the
//!   engine then answers Reject, never Accept.

use super::devices::DeviceStore;
use super::shared::SharedStateStore;
use super::ticket::Ticket;
use super::StoreResult;
use crate::model::{Account, AppPassword, AuditRecord, BackupCode, EmailCode, Token};
use std::sync::Arc;

/// An account and its tokens as a login reads them. Shared, not owned: the account cache
/// hands out the rows it holds instead of a copy of them (copying and freeing them was about
/// 4 % of the daemon's CPU at window 128, docs/performance.md).
pub type Found = Arc<(Account, Vec<Token>)>;

/// How the caller wants a conditional write committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitMode {
    /// Return once the write is durable (or lost, or failed).
    Wait,
    /// The caller can answer later, from another thread: a store that batches its commits
    /// may queue the write and return a [`Ticket`] at once. A store without such a queue
    /// waits, as for [`CommitMode::Wait`].
    Defer,
}

/// The answer to a conditional write.
#[derive(Debug)]
pub enum Advance {
    /// Durable: `true` this request won; `false` another request used this or a later code
    /// first, and nothing changed.
    Durable(bool),
    /// Queued (only for [`CommitMode::Defer`]): the outcome comes through the ticket, once
    /// durable. Nothing may be answered as final before then.
    Pending(Ticket),
}

pub trait LoginStore: Send + Sync {
    fn account(&self, name: &str) -> StoreResult<Option<Account>>;
    /// The account and its tokens (those of every state, ordered by serial); what every
    /// login reads. One read of both, as a login's reads are a good part of its cost.
    fn account_with_tokens(&self, name: &str) -> StoreResult<Option<Found>>;

    /// Runs `run`, which decides logins that had all arrived before this call, with the
    /// account cache brought up to date once for all of them (a front-end that received
    /// several requests at once). Without a cache it only runs them.
    fn for_received(&self, run: &mut dyn FnMut()) {
        run()
    }

    /// Counts one failed login and, at `lock_at` failures (0 = never), locks the account
    /// until `lock_until`; a lock that has ended (`locked_until <= now`) is forgotten with
    /// its failures first. Returns the new failure count. Atomic and durable before it
    /// returns; `NotFound` when the account is gone.
    fn record_failure(
        &self,
        account_id: i64,
        now: i64,
        lock_at: u32,
        lock_until: i64,
    ) -> StoreResult<u32>;
    /// Clears the failures and any lock. Durable before it returns.
    fn clear_failures(&self, account_id: i64) -> StoreResult<()>;
    /// Sets the sources the account has logged in from, most recently added first. Queued,
    /// not waited for: losing it in a crash costs the user one login's familiarity.
    fn set_familiar_sources(&self, account_id: i64, sources: &[String]) -> StoreResult<()>;
    /// An answer that counts nothing (an unknown user, a locked or throttled account, a
    /// filler password, ...): one durable write that really changes the database, of the
    /// kind a counted failure makes (an update of `account_id`'s row, which may be another
    /// account than the login's own), so the answer time does not tell whether, or how, the
    /// account exists. Without such a row: a write of its own (the time of the latest such
    /// failure and their count).
    fn record_uncounted(&self, account_id: Option<i64>, now: i64) -> StoreResult<()>;

    /// Stores `counter` and `drift` only if `counter` is greater than the stored counter and
    /// (when `activate`) turns a pending token active. With [`CommitMode::Wait`] the answer
    /// is [`Advance::Durable`]: durable before it returns `true`. With
    /// [`CommitMode::Defer`] it may be [`Advance::Pending`].
    fn advance_counter(
        &self,
        token_id: i64,
        counter: i64,
        drift: i64,
        now: i64,
        activate: bool,
        mode: CommitMode,
    ) -> StoreResult<Advance>;
    /// Records a use of a token whose codes are kept single-use elsewhere (a validation
    /// server): sets its last use and, when `activate`, turns a pending token active.
    /// Durable before it returns; `NotFound` when the token is gone.
    fn mark_token_used(&self, token_id: i64, now: i64, activate: bool) -> StoreResult<()>;

    /// The unused backup codes of a token.
    fn backup_codes(&self, token_id: i64) -> StoreResult<Vec<BackupCode>>;
    /// Marks one backup code used, only if it is still unused, and records the token's use,
    /// both in one step. Durable before it returns `true`; `false` means another request
    /// used it first.
    fn use_backup_code(&self, token_id: i64, code_id: i64, now: i64) -> StoreResult<bool>;
    /// (unused, all) backup codes of a token.
    fn backup_code_counts(&self, token_id: i64) -> StoreResult<(u32, u32)>;

    /// Counts one e-mail send for the account, only if fewer than `max` were counted since
    /// `since` (older counts are dropped). Atomic; `false` means the limit is reached and
    /// nothing was counted.
    fn take_email_send(&self, account_id: i64, now: i64, since: i64, max: u32)
        -> StoreResult<bool>;
    /// Stores the keyed hash of a new e-mail code for the token; the code sent before stops
    /// working in the same step. Durable before it returns.
    fn replace_email_code(
        &self,
        token_id: i64,
        salt: &[u8],
        hash: &[u8],
        now: i64,
        expires_at: i64,
    ) -> StoreResult<()>;
    /// The token's current e-mail code, used or not, if one was ever sent.
    fn email_code(&self, token_id: i64) -> StoreResult<Option<EmailCode>>;
    /// Marks the code `code_id` used, only if it is still the token's code, unused and not
    /// expired at `now`; records the token's use and, when `activate`, turns a pending token
    /// active, all in one step. Durable before it returns `true`; `false` means another
    /// request used it first (or it was replaced or ran out meanwhile).
    fn use_email_code(
        &self,
        token_id: i64,
        code_id: i64,
        now: i64,
        activate: bool,
    ) -> StoreResult<bool>;

    /// The account's app passwords (keyed hashes only; the engine compares), oldest first.
    fn app_passwords(&self, account_id: i64) -> StoreResult<Vec<AppPassword>>;
    /// Records a use: when and from where. Queued, not waited for.
    fn touch_app_password(&self, id: i64, now: i64, from: Option<&str>) -> StoreResult<()>;

    /// The store's trusted devices (devices.rs), if it keeps them. Without them (`None`, a
    /// store that has not implemented them yet) no device is trusted and none is accepted.
    fn devices(&self) -> Option<&dyn DeviceStore> {
        None
    }

    /// The short-lived state this store shares between nodes (store/shared/), if it does:
    /// `None` (a single-host store) lets the engine keep it in its own memory.
    fn shared_state(&self) -> Option<Arc<dyn SharedStateStore>> {
        None
    }

    /// Appends a login's audit record. Queued, not waited for; a record queued before a
    /// durable write is durable with it or before it.
    fn append_audit(&self, rec: AuditRecord) -> StoreResult<()>;
}
