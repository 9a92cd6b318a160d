//! Brute force through a front-end (issue 7, item 4), over the real daemon's Unix socket with
//! `rhost` set as pam_otpd.so sends it: guessing from one address is blocked for that account
//! below the account lock, so the real user, elsewhere, still logs in; guessing from many
//! addresses is refused unseen by the account's delay and then locks the account, so it gets
//! nowhere. The engine unit tests `one_address_guessing_cannot_lock_the_real_user_out` and
//! `guessing_from_many_addresses_gets_nowhere` check the same in-process; this is the
//! front-end path (protocol, rhost, audit).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job
mod common;
mod harden;

use common::{hotp_code, Env};
use harden::*;
use serde_json::Value;
use std::time::{Duration, Instant};

fn ask(env: &Env, password: &str, rhost: &str) -> Value {
    socket_call_within(
        &env.socket_path(),
        &check_req("alice", password, "ssh", Some(rhost)),
        Duration::from_secs(10),
    )
    .expect("an answer")
}

fn account(env: &Env) -> Value {
    serde_json::from_str(&env.ok(&["user", "show", "alice", "--json"], None)).expect("json")
}

fn failures(v: &Value) -> u64 {
    v["failures"]
        .as_u64()
        .or_else(|| v["account"]["failures"].as_u64())
        .unwrap_or_else(|| panic!("no failure count in {v}"))
}

/// The newest audit record of alice from `rhost`.
fn last_reason(env: &Env, rhost: &str, n: usize) -> String {
    let recs = audit_settled(env, Some("alice"), n);
    recs.iter()
        .rev()
        .find(|r| r["rhost"] == rhost)
        .map(|r| r["reason"].as_str().unwrap_or("").to_string())
        .unwrap_or_else(|| panic!("no record from {rhost}: {recs:?}"))
}

#[test]
fn one_address_guessing_is_blocked_and_cannot_lock_the_real_user_out() {
    // No delay (only the limits under test act); the lock would come at 6 failures, and the
    // per-(address, account) limit asked for is 50, held below the lock at 5.
    let env = Env::with_tables(
        "",
        "[lockout]\nfree_failures = 100\nmax_failures = 6\nper_source_max_failures = 50\n",
    );
    env.enrol("alice", "1234", "hotp", "everywhere");
    let d = env.start();
    let attacker = "198.51.100.66";
    for i in 0..20 {
        let v = ask(&env, "1234999999", attacker);
        assert_eq!(v["verdict"], "reject", "guess {i}: {v}");
        assert_eq!(v["message"], "Login failed", "every failure looks alike");
    }
    let reason = last_reason(&env, attacker, 20);
    assert!(
        reason.contains("source address blocked for this account"),
        "{reason}"
    );
    let acct = account(&env);
    assert_eq!(
        failures(&acct),
        5,
        "one address reaches max_failures - 1: {acct}"
    );
    assert_ne!(acct["locked"], true, "{acct}");

    // The blocked address is refused even with the right code, which stays unused ...
    let good = format!("1234{}", hotp_code(0));
    assert_eq!(ask(&env, &good, attacker)["verdict"], "reject");
    // ... and the real user, from their own address, logs in with it.
    let v = ask(&env, &good, "203.0.113.5");
    assert_eq!(v["verdict"], "accept", "{v}");
    assert_eq!(failures(&account(&env)), 0, "a success clears the count");
    // The attacker's address stays blocked for alice after her login.
    assert_eq!(ask(&env, "1234999999", attacker)["verdict"], "reject");
    let reason = last_reason(&env, attacker, 23);
    assert!(reason.contains("source address blocked"), "{reason}");
    let log = plain_log(&d);
    assert!(!log.contains("999999"), "no guess in the log");
    assert!(d.stop().success());
}

#[test]
fn guessing_from_many_addresses_is_refused_unseen_and_locks_the_account() {
    // Delay 1 s (not doubling further), lock at 6 failures for an hour.
    let env = Env::with_tables(
        "",
        "[lockout]\nfree_failures = 3\ndelay = \"1s\"\nmax_delay = \"1s\"\nmax_failures = 6\n\
         lock_duration = \"1h\"\n",
    );
    env.enrol("alice", "1234", "hotp", "everywhere");
    let d = env.start();
    // 200 guesses from 200 addresses, as fast as they come.
    for i in 0..200 {
        let v = ask(&env, "1234999999", &format!("10.9.{}.{}", i / 250, i % 250));
        assert_eq!(v["verdict"], "reject");
    }
    let recs = audit_settled(&env, Some("alice"), 200);
    let evaluated = recs
        .iter()
        .filter(|r| r["reason"].as_str().is_some_and(|s| s.contains("wrong")))
        .count();
    let unseen = recs
        .iter()
        .filter(|r| {
            r["reason"]
                .as_str()
                .is_some_and(|s| s.contains("throttled"))
        })
        .count();
    eprintln!("burst of 200: {evaluated} evaluated, {unseen} refused unseen");
    // Each second of the burst lets one guess through the delay: a handful at most.
    assert!(
        evaluated <= 3 + 20,
        "only the free failures and one per delay were evaluated: {evaluated}"
    );
    assert!(unseen >= 150, "{unseen} refused unseen");

    // An attacker who waits out each delay, from a new address each time, reaches the lock.
    let start = Instant::now();
    let mut i = 0;
    while account(&env)["locked"] != true {
        assert!(start.elapsed() < Duration::from_secs(30), "never locked");
        std::thread::sleep(Duration::from_millis(1100));
        ask(&env, "1234999999", &format!("10.10.0.{i}"));
        i += 1;
    }
    // Now even the right code gets nowhere, from any address; it is not used up.
    let good = format!("1234{}", hotp_code(0));
    let v = ask(&env, &good, "203.0.113.5");
    assert_eq!(v["verdict"], "reject", "{v}");
    let reason = last_reason(&env, "203.0.113.5", 1);
    assert!(reason.contains("account locked"), "{reason}");
    // The admin's unlock lets the real user in with that very code.
    env.ok(&["user", "unlock", "alice"], None);
    assert_eq!(ask(&env, &good, "203.0.113.5")["verdict"], "accept");
    assert!(d.stop().success());
}
