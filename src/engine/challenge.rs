//! Two-step login. In a class with `challenge_on_pin_only`, a password that is the PIN alone
//! earns a Challenge with a fresh random State; the next request that carries the State
//! brings the code alone. VPN clients with a separate "one-time code" prompt work this way
//! (RADIUS Access-Challenge), and so can the socket front-end and e-mailed codes.
//!
//! The State is 128 random bits, bound to the user, the client and the class, used at most
//! once, and valid for a limited time. Open States are shared state (store/shared/): in this
//! process's memory on a single host (a restart ends every half-done login, which costs the
//! user one more PIN prompt and nothing else), in the database with several nodes, so the
//! second step may reach another node than the first. The store knows a State only by a
//! keyed hash of it and the PIN only sealed: the database alone can neither answer a
//! challenge nor reveal the PIN.

use super::email::active_email_token;
use super::{Attempt, CheckRequest, Commit, Decision, Engine};
use crate::crypto;
use crate::store::shared::{self, Challenge};
use std::time::Duration;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// How long a State is valid unless the caller sets another lifetime.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(120);
/// What the user is asked for after the PIN alone.
pub const CODE_PROMPT: &str = "Enter your one-time code";
/// Open States per user: a few parallel logins (two VPN tunnels) work; someone who knows a
/// PIN cannot fill the table with that account alone.
const MAX_OPEN_PER_USER: usize = 4;
const STATE_BYTES: usize = 16;
/// The label of the sub-key that names States in the store.
const STATE_LABEL: &[u8] = b"otpd v1 challenge state";

/// The associated data of a State's sealed PIN: the PIN opens only with its own State.
fn pin_aad(key: &shared::Key) -> Vec<u8> {
    let mut aad = b"otpd challenge pin ".to_vec();
    aad.extend_from_slice(key);
    aad
}

pub(super) fn lifetime_ms(lifetime: Duration) -> i64 {
    i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX)
}

/// An open State taken from the store, its PIN unsealed.
struct Taken {
    c: Challenge,
    pin: Zeroizing<String>,
}

impl Engine {
    fn state_key(&self, state: &str) -> shared::Key {
        self.keys.shared_name(STATE_LABEL, &[state.as_bytes()])
    }

    fn issue_challenge(
        &self,
        now_ms: i64,
        user: &str,
        req: &CheckRequest,
        class: &str,
        lifetime_ms: i64,
    ) -> Result<String, String> {
        let mut bytes = [0u8; STATE_BYTES];
        crypto::fill_random(&mut bytes).map_err(|_| "no randomness for a challenge state")?;
        let state = data_encoding::HEXLOWER.encode(&bytes);
        let key = self.state_key(&state);
        let sealed_pin = self
            .keys
            .seal(&pin_aad(&key), req.password.as_bytes())
            .map_err(|e| format!("challenge state not sealed: {e}"))?;
        let c = Challenge {
            user: user.to_string(),
            client: req.client.clone(),
            class: class.to_string(),
            sealed_pin,
            expires_ms: now_ms.saturating_add(lifetime_ms),
        };
        match self
            .shared
            .put_challenge(&key, &c, now_ms, MAX_OPEN_PER_USER)
        {
            Ok(true) => Ok(state),
            Ok(false) => Err("too many open challenges".to_string()),
            Err(e) => Err(format!("store error: {e}")),
        }
    }

    /// Removes the State whatever comes next: a State is spent by being shown once, also by
    /// the wrong user, and on whichever node it is shown.
    fn take_challenge(&self, now_ms: i64, state: &str) -> Result<Taken, String> {
        let key = self.state_key(state);
        let c = match self.shared.take_challenge(&key) {
            Ok(Some(c)) => c,
            Ok(None) => return Err("unknown or already used challenge state".to_string()),
            Err(e) => return Err(format!("store error: {e}")),
        };
        if c.expires_ms <= now_ms {
            return Err("challenge state expired".to_string());
        }
        let pin = self
            .keys
            .open(&pin_aad(&key), &c.sealed_pin)
            .map_err(|e| format!("challenge state: {e}"))?;
        let pin = String::from_utf8(pin.to_vec())
            .map(Zeroizing::new)
            .map_err(|_| "challenge state holds a bad value".to_string())?;
        Ok(Taken { c, pin })
    }
}

impl Engine {
    /// Sets how long a two-step login's State stays valid (default 120 s). The front-end
    /// that offers challenges passes its setting here; the engine itself knows no protocol.
    pub fn with_challenge_lifetime(mut self, lifetime: Duration) -> Engine {
        self.challenge_lifetime_ms = lifetime_ms(lifetime);
        self
    }

