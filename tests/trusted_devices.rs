//! Trusted devices end to end: the real daemon over HTTP (privacyIDEA's `/validate/check`
//! with otpd's `remember_device` and `device_token`, sent by curl), and `otpd check`. Each
//! protection is attacked here: a revoked, expired, foreign or guessed device token, and one
//! that outlived a token delete or a level change, must not log in; a guessed one is counted
//! by the gate and locks like a wrong code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job
mod common;

use common::http::{curl, http_env};
use common::{audit_settled, hotp_code, Daemon, Env};
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};

/// Where logins come from (curl binds these loopback addresses): the user's own place, an
/// attacker's, the webmail (another HTTP client), and an address whose logins count as mail.
const HOME: &str = "127.0.0.1";
const ELSEWHERE: &str = "127.0.0.9";
const WEBMAIL: &str = "127.0.0.2";
const MAIL_SOURCE: &str = "127.0.0.3";
const VPN_GATEWAY: &str = "127.0.0.4";

const CLIENTS: &str = r#"
[[http.clients]]
name = "portal"
address = "127.0.0.0/8"
service = "web"

[[http.clients]]
name = "webmail"
address = "127.0.0.2/32"
service = "web"

[[http.clients]]
name = "vpn-gateway"
address = "127.0.0.4/32"
service = "vpn"
"#;

const TABLES: &str = r#"
[lockout]
free_failures = 100
max_failures = 4
per_source_max_failures = 0
source_max_failures = 0

[services.web]
trusted_device_ttl = "30d"

[services.mail]
trusted_device_ttl = "30d"
rhosts = ["127.0.0.3/32"]
"#;

/// One installation: alice and bob (PIN 1234, one HOTP token on the shared secret each,
/// level everywhere), the web and mail classes allowing trusted devices; the daemon serving
/// HTTP on `port`.
struct Site {
    env: Env,
    port: u16,
    _daemon: Daemon,
    /// The next unused HOTP counter per user.
    alice_next: AtomicU64,
    bob_next: AtomicU64,
}

impl Site {
    fn new(tables: &str) -> Site {
        let (env, port) = http_env("", CLIENTS, tables);
        for user in ["alice", "bob"] {
            env.enrol(user, "1234", "hotp", "everywhere");
        }
        let daemon = env.start();
        Site {
            env,
            port,
            _daemon: daemon,
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

    /// `/validate/check` from `source` with `params` (a form, as privacyIDEA's clients send
    /// it); the JSON answer.
    fn check(&self, source: &str, params: &[(&str, &str)], agent: Option<&str>) -> Value {
        let mut args: Vec<String> = vec!["--interface".into(), source.into()];
        if let Some(a) = agent {
            args.extend(["-A".into(), a.into()]);
        }
        for (k, v) in params {
            args.push("--data-urlencode".into());
            args.push(format!("{k}={v}"));
        }
        args.push(format!("http://127.0.0.1:{}/validate/check", self.port));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let a = curl(&refs);
        assert_eq!(a.status, 200, "{}", a.body);
        a.json()
    }

    /// PIN+code with `remember_device=1`: the device token in `detail.trusted_device`.
    fn remember(&self, user: &str, source: &str, label: &str) -> String {
        let pw = format!("1234{}", self.code(user));
        let v = self.check(
            source,
            &[
                ("user", user),
                ("pass", &pw),
                ("remember_device", "1"),
                ("device_label", label),
            ],
            None,
        );
        assert_eq!(v["result"]["authentication"], "ACCEPT", "{v}");
        let d = &v["detail"]["trusted_device"];
        assert_eq!(d["label"], label, "{v}");
        assert!(d["id"].is_i64() && d["expires"].is_i64(), "{v}");
        let token = d["token"]
            .as_str()
            .unwrap_or_else(|| panic!("no device token: {v}"));
        assert_eq!(token.len(), 43, "256 bits in base64url: {v}");
        token.to_string()
    }

    /// `pass` with a device token, from `source`: ACCEPT or REJECT.
    fn with_device(&self, user: &str, source: &str, pass: &str, token: &str) -> String {
        let v = self.check(
            source,
            &[("user", user), ("pass", pass), ("device_token", token)],
            None,
        );
        assert!(v["detail"]["trusted_device"].is_null(), "shown once: {v}");
        v["result"]["authentication"]
            .as_str()
            .unwrap_or("?")
            .to_string()
    }

    /// The PIN alone with a device token.
    fn pin_and_device(&self, user: &str, source: &str, token: &str) -> String {
        self.with_device(user, source, "1234", token)
    }

    /// The durable failure count: failures from sources the account never logged in from
    /// (docs/security.md#brute-force; the familiar ones are counted in memory).
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

    /// The reasons of the user's audit records, once the daemon's audit has settled.
    fn reasons(&self, user: &str) -> Vec<String> {
        audit_settled(&self.env, &["audit", "--user", user, "--json"])
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let v: Value = serde_json::from_str(l).expect("audit json");
                v["reason"].as_str().unwrap_or_default().to_string()
            })
            .collect()
    }
}

