//! Engine tests of the mail-provider path: the re-login cache and app passwords, through
//! `Engine::check` with an in-memory store and a clock the test moves.

use super::testkit::{self, oath_token, TestClock, SECRET};
use super::*;
use crate::admin::Admin;
use crate::model::{AuditFilter, TokenKind};
use crate::tokens::oath::{hotp, Algorithm};

const WEBMAIL: &str = "192.0.2.10";

struct World {
    engine: Engine,
    admin: Admin,
    clock: Arc<TestClock>,
}

impl World {
    fn new(toml: &str) -> World {
        let p = testkit::parts(Arc::new(Config::from_toml_str(toml).expect("config")));
        World {
            engine: p.engine,
            admin: p.admin,
            clock: p.clock,
        }
    }

    fn advance(&self, secs: i64) {
        self.clock.advance(secs);
    }

    /// `user` with PIN 1234 and an active HOTP token on SECRET at `level`; returns the serial.
    fn enrol(&self, user: &str, level: &str) -> String {
        self.admin
            .add_user(user, Some("1234"), None)
            .expect("add user");
        let e = self
            .admin
            .add_token(user, oath_token(TokenKind::Hotp, true))
            .expect("add token");
        self.admin
            .set_user(user, None, Some(level))
            .expect("set level");
        e.token.serial
    }

    fn check(&self, user: &str, service: &str, rhost: Option<&str>, pw: &str) -> Decision {
        self.engine.check(&CheckRequest {
            user: user.into(),
            password: pw.to_string().into(),
            service: service.into(),
            rhost: rhost.map(str::to_string),
            client: Some("test".into()),
            state: None,
            defer_is_reject: false,
            device: Default::default(),
            code_only: false,
        })
    }

    fn last_audit(&self) -> crate::model::AuditRecord {
        self.admin
            .store
            .audit(&AuditFilter {
                limit: 1,
                ..AuditFilter::default()
            })
            .expect("audit")
            .pop()
            .expect("one record")
    }
}

fn code(counter: u64) -> String {
    format!("1234{}", hotp(Algorithm::Sha1, SECRET, counter, 6))
}

/// A `[services.web]` table in a file replaces the built-in one as a whole, so it names the
/// cache itself.
const WEB_RHOSTS: &str = "[services.web]\nrhosts = [\"192.0.2.10/31\"]\nrelogin_cache = true\n";

#[test]
fn relogin_cache_accepts_the_same_login_again_from_the_same_source_only() {
    // vpn caches too here, so that a miss across classes is the key's doing.
    let w = World::new(&format!(
        "{WEB_RHOSTS}[services.vpn]\nrelogin_cache = true\n"
    ));
    let serial = w.enrol("alice", "everywhere");
    let pw = code(0);
    // The webmail's IMAP login: the PAM service says imap, the address says web.
    let d = w.check("alice", "imap", Some(WEBMAIL), &pw);
    assert_eq!(d.verdict, Verdict::Accept, "{d:?}");
    assert_eq!(d.class.as_deref(), Some("web"));
    for _ in 0..3 {
        w.advance(60);
        let d = w.check("alice", "imap", Some(WEBMAIL), &pw);
        assert_eq!(d.verdict, Verdict::Accept, "page view: {d:?}");
        assert_eq!(d.serial.as_deref(), Some(serial.as_str()));
        let a = w.last_audit();
        assert_eq!(a.verdict, "accept");
        assert!(a.reason.contains("re-login cache"), "{a:?}");
    }
    // Another webmail host (same class) does not hit: the code is used.
    let d = w.check("alice", "imap", Some("192.0.2.11"), &pw);
    assert_eq!(d.verdict, Verdict::Reject, "{d:?}");
    assert!(d.reason.contains("used"), "{d:?}");
    // Another class does not hit either: cached from an address outside the webmail's...
    let pw = code(1);
    let d = w.check("alice", "web", Some("198.51.100.1"), &pw);
    assert_eq!(d.verdict, Verdict::Accept, "{d:?}");
    // ...the same login from there as vpn misses.
    let d = w.check("alice", "vpn", Some("198.51.100.1"), &pw);
    assert_eq!(d.verdict, Verdict::Reject, "{d:?}");
    // Another password (PIN typo) does not.
    let d = w.check("alice", "imap", Some(WEBMAIL), &format!("1235{}", &pw[4..]));
    assert_eq!(d.verdict, Verdict::Reject, "{d:?}");
}

