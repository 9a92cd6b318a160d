//! The installation as a whole: data directory, key file and database created, opened and
//! checked to belong together, the key rotated, the database backed up and restored.

use super::{invalid, AdminError};
use crate::config::{Config, StoreKind};
use crate::crypto::{self, create_key_file, load_key_file, write_key_file, Keys};
use crate::engine::{Clock, SystemClock};
use crate::model::TokenKind;
use crate::store::{self, AdminStore};
use std::os::unix::fs::DirBuilderExt;
use std::sync::Arc;

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
    if cfg.store.kind == StoreKind::Postgres {
        return init_postgres(cfg);
    }
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

/// `init` against PostgreSQL: the database is the admin's (created with `createdb`); otpd
/// brings its schema up to date and makes the key file, but only while the database holds
/// no secret sealed under another key.
fn init_postgres(cfg: &Config) -> Result<InitReport, AdminError> {
    let key = cfg.key_path();
    let store = store::open_configured(cfg)?;
    let created_key = !key.exists();
    if created_key {
        if store.meta(KEY_CHECK_META)?.is_some() {
            return Err(AdminError::Refused(format!(
                "the PostgreSQL database already holds secrets sealed under a key, but key \
                 file {} does not exist: copy the key file from another node (or your backup); \
                 a new key could not open those secrets",
                key.display()
            )));
        }
        make_dir(key.parent())?;
        create_key_file(&key)?;
    }
    load_key_file(&key)?;
    drop(store);
    open(cfg)?;
    Ok(InitReport {
        created_key,
        created_db: false,
    })
}

fn make_dir(dir: Option<&std::path::Path>) -> Result<(), AdminError> {
    if let Some(dir) = dir {
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
    Ok(())
}

/// Whether `otpd serve` must set the installation up first: a key file or (SQLite) the
/// database file is missing.
pub fn needs_init(cfg: &Config) -> bool {
    match cfg.store.kind {
        StoreKind::Sqlite => !cfg.key_path().exists() || !cfg.database_path().exists(),
        StoreKind::Postgres => !cfg.key_path().exists(),
    }
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
    if cfg.store.kind == StoreKind::Postgres {
        return open_postgres(cfg);
    }
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
    // Configured: the daemon's store keeps its account cache (`[store] cache_accounts`).
    let store = store::open_configured(cfg)?;
    let sealed_hash = store.meta(HASH_KEY_META)?;
    let keys = Arc::new(Keys::load(&key, sealed_hash.as_deref())?);
    check_key_fits(store.as_ref(), &keys, &key, &db)?;
    Ok((store, keys))
}

fn open_postgres(cfg: &Config) -> Result<(Arc<dyn AdminStore>, Arc<Keys>), AdminError> {
    let key = cfg.key_path();
    if !key.exists() {
        return Err(AdminError::Refused(format!(
            "key file {} does not exist: every otpd node on one PostgreSQL database needs the \
             same key file; copy it from another node, or run `otpd init` for a new \
             installation",
            key.display()
        )));
    }
    let store = store::open_configured(cfg)?;
    let sealed_hash = store.meta(HASH_KEY_META)?;
    let keys = Arc::new(Keys::load(&key, sealed_hash.as_deref())?);
    let where_ = std::path::PathBuf::from("the PostgreSQL database");
    check_key_fits(store.as_ref(), &keys, &key, &where_)?;
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
    if cfg.store.kind == StoreKind::Postgres {
        return Err(store::postgres::backup_refused().into());
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
    /// Trusted devices ended (all of them).
    pub devices_ended: usize,
}

/// Replaces the live database with a backup, after checking that the backup is sound and
/// that the current key file opens its secrets. TOTP codes up to now are made used so that
/// nothing used since the backup works again; HOTP counters cannot be known and are reported.
pub fn restore(cfg: &Config, src: &std::path::Path) -> Result<RestoreReport, AdminError> {
    if cfg.store.kind == StoreKind::Postgres {
        return Err(store::postgres::backup_refused().into());
    }
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
    // A device revoked since the backup (or ended by a change since) must not work again:
    // every trusted device ends; users trust their browsers again with PIN+code.
    let devices_ended = match live.devices() {
        Some(d) => d.delete_all_devices()?,
        None => 0,
    };
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
        devices_ended,
    })
}
