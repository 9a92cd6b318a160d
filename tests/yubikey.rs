//! YubiKey (Yubico OTP) validated locally, with OTPs made by Python's `yubiotp` package, not
//! by otpd: accepted once, refused on replay, when the counter goes backwards, with a wrong
//! AES key and with another key's public id. Enrolment by `token add` and by `token import`
//! of the personalization tool's CSV log.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job
mod common;
use common::{yubiotp, Env};

const PUBLIC_ID: &str = "vvccccfhcbbc";
const PRIVATE_ID: &str = "8792ebfe26cc";
const AES_KEY: &str = "ecde18dbe76fbd0c33330f1c354871db";

fn alice_with_yubikey(env: &Env) -> String {
    env.ok(&["user", "add", "alice", "--pin-stdin"], Some("1234\n"));
    let out = env.ok(
        &[
            "token",
            "add",
            "alice",
            "--type",
            "yubikey",
            "--public-id",
            PUBLIC_ID,
            "--private-id",
            PRIVATE_ID,
            "--aes-key",
            AES_KEY,
            "--active",
            "--json",
        ],
        None,
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["type"], "yubikey");
    assert_eq!(v["public_id"], PUBLIC_ID);
    assert!(
        !out.contains(AES_KEY) && !out.contains(PRIVATE_ID),
        "secrets are never printed back: {out}"
    );
    env.ok(&["user", "set", "alice", "--level", "everywhere"], None);
    v["serial"].as_str().expect("serial").to_string()
}

fn otp(use_ctr: u16, session: u8) -> String {
    yubiotp(PRIVATE_ID, AES_KEY, PUBLIC_ID, use_ctr, session)
}

#[test]
fn independent_otp_is_accepted_once_and_replay_is_refused() {
    let env = Env::new("");
    let serial = alice_with_yubikey(&env);
    let o = otp(3, 0);
    assert_eq!(o.len(), 44);
    let v = env.check("alice", "vpn", &format!("1234{o}"));
    assert_eq!(v["verdict"], "accept", "{v}");
    assert_eq!(v["serial"], serial.as_str());
    let v = env.check("alice", "vpn", &format!("1234{o}"));
    assert_eq!(v["verdict"], "reject", "replay: {v}");
    assert!(
        v["reason"].as_str().unwrap_or("").contains("already used"),
        "{v}"
    );
    // The next touch (session counter up) works; a new power-up (use counter up) too.
    for (u, s) in [(3, 1), (3, 2), (4, 0)] {
        let v = env.check("alice", "vpn", &format!("1234{}", otp(u, s)));
        assert_eq!(v["verdict"], "accept", "use {u} session {s}: {v}");
    }
}

#[test]
fn counter_going_backwards_is_refused() {
    let env = Env::new("");
    alice_with_yubikey(&env);
    let v = env.check("alice", "vpn", &format!("1234{}", otp(5, 7)));
    assert_eq!(v["verdict"], "accept", "{v}");
    // Fresh OTPs (new random, new ciphertext) that were never used, but older than the last.
    for (u, s) in [(5, 6), (5, 7), (4, 200), (0, 0)] {
        let v = env.check("alice", "vpn", &format!("1234{}", otp(u, s)));
        assert_eq!(v["verdict"], "reject", "use {u} session {s}: {v}");
    }
    env.ok(&["user", "unlock", "alice"], None);
    let v = env.check("alice", "vpn", &format!("1234{}", otp(5, 8)));
    assert_eq!(v["verdict"], "accept", "{v}");
}

