//! Trusted devices (trusted.rs): the PIN alone with a device token, and every way it must be
//! refused.

use super::testkit::{self, oath_token, TestClock, SECRET};
use super::*;
use crate::admin::Admin;
use crate::config::{Config, UnknownUser};
use crate::model::{TokenKind, TokenState};
use crate::tokens::oath::{hotp, Algorithm};
use std::time::Duration;

const DAY: i64 = 86_400;

struct World {
    engine: Engine,
    admin: Admin,
    clock: Arc<TestClock>,
    /// The next unused HOTP counter of each user (alice, bob).
    next: Mutex<[u64; 2]>,
}

fn config(ttl_days: u64) -> Config {
    let mut cfg = Config::default();
    cfg.lockout.free_failures = 100; // no throttle: only the limits under test act
    cfg.lockout.max_failures = 5;
    cfg.lockout.per_source_max_failures = 0;
    cfg.unknown_user = UnknownUser::Reject;
    let mut cfg = cfg.finish().expect("config");
    for class in ["web", "mail"] {
        if let Some(svc) = cfg.services.get_mut(class) {
            svc.trusted_device_ttl = Duration::from_secs(ttl_days * DAY as u64);
        }
    }
    cfg
}

impl World {
    fn new(cfg: Config) -> World {
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
        World {
            engine: p.engine,
            admin: p.admin,
            clock: p.clock,
            next: Mutex::new([0, 0]),
        }
    }

    fn code(&self, user: &str) -> String {
        let mut next = lock(&self.next);
        let i = usize::from(user == "bob");
        let c = hotp(Algorithm::Sha1, SECRET, next[i], 6);
        next[i] += 1;
        c
    }

    fn req(&self, user: &str, class: &str, client: &str, password: &str) -> CheckRequest {
        CheckRequest {
            user: user.into(),
            password: password.to_string().into(),
            service: class.into(),
            // No source: every failure counts in the account's durable row (a familiar
            // source's would count in memory, engine/gate.rs), which `failures` reads.
            rhost: None,
            client: Some(client.into()),
            state: None,
            defer_is_reject: false,
            code_only: false,
            device: DeviceRequest::default(),
        }
    }

    /// PIN+code with remember_device: the Accept and its device token.
    fn remember(&self, user: &str, class: &str, client: &str) -> (Decision, String) {
        let mut r = self.req(user, class, client, &format!("1234{}", self.code(user)));
        r.device.remember = Some("Firefox on the laptop".into());
        let d = self.engine.check(&r);
        assert_eq!(d.verdict, Verdict::Accept, "{d:?}");
        let token = d.device.as_ref().expect("a device token").token.to_string();
        (d, token)
    }

    /// The PIN (or `password`) with a device token.
    fn with_device(
        &self,
        user: &str,
        class: &str,
        client: &str,
        password: &str,
        token: &str,
    ) -> Decision {
        let mut r = self.req(user, class, client, password);
        r.device.token = Some(token.to_string().into());
        self.engine.check(&r)
    }

    fn failures(&self, user: &str) -> u32 {
        self.admin.account(user).expect("account").failures
    }
}

#[test]
fn the_pin_alone_with_a_device_token_logs_in_without_a_code() {
    let w = World::new(config(30));
    let (d, token) = w.remember("alice", "web", "portal");
    assert!(
        d.reason
            .contains("device \"Firefox on the laptop\" trusted"),
        "{d:?}"
    );
    // 256 bits in base64url without padding.
    assert_eq!(token.len(), 43, "{token}");
    assert!(token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    // The token never shows in a debug print of the answer.
    assert!(!format!("{d:?}").contains(&token));
    for _ in 0..3 {
        let d = w.with_device("alice", "web", "portal", "1234", &token);
        assert_eq!(d.verdict, Verdict::Accept, "{d:?}");
        assert!(
            d.reason
                .contains("trusted device \"Firefox on the laptop\""),
            "{d:?}"
        );
        assert!(d.device.is_none(), "shown once: {d:?}");
    }
    let list = w.admin.devices("alice").expect("list");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].last_used_at, Some(w.clock.now_s()));
    assert_ne!(list[0].hash, token.as_bytes(), "only a keyed hash is kept");
    // The PIN alone without the device is still a Reject (a wrong password).
    let d = w.engine.check(&w.req("alice", "web", "portal", "1234"));
    assert_eq!(d.verdict, Verdict::Reject, "{d:?}");
}

