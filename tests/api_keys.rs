//! `otpd api-key add|list|revoke` through the real binary: a key is shown once, stored only
//! as a keyed hash, listed without it, and revoked.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Env;

fn add(env: &Env, name: &str, scope: &str) -> String {
    let out = env.ok(&["api-key", "add", name, "--scope", scope, "--json"], None);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["name"], name);
    assert_eq!(v["scope"], scope);
    v["key"].as_str().expect("key").to_string()
}

#[test]
fn a_key_is_shown_once_kept_as_a_keyed_hash_listed_and_revoked() {
    let env = Env::new("");
    let key = add(&env, "portal", "portal");
    assert!(key.starts_with("otpd_") && key.len() == 5 + 43, "{key}");
    let other = add(&env, "helpdesk", "admin");
    assert_ne!(key, other);

    // Neither the key nor its random part is anywhere in the data directory.
    let raw = &key["otpd_".len()..];
    for entry in std::fs::read_dir(env.path().join("data")).expect("data dir") {
        let p = entry.expect("entry").path();
        let bytes = std::fs::read(&p).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(raw), "{} holds the key", p.display());
    }

    let list = env.ok(&["api-key", "list"], None);
    assert!(
        list.contains("portal") && list.contains("helpdesk"),
        "{list}"
    );
    assert!(!list.contains(raw), "list shows the key: {list}");
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["api-key", "list", "--json"], None)).expect("json");
    let names: Vec<&str> = json
        .as_array()
        .expect("array")
        .iter()
        .map(|k| k["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["helpdesk", "portal"]);
    assert!(json
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k.get("key").is_none()));
    assert!(json[1]["last_used_at"].is_null());

    // A name is unique; a bad scope or name gets a clear error, not a panic.
    let dup = env.run(&["api-key", "add", "portal", "--scope", "read"], None);
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("exists"));
    let bad = env.run(&["api-key", "add", "x", "--scope", "root"], None);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("admin, portal or read"));
    let bad = env.run(&["api-key", "add", "two words", "--scope", "read"], None);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("name") && !err.contains("panicked"), "{err}");

    env.ok(&["api-key", "revoke", "portal"], None);
    let list = env.ok(&["api-key", "list"], None);
    assert!(!list.contains("portal"), "{list}");
    let again = env.run(&["api-key", "revoke", "portal"], None);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("no API key named"));
}

#[test]
fn keys_survive_key_rotation() {
    let env = Env::new("");
    add(&env, "portal", "portal");
    env.ok(&["key", "rotate"], None);
    // Listed still; that the key itself still opens the API is tests/http_api.rs's business.
    assert!(env.ok(&["api-key", "list"], None).contains("portal"));
}
