//! The admin's operations: initialise, accounts, enrolment. The CLI is a thin layer over
//! these; they validate every input and answer with errors an admin can act on.

use crate::config::{Config, PinCharset, Requirement};
use crate::crypto::{self, create_key_file, load_key_file, write_key_file, KeyFileError, Keys};
use crate::engine::{normalize_user, Clock, SystemClock};
use crate::model::{Account, TokenKind, TokenState};
use crate::store::{self, AdminStore, StoreError};
use std::os::unix::fs::DirBuilderExt;

mod backup_codes;
mod enrol;
mod tokens;
pub use crate::tokens::kinds::oath::otpauth_uri;
pub use backup_codes::{BackupCodes, BackupStatus};
pub use enrol::YubikeyImportReport;
use std::sync::Arc;
pub use tokens::{decode_base32, Enrolled, TokenOptions};

mod app_passwords;
pub use app_passwords::{NewAppPassword, MAX_PER_ACCOUNT as MAX_APP_PASSWORDS};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Key(#[from] KeyFileError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] crypto::CryptoError),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Refused(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

fn invalid(msg: impl Into<String>) -> AdminError {
    AdminError::Invalid(msg.into())
}

/// What `otpd init` did.
pub struct InitReport {
    pub created_key: bool,
    pub created_db: bool,
}

/// Creates the data directory, the key file and the database where missing. Never replaces an
/// existing key; creates a key and a database only together: a key beside a database that
/// already exists would not open its secrets, and an empty database beside an existing key
/// would silently replace a lost one (every account unknown, which with `unknown_user =
/// "defer"` lets the normal password in). Checks that an existing pair belongs together.
pub fn init(cfg: &Config) -> Result<InitReport, AdminError> {
    let key = cfg.key_path();
    let db = cfg.database_path();
    let created_db = !db.exists();
    let created_key = !key.exists();
    if created_key && !created_db {
        return Err(AdminError::Refused(format!(
            "database {} exists but key file {} does not: restore the key file from your backup \
             (a new key could not open the secrets sealed under the old one)",
            db.display(),
            key.display()
        )));
    }
    if created_db && !created_key {
        return Err(lost_database(&key, &db));
    }
    for dir in [key.parent(), db.parent()].into_iter().flatten() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| AdminError::Io {
                    path: dir.display().to_string(),
                    source,
                })?;
        }
    }
    if created_key {
        create_key_file(&key)?;
    }
    load_key_file(&key)?;
    store::open(&db)?;
    open(cfg)?;
    Ok(InitReport {
        created_key,
        created_db,
    })
}

/// The refusal for a key file whose database is gone.
fn lost_database(key: &std::path::Path, db: &std::path::Path) -> AdminError {
    AdminError::Refused(format!(
        "key file {} exists but database {} does not: otpd will not start over with an empty \
         database beside an existing key (every account would be unknown). Put the database \
         back: `otpd restore BACKUP_FILE` restores it from a backup; if this installation \
         never held accounts, move the key file away and run `otpd init`, which creates both \
         together",
        key.display(),
        db.display()
    ))
}

/// Opens what every command needs: the keys (checking the key file's mode) and the store,
/// and checks that they belong together.
pub fn open(cfg: &Config) -> Result<(Arc<dyn AdminStore>, Arc<Keys>), AdminError> {
    let key = cfg.key_path();
    let db = cfg.database_path();
    if !db.exists() {
        if key.exists() {
            return Err(lost_database(&key, &db));
        }
        return Err(AdminError::Refused(format!(
            "no database at {}; run `otpd init` first (or point --config / data_dir at it)",
            db.display()
        )));
    }
    if !key.exists() {
        return Err(AdminError::Refused(format!(
            "database {} exists but key file {} does not: restore the key file from your \
             backup (`otpd init` will not make a new one: it could not open the secrets \
             sealed under the old one)",
            db.display(),
            key.display()
        )));
    }
    let store = store::open(&db)?;
    let sealed_hash = store.meta(HASH_KEY_META)?;
    let keys = Arc::new(Keys::load(&key, sealed_hash.as_deref())?);
    check_key_fits(store.as_ref(), &keys, &key, &db)?;
    Ok((store, keys))
}

