//! Issue 2 end to end through the real `otpd` binary: enrolment, checks, single use across
//! processes and restarts, and clear errors for bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job
mod common;

use common::{hotp_code, oathtool, Env, SECRET_B32};
use otpd::tokens::oath::{hotp, totp_step, Algorithm};
use std::os::unix::fs::PermissionsExt;

#[test]
fn codes_match_oathtool_at_several_counters_and_times() {
    let key = b"12345678901234567890";
    // oathtool's HOTP mode is SHA1 only; SHA256/SHA512 are cross-checked in TOTP mode below.
    for c in [0u64, 1, 9, 10, 99, 4242, 1 << 20] {
        for digits in [6u32, 8] {
            let theirs = oathtool(&[
                "--hotp",
                "-b",
                SECRET_B32,
                "-c",
                &c.to_string(),
                "-d",
                &digits.to_string(),
            ]);
            assert_eq!(
                hotp(Algorithm::Sha1, key, c, digits),
                theirs,
                "counter {c} digits {digits}"
            );
        }
    }
    for t in [
        59i64,
        1_111_111_109,
        1_234_567_890,
        2_000_000_000,
        1_800_000_015,
    ] {
        for period in [30u32, 60] {
            for (alg, name) in [
                (Algorithm::Sha1, "SHA1"),
                (Algorithm::Sha256, "SHA256"),
                (Algorithm::Sha512, "SHA512"),
            ] {
                for digits in [6u32, 8] {
                    let theirs = oathtool(&[
                        &format!("--totp={name}"),
                        "-b",
                        SECRET_B32,
                        "-s",
                        &format!("{period}s"),
                        "-d",
                        &digits.to_string(),
                        "-N",
                        &format!("@{t}"),
                    ]);
                    let ours = hotp(alg, key, totp_step(t, period) as u64, digits);
                    assert_eq!(ours, theirs, "{name} t={t} period={period} digits={digits}");
                }
            }
        }
    }
}

