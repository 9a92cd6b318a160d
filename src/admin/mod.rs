//! The admin's operations: initialise, accounts, enrolment. The CLI is a thin layer over
//! these; they validate every input and answer with errors an admin can act on.

use crate::config::{Config, PinCharset, Requirement};
use crate::crypto::{self, KeyFileError, Keys};
use crate::engine::{normalize_user, Clock, SystemClock};
use crate::model::{Account, TokenState};
use crate::store::{AdminStore, StoreError};

mod backup_codes;
mod enrol;
mod tokens;
pub use crate::tokens::kinds::oath::otpauth_uri;
pub use backup_codes::{BackupCodes, BackupStatus};
pub use enrol::YubikeyImportReport;
use std::sync::Arc;
pub use tokens::{decode_base32, Enrolled, TokenOptions};

mod app_passwords;
mod state;
pub use app_passwords::{NewAppPassword, MAX_PER_ACCOUNT as MAX_APP_PASSWORDS};
pub use state::{
    backup, init, needs_init, open, restore, rotate_key, BackupReport, InitReport, RestoreReport,
    RotateReport, HASH_KEY_META, KEY_CHECK_META,
};

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
