use super::testkit::{self, oath_token, TestClock, SECRET};
use super::*;
use crate::admin::{Admin, TokenOptions};
use crate::config::{Config, UnknownUser};
use crate::model::{TokenKind, TokenState};
use crate::store::{AdminStore, SqliteStore};
use crate::tokens::oath::{hotp, Algorithm};

struct World {
    engine: Engine,
    admin: Admin,
    clock: Arc<TestClock>,
}

impl World {
    fn new(cfg: Config) -> World {
        World::with_store(cfg, Arc::new(SqliteStore::open_in_memory().expect("store")))
    }

    fn with_store(cfg: Config, store: Arc<dyn AdminStore>) -> World {
        let p = testkit::parts_with_store(Arc::new(cfg.finish().expect("config")), store);
        World {
            engine: p.engine,
            admin: p.admin,
            clock: p.clock,
        }
    }

    fn now(&self) -> i64 {
        self.clock.now_s()
    }

    fn advance(&self, secs: i64) {
        self.clock.advance(secs);
    }

    /// alice, PIN 1234, one active token, level everywhere.
    fn alice(&self, kind: TokenKind) -> String {
        self.admin
            .add_user("alice", Some("1234"), None)
            .expect("add user");
        let e = self
            .admin
            .add_token("alice", opts(kind, true))
            .expect("add token");
        self.admin
            .set_user("alice", None, Some("everywhere"))
            .expect("level");
        e.token.serial
    }

    fn totp_now(&self, offset_steps: i64) -> String {
        let step = (self.now() / 30 + offset_steps) as u64;
        hotp(Algorithm::Sha1, SECRET, step, 6)
    }

    fn check(&self, user: &str, service: &str, password: &str) -> Decision {
        self.engine.check(&CheckRequest {
            user: user.into(),
            password: password.to_string().into(),
            service: service.into(),
            rhost: None,
            client: Some("test".into()),
            state: None,
            defer_is_reject: false,
            device: Default::default(),
            code_only: false,
        })
    }
}

fn opts(kind: TokenKind, active: bool) -> TokenOptions {
    oath_token(kind, active)
}

/// A second token of one account may not share [`SECRET`] with the first (issue 14: two
/// tokens with one secret would accept each code twice), so it gets this one.
const SECRET2: &[u8] = b"abcdefghijabcdefghij";

fn opts2(kind: TokenKind, active: bool) -> TokenOptions {
    let mut o = oath_token(kind, active);
    o.secret_b32 = Some(data_encoding::BASE32_NOPAD.encode(SECRET2).into());
    o
}

#[test]
fn totp_accepts_once_and_rejects_replay() {
    let w = World::new(Config::default());
    let serial = w.alice(TokenKind::Totp);
    let pw = format!("1234{}", w.totp_now(0));
    let d = w.check("alice", "vpn", &pw);
    assert_eq!(d.verdict, Verdict::Accept, "{d:?}");
    assert_eq!(d.serial.as_deref(), Some(serial.as_str()));
    let d = w.check("alice", "vpn", &pw);
    assert_eq!(d.verdict, Verdict::Reject, "replay: {d:?}");
}

#[test]
fn totp_window_is_one_step_each_side() {
    let w = World::new(Config::default());
    w.alice(TokenKind::Totp);
    assert_eq!(
        w.check("alice", "vpn", &format!("1234{}", w.totp_now(-2)))
            .verdict,
        Verdict::Reject
    );
    assert_eq!(
        w.check("alice", "vpn", &format!("1234{}", w.totp_now(-1)))
            .verdict,
        Verdict::Accept
    );
    // A code behind the last used step is refused even inside the window.
    w.advance(30);
    assert_eq!(
        w.check("alice", "vpn", &format!("1234{}", w.totp_now(-2)))
            .verdict,
        Verdict::Reject
    );
    // The device was one step behind: the remembered drift of -1 centres the window there,
    // so one step ahead of the server is now two steps from what is expected.
    assert_eq!(
        w.check("alice", "vpn", &format!("1234{}", w.totp_now(1)))
            .verdict,
        Verdict::Reject
    );
    assert_eq!(
        w.check("alice", "vpn", &format!("1234{}", w.totp_now(0)))
            .verdict,
        Verdict::Accept
    );
}