#[test]
fn relogin_cache_ends_after_idle_and_max() {
    let w = World::new(&format!(
        "{WEB_RHOSTS}relogin_idle = \"10m\"\nrelogin_max = \"30m\"\n"
    ));
    w.enrol("alice", "web-otp");
    let pw = code(0);
    assert_eq!(
        w.check("alice", "web", Some(WEBMAIL), &pw).verdict,
        Verdict::Accept
    );
    w.advance(9 * 60);
    assert_eq!(
        w.check("alice", "web", Some(WEBMAIL), &pw).verdict,
        Verdict::Accept
    );
    w.advance(11 * 60);
    assert_eq!(
        w.check("alice", "web", Some(WEBMAIL), &pw).verdict,
        Verdict::Reject,
        "idle ran out"
    );
    let pw = code(1);
    assert_eq!(
        w.check("alice", "web", Some(WEBMAIL), &pw).verdict,
        Verdict::Accept
    );
    for _ in 0..3 {
        w.advance(9 * 60);
        assert_eq!(
            w.check("alice", "web", Some(WEBMAIL), &pw).verdict,
            Verdict::Accept
        );
    }
    w.advance(4 * 60);
    assert_eq!(
        w.check("alice", "web", Some(WEBMAIL), &pw).verdict,
        Verdict::Reject,
        "30 min since the first login"
    );
}

#[test]
fn relogin_cache_can_be_switched_off_and_needs_a_source_address() {
    let w = World::new(&WEB_RHOSTS.replace("relogin_cache = true", "relogin_cache = false"));
    w.enrol("alice", "web-otp");
    let pw = code(0);
    assert_eq!(
        w.check("alice", "web", Some(WEBMAIL), &pw).verdict,
        Verdict::Accept
    );
    assert_eq!(
        w.check("alice", "web", Some(WEBMAIL), &pw).verdict,
        Verdict::Reject
    );

    let w = World::new(WEB_RHOSTS);
    w.enrol("alice", "web-otp");
    assert_eq!(w.check("alice", "web", None, &pw).verdict, Verdict::Accept);
    assert_eq!(
        w.check("alice", "web", None, &pw).verdict,
        Verdict::Reject,
        "no source address, no cache"
    );
}

#[test]
fn relogin_cache_ends_with_the_token_or_a_pin_change() {
    let w = World::new(WEB_RHOSTS);
    let serial = w.enrol("alice", "web-otp");
    let pw = code(0);
    assert_eq!(
        w.check("alice", "web", Some(WEBMAIL), &pw).verdict,
        Verdict::Accept
    );
    w.admin
        .set_token_state(&serial, crate::model::TokenState::Disabled)
        .expect("disable");
    assert_eq!(
        w.check("alice", "web", Some(WEBMAIL), &pw).verdict,
        Verdict::Reject
    );
    w.admin
        .set_token_state(&serial, crate::model::TokenState::Active)
        .expect("enable");

    let pw = code(1);
    assert_eq!(
        w.check("alice", "web", Some(WEBMAIL), &pw).verdict,
        Verdict::Accept
    );
    w.admin
        .set_user("alice", Some("1234"), None)
        .expect("same PIN, new salt");
    assert_eq!(
        w.check("alice", "web", Some(WEBMAIL), &pw).verdict,
        Verdict::Reject,
        "a PIN change ends cached logins"
    );
    // A level change that takes OTP away is seen before the cache.
    let pw = code(2);
    assert_eq!(
        w.check("alice", "web", Some(WEBMAIL), &pw).verdict,
        Verdict::Accept
    );
    w.admin.set_user("alice", None, Some("off")).expect("off");
    assert_eq!(
        w.check("alice", "web", Some(WEBMAIL), &pw).verdict,
        Verdict::Defer
    );
}

