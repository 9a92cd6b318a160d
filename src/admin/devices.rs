//! Trusted devices from the administration's side: list, revoke one, revoke all; and the end
//! of every device of an account when its level, PIN or tokens change. (The engine would
//! refuse those devices anyway at their next use, engine/trusted.rs; deleting them here
//! keeps `device list` true at once.)

use super::{invalid, Admin, AdminError};
use crate::store::{DeviceStore, TrustedDevice};

impl Admin {
    fn device_store(&self) -> Result<&dyn DeviceStore, AdminError> {
        self.store
            .devices()
            .ok_or_else(|| AdminError::Refused("this store keeps no trusted devices".to_string()))
    }

    /// The account's trusted devices, oldest first (expired ones too, until revoked).
    pub fn devices(&self, raw_user: &str) -> Result<Vec<TrustedDevice>, AdminError> {
        let account = self.account(raw_user)?;
        Ok(self.device_store()?.devices(account.id)?)
    }

    /// Revokes one device of the account by its id; returns what was revoked.
    pub fn revoke_device(&self, raw_user: &str, id: i64) -> Result<TrustedDevice, AdminError> {
        let account = self.account(raw_user)?;
        let store = self.device_store()?;
        let found = store
            .devices(account.id)?
            .into_iter()
            .find(|d| d.id == id)
            .ok_or_else(|| {
                invalid(format!(
                    "`{}` has no trusted device {id} (see otpd device list {})",
                    account.name, account.name
                ))
            })?;
        if !store.delete_device(account.id, id)? {
            return Err(invalid(format!(
                "`{}` has no trusted device {id} any more",
                account.name
            )));
        }
        Ok(found)
    }

    /// Revokes every device of the account; returns how many there were.
    pub fn revoke_devices(&self, raw_user: &str) -> Result<usize, AdminError> {
        let account = self.account(raw_user)?;
        Ok(self.device_store()?.delete_devices(account.id)?)
    }

    /// Ends every device of the account after a change of its level, PIN or tokens. The
    /// change itself has happened; a failure here is logged, not returned, because the
    /// engine refuses those devices anyway (their binding no longer fits).
    pub(super) fn end_devices(&self, account_id: i64, why: &str) {
        if let Some(store) = self.store.devices() {
            match store.delete_devices(account_id) {
                Ok(0) => {}
                Ok(n) => tracing::info!("{n} trusted device(s) ended: {why}"),
                Err(e) => tracing::warn!("trusted devices not deleted after {why}: {e}"),
            }
        }
    }
}
