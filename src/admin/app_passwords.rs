//! Admin operations on app-specific passwords: make one (shown once), list, revoke.

use super::{invalid, Admin, AdminError};
use crate::config::Requirement;
use crate::crypto;
use crate::engine::normalize_app_password;
use crate::model::AppPassword;
use crate::store::StoreError;
use zeroize::Zeroizing;

/// Letters and digits that are hard to mix up when read off a screen (no 0/o, 1/l/i).
const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
/// 20 characters of 31: about 99 bits.
const LENGTH: usize = 20;
/// Enough for every device of a household; bounds the work of one login.
pub const MAX_PER_ACCOUNT: usize = 50;

/// A new app password, with the clear text to show once.
pub struct NewAppPassword {
    pub app_password: AppPassword,
    /// Grouped for typing: `abcd-efgh-jkmn-pqrs-tuvw`.
    pub password: Zeroizing<String>,
    /// Classes of this account's level that ask for an app password now (none: it does not
    /// work until the level changes).
    pub effective_for: Vec<String>,
}

/// Random, grouped in fours with dashes (the engine ignores dashes and spaces).
fn generate() -> Result<Zeroizing<String>, AdminError> {
    let mut out = Zeroizing::new(String::with_capacity(LENGTH + LENGTH / 4));
    for i in 0..LENGTH {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        let n = crypto::random_below(ALPHABET.len() as u32)? as usize;
        out.push(char::from(ALPHABET[n]));
    }
    Ok(out)
}

/// Bits of a generated password; a test keeps it at 80 or more.
#[cfg(test)]
fn strength_bits() -> f64 {
    LENGTH as f64 * (ALPHABET.len() as f64).log2()
}

impl Admin {
    fn check_label(&self, label: &str) -> Result<String, AdminError> {
        let label = label.trim();
        if label.is_empty() {
            return Err(invalid(
                "--label must not be empty: name the device or program, e.g. \"Thunderbird laptop\"",
            ));
        }
        if label.chars().count() > 64 || label.chars().any(char::is_control) {
            return Err(invalid("--label: at most 64 printable characters"));
        }
        Ok(label.to_string())
    }

    fn check_services(&self, services: &[String]) -> Result<Vec<String>, AdminError> {
        let mut out: Vec<String> = Vec::new();
        for s in services.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
            if !self.cfg.services.contains_key(s) {
                return Err(invalid(format!(
                    "--services: no service class `{s}`; classes: {}",
                    self.cfg.class_names().join(", ")
                )));
            }
            if !out.iter().any(|o| o == s) {
                out.push(s.to_string());
            }
        }
        Ok(out)
    }

    /// Makes an app password for `user`, limited to `services` (classes; empty = all that ask
    /// for one). The clear text is returned once and never stored.
    pub fn add_app_password(
        &self,
        raw_user: &str,
        label: &str,
        services: &[String],
    ) -> Result<NewAppPassword, AdminError> {
        let account = self.account(raw_user)?;
        let label = self.check_label(label)?;
        let services = self.check_services(services)?;
        let existing = self.store.app_passwords(account.id)?;
        if existing.iter().any(|a| a.label == label) {
            return Err(AdminError::Refused(format!(
                "`{}` already has an app password labelled \"{label}\"; choose another label or \
                 revoke that one first",
                account.name
            )));
        }
        if existing.len() >= MAX_PER_ACCOUNT {
            return Err(AdminError::Refused(format!(
                "`{}` has {MAX_PER_ACCOUNT} app passwords already; revoke unused ones first",
                account.name
            )));
        }
        let password = generate()?;
        let salt = crypto::random_vec(crypto::SALT_LEN)?;
        let hash = self
            .keys
            .keyed_hash(&salt, normalize_app_password(&password).as_bytes());
        let id = match self.store.insert_app_password(
            account.id,
            &label,
            &services,
            &salt,
            &hash,
            self.now(),
        ) {
            Ok(id) => id,
            Err(StoreError::Exists(_)) => {
                return Err(AdminError::Refused(format!(
                    "`{}` already has an app password labelled \"{label}\"",
                    account.name
                )))
            }
            Err(e) => return Err(e.into()),
        };
        let app_password = self
            .store
            .app_passwords(account.id)?
            .into_iter()
            .find(|a| a.id == id)
            .ok_or_else(|| AdminError::Store(StoreError::NotFound(format!("app password {id}"))))?;
        let effective_for = self.app_password_classes(&account.level, &app_password);
        Ok(NewAppPassword {
            app_password,
            password,
            effective_for,
        })
    }

    /// Classes for which `level` asks for an app password and `ap` is valid.
    pub fn app_password_classes(&self, level: &str, ap: &AppPassword) -> Vec<String> {
        self.cfg
            .services
            .keys()
            .filter(|c| self.cfg.requirement(level, c) == Some(Requirement::AppPassword))
            .filter(|c| ap.allows(c))
            .cloned()
            .collect()
    }

    pub fn app_passwords(&self, raw_user: &str) -> Result<Vec<AppPassword>, AdminError> {
        let account = self.account(raw_user)?;
        Ok(self.store.app_passwords(account.id)?)
    }

    /// Revokes by label, or by id when no label matches. Returns what was revoked.
    pub fn revoke_app_password(
        &self,
        raw_user: &str,
        which: &str,
    ) -> Result<AppPassword, AdminError> {
        let account = self.account(raw_user)?;
        let list = self.store.app_passwords(account.id)?;
        let found = list
            .iter()
            .find(|a| a.label == which.trim())
            .or_else(|| {
                which
                    .trim()
                    .parse::<i64>()
                    .ok()
                    .and_then(|id| list.iter().find(|a| a.id == id))
            })
            .ok_or_else(|| {
                invalid(format!(
                    "`{}` has no app password labelled or numbered \"{which}\" (see otpd \
                     app-password list {})",
                    account.name, account.name
                ))
            })?;
        self.store.delete_app_password(found.id)?;
        Ok(found.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_passwords_are_strong_and_grouped() {
        assert!(strength_bits() >= 80.0, "{}", strength_bits());
        let p = generate().expect("rng");
        assert_eq!(p.len(), 24);
        let groups: Vec<&str> = p.split('-').collect();
        assert_eq!(groups.len(), 5);
        assert!(groups.iter().all(|g| g.len() == 4));
        assert!(p.bytes().all(|b| b == b'-' || ALPHABET.contains(&b)));
        assert_ne!(*p, *generate().expect("rng"));
    }
}
