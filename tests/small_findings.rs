//! Issue 14, item 6 ("smaller, all observed"), each against the real binary or daemon: two
//! tokens of one account with one secret; a database lost beside its key, and a key that
//! does not fit its database; user names that forge fields in the text log and in `otpd
//! audit`; a value of the wrong type echoed in an error; look-alike account names.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job
mod common;
mod harden;

use common::{hotp_code, Daemon, Env, SECRET_B32};
use harden::*;
use serde_json::json;
use std::io::Read;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `otpd ARGS` and fails the test if it has not ended within 20 s (a `serve` that starts
/// where it should have refused would otherwise run on).
fn run_within(env: &Env, args: &[&str], stdin: Option<&str>) -> Output {
    let mut c = env.cmd(args);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn otpd");
    if let Some(s) = stdin {
        use std::io::Write;
        let _ = child.stdin.take().expect("stdin").write_all(s.as_bytes());
    }
    drop(child.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut stdout = Vec::new();
            let mut stderr = Vec::new();
            let _ = child.stdout.take().expect("out").read_to_end(&mut stdout);
            let _ = child.stderr.take().expect("err").read_to_end(&mut stderr);
            return Output {
                status,
                stdout,
                stderr,
            };
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("otpd {args:?} still ran after 20 s: it should have refused to start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `otpd ARGS` must fail; returns its standard error.
fn refused(env: &Env, args: &[&str], stdin: Option<&str>) -> String {
    let out = run_within(env, args, stdin);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "otpd {args:?} succeeded: {}\n{err}",
        String::from_utf8_lossy(&out.stdout)
    );
    err
}

#[test]
fn two_tokens_of_one_account_cannot_share_a_secret() {
    let env = Env::new("");
    let first = env.enrol("alice", "1234", "hotp", "everywhere");
    for kind in ["hotp", "totp"] {
        let err = refused(
            &env,
            &[
                "token", "add", "alice", "--type", kind, "--secret", SECRET_B32, "--active",
            ],
            None,
        );
        assert!(err.contains(&first), "names the other token: {err}");
        assert!(err.contains("already has this secret"), "{err}");
    }
    // The same secret spelt another way (lower case, spaces) is the same secret.
    let spaced = SECRET_B32.to_lowercase();
    let spaced = format!("{} {}", &spaced[..16], &spaced[16..]);
    let err = refused(
        &env,
        &[
            "token", "add", "alice", "--type", "hotp", "--secret", &spaced,
        ],
        None,
    );
    assert!(err.contains(&first), "{err}");
    let tokens = env.ok(&["token", "list", "alice"], None);
    assert_eq!(tokens.matches("HOTP").count(), 1, "{tokens}");
    // So a code works once for the account, not once per token.
    let pw = format!("1234{}", hotp_code(0));
    assert_eq!(env.check("alice", "vpn", &pw)["verdict"], "accept");
    assert_eq!(env.check("alice", "vpn", &pw)["verdict"], "reject");
    // Another account may hold the same secret: its counter is its own login's business.
    env.ok(&["user", "add", "bob"], None);
    env.ok(
        &[
            "token", "add", "bob", "--type", "hotp", "--secret", SECRET_B32,
        ],
        None,
    );
    // Import: two tokens of one new account with one secret.
    let line = json!({"user": "carol", "pin": "1234", "level": "everywhere", "tokens": [
        {"type": "hotp", "secret": SECRET_B32, "serial": "C-1"},
        {"type": "totp", "secret": spaced, "serial": "C-2"}]});
    let err = refused(&env, &["user", "import", "-"], Some(&format!("{line}\n")));
    assert!(err.contains("tokens[1]") && err.contains("C-1"), "{err}");
    assert!(err.contains("nothing was imported"), "{err}");
}

#[test]
fn a_database_lost_beside_its_key_stops_start_and_every_command() {
    // With unknown_user = "defer", an empty database would let every user in with the
    // normal password: the old behaviour this refuses.
    let env = Env::new("unknown_user = \"defer\"\n");
    env.enrol("alice", "1234", "hotp", "everywhere");
    let backup = env.path().join("before.db");
    env.ok(&["backup", backup.to_str().expect("utf-8")], None);
    let db = env.path().join("data/otpd.db");
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
    let cases: [(&[&str], Option<&str>); 4] = [
        (&["serve"], None),
        (&["init"], None),
        (&["user", "list"], None),
        (&["check", "alice", "--service", "vpn"], Some("whatever\n")),
    ];
    for (args, stdin) in cases {
        let err = refused(&env, args, stdin);
        assert!(
            err.contains("database") && err.contains("otpd restore"),
            "{args:?} says what to do: {err}"
        );
        assert!(!db.exists(), "{args:?} created an empty database");
    }
    // The way back: restore the backup.
    env.ok(&["restore", backup.to_str().expect("utf-8"), "--yes"], None);
    assert_eq!(
        env.check("alice", "vpn", &format!("1234{}", hotp_code(0)))["verdict"],
        "accept"
    );
}

#[test]
fn a_key_that_does_not_fit_the_database_stops_start() {
    let env = Env::new("");
    let serial = env.enrol("alice", "1234", "hotp", "everywhere");
    let key = env.path().join("data/otpd.key");
    let right = std::fs::read(&key).expect("key");
    let swap_in = |bytes: Option<&[u8]>| {
        std::fs::remove_file(&key).expect("rm key");
        match bytes {
            Some(b) => otpd::crypto::write_key_file(&key, &b.try_into().expect("32 bytes"))
                .expect("write key"),
            None => otpd::crypto::create_key_file(&key).expect("new key"),
        }
    };
    swap_in(None);
    for (args, stdin) in [
        (&["serve"][..], None),
        (&["user", "list"][..], None),
        (
            &["check", "alice", "--service", "vpn"][..],
            Some("1234000000\n"),
        ),
    ] {
        let err = refused(&env, args, stdin);
        assert!(err.contains("does not fit"), "{args:?}: {err}");
        assert!(err.contains("key check value"), "{args:?}: {err}");
    }
    swap_in(Some(&right));
    assert_eq!(
        env.check("alice", "vpn", &format!("1234{}", hotp_code(0)))["verdict"],
        "accept"
    );

    // A database from before the key check value: a wrong key is refused on the tokens'
    // secrets (and not written down as the right one), the right key gets its value written.
    let db = env.path().join("data/otpd.db");
    let drop_check = || {
        let c = rusqlite::Connection::open(&db).expect("db");
        c.execute("DELETE FROM meta WHERE name = 'key_check'", [])
            .expect("delete");
    };
    drop_check();
    swap_in(None);
    let err = refused(&env, &["user", "list"], None);
    assert!(
        err.contains("does not fit") && err.contains(&serial),
        "{err}"
    );
    swap_in(Some(&right));
    env.ok(&["user", "list"], None);
    let c = rusqlite::Connection::open(&db).expect("db");
    let n: i64 = c
        .query_row(
            "SELECT count(*) FROM meta WHERE name = 'key_check'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(n, 1, "written on the first open with the right key");

    // A database whose key file is gone: every command says to restore the key file.
    std::fs::rename(&key, env.path().join("elsewhere.key")).expect("move key");
    for args in [&["serve"][..], &["user", "list"][..], &["init"][..]] {
        let err = refused(&env, args, None);
        assert!(err.contains("restore the key file"), "{args:?}: {err}");
    }

    // A database without tokens is checked by its key check value alone.
    let empty = Env::new("");
    let key = empty.path().join("data/otpd.key");
    std::fs::remove_file(&key).expect("rm");
    otpd::crypto::create_key_file(&key).expect("new key");
    let err = refused(&empty, &["serve"], None);
    assert!(err.contains("does not fit"), "{err}");
}

#[test]
fn serve_on_an_empty_directory_still_creates_key_and_database_together() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("otpd.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[socket]\npath = \"{}\"\n[radius]\nlisten = []\n",
            dir.path().join("data").display(),
            dir.path().join("otpd.sock").display()
        ),
    )
    .expect("config");
    let env = Env {
        dir,
        config: config.clone(),
    };
    for _ in 0..2 {
        let d = Daemon::start(&env);
        assert!(env.path().join("data/otpd.key").exists());
        assert!(env.path().join("data/otpd.db").exists());
        assert!(d.stop().success());
    }
}

/// The `key=value` fields of one log or audit line, with values in double quotes (and their
/// backslash escapes) read as one value: what a log parser sees.
fn fields(line: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    while chars.peek().is_some() {
        let mut token = String::new();
        let mut key: Option<String> = None;
        while let Some(&c) = chars.peek() {
            if c == ' ' {
                break;
            }
            chars.next();
            if c == '=' && key.is_none() {
                key = Some(std::mem::take(&mut token));
            } else if c == '"' {
                while let Some(q) = chars.next() {
                    match q {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => token.push(q),
                    }
                }
            } else {
                token.push(c);
            }
        }
        chars.next();
        if let Some(k) = key {
            out.push((k, token));
        }
    }
    out
}

#[test]
fn user_names_cannot_forge_fields_in_the_log_or_the_audit() {
    let (env, port) = radius_env("", "", "");
    env.enrol("alice", "1234", "hotp", "everywhere");
    let d = env.start();
    let nas = Nas::new(port);
    let forged: [&[u8]; 3] = [
        b"bob verdict=accept reason=ok",
        b"eve\nfake: login user=eve verdict=accept",
        b"mallory\" verdict=\"accept",
    ];
    for (i, user) in forged.iter().enumerate() {
        // A Calling-Station-Id is free text from the NAS too (the login's source).
        let station = attr(31, b"02-00-00-00-00-01 verdict=accept\nfake");
        let req = access_request(i as u8 + 1, user, b"1234999999", &[station]);
        let (answer, _) = nas.ask(&req, Duration::from_secs(5)).expect("an answer");
        assert_eq!(answer[0], ACCESS_REJECT);
    }
    // The socket's free-text fields: service (echoed in the reason), rhost, client.
    let v = socket_call_within(
        &env.socket_path(),
        &json!({"op": "check", "user": "alice", "password": "1234999999",
                "service": "vpn verdict=accept", "rhost": "192.0.2.1 verdict=accept",
                "client": "pam reason=ok"}),
        Duration::from_secs(5),
    )
    .expect("answer");
    assert_eq!(v["verdict"], "reject");
    let n = forged.len() + 1;
    let records = audit_settled(&env, None, n);
    assert_eq!(records.len(), n, "{records:?}");

    let log = log_with(&d, "client=\"pam reason=ok\"");
    let audit_lines: Vec<&str> = log.lines().filter(|l| l.contains("otpd::audit")).collect();
    assert_eq!(audit_lines.len(), n, "one log line per login:\n{log}");
    assert!(
        !log.lines().any(|l| l.starts_with("fake")),
        "a user name started a line:\n{log}"
    );
    let text = env.ok(&["audit", "--limit", "0"], None);
    let text_lines: Vec<&str> = text.lines().collect();
    assert_eq!(text_lines.len(), n, "one audit line per record:\n{text}");
    for line in audit_lines.iter().chain(text_lines.iter()) {
        let f = fields(line);
        let verdicts: Vec<&str> = f
            .iter()
            .filter(|(k, _)| k == "verdict")
            .map(|(_, v)| v.as_str())
            .collect();
        // Unknown users are `defer` inside (RADIUS answers Reject); none is an accept.
        assert_eq!(verdicts.len(), 1, "{line}\n{f:?}");
        assert!(["reject", "defer"].contains(&verdicts[0]), "{line}\n{f:?}");
        for key in ["reason", "service", "rhost", "client"] {
            let count = f.iter().filter(|(k, _)| k == key).count();
            assert_eq!(count, 1, "{key} once in {line}\n{f:?}");
        }
    }
    // The names are still there to read, escaped.
    assert!(
        text.contains(r#""eve\nfake: login user=eve verdict=accept""#),
        "{text}"
    );
    assert!(
        log.contains(r#"user="mallory\" verdict=\"accept""#),
        "{log}"
    );
}

#[test]
fn a_value_of_the_wrong_type_is_never_echoed() {
    let env = Env::new("[log]\nlevel = \"debug\"\n");
    env.enrol("alice", "1234", "hotp", "everywhere");
    let d = env.start();
    let password = format!("4711{}", hotp_code(0));
    let number: u64 = password.parse().expect("digits");
    for shape in [
        json!(number),
        json!([number]),
        json!({ "pw": password }),
        json!(true),
    ] {
        let v = socket_call_within(
            &env.socket_path(),
            &json!({"op": "check", "user": "alice", "password": shape, "service": "vpn"}),
            Duration::from_secs(5),
        )
        .expect("answer");
        assert_eq!(v["code"], "bad_field", "{v}");
        let msg = v["error"].as_str().expect("error text");
        assert!(msg.contains("`password`") && msg.contains("string"), "{v}");
        assert!(!v.to_string().contains(&password), "echoed: {v}");
    }
    let log = log_with(&d, "must be a string");
    assert!(!log.contains(&password), "in the debug log:\n{log}");
    assert!(!log.contains(&password[4..]), "in the debug log:\n{log}");

    // The import reads PINs and secrets from JSON too.
    for line in [
        json!({"user": "carol", "pin": 97531, "level": "off"}),
        json!({"user": "carol", "tokens": [{"type": "hotp", "secret": 97531}]}),
        json!({"user": "carol", "level": 97531}),
    ] {
        let err = refused(&env, &["user", "import", "-"], Some(&format!("{line}\n")));
        assert!(!err.contains("97531"), "echoed: {err}");
        assert!(
            err.contains("wrong type") || err.contains("must be a string"),
            "{err}"
        );
    }
}

#[test]
fn look_alike_account_names_are_refused() {
    let env = Env::new("");
    env.ok(&["user", "add", "alice"], None);
    for name in [
        "Alice",
        "ALICE",
        "ａｌｉｃｅ",
        "\u{430}lice",
        "\u{410}LICE",
        "\u{3b1}lice",
    ] {
        let err = refused(&env, &["user", "add", name], None);
        assert!(
            err.contains("looks like the existing user `alice`"),
            "{name}: {err}"
        );
    }
    env.ok(&["user", "add", "alicia"], None);
    let list = env.ok(&["user", "list"], None);
    assert_eq!(
        list.lines().filter(|l| l.contains("ali")).count(),
        2,
        "{list}"
    );
    // Import: against the database and within the input.
    let err = refused(
        &env,
        &["user", "import", "-"],
        Some(&format!("{}\n", json!({"user": "ALICE"}))),
    );
    assert!(
        err.contains("looks like the existing user `alice`"),
        "{err}"
    );
    let err = refused(
        &env,
        &["user", "import", "-"],
        Some(&format!(
            "{}\n{}\n",
            json!({"user": "dave"}),
            json!({"user": "DAVE"})
        )),
    );
    assert!(err.contains("looks like user `dave`"), "{err}");
    env.ok(
        &["user", "import", "-"],
        Some(&format!("{}\n", json!({"user": "dave"}))),
    );

    // Accounts that looked alike before otpd refused them are kept as they are (and a
    // restore says so): written here past otpd, as an older version could have made them.
    let db = env.path().join("data/otpd.db");
    rusqlite::Connection::open(&db)
        .expect("db")
        .execute(
            "INSERT INTO accounts (name, level, created_at) VALUES ('Dave', 'off', 1)",
            [],
        )
        .expect("insert");
    let backup = env.path().join("old.db");
    env.ok(&["backup", backup.to_str().expect("utf-8")], None);
    let out = env.ok(&["restore", backup.to_str().expect("utf-8"), "--yes"], None);
    assert!(
        out.contains("look alike") && out.contains("`dave`, `Dave`"),
        "{out}"
    );
    let list = env.ok(&["user", "list"], None);
    assert!(list.contains("Dave") && list.contains("dave"), "{list}");
    let err = refused(&env, &["user", "add", "DAVE"], None);
    assert!(err.contains("looks like the existing user `dave`"), "{err}");
}
