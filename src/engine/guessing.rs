//! The login's side of the guessing gate (gate.rs): every attempt at a PIN, a code or an app
//! password enters here, failures are counted here, and an Accept makes its source familiar.

use super::{gate, source_key, CheckRequest, Decision, Engine, Verdict, MAX_FAMILIAR_SOURCES};
use crate::model::{Account, Token};

impl Engine {
    /// The guessing gate in front of everything that looks at a PIN, a code or an app
    /// password: the source's block, then the account's lock and delay with a slot taken
    /// for this attempt (gate.rs). A refusal costs what a wrong code costs, or its speed
    /// would tell a guesser that the account exists and is locked.
    pub(super) fn gated(
        &self,
        user: String,
        account: &Account,
        tokens: Vec<Token>,
        req: &CheckRequest,
        f: impl FnOnce(String, gate::Pass<'_>, Vec<Token>) -> Decision,
    ) -> Decision {
        let now_ms = self.clock.now_ms();
        let now = now_ms.div_euclid(1000);
        let rhost = req.rhost.as_deref();
        if let Some(block) = self.sources.blocked(rhost, &user, now, &self.cfg.lockout) {
            let own = Some((account, tokens.as_slice()));
            return self.reject_as_unknown_users_are(user, &req.password, &block, own);
        }
        let source = source_key(rhost);
        let familiar = source
            .as_ref()
            .is_some_and(|s| account.familiar_sources.contains(s));
        let d = match self
            .gate
            .enter(account, familiar, now_ms, &self.cfg.lockout)
        {
            Err(refusal) => {
                let own = Some((account, tokens.as_slice()));
                return self.reject_as_unknown_users_are(
                    user,
                    &req.password,
                    &refusal.to_string(),
                    own,
                );
            }
            Ok(pass) => f(user, pass, tokens),
        };
        if d.verdict == Verdict::Accept {
            if let Some(s) = source {
                self.remember_source(account, s);
            }
        }
        d
    }

    /// Adds `source` to the account's familiar sources, if it is not one yet (the oldest
    /// added goes when there are too many). A known one is not moved up: a user who
    /// alternates between two places would otherwise cost a write per login.
    pub(super) fn remember_source(&self, account: &Account, source: String) {
        if account.familiar_sources.contains(&source) {
            return;
        }
        let mut list = Vec::with_capacity(MAX_FAMILIAR_SOURCES);
        list.extend(
            account
                .familiar_sources
                .iter()
                .filter(|s| **s != source)
                .take(MAX_FAMILIAR_SOURCES - 1)
                .cloned(),
        );
        list.insert(0, source);
        if let Err(e) = self.store.set_familiar_sources(account.id, &list) {
            tracing::warn!("familiar source not recorded: {e}");
        }
    }

    pub(super) fn failed(
        &self,
        user: String,
        account: &Account,
        rhost: Option<&str>,
        now: i64,
        why: &str,
        pass: gate::Pass<'_>,
    ) -> Decision {
        let l = &self.cfg.lockout;
        self.sources.failed(rhost, &user, now, l);
        // Counted in memory first, so an attempt waiting at the gate sees it at once; then
        // made durable. A familiar source's failures live in memory only, but pay the same
        // durable write, or their answer would come a flush sooner.
        let counted = pass.failed(now, l);
        let lock_until = now + l.lock_duration.as_secs() as i64;
        let written = if counted.durable {
            self.store
                .record_failure(account.id, now, l.max_failures, lock_until)
                .map(|_| ())
        } else {
            self.store.record_uncounted(Some(account.id), now)
        };
        let n = counted.failures;
        let from = if counted.durable {
            ""
        } else {
            " from familiar sources"
        };
        if counted.locked {
            crate::metrics::get().lockout();
        }
        let d = if counted.locked {
            Decision::reject(
                user,
                format!("{why}; {n} failures in a row{from}, account locked"),
            )
        } else {
            Decision::reject(user, format!("{why}; {n} failures in a row{from}"))
        };
        match written {
            Ok(()) => d,
            Err(e) => {
                let reason = format!("{}; failure not written: {e}", d.reason);
                Decision::reject(d.user, reason)
            }
        }
    }
}
