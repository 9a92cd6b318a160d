//! Trusted devices end to end: the real `otpd` binary on a private data directory, the
//! device token carried as a client carries it. Each protection is attacked here: a revoked,
//! expired, foreign or guessed device token, and one that outlived a token delete or a level
//! change, must not log in; a guessed one is counted by the gate and locks like a wrong code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job
mod common;

use common::{audit_of, hotp_code, Env};
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};

/// One installation: alice and bob (PIN 1234, one HOTP token on the shared secret each,
/// level everywhere), the web and mail classes allowing trusted devices.
struct Site {
    env: Env,
    /// The next unused HOTP counter per user.
    alice_next: AtomicU64,
    bob_next: AtomicU64,
}

const CONFIG: &str = r#"unknown_user = "reject"

[lockout]
free_failures = 100
max_failures = 4
per_source_max_failures = 0
source_max_failures = 0

[services.web]
trusted_device_ttl = "30d"

[services.mail]
trusted_device_ttl = "30d"
"#;

impl Site {
    fn new(config: &str) -> Site {
        let env = Env::new(config);
        for user in ["alice", "bob"] {
            env.enrol(user, "1234", "hotp", "everywhere");
        }
        Site {
            env,
            alice_next: AtomicU64::new(0),
            bob_next: AtomicU64::new(0),
        }
    }

    fn code(&self, user: &str) -> String {
        let next = if user == "bob" {
            &self.bob_next
        } else {
            &self.alice_next
        };
        hotp_code(next.fetch_add(1, Ordering::SeqCst))
    }

    /// One login as a front-end client sends it.
    fn login(
        &self,
        user: &str,
        class: &str,
        client: &str,
        password: &str,
        remember: Option<&str>,
        device_token: Option<&str>,
    ) -> Value {
        let mut args = vec![
            "check",
            user,
            "--service",
            class,
            "--client",
            client,
            "--json",
        ];
        if let Some(label) = remember {
            args.extend(["--remember-device", label]);
        }
        if let Some(t) = device_token {
            args.extend(["--device-token", t]);
        }
        let out = self.env.run(&args, Some(&format!("{password}\n")));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "check output is not JSON ({e}): {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    /// PIN+code asking to remember the device: the device token it got.
    fn remember(&self, user: &str, class: &str, client: &str, label: &str) -> String {
        let pw = format!("1234{}", self.code(user));
        let v = self.login(user, class, client, &pw, Some(label), None);
        assert_eq!(v["verdict"], "accept", "{v}");
        let token = v["device_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no device token: {v}"));
        assert_eq!(token.len(), 43, "256 bits in base64url: {v}");
        token.to_string()
    }

    /// The PIN alone with a device token.
    fn pin_and_device(&self, user: &str, class: &str, client: &str, token: &str) -> Value {
        self.login(user, class, client, "1234", None, Some(token))
    }

    fn failures(&self, user: &str) -> u64 {
        let out = self.env.ok(&["user", "show", user, "--json"], None);
        let v: Value = serde_json::from_str(&out).expect("user json");
        v["failures"]
            .as_u64()
            .unwrap_or_else(|| panic!("failures: {v}"))
    }

    fn devices(&self, user: &str) -> Vec<Value> {
        let out = self.env.ok(&["device", "list", user, "--json"], None);
        serde_json::from_str(&out).expect("device list json")
    }
}

fn verdict(v: &Value) -> &str {
    v["verdict"].as_str().unwrap_or("?")
}

