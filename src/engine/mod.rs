//! The decision. A front-end turns bytes into a [`CheckRequest`]; the engine answers with a
//! [`Decision`]. The engine never sees a socket; a front-end never sees a token.

mod app_password;
mod attempt;
mod audit;
mod challenge;
mod deferred;
mod email;
mod equal_time;
mod gate;
mod guessing;
mod lockout;
mod otp;
mod proof;
pub mod relogin;
mod request;
mod source_limit;
mod trusted;

pub use crate::model::{Clock, SystemClock};
pub use app_password::normalize as normalize_app_password;
use attempt::Attempt;
pub use challenge::CODE_PROMPT;
pub use deferred::{Checked, Pending, Responder};
pub use proof::PROOF_SERVICE;
pub use request::{
    normalize_user, CheckRequest, Decision, DeviceRequest, IssuedDevice, Verdict, MAX_PASSWORD_LEN,
    UNKNOWN_USER,
};
pub use source_limit::source_key;
pub use trusted::{clean_label as clean_device_label, MAX_PER_ACCOUNT as MAX_TRUSTED_DEVICES};

use crate::config::{Config, Requirement};
use crate::crypto::Keys;
use crate::model::Token;
use crate::store::{CommitMode, LoginStore, MemoryShared, Outcome, SharedStateStore};
use crate::tokens::Ports;
use deferred::{lost, Commit};
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
    store: Arc<dyn LoginStore>,
    keys: Arc<Keys>,
    clock: Arc<dyn Clock>,
    /// What every node must see: open States of two-step logins (challenge.rs), the webmail
    /// re-login cache (relogin.rs), the per-source and familiar-source failure counters
    /// (source_limit.rs, gate.rs). The store's when it shares them between nodes, else this
    /// process's memory; carried over on reload.
    shared: Arc<dyn SharedStateStore>,
    /// Every attempt at a PIN, a code or an app password passes here first; carried over on
    /// reload.
    gate: Arc<gate::Gate>,
    /// How long a two-step login's State is valid (ms).
    challenge_lifetime_ms: i64,
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
    pub fn new(cfg: Arc<Config>, store: Arc<dyn LoginStore>, keys: Arc<Keys>) -> Engine {
        Engine::with_clock(cfg, store, keys, Arc::new(SystemClock))
    }

    pub fn with_clock(
        cfg: Arc<Config>,
        store: Arc<dyn LoginStore>,
        keys: Arc<Keys>,
        clock: Arc<dyn Clock>,
    ) -> Engine {
        let shared = store
            .shared_state()
            .unwrap_or_else(|| Arc::new(MemoryShared::new()));
        Engine {
            cfg,
            store,
            clock,
            shared,
            gate: Arc::new(gate::Gate::new()),
            challenge_lifetime_ms: challenge::lifetime_ms(challenge::DEFAULT_LIFETIME),
            ports: Ports::real(),
            decoy: Arc::new(equal_time::decoy_token(&keys)),
            recent_account: Arc::new(Mutex::new(None)),
            keys,
        }
    }

    /// The engine as the daemon runs it, and `otpd check` too: the two-step login's State
    /// lifetime is RADIUS's setting (the engine knows no protocol, so it is handed over here).
    pub fn for_daemon(
        cfg: Arc<Config>,
        store: Arc<dyn LoginStore>,
        keys: Arc<Keys>,
        clock: Arc<dyn Clock>,
    ) -> Engine {
        let lifetime = cfg.radius.state_lifetime;
        Engine::with_clock(cfg, store, keys, clock).with_challenge_lifetime(lifetime)
    }

    /// The same engine under a new configuration (reload): the store, the keys and the clock
    /// carry over, so nothing a running login depends on is lost.
    pub fn reconfigure(&self, cfg: Arc<Config>) -> Engine {
        Engine {
            cfg,
            store: self.store.clone(),
            keys: self.keys.clone(),
            clock: self.clock.clone(),
            shared: self.shared.clone(),
            gate: self.gate.clone(),
            challenge_lifetime_ms: self.challenge_lifetime_ms,
            ports: self.ports.clone(),
            decoy: self.decoy.clone(),
            recent_account: self.recent_account.clone(),
        }
    }

    /// The same engine on another shared state (tests: two engines as two nodes on one).
    pub fn with_shared(mut self, shared: Arc<dyn SharedStateStore>) -> Engine {
        self.shared = shared;
        self
    }

    pub fn config(&self) -> &Config {
        &self.cfg
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

    /// Runs `run`, which checks requests a front-end had all received before this call, with
    /// the store's account cache brought up to date once for all of them
    /// ([`LoginStore::for_received`]).
    pub fn for_received(&self, run: &mut dyn FnMut()) {
        self.store.for_received(run)
    }

    /// Decides a login, writes the audit record and the log line.
    pub fn check(&self, req: &CheckRequest) -> Decision {
        let d = self.decide(req, &mut Commit::new(CommitMode::Wait));
        self.audit(req, &d);
        d
    }

    /// [`Engine::check`] for a front-end that can answer from another thread: a login whose
    /// only wait would be its counter advance's commit asks the store for
    /// [`CommitMode::Defer`] and comes back [`Checked::Pending`] at once, decided as if the
    /// advance won. The front-end then gives it a [`Responder`] ([`Pending::then`]), which
    /// answers once the outcome is durable; the audit record is written then, with the final
    /// verdict ([`Engine::settle`]).
    pub fn check_deferrable(&self, req: &CheckRequest) -> Checked {
        let mut commit = Commit::new(CommitMode::Defer);
        let d = self.decide(req, &mut commit);
        match commit.ticket {
            None => {
                self.audit(req, &d);
                Checked::Done(d)
            }
            Some(ticket) => Checked::Pending(Pending {
                decision: d,
                ticket,
            }),
        }
    }

    /// The final decision of a [`Checked::Pending`] login once its advance is durable, or
    /// lost to another login that used the code first, or failed; writes its audit record.
    pub fn settle(&self, req: &CheckRequest, d: Decision, outcome: Outcome) -> Decision {
        let d = match outcome {
            Ok(true) => d,
            Ok(false) => lost(d, "code already used".to_string()),
            Err(e) => lost(d, format!("store error: {e}")),
        };
        self.audit(req, &d);
        d
    }

    fn decide(&self, req: &CheckRequest, commit: &mut Commit) -> Decision {
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
        let Some(found) = found else {
            return self.unknown_user(user, class, req);
        };
        let (account, tokens) = &*found;
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
                    Some((account, tokens.as_slice())),
                )
            }
            Requirement::Password => self.not_ours(
                Decision::defer(
                    user,
                    format!("level {}: {class} uses the normal password", account.level),
                ),
                req,
                Some((account, tokens.as_slice())),
            ),
            Requirement::Deny => self.not_ours(
                Decision::deny(
                    user,
                    format!("level {}: {class} is switched off", account.level),
                ),
                req,
                Some((account, tokens.as_slice())),
            ),
            Requirement::AppPassword => self.gated(user, account, tokens, req, |user, pass, _| {
                self.check_app_password(user, account, &class, req, pass)
            }),
            Requirement::Otp => self.gated(user, account, tokens, req, |user, pass, tokens| {
                self.otp_or_trusted(
                    Attempt {
                        user,
                        account,
                        tokens,
                        class: &class,
                        req,
                        pass,
                    },
                    commit,
                )
            }),
        };
        d.class(class)
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
        // Auth rejects a service no class lists, for every user and level; the account step
        // must not let the same login through on the level's `*` cell.
        let Some(class) = self.resolve_class(service, rhost) else {
            return (AccountVerdict::Deny, format!("unknown service `{service}`"));
        };
        let account = match self.store.account(&user) {
            Ok(Some(a)) => a,
            Ok(None) => return (AccountVerdict::Ignore, "unknown user".into()),
            Err(e) => return (AccountVerdict::Deny, format!("store error: {e}")),
        };
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
mod cluster_tests;
#[cfg(test)]
mod login_store_tests;
#[cfg(test)]
pub(crate) mod testkit;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod trusted_tests;

#[cfg(test)]
mod mail_tests;

/// Familiar sources kept per account: the user's home, office, phone network and a few more.
pub(super) const MAX_FAMILIAR_SOURCES: usize = 8;

/// A poisoned lock only means a thread panicked while holding it; a name is still a name.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
