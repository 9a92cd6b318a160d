//! What the administration needs of the store (`otpd user`, `token`, `backup`, `restore`,
//! `import`, key rotation): everything a login needs, the audit, and the writes and
//! maintenance only an administrator makes. Not on any login's path, so plain and
//! synchronous: every write here is durable before it returns.

use super::audit::DaemonStore;
use super::login::LoginStore;
use super::{ResealFn, StoreResult};
use crate::model::{Account, NewToken, Token, TokenState};
use std::collections::HashSet;
use std::path::Path;

/// One account ready to store: PIN already hashed, secrets already sealed.
pub struct ImportAccount {
    /// Line of the input it came from, for error messages.
    pub line: usize,
    pub name: String,
    /// Look-alike key of `name` (`confusable::skeleton`).
    pub skeleton: String,
    pub level: String,
    /// (salt, keyed hash)
    pub pin: Option<(Vec<u8>, Vec<u8>)>,
    pub created_at: i64,
    pub tokens: Vec<ImportToken>,
}

pub struct ImportToken {
    /// `account_id` is ignored: the account is created in the same transaction.
    pub token: NewToken,
    /// Last used HOTP counter (-1: none yet).
    pub last_counter: i64,
}

pub trait AdminStore: LoginStore + DaemonStore {
    /// Creates an account; `Exists` for a taken name, `LooksLike` for a name that can be
    /// mistaken for an existing one. Returns its id.
    fn create_account(
        &self,
        name: &str,
        level: &str,
        pin: Option<(&[u8], &[u8])>,
        now: i64,
    ) -> StoreResult<i64>;
    fn accounts(&self) -> StoreResult<Vec<Account>>;
    fn set_level(&self, name: &str, level: &str) -> StoreResult<()>;
    fn set_pin(&self, name: &str, salt: &[u8], hash: &[u8]) -> StoreResult<()>;
    /// Deletes the account and everything it owns; the audit keeps its history.
    fn delete_account(&self, name: &str) -> StoreResult<()>;
    /// The admin's unlock: clears the failures and counts the unlock (`Account::unlocks`),
    /// so a running daemon that keeps failures in memory sees it.
    fn unlock_account(&self, account_id: i64) -> StoreResult<()>;

    /// `Exists` for a taken serial (or YubiKey public id). Returns its id.
    fn insert_token(&self, token: &NewToken) -> StoreResult<i64>;
    fn token(&self, serial: &str) -> StoreResult<Option<Token>>;
    /// Tokens of one account (`Some`) or of all accounts, ordered by serial.
    fn tokens(&self, account: Option<&str>) -> StoreResult<Vec<Token>>;
    fn set_token_state(&self, serial: &str, state: TokenState) -> StoreResult<()>;
    /// Renames a token (its label, what the user calls the device). A default that refuses,
    /// so a store written before the management API still builds.
    fn set_token_label(&self, serial: &str, label: &str) -> StoreResult<()> {
        let _ = (serial, label);
        Err(super::StoreError::Unsupported("renaming tokens"))
    }
    /// The management API's keys, where this store keeps them (`None`: it does not yet, and
    /// the API refuses every key).
    fn api_keys(&self) -> Option<&dyn super::ApiKeyStore> {
        None
    }
    fn delete_token(&self, serial: &str) -> StoreResult<()>;
    /// Serials in use, so new ones can be drawn around them.
    fn serials(&self) -> StoreResult<HashSet<String>>;
    /// Stores every account and token in one transaction. `Ok(Err(lines))`: some accounts
    /// (or look-alikes of them) or serials exist already, one message per input line naming
    /// it; nothing was stored. `Ok(Ok((accounts, tokens)))`: all were stored.
    fn import_accounts(
        &self,
        accounts: &[ImportAccount],
    ) -> StoreResult<Result<(usize, usize), Vec<String>>>;

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
    fn delete_app_password(&self, id: i64) -> StoreResult<()>;
    /// Replaces every backup code of a backup token with these (salt, keyed hash) pairs, in
    /// one transaction: the old set stops working the moment the new one exists.
    fn replace_backup_codes(&self, token_id: i64, codes: &[(Vec<u8>, Vec<u8>)]) -> StoreResult<()>;

    /// An installation-wide value.
    fn meta(&self, name: &str) -> StoreResult<Option<Vec<u8>>>;
    /// Stores an installation-wide value unless one is stored already; returns the value
    /// stored afterwards (the given one, or the one that was there first). Atomic.
    fn init_meta(&self, name: &str, value: &[u8]) -> StoreResult<Vec<u8>>;
    /// Key rotation: replaces every token's sealed secret with `reseal(serial, old)` and sets
    /// the given meta values, all in one transaction: either every row moves or none does.
    /// Returns how many secrets were re-sealed.
    fn reseal_all(&self, reseal: &mut ResealFn<'_>, meta: &[(&str, &[u8])]) -> StoreResult<usize>;

    // Maintenance: backups and what a restore must undo.
    /// A consistent copy of the whole database into the new file `dest`, while logins go on.
    fn backup_to(&self, dest: &Path) -> StoreResult<()>;
    /// Replaces everything with the backup at `src` (made by `backup_to`), in one step.
    fn restore_from(&self, src: &Path) -> StoreResult<()>;
    /// The schema version the database holds.
    fn schema_version(&self) -> StoreResult<i64>;
    /// "ok", or what the database's own consistency check found.
    fn integrity_check(&self) -> StoreResult<String>;
    /// Moves every TOTP token's counter up to the time step of `now`, so no code used
    /// before a restore works again. Returns how many moved.
    fn burn_totp_until(&self, now: i64) -> StoreResult<usize>;
    /// Drops every stored e-mail code; returns how many.
    fn clear_email_codes(&self) -> StoreResult<usize>;
    /// Groups of account names that look alike (made before otpd refused that).
    fn look_alike_groups(&self) -> StoreResult<Vec<Vec<String>>>;
}