    /// The OTP requirement with the two-step login around the one-step check.
    pub(super) fn check_otp_two_step(&self, a: Attempt<'_>, commit: &mut Commit) -> Decision {
        if a.req.state.is_some() {
            return self.continue_challenge(a, commit);
        }
        let two_step = self
            .cfg
            .services
            .get(a.class)
            .is_some_and(|s| s.challenge_on_pin_only);
        // The PIN alone is the only way to ask for an e-mailed code, so an account with an
        // e-mail token gets the two-step login in every class that asks for OTP.
        let email = active_email_token(a.tokens);
        // A code-only client's empty password asks for a challenge in every OTP class (the
        // HTTP front-end's /validate/triggerchallenge, privacyIDEA's way to start a login).
        let trigger = a.req.code_only && a.req.password.is_empty();
        if !two_step && email.is_none() && !trigger {
            return self.check_otp(a, commit);
        }
        // A locked, throttled or blocked attempt never gets here (the gate, engine/mod.rs):
        // the PIN alone is looked at, and mail sent, only for an attempt that holds a slot.
        let now_ms = self.clock.now_ms();
        let now = now_ms.div_euclid(1000);
        // A code-only client checked the user's own password: its empty password stands for
        // the PIN alone (it asks for the e-mailed code).
        let pin_alone = match (&a.account.pin_salt, &a.account.pin_hash) {
            _ if a.req.code_only => a.req.password.is_empty(),
            (Some(salt), Some(hash)) => {
                self.keys.verify_hash(salt, a.req.password.as_bytes(), hash)
            }
            _ => false,
        };
        if !pin_alone {
            // A wrong PIN alone is a counted failure like any wrong password.
            return self.check_otp(a, commit);
        }
        // The PIN was right and nothing more is looked at: the slot goes back uncounted.
        let Attempt {
            user, class, req, ..
        } = a;
        let mut lifetime_ms = self.challenge_lifetime_ms;
        let (message, reason, serial) = match &email {
            None => (
                CODE_PROMPT.to_string(),
                "PIN correct; code asked".to_string(),
                None,
            ),
            Some(token) => match self.send_email_code(&user, token, now) {
                Ok(to) => {
                    lifetime_ms = lifetime_ms.max(self.email_state_lifetime_ms());
                    (
                        format!("A code was sent to {to}; enter it"),
                        format!("PIN correct; e-mail code sent to {to}"),
                        Some(token.serial.clone()),
                    )
                }
                // Not counted as a failure: the PIN was right, the relay or the limit said no.
                Err(e) => {
                    return Decision::reject(user, e.to_string()).serial(token.serial.clone())
                }
            },
        };
        match self.issue_challenge(now_ms, &user, req, class, lifetime_ms) {
            Ok(state) => {
                let d = Decision::challenge(user, &message, state, &reason);
                match serial {
                    Some(s) => d.serial(s),
                    None => d,
                }
            }
            Err(why) => Decision::reject(user, why),
        }
    }