#[test]
fn no_device_in_a_class_without_trusted_devices() {
    let w = World::new(config(30));
    let mut r = w.req(
        "alice",
        "vpn",
        "portal",
        &format!("1234{}", w.code("alice")),
    );
    r.device.remember = Some("laptop".into());
    let d = w.engine.check(&r);
    assert_eq!(d.verdict, Verdict::Accept, "{d:?}");
    assert!(d.device.is_none(), "{d:?}");
    assert!(d.reason.contains("vpn allows no trusted devices"), "{d:?}");
    // Off by default in every class.
    let cfg = Config::default().finish().expect("config");
    assert!(cfg
        .services
        .values()
        .all(|s| s.trusted_device_ttl == Duration::ZERO));
}

#[test]
fn a_wrong_pin_or_token_is_a_counted_failure_and_guessing_locks() {
    let w = World::new(config(30));
    let (_, token) = w.remember("alice", "web", "portal");
    let d = w.with_device("alice", "web", "portal", "9999", &token);
    assert_eq!(d.verdict, Verdict::Reject, "{d:?}");
    assert_eq!(
        w.failures("alice"),
        1,
        "wrong PIN with a good device: {d:?}"
    );
    // Guessed device tokens with the right PIN: each one counted, then the lock.
    for i in 0..4u8 {
        // The real token's first 40 characters and three that each differ from its own: a
        // suffix like "000" was the token itself once in 65,536 runs (a CI run of
        // 2026-12-06 accepted it).
        let tail: String = token[40..]
            .chars()
            .map(|c| {
                let alt = char::from(b'A' + i);
                if c == alt {
                    char::from(b'a' + i)
                } else {
                    alt
                }
            })
            .collect();
        let guess = format!("{}{tail}", &token[..40]);
        assert_ne!(guess, token);
        let d = w.with_device("alice", "web", "portal", "1234", &guess);
        assert_eq!(d.verdict, Verdict::Reject, "{d:?}");
        assert!(d.reason.contains("not recognised"), "{d:?}");
    }
    assert_eq!(w.failures("alice"), 5);
    let d = w.with_device("alice", "web", "portal", "1234", &token);
    assert_eq!(d.verdict, Verdict::Reject, "locked: {d:?}");
    assert!(d.reason.contains("locked"), "{d:?}");
}

#[test]
fn a_device_works_only_for_its_account_client_and_class() {
    let w = World::new(config(30));
    let (_, token) = w.remember("alice", "web", "portal");
    // bob knows his own PIN (the same digits) and has alice's device token.
    let d = w.with_device("bob", "web", "portal", "1234", &token);
    assert_eq!(d.verdict, Verdict::Reject, "{d:?}");
    assert!(d.reason.contains("another account"), "{d:?}");
    assert_eq!(w.failures("bob"), 1);
    // Another class that also allows trusted devices.
    let d = w.with_device("alice", "mail", "portal", "1234", &token);
    assert_eq!(d.verdict, Verdict::Reject, "{d:?}");
    assert!(d.reason.contains("not mail"), "{d:?}");
    // Another client.
    let d = w.with_device("alice", "web", "webmail", "1234", &token);
    assert_eq!(d.verdict, Verdict::Reject, "{d:?}");
    assert!(d.reason.contains("through client portal"), "{d:?}");
    assert_eq!(w.failures("alice"), 2);
    // Still good where it belongs.
    let d = w.with_device("alice", "web", "portal", "1234", &token);
    assert_eq!(d.verdict, Verdict::Accept, "{d:?}");
}

#[test]
fn a_device_expires_and_a_shorter_ttl_shortens_it() {
    let w = World::new(config(30));
    let (_, token) = w.remember("alice", "web", "portal");
    w.clock.advance(30 * DAY - 1);
    let d = w.with_device("alice", "web", "portal", "1234", &token);
    assert_eq!(d.verdict, Verdict::Accept, "{d:?}");
    w.clock.advance(1);
    let d = w.with_device("alice", "web", "portal", "1234", &token);
    assert_eq!(d.verdict, Verdict::Reject, "{d:?}");
    assert!(d.reason.contains("expired"), "{d:?}");
    assert_eq!(
        w.failures("alice"),
        1,
        "an expired device is a counted failure"
    );

    // A reload with a shorter lifetime ends older devices; 0 ends them all.
    let (_, token) = w.remember("alice", "web", "portal");
    w.clock.advance(2 * DAY);
    let short = w.engine.reconfigure(Arc::new(config(1)));
    let mut r = w.req("alice", "web", "portal", "1234");
    r.device.token = Some(token.clone().into());
    assert_eq!(short.check(&r).verdict, Verdict::Reject);
    let off = w.engine.reconfigure(Arc::new(config(0)));
    let d = off.check(&r);
    assert!(d.reason.contains("no longer allows"), "{d:?}");
}

