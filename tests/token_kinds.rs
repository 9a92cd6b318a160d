//! `otpd token add KIND USER ...`, one subcommand per registered kind, and the older
//! `token add USER --type KIND ...` read the same (issue 16, item 3).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job
mod common;
use common::{Env, SECRET_B32};

fn stderr(env: &Env, args: &[&str]) -> String {
    let out = env.run(args, None);
    assert!(!out.status.success(), "{args:?} succeeded");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn the_subcommand_spelling_enrols_and_logs_in() {
    let env = Env::new("");
    env.ok(&["user", "add", "alice", "--pin-stdin"], Some("1234\n"));
    let out = env.ok(
        &[
            "token", "add", "hotp", "alice", "--secret", SECRET_B32, "--json",
        ],
        None,
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["type"], "hotp");
    assert_eq!(v["state"], "pending");
    assert_eq!(v["digits"], 6);
    let serial = v["serial"].as_str().expect("serial");
    assert!(serial.starts_with("HOTP"), "{serial}");
    env.ok(&["token", "activate", serial, &common::hotp_code(0)], None);
    env.ok(&["user", "set", "alice", "--level", "everywhere"], None);
    let v = env.check("alice", "vpn", &format!("1234{}", common::hotp_code(1)));
    assert_eq!(v["verdict"], "accept", "{v}");
    // The other kinds by their subcommand, each with only its own flags.
    let out = env.ok(
        &[
            "token",
            "add",
            "motp",
            "alice",
            "--secret",
            "0123456789abcdef",
            "--mpin",
            "5555",
            "--active",
            "--json",
        ],
        None,
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["type"], "motp");
    let out = env.ok(
        &[
            "token",
            "add",
            "email",
            "alice",
            "--address",
            "alice@example.org",
            "--active",
            "--json",
        ],
        None,
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["type"], "email");
    assert_eq!(v["address"], "a***@example.org");
    assert!(v.get("public_id").is_none(), "{v}");
    let shown = env.ok(
        &["token", "show", v["serial"].as_str().expect("serial")],
        None,
    );
    assert!(shown.contains("address:    alice@example.org"), "{shown}");
}

#[test]
fn wrong_kinds_and_flags_are_named() {
    let env = Env::new("");
    env.ok(&["user", "add", "bob", "--pin-stdin"], Some("1234\n"));
    let err = stderr(&env, &["token", "add", "bob"]);
    assert!(err.contains("`bob` is not a token kind"), "{err}");
    assert!(err.contains("totp, hotp"), "{err}");
    let err = stderr(&env, &["token", "add", "bob", "--type"]);
    assert!(err.contains("a value is required for '--type"), "{err}");
    let err = stderr(&env, &["token", "add", "bob", "--type", "backup"]);
    assert!(err.contains("invalid value 'backup'"), "{err}");
    let err = stderr(
        &env,
        &["token", "add", "email", "bob", "--secret", SECRET_B32],
    );
    assert!(err.contains("--secret"), "{err}");
    let err = stderr(&env, &["token", "add", "sms", "bob"]);
    assert!(err.contains("sms"), "{err}");
    // Nothing was stored by any of them.
    let list = env.ok(&["token", "list", "bob", "--json"], None);
    assert_eq!(list.trim(), "[]");
}
