//! The account: show, level, PIN, the admin's create/delete/unlock, and "my activity".

use super::views::{AccountView, ActivityView, BackupView, TokenView, UserSummary};
use super::{Caller, Need, Portal, PortalError, PortalResult, Proof, Weakening};
use crate::admin::AdminError;
use crate::model::{Account, AuditFilter};

/// Records a page may hold.
pub const MAX_PER_PAGE: usize = 100;
/// How far back pages reach: page × per_page records are read to answer one.
pub const MAX_ACTIVITY_DEPTH: usize = 10_000;

impl Portal {
    fn view(&self, account: &Account) -> PortalResult<AccountView> {
        let now = self.admin.now_secs();
        let timeout = self.admin.cfg.enrol_timeout.as_secs() as i64;
        let tokens = self.tokens_of(account)?;
        let backup = self
            .admin
            .backup_status(&account.name)?
            .map(|b| BackupView {
                serial: b.token.serial,
                left: b.left,
                total: b.total,
            });
        Ok(AccountView {
            name: account.name.clone(),
            level: account.level.clone(),
            has_pin: account.has_pin,
            created_at: account.created_at,
            lock: AccountView::lock_of(account, now),
            tokens: tokens
                .iter()
                .map(|t| TokenView::of(t, self.activate_before(t, timeout)))
                .collect(),
            backup_codes: backup,
        })
    }

    pub(super) fn activate_before(&self, t: &crate::model::Token, timeout: i64) -> Option<i64> {
        (t.state == crate::model::TokenState::Pending).then_some(t.created_at + timeout)
    }

    /// `GET /users`: every account (admin and read keys).
    pub fn users(&self, c: &Caller) -> PortalResult<Vec<UserSummary>> {
        self.call(c, None, "list users", Need::Read, || {
            if c.key.scope == crate::model::ApiScope::Portal {
                return Err(PortalError::Forbidden(
                    "a portal key acts on one named user; listing all is for admin and read \
                     keys"
                        .into(),
                ));
            }
            let now = self.admin.now_secs();
            let list = self.admin.store.accounts().map_err(AdminError::from)?;
            Ok(list
                .into_iter()
                .map(|a| UserSummary {
                    locked: a.locked_until.is_some_and(|t| t > now),
                    name: a.name,
                    level: a.level,
                    has_pin: a.has_pin,
                    created_at: a.created_at,
                })
                .collect())
        })
    }

    /// `POST /users` (admin).
    pub fn create_user(
        &self,
        c: &Caller,
        name: &str,
        pin: Option<&str>,
        level: Option<&str>,
    ) -> PortalResult<AccountView> {
        self.call(c, Some(name), "create user", Need::Admin, || {
            let a = self.admin.add_user(name, pin, level)?;
            self.view(&a)
        })
    }

    /// `DELETE /users/{user}` (admin).
    pub fn delete_user(&self, c: &Caller, user: &str) -> PortalResult<()> {
        self.call(c, Some(user), "delete user", Need::Admin, || {
            let a = self.account(user)?;
            Ok(self.admin.delete_user(&a.name)?)
        })
    }

    /// `POST /users/{user}/unlock` (admin).
    pub fn unlock(&self, c: &Caller, user: &str) -> PortalResult<AccountView> {
        self.call(c, Some(user), "unlock", Need::Admin, || {
            let a = self.account(user)?;
            self.admin.unlock(&a.name)?;
            self.view(&self.account(&a.name)?)
        })
    }

    /// `GET /users/{user}`: level, PIN set or not, lock state, tokens, backup codes left.
    pub fn show(&self, c: &Caller, user: &str) -> PortalResult<AccountView> {
        self.call(c, Some(user), "show account", Need::Read, || {
            self.view(&self.account(user)?)
        })
    }

    /// `PUT /users/{user}/level`: lowering it needs a proof from a portal key.
    pub fn set_level(
        &self,
        c: &Caller,
        user: &str,
        level: &str,
        proof: Option<&Proof>,
    ) -> PortalResult<AccountView> {
        self.call(
            c,
            Some(user),
            &format!("set level {level}"),
            Need::Write,
            || {
                let a = self.account(user)?;
                if !self.admin.cfg.levels.contains_key(level) {
                    return Err(PortalError::Invalid(format!(
                        "unknown level `{level}`; allowed: {}",
                        self.admin.cfg.level_names().join(", ")
                    )));
                }
                if self.lowers(&a.level, level) {
                    self.require_proof(c, &a, Weakening::LowerLevel, proof)?;
                }
                let a = self.admin.set_user(&a.name, None, Some(level))?;
                self.view(&a)
            },
        )
    }

    /// `PUT /users/{user}/pin`.
    pub fn set_pin(&self, c: &Caller, user: &str, pin: &str) -> PortalResult<AccountView> {
        self.call(c, Some(user), "set PIN", Need::Write, || {
            let a = self.account(user)?;
            let a = self.admin.set_user(&a.name, Some(pin), None)?;
            self.view(&a)
        })
    }

    /// `GET /users/{user}/activity`: the account's own audit, newest first, `page` from 1.
    /// Reads through the API are left out (they would fill the page with the portal's own
    /// visits); changes and refusals are in.
    pub fn activity(
        &self,
        c: &Caller,
        user: &str,
        page: usize,
        per_page: usize,
    ) -> PortalResult<ActivityView> {
        self.call(c, Some(user), "read activity", Need::Read, || {
            let a = self.account(user)?;
            if page == 0 || per_page == 0 || per_page > MAX_PER_PAGE {
                return Err(PortalError::Invalid(format!(
                    "page starts at 1; per_page is 1 to {MAX_PER_PAGE}"
                )));
            }
            let want = page.saturating_mul(per_page).saturating_add(1);
            if want > MAX_ACTIVITY_DEPTH + 1 {
                return Err(PortalError::Invalid(format!(
                    "pages reach back {MAX_ACTIVITY_DEPTH} records; use otpd audit for more"
                )));
            }
            // The store filters by user but not by verdict, so reads are dropped here; a
            // generous limit keeps a page full when the portal reads often.
            let rows = self
                .admin
                .store
                .audit(&AuditFilter {
                    user: Some(a.name.clone()),
                    since_ms: None,
                    limit: want.saturating_mul(4).min(MAX_ACTIVITY_DEPTH * 4),
                })
                .map_err(AdminError::from)?;
            let mut items: Vec<_> = rows
                .into_iter()
                .rev()
                .filter(|r| r.verdict != "read")
                .skip((page - 1) * per_page)
                .take(per_page + 1)
                .collect();
            let more = items.len() > per_page;
            items.truncate(per_page);
            Ok(ActivityView {
                page,
                per_page,
                more,
                items,
            })
        })
    }
}