#[test]
fn revoking_one_or_all_ends_the_device() {
    let w = World::new(config(30));
    let (d1, t1) = w.remember("alice", "web", "portal");
    let (_, t2) = w.remember("alice", "web", "portal");
    let (_, t3) = w.remember("alice", "web", "portal");
    let id1 = d1.device.as_ref().expect("device").id;
    w.admin.revoke_device("alice", id1).expect("revoke one");
    let d = w.with_device("alice", "web", "portal", "1234", &t1);
    assert_eq!(d.verdict, Verdict::Reject, "{d:?}");
    let d = w.with_device("alice", "web", "portal", "1234", &t2);
    assert_eq!(d.verdict, Verdict::Accept, "the others stay: {d:?}");
    assert!(w.admin.revoke_device("alice", id1).is_err(), "gone already");
    assert!(w.admin.revoke_device("bob", 2).is_err(), "not bob's");
    assert_eq!(w.admin.revoke_devices("alice").expect("revoke all"), 2);
    for t in [&t2, &t3] {
        let d = w.with_device("alice", "web", "portal", "1234", t);
        assert_eq!(d.verdict, Verdict::Reject, "{d:?}");
    }
}

#[test]
fn a_token_delete_a_level_or_pin_change_ends_every_device() {
    let w = World::new(config(30));
    let token_of = |w: &World| w.remember("alice", "web", "portal").1;

    let t = token_of(&w);
    w.admin
        .set_user("alice", None, Some("web-otp"))
        .expect("level");
    assert!(w.admin.devices("alice").expect("list").is_empty());
    let d = w.with_device("alice", "web", "portal", "1234", &t);
    assert_eq!(d.verdict, Verdict::Reject, "after a level change: {d:?}");

    let t = token_of(&w);
    w.admin.set_user("alice", Some("5678"), None).expect("pin");
    let d = w.with_device("alice", "web", "portal", "5678", &t);
    assert_eq!(d.verdict, Verdict::Reject, "after a PIN change: {d:?}");
    w.admin.set_user("alice", Some("1234"), None).expect("pin");

    // A second token, so that the account keeps one when the first goes.
    let second = w
        .admin
        .add_token("alice", {
            let mut o = oath_token(TokenKind::Totp, true);
            o.secret_b32 = Some(
                data_encoding::BASE32_NOPAD
                    .encode(b"abcdefghijabcdefghij")
                    .into(),
            );
            o
        })
        .expect("second token")
        .token
        .serial;
    let t = token_of(&w);
    w.admin
        .set_token_state(&second, TokenState::Disabled)
        .expect("disable");
    let d = w.with_device("alice", "web", "portal", "1234", &t);
    assert_eq!(
        d.verdict,
        Verdict::Reject,
        "after a token was disabled: {d:?}"
    );
    w.admin
        .set_token_state(&second, TokenState::Active)
        .expect("enable");
    let t = token_of(&w);
    w.admin.delete_token(&second).expect("delete");
    let d = w.with_device("alice", "web", "portal", "1234", &t);
    assert_eq!(d.verdict, Verdict::Reject, "after a token delete: {d:?}");
}

#[test]
fn a_change_made_behind_the_admins_back_ends_the_device_too() {
    // The store changed directly (another tool, another node): the binding no longer fits.
    let p = testkit::parts(Arc::new(config(30)));
    p.admin.add_user("alice", Some("1234"), None).expect("user");
    p.admin
        .add_token("alice", oath_token(TokenKind::Hotp, true))
        .expect("token");
    p.admin
        .set_user("alice", None, Some("everywhere"))
        .expect("level");
    let mut r = CheckRequest {
        user: "alice".into(),
        password: format!("1234{}", hotp(Algorithm::Sha1, SECRET, 0, 6)).into(),
        service: "web".into(),
        client: Some("portal".into()),
        ..CheckRequest::default()
    };
    r.device.remember = Some("x".into());
    let d = p.engine.check(&r);
    let token = d.device.expect("device").token;
    p.store.set_level("alice", "app-passwords").expect("level");
    r.password = "1234".to_string().into();
    r.device = DeviceRequest {
        remember: None,
        token: Some(token),
    };
    let d = p.engine.check(&r);
    assert_eq!(d.verdict, Verdict::Reject, "{d:?}");
    assert!(d.reason.contains("changed since"), "{d:?}");
    assert!(p.admin.devices("alice").expect("list").is_empty());
}