/// Compares the key file with the key check value stored with the database. A database
/// without one (new, or made by an older otpd) gets the current key's value, but only after
/// every sealed secret in it opened with that key: a wrong key must not be written down as
/// the right one.
fn check_key_fits(
    store: &dyn AdminStore,
    keys: &Keys,
    key: &std::path::Path,
    db: &std::path::Path,
) -> Result<(), AdminError> {
    let wrong = |why: String| {
        AdminError::Refused(format!(
            "key file {} does not fit database {} ({why}): it is another installation's key, \
             or the database is another installation's. Put back the key file that belongs to \
             this database (from the backup taken with it), or restore the database that \
             belongs to this key with `otpd restore BACKUP_FILE`; otpd init never replaces a key",
            key.display(),
            db.display()
        ))
    };
    let stored = match store.meta(KEY_CHECK_META)? {
        Some(v) => v,
        None => {
            if let Some(t) = store
                .tokens(None)?
                .iter()
                .find(|t| keys.open(t.serial.as_bytes(), &t.sealed_secret).is_err())
            {
                return Err(wrong(format!(
                    "the secret of token {} does not open",
                    t.serial
                )));
            }
            store.init_meta(KEY_CHECK_META, &keys.key_check())?
        }
    };
    if keys.fits_key_check(&stored) {
        Ok(())
    } else {
        Err(wrong("its key check value differs".into()))
    }
}

/// Name of the key check value in the store's meta table.
pub const KEY_CHECK_META: &str = "key_check";

/// Name of the sealed hash key in the store's meta table.
pub const HASH_KEY_META: &str = "hash_key";

/// What `otpd key rotate` did.
pub struct RotateReport {
    pub resealed: usize,
    pub resumed: bool,
}

/// Key rotation, safe to interrupt at any point and to run while the daemon serves:
/// 1. the next key is written to `KEY.new` (0600, synced);
/// 2. one transaction re-seals every secret under it and stores the hash key sealed under it
///    (keyed hashes of PINs and app passwords must keep working, so the hash key stays);
/// 3. `KEY.new` is renamed over `KEY`: the old key is gone once every row is re-sealed.
///
/// Until step 3, loaders read both files, so a crash leaves a working installation, and
/// running `otpd key rotate` again finishes the job. A running daemon re-reads the key files
/// when a secret opens with none of the keys it holds.
pub fn rotate_key(cfg: &Config) -> Result<RotateReport, AdminError> {
    let key = cfg.key_path();
    let next = crypto::next_key_path(&key);
    let (store, keys) = open(cfg)?;
    let resumed = next.exists();
    let next_key = if resumed {
        load_key_file(&next)?
    } else {
        let k = crypto::MasterKey::generate()?;
        write_key_file(&next, k.bytes())?;
        k
    };
    // Before anything is sealed under it: the daemon must be able to read the next key.
    if let Err(e) = same_owner(&key, &next) {
        if !resumed {
            let _ = std::fs::remove_file(&next);
        }
        return Err(e);
    }
    keys.rotate_to(&next_key);
    let hash_blob = keys.sealed_hash_key()?;
    let check = keys.key_check();
    let mut reseal = |serial: &str, blob: &[u8]| -> Result<Vec<u8>, String> {
        let pt = keys
            .open(serial.as_bytes(), blob)
            .map_err(|e| e.to_string())?;
        keys.seal(serial.as_bytes(), &pt).map_err(|e| e.to_string())
    };
    let meta: [(&str, &[u8]); 2] = [(HASH_KEY_META, &hash_blob), (KEY_CHECK_META, &check)];
    let resealed = store.reseal_all(&mut reseal, &meta)?;
    std::fs::rename(&next, &key).map_err(|source| AdminError::Io {
        path: key.display().to_string(),
        source,
    })?;
    if let Some(dir) = key.parent() {
        // The rename is only durable once the directory is synced.
        if let Ok(d) = std::fs::File::open(if dir.as_os_str().is_empty() {
            std::path::Path::new(".")
        } else {
            dir
        }) {
            let _ = d.sync_all();
        }
    }
    // A token enrolled by another command while this ran could have been sealed under the old
    // key after our transaction read the table; catch it now, while we still hold that key.
    let stragglers = store
        .tokens(None)?
        .iter()
        .filter(|t| {
            keys.open_current(t.serial.as_bytes(), &t.sealed_secret)
                .is_err()
        })
        .count();
    if stragglers > 0 {
        store.reseal_all(&mut reseal, &meta)?;
    }
    Ok(RotateReport { resealed, resumed })
}

