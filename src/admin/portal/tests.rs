use super::*;
use crate::config::Config;
use crate::engine::testkit::{self, SECRET};
use crate::model::{ApiKey, ApiScope};
use crate::tokens::oath::{hotp, Algorithm};
use std::collections::BTreeMap;

struct W {
    portal: Portal,
    parts: testkit::Parts,
}

fn world() -> W {
    let cfg = Arc::new(Config::default().finish().expect("config"));
    let parts = testkit::parts(cfg.clone());
    let engine = Engine::with_clock(
        cfg.clone(),
        parts.store.clone(),
        parts.keys.clone(),
        parts.clock.clone(),
    );
    let mut admin = Admin::new(cfg, parts.store.clone(), parts.keys.clone());
    admin.clock = parts.clock.clone();
    W {
        portal: Portal::new(admin, Arc::new(engine)),
        parts,
    }
}

fn caller(scope: ApiScope) -> Caller {
    Caller {
        key: ApiKey {
            id: 1,
            name: format!("k-{}", scope.as_str()),
            scope,
            created_at: 0,
            last_used_at: None,
        },
        peer: Some("127.0.0.1".into()),
    }
}

fn proof(pin_code: String) -> Proof {
    Proof {
        password: Zeroizing::new(pin_code),
        rhost: Some("198.51.100.7".into()),
    }
}

/// bob: PIN 1234, one active HOTP token on SECRET, level everywhere. Returns its serial.
fn bob(w: &W) -> String {
    w.parts
        .admin
        .add_user("bob", Some("1234"), None)
        .expect("user");
    let t = w
        .parts
        .admin
        .add_token("bob", testkit::oath_token(TokenKind::Hotp, true))
        .expect("token");
    w.parts
        .admin
        .set_user("bob", None, Some("everywhere"))
        .expect("level");
    t.token.serial
}

fn code(n: u64) -> String {
    hotp(Algorithm::Sha1, SECRET, n, 6)
}

#[test]
fn the_last_token_goes_only_with_a_fresh_proof_that_is_single_use() {
    let w = world();
    let serial = bob(&w);
    let portal = caller(ApiScope::Portal);
    let p = &w.portal;

    let e = p
        .delete_token(&portal, "bob", &serial, None)
        .expect_err("no proof");
    assert_eq!(e.code(), "proof_required", "{e}");
    let e = p
        .delete_token(
            &portal,
            "bob",
            &serial,
            Some(&proof(format!("9999{}", code(0)))),
        )
        .expect_err("wrong PIN");
    assert_eq!(e.code(), "proof_refused");
    // A good proof spends its code: sent again it is refused, even for another action.
    let good = format!("1234{}", code(0));
    let v = p
        .set_level(&portal, "bob", "off", Some(&proof(good.clone())))
        .expect("lowering with a good proof");
    assert_eq!(v.level, "off");
    p.set_level(&caller(ApiScope::Admin), "bob", "everywhere", None)
        .expect("admin raises it back");
    let e = p
        .delete_token(&portal, "bob", &serial, Some(&proof(good)))
        .expect_err("replayed proof");
    assert_eq!(e.code(), "proof_refused");
    assert!(p.token(&portal, "bob", &serial).is_ok(), "still there");
    p.delete_token(
        &portal,
        "bob",
        &serial,
        Some(&proof(format!("1234{}", code(1)))),
    )
    .expect("fresh proof");
    assert_eq!(
        p.token(&portal, "bob", &serial).expect_err("gone").code(),
        "not_found"
    );

    // The proofs went through the engine: audited as logins of their own.
    let audit = w
        .parts
        .store
        .audit(&crate::model::AuditFilter {
            user: Some("bob".into()),
            ..Default::default()
        })
        .expect("audit");
    let proofs: Vec<_> = audit
        .iter()
        .filter(|r| r.service == PROOF_SERVICE)
        .collect();
    assert_eq!(proofs.len(), 4, "{audit:?}");
    assert!(proofs
        .iter()
        .all(|r| r.client.as_deref() == Some("api-key:k-portal")));
}

