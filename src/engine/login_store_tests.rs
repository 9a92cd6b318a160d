//! The engine holds the login side of the store and nothing else. These tests drive it over
//! a store that implements `LoginStore` alone: it has no `AdminStore` (nor audit or status)
//! methods, so `Engine::with_clock` accepting it is the compile-time proof. Its deferred
//! advances resolve their tickets when the test says so, as a second store implementation
//! (PostgreSQL, issue 17) might: the engine's deferred path needs nothing of SQLite.

use super::testkit::{self, oath_token, SECRET};
use super::{CheckRequest, Checked, Decision, Engine, Responder, Verdict};
use crate::config::Config;
use crate::model::{Account, AppPassword, AuditRecord, BackupCode, EmailCode, TokenKind};
use crate::store::ticket::{ticket, Resolver};
use crate::store::{AdminStore, Advance, CommitMode, Found, LoginStore, StoreResult};
use crate::tokens::oath::{hotp, Algorithm};
use std::sync::{Arc, Mutex};

/// A held advance: token id, counter, drift, now, activate.
type Held = (i64, i64, i64, i64, bool);

/// A login store and nothing more, over another store's rows.
struct LoginOnly {
    rows: Arc<dyn AdminStore>,
    /// Deferred advances, not yet written, with their tickets' resolvers.
    held: Mutex<Vec<(Resolver, Held)>>,
}

impl LoginOnly {
    /// Writes the held advances in order, each resolving its ticket with what it did.
    fn resolve_all(&self) -> usize {
        let held: Vec<_> = std::mem::take(&mut *self.held.lock().expect("held"));
        let n = held.len();
        for (r, (token_id, counter, drift, now, activate)) in held {
            let done = self.rows.advance_counter(
                token_id,
                counter,
                drift,
                now,
                activate,
                CommitMode::Wait,
            );
            r.resolve(match done {
                Ok(Advance::Durable(won)) => Ok(won),
                Ok(Advance::Pending(_)) => panic!("a waited advance came back pending"),
                Err(e) => Err(e),
            });
        }
        n
    }
}

impl LoginStore for LoginOnly {
    fn account(&self, name: &str) -> StoreResult<Option<Account>> {
        self.rows.account(name)
    }
    fn account_with_tokens(&self, name: &str) -> StoreResult<Option<Found>> {
        self.rows.account_with_tokens(name)
    }
    fn record_failure(&self, id: i64, now: i64, lock_at: u32, until: i64) -> StoreResult<u32> {
        self.rows.record_failure(id, now, lock_at, until)
    }
    fn clear_failures(&self, account_id: i64) -> StoreResult<()> {
        self.rows.clear_failures(account_id)
    }
    fn set_familiar_sources(&self, account_id: i64, sources: &[String]) -> StoreResult<()> {
        self.rows.set_familiar_sources(account_id, sources)
    }
    fn record_uncounted(&self, account_id: Option<i64>, now: i64) -> StoreResult<()> {
        self.rows.record_uncounted(account_id, now)
    }
    fn advance_counter(
        &self,
        token_id: i64,
        counter: i64,
        drift: i64,
        now: i64,
        activate: bool,
        mode: CommitMode,
    ) -> StoreResult<Advance> {
        if mode == CommitMode::Wait {
            return self
                .rows
                .advance_counter(token_id, counter, drift, now, activate, mode);
        }
        let (t, r) = ticket();
        self.held
            .lock()
            .expect("held")
            .push((r, (token_id, counter, drift, now, activate)));
        Ok(Advance::Pending(t))
    }
    fn mark_token_used(&self, token_id: i64, now: i64, activate: bool) -> StoreResult<()> {
        self.rows.mark_token_used(token_id, now, activate)
    }
    fn backup_codes(&self, token_id: i64) -> StoreResult<Vec<BackupCode>> {
        self.rows.backup_codes(token_id)
    }
    fn use_backup_code(&self, token_id: i64, code_id: i64, now: i64) -> StoreResult<bool> {
        self.rows.use_backup_code(token_id, code_id, now)
    }
    fn backup_code_counts(&self, token_id: i64) -> StoreResult<(u32, u32)> {
        self.rows.backup_code_counts(token_id)
    }
    fn take_email_send(&self, id: i64, now: i64, since: i64, max: u32) -> StoreResult<bool> {
        self.rows.take_email_send(id, now, since, max)
    }
    fn replace_email_code(
        &self,
        token_id: i64,
        salt: &[u8],
        hash: &[u8],
        now: i64,
        expires_at: i64,
    ) -> StoreResult<()> {
        self.rows
            .replace_email_code(token_id, salt, hash, now, expires_at)
    }
    fn email_code(&self, token_id: i64) -> StoreResult<Option<EmailCode>> {
        self.rows.email_code(token_id)
    }
    fn use_email_code(&self, id: i64, code: i64, now: i64, activate: bool) -> StoreResult<bool> {
        self.rows.use_email_code(id, code, now, activate)
    }
    fn app_passwords(&self, account_id: i64) -> StoreResult<Vec<AppPassword>> {
        self.rows.app_passwords(account_id)
    }
    fn touch_app_password(&self, id: i64, now: i64, from: Option<&str>) -> StoreResult<()> {
        self.rows.touch_app_password(id, now, from)
    }
    fn append_audit(&self, rec: AuditRecord) -> StoreResult<()> {
        self.rows.append_audit(rec)
    }
}