#[test]
fn the_pin_alone_with_a_trusted_device_logs_in_until_it_is_revoked() {
    let site = Site::new(CONFIG);
    let token = site.remember("alice", "web", "portal", "Firefox on the laptop");
    let other = site.remember("alice", "web", "portal", "Phone");
    for _ in 0..2 {
        let v = site.pin_and_device("alice", "web", "portal", &token);
        assert_eq!(verdict(&v), "accept", "{v}");
        assert!(v["device_token"].is_null(), "shown once: {v}");
    }
    // The audit says what was used, and never the device token.
    let audit = audit_of(&site.env, "alice");
    let used = audit
        .iter()
        .filter(|r| {
            r["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("trusted device \"Firefox on the laptop\""))
        })
        .count();
    assert_eq!(used, 2, "{audit:?}");
    let all = serde_json::to_string(&audit).expect("audit");
    assert!(!all.contains(&token), "the audit holds no device token");

    let list = site.devices("alice");
    assert_eq!(list.len(), 2, "{list:?}");
    let first = list
        .iter()
        .find(|d| d["label"] == "Firefox on the laptop")
        .expect("listed");
    assert!(first["last_used_at"].as_i64().is_some(), "{first}");
    assert!(first["created_at"].as_i64().is_some(), "{first}");
    let listing = site.env.ok(&["device", "list", "alice"], None);
    assert!(!listing.contains(&token), "{listing}");

    // Revoke one: that one is refused, the other still works.
    let id = first["id"].as_i64().expect("id").to_string();
    site.env.ok(&["device", "revoke", "alice", &id], None);
    let v = site.pin_and_device("alice", "web", "portal", &token);
    assert_eq!(verdict(&v), "reject", "after revoke: {v}");
    let v = site.pin_and_device("alice", "web", "portal", &other);
    assert_eq!(verdict(&v), "accept", "{v}");
    // Revoke all.
    let out = site.env.ok(&["device", "revoke", "alice", "--all"], None);
    assert!(out.contains("1 trusted device"), "{out}");
    let v = site.pin_and_device("alice", "web", "portal", &other);
    assert_eq!(verdict(&v), "reject", "after revoke --all: {v}");
    assert!(site.devices("alice").is_empty());
    // A revoke of what is not there is an error naming it.
    let out = site.env.run(&["device", "revoke", "alice", "77"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no trusted device 77"));
}

#[test]
fn a_trusted_device_expires() {
    let site = Site::new(&CONFIG.replace("\"30d\"", "\"2s\""));
    let token = site.remember("alice", "web", "portal", "laptop");
    let v = site.pin_and_device("alice", "web", "portal", &token);
    assert_eq!(verdict(&v), "accept", "{v}");
    std::thread::sleep(std::time::Duration::from_millis(3100));
    let v = site.pin_and_device("alice", "web", "portal", &token);
    assert_eq!(verdict(&v), "reject", "expired: {v}");
    assert!(
        v["reason"].as_str().unwrap_or("").contains("expired"),
        "{v}"
    );
    assert_eq!(
        site.failures("alice"),
        1,
        "an expired device is a counted failure"
    );
}

#[test]
fn a_token_delete_or_a_level_change_ends_every_trusted_device() {
    let site = Site::new(CONFIG);
    let token = site.remember("alice", "web", "portal", "laptop");
    site.env
        .ok(&["user", "set", "alice", "--level", "web-otp"], None);
    let v = site.pin_and_device("alice", "web", "portal", &token);
    assert_eq!(verdict(&v), "reject", "after a level change: {v}");
    assert!(site.devices("alice").is_empty());

    // A second token, so the account keeps one when the first is deleted.
    let out = site.env.ok(
        &[
            "token",
            "add",
            "alice",
            "--type",
            "totp",
            "--secret",
            "MFRGGZDFMZTWQ2LKMFRGGZDFMZTWQ2LK",
            "--active",
            "--json",
        ],
        None,
    );
    let second: Value = serde_json::from_str(&out).expect("token json");
    let serial = second["serial"].as_str().expect("serial");
    let token = site.remember("alice", "web", "portal", "laptop");
    assert_eq!(
        verdict(&site.pin_and_device("alice", "web", "portal", &token)),
        "accept"
    );
    site.env.ok(&["token", "delete", serial], None);
    let v = site.pin_and_device("alice", "web", "portal", &token);
    assert_eq!(verdict(&v), "reject", "after a token delete: {v}");
    assert!(site.devices("alice").is_empty());
}

#[test]
fn guessed_device_tokens_are_counted_and_lock_like_wrong_codes() {
    let site = Site::new(CONFIG);
    let token = site.remember("alice", "web", "portal", "laptop");
    // The right PIN with made-up device tokens of the right shape.
    for i in 0..4 {
        let guess = format!("{}{i:03}", &token[..40]);
        let v = site.pin_and_device("alice", "web", "portal", &guess);
        assert_eq!(verdict(&v), "reject", "{v}");
    }
    assert_eq!(site.failures("alice"), 4);
    // max_failures = 4: locked, so even the real device (and a real code) is refused now.
    let v = site.pin_and_device("alice", "web", "portal", &token);
    assert_eq!(verdict(&v), "reject", "{v}");
    assert!(v["reason"].as_str().unwrap_or("").contains("locked"), "{v}");
    let pw = format!("1234{}", site.code("alice"));
    let v = site.login("alice", "web", "portal", &pw, None, None);
    assert_eq!(verdict(&v), "reject", "{v}");
    // A wrong PIN with the real device token counts too.
    site.env.ok(&["user", "unlock", "alice"], None);
    let v = site.login("alice", "web", "portal", "9999", None, Some(&token));
    assert_eq!(verdict(&v), "reject", "{v}");
    assert_eq!(site.failures("alice"), 1);
}

#[test]
fn a_device_token_works_only_for_its_account_client_and_class() {
    let site = Site::new(CONFIG);
    let token = site.remember("alice", "web", "portal", "laptop");
    // bob, with his own (right) PIN and alice's device token.
    let v = site.pin_and_device("bob", "web", "portal", &token);
    assert_eq!(verdict(&v), "reject", "{v}");
    assert_eq!(site.failures("bob"), 1, "counted for bob");
    // alice, through another client and in another class that allows devices too.
    let v = site.pin_and_device("alice", "web", "webmail", &token);
    assert_eq!(verdict(&v), "reject", "another client: {v}");
    let v = site.pin_and_device("alice", "mail", "portal", &token);
    assert_eq!(verdict(&v), "reject", "another class: {v}");
    assert_eq!(site.failures("alice"), 2);
    // And where it belongs it still works (which also clears alice's failures).
    let v = site.pin_and_device("alice", "web", "portal", &token);
    assert_eq!(verdict(&v), "accept", "{v}");
    assert_eq!(site.failures("alice"), 0);
}

#[test]
fn no_device_where_the_class_does_not_allow_one() {
    let site = Site::new(CONFIG);
    let pw = format!("1234{}", site.code("alice"));
    let v = site.login("alice", "vpn", "portal", &pw, Some("laptop"), None);
    assert_eq!(verdict(&v), "accept", "{v}");
    assert!(v["device_token"].is_null(), "vpn allows none: {v}");
    // And a lifetime over 180 days is refused at load with the key named.
    let bad = Env::new("");
    std::fs::write(
        &bad.config,
        format!(
            "data_dir = \"{}\"\n[services.web]\ntrusted_device_ttl = \"181d\"\n",
            bad.path().join("data").display()
        ),
    )
    .expect("write config");
    let out = bad.run(&["config", "check"], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("services.web.trusted_device_ttl") && err.contains("at most 180 days"),
        "{err}"
    );
}