#[test]
fn wrong_aes_key_foreign_public_id_and_wrong_pin_are_refused() {
    // Many failures in a row here: keep the throttle out of the way.
    let env = Env::new("lockout.free_failures = 100\nlockout.max_failures = 0\n");
    alice_with_yubikey(&env);
    let wrong_key = yubiotp(
        PRIVATE_ID,
        "00112233445566778899aabbccddeeff",
        PUBLIC_ID,
        1,
        0,
    );
    let v = env.check("alice", "vpn", &format!("1234{wrong_key}"));
    assert_eq!(v["verdict"], "reject", "{v}");
    assert!(
        v["reason"].as_str().unwrap_or("").contains("AES key"),
        "{v}"
    );
    let foreign = yubiotp(PRIVATE_ID, AES_KEY, "vvccccfhcbbd", 1, 0);
    let v = env.check("alice", "vpn", &format!("1234{foreign}"));
    assert_eq!(v["verdict"], "reject", "{v}");
    assert!(
        v["reason"]
            .as_str()
            .unwrap_or("")
            .contains("another YubiKey"),
        "{v}"
    );
    let wrong_private = yubiotp("000000000000", AES_KEY, PUBLIC_ID, 1, 0);
    let v = env.check("alice", "vpn", &format!("1234{wrong_private}"));
    assert_eq!(v["verdict"], "reject", "{v}");
    // A good OTP behind a wrong PIN is refused and not spent: the right PIN still works.
    let good = otp(1, 0);
    let v = env.check("alice", "vpn", &format!("9999{good}"));
    assert_eq!(v["verdict"], "reject", "{v}");
    assert!(
        v["reason"].as_str().unwrap_or("").contains("wrong PIN"),
        "{v}"
    );
    let v = env.check("alice", "vpn", &format!("1234{good}"));
    assert_eq!(v["verdict"], "accept", "{v}");
    // Every failure showed the user the same message.
    let audit = common::audit_of(&env, "alice");
    assert!(audit.iter().all(|r| !r.to_string().contains(AES_KEY)));
}

#[test]
fn pending_yubikey_is_activated_by_one_otp() {
    let env = Env::new("");
    env.ok(&["user", "add", "bob", "--pin-stdin"], Some("1234\n"));
    let out = env.ok(
        &[
            "token",
            "add",
            "bob",
            "--type",
            "yubikey",
            "--public-id",
            PUBLIC_ID,
            "--private-id",
            PRIVATE_ID,
            "--aes-key",
            AES_KEY,
            "--json",
        ],
        None,
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["state"], "pending");
    let serial = v["serial"].as_str().expect("serial");
    let first = otp(1, 0);
    env.ok(&["token", "activate", serial, &first], None);
    env.ok(&["user", "set", "bob", "--level", "everywhere"], None);
    assert_eq!(
        env.check("bob", "vpn", &format!("1234{first}"))["verdict"],
        "reject"
    );
    assert_eq!(
        env.check("bob", "vpn", &format!("1234{}", otp(1, 1)))["verdict"],
        "accept"
    );
}