/// Gives the next key file the current key's owner and group. Run as root (the usual way),
/// the new file would otherwise be root's and mode 0600, and a daemon running as its own
/// user could no longer read its key. Refused when that cannot be done (another user's key,
/// not root): the error says as whom to run instead.
fn same_owner(key: &std::path::Path, next: &std::path::Path) -> Result<(), AdminError> {
    use std::os::unix::fs::MetadataExt;
    let io = |path: &std::path::Path, source| AdminError::Io {
        path: path.display().to_string(),
        source,
    };
    let want = std::fs::metadata(key).map_err(|e| io(key, e))?;
    let have = std::fs::metadata(next).map_err(|e| io(next, e))?;
    if (want.uid(), want.gid()) == (have.uid(), have.gid()) {
        return Ok(());
    }
    std::os::unix::fs::chown(next, Some(want.uid()), Some(want.gid())).map_err(|e| {
        AdminError::Refused(format!(
            "key file {} belongs to uid {} gid {}, and the new key cannot be given to them \
             ({e}); run `otpd key rotate` as root or as that user (e.g. `runuser -u otpd -- \
             otpd key rotate`)",
            key.display(),
            want.uid(),
            want.gid()
        ))
    })
}

/// What `otpd backup` wrote.
pub struct BackupReport {
    pub tokens: usize,
    pub bytes: u64,
}

/// A consistent online copy of the database, checked before it is reported good.
pub fn backup(cfg: &Config, dest: &std::path::Path) -> Result<BackupReport, AdminError> {
    if dest.exists() {
        return Err(AdminError::Refused(format!(
            "{} exists; otpd never overwrites a backup, choose a new file name",
            dest.display()
        )));
    }
    let (_, keys) = open(cfg)?;
    let live = store::open(&cfg.database_path())?;
    live.backup_to(dest)?;
    let copy = store::open_readonly(dest)?;
    let check = copy.integrity_check()?;
    if check != "ok" {
        return Err(AdminError::Refused(format!(
            "the copy at {} failed its integrity check ({check}); it is not a usable backup",
            dest.display()
        )));
    }
    let tokens = copy.tokens(None)?;
    for t in &tokens {
        keys.open(t.serial.as_bytes(), &t.sealed_secret)?;
    }
    let bytes = std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0);
    Ok(BackupReport {
        tokens: tokens.len(),
        bytes,
    })
}

/// What `otpd restore` did.
pub struct RestoreReport {
    pub tokens: usize,
    pub totp_burned: usize,
    pub hotp: Vec<String>,
    /// Accounts of the backup whose names look alike (made before otpd refused that).
    pub look_alikes: Vec<Vec<String>>,
}