#[test]
fn totp_drift_is_remembered_and_capped() {
    let mut cfg = Config::default();
    cfg.totp.max_drift = 2;
    let w = World::new(cfg);
    let serial = w.alice(TokenKind::Totp);
    // A device running one step ahead, login after login, walks the drift forward...
    for i in 1..=5 {
        w.advance(30);
        let ahead = w.admin.token(&serial).expect("token").drift + 1;
        let d = w.check("alice", "vpn", &format!("1234{}", w.totp_now(ahead)));
        assert_eq!(d.verdict, Verdict::Accept, "login {i}: {d:?}");
    }
    // ...but never past max_drift.
    assert_eq!(w.admin.token(&serial).expect("token").drift, 2);
    w.advance(30);
    let d = w.check("alice", "vpn", &format!("1234{}", w.totp_now(4)));
    assert_eq!(
        d.verdict,
        Verdict::Reject,
        "4 steps ahead with cap 2: {d:?}"
    );
}

#[test]
fn hotp_look_ahead_window() {
    let w = World::new(Config::default());
    w.alice(TokenKind::Hotp);
    // counter 10 is outside the default window of 10 after "never used" (0..=9).
    let far = hotp(Algorithm::Sha1, SECRET, 10, 6);
    assert_eq!(
        w.check("alice", "vpn", &format!("1234{far}")).verdict,
        Verdict::Reject
    );
    let near = hotp(Algorithm::Sha1, SECRET, 9, 6);
    assert_eq!(
        w.check("alice", "vpn", &format!("1234{near}")).verdict,
        Verdict::Accept
    );
    let older = hotp(Algorithm::Sha1, SECRET, 5, 6);
    assert_eq!(
        w.check("alice", "vpn", &format!("1234{older}")).verdict,
        Verdict::Reject
    );
    assert_eq!(
        w.check("alice", "vpn", &format!("1234{far}")).verdict,
        Verdict::Accept
    );
}

#[test]
fn wrong_pin_wrong_code_unknown_user_look_the_same() {
    let w = World::new(Config {
        unknown_user: UnknownUser::Reject,
        ..Config::default()
    });
    w.alice(TokenKind::Hotp);
    let good = hotp(Algorithm::Sha1, SECRET, 0, 6);
    let bad_pin = w.check("alice", "vpn", &format!("9999{good}"));
    let bad_code = w.check("alice", "vpn", "1234000000");
    let unknown = w.check("mallory", "vpn", &format!("1234{good}"));
    for d in [&bad_pin, &bad_code, &unknown] {
        assert_eq!(d.verdict, Verdict::Reject, "{d:?}");
        assert_eq!(d.message, messages::REJECT);
        assert_eq!(d.serial, None);
    }
    assert!(bad_pin.reason.contains("wrong PIN"), "{bad_pin:?}");
    assert!(
        bad_code.reason.contains("wrong or used code"),
        "{bad_code:?}"
    );
    assert_eq!(unknown.reason, "unknown user");
}

#[test]
fn unknown_users_read_a_known_account_but_never_touch_it() {
    let w = World::new(Config {
        unknown_user: UnknownUser::Reject,
        ..Config::default()
    });
    w.alice(TokenKind::Hotp);
    let good = hotp(Algorithm::Sha1, SECRET, 0, 6);
    // Alice becomes the account whose rows unknown users' logins read.
    assert_eq!(
        w.check("alice", "vpn", "1234000000").verdict,
        Verdict::Reject
    );
    let before = w
        .admin
        .store
        .account("alice")
        .expect("read")
        .expect("alice");
    for name in ["mallory", "eve", "trudy"] {
        let d = w.check(name, "vpn", &format!("1234{good}"));
        assert_eq!(d.verdict, Verdict::Reject, "{d:?}");
        assert_eq!(d.reason, "unknown user");
        assert_eq!(d.serial, None, "no serial of alice's token: {d:?}");
    }
    let after = w
        .admin
        .store
        .account("alice")
        .expect("read")
        .expect("alice");
    assert_eq!(
        after.failures, before.failures,
        "alice's failures untouched"
    );
    // Her code was neither used nor burned by the unknown users' logins.
    assert_eq!(
        w.check("alice", "vpn", &format!("1234{good}")).verdict,
        Verdict::Accept
    );
}