#[test]
fn scopes_and_ownership_are_enforced() {
    let w = world();
    let serial = bob(&w);
    w.parts
        .admin
        .add_user("eve", Some("5678"), None)
        .expect("eve");
    let p = &w.portal;
    let read = caller(ApiScope::Read);
    let portal = caller(ApiScope::Portal);
    assert!(p.show(&read, "bob").is_ok());
    let e = p
        .set_pin(&read, "bob", "4321")
        .expect_err("read key writes");
    assert_eq!((e.code(), e.status()), ("forbidden", 403));
    let e = p.unlock(&portal, "bob").expect_err("portal unlocks");
    assert_eq!(e.code(), "forbidden");
    assert_eq!(p.users(&portal).expect_err("list").code(), "forbidden");
    assert_eq!(p.users(&read).expect("list").len(), 2);
    // bob's token under eve's name is not found, exactly like a serial that does not exist.
    for s in [serial.as_str(), "TOTP00000000"] {
        let e = p.token(&portal, "eve", s).expect_err("not eve's");
        assert_eq!(e.code(), "not_found");
        let e = p
            .set_enabled(&caller(ApiScope::Admin), "eve", s, false, None)
            .expect_err("not eve's");
        assert_eq!(e.code(), "not_found");
    }
    assert_eq!(
        p.show(&portal, "nobody").expect_err("x").code(),
        "not_found"
    );
    // Admin keys need no proof: the helpdesk for a lost phone.
    p.set_enabled(&caller(ApiScope::Admin), "bob", &serial, false, None)
        .expect("admin disables the last token");
}

#[test]
fn enrolment_waits_for_a_first_code_and_expires() {
    let w = world();
    bob(&w);
    let p = &w.portal;
    let portal = caller(ApiScope::Portal);
    let mut options = BTreeMap::new();
    options.insert(
        "secret".to_string(),
        Zeroizing::new("MFRGGZDFMZTWQ2LK".to_string()),
    );
    let r = EnrolRequest {
        kind: "hotp".into(),
        label: "phone".into(),
        options,
    };
    let v = p.enrol(&portal, "bob", &r).expect("enrol");
    assert_eq!(v.token.state, "pending");
    assert!(v
        .otpauth_uri
        .as_deref()
        .is_some_and(|u| u.starts_with("otpauth://hotp/")));
    assert_eq!(
        v.secret.as_deref().map(String::as_str),
        Some("MFRG GZDF MZTW Q2LK")
    );
    assert!(v.qr_svg.as_deref().is_some_and(|s| s.contains("<svg")));
    assert!(v
        .qr_png
        .as_deref()
        .is_some_and(|s| s.starts_with("data:image/png;base64,")));
    let key = crate::admin::decode_base32("MFRGGZDFMZTWQ2LK").expect("b32");
    let c0 = hotp(Algorithm::Sha1, &key, 0, 6);
    assert_eq!(
        p.activate(&portal, "bob", &v.token.serial, "000000")
            .expect_err("wrong")
            .code(),
        "conflict"
    );
    let t = p
        .activate(&portal, "bob", &v.token.serial, &c0)
        .expect("activate");
    assert_eq!(t.state, "active");

    // A pending token past enrol_timeout cannot be activated (and is removed).
    let v = p
        .enrol(
            &portal,
            "bob",
            &EnrolRequest {
                kind: "totp".into(),
                label: String::new(),
                options: BTreeMap::new(),
            },
        )
        .expect("enrol");
    w.parts.clock.advance(31 * 60);
    let e = w
        .parts
        .admin
        .activate(&v.token.serial, "123456")
        .expect_err("expired");
    assert!(e.to_string().contains("enrol_timeout"), "{e}");
    assert!(w.parts.admin.token(&v.token.serial).is_err(), "removed");

    // A second one never activated is gone after enrol_timeout.
    let v = p
        .enrol(
            &portal,
            "bob",
            &EnrolRequest {
                kind: "totp".into(),
                label: String::new(),
                options: BTreeMap::new(),
            },
        )
        .expect("enrol");
    assert!(v.token.activate_before.is_some());
    w.parts.clock.advance(31 * 60);
    let e = p
        .token(&portal, "bob", &v.token.serial)
        .expect_err("expired");
    assert_eq!(e.code(), "not_found");

    let bad = EnrolRequest {
        kind: "sms".into(),
        label: String::new(),
        options: BTreeMap::new(),
    };
    assert_eq!(
        p.enrol(&portal, "bob", &bad)
            .map(|_| ())
            .expect_err("kind")
            .code(),
        "invalid"
    );
    let mut o = BTreeMap::new();
    o.insert("colour".to_string(), Zeroizing::new("red".to_string()));
    let bad = EnrolRequest {
        kind: "totp".into(),
        label: String::new(),
        options: o,
    };
    let e = p
        .enrol(&portal, "bob", &bad)
        .map(|_| ())
        .expect_err("option");
    assert!(e.to_string().contains("colour"), "{e}");
}
