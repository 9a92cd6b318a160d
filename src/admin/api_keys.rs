//! `otpd api-key add|list|revoke` and the management API's key check: keys are made here,
//! shown once, and kept only as keyed hashes (crypto/api_key.rs).

use super::{invalid, Admin, AdminError};
use crate::crypto;
use crate::model::{ApiKey, ApiScope};
use crate::store::{ApiKeyStore, StoreError};
use zeroize::Zeroizing;

/// Seconds between two writes of a key's last use.
const TOUCH_EVERY: i64 = 60;

impl Admin {
    fn key_store(&self) -> Result<&dyn ApiKeyStore, AdminError> {
        self.store.api_keys().ok_or_else(|| {
            AdminError::Refused("this store does not keep API keys yet (SQLite does)".into())
        })
    }

    /// A new key named `name`: the key is returned once and stored only as a keyed hash.
    pub fn add_api_key(
        &self,
        name: &str,
        scope: ApiScope,
    ) -> Result<(ApiKey, Zeroizing<String>), AdminError> {
        check_name(name)?;
        let key = crypto::new_api_key()?;
        let hash = self.keys.api_key_hash(&key);
        match self
            .key_store()?
            .insert_api_key(name, scope, &hash, self.now())
        {
            Ok(k) => Ok((k, key)),
            Err(StoreError::Exists(_)) => Err(AdminError::Refused(format!(
                "an API key named `{name}` exists; revoke it first or choose another name"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    pub fn api_key_list(&self) -> Result<Vec<ApiKey>, AdminError> {
        Ok(self.key_store()?.api_keys()?)
    }

    pub fn revoke_api_key(&self, name: &str) -> Result<(), AdminError> {
        match self.key_store()?.delete_api_key(name) {
            Ok(()) => Ok(()),
            Err(StoreError::NotFound(_)) => Err(invalid(format!(
                "no API key named `{name}` (see otpd api-key list)"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// The key a request presented, if it is one of ours; records its use now and then.
    /// A key of the wrong shape is refused before the store is asked.
    pub fn api_key_for(&self, presented: &str) -> Result<Option<ApiKey>, AdminError> {
        if !crypto::looks_like_api_key(presented) {
            return Ok(None);
        }
        let store = self.key_store()?;
        let Some(key) = store.api_key_by_hash(&self.keys.api_key_hash(presented))? else {
            return Ok(None);
        };
        let now = self.now();
        if key.last_used_at.is_none_or(|t| now - t >= TOUCH_EVERY) {
            if let Err(e) = store.touch_api_key(key.id, now) {
                tracing::warn!("API key {}: last use not recorded: {e}", key.name);
            }
        }
        Ok(Some(key))
    }
}

/// Names appear in the audit and in logs: short, printable, no spaces.
fn check_name(name: &str) -> Result<(), AdminError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "an API key's name is 1 to 64 ASCII letters, digits, `-`, `_` or `.` (it names the \
             caller in the audit)",
        ))
    }
}