#[test]
fn bad_enrolment_input_gets_clear_errors() {
    let env = Env::new("");
    env.ok(&["user", "add", "carol", "--pin-stdin"], Some("1234\n"));
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "--public-id",
                "vvccccfhcbb",
                "--private-id",
                PRIVATE_ID,
                "--aes-key",
                AES_KEY,
            ],
            "12 modhex",
        ),
        (
            &[
                "--public-id",
                "vvccccfhcbbx",
                "--private-id",
                PRIVATE_ID,
                "--aes-key",
                AES_KEY,
            ],
            "modhex",
        ),
        (
            &[
                "--public-id",
                PUBLIC_ID,
                "--private-id",
                "8792ebfe26",
                "--aes-key",
                AES_KEY,
            ],
            "--private-id",
        ),
        (
            &[
                "--public-id",
                PUBLIC_ID,
                "--private-id",
                PRIVATE_ID,
                "--aes-key",
                "zz",
            ],
            "--aes-key",
        ),
        (
            &["--public-id", PUBLIC_ID, "--private-id", PRIVATE_ID],
            "--aes-key",
        ),
    ];
    for (args, want) in cases {
        let mut a = vec!["token", "add", "carol", "--type", "yubikey"];
        a.extend_from_slice(args);
        let out = env.run(&a, None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // One key, one token.
    alice_with_yubikey(&env);
    let out = env.run(
        &[
            "token",
            "add",
            "carol",
            "--type",
            "yubikey",
            "--public-id",
            PUBLIC_ID,
            "--private-id",
            PRIVATE_ID,
            "--aes-key",
            AES_KEY,
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already token"));
}

#[test]
fn import_of_the_personalization_tools_log() {
    let env = Env::new("");
    for u in ["dave", "erin"] {
        env.ok(&["user", "add", u, "--pin-stdin"], Some("1234\n"));
    }
    let key2 = "a47c5bf9c152202f577be6721c0113af";
    let pid2 = "cccccccccccb";
    let priv2 = "83cebdfb7b93";
    // Both layouts the tools write, with lines of other modes that must be skipped.
    let csv = format!(
        "Yubico OTP,12/11/2013 11:10,1,{PUBLIC_ID},{PRIVATE_ID},{AES_KEY},,,0,0,0,0,0,0,0,0,0,0\n\
         OATH-HOTP,11.12.13 18:55,1,cccccccccccc,,916821d3a138bf855e70069605559a206ba854cd,,,0,0,0,6,0,0,0,0,0,0\n\
         Static Password,11.12.13 19:08,1,,d5a3d50327dc,0e8e37b0e38b314a56748c030f58d21d,,,0,0,0,0,0,0,0,0,0,0\n\
         # Yubico format\n\
         508326,,0,69cfb9202438ca68964ec3244bfa4843d073a43b,,2013-12-12T08:41:07,\n\
         508327,{pid2},{priv2},{key2},,2013-12-12T08:43:17,\n"
    );
    let file = env.path().join("configuration_log.csv");
    std::fs::write(&file, csv).expect("csv");
    let map = env.path().join("owners.csv");
    std::fs::write(&map, format!("{PUBLIC_ID},dave\n{pid2},erin\n")).expect("map");
    let out = env.ok(
        &[
            "token",
            "import",
            "--format",
            "yubico-csv",
            file.to_str().expect("path"),
            "--users",
            map.to_str().expect("path"),
            "--active",
            "--json",
        ],
        None,
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["imported"].as_array().map(Vec::len), Some(2), "{v}");
    assert_eq!(v["skipped"].as_array().map(Vec::len), Some(3), "{v}");
    for u in ["dave", "erin"] {
        env.ok(&["user", "set", u, "--level", "everywhere"], None);
    }
    let d = env.check("dave", "vpn", &format!("1234{}", otp(1, 0)));
    assert_eq!(d["verdict"], "accept", "{d}");
    let e = env.check(
        "erin",
        "vpn",
        &format!("1234{}", yubiotp(priv2, key2, pid2, 1, 0)),
    );
    assert_eq!(e["verdict"], "accept", "{e}");
    // dave's key is not erin's.
    let x = env.check("erin", "vpn", &format!("1234{}", otp(2, 0)));
    assert_eq!(x["verdict"], "reject", "{x}");

    // Importing again: the keys are taken, nothing changes, the line is named.
    let out = env.run(
        &[
            "token",
            "import",
            "--format",
            "yubico-csv",
            file.to_str().expect("path"),
            "--user",
            "dave",
        ],
        None,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 1") && err.contains("nothing was imported"),
        "{err}"
    );

    // A damaged line stops the whole import.
    let bad = env.path().join("bad.csv");
    std::fs::write(
        &bad,
        "Yubico OTP,12/11/2013 11:10,1,vvccccfhcbbd,8792ebfe26cc,nothex\n",
    )
    .expect("bad");
    let out = env.run(
        &[
            "token",
            "import",
            "--format",
            "yubico-csv",
            bad.to_str().expect("path"),
            "--user",
            "dave",
        ],
        None,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("AES key"), "{err}");
}
