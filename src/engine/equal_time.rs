//! Equal time: answers that must not tell things apart (unknown user, wrong PIN, wrong code,
//! locked, throttled, no active token, a Defer that the front-end answers as a Reject) cost
//! the same work: the same reads, a decoy token's PIN hash, unsealing and code window, and the
//! same durable write (docs/security.md#timing; examples/timing.rs measures it).

use super::{lock, Decision, Engine};
use crate::config::UnknownUser;
use crate::crypto::Keys;
use crate::engine::request::CheckRequest;
use crate::model::{Token, TokenKind, TokenState};
use crate::tokens::{self, oath, Matcher};

impl Engine {
    /// A Defer or Deny, at the cost of a Reject where the front-end answers all three alike.
    pub(super) fn not_ours(&self, d: Decision, req: &CheckRequest) -> Decision {
        if !req.defer_is_reject {
            return d;
        }
        let now = self.clock.now_ms().div_euclid(1000);
        let _ = self.store.account_with_tokens("");
        self.dummy_work(&req.password, now);
        if let Err(e) = self.store.record_unknown_failure(now) {
            tracing::warn!("uncounted write failed: {e}");
        }
        d
    }

    pub(super) fn unknown_user(&self, user: String, class: String, req: &CheckRequest) -> Decision {
        let (rhost, password) = (req.rhost.as_deref(), req.password.as_str());
        let defer_is_reject = req.defer_is_reject;
        match self.cfg.unknown_user {
            UnknownUser::Defer if !defer_is_reject => {
                Decision::defer(user, "unknown user").class(class)
            }
            // Answered Access-Reject over RADIUS: the same work as a wrong code (below), and
            // still a Defer for the audit.
            UnknownUser::Defer | UnknownUser::Reject => {
                // The same work a wrong PIN or code costs, the durable failure write included,
                // so the answer time does not tell whether the account exists. The name also
                // passes the gate, as a ghost account held in memory: refused unseen, or let
                // through and counted, exactly when a real account would be, so neither its
                // answers nor their pattern under a parallel burst tell it apart.
                let now_ms = self.clock.now_ms();
                let now = now_ms.div_euclid(1000);
                let l = &self.cfg.lockout;
                let gated = match self.sources.blocked(rhost, &user, now, l) {
                    Some(block) => Err(block),
                    None => self
                        .gate
                        .enter(&self.gate.ghost(&user), false, now_ms, l)
                        .map_err(|r| r.to_string()),
                };
                let d = match gated {
                    Err(why) => self.reject_as_unknown_users_are(
                        user,
                        password,
                        &format!("unknown user; {why}"),
                    ),
                    Ok(pass) => {
                        // A known account's login reads its account and token rows (decide):
                        // the same read here, of a real account's rows, or unknown users
                        // answer sooner (examples/timing.rs measured 50 µs without any token
                        // query and about 30 µs with a query that found nothing).
                        let probe = lock(&self.recent_account).clone();
                        let _ = self
                            .store
                            .account_with_tokens(probe.as_deref().unwrap_or(&user));
                        self.dummy_work(password, now);
                        self.sources.failed(rhost, &user, now, l);
                        pass.failed(now, l);
                        self.reject_uncounted(user, "unknown user", now)
                    }
                };
                if self.cfg.unknown_user == UnknownUser::Defer {
                    return Decision::defer(d.user, d.reason).class(class);
                }
                d.class(class)
            }
        }
    }

    /// A Reject counted against nobody that still pays the durable write a counted failure
    /// costs (the unknown-user write): otherwise its answer comes a flush sooner and tells
    /// whether, or how, the account exists (docs/security.md#timing).
    pub(super) fn reject_uncounted(&self, user: String, why: &str, now: i64) -> Decision {
        match self.store.record_unknown_failure(now) {
            Ok(()) => Decision::reject(user, why),
            Err(e) => Decision::reject(user, format!("{why}; failure not recorded: {e}")),
        }
    }

    /// An uncounted Reject of a known account that has read its rows and costs what an
    /// unknown user's answer costs, or its speed would tell that the account exists. An
    /// unknown user's answer reads twice, the name that is not there and then a real
    /// account's rows (`unknown_user`): so this one also looks up a name that is not there
    /// (none is empty). examples/timing.rs, 5 ms apart: about 10 µs sooner without that
    /// lookup, about 8 µs later when it read its own rows a second time instead. Then the
    /// decoy's work and the unknown-user write.
    pub(super) fn reject_as_unknown_users_are(
        &self,
        user: String,
        password: &str,
        why: &str,
    ) -> Decision {
        let now = self.clock.now_ms().div_euclid(1000);
        let _ = self.store.account_with_tokens("");
        self.dummy_work(password, now);
        self.reject_uncounted(user, why, now)
    }

    /// Keeps `name` as the account whose rows unknown users' logins read. Skipped when
    /// another thread holds the lock: any recent name will do.
    pub(super) fn remember_account(&self, name: &str) {
        if let Ok(mut g) = self.recent_account.try_lock() {
            if g.as_deref() != Some(name) {
                *g = Some(name.to_string());
            }
        }
    }

    /// What checking a password against one token costs, on the decoy: the PIN hash, opening
    /// a sealed secret and the code window. (The token query is the caller's.)
    pub(super) fn dummy_work(&self, password: &str, now: i64) {
        let (pin, code) = tokens::split(password, &self.decoy).unwrap_or((password, password));
        let _ = self
            .keys
            .verify_hash(&[0u8; 16], pin.as_bytes(), &[0u8; 32]);
        let _ = Matcher::new(&self.cfg, self.store.as_ref(), &self.keys, &self.ports).check(
            &self.decoy,
            code,
            now,
        );
    }
}

/// A TOTP token with a random secret that belongs to nobody: checked in place of real tokens
/// where there are none (unknown user, no active token), so those answers cost what a wrong
/// code costs.
pub(super) fn decoy_token(keys: &Keys) -> Token {
    let secret = crate::crypto::random_vec(20).unwrap_or_else(|_| vec![0x5a; 20]);
    Token {
        id: -1,
        serial: "DECOY".into(),
        user: String::new(),
        account_id: -1,
        kind: TokenKind::Totp,
        state: TokenState::Active,
        algorithm: oath::Algorithm::Sha1,
        digits: 6,
        period: 30,
        sealed_secret: keys.seal(b"DECOY", &secret).unwrap_or_default(),
        last_counter: -1,
        drift: 0,
        label: String::new(),
        created_at: 0,
        last_used_at: None,
        public_id: None,
        address: None,
    }
}
