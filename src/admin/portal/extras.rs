//! Backup codes and app passwords through the API.

use super::views::{BackupSetView, BackupView, NewAppPasswordView};
use super::{Caller, Need, Portal, PortalError, PortalResult, Proof, Weakening};
use crate::model::AppPassword;

impl Portal {
    /// `GET /users/{user}/backup-codes`: how many are left (`None`: never had a set).
    pub fn backup_codes(&self, c: &Caller, user: &str) -> PortalResult<Option<BackupView>> {
        self.call(c, Some(user), "backup codes left", Need::Read, || {
            let a = self.account(user)?;
            Ok(self.admin.backup_status(&a.name)?.map(|b| BackupView {
                serial: b.token.serial,
                left: b.left,
                total: b.total,
            }))
        })
    }

    /// `POST /users/{user}/backup-codes`: a new set, shown once; the old set ends. Needs a
    /// proof from a portal key once the account has any active token (the new codes are a
    /// second factor in the hands of whoever reads this answer).
    pub fn new_backup_codes(
        &self,
        c: &Caller,
        user: &str,
        proof: Option<&Proof>,
    ) -> PortalResult<BackupSetView> {
        self.call(c, Some(user), "new backup codes", Need::Write, || {
            let a = self.account(user)?;
            if self.has_active_token(&a)? {
                self.require_proof(c, &a, Weakening::NewBackupCodes, proof)?;
            }
            let set = self.admin.generate_backup_codes(&a.name)?;
            Ok(BackupSetView {
                serial: set.token.serial,
                codes: set.codes,
            })
        })
    }

    /// `GET /users/{user}/app-passwords`: label, classes, created, last use and from where.
    pub fn app_passwords(&self, c: &Caller, user: &str) -> PortalResult<Vec<AppPassword>> {
        self.call(c, Some(user), "list app passwords", Need::Read, || {
            let a = self.account(user)?;
            Ok(self.admin.app_passwords(&a.name)?)
        })
    }

    /// `POST /users/{user}/app-passwords`: shown once.
    pub fn add_app_password(
        &self,
        c: &Caller,
        user: &str,
        label: &str,
        services: &[String],
    ) -> PortalResult<NewAppPasswordView> {
        self.call(c, Some(user), "new app password", Need::Write, || {
            let a = self.account(user)?;
            let n = self.admin.add_app_password(&a.name, label, services)?;
            Ok(NewAppPasswordView {
                password: n.password,
                app_password: n.app_password,
                effective_for: n.effective_for,
            })
        })
    }

    /// `DELETE /users/{user}/app-passwords/{id}`.
    pub fn revoke_app_password(&self, c: &Caller, user: &str, id: i64) -> PortalResult<()> {
        self.call(
            c,
            Some(user),
            &format!("revoke app password {id}"),
            Need::Write,
            || {
                let a = self.account(user)?;
                if !self
                    .admin
                    .app_passwords(&a.name)?
                    .iter()
                    .any(|p| p.id == id)
                {
                    return Err(PortalError::NotFound(format!(
                        "`{}` has no app password {id}",
                        a.name
                    )));
                }
                // By id: a label may look like another password's id.
                self.admin
                    .store
                    .delete_app_password(id)
                    .map_err(crate::admin::AdminError::from)?;
                Ok(())
            },
        )
    }
}