#[test]
fn unknown_user_defers_by_default() {
    let w = World::new(Config::default());
    assert_eq!(w.check("nobody", "mail", "x").verdict, Verdict::Defer);
}

#[test]
fn pending_and_disabled_tokens_match_nothing() {
    let w = World::new(Config::default());
    w.admin.add_user("bob", Some("1234"), None).expect("user");
    let pending = w
        .admin
        .add_token("bob", opts2(TokenKind::Hotp, false))
        .expect("token");
    // Level needing OTP is refused while the only token is pending.
    assert!(w.admin.set_user("bob", None, Some("everywhere")).is_err());
    let other = w
        .admin
        .add_token("bob", opts(TokenKind::Totp, true))
        .expect("token");
    w.admin
        .set_user("bob", None, Some("everywhere"))
        .expect("level");
    let hotp0 = hotp(Algorithm::Sha1, SECRET2, 0, 6);
    let d = w.check("bob", "vpn", &format!("1234{hotp0}"));
    assert_eq!(d.verdict, Verdict::Reject, "pending token matched: {d:?}");
    // Activation consumes a code; afterwards the next one works.
    w.admin
        .activate(&pending.token.serial, &hotp(Algorithm::Sha1, SECRET2, 1, 6))
        .expect("activate");
    let d = w.check(
        "bob",
        "vpn",
        &format!("1234{}", hotp(Algorithm::Sha1, SECRET2, 2, 6)),
    );
    assert_eq!(d.verdict, Verdict::Accept, "{d:?}");
    assert_eq!(d.serial.as_deref(), Some(pending.token.serial.as_str()));
    // A disabled token matches nothing either.
    w.admin
        .set_token_state(&other.token.serial, TokenState::Disabled)
        .expect("disable");
    w.advance(30);
    let d = w.check("bob", "vpn", &format!("1234{}", w.totp_now(0)));
    assert_eq!(d.verdict, Verdict::Reject, "disabled token matched: {d:?}");
}

#[test]
fn levels_by_service_class() {
    let w = World::new(Config::default());
    w.alice(TokenKind::Totp);
    let cases = [
        ("off", "mail", Verdict::Defer),
        ("web-otp", "mail", Verdict::Defer),
        ("web-otp", "ssh", Verdict::Defer),
        ("web-only", "mail", Verdict::Deny),
        ("web-only", "vpn", Verdict::Deny),
        ("everywhere", "mail", Verdict::Reject),
    ];
    for (level, class, want) in cases {
        w.admin.set_user("alice", None, Some(level)).expect("level");
        let d = w.check("alice", class, "1234000000");
        assert_eq!(d.verdict, want, "{level}/{class}: {d:?}");
    }
    w.admin
        .set_user("alice", None, Some("web-otp"))
        .expect("level");
    let d = w.check("alice", "web", &format!("1234{}", w.totp_now(0)));
    assert_eq!(d.verdict, Verdict::Accept, "web-otp/web: {d:?}");
    // PAM service names map to classes.
    w.admin
        .set_user("alice", None, Some("web-only"))
        .expect("level");
    assert_eq!(w.check("alice", "imap", "x").verdict, Verdict::Deny);
    assert_eq!(w.check("alice", "sshd", "x").verdict, Verdict::Deny);
    assert_eq!(
        w.check("alice", "no-such-service", "x").verdict,
        Verdict::Reject
    );
    assert_eq!(
        w.engine.account_check("alice", "imap", None).0,
        AccountVerdict::Deny
    );
    assert_eq!(
        w.engine.account_check("alice", "roundcube", None).0,
        AccountVerdict::Allow
    );
    assert_eq!(
        w.engine.account_check("nobody", "imap", None).0,
        AccountVerdict::Ignore
    );
}

