//! Persistence behind one trait, so a PostgreSQL store can follow without touching the engine.
//!
//! The store stores: it makes no decisions, except that `advance_counter` is a conditional
//! write, the one primitive single-use codes rest on.

pub mod commit;
pub mod import;
mod schema;
pub mod sqlite;

pub use sqlite::SqliteStore;

use crate::model::{
    Account, AppPassword, AuditFilter, AuditRecord, BackupCode, EmailCode, NewToken, Token,
    TokenState,
};

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
    /// A group commit failed (nothing of its batch is on disk) or the writer stopped.
    #[error("database commit: {0}")]
    Commit(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Key rotation's callback: (serial, old sealed blob) to the blob sealed under the new key.
pub type ResealFn<'a> = dyn FnMut(&str, &[u8]) -> Result<Vec<u8>, String> + 'a;

/// The schema version this build creates and reads.
pub fn schema_version() -> i64 {
    schema::MIGRATIONS.len() as i64
}

pub trait Store: Send + Sync {
    fn create_account(
        &self,
        name: &str,
        level: &str,
        pin: Option<(&[u8], &[u8])>,
        now: i64,
    ) -> StoreResult<i64>;
    fn account(&self, name: &str) -> StoreResult<Option<Account>>;
    /// The account and its tokens, as [`Store::account`] and [`Store::tokens`] would give
    /// them; what a login reads. A store may read both at once.
    fn account_with_tokens(&self, name: &str) -> StoreResult<Option<(Account, Vec<Token>)>> {
        match self.account(name)? {
            Some(a) => Ok(Some((a, self.tokens(Some(name))?))),
            None => Ok(None),
        }
    }
    fn accounts(&self) -> StoreResult<Vec<Account>>;
    fn set_level(&self, name: &str, level: &str) -> StoreResult<()>;
    fn set_pin(&self, name: &str, salt: &[u8], hash: &[u8]) -> StoreResult<()>;
    /// Deletes the account and everything it owns; the audit keeps its history.
    fn delete_account(&self, name: &str) -> StoreResult<()>;

    /// Counts one failed login and, at `lock_at` failures (0 = never), locks the account
    /// until `lock_until`. Returns the new failure count. Atomic.
    fn record_failure(
        &self,
        account_id: i64,
        now: i64,
        lock_at: u32,
        lock_until: i64,
    ) -> StoreResult<u32>;
    fn clear_failures(&self, account_id: i64) -> StoreResult<()>;
    /// The admin's unlock: clears the failures and counts the unlock (`Account::unlocks`).
    fn unlock_account(&self, account_id: i64) -> StoreResult<()>;
    /// Sets the sources the account has logged in from, most recently added first. Queued, not waited
    /// for: losing it in a crash costs the user one login's familiarity.
    fn set_familiar_sources(&self, account_id: i64, sources: &[String]) -> StoreResult<()>;

    fn insert_token(&self, token: &NewToken) -> StoreResult<i64>;
    fn token(&self, serial: &str) -> StoreResult<Option<Token>>;
    /// Tokens of one account (`Some`) or of all accounts.
    fn tokens(&self, account: Option<&str>) -> StoreResult<Vec<Token>>;
    fn set_token_state(&self, serial: &str, state: TokenState) -> StoreResult<()>;
    fn delete_token(&self, serial: &str) -> StoreResult<()>;
    /// Stores `counter` and `drift` only if `counter` is greater than the stored counter and
    /// (when `activate`) turns a pending token active. Durable before it returns `true`;
    /// `false` means another request used this or a later code first.
    fn advance_counter(
        &self,
        token_id: i64,
        counter: i64,
        drift: i64,
        now: i64,
        activate: bool,
    ) -> StoreResult<bool>;

    /// An installation-wide value (`meta` table).
    fn meta(&self, name: &str) -> StoreResult<Option<Vec<u8>>>;
    /// Stores an installation-wide value unless one is stored already; returns the value
    /// stored afterwards (the given one, or the one that was there first).
    fn init_meta(&self, name: &str, value: &[u8]) -> StoreResult<Vec<u8>>;
    /// Key rotation: replaces every token's sealed secret with `reseal(serial, old)` and sets
    /// the given meta values, all in one transaction: either every row moves or none does.
    /// Returns how many secrets were re-sealed.
    fn reseal_all(&self, reseal: &mut ResealFn<'_>, meta: &[(&str, &[u8])]) -> StoreResult<usize>;

    fn append_audit(&self, rec: &AuditRecord) -> StoreResult<()>;
    /// Deletes audit records older than `before_ms`; returns how many.
    fn prune_audit(&self, before_ms: i64) -> StoreResult<usize>;
    fn audit(&self, filter: &AuditFilter) -> StoreResult<Vec<AuditRecord>>;

    // App-specific passwords (issue 4). Keyed hashes only; the engine compares.
    /// Stores a new app password; `Exists` when the account already has one with this label.
    fn insert_app_password(
        &self,
        account_id: i64,
        label: &str,
        services: &[String],
        salt: &[u8],
        hash: &[u8],
        now: i64,
    ) -> StoreResult<i64>;
    /// The account's app passwords, oldest first.
    fn app_passwords(&self, account_id: i64) -> StoreResult<Vec<AppPassword>>;
    fn delete_app_password(&self, id: i64) -> StoreResult<()>;
    /// Records a use: when and from where.
    fn touch_app_password(&self, id: i64, now: i64, from: Option<&str>) -> StoreResult<()>;
    // Added by the tokens issue.
    /// Records a use of a token whose codes are kept single-use elsewhere (a validation
    /// server): sets its last use and, when `activate`, turns a pending token active.
    fn mark_token_used(&self, token_id: i64, now: i64, activate: bool) -> StoreResult<()>;
    /// Replaces every backup code of a backup token with these (salt, keyed hash) pairs, in
    /// one transaction: the old set stops working the moment the new one exists.
    fn replace_backup_codes(&self, token_id: i64, codes: &[(Vec<u8>, Vec<u8>)]) -> StoreResult<()>;
    /// The unused backup codes of a token.
    fn backup_codes(&self, token_id: i64) -> StoreResult<Vec<BackupCode>>;
    /// Marks one backup code used, only if it is still unused, and records the token's use.
    /// Durable before it returns `true`; `false` means another request used it first.
    fn use_backup_code(&self, token_id: i64, code_id: i64, now: i64) -> StoreResult<bool>;
    /// (unused, all) backup codes of a token.
    fn backup_code_counts(&self, token_id: i64) -> StoreResult<(u32, u32)>;
    /// A failed login of a user otpd does not know, with `unknown_user = "reject"`: one
    /// durable write, as a wrong PIN's failure count costs, so the answer time does not tell
    /// whether the account exists. Records the time of the latest such failure and counts
    /// them (the count makes every such write a real one, see commit.rs `SQL_UNKNOWN`).
    fn record_unknown_failure(&self, now: i64) -> StoreResult<()>;
    // Added by the e-mail codes work (issue 5).
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
    /// active. Durable before it returns `true`; `false` means another request used it first
    /// (or it was replaced or ran out meanwhile).
    fn use_email_code(
        &self,
        token_id: i64,
        code_id: i64,
        now: i64,
        activate: bool,
    ) -> StoreResult<bool>;
}
