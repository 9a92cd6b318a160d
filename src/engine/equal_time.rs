//! Equal time: answers that must not tell things apart (unknown user, wrong PIN, wrong code,
//! locked, throttled, no active token, a Defer that the front-end answers as a Reject) cost
//! the same work: the same reads, the same PIN hash, unsealing and code windows, and the same
//! durable write (docs/security.md#timing; examples/timing.rs measures it). The tokens an
//! answer that looks at nothing checks instead are the account's own where it has active ones
//! (locked, throttled, a blocked source), else a recent account's (unknown user, no active
//! token), else a decoy's: an HOTP window costs more than a TOTP one, so a decoy of one kind
//! alone left refusals 33-60 µs faster than wrong codes of HOTP accounts.

use super::{lock, source_key, source_limit, Decision, Engine};
use crate::config::UnknownUser;
use crate::crypto::Keys;
use crate::engine::request::{CheckRequest, UNKNOWN_USER};
use crate::model::{Account, Token, TokenKind, TokenState};
use crate::tokens::{self, oath, Matcher};

impl Engine {
    /// A Defer or Deny, at the cost of a Reject where the front-end answers all three alike.
    pub(super) fn not_ours(&self, d: Decision, req: &CheckRequest, own: Own<'_>) -> Decision {
        if !req.defer_is_reject {
            return d;
        }
        let now = self.clock.now_ms().div_euclid(1000);
        let paid_to = self.pay_for_a_wrong_code(&req.password, own, now);
        if let Err(e) = self.store.record_uncounted(paid_to, now) {
            tracing::warn!("uncounted write failed: {e}");
        }
        d
    }

