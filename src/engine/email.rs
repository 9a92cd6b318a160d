//! E-mailed codes in the login: the PIN alone sends a fresh code to the account's e-mail
//! token and earns a Challenge (challenge.rs); the code then comes back with the State, or
//! typed after the PIN in one field (mail clients cannot do two steps).
//!
//! The send blocks the calling thread for at most `[email] timeout`; the engine always runs
//! on tokio's blocking pool (or in the CLI), so that is a waiting thread, not a stalled
//! runtime.

use super::Engine;
use crate::model::{Token, TokenKind, TokenState};
use crate::tokens::email::{self, IssueError, Mailer};
use crate::tokens::ports::Validator;
use std::sync::Arc;

/// The longest a State of an e-mail challenge lives: reading mail takes longer than
/// reading a phone, but a half-done login should not linger for the code's whole hour.
const MAX_EMAIL_STATE_MS: i64 = 15 * 60 * 1000;

/// The account's e-mail token that codes go to: the oldest active one. A store error leaves
/// the login to the one-step check, which reports it.
pub(super) fn active_email_token(tokens: &[Token]) -> Option<Token> {
    tokens
        .iter()
        .find(|t| t.kind == TokenKind::Email && t.state == TokenState::Active)
        .cloned()
}

impl Engine {
    /// Sends e-mailed codes with `mailer` instead of SMTP (tests).
    pub fn with_mailer(mut self, mailer: Arc<dyn Mailer>) -> Engine {
        self.ports.mailer = mailer;
        self
    }

    /// Asks `validator` instead of the validation servers of `[yubico]` (tests).
    pub fn with_validator(mut self, validator: Arc<dyn Validator>) -> Engine {
        self.ports.validator = validator;
        self
    }

    /// Sends a fresh code to the token's address; the masked address on success.
    pub(super) fn send_email_code(
        &self,
        user: &str,
        token: &Token,
        now: i64,
    ) -> Result<String, IssueError> {
        let r = email::issue(
            &self.cfg.email,
            self.store.as_ref(),
            &self.keys,
            self.ports.mailer.as_ref(),
            token,
            user,
            now,
        );
        if let Err(e) = &r {
            tracing::warn!(user, serial = %token.serial, "{e}");
        }
        r
    }