#[test]
fn the_pin_alone_with_a_trusted_device_logs_in_until_it_is_revoked() {
    let site = Site::new(TABLES);
    let token = site.remember("alice", HOME, "Firefox on the laptop");
    // Without device_label the User-Agent names the device.
    let pw = format!("1234{}", site.code("alice"));
    let v = site.check(
        HOME,
        &[("user", "alice"), ("pass", &pw), ("remember_device", "1")],
        Some("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Firefox/128.0"),
    );
    assert_eq!(
        v["detail"]["trusted_device"]["label"],
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Firefox/128.0",
        "{v}"
    );
    let other = v["detail"]["trusted_device"]["token"]
        .as_str()
        .expect("token")
        .to_string();
    for _ in 0..2 {
        assert_eq!(site.pin_and_device("alice", HOME, &token), "ACCEPT");
    }
    // The PIN alone without a device is still a wrong password.
    let v = site.check(HOME, &[("user", "alice"), ("pass", "1234")], None);
    assert_eq!(v["result"]["authentication"], "REJECT", "{v}");

    // The audit says what was used, and never the device token.
    let reasons = site.reasons("alice");
    let used = reasons
        .iter()
        .filter(|r| r.starts_with("trusted device \"Firefox on the laptop\""))
        .count();
    assert_eq!(used, 2, "{reasons:?}");
    assert!(!reasons.iter().any(|r| r.contains(&token)));
    assert!(
        !site._daemon.log_text().contains(&token),
        "the log holds no device token"
    );

    let list = site.devices("alice");
    assert_eq!(list.len(), 2, "{list:?}");
    let first = list
        .iter()
        .find(|d| d["label"] == "Firefox on the laptop")
        .expect("listed");
    assert!(first["last_used_at"].as_i64().is_some(), "{first}");
    assert!(first["created_at"].as_i64().is_some(), "{first}");
    assert_eq!(first["client"], "portal", "{first}");
    let listing = site.env.ok(&["device", "list", "alice"], None);
    assert!(!listing.contains(&token), "{listing}");

    // Revoke one: that one is refused, the other still works.
    let id = first["id"].as_i64().expect("id").to_string();
    site.env.ok(&["device", "revoke", "alice", &id], None);
    assert_eq!(
        site.pin_and_device("alice", HOME, &token),
        "REJECT",
        "after revoke"
    );
    assert_eq!(site.pin_and_device("alice", HOME, &other), "ACCEPT");
    // Revoke all.
    let out = site.env.ok(&["device", "revoke", "alice", "--all"], None);
    assert!(out.contains("1 trusted device"), "{out}");
    assert_eq!(
        site.pin_and_device("alice", HOME, &other),
        "REJECT",
        "after --all"
    );
    assert!(site.devices("alice").is_empty());
    // A revoke of what is not there is an error naming it.
    let out = site.env.run(&["device", "revoke", "alice", "77"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no trusted device 77"));
}

#[test]
fn a_trusted_device_expires() {
    let site = Site::new(&TABLES.replace("\"30d\"", "\"2s\""));
    let token = site.remember("alice", HOME, "laptop");
    assert_eq!(site.pin_and_device("alice", HOME, &token), "ACCEPT");
    std::thread::sleep(std::time::Duration::from_millis(3100));
    assert_eq!(site.pin_and_device("alice", ELSEWHERE, &token), "REJECT");
    assert!(
        site.reasons("alice")
            .iter()
            .any(|r| r.contains("trusted device \"laptop\" expired")),
        "{:?}",
        site.reasons("alice")
    );
    assert_eq!(
        site.failures("alice"),
        1,
        "an expired device is a counted failure"
    );
}

#[test]
fn a_token_delete_or_a_level_change_ends_every_trusted_device() {
    let site = Site::new(TABLES);
    let token = site.remember("alice", HOME, "laptop");
    site.env
        .ok(&["user", "set", "alice", "--level", "web-otp"], None);
    assert_eq!(
        site.pin_and_device("alice", HOME, &token),
        "REJECT",
        "after a level change"
    );
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
    let token = site.remember("alice", HOME, "laptop");
    assert_eq!(site.pin_and_device("alice", HOME, &token), "ACCEPT");
    site.env.ok(&["token", "delete", serial], None);
    assert_eq!(
        site.pin_and_device("alice", HOME, &token),
        "REJECT",
        "after a token delete"
    );
    assert!(site.devices("alice").is_empty());
}

#[test]
fn guessed_device_tokens_are_counted_and_lock_like_wrong_codes() {
    let site = Site::new(TABLES);
    let token = site.remember("alice", HOME, "laptop");
    // Elsewhere: the right PIN with made-up device tokens of the right shape.
    for i in 0..4 {
        let guess = format!("{}{i:03}", &token[..40]);
        assert_eq!(site.pin_and_device("alice", ELSEWHERE, &guess), "REJECT");
    }
    assert_eq!(site.failures("alice"), 4);
    // max_failures = 4: locked for every source but the familiar ones, as after 4 wrong
    // codes: the real device and a real code from elsewhere are refused now...
    assert_eq!(site.pin_and_device("alice", ELSEWHERE, &token), "REJECT");
    let pw = format!("1234{}", site.code("alice"));
    let v = site.check(ELSEWHERE, &[("user", "alice"), ("pass", &pw)], None);
    assert_eq!(v["result"]["authentication"], "REJECT", "{v}");
    assert!(
        site.reasons("alice")
            .iter()
            .any(|r| r.contains("account locked")),
        "{:?}",
        site.reasons("alice")
    );
    // ...while the user at home still gets in (familiar sources count apart).
    assert_eq!(site.pin_and_device("alice", HOME, &token), "ACCEPT");
    // A wrong PIN with the real device token is counted too.
    site.env.ok(&["user", "unlock", "alice"], None);
    assert_eq!(
        site.with_device("alice", ELSEWHERE, "9999", &token),
        "REJECT"
    );
    assert_eq!(site.failures("alice"), 1);
}

#[test]
fn a_device_token_works_only_for_its_account_client_and_class() {
    let site = Site::new(TABLES);
    let token = site.remember("alice", HOME, "laptop");
    // bob, with his own (right) PIN and alice's device token.
    assert_eq!(site.pin_and_device("bob", HOME, &token), "REJECT");
    assert_eq!(site.failures("bob"), 1, "counted for bob");
    // alice through another HTTP client (the webmail), and from an address whose logins
    // count as mail, a class that allows trusted devices too.
    assert_eq!(
        site.pin_and_device("alice", WEBMAIL, &token),
        "REJECT",
        "another client"
    );
    assert_eq!(
        site.pin_and_device("alice", MAIL_SOURCE, &token),
        "REJECT",
        "another class"
    );
    assert_eq!(site.failures("alice"), 2);
    let reasons = site.reasons("alice");
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("through client portal, not webmail")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("trusted for web, not mail")),
        "{reasons:?}"
    );
    // Where it belongs it still works (which also clears alice's failures).
    assert_eq!(site.pin_and_device("alice", HOME, &token), "ACCEPT");
    assert_eq!(site.failures("alice"), 0);
}

