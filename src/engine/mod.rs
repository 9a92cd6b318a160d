//! The decision. A front-end turns bytes into a [`CheckRequest`]; the engine answers with a
//! [`Decision`]. The engine never sees a socket; a front-end never sees a token.

mod app_password;
mod challenge;
mod clock;
mod email;
mod gate;
mod lockout;
pub mod relogin;
mod request;
mod source_limit;

pub use app_password::normalize as normalize_app_password;
pub use challenge::CODE_PROMPT;
pub use clock::{Clock, SystemClock};
pub use request::{normalize_user, CheckRequest, Decision, Verdict, MAX_PASSWORD_LEN};
pub use source_limit::{source_key, SourceLimiter};

use crate::config::{Config, Requirement, UnknownUser, ANY_CLASS};
use crate::crypto::Keys;
use crate::model::{Account, AuditRecord, Token, TokenKind, TokenState};
use crate::store::Store;
use crate::tokens::{self, oath, Matcher, Ports, Redeemed};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

/// Messages a user may see. Every failure looks the same from outside: which part was wrong
/// is the audit's business, not an attacker's.
pub mod messages {
    pub const ACCEPT: &str = "Login accepted";
    pub const REJECT: &str = "Login failed";
    pub const DEFER: &str = "Use your normal password";
    pub const DENY: &str = "This service is switched off for your account";
}

/// Answer of the account phase (PAM account management).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountVerdict {
    Allow,
    Deny,
    /// Not ours (unknown user): let the rest of the stack decide.
    Ignore,
}

impl AccountVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountVerdict::Allow => "allow",
            AccountVerdict::Deny => "deny",
            AccountVerdict::Ignore => "ignore",
        }
    }
}

pub struct Engine {
    cfg: Arc<Config>,
    store: Arc<dyn Store>,
    keys: Arc<Keys>,
    clock: Arc<dyn Clock>,
    /// In-memory failure counts per source address; carried over on reload.
    sources: Arc<SourceLimiter>,
    /// Every attempt at a PIN, a code or an app password passes here first; carried over on
    /// reload.
    gate: Arc<gate::Gate>,
    /// Open States of two-step logins (challenge.rs); carried over on reload.
    challenges: Arc<challenge::Challenges>,
    /// Webmail re-logins (relogin.rs); carried over on reload.
    relogin: Arc<relogin::ReloginCache>,
    /// The mail relay and the YubiKey validation servers (email.rs); the real ones unless a
    /// test puts its own here.
    ports: Ports,
    /// A TOTP token with a random secret that belongs to nobody: checked in place of real
    /// tokens where there are none (unknown user, no active token), so those answers cost
    /// what a wrong code costs.
    decoy: Arc<Token>,
    /// A known account's name, seen in an earlier login: an unknown user's login reads that
    /// account's token rows (and discards them) so that it costs the page reads a known
    /// account's login costs. Only ever read, never logged.
    recent_account: Arc<Mutex<Option<String>>>,
}

impl Engine {
    pub fn new(cfg: Arc<Config>, store: Arc<dyn Store>, keys: Arc<Keys>) -> Engine {
        Engine::with_clock(cfg, store, keys, Arc::new(SystemClock))
    }

    pub fn with_clock(
        cfg: Arc<Config>,
        store: Arc<dyn Store>,
        keys: Arc<Keys>,
        clock: Arc<dyn Clock>,
    ) -> Engine {
        Engine {
            cfg,
            store,
            clock,
            sources: Arc::new(SourceLimiter::new()),
            gate: Arc::new(gate::Gate::new()),
            challenges: Arc::new(challenge::Challenges::new(challenge::DEFAULT_LIFETIME)),
            relogin: Arc::new(relogin::ReloginCache::new(relogin::MAX_ENTRIES)),
            ports: Ports::real(),
            decoy: Arc::new(decoy_token(&keys)),
            recent_account: Arc::new(Mutex::new(None)),
            keys,
        }
    }

