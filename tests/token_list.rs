//! `otpd token list` shows type, label, state and last use for every kind of token.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job
mod common;
use common::Env;

#[test]
fn list_shows_every_kind() {
    let env =
        Env::new("yubico.client_id = \"42\"\nyubico.api_key = \"c2VjcmV0LWtleS1mb3ItdGVzdHM=\"\n");
    env.enrol("alice", "1234", "totp", "everywhere");
    env.ok(
        &[
            "token",
            "add",
            "alice",
            "--type",
            "yubikey",
            "--public-id",
            "vvccccfhcbbc",
            "--private-id",
            "8792ebfe26cc",
            "--aes-key",
            "ecde18dbe76fbd0c33330f1c354871db",
            "--active",
        ],
        None,
    );
    env.ok(
        &[
            "token",
            "add",
            "alice",
            "--type",
            "yubikey-remote",
            "--public-id",
            "vvccccfhcbbd",
        ],
        None,
    );
    env.ok(
        &[
            "token",
            "add",
            "alice",
            "--type",
            "motp",
            "--secret",
            "7ac61d4736f51a2b",
            "--mpin",
            "4711",
            "--label",
            "old phone",
            "--active",
        ],
        None,
    );
    let set = env.ok(&["backup-codes", "generate", "alice", "--json"], None);
    let code = serde_json::from_str::<serde_json::Value>(&set).expect("json")["codes"][0]
        .as_str()
        .expect("code")
        .to_string();
    assert_eq!(
        env.check("alice", "vpn", &format!("1234{code}"))["verdict"],
        "accept"
    );

    let out = env.ok(&["token", "list", "alice", "--json"], None);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let list = v.as_array().expect("array");
    let types: Vec<&str> = list.iter().filter_map(|t| t["type"].as_str()).collect();
    assert_eq!(
        types,
        ["totp", "yubikey", "yubikey-remote", "motp", "backup"]
    );
    for t in list {
        for key in ["serial", "type", "state", "label", "last_used_at"] {
            assert!(t.get(key).is_some(), "{key} missing in {t}");
        }
    }
    assert_eq!(list[2]["state"], "pending");
    assert_eq!(list[3]["label"], "old phone");
    assert_eq!(list[4]["codes_left"], 9);
    assert!(!list[4]["last_used_at"].is_null());
    assert!(!out.contains("ecde18dbe76fbd0c33330f1c354871db") && !out.contains("7ac61d47"));

    let text = env.ok(&["token", "list", "alice"], None);
    for want in [
        "yubikey-remote",
        "vvccccfhcbbc",
        "old phone",
        "9 of 10 codes left",
        "pending",
        "never",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
}