#[test]
fn no_device_where_the_class_does_not_allow_one_and_bad_parameters() {
    let site = Site::new(TABLES);
    let pw = format!("1234{}", site.code("alice"));
    let v = site.check(
        VPN_GATEWAY,
        &[("user", "alice"), ("pass", &pw), ("remember_device", "1")],
        None,
    );
    assert_eq!(v["result"]["authentication"], "ACCEPT", "{v}");
    assert!(
        v["detail"]["trusted_device"].is_null(),
        "vpn allows none: {v}"
    );
    // A remember_device that is no boolean: privacyIDEA's parameter error.
    let a = curl(&[
        "--data-urlencode",
        "user=alice",
        "--data-urlencode",
        "pass=1234",
        "--data-urlencode",
        "remember_device=please",
        &format!("http://127.0.0.1:{}/validate/check", site.port),
    ]);
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.json()["result"]["error"]["code"], 905, "{}", a.body);
    // radiuscheck cannot carry a device token back: it refuses to make one (400), and no
    // device is made.
    let pw = format!("1234{}", site.code("alice"));
    let a = curl(&[
        "--data-urlencode",
        "user=alice",
        "--data-urlencode",
        &format!("pass={pw}"),
        "--data-urlencode",
        "remember_device=1",
        &format!("http://127.0.0.1:{}/validate/radiuscheck", site.port),
    ]);
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(site.devices("alice").is_empty());
    // A lifetime over 180 days is refused at load with the key named.
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

#[test]
fn otpd_check_trusts_and_uses_a_device_too() {
    let env = Env::with_tables("", TABLES);
    env.enrol("alice", "1234", "hotp", "everywhere");
    let login = |password: &str, client: &str, extra: &[&str]| -> Value {
        let mut args = vec![
            "check",
            "alice",
            "--service",
            "web",
            "--client",
            client,
            "--json",
        ];
        args.extend_from_slice(extra);
        let out = env.run(&args, Some(&format!("{password}\n")));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "check output is not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    };
    let pw = format!("1234{}", hotp_code(0));
    let v = login(&pw, "portal", &["--remember-device", "laptop"]);
    assert_eq!(v["verdict"], "accept", "{v}");
    let token = v["device_token"]
        .as_str()
        .expect("device token")
        .to_string();
    let v = login("1234", "portal", &["--device-token", &token]);
    assert_eq!(v["verdict"], "accept", "{v}");
    let v = login("1234", "other", &["--device-token", &token]);
    assert_eq!(v["verdict"], "reject", "{v}");
}