    /// How long the State of an e-mail challenge lives: as long as the code, up to 15 min.
    pub(super) fn email_state_lifetime_ms(&self) -> i64 {
        i64::try_from(self.cfg.email.validity.as_millis())
            .unwrap_or(i64::MAX)
            .min(MAX_EMAIL_STATE_MS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::Admin;
    use crate::config::Config;
    use crate::engine::testkit::{self, TestClock};
    use crate::engine::{CheckRequest, Decision, Verdict};
    use crate::model::AuditFilter;
    use crate::store::AdminStore;
    use crate::tokens::email::{Outgoing, SendError};
    use std::sync::Mutex;

    /// Keeps every message; fails with `fail` when set.
    #[derive(Default)]
    struct Recorder {
        sent: Mutex<Vec<(String, String, String)>>,
        fail: Mutex<Option<SendError>>,
    }

    impl Mailer for Recorder {
        fn send(
            &self,
            _cfg: &crate::config::EmailConfig,
            mail: &Outgoing,
        ) -> Result<(), SendError> {
            if let Some(e) = self.fail.lock().expect("lock").clone() {
                return Err(e);
            }
            self.sent.lock().expect("lock").push((
                mail.to.clone(),
                mail.subject.to_string(),
                mail.body.to_string(),
            ));
            Ok(())
        }
    }

    impl Recorder {
        fn count(&self) -> usize {
            self.sent.lock().expect("lock").len()
        }
        /// The code in the last message: its run of digits.
        fn last_code(&self) -> String {
            let sent = self.sent.lock().expect("lock");
            let body = &sent.last().expect("a message").2;
            body.split(|c: char| !c.is_ascii_digit())
                .find(|w| w.len() == 8)
                .expect("8-digit code in the body")
                .to_string()
        }
    }

    const CONF: &str = "[email]\nhost = \"relay.example.org\"\nfrom = \"otpd@example.org\"\n\
                        validity = \"10m\"\nbody = \"code {code} for {user}\"\n";

    struct World {
        engine: Engine,
        admin: Admin,
        clock: Arc<TestClock>,
        mail: Arc<Recorder>,
        store: Arc<dyn AdminStore>,
    }

    impl World {
        fn new(toml: &str) -> World {
            let mut p = testkit::parts(Arc::new(Config::from_toml_str(toml).expect("config")));
            let mail = Arc::new(Recorder::default());
            p.admin.mailer = mail.clone();
            World {
                engine: p.engine.with_mailer(mail.clone()),
                admin: p.admin,
                clock: p.clock,
                mail,
                store: p.store,
            }
        }

        /// alice, PIN 1234, level everywhere, an active e-mail token; returns its serial.
        fn alice(&self) -> String {
            self.admin
                .add_user("alice", Some("1234"), None)
                .expect("user");
            let (t, sent) = self
                .admin
                .add_email("alice", "alice@example.org", String::new(), true)
                .expect("token");
            assert!(sent.is_none(), "--active sends nothing");
            self.admin
                .set_user("alice", None, Some("everywhere"))
                .expect("level");
            t.serial
        }

        fn check(&self, password: &str, state: Option<&str>) -> Decision {
            self.check_in("vpn", password, state)
        }

        fn check_in(&self, service: &str, password: &str, state: Option<&str>) -> Decision {
            self.engine.check(&CheckRequest {
                user: "alice".into(),
                password: password.to_string().into(),
                service: service.into(),
                rhost: Some("192.0.2.7".into()),
                client: Some("pam".into()),
                state: state.map(str::to_string),
                defer_is_reject: false,
                device: Default::default(),
                code_only: false,
            })
        }

        fn advance(&self, secs: i64) {
            self.clock.advance(secs);
        }
    }

    #[test]
    fn pin_alone_sends_a_code_and_the_code_with_the_state_logs_in() {
        let w = World::new(CONF);
        let serial = w.alice();
        // vpn has no challenge_on_pin_only: the e-mail token brings the two steps anyway.
        let d = w.check("1234", None);
        assert_eq!(d.verdict, Verdict::Challenge, "{d:?}");
        assert_eq!(d.message, "A code was sent to a***@example.org; enter it");
        assert!(d.reason.contains("e-mail code sent"), "{d:?}");
        assert_eq!(w.mail.count(), 1);
        let code = w.mail.last_code();
        let sent = w.mail.sent.lock().expect("lock")[0].clone();
        assert_eq!(sent.0, "alice@example.org");
        assert_eq!(sent.2, format!("code {code} for alice"));
        let d = w.check(&code, d.state.as_deref());
        assert_eq!(d.verdict, Verdict::Accept, "{d:?}");
        assert_eq!(d.serial.as_deref(), Some(serial.as_str()));
        assert_eq!(d.reason, "ok: e-mail code used");
        // Never in the audit.
        let audit = w.store.audit(&AuditFilter::default()).expect("audit");
        assert!(audit.iter().all(|r| !r.reason.contains(&code)), "{audit:?}");
    }

    #[test]
    fn pin_and_code_in_one_field_log_in_once() {
        let w = World::new(CONF);
        w.alice();
        assert_eq!(w.check("1234", None).verdict, Verdict::Challenge);
        let code = w.mail.last_code();
        let d = w.check_in("mail", &format!("1234{code}"), None);
        assert_eq!(d.verdict, Verdict::Accept, "{d:?}");
        let d = w.check_in("mail", &format!("1234{code}"), None);
        assert_eq!(d.verdict, Verdict::Reject, "{d:?}");
        assert!(d.reason.contains("already used"), "{d:?}");
    }

    #[test]
    fn a_new_code_replaces_the_old_and_an_expired_one_fails() {
        let w = World::new(CONF);
        w.alice();
        w.check("1234", None);
        let first = w.mail.last_code();
        w.check("1234", None);
        let second = w.mail.last_code();
        assert_ne!(first, second);
        let d = w.check(&format!("1234{first}"), None);
        assert_eq!(d.verdict, Verdict::Reject, "replaced: {d:?}");
        w.advance(601);
        let d = w.check(&format!("1234{second}"), None);
        assert_eq!(d.verdict, Verdict::Reject, "{d:?}");
        assert!(d.reason.contains("e-mail code expired 1 s ago"), "{d:?}");
    }

    #[test]
    fn the_rate_limit_refuses_the_sixth_send_in_the_hour() {
        let w = World::new(CONF);
        let serial = w.alice();
        for _ in 0..5 {
            assert_eq!(w.check("1234", None).verdict, Verdict::Challenge);
        }
        let d = w.check("1234", None);
        assert_eq!(d.verdict, Verdict::Reject, "{d:?}");
        assert!(d.reason.contains("rate limit, 5 codes"), "{d:?}");
        assert_eq!(d.serial.as_deref(), Some(serial.as_str()));
        assert_eq!(w.mail.count(), 5);
        // Not a failure: the PIN was right.
        let acc = w.store.account("alice").expect("store").expect("alice");
        assert_eq!(acc.failures, 0);
        w.advance(3601);
        assert_eq!(w.check("1234", None).verdict, Verdict::Challenge);
    }

    #[test]
    fn a_relay_that_fails_or_no_config_is_a_clear_reject() {
        let w = World::new(CONF);
        w.alice();
        *w.mail.fail.lock().expect("lock") =
            Some(SendError::ConnectionRefused("relay.example.org:587".into()));
        let d = w.check("1234", None);
        assert_eq!(d.verdict, Verdict::Reject, "{d:?}");
        assert_eq!(d.message, crate::engine::messages::REJECT);
        assert_eq!(
            d.reason,
            "e-mail code not sent: connection refused by relay.example.org:587"
        );

        let w = World::new("");
        w.alice();
        let d = w.check("1234", None);
        assert_eq!(d.verdict, Verdict::Reject, "{d:?}");
        assert!(d.reason.contains("[email] is not configured"), "{d:?}");
        let d = w.check("123412345678", None);
        assert!(d.reason.contains("[email] is not configured"), "{d:?}");
    }

    #[test]
    fn parallel_uses_of_one_code_accept_exactly_once() {
        let w = Arc::new(World::new(CONF));
        w.alice();
        w.check("1234", None);
        let code = w.mail.last_code();
        let handles: Vec<_> = (0..16)
            .map(|_| {
                let w = w.clone();
                let pw = format!("1234{code}");
                std::thread::spawn(move || w.check(&pw, None).verdict)
            })
            .collect();
        let accepts = handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .filter(|v| *v == Verdict::Accept)
            .count();
        assert_eq!(accepts, 1);
    }

    #[test]
    fn the_pin_echoed_as_the_answer_is_refused_uncounted() {
        let w = World::new(CONF);
        w.alice();
        let d = w.check_in("mail", "1234", None);
        assert_eq!(d.verdict, Verdict::Challenge);
        let d = w.check_in("mail", "1234", d.state.as_deref());
        assert_eq!(d.verdict, Verdict::Reject);
        assert!(d.reason.contains("not counted"), "{d:?}");
        let acc = w.store.account("alice").expect("store").expect("alice");
        assert_eq!(acc.failures, 0);
    }

    #[test]
    fn a_wrong_pin_sends_nothing_and_counts() {
        let w = World::new(CONF);
        w.alice();
        let d = w.check("9999", None);
        assert_eq!(d.verdict, Verdict::Reject);
        assert_eq!(w.mail.count(), 0);
        let acc = w.store.account("alice").expect("store").expect("alice");
        assert_eq!(acc.failures, 1);
    }

    #[test]
    fn a_pending_token_is_activated_with_the_code_sent_at_enrolment() {
        let w = World::new(CONF);
        w.admin.add_user("bob", Some("1234"), None).expect("user");
        let (t, sent) = w
            .admin
            .add_email("bob", "bob@example.org", String::new(), false)
            .expect("token");
        assert_eq!(sent.as_deref(), Some("b***@example.org"));
        assert_eq!(t.state, TokenState::Pending);
        assert_eq!(t.digits, 8);
        let code = w.mail.last_code();
        let e = w.admin.activate(&t.serial, "00000000").expect_err("wrong");
        assert!(e.to_string().contains("stays pending"), "{e}");
        let t = w.admin.activate(&t.serial, &code).expect("activate");
        assert_eq!(t.state, TokenState::Active);
        assert!(w.admin.activate(&t.serial, &code).is_err());

        // A relay that is down at enrolment leaves nothing behind.
        *w.mail.fail.lock().expect("lock") = Some(SendError::Other("down".into()));
        let e = w
            .admin
            .add_email("bob", "bob2@example.org", String::new(), false)
            .expect_err("not sent");
        assert!(e.to_string().contains("nothing was stored"), "{e}");
        assert_eq!(w.store.tokens(Some("bob")).expect("tokens").len(), 1);
    }
}