/// An engine over a [`LoginOnly`] store, alice (PIN 1234) with an active HOTP token set up
/// through the admin on the rows beneath it.
fn world() -> (Engine, Arc<LoginOnly>, Arc<dyn AdminStore>) {
    let p = testkit::parts(Arc::new(Config::default().finish().expect("config")));
    p.admin
        .add_user("alice", Some("1234"), None)
        .expect("add user");
    p.admin
        .add_token("alice", oath_token(TokenKind::Hotp, true))
        .expect("add token");
    p.admin
        .set_user("alice", None, Some("everywhere"))
        .expect("level");
    let login = Arc::new(LoginOnly {
        rows: p.store.clone(),
        held: Mutex::new(Vec::new()),
    });
    let engine = Engine::with_clock(
        Arc::new(Config::default().finish().expect("config")),
        login.clone(),
        p.keys,
        p.clock,
    );
    (engine, login, p.store)
}

fn req(password: String) -> CheckRequest {
    CheckRequest {
        user: "alice".into(),
        password: password.into(),
        service: "vpn".into(),
        defer_is_reject: true,
        device: Default::default(),
        ..CheckRequest::default()
    }
}

fn code(counter: u64) -> String {
    format!("1234{}", hotp(Algorithm::Sha1, SECRET, counter, 6))
}

#[test]
fn an_engine_over_a_login_only_store_accepts_once() {
    let (engine, _login, rows) = world();
    let d = engine.check(&req(code(0)));
    assert_eq!(d.verdict, Verdict::Accept, "{d:?}");
    // Read back through the login store: the counter moved, so the replay does not match.
    let d = engine.check(&req(code(0)));
    assert_eq!(d.verdict, Verdict::Reject, "{d:?}");
    assert!(d.reason.starts_with("wrong or used code"), "{d:?}");
    let audit = rows.audit(&Default::default()).expect("audit");
    assert_eq!(
        audit.len(),
        2,
        "each login wrote its record through the login store"
    );
}

/// Records the final decision a deferred login's responder got.
struct Answered(Arc<Mutex<Option<Decision>>>);

impl Responder for Answered {
    fn respond(self, d: &Decision) {
        *self.0.lock().expect("answer") = Some(d.clone());
    }
}

#[test]
fn a_deferred_login_answers_only_when_the_stores_ticket_resolves() {
    let (engine, login, rows) = world();
    let engine = Arc::new(engine);
    let first = engine.check_deferrable(&req(code(1)));
    let Checked::Pending(pending) = first else {
        panic!("an advance deferred by the store leaves the login pending");
    };
    // The same code again before the first is written: it matches, and is deferred too.
    let Checked::Pending(replay) = engine.check_deferrable(&req(code(1))) else {
        panic!("the replay's advance is deferred too");
    };
    let (a, b) = (Arc::new(Mutex::new(None)), Arc::new(Mutex::new(None)));
    pending.then(engine.clone(), req(code(1)), Answered(a.clone()));
    replay.then(engine.clone(), req(code(1)), Answered(b.clone()));
    assert!(
        a.lock().expect("a").is_none(),
        "nothing answered before the ticket resolves"
    );
    assert!(rows.audit(&Default::default()).expect("audit").is_empty());
    assert_eq!(login.resolve_all(), 2);
    let a = a.lock().expect("a").clone().expect("answered");
    let b = b.lock().expect("b").clone().expect("answered");
    assert_eq!(a.verdict, Verdict::Accept, "{a:?}");
    assert_eq!(
        (b.verdict, b.reason.as_str()),
        (Verdict::Reject, "code already used")
    );
    let audit = rows.audit(&Default::default()).expect("audit");
    let verdicts: Vec<_> = audit.iter().map(|r| r.verdict.as_str()).collect();
    assert_eq!(
        verdicts,
        ["accept", "reject"],
        "audited with the final verdicts"
    );
}
