//! `otpd user import`: many accounts in one transaction, clear errors naming the line, and
//! nothing imported when any line is wrong.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job
mod common;
use common::{hotp_code, Env, SECRET_B32};

fn line(user: &str, pin: &str, level: &str, counter: u64) -> String {
    format!(
        r#"{{"user":"{user}","pin":"{pin}","level":"{level}","tokens":[{{"type":"hotp","secret":"{SECRET_B32}","digits":6,"counter":{counter}}}]}}"#
    )
}

#[test]
fn imports_accounts_that_then_log_in() {
    let env = Env::new("");
    let mut input: String = (0..500)
        .map(|i| line(&format!("user{i}"), "1234", "everywhere", 3) + "\n")
        .collect();
    input.push_str(&format!(
        r#"{{"user":"tina","pin":"abcd","level":"everywhere","tokens":[{{"type":"totp","secret":"{SECRET_B32}","period":30,"label":"phone"}}]}}"#
    ));
    input.push_str("\n\n{\"user\":\"nopin\"}\n");
    let file = env.path().join("accounts.jsonl");
    std::fs::write(&file, input).expect("write");
    let out = env.ok(
        &["user", "import", file.to_str().expect("path"), "--json"],
        None,
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["accounts"], 502);
    assert_eq!(v["tokens"], 501);
    // The counter given is the next code the token shows: that code works, the one before not.
    let pw = format!("1234{}", hotp_code(3));
    assert_eq!(env.check("user42", "vpn", &pw)["verdict"], "accept");
    let old = format!("1234{}", hotp_code(2));
    assert_eq!(env.check("user43", "vpn", &old)["verdict"], "reject");
    assert_eq!(
        env.check("tina", "vpn", &format!("abcd{}", common::totp_code_now()))["verdict"],
        "accept"
    );
    // Importing the same file again conflicts on every account and changes nothing.
    let again = env.run(&["user", "import", file.to_str().expect("path")], None);
    assert_eq!(again.status.code(), Some(1));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("line 1: user `user0` already exists"), "{err}");
    assert!(err.contains("nothing was imported"), "{err}");
}

#[test]
fn one_bad_line_imports_nothing_and_every_error_names_its_line() {
    let env = Env::new("");
    let input = [
        line("ann", "1234", "everywhere", 0),
        line("bob", "12", "everywhere", 0),
        line("ann", "1234", "everywhere", 0),
        r#"{"user":"cid","pin":"1234","level":"everywhere","tokens":[{"type":"hotp","secret":"NOT-BASE32!"}]}"#.to_string(),
        r#"{"user":"dan","pin":"1234","level":"everywhere"}"#.to_string(),
        r#"{"user":"eve","pim":"1234"}"#.to_string(),
        "not json".to_string(),
        line("fay", "1234", "nosuchlevel", 0),
        format!(r#"{{"user":"gus","tokens":[{{"type":"sms","secret":"{SECRET_B32}"}}]}}"#),
    ]
    .join("\n");
    let out = env.run(&["user", "import", "-"], Some(&input));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "line 2: user `bob`: PIN must have 4 to 8 characters",
        "line 3: user `ann` appears twice",
        "line 4: user `cid`: tokens[0]: secret is not valid base32",
        "line 5: user `dan`: level `everywhere` needs a one-time code",
        "line 6: not a valid account: unknown field `pim`",
        "line 7: not a valid account",
        "line 8: user `fay`: unknown level `nosuchlevel`",
        "line 9: user `gus`: tokens[0]: type `sms`",
        "nothing was imported",
    ] {
        assert!(err.contains(want), "missing `{want}` in:\n{err}");
    }
    assert!(!err.contains("1234"), "a PIN leaked into an error: {err}");
    let list = env.ok(&["user", "list", "--json"], None);
    assert_eq!(list.trim(), "[]", "nothing may be imported: {list}");
}