#[test]
fn app_password_alone_where_the_level_asks_for_one() {
    let w = World::new("");
    w.enrol("carol", "app-passwords");
    let all = w
        .admin
        .add_app_password("carol", "Thunderbird laptop", &[])
        .expect("add");
    let mail_only = w
        .admin
        .add_app_password("carol", "Phone", &["mail".to_string()])
        .expect("add");
    assert_eq!(all.effective_for, vec!["mail".to_string()]);

    let d = w.check("carol", "imap", Some("198.51.100.7"), &all.password);
    assert_eq!(d.verdict, Verdict::Accept, "{d:?}");
    let a = w.last_audit();
    assert!(a.reason.contains("Thunderbird laptop"), "{a:?}");
    assert!(!a.reason.contains(all.password.as_str()));
    // Typed without dashes, in capitals: the same password.
    let typed: String = all
        .password
        .chars()
        .filter(|c| *c != '-')
        .collect::<String>()
        .to_uppercase();
    assert_eq!(
        w.check("carol", "imap", None, &typed).verdict,
        Verdict::Accept
    );
    assert_eq!(
        w.check("carol", "smtp", Some("198.51.100.8"), &mail_only.password)
            .verdict,
        Verdict::Accept
    );
    // Last use is recorded with its source.
    let list = w.admin.app_passwords("carol").expect("list");
    let tb = list
        .iter()
        .find(|a| a.label == "Thunderbird laptop")
        .expect("tb");
    // The second use came without an address: the client name stands in.
    assert_eq!(tb.last_used_from.as_deref(), Some("test"));
    let phone = list.iter().find(|a| a.label == "Phone").expect("phone");
    assert_eq!(phone.last_used_from.as_deref(), Some("198.51.100.8"));
    assert!(phone.last_used_at.is_some());

    // The normal password and PIN+OTP are not app passwords.
    assert_eq!(
        w.check("carol", "imap", None, "normal-pw").verdict,
        Verdict::Reject
    );
    assert_eq!(
        w.check("carol", "imap", None, &code(0)).verdict,
        Verdict::Reject
    );
    // Where the level asks for OTP, an app password is no use.
    assert_eq!(
        w.check("carol", "sshd", None, &all.password).verdict,
        Verdict::Reject
    );
    // Revoked is gone.
    w.admin
        .revoke_app_password("carol", "Thunderbird laptop")
        .expect("revoke");
    let d = w.check("carol", "imap", None, &all.password);
    assert_eq!(d.verdict, Verdict::Reject);
    // Wrong app passwords are not counted as failures (no lockout from a stale client).
    let before = w.admin.account("carol").expect("carol").failures;
    for _ in 0..20 {
        w.check("carol", "imap", None, "aaaa-bbbb-cccc-dddd-eeee");
    }
    assert_eq!(w.admin.account("carol").expect("carol").failures, before);
    assert_eq!(
        w.check("carol", "imap", None, &mail_only.password).verdict,
        Verdict::Accept
    );
}

#[test]
fn app_password_limited_to_other_services_is_refused_with_a_reason() {
    let w = World::new("[services.dav]\n[levels.app-passwords]\ndav = \"app-password\"\n");
    w.enrol("carol", "app-passwords");
    let dav = w
        .admin
        .add_app_password("carol", "Calendar", &["dav".to_string()])
        .expect("add");
    let d = w.check("carol", "imap", None, &dav.password);
    assert_eq!(d.verdict, Verdict::Reject);
    assert!(d.reason.contains("not for mail"), "{d:?}");
    assert_eq!(
        w.check("carol", "dav", None, &dav.password).verdict,
        Verdict::Accept
    );
}