/// Replaces the live database with a backup, after checking that the backup is sound and
/// that the current key file opens its secrets. TOTP codes up to now are made used so that
/// nothing used since the backup works again; HOTP counters cannot be known and are reported.
pub fn restore(cfg: &Config, src: &std::path::Path) -> Result<RestoreReport, AdminError> {
    if !src.exists() {
        return Err(invalid(format!("no backup at {}", src.display())));
    }
    let backup = store::open_readonly(src)?;
    let check = backup
        .integrity_check()
        .map_err(|e| invalid(format!("{} is not an otpd database: {e}", src.display())))?;
    if check != "ok" {
        return Err(AdminError::Refused(format!(
            "{} fails its integrity check ({check}); nothing was changed",
            src.display()
        )));
    }
    let version = backup.schema_version()?;
    if version < 1 || version > crate::store::schema_version() {
        return Err(AdminError::Refused(format!(
            "{} has schema version {version}; this otpd reads 1 to {}; nothing was changed",
            src.display(),
            crate::store::schema_version()
        )));
    }
    let key = cfg.key_path();
    // Older schemas have no meta table: then there is no sealed hash key either.
    let sealed_hash = backup.meta(HASH_KEY_META).ok().flatten();
    let keys = Keys::load(&key, sealed_hash.as_deref())?;
    let tokens = backup.tokens(None)?;
    for t in &tokens {
        keys.open(t.serial.as_bytes(), &t.sealed_secret).map_err(|_| {
            AdminError::Refused(format!(
                "the key file {} does not open the secrets in this backup (token {}): it was \
                 taken under another key; restore the key file of that time too. Nothing was changed.",
                key.display(),
                t.serial
            ))
        })?;
    }
    if let Some(v) = backup.meta(KEY_CHECK_META).ok().flatten() {
        if !keys.fits_key_check(&v) {
            return Err(AdminError::Refused(format!(
                "the key file {} does not fit this backup (its key check value differs): it \
                 was taken under another key; restore the key file of that time too. Nothing \
                 was changed.",
                key.display()
            )));
        }
    }
    let live = store::open(&cfg.database_path())?;
    live.restore_from(src)?;
    drop(live);
    // Reopen so migrations bring an older backup up to date.
    let live = store::open(&cfg.database_path())?;
    let now = SystemClock.now_ms().div_euclid(1000);
    let totp_burned = live.burn_totp_until(now)?;
    // A code e-mailed (and maybe used) since the backup must not work again; a user whose
    // code is dropped asks for a new one with the PIN.
    live.clear_email_codes()?;
    let hotp = live
        .tokens(None)?
        .into_iter()
        .filter(|t| t.kind == TokenKind::Hotp)
        .map(|t| t.serial)
        .collect();
    let look_alikes = live.look_alike_groups()?;
    Ok(RestoreReport {
        tokens: tokens.len(),
        totp_burned,
        hotp,
        look_alikes,
    })
}

pub struct Admin {
    pub cfg: Arc<Config>,
    pub store: Arc<dyn AdminStore>,
    pub keys: Arc<Keys>,
    pub clock: Arc<dyn Clock>,
    /// Sends e-mailed codes (activation of e-mail tokens); tests put a recorder here.
    pub mailer: Arc<dyn crate::tokens::email::Mailer>,
    /// Asks the YubiKey validation servers (activation of yubikey-remote tokens).
    pub validator: Arc<dyn crate::tokens::ports::Validator>,
}

impl Admin {
    pub fn new(cfg: Arc<Config>, store: Arc<dyn AdminStore>, keys: Arc<Keys>) -> Admin {
        Admin {
            cfg,
            store,
            keys,
            clock: Arc::new(SystemClock),
            mailer: Arc::new(crate::tokens::email::Smtp),
            validator: Arc::new(crate::tokens::remote::ValidationServers),
        }
    }

    fn now(&self) -> i64 {
        self.clock.now_ms().div_euclid(1000)
    }

    pub fn check_pin(&self, pin: &str) -> Result<(), AdminError> {
        let p = &self.cfg.pin;
        let n = pin.chars().count();
        if n < p.min_length || n > p.max_length {
            return Err(invalid(format!(
                "PIN must have {} to {} characters, this one has {n} (nothing was changed)",
                p.min_length, p.max_length
            )));
        }
        let ok = match p.charset {
            PinCharset::Alnum => pin.chars().all(|c| c.is_ascii_alphanumeric()),
            PinCharset::Digits => pin.chars().all(|c| c.is_ascii_digit()),
        };
        if !ok {
            let allowed = match p.charset {
                PinCharset::Alnum => "ASCII letters and digits",
                PinCharset::Digits => "digits",
            };
            return Err(invalid(format!(
                "PIN may only contain {allowed} (pin.charset); nothing was changed"
            )));
        }
        Ok(())
    }

    fn hash_pin(&self, pin: &str) -> Result<(Vec<u8>, Vec<u8>), AdminError> {
        self.check_pin(pin)?;
        let salt = crypto::random_vec(crypto::SALT_LEN)?;
        let hash = self.keys.keyed_hash(&salt, pin.as_bytes()).to_vec();
        Ok((salt, hash))
    }