#[test]
fn enrol_activate_check_and_replay() {
    let env = Env::new("");
    env.ok(&["user", "add", "alice", "--pin-stdin"], Some("1234\n"));
    let out = env.ok(
        &[
            "token", "add", "alice", "--type", "hotp", "--secret", SECRET_B32, "--json",
        ],
        None,
    );
    let t: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(t["state"], "pending");
    assert!(t["uri"]
        .as_str()
        .expect("uri")
        .starts_with("otpauth://hotp/otpd:alice?secret="));
    let serial = t["serial"].as_str().expect("serial");
    // Level needing OTP is refused while the token is pending.
    let out = env.run(&["user", "set", "alice", "--level", "everywhere"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no active token"));
    // A pending token matches nothing.
    env.ok(&["user", "set", "alice", "--level", "off"], None);
    env.ok(&["token", "activate", serial, &hotp_code(0)], None);
    env.ok(&["user", "set", "alice", "--level", "everywhere"], None);
    let pw = format!("1234{}", hotp_code(1));
    assert_eq!(env.check("alice", "vpn", &pw)["verdict"], "accept");
    let again = env.check("alice", "vpn", &pw);
    assert_eq!(again["verdict"], "reject", "second use: {again}");
    // The activation code was used too.
    assert_eq!(
        env.check("alice", "vpn", &format!("1234{}", hotp_code(0)))["verdict"],
        "reject"
    );
    // Exit codes: 0 only on accept.
    let out = env.run(
        &["check", "alice", "--service", "vpn"],
        Some(&format!("1234{}\n", hotp_code(2))),
    );
    assert_eq!(out.status.code(), Some(0));
    let out = env.run(
        &["check", "alice", "--service", "vpn"],
        Some("1234000000\n"),
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn sixteen_parallel_processes_accept_one_code_once() {
    let env = Env::new("");
    env.enrol("alice", "1234", "hotp", "everywhere");
    let pw = format!("1234{}\n", hotp_code(4));
    let children: Vec<_> = (0..16)
        .map(|_| {
            let mut c = env.cmd(&["check", "alice", "--service", "vpn", "--json"]);
            c.stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped());
            let mut ch = c.spawn().expect("spawn");
            use std::io::Write;
            ch.stdin
                .take()
                .expect("stdin")
                .write_all(pw.as_bytes())
                .expect("write");
            ch
        })
        .collect();
    let verdicts: Vec<String> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().expect("wait");
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
            v["verdict"].as_str().expect("verdict").to_string()
        })
        .collect();
    assert_eq!(
        verdicts.iter().filter(|v| *v == "accept").count(),
        1,
        "{verdicts:?}"
    );
}

#[test]
fn used_code_stays_rejected_after_daemon_restart() {
    let env = Env::new("");
    env.enrol("alice", "1234", "hotp", "everywhere");
    let d = env.start();
    let pw = format!("1234{}", hotp_code(0));
    assert_eq!(env.check("alice", "vpn", &pw)["verdict"], "accept");
    d.kill9();
    let d = env.start();
    assert_eq!(env.check("alice", "vpn", &pw)["verdict"], "reject");
    assert!(d.stop().success());
}

#[test]
fn wrong_pin_wrong_code_and_unknown_user_get_the_same_answer() {
    let env = Env::new("unknown_user = \"reject\"\n");
    env.enrol("alice", "1234", "totp", "everywhere");
    let code = common::totp_code_now();
    let answers = [
        env.check("alice", "vpn", &format!("9999{code}")),
        env.check("alice", "vpn", "1234000000"),
        env.check("mallory", "vpn", &format!("1234{code}")),
    ];
    for a in &answers {
        assert_eq!(a["verdict"], "reject", "{a}");
        assert_eq!(a["message"], answers[0]["message"], "{a}");
        assert_eq!(a["serial"], serde_json::Value::Null);
    }
}

#[test]
fn audit_lists_decisions_and_never_a_secret() {
    let env = Env::new("");
    env.enrol("alice", "4711", "hotp", "everywhere");
    let code = hotp_code(0);
    env.check("alice", "vpn", &format!("4711{code}"));
    env.check("alice", "vpn", "4711999999");
    let out = env.ok(&["audit", "--user", "alice", "--json"], None);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[0]["verdict"], "accept");
    assert_eq!(lines[1]["verdict"], "reject");
    for needle in ["4711", code.as_str(), "999999"] {
        assert!(!out.contains(needle), "audit shows {needle}: {out}");
    }
    let text = env.ok(&["audit", "--since", "1h"], None);
    assert_eq!(text.lines().count(), 2, "{text}");
}

#[test]
fn bad_config_stops_start_with_the_key_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        ("data_dir = \"/tmp/x\"\nfrobnicate = 1\n", "frobnicate"),
        ("unknown_user = \"sometimes\"\n", "sometimes"),
        ("[pin]\nmin_length = 9\nmax_length = 4\n", "pin.min_length"),
        ("[totp]\nwindow = 99\n", "totp.window"),
        ("[lockout]\nlock_duration = \"forever\"\n", "forever"),
        ("[levels.web-otp]\nfax = \"otp\"\n", "levels.web-otp.fax"),
        ("this is not toml", "otpd.toml"),
    ];
    for (text, needle) in cases {
        let p = dir.path().join("otpd.toml");
        std::fs::write(&p, text).expect("write");
        for args in [&["serve"][..], &["config", "check"][..]] {
            let out = std::process::Command::new(common::BIN)
                .arg("--config")
                .arg(&p)
                .args(args)
                .output()
                .expect("run");
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{text:?} {args:?}: {err}");
            assert!(
                err.contains(needle),
                "{text:?}: message should name {needle}: {err}"
            );
            assert!(!err.contains("panicked"), "{err}");
        }
    }
    let out = std::process::Command::new(common::BIN)
        .args(["--config", "/nonexistent/otpd.toml", "config", "check"])
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

