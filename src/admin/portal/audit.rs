//! Every API call in the audit (service `api`, client `api-key:NAME`) and the log (target
//! `otpd::api`): what was asked and how it ended, never a secret. Reads are recorded with
//! verdict `read`, changes `ok`, refusals `refused` with the error's code.

use super::{Caller, Need, Portal, PortalError, PortalResult};
use crate::model::AuditRecord;

/// The audit's service for API calls.
pub const API_SERVICE: &str = "api";

impl Portal {
    /// Runs `f` for `caller` if its scope allows `need`, and audits the call under `user`
    /// (the account it concerns, `-` for none) as `action`.
    pub(super) fn call<T>(
        &self,
        caller: &Caller,
        user: Option<&str>,
        action: &str,
        need: Need,
        f: impl FnOnce() -> PortalResult<T>,
    ) -> PortalResult<T> {
        let res = self.need(caller, need).and_then(|()| f());
        let (verdict, reason) = match &res {
            Ok(_) if need == Need::Read => ("read", action.to_string()),
            Ok(_) => ("ok", action.to_string()),
            Err(e) => ("refused", format!("{action}: {}: {e}", e.code())),
        };
        if let Err(PortalError::Internal(detail)) = &res {
            tracing::error!(target: "otpd::api", key = caller.key.name.as_str(), "{action}: {detail}");
        }
        self.record(
            user,
            caller.peer.clone(),
            Some(caller.client()),
            verdict,
            reason,
        );
        res
    }

    /// A request refused before it had a caller (no key, a wrong key), for the audit.
    pub fn audit_unauthorized(&self, peer: Option<String>, action: &str) {
        self.record(
            None,
            peer,
            None,
            "refused",
            format!("{action}: unauthorized"),
        );
    }

    fn record(
        &self,
        user: Option<&str>,
        peer: Option<String>,
        client: Option<String>,
        verdict: &str,
        reason: String,
    ) {
        // A name as typed may be anything: bounded, and quoted by the log like every field.
        let user: String = user.unwrap_or("-").chars().take(256).collect();
        let rec = AuditRecord {
            ts_ms: self.admin.clock.now_ms(),
            user,
            service: API_SERVICE.to_string(),
            rhost: peer,
            client,
            verdict: verdict.to_string(),
            reason,
            serial: None,
        };
        tracing::info!(
            target: "otpd::api",
            user = rec.user.as_str(),
            rhost = rec.rhost.as_deref().unwrap_or("-"),
            client = rec.client.as_deref().unwrap_or("-"),
            verdict = rec.verdict.as_str(),
            reason = rec.reason.as_str(),
            "api"
        );
        if let Err(e) = self.admin.store.append_audit(rec) {
            tracing::error!("audit record not written: {e}");
        }
    }
}