    fn check_level_name(&self, level: &str) -> Result<(), AdminError> {
        if self.cfg.levels.contains_key(level) {
            Ok(())
        } else {
            Err(invalid(format!(
                "unknown level `{level}`; allowed: {}",
                self.cfg.level_names().join(", ")
            )))
        }
    }

    /// A level that asks for OTP somewhere needs an active token and a PIN first, or the user
    /// would be locked out of those services.
    fn check_level_reachable(&self, account: &Account, level: &str) -> Result<(), AdminError> {
        let needs_otp = self
            .cfg
            .levels
            .get(level)
            .is_some_and(|row| row.values().any(|r| *r == Requirement::Otp));
        if !needs_otp {
            return Ok(());
        }
        let has_active = self
            .store
            .tokens(Some(&account.name))?
            .iter()
            .any(|t| t.state == TokenState::Active);
        if !has_active {
            return Err(AdminError::Refused(format!(
                "level `{level}` needs a one-time code, but `{}` has no active token; enrol one \
                 first (otpd token add {} --type totp, then otpd token activate SERIAL CODE)",
                account.name, account.name
            )));
        }
        if !account.has_pin {
            return Err(AdminError::Refused(format!(
                "level `{level}` needs a PIN, but `{}` has none; set one first (otpd user set {} \
                 --pin-stdin)",
                account.name, account.name
            )));
        }
        Ok(())
    }

    pub fn user_name(&self, raw: &str) -> Result<String, AdminError> {
        normalize_user(raw).map_err(|why| invalid(format!("bad user name: {why}")))
    }

    pub fn account(&self, raw: &str) -> Result<Account, AdminError> {
        let name = self.user_name(raw)?;
        self.store
            .account(&name)?
            .ok_or_else(|| invalid(format!("no user `{name}` (see otpd user list)")))
    }

    pub fn add_user(
        &self,
        raw: &str,
        pin: Option<&str>,
        level: Option<&str>,
    ) -> Result<Account, AdminError> {
        let name = self.user_name(raw)?;
        let level = level.unwrap_or("off");
        self.check_level_name(level)?;
        let pin = pin.map(|p| self.hash_pin(p)).transpose()?;
        if self.store.account(&name)?.is_some() {
            return Err(AdminError::Refused(format!("user `{name}` already exists")));
        }
        // A new account has no token yet, so only a level without OTP can be set now.
        let probe = Account {
            id: 0,
            name: name.clone(),
            level: level.to_string(),
            pin_salt: None,
            pin_hash: None,
            has_pin: pin.is_some(),
            failures: 0,
            last_failure: None,
            locked_until: None,
            created_at: 0,
            familiar_sources: Vec::new(),
            unlocks: 0,
        };
        self.check_level_reachable(&probe, level)?;
        self.store.create_account(
            &name,
            level,
            pin.as_ref().map(|(s, h)| (s.as_slice(), h.as_slice())),
            self.now(),
        )?;
        self.account(&name)
    }

    pub fn set_user(
        &self,
        raw: &str,
        pin: Option<&str>,
        level: Option<&str>,
    ) -> Result<Account, AdminError> {
        let account = self.account(raw)?;
        if let Some(level) = level {
            self.check_level_name(level)?;
        }
        let pin = pin.map(|p| self.hash_pin(p)).transpose()?;
        if let Some((salt, hash)) = &pin {
            self.store.set_pin(&account.name, salt, hash)?;
        }
        if let Some(level) = level {
            let account = self.account(&account.name)?;
            self.check_level_reachable(&account, level)?;
            self.store.set_level(&account.name, level)?;
        }
        self.account(&account.name)
    }

    pub fn unlock(&self, raw: &str) -> Result<(), AdminError> {
        let account = self.account(raw)?;
        Ok(self.store.unlock_account(account.id)?)
    }

    pub fn delete_user(&self, raw: &str) -> Result<(), AdminError> {
        let account = self.account(raw)?;
        Ok(self.store.delete_account(&account.name)?)
    }
}

/// Groups of four for typing a secret by hand.
pub fn group4(s: &str) -> String {
    s.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping() {
        assert_eq!(group4("ABCDEFGHIJ"), "ABCD EFGH IJ");
    }
}
