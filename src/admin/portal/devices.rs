//! Trusted devices through the API: list, revoke one, revoke all (the last with a proof from
//! a portal key: ending every device from one session is the kind of thing a hijacked
//! session would do).

use super::views::DeviceView;
use super::{Caller, Need, Portal, PortalError, PortalResult, Proof, Weakening};
use serde::Serialize;

/// `DELETE /users/{user}/trusted-devices`: how many ended.
#[derive(Debug, Serialize)]
pub struct Revoked {
    pub revoked: usize,
}

impl Portal {
    /// `GET /users/{user}/trusted-devices`: label, class, client, created, last use, expiry.
    pub fn devices(&self, c: &Caller, user: &str) -> PortalResult<Vec<DeviceView>> {
        self.call(c, Some(user), "list trusted devices", Need::Read, || {
            let a = self.account(user)?;
            let now = self.admin.now_secs();
            Ok(self
                .admin
                .devices(&a.name)?
                .iter()
                .map(|d| DeviceView::of(d, now))
                .collect())
        })
    }

    /// `DELETE /users/{user}/trusted-devices/{id}`.
    pub fn revoke_device(&self, c: &Caller, user: &str, id: i64) -> PortalResult<()> {
        self.call(
            c,
            Some(user),
            &format!("revoke trusted device {id}"),
            Need::Write,
            || {
                let a = self.account(user)?;
                if !self.admin.devices(&a.name)?.iter().any(|d| d.id == id) {
                    return Err(PortalError::NotFound(format!(
                        "`{}` has no trusted device {id}",
                        a.name
                    )));
                }
                self.admin.revoke_device(&a.name, id)?;
                Ok(())
            },
        )
    }

    /// `DELETE /users/{user}/trusted-devices`: every device ends; a proof from a portal key.
    pub fn revoke_devices(
        &self,
        c: &Caller,
        user: &str,
        proof: Option<&Proof>,
    ) -> PortalResult<Revoked> {
        self.call(
            c,
            Some(user),
            "revoke all trusted devices",
            Need::Write,
            || {
                let a = self.account(user)?;
                self.require_proof(c, &a, Weakening::RevokeAllDevices, proof)?;
                Ok(Revoked {
                    revoked: self.admin.revoke_devices(&a.name)?,
                })
            },
        )
    }
}
