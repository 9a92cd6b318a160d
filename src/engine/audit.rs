//! The audit record and log line of every decision.

use super::{normalize_user, CheckRequest, Decision, Engine};
use crate::model::AuditRecord;

impl Engine {
    pub(super) fn audit(&self, req: &CheckRequest, d: &Decision) {
        let rec = AuditRecord {
            ts_ms: self.clock.now_ms(),
            user: d.user.clone(),
            service: d.class.clone().unwrap_or_else(|| req.service.clone()),
            rhost: req.rhost.clone(),
            client: req.client.clone(),
            verdict: d.verdict.as_str().to_string(),
            reason: d.reason.clone(),
            serial: d.serial.clone(),
        };
        // Free text (the user name, service, addresses, reason) goes in as `&str`: the text
        // log quotes and escapes it, so a user name cannot forge a field or a line; JSON logs
        // escape it anyway. The verdict is one of a few fixed words.
        tracing::info!(
            target: "otpd::audit",
            user = rec.user.as_str(),
            service = rec.service.as_str(),
            rhost = rec.rhost.as_deref().unwrap_or("-"),
            client = rec.client.as_deref().unwrap_or("-"),
            verdict = %rec.verdict,
            reason = rec.reason.as_str(),
            serial = rec.serial.as_deref().unwrap_or("-"),
            "login"
        );
        if let Err(e) = self.store.append_audit(rec) {
            tracing::error!("audit record not written: {e}");
        }
    }

    /// A check answered without being evaluated, because its caller gave up (front/socket/conn.rs,
    /// `deadline_ms`): evaluating it now would spend the code, or count a failure, for an
    /// answer nobody reads. No PIN or code is looked at, no counter moves, no failure is
    /// counted; the audit record and log line say `reason`. Returns the Reject to send.
    pub fn reject_unevaluated(&self, req: &CheckRequest, reason: &str) -> Decision {
        let user = normalize_user(&req.user).unwrap_or_else(|_| req.user.clone());
        let d = Decision::reject(user, reason);
        let mut audited = d.clone();
        audited.class = self.resolve_class(&req.service, req.rhost.as_deref());
        self.audit(req, &audited);
        d
    }
}