#[test]
fn failures_throttle_then_lock_then_clear() {
    let mut cfg = Config::default();
    cfg.lockout.free_failures = 2;
    cfg.lockout.max_failures = 4;
    cfg.lockout.delay = std::time::Duration::from_secs(5);
    cfg.lockout.max_delay = std::time::Duration::from_secs(60);
    cfg.lockout.lock_duration = std::time::Duration::from_secs(600);
    let w = World::new(cfg);
    w.alice(TokenKind::Hotp);
    let code = |c| format!("1234{}", hotp(Algorithm::Sha1, SECRET, c, 6));
    assert_eq!(
        w.check("alice", "vpn", "1234000000").verdict,
        Verdict::Reject
    );
    assert_eq!(
        w.check("alice", "vpn", "1234000000").verdict,
        Verdict::Reject
    );
    // Two failures: the next attempt within 5 s is refused unseen, even with a good code.
    let d = w.check("alice", "vpn", &code(0));
    assert_eq!(d.verdict, Verdict::Reject);
    assert!(d.reason.contains("throttled"), "{d:?}");
    w.advance(5);
    assert_eq!(
        w.check("alice", "vpn", "1234000000").verdict,
        Verdict::Reject
    );
    w.advance(10);
    let d = w.check("alice", "vpn", "1234000000");
    assert!(d.reason.contains("locked"), "fourth failure locks: {d:?}");
    w.advance(120);
    let d = w.check("alice", "vpn", &code(0));
    assert!(d.reason.contains("locked"), "{d:?}");
    w.admin.unlock("alice").expect("unlock");
    let d = w.check("alice", "vpn", &code(0));
    assert_eq!(d.verdict, Verdict::Accept, "{d:?}");
    let acct = w.admin.account("alice").expect("account");
    assert_eq!(acct.failures, 0, "an accept clears the count");
    // The lock also clears by itself.
    for _ in 0..4 {
        w.advance(61);
        w.check("alice", "vpn", "1234000000");
    }
    assert!(w.check("alice", "vpn", &code(1)).reason.contains("locked"));
    w.advance(601);
    assert_eq!(w.check("alice", "vpn", &code(1)).verdict, Verdict::Accept);
}

#[test]
fn any_active_token_may_match() {
    let w = World::new(Config::default());
    w.alice(TokenKind::Totp);
    let mut o = opts2(TokenKind::Hotp, true);
    o.digits = 8;
    let second = w.admin.add_token("alice", o).expect("second token");
    let d = w.check(
        "alice",
        "vpn",
        &format!("1234{}", hotp(Algorithm::Sha1, SECRET2, 0, 8)),
    );
    assert_eq!(d.verdict, Verdict::Accept, "{d:?}");
    assert_eq!(d.serial.as_deref(), Some(second.token.serial.as_str()));
    let d = w.check("alice", "vpn", &format!("1234{}", w.totp_now(0)));
    assert_eq!(d.verdict, Verdict::Accept, "{d:?}");
}

#[test]
fn parallel_identical_checks_accept_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SqliteStore::open(&dir.path().join("t.db")).expect("store"));
    let w = Arc::new(World::with_store(Config::default(), store));
    w.alice(TokenKind::Hotp);
    let pw = format!("1234{}", hotp(Algorithm::Sha1, SECRET, 3, 6));
    let barrier = Arc::new(std::sync::Barrier::new(16));
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let (w, pw, b) = (w.clone(), pw.clone(), barrier.clone());
            std::thread::spawn(move || {
                b.wait();
                w.check("alice", "vpn", &pw).verdict
            })
        })
        .collect();
    let verdicts: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("join"))
        .collect();
    let accepts = verdicts.iter().filter(|v| **v == Verdict::Accept).count();
    assert_eq!(accepts, 1, "{verdicts:?}");
}

#[test]
fn audit_records_every_decision_without_secrets() {
    let w = World::new(Config::default());
    let serial = w.alice(TokenKind::Hotp);
    let code = hotp(Algorithm::Sha1, SECRET, 0, 6);
    w.check("alice", "vpn", &format!("1234{code}"));
    w.check("alice", "vpn", "9999123456");
    let recs = w
        .admin
        .store
        .audit(&crate::model::AuditFilter::default())
        .expect("audit");
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0].verdict, "accept");
    assert_eq!(recs[0].serial.as_deref(), Some(serial.as_str()));
    assert_eq!(recs[1].verdict, "reject");
    let all = format!("{recs:?}");
    for secret in ["1234", &code, "9999", "123456"] {
        assert!(!all.contains(secret), "audit leaks {secret}: {all}");
    }
}