#[test]
fn pin_and_code_with_a_device_token_still_log_in() {
    let w = World::new(config(30));
    let (_, token) = w.remember("alice", "web", "portal");
    let pw = format!("1234{}", w.code("alice"));
    let d = w.with_device("alice", "web", "portal", &pw, &token);
    assert_eq!(d.verdict, Verdict::Accept, "{d:?}");
    assert!(d.serial.is_some(), "a code was used: {d:?}");
}

#[test]
fn an_unknown_user_with_a_device_token_is_refused_like_a_wrong_one() {
    let w = World::new(config(30));
    let (_, token) = w.remember("alice", "web", "portal");
    let d = w.with_device("mallory", "web", "portal", "1234", &token);
    assert_eq!(d.verdict, Verdict::Reject, "{d:?}");
    assert_eq!(d.message, messages::REJECT);
}

#[test]
fn devices_per_account_are_bounded_and_labels_cleaned() {
    let w = World::new(config(30));
    for _ in 0..trusted::MAX_PER_ACCOUNT + 3 {
        w.remember("alice", "web", "portal");
        w.clock.advance(1);
    }
    let list = w.admin.devices("alice").expect("list");
    assert_eq!(list.len(), trusted::MAX_PER_ACCOUNT);
    assert_eq!(trusted::clean_label("  \u{7}Fire\nfox  "), "Firefox");
    assert_eq!(trusted::clean_label(""), "device");
    assert_eq!(trusted::clean_label(&"x".repeat(100)).len(), 64);
}

#[test]
fn remembered_after_the_code_of_a_two_step_login() {
    let mut cfg = config(30);
    if let Some(web) = cfg.services.get_mut("web") {
        web.challenge_on_pin_only = true;
    }
    let w = World::new(cfg);
    let mut r = w.req("alice", "web", "portal", "1234");
    r.device.remember = Some("tablet".into());
    let d = w.engine.check(&r);
    assert_eq!(d.verdict, Verdict::Challenge, "{d:?}");
    assert!(d.device.is_none());
    r.state = d.state;
    r.password = w.code("alice").into();
    let d = w.engine.check(&r);
    assert_eq!(d.verdict, Verdict::Accept, "{d:?}");
    assert!(d.device.is_some(), "{d:?}");
}

#[test]
fn a_lifetime_over_180_days_is_refused_at_load() {
    let err = Config::from_toml_str("[services.web]\ntrusted_device_ttl = \"181d\"\n")
        .expect_err("181 days");
    let msg = err.to_string();
    assert!(msg.contains("services.web.trusted_device_ttl"), "{msg}");
    assert!(msg.contains("at most 180 days"), "{msg}");
    let ok =
        Config::from_toml_str("[services.web]\ntrusted_device_ttl = \"180d\"\n").expect("180 days");
    assert_eq!(
        ok.services["web"].trusted_device_ttl,
        crate::config::MAX_TRUSTED_DEVICE_TTL
    );
    // The other keys of the built-in class stay.
    assert!(ok.services["web"].relogin_cache);
}

#[test]
fn a_client_that_sends_the_code_alone_neither_gets_nor_uses_devices() {
    let w = World::new(config(30));
    let (_, token) = w.remember("alice", "web", "portal");
    // pin = none: the client checked the user's password; the password is the code alone.
    let mut r = w.req("alice", "web", "portal", &w.code("alice"));
    r.code_only = true;
    r.device.remember = Some("kiosk".into());
    let d = w.engine.check(&r);
    assert_eq!(d.verdict, Verdict::Accept, "{d:?}");
    assert!(d.device.is_none(), "{d:?}");
    assert!(d.reason.contains("pin = none"), "{d:?}");
    // A device token with no code beside it is no login there.
    let mut r = w.req("alice", "web", "portal", "");
    r.code_only = true;
    r.device.token = Some(token.into());
    let d = w.engine.check(&r);
    assert_ne!(d.verdict, Verdict::Accept, "{d:?}");
}
