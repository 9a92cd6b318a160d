//! A fresh proof for an action that weakens an account (the management API's "turning 2FA
//! off needs the second factor"): PIN+code in one field, checked as a one-step login is,
//! behind the same guessing gate, the code spent like any code. No service class, level,
//! re-login cache or challenge takes part: the question is only "does the caller hold the
//! PIN and a token right now", whatever the account's level asks for its logins.
//!
//! The caller (admin/portal.rs) gets a [`Decision`] back and sees no token: only whether the
//! proof held and the serial that made it.

use super::{normalize_user, Attempt, CheckRequest, Decision, Engine, MAX_PASSWORD_LEN};
use crate::store::CommitMode;

/// What the audit shows as the service of a proof.
pub const PROOF_SERVICE: &str = "api-proof";

impl Engine {
    /// The configuration this engine decides by, for what runs beside it (the management
    /// API builds its admin on it per request).
    pub fn shared_config(&self) -> std::sync::Arc<crate::config::Config> {
        self.cfg.clone()
    }

    /// Checks `req.password` as PIN+code for `req.user` (`req.service` is ignored, the audit
    /// shows [`PROOF_SERVICE`]); Accept only when a code matched, was not used before and
    /// is now spent. Writes the audit record and the log line.
    pub fn prove(&self, req: &CheckRequest) -> Decision {
        let d = self.decide_proof(req).class(PROOF_SERVICE.to_string());
        self.audit(req, &d);
        d
    }

    fn decide_proof(&self, req: &CheckRequest) -> Decision {
        let user = match normalize_user(&req.user) {
            Ok(u) => u,
            Err(why) => return Decision::reject(req.user.clone(), why),
        };
        if req.password.len() > MAX_PASSWORD_LEN {
            return Decision::reject(user, "password longer than 512 bytes");
        }
        if req.password.chars().any(char::is_control) {
            return Decision::reject(user, "password holds control characters; not counted");
        }
        let found = match self.store.account_with_tokens(&user) {
            Ok(Some(found)) => found,
            // The API names accounts it has found; no guessing of names happens here.
            Ok(None) => return Decision::reject(user, "unknown user"),
            Err(e) => return Decision::reject(user, format!("store error: {e}")),
        };
        let (account, tokens) = &*found;
        self.gated(user, account, tokens, req, |user, pass, tokens| {
            self.check_otp(
                Attempt {
                    user,
                    account,
                    tokens,
                    class: PROOF_SERVICE,
                    req,
                    pass,
                },
                &mut super::deferred::Commit::new(CommitMode::Wait),
            )
        })
    }
}