#[test]
fn password_split_is_safe_on_odd_input() {
    let w = World::new(Config::default());
    w.alice(TokenKind::Hotp);
    let code = hotp(Algorithm::Sha1, SECRET, 0, 6);
    for pw in [
        String::new(),
        code.clone(),           // code without PIN
        "1234".into(),          // PIN without code
        format!("ä{code}"),     // non-ASCII PIN
        format!("1234{code}é"), // split inside a character
        "x".repeat(600),        // over the bound
        format!("1234\0{code}"),
    ] {
        let d = w.check("alice", "vpn", &pw);
        assert_eq!(d.verdict, Verdict::Reject, "{pw:?}: {d:?}");
    }
}

impl World {
    fn check_from(&self, user: &str, rhost: &str, password: &str) -> Decision {
        self.engine.check(&CheckRequest {
            user: user.into(),
            password: password.to_string().into(),
            service: "vpn".into(),
            rhost: Some(rhost.into()),
            client: Some("test".into()),
            state: None,
            defer_is_reject: false,
            device: Default::default(),
            code_only: false,
        })
    }
}

#[test]
fn one_address_guessing_cannot_lock_the_real_user_out() {
    let mut cfg = Config::default();
    cfg.lockout.free_failures = 100; // no throttle: only the limits under test act
    cfg.lockout.max_failures = 6;
    cfg.lockout.per_source_max_failures = 50; // capped to 5 by max_failures
    let w = World::new(cfg);
    w.alice(TokenKind::Hotp);
    for _ in 0..20 {
        w.check_from("alice", "198.51.100.66", "1234000000");
    }
    let d = w.check_from("alice", "198.51.100.66", "1234000000");
    assert!(d.reason.contains("source address blocked"), "{d:?}");
    let acct = w.admin.account("alice").expect("account");
    assert_eq!(
        acct.failures, 5,
        "one address reaches at most max_failures - 1"
    );
    assert!(acct.locked_until.is_none());
    // The real user, from their own address, still gets in.
    let good = format!("1234{}", hotp(Algorithm::Sha1, SECRET, 0, 6));
    assert_eq!(
        w.check_from("alice", "203.0.113.5", &good).verdict,
        Verdict::Accept
    );
}

#[test]
fn guessing_from_many_addresses_gets_nowhere() {
    let mut cfg = Config::default();
    cfg.lockout.max_failures = 10;
    let w = World::new(cfg);
    w.alice(TokenKind::Hotp);
    let good = format!("1234{}", hotp(Algorithm::Sha1, SECRET, 0, 6));
    // 200 guesses from 200 addresses, as fast as they come: the account's delay refuses them
    // unseen after three, the lock follows; even the right code is refused meanwhile.
    let mut evaluated = 0;
    for i in 0..200 {
        let d = w.check_from(
            "alice",
            &format!("10.9.{}.{}", i / 250, i % 250),
            "1234999999",
        );
        if d.reason.contains("wrong") {
            evaluated += 1;
        }
    }
    assert!(
        evaluated <= 3,
        "only the free failures were evaluated: {evaluated}"
    );
    let d = w.check_from("alice", "10.99.0.1", &good);
    assert_eq!(d.verdict, Verdict::Reject, "{d:?}");
}

#[test]
fn openssh_refusal_filler_is_rejected_without_counting() {
    let w = World::new(Config::default());
    w.alice(TokenKind::Hotp);
    for _ in 0..30 {
        let d = w.check("alice", "ssh", "\u{8}\n\r\u{7f}INCORRECT");
        assert_eq!(d.verdict, Verdict::Reject);
        assert!(d.reason.contains("not counted"), "{d:?}");
    }
    assert_eq!(w.admin.account("alice").expect("account").failures, 0);
    let good = format!("1234{}", hotp(Algorithm::Sha1, SECRET, 0, 6));
    assert_eq!(w.check("alice", "ssh", &good).verdict, Verdict::Accept);
}