    /// The same engine under a new configuration (reload): the store, the keys and the clock
    /// carry over, so nothing a running login depends on is lost.
    pub fn reconfigure(&self, cfg: Arc<Config>) -> Engine {
        Engine {
            cfg,
            store: self.store.clone(),
            keys: self.keys.clone(),
            clock: self.clock.clone(),
            sources: self.sources.clone(),
            gate: self.gate.clone(),
            challenges: self.challenges.clone(),
            relogin: self.relogin.clone(),
            ports: self.ports.clone(),
            decoy: self.decoy.clone(),
            recent_account: self.recent_account.clone(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The service class of a login: a webmail host's address wins over what the service is
    /// called; then a class name; then a PAM service name mapped in config.
    pub fn resolve_class(&self, service: &str, rhost: Option<&str>) -> Option<String> {
        if let Some(ip) = rhost.and_then(|r| r.parse::<IpAddr>().ok()) {
            for (name, svc) in &self.cfg.services {
                if svc.rhosts.iter().any(|net| net.contains(&ip)) {
                    return Some(name.clone());
                }
            }
        }
        if self.cfg.services.contains_key(service) {
            return Some(service.to_string());
        }
        self.cfg
            .services
            .iter()
            .find(|(_, svc)| svc.pam_services.iter().any(|p| p == service))
            .map(|(name, _)| name.clone())
    }

    /// Decides a login, writes the audit record and the log line.
    pub fn check(&self, req: &CheckRequest) -> Decision {
        let d = self.decide(req);
        self.audit(req, &d);
        d
    }

    /// [`Engine::check`] for a front-end that can answer from another thread: a login whose
    /// only wait would be its counter advance's commit comes back [`Checked::Pending`] at
    /// once, decided as if the advance won. The front-end passes the outcome to
    /// [`Engine::settle`] when it arrives (`Deferred::then`) and only then answers; the audit
    /// record is written there, with the final verdict.
    pub fn check_deferrable(&self, req: &CheckRequest) -> Checked {
        crate::store::commit::defer_begin();
        let d = self.decide(req);
        match crate::store::commit::defer_end() {
            None => {
                self.audit(req, &d);
                Checked::Done(d)
            }
            Some(deferred) => Checked::Pending(d, deferred),
        }
    }

    /// The final decision of a [`Checked::Pending`] login once its advance is durable, or
    /// lost to another login that used the code first, or failed; writes its audit record.
    pub fn settle(
        &self,
        req: &CheckRequest,
        d: Decision,
        outcome: crate::store::commit::Outcome,
    ) -> Decision {
        let d = match outcome {
            Ok(true) => d,
            Ok(false) => lost(d, "code already used".to_string()),
            Err(e) => lost(d, format!("store error: {e}")),
        };
        self.audit(req, &d);
        d
    }

    fn audit(&self, req: &CheckRequest, d: &Decision) {
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
        if let Err(e) = self.store.append_audit(&rec) {
            tracing::error!("audit record not written: {e}");
        }
    }

    fn decide(&self, req: &CheckRequest) -> Decision {
        let user = match normalize_user(&req.user) {
            Ok(u) => u,
            Err(why) => return Decision::reject(req.user.clone(), why),
        };
        if req.password.len() > MAX_PASSWORD_LEN {
            return Decision::reject(user, "password longer than 512 bytes");
        }
        let Some(class) = self.resolve_class(&req.service, req.rhost.as_deref()) else {
            return Decision::reject(user, format!("unknown service `{}`", req.service));
        };
        // The account and its tokens in one read (a login's reads are a quarter of its CPU).
        let found = match self.store.account_with_tokens(&user) {
            Ok(f) => f,
            Err(e) => return Decision::reject(user, format!("store error: {e}")).class(class),
        };
        let Some((account, tokens)) = found else {
            return self.unknown_user(user, class, req);
        };
        self.remember_account(&account.name);
        let Some(req_kind) = self.cfg.requirement(&account.level, &class) else {
            return Decision::reject(
                user,
                format!("account level `{}` is not configured", account.level),
            )
            .class(class);
        };
        let d = match req_kind {
            // No PIN, code or app password holds a control character. OpenSSH sends
            // "\x08\n\r\x7fINCORRECT" for logins it refuses itself (invalid user, root
            // forbidden): that must not count as a failure, or anyone could lock an account
            // through sshd.
            Requirement::Otp | Requirement::AppPassword
                if req.password.chars().any(char::is_control) =>
            {
                // An unknown user with the same password would cost just as much.
                self.reject_as_unknown_users_are(
                    user,
                    &req.password,
                    "password holds control characters (a client's filler, not a guess); not counted",
                )
            }
            Requirement::Password => self.not_ours(
                Decision::defer(
                    user,
                    format!("level {}: {class} uses the normal password", account.level),
                ),
                req,
            ),
            Requirement::Deny => self.not_ours(
                Decision::deny(
                    user,
                    format!("level {}: {class} is switched off", account.level),
                ),
                req,
            ),
            Requirement::AppPassword => self.gated(user, &account, req, |user, pass| {
                self.check_app_password(user, &account, &class, req, pass)
            }),
            Requirement::Otp => self.gated(user, &account, req, |user, pass| {
                self.otp_with_relogin(user, &account, tokens, &class, req, pass)
            }),
        };
        d.class(class)
    }

    /// The guessing gate in front of everything that looks at a PIN, a code or an app
    /// password: the source's block, then the account's lock and delay with a slot taken
    /// for this attempt (gate.rs). A refusal costs what a wrong code costs, or its speed
    /// would tell a guesser that the account exists and is locked.
    fn gated(
        &self,
        user: String,
        account: &Account,
        req: &CheckRequest,
        f: impl FnOnce(String, gate::Pass<'_>) -> Decision,
    ) -> Decision {
        let now_ms = self.clock.now_ms();
        let now = now_ms.div_euclid(1000);
        let rhost = req.rhost.as_deref();
        if let Some(block) = self.sources.blocked(rhost, &user, now, &self.cfg.lockout) {
            return self.reject_as_unknown_users_are(user, &req.password, &block);
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
                return self.reject_as_unknown_users_are(user, &req.password, &refusal.to_string())
            }
            Ok(pass) => f(user, pass),
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
    fn remember_source(&self, account: &Account, source: String) {
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

    /// A Defer or Deny, at the cost of a Reject where the front-end answers all three alike.
    fn not_ours(&self, d: Decision, req: &CheckRequest) -> Decision {
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

    fn unknown_user(&self, user: String, class: String, req: &CheckRequest) -> Decision {
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
    fn reject_uncounted(&self, user: String, why: &str, now: i64) -> Decision {
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
    fn reject_as_unknown_users_are(&self, user: String, password: &str, why: &str) -> Decision {
        let now = self.clock.now_ms().div_euclid(1000);
        let _ = self.store.account_with_tokens("");
        self.dummy_work(password, now);
        self.reject_uncounted(user, why, now)
    }

    /// Keeps `name` as the account whose rows unknown users' logins read. Skipped when
    /// another thread holds the lock: any recent name will do.
    fn remember_account(&self, name: &str) {
        if let Ok(mut g) = self.recent_account.try_lock() {
            if g.as_deref() != Some(name) {
                *g = Some(name.to_string());
            }
        }
    }

    /// What checking a password against one token costs, on the decoy: the PIN hash, opening
    /// a sealed secret and the code window. (The token query is the caller's.)
    fn dummy_work(&self, password: &str, now: i64) {
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

    /// `tokens` are the account's, read once per login by the caller (challenge.rs): a second
    /// query would cost every login a few more page reads.
    fn check_otp(
        &self,
        user: String,
        account: &Account,
        req: &CheckRequest,
        tokens: Vec<Token>,
        pass: gate::Pass<'_>,
    ) -> Decision {
        let now_ms = self.clock.now_ms();
        let now = now_ms.div_euclid(1000);
        let rhost = req.rhost.as_deref();
        let active: Vec<_> = tokens
            .into_iter()
            .filter(|t| t.state == TokenState::Active)
            .collect();
        if active.is_empty() {
            // Not counted (there is nothing to guess). Without the write it came about 300
            // µs sooner and told that the account exists without a usable token.
            return self.reject_as_unknown_users_are(user, &req.password, "no active token");
        }
        let password = req.password.as_str();
        let matcher = Matcher::new(&self.cfg, self.store.as_ref(), &self.keys, &self.ports);
        let mut pin_seen_ok = false;
        let mut hit = None;
        let mut detail: Option<String> = None;
        // Every token is tried in full, whatever matched before, so the time does not depend
        // on which part of the password was wrong. Each kind says where its code starts.
        for token in &active {
            let Some((pin, code)) = tokens::split(password, token) else {
                continue;
            };
            let pin_ok = match (&account.pin_salt, &account.pin_hash) {
                (Some(salt), Some(hash)) => self.keys.verify_hash(salt, pin.as_bytes(), hash),
                _ => false,
            };
            pin_seen_ok |= pin_ok;
            let result = matcher.check(token, code, now);
            if pin_ok {
                match result {
                    Ok(claim) if hit.is_none() => hit = Some((token, claim)),
                    Err(Some(why)) if detail.is_none() => detail = Some(why),
                    _ => {}
                }
            }
        }
        let Some((token, claim)) = hit else {
            let why = if !account.has_pin {
                "account has no PIN".to_string()
            } else if pin_seen_ok {
                detail.unwrap_or_else(|| "wrong or used code".to_string())
            } else {
                "wrong PIN".to_string()
            };
            return self.failed(user, account, rhost, now, &why, pass);
        };
        match matcher.redeem(token, &claim, now, false) {
            Ok(Redeemed::Won(note)) => {
                pass.succeeded();
                self.sources.succeeded(rhost, &user);
                if account.failures > 0 || account.locked_until.is_some() {
                    if let Err(e) = self.store.clear_failures(account.id) {
                        tracing::warn!("failure count not cleared: {e}");
                    }
                }
                let mut d = Decision::accept(user, token.serial.clone());
                d.reason = note;
                d
            }
            // Another request used this code (or a later one) first: a replay or a race.
            Ok(Redeemed::Lost) => {
                Decision::reject(user, "code already used").serial(token.serial.clone())
            }
            Err(e) => Decision::reject(user, format!("store error: {e}")),
        }
    }

    fn failed(
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
            self.store.record_unknown_failure(now)
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

    /// Account phase (PAM account management): is this service switched off for the user?
    pub fn account_check(
        &self,
        user: &str,
        service: &str,
        rhost: Option<&str>,
    ) -> (AccountVerdict, String) {
        let Ok(user) = normalize_user(user) else {
            return (AccountVerdict::Ignore, "invalid user name".into());
        };
        let account = match self.store.account(&user) {
            Ok(Some(a)) => a,
            Ok(None) => return (AccountVerdict::Ignore, "unknown user".into()),
            Err(e) => return (AccountVerdict::Deny, format!("store error: {e}")),
        };
        let class = self
            .resolve_class(service, rhost)
            .unwrap_or_else(|| ANY_CLASS.to_string());
        match self.cfg.requirement(&account.level, &class) {
            Some(Requirement::Deny) => (
                AccountVerdict::Deny,
                format!("level {}: {class} is switched off", account.level),
            ),
            Some(_) => (AccountVerdict::Allow, String::new()),
            None => (
                AccountVerdict::Deny,
                format!("account level `{}` is not configured", account.level),
            ),
        }
    }
}

#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;

#[cfg(test)]
mod mail_tests;

/// What a front-end gets from [`Engine::check_deferrable`].
pub enum Checked {
    /// Decided and audited.
    Done(Decision),
    /// Decided as if the counter advance won; not final (and not audited) until
    /// [`Engine::settle`] has the outcome.
    Pending(Decision, crate::store::commit::Deferred),
}

/// Familiar sources kept per account: the user's home, office, phone network and a few more.
const MAX_FAMILIAR_SOURCES: usize = 8;

/// A provisional Accept turned into the Reject the waiting path gives (check_otp): same
/// user, class and token, the reason given.
fn lost(d: Decision, why: String) -> Decision {
    let mut r = Decision::reject(d.user, why);
    r.serial = d.serial;
    r.class = d.class;
    r
}

/// A poisoned lock only means a thread panicked while holding it; a name is still a name.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn decoy_token(keys: &Keys) -> Token {
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