    pub(super) fn unknown_user(&self, user: String, class: String, req: &CheckRequest) -> Decision {
        let (rhost, password) = (req.rhost.as_deref(), req.password.as_str());
        let defer_is_reject = req.defer_is_reject;
        match self.cfg.unknown_user {
            UnknownUser::Defer if !defer_is_reject => {
                Decision::defer(user, UNKNOWN_USER).class(class)
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
                // The same one read of the shared counters a known account's login makes.
                let source = source_key(rhost);
                let seen = source_limit::look(
                    self.shared.as_ref(),
                    source.as_deref(),
                    &user,
                    None,
                    now,
                    l,
                );
                let gated = match seen {
                    Err(e) => Err(format!("store error: {e}")),
                    Ok(seen) => match seen.block {
                        Some(block) => Err(block),
                        None => self
                            .gate
                            .enter(&self.gate.ghost(&user), false, None, now_ms, l)
                            .map_err(|r| r.to_string()),
                    },
                };
                let d = match gated {
                    Err(why) => self.reject_as_unknown_users_are(
                        user,
                        password,
                        &format!("{UNKNOWN_USER}; {why}"),
                        None,
                    ),
                    Ok(pass) => {
                        // A known account's login reads its account and token rows (decide):
                        // the same read here, of a real account's rows, or unknown users
                        // answer sooner (examples/timing.rs measured 50 µs without any token
                        // query and about 30 µs with a query that found nothing).
                        if let Some(token) = &req.device.token {
                            self.imitate_device_lookup(token);
                        }
                        let probe = lock(&self.recent_account).clone();
                        let found = self
                            .store
                            .account_with_tokens(probe.as_deref().unwrap_or(&user));
                        let paid_to = match found {
                            Ok(Some(f)) => {
                                let (a, t) = &*f;
                                self.imitate(Some(a), t, password, now);
                                Some(a.id)
                            }
                            _ => {
                                self.imitate(None, &[], password, now);
                                None
                            }
                        };
                        let src = source.as_deref();
                        source_limit::failed(self.shared.as_ref(), src, &user, now, l);
                        pass.failed(now, l, None);
                        self.reject_uncounted(user, UNKNOWN_USER, now, paid_to)
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
    /// costs, on an account row (`paid_to`, the account whose rows the login read):
    /// otherwise its answer comes a flush sooner and tells whether, or how, the account
    /// exists (docs/security.md#timing).
    pub(super) fn reject_uncounted(
        &self,
        user: String,
        why: &str,
        now: i64,
        paid_to: Option<i64>,
    ) -> Decision {
        match self.store.record_uncounted(paid_to, now) {
            Ok(()) => Decision::reject(user, why),
            Err(e) => Decision::reject(user, format!("{why}; failure not recorded: {e}")),
        }
    }

    /// An uncounted Reject that costs what a counted wrong code costs, or its speed would
    /// tell that the account exists, or is locked. `own`: the account and tokens this login
    /// read, if any (`pay_for_a_wrong_code`). Then the unknown-user write.
    pub(super) fn reject_as_unknown_users_are(
        &self,
        user: String,
        password: &str,
        why: &str,
        own: Own<'_>,
    ) -> Decision {
        let now = self.clock.now_ms().div_euclid(1000);
        let paid_to = self.pay_for_a_wrong_code(password, own, now);
        self.reject_uncounted(user, why, now, paid_to)
    }

    /// The reads and the checks of a wrong code, discarded. A login that read an account
    /// with active tokens checks those; any other checks a recent account's, which it reads
    /// as an unknown user's login does (that read is part of the price: examples/timing.rs,
    /// 5 ms apart, measured about 10 µs sooner without a second lookup). A login that read
    /// its own rows also looks up a name that is not there (none is empty), so that it reads
    /// twice, as an unknown user's does: the name that is missing, then real rows. Says on
    /// which account's row the answer's write goes (`reject_uncounted`).
    fn pay_for_a_wrong_code(&self, password: &str, own: Own<'_>, now: i64) -> Option<i64> {
        match own.filter(|(_, t)| t.iter().any(imitable)) {
            Some((account, tokens)) => {
                let _ = self.store.account_with_tokens("");
                self.imitate(Some(account), tokens, password, now);
                Some(account.id)
            }
            None => {
                let probe = lock(&self.recent_account).clone();
                match self
                    .store
                    .account_with_tokens(probe.as_deref().unwrap_or(""))
                {
                    Ok(Some(f)) => {
                        let (a, t) = &*f;
                        self.imitate(Some(a), t, password, now);
                        Some(a.id)
                    }
                    _ => {
                        self.imitate(None, &[], password, now);
                        own.map(|(a, _)| a.id)
                    }
                }
            }
        }
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

    /// What checking `password` against `tokens` costs, as check_otp does it (every active
    /// token: the PIN hash, opening the sealed secret, the code window), with every answer
    /// thrown away; on the decoy when none of them can be checked so.
    pub(super) fn imitate(
        &self,
        account: Option<&Account>,
        tokens: &[Token],
        password: &str,
        now: i64,
    ) {
        let matcher = Matcher::new(&self.cfg, self.store.as_ref(), &self.keys, &self.ports);
        let pin_of =
            |pin: &str| match account.and_then(|a| a.pin_salt.as_ref().zip(a.pin_hash.as_ref())) {
                Some((salt, hash)) => self.keys.verify_hash(salt, pin.as_bytes(), hash),
                None => self
                    .keys
                    .verify_hash(&[0u8; 16], pin.as_bytes(), &[0u8; 32]),
            };
        let mut checked = false;
        for token in tokens.iter().filter(|t| imitable(t)) {
            checked = true;
            let Some((pin, code)) = tokens::split(password, token) else {
                continue;
            };
            let _ = pin_of(pin);
            let _ = matcher.check(token, code, now);
        }
        if !checked {
            let (pin, code) = tokens::split(password, &self.decoy).unwrap_or((password, password));
            let _ = pin_of(pin);
            let _ = matcher.check(&self.decoy, code, now);
        }
    }
}

/// The account and tokens a login read, for [`Engine::reject_as_unknown_users_are`].
pub(super) type Own<'a> = Option<(&'a Account, &'a [Token])>;

/// A token whose check can be run for its cost alone: active, and of a kind that asks no
/// service outside otpd (`TokenClass::asks_outside`).
fn imitable(t: &Token) -> bool {
    t.state == TokenState::Active && !tokens::class(t.kind).asks_outside()
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
        opened: Default::default(),
    }
}
