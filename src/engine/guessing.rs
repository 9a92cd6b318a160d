//! The login's side of the guessing gate (gate.rs): every attempt at a PIN, a code or an app
//! password enters here, failures are counted here, and an Accept makes its source familiar.

use super::MAX_FAMILIAR_SOURCES;
use super::{gate, source_key, source_limit, CheckRequest, Decision, Engine, Verdict};
use crate::model::{Account, Token};
use crate::store::shared::{self, Count};

/// How long a familiar-source bucket with failures but no lock is kept after its latest
/// failure when nothing clears it: a day of quiet forgives it.
const FAMILIAR_KEEP_S: i64 = 86_400;

impl Engine {
    /// The guessing gate in front of everything that looks at a PIN, a code or an app
    /// password: the source's block, then the account's lock and delay with a slot taken
    /// for this attempt (gate.rs). A refusal costs what a wrong code costs, or its speed
    /// would tell a guesser that the account exists and is locked.
    pub(super) fn gated(
        &self,
        user: String,
        account: &Account,
        tokens: &[Token],
        req: &CheckRequest,
        f: impl FnOnce(String, gate::Pass<'_>, &[Token]) -> Decision,
    ) -> Decision {
        let now_ms = self.clock.now_ms();
        let now = now_ms.div_euclid(1000);
        let rhost = req.rhost.as_deref();
        let source = source_key(rhost);
        let familiar = source
            .as_ref()
            .is_some_and(|s| account.familiar_sources.contains(s));
        // One read of the shared counters: the source's blocks and, from a familiar source,
        // the account's familiar bucket as every node counted it.
        let seen = source_limit::look(
            self.shared.as_ref(),
            source.as_deref(),
            &user,
            familiar.then_some(account),
            now,
            &self.cfg.lockout,
        )
        .map_err(|e| format!("store error: {e}"))
        .and_then(|seen| match seen.block {
            Some(block) => Err(block),
            None => Ok(seen),
        });
        let seen = match seen {
            Ok(seen) => seen,
            Err(why) => {
                let own = Some((account, tokens));
                return self.reject_as_unknown_users_are(user, &req.password, &why, own);
            }
        };
        let d = match self
            .gate
            .enter(account, familiar, seen.familiar, now_ms, &self.cfg.lockout)
        {
            Err(refusal) => {
                let own = Some((account, tokens));
                return self.reject_as_unknown_users_are(
                    user,
                    &req.password,
                    &refusal.to_string(),
                    own,
                );
            }
            Ok(mut pass) => {
                pass.clear_pair = seen.pair_counted;
                f(user, pass, tokens)
            }
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
        let source = source_key(rhost);
        source_limit::failed(self.shared.as_ref(), source.as_deref(), &user, now, l);
        // Written while this attempt still holds its slot (an attempt waiting at the gate
        // waits for it), then counted in memory with the count every node's failures made:
        // the row's for unfamiliar sources, the shared bucket's for familiar ones. A
        // familiar source's failure pays the same durable write as an unfamiliar one's, or
        // its answer would come a flush sooner.
        let lock_until = now + l.lock_duration.as_secs() as i64;
        let (durable, written) = if pass.familiar() {
            let how = Count::Bucket {
                lock_at: l.max_failures,
                lock_until,
                keep: FAMILIAR_KEEP_S,
            };
            let key = shared::counter_for_familiar(account);
            let shared = self.shared.count(&key, now, how);
            let written = self.store.record_uncounted(Some(account.id), now);
            match shared {
                Ok(c) => (Some(c.failures), written),
                Err(e) => (None, written.and(Err(e))),
            }
        } else {
            match self
                .store
                .record_failure(account.id, now, l.max_failures, lock_until)
            {
                Ok(n) => (Some(n), Ok(())),
                Err(e) => (None, Err(e)),
            }
        };
        let counted = pass.failed(now, l, durable);
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

    /// A full login succeeded: the slot goes back with both buckets afresh, and the shared
    /// counters that held failures are cleared (written only then: most logins have none).
    pub(super) fn succeeded(
        &self,
        pass: gate::Pass<'_>,
        account: &Account,
        rhost: Option<&str>,
        user: &str,
    ) {
        let clear_pair = pass.clear_pair;
        let familiar_dirty = pass.succeeded();
        if clear_pair {
            source_limit::succeeded(self.shared.as_ref(), source_key(rhost).as_deref(), user);
        }
        if familiar_dirty {
            if let Err(e) = self.shared.forget(&shared::counter_for_familiar(account)) {
                tracing::warn!("familiar failures not cleared: {e}");
            }
        }
        if account.failures > 0 || account.locked_until.is_some() {
            if let Err(e) = self.store.clear_failures(account.id) {
                tracing::warn!("failure count not cleared: {e}");
            }
        }
    }
}
