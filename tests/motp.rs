//! mOTP with codes computed independently in the test by Python's hashlib:
//! md5(str(unix_time // 10) + secret + mPIN), first 6 hex digits. Accepted once, replay
//! refused, the ±3 minute window, an older code after a newer one refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job
mod common;
use common::{python, unix_now, Env};

const SECRET: &str = "7ac61d4736f51a2b";
const MPIN: &str = "4711";

fn motp_code(t: i64) -> String {
    common::require("python3", "python3");
    python(
        "import hashlib, sys\n\
         t, secret, mpin = int(sys.argv[1]), sys.argv[2], sys.argv[3]\n\
         print(hashlib.md5((str(t // 10) + secret + mpin).encode()).hexdigest()[:6])\n",
        &[&t.to_string(), SECRET, MPIN],
    )
}

fn alice(env: &Env) -> String {
    env.ok(&["user", "add", "alice", "--pin-stdin"], Some("1234\n"));
    let out = env.ok(
        &[
            "token", "add", "alice", "--type", "motp", "--secret", SECRET, "--mpin", MPIN,
            "--active", "--json",
        ],
        None,
    );
    assert!(
        !out.contains(SECRET) && !out.contains(MPIN),
        "never printed: {out}"
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["type"], "motp");
    env.ok(&["user", "set", "alice", "--level", "everywhere"], None);
    v["serial"].as_str().expect("serial").to_string()
}

#[test]
fn independent_code_is_accepted_once() {
    let env = Env::new("");
    let serial = alice(&env);
    let now = unix_now();
    let code = motp_code(now);
    let v = env.check("alice", "vpn", &format!("1234{code}"));
    assert_eq!(v["verdict"], "accept", "{v}");
    assert_eq!(v["serial"], serial.as_str());
    let v = env.check("alice", "vpn", &format!("1234{code}"));
    assert_eq!(v["verdict"], "reject", "replay: {v}");
    // Upper case is the same code (and so the same used code).
    let v = env.check("alice", "vpn", &format!("1234{}", code.to_uppercase()));
    assert_eq!(v["verdict"], "reject", "replay in upper case: {v}");
}

#[test]
fn window_is_three_minutes_and_used_steps_stay_used() {
    let env = Env::new("lockout.free_failures = 100\nlockout.max_failures = 0\n");
    alice(&env);
    let now = unix_now();
    // Four minutes behind: outside the window.
    let v = env.check("alice", "vpn", &format!("1234{}", motp_code(now - 240)));
    assert_eq!(v["verdict"], "reject", "{v}");
    // One minute behind: inside; the phone's offset is remembered.
    let v = env.check("alice", "vpn", &format!("1234{}", motp_code(now - 60)));
    assert_eq!(v["verdict"], "accept", "{v}");
    // An older, unused code: behind the one used, refused.
    let v = env.check("alice", "vpn", &format!("1234{}", motp_code(now - 90)));
    assert_eq!(v["verdict"], "reject", "{v}");
    // The next step's code works.
    let v = env.check("alice", "vpn", &format!("1234{}", motp_code(now - 50)));
    assert_eq!(v["verdict"], "accept", "{v}");
    // Wrong PIN with a good code: refused.
    let v = env.check("alice", "vpn", &format!("9999{}", motp_code(now + 20)));
    assert_eq!(v["verdict"], "reject", "{v}");
}

#[test]
fn bad_enrolment_input_gets_clear_errors() {
    let env = Env::new("");
    env.ok(&["user", "add", "bob", "--pin-stdin"], Some("1234\n"));
    for (args, want) in [
        (vec!["--secret", "xyz", "--mpin", MPIN], "hex"),
        (vec!["--secret", SECRET], "--mpin"),
        (vec!["--secret", SECRET, "--mpin", "1"], "--mpin"),
        (vec!["--mpin", MPIN], "--secret"),
    ] {
        let mut a = vec!["token", "add", "bob", "--type", "motp"];
        a.extend_from_slice(&args);
        let out = env.run(&a, None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}