    /// The second step: the State must be open, unexpired and issued to this user, client
    /// and class; then the code is checked as if the PIN had been typed in front of it.
    fn continue_challenge(&self, a: Attempt<'_>, commit: &mut Commit) -> Decision {
        let req = a.req;
        let state = req.state.as_deref().unwrap_or_default();
        let Taken { c: p, pin } = match self.take_challenge(self.clock.now_ms(), state) {
            Ok(t) => t,
            Err(why) => return Decision::reject(a.user, why),
        };
        if p.user != a.user || p.client.as_deref() != req.client.as_deref() || p.class != a.class {
            return Decision::reject(a.user, "challenge state issued to another login");
        }
        // Dovecot (and other PAM callers) answer every prompt with the password typed at the
        // start: an answer that is the PIN again is a client echoing, not a guess at a code.
        // Refused without counting, so a mail client that asks for an e-mailed code with the
        // PIN alone does not creep towards the lockout.
        if bool::from(pin.as_bytes().ct_eq(req.password.as_bytes())) {
            return Decision::reject(
                a.user,
                "challenge answered with the PIN again (a client repeating the password); not counted",
            );
        }
        let mut password = Zeroizing::new(String::with_capacity(pin.len() + req.password.len()));
        password.push_str(&pin);
        password.push_str(&req.password);
        let second = CheckRequest {
            password,
            state: None,
            // A challenge a code-only client started holds no PIN: the answer is the code.
            code_only: req.code_only || pin.is_empty(),
            ..req.clone()
        };
        self.check_otp(Attempt { req: &second, ..a }, commit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::engine::testkit::{self, oath_token, TestClock, SECRET};
    use crate::engine::Verdict;
    use crate::model::TokenKind;
    use crate::store::MemoryShared;
    use crate::tokens::oath::{hotp, Algorithm};
    use std::sync::Arc;

    struct World {
        engine: Engine,
        clock: Arc<TestClock>,
        shared: Arc<MemoryShared>,
    }

    impl World {
        fn new(two_step: bool) -> World {
            let mut cfg = Config::default().finish().expect("config");
            if let Some(vpn) = cfg.services.get_mut("vpn") {
                vpn.challenge_on_pin_only = two_step;
            }
            let p = testkit::parts(Arc::new(cfg));
            for user in ["alice", "bob"] {
                p.admin.add_user(user, Some("1234"), None).expect("user");
                p.admin
                    .add_token(user, oath_token(TokenKind::Hotp, true))
                    .expect("token");
                p.admin
                    .set_user(user, None, Some("everywhere"))
                    .expect("level");
            }
            let shared = Arc::new(MemoryShared::new());
            World {
                engine: p
                    .engine
                    .with_challenge_lifetime(Duration::from_secs(60))
                    .with_shared(shared.clone()),
                clock: p.clock,
                shared,
            }
        }

        fn check(&self, user: &str, password: &str, client: &str, state: Option<&str>) -> Decision {
            self.engine.check(&CheckRequest {
                user: user.into(),
                password: password.to_string().into(),
                service: "vpn".into(),
                rhost: None,
                client: Some(client.into()),
                state: state.map(str::to_string),
                defer_is_reject: false,
                device: Default::default(),
                code_only: false,
            })
        }

        fn code(counter: u64) -> String {
            hotp(Algorithm::Sha1, SECRET, counter, 6)
        }
    }

    #[test]
    fn pin_alone_then_code_with_state() {
        let w = World::new(true);
        let d = w.check("alice", "1234", "nas", None);
        assert_eq!(d.verdict, Verdict::Challenge, "{d:?}");
        assert_eq!(d.message, CODE_PROMPT);
        let state = d.state.expect("state");
        assert_eq!(state.len(), 2 * STATE_BYTES);
        let d = w.check("alice", &World::code(0), "nas", Some(&state));
        assert_eq!(d.verdict, Verdict::Accept, "{d:?}");
        // Single use: the same State again, even with the next valid code, is refused.
        let d = w.check("alice", &World::code(1), "nas", Some(&state));
        assert_eq!(d.verdict, Verdict::Reject, "{d:?}");
        assert!(d.reason.contains("unknown or already used"), "{d:?}");
    }

    #[test]
    fn one_step_login_still_works_in_a_two_step_class() {
        let w = World::new(true);
        let d = w.check("alice", &format!("1234{}", World::code(0)), "nas", None);
        assert_eq!(d.verdict, Verdict::Accept, "{d:?}");
    }

    #[test]
    fn pin_alone_is_a_reject_without_the_setting() {
        let w = World::new(false);
        let d = w.check("alice", "1234", "nas", None);
        assert_eq!(d.verdict, Verdict::Reject, "{d:?}");
        assert!(d.state.is_none());
    }

    #[test]
    fn wrong_pin_gets_no_challenge() {
        let w = World::new(true);
        let d = w.check("alice", "4321", "nas", None);
        assert_eq!(d.verdict, Verdict::Reject, "{d:?}");
        assert_eq!(w.shared.sizes().0, 0);
    }

    #[test]
    fn state_is_bound_to_user_and_client() {
        let w = World::new(true);
        let s = w.check("alice", "1234", "nas", None).state.expect("state");
        let d = w.check("bob", &World::code(0), "nas", Some(&s));
        assert_eq!(d.verdict, Verdict::Reject, "foreign user: {d:?}");
        // Shown once to the wrong user, the State is spent for alice too.
        let d = w.check("alice", &World::code(0), "nas", Some(&s));
        assert_eq!(d.verdict, Verdict::Reject, "spent: {d:?}");

        let s = w.check("alice", "1234", "nas", None).state.expect("state");
        let d = w.check("alice", &World::code(0), "other-nas", Some(&s));
        assert_eq!(d.verdict, Verdict::Reject, "foreign client: {d:?}");
        assert!(d.reason.contains("another login"), "{d:?}");
    }

    #[test]
    fn state_expires() {
        let w = World::new(true);
        let s = w.check("alice", "1234", "nas", None).state.expect("state");
        w.clock.advance(61);
        let d = w.check("alice", &World::code(0), "nas", Some(&s));
        assert_eq!(d.verdict, Verdict::Reject, "{d:?}");
        assert!(d.reason.contains("expired"), "{d:?}");
    }

    #[test]
    fn wrong_code_after_state_is_a_counted_failure() {
        let w = World::new(true);
        let s = w.check("alice", "1234", "nas", None).state.expect("state");
        let d = w.check("alice", "000000", "nas", Some(&s));
        assert_eq!(d.verdict, Verdict::Reject, "{d:?}");
        assert!(d.reason.contains("1 failures"), "{d:?}");
        let d = w.check("alice", "1234", "nas", Some("00112233"));
        assert_eq!(d.verdict, Verdict::Reject, "made-up state: {d:?}");
    }

    #[test]
    fn open_states_per_user_are_bounded() {
        let w = World::new(true);
        let first = w.check("alice", "1234", "nas", None).state.expect("state");
        for _ in 0..10 {
            assert_eq!(
                w.check("alice", "1234", "nas", None).verdict,
                Verdict::Challenge
            );
        }
        assert_eq!(w.shared.sizes().0, MAX_OPEN_PER_USER);
        let d = w.check("alice", &World::code(0), "nas", Some(&first));
        assert_eq!(d.verdict, Verdict::Reject, "oldest was dropped: {d:?}");
    }
}