#[test]
fn environment_overrides_config() {
    let env = Env::new("");
    let out = env
        .cmd(&["config", "check"])
        .env("OTPD__HOTP__WINDOW", "0")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("hotp.window"));
    let out = env
        .cmd(&["config", "check"])
        .env("OTPD__HOTP__WINDOW", "20")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bad_cli_input_gets_clear_errors() {
    let env = Env::new("");
    env.ok(&["user", "add", "alice", "--pin-stdin"], Some("1234\n"));
    let cases: &[(&[&str], Option<&str>, &str)] = &[
        (
            &["user", "add", "bob", "--pin-stdin"],
            Some("12\n"),
            "PIN must have 4 to 8",
        ),
        (
            &["user", "add", "bob", "--pin-stdin"],
            Some("123456789\n"),
            "PIN must have 4 to 8",
        ),
        (
            &["user", "add", "bob", "--pin-stdin"],
            Some("12 34\n"),
            "letters and digits",
        ),
        (
            &["user", "add", "bob", "--level", "paranoid"],
            None,
            "unknown level `paranoid`",
        ),
        (
            &["user", "add", "bob", "--level", "everywhere"],
            None,
            "no active token",
        ),
        (&["user", "add", "alice"], None, "already exists"),
        (&["user", "add", " alice"], None, "white space"),
        (&["user", "show", "nobody"], None, "no user `nobody`"),
        (
            &["token", "add", "nobody", "--type", "totp"],
            None,
            "no user `nobody`",
        ),
        (
            &[
                "token", "add", "alice", "--type", "totp", "--secret", "!!!!",
            ],
            None,
            "not valid base32",
        ),
        (
            &[
                "token", "add", "alice", "--type", "totp", "--secret", "JBSWY3DP",
            ],
            None,
            "at least 80 bits",
        ),
        (
            &["token", "add", "alice", "--type", "totp", "--digits", "7"],
            None,
            "6 or 8",
        ),
        (
            &["token", "add", "alice", "--type", "totp", "--period", "45"],
            None,
            "30 or 60",
        ),
        (
            &["token", "add", "alice", "--type", "sms"],
            None,
            "invalid value 'sms'",
        ),
        (
            &["token", "activate", "TOTP00000000", "123456"],
            None,
            "no token",
        ),
        (
            &["check", "alice", "--service", "fax"],
            Some("x\n"),
            "unknown service `fax`",
        ),
        (
            &["check", "alice", "--rhost", "not-an-ip"],
            Some("x\n"),
            "not an IP address",
        ),
        (&["check", "alice"], Some(""), "nothing on standard input"),
        (&["audit", "--since", "yesterday-ish"], None, "--since"),
        (&["user", "set", "alice"], None, "nothing to change"),
    ];
    for (args, stdin, needle) in cases {
        let out = env.run(args, *stdin);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(
            err.contains(needle),
            "{args:?}: expected `{needle}` in: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    // Nothing was half-done: bob does not exist after the refused adds.
    assert!(!env.run(&["user", "show", "bob"], None).status.success());
}

#[test]
fn key_file_is_private_and_never_overwritten() {
    let env = Env::new("");
    let key = env.path().join("data/otpd.key");
    let before = std::fs::read(&key).expect("key");
    assert_eq!(before.len(), 32);
    let mode = std::fs::metadata(&key).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let out = env.ok(&["init"], None);
    assert!(out.contains("exists, kept"), "{out}");
    assert_eq!(std::fs::read(&key).expect("key"), before);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    for args in [&["serve"][..], &["user", "list"][..]] {
        let out = env.run(args, None);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("chmod 600"), "{args:?}: {err}");
    }
    // A database without its key is not silently given a new key.
    std::fs::remove_file(&key).expect("rm key");
    let out = env.run(&["init"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("restore the key file"));
}

#[test]
fn stolen_database_reveals_no_secret() {
    let env = Env::new("");
    env.enrol("alice", "8642", "totp", "everywhere");
    let db = std::fs::read(env.path().join("data/otpd.db")).expect("db");
    let wal = std::fs::read(env.path().join("data/otpd.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        let hay = String::from_utf8_lossy(bytes);
        assert!(!hay.contains(SECRET_B32));
        assert!(
            !hay.contains("12345678901234567890"),
            "raw secret in database"
        );
        assert!(!hay.contains("8642"), "PIN in database");
    }
}

#[test]
fn qr_codes_are_written_as_svg_and_png() {
    let env = Env::new("");
    env.ok(&["user", "add", "alice"], None);
    let svg = env.path().join("alice.svg");
    let png = env.path().join("alice.png");
    let out = env.ok(
        &[
            "token",
            "add",
            "alice",
            "--type",
            "totp",
            "--qr",
            svg.to_str().expect("p"),
        ],
        None,
    );
    assert!(out.contains("otpauth://totp/"), "{out}");
    assert!(
        out.contains('█') || out.contains('▀') || out.contains('▄'),
        "terminal QR: {out}"
    );
    assert!(std::fs::read_to_string(&svg).expect("svg").contains("<svg"));
    env.ok(
        &[
            "token",
            "add",
            "alice",
            "--type",
            "totp",
            "--no-qr",
            "--qr",
            png.to_str().expect("p"),
        ],
        None,
    );
    assert_eq!(
        &std::fs::read(&png).expect("png")[..8],
        b"\x89PNG\r\n\x1a\n"
    );
    let out = env.run(
        &["token", "add", "alice", "--type", "totp", "--qr", "x.gif"],
        None,
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains(".svg or .png"));
}

#[test]
fn resync_finds_two_consecutive_hotp_codes() {
    let env = Env::new("");
    let serial = env.enrol("alice", "1234", "hotp", "everywhere");
    // The token was pressed 500 times away from the server: outside the login window.
    let pw = format!("1234{}", hotp_code(500));
    assert_eq!(env.check("alice", "vpn", &pw)["verdict"], "reject");
    let out = env.run(
        &["token", "resync", &serial, &hotp_code(600), &hotp_code(602)],
        None,
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
    env.ok(
        &["token", "resync", &serial, &hotp_code(600), &hotp_code(601)],
        None,
    );
    assert_eq!(
        env.check("alice", "vpn", &format!("1234{}", hotp_code(601)))["verdict"],
        "reject"
    );
    assert_eq!(
        env.check("alice", "vpn", &format!("1234{}", hotp_code(602)))["verdict"],
        "accept"
    );
}

#[test]
fn lists_and_shows_in_json() {
    let env = Env::new("");
    let serial = env.enrol("alice", "1234", "totp", "web-otp");
    let users: serde_json::Value =
        serde_json::from_str(&env.ok(&["user", "list", "--json"], None)).expect("json");
    assert_eq!(users[0]["name"], "alice");
    assert_eq!(users[0]["level"], "web-otp");
    assert_eq!(users[0]["tokens"][0]["serial"], serial.as_str());
    let t: serde_json::Value =
        serde_json::from_str(&env.ok(&["token", "show", &serial, "--json"], None)).expect("json");
    assert_eq!(t["type"], "totp");
    assert_eq!(t["state"], "active");
    let all = env.ok(&["user", "show", "alice", "--json"], None);
    assert!(
        !all.contains("pin_hash") && !all.contains("secret"),
        "{all}"
    );
    env.ok(&["token", "disable", &serial], None);
    let list: serde_json::Value =
        serde_json::from_str(&env.ok(&["token", "list", "alice", "--json"], None)).expect("json");
    assert_eq!(list[0]["state"], "disabled");
    env.ok(&["token", "delete", &serial], None);
    env.ok(&["user", "delete", "alice"], None);
    assert_eq!(env.ok(&["user", "list", "--json"], None).trim(), "[]");
}
