//! Backup codes: printed once, each works once (also under 16 parallel requests: one
//! Accept), a new set replaces the old one entirely, status counts, use is audited.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job
mod common;
use common::Env;

fn codes(env: &Env, user: &str) -> Vec<String> {
    let out = env.ok(&["backup-codes", "generate", user, "--json"], None);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let codes: Vec<String> = v["codes"]
        .as_array()
        .expect("codes")
        .iter()
        .map(|c| c.as_str().expect("code").to_string())
        .collect();
    assert_eq!(codes.len(), 10);
    for c in &codes {
        assert!(c.len() == 8 && c.bytes().all(|b| b.is_ascii_digit()), "{c}");
    }
    codes
}

fn status(env: &Env, user: &str) -> (u64, u64) {
    let out = env.ok(&["backup-codes", "status", user, "--json"], None);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert!(
        !out.contains("\"codes\""),
        "status never shows codes: {out}"
    );
    (
        v["left"].as_u64().expect("left"),
        v["total"].as_u64().expect("total"),
    )
}

/// alice with PIN 1234 and a TOTP token, level everywhere.
fn alice(env: &Env) {
    env.enrol("alice", "1234", "totp", "everywhere");
}

#[test]
fn a_code_works_once_and_is_audited() {
    let env = Env::new("");
    alice(&env);
    assert_eq!(status(&env, "alice"), (0, 0));
    let set = codes(&env, "alice");
    assert_eq!(status(&env, "alice"), (10, 10));
    let v = env.check("alice", "vpn", &format!("1234{}", set[3]));
    assert_eq!(v["verdict"], "accept", "{v}");
    let serial = v["serial"].as_str().expect("serial").to_string();
    assert!(serial.starts_with("BKUP"), "{serial}");
    assert!(
        v["reason"].as_str().unwrap_or("").contains("backup code"),
        "{v}"
    );
    let v = env.check("alice", "vpn", &format!("1234{}", set[3]));
    assert_eq!(v["verdict"], "reject", "used twice: {v}");
    assert_eq!(status(&env, "alice"), (9, 10));
    // The PIN is needed in front of it.
    let v = env.check("alice", "vpn", &format!("9999{}", set[4]));
    assert_eq!(v["verdict"], "reject", "{v}");
    let v = env.check("alice", "vpn", &set[4]);
    assert_eq!(v["verdict"], "reject", "{v}");
    assert_eq!(status(&env, "alice"), (9, 10));
    // The audit names the backup token and never a code.
    let audit = common::audit_of(&env, "alice");
    let accepted: Vec<_> = audit.iter().filter(|r| r["verdict"] == "accept").collect();
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0]["serial"], serial.as_str());
    assert!(accepted[0]["reason"]
        .as_str()
        .unwrap_or("")
        .contains("backup code used, 9 left"));
    let all = serde_json::to_string(&audit).expect("json");
    for c in &set {
        assert!(!all.contains(c.as_str()), "audit holds a code");
    }
    // token list shows the backup codes as a token of their own.
    let list = env.ok(&["token", "list", "alice"], None);
    assert!(list.contains("backup"), "{list}");
}

#[test]
fn regeneration_replaces_the_whole_set() {
    let env = Env::new("lockout.free_failures = 100\nlockout.max_failures = 0\n");
    alice(&env);
    let old = codes(&env, "alice");
    assert_eq!(
        env.check("alice", "vpn", &format!("1234{}", old[0]))["verdict"],
        "accept"
    );
    let new = codes(&env, "alice");
    assert_eq!(status(&env, "alice"), (10, 10));
    for c in &old[1..] {
        if new.contains(c) {
            continue; // a fresh draw may repeat an old code by chance; that one is new now
        }
        let v = env.check("alice", "vpn", &format!("1234{c}"));
        assert_eq!(v["verdict"], "reject", "old code {c} still works: {v}");
    }
    let v = env.check("alice", "vpn", &format!("1234{}", new[9]));
    assert_eq!(v["verdict"], "accept", "{v}");
    assert_eq!(status(&env, "alice"), (9, 10));
    // One backup token per account, whatever the number of sets.
    let list = env.ok(&["token", "list", "alice", "--json"], None);
    let v: serde_json::Value = serde_json::from_str(&list).expect("json");
    let n = v
        .as_array()
        .expect("list")
        .iter()
        .filter(|t| t["type"] == "backup")
        .count();
    assert_eq!(n, 1);
}

#[test]
fn sixteen_parallel_uses_of_one_code_give_one_accept() {
    let env = Env::new("lockout.free_failures = 100\nlockout.max_failures = 0\n");
    alice(&env);
    let set = codes(&env, "alice");
    let pw = format!("1234{}", set[0]);
    let verdicts: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|_| s.spawn(|| env.check("alice", "vpn", &pw)["verdict"].to_string()))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let accepts = verdicts.iter().filter(|v| v.contains("accept")).count();
    assert_eq!(accepts, 1, "{verdicts:?}");
    assert_eq!(status(&env, "alice"), (9, 10));
}

#[test]
fn printed_sheet_shows_the_codes_once() {
    let env = Env::new("");
    alice(&env);
    let out = env.ok(&["backup-codes", "generate", "alice"], None);
    assert!(out.contains("Backup codes for alice"), "{out}");
    let codes: Vec<&str> = out
        .split_whitespace()
        .filter(|w| w.len() == 8 && w.bytes().all(|b| b.is_ascii_digit()))
        .collect();
    assert_eq!(codes.len(), 10, "{out}");
    let v = env.check("alice", "vpn", &format!("1234{}", codes[7]));
    assert_eq!(v["verdict"], "accept", "{v}");
    let out = env.run(&["backup-codes", "status", "nobody"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user"));
}
