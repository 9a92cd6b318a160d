//! `otpd store copy` from a real SQLite installation (made by the real CLI and a real daemon:
//! logins, backup codes, an e-mailed code, an app password, audit) into a real PostgreSQL:
//! counts agree table by table, an otpd on PostgreSQL with the same key file lets the copied
//! accounts in with what they had (next HOTP code, a backup code, the e-mailed code, the app
//! password) and not with what they had used, and a second copy into the now non-empty
//! database is refused without changing it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job

mod common;
mod products;

use common::{hotp_code, socket_call, Env, SmtpSink, BIN};
use products::postgres::Cluster;
use products::{docs_block, run_block};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// The tables whose rows the copy carries, as the SQLite and the PostgreSQL schema name them.
const TABLES: &[&str] = &[
    "accounts",
    "tokens",
    "backup_codes",
    "email_codes",
    "email_sends",
    "app_passwords",
    "meta",
    "audit",
];

fn check(sock: &Path, user: &str, password: &str, service: &str) -> Value {
    socket_call(
        sock,
        &json!({"op": "check", "user": user, "password": password, "service": service,
                "client": "pam"}),
    )
}

fn sqlite_count(db: &Path, table: &str) -> i64 {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open sqlite");
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .expect("count")
}

/// An otpd configuration on PostgreSQL that uses the source installation's key file.
fn pg_env(url: &str, key: &Path, top: &str) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("otpd.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{data}\"\nkey_file = \"{key}\"\n{top}\n\
             [store]\nkind = \"postgres\"\nurl = \"{url}\"\n\
             # A primary without a standby: this test is about the copy, not replication.\n\
             allow_async_replication = true\n\
             [socket]\npath = \"{sock}\"\n[radius]\nlisten = []\n",
            data = dir.path().join("data").display(),
            key = key.display(),
            sock = dir.path().join("otpd.sock").display(),
        ),
    )
    .expect("write config");
    std::fs::create_dir(dir.path().join("data")).expect("data dir");
    Env { dir, config }
}

fn copy(env: &Env, from: &str, to: &str) -> (bool, String) {
    let out = env
        .cmd(&["store", "copy", "--from", from, "--to", to])
        .output()
        .expect("otpd store copy");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn a_copied_installation_logs_in_on_postgres_and_a_second_copy_is_refused() {
    let sink = SmtpSink::start("ok");
    // Replays are failures too: no slowing down in this test, which makes several in a row.
    let email_cfg = format!("{}\n[lockout]\nfree_failures = 50\n", sink.config(""));
    let src = Env::new(&email_cfg);
    let db = src.path().join("data").join("otpd.db");

    // alice: HOTP, two codes used; then a set of backup codes, one of them used.
    src.enrol("alice", "1234", "hotp", "everywhere");
    let d = src.start();
    let sock = src.socket_path();
    for n in 0..2 {
        let a = check(&sock, "alice", &format!("1234{}", hotp_code(n)), "vpn");
        assert_eq!(a["verdict"], "accept", "{a}");
    }
    let out = src.ok(&["backup-codes", "generate", "alice", "--json"], None);
    let codes: Vec<String> = serde_json::from_str::<Value>(&out).expect("json")["codes"]
        .as_array()
        .expect("codes")
        .iter()
        .map(|c| c.as_str().expect("code").to_string())
        .collect();
    let a = check(&sock, "alice", &format!("1234{}", codes[0]), "vpn");
    assert_eq!(a["verdict"], "accept", "backup code on SQLite: {a}");
    // A wrong PIN: a failure count that must travel with the account.
    let a = check(&sock, "alice", &format!("9999{}", hotp_code(2)), "vpn");
    assert_eq!(a["verdict"], "reject", "{a}");

    // bob: an e-mail token with a code sent and not used yet.
    src.ok(&["user", "add", "bob", "--pin-stdin"], Some("4321\n"));
    src.ok(
        &[
            "token",
            "add",
            "bob",
            "--type",
            "email",
            "--address",
            "bob@example.org",
            "--active",
        ],
        None,
    );
    src.ok(&["user", "set", "bob", "--level", "everywhere"], None);
    let a = check(&sock, "bob", "4321", "vpn");
    assert_eq!(
        a["verdict"], "challenge",
        "the PIN alone sends the code: {a}"
    );
    sink.wait_for(1);
    let emailed = sink.code(1);

    // carol: an app password for her mail client.
    src.enrol("carol", "1111", "totp", "app-passwords");
    let out = src.ok(
        &[
            "app-password",
            "add",
            "carol",
            "--label",
            "laptop",
            "--json",
        ],
        None,
    );
    let app_pw = serde_json::from_str::<Value>(&out).expect("json")["password"]
        .as_str()
        .expect("password")
        .to_string();
    let a = check(&sock, "carol", &app_pw, "imap");
    assert_eq!(a["verdict"], "accept", "app password on SQLite: {a}");
    // Stopped as docs/operations.md says: nothing is written after the copy's snapshot.
    assert!(d.stop().success());

    let counts: Vec<(&str, i64)> = TABLES.iter().map(|t| (*t, sqlite_count(&db, t))).collect();
    for (t, n) in &counts {
        assert!(
            *n > 0,
            "the source has rows in {t}: the copy of every table is tested"
        );
    }
    eprintln!("source rows: {counts:?}");

    let mut pg = Cluster::primary();
    let url = pg.url();
    // The command as docs/operations.md prints it, with this test's paths.
    let text = run_block(
        &docs_block("docs/operations.md", "store-copy"),
        &[
            (
                "otpd store copy",
                format!("{BIN} --config {} store copy", src.config.display()),
            ),
            ("/var/lib/otpd/otpd.db", db.display().to_string()),
            ("postgresql://otpd@db1.example.org/otpd", url.clone()),
        ],
    );
    eprintln!("{text}");
    for (t, n) in &counts {
        let there: i64 = pg
            .primary
            .sql(&format!("SELECT count(*) FROM {t}"))
            .parse()
            .expect("count");
        assert_eq!(there, *n, "rows of {t} in PostgreSQL");
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().take(2).eq([*t, &n.to_string()])),
            "the report names {t} with {n} rows:\n{text}"
        );
    }
    assert!(
        text.contains("key file"),
        "the report says the key file travels apart: {text}"
    );
    // Sealed as they were: the secret columns are the very bytes of the source.
    let hex = |s: &str| s.trim().to_string();
    let sqlite_secret: Vec<u8> = rusqlite::Connection::open(&db)
        .expect("open")
        .query_row(
            "SELECT secret FROM tokens t JOIN accounts a ON a.id = t.account_id \
             WHERE a.name = 'alice' AND t.kind = 'hotp'",
            [],
            |r| r.get(0),
        )
        .expect("secret");
    let pg_secret = pg.primary.sql(
        "SELECT encode(secret, 'hex') FROM tokens t JOIN accounts a ON a.id = t.account_id \
         WHERE a.name = 'alice' AND t.kind = 'hotp'",
    );
    let want: String = sqlite_secret.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex(&pg_secret), want);

    // An otpd on PostgreSQL with the same key file.
    let node = pg_env(&url, &src.path().join("data").join("otpd.key"), &email_cfg);
    let d = node.start();
    let sock = node.socket_path();
    for n in 0..2 {
        let a = check(&sock, "alice", &format!("1234{}", hotp_code(n)), "vpn");
        assert_eq!(
            a["verdict"], "reject",
            "HOTP code {n} was used before the copy: {a}"
        );
    }
    let a = check(&sock, "alice", &format!("1234{}", hotp_code(2)), "vpn");
    assert_eq!(
        a["verdict"], "accept",
        "the next HOTP code after the copy: {a}"
    );
    let a = check(&sock, "alice", &format!("1234{}", codes[0]), "vpn");
    assert_eq!(
        a["verdict"], "reject",
        "a backup code used before the copy: {a}"
    );
    let a = check(&sock, "alice", &format!("1234{}", codes[1]), "vpn");
    assert_eq!(a["verdict"], "accept", "an unused backup code: {a}");
    let a = check(&sock, "bob", &format!("4321{emailed}"), "vpn");
    assert_eq!(
        a["verdict"], "accept",
        "the code e-mailed before the copy: {a}"
    );
    let a = check(&sock, "carol", &app_pw, "imap");
    assert_eq!(a["verdict"], "accept", "the app password: {a}");
    let a = check(&sock, "carol", "not-her-app-password", "imap");
    assert_eq!(a["verdict"], "reject", "{a}");
    // New rows get new ids after the copied ones (the sequences moved on).
    node.ok(&["user", "add", "dave", "--pin-stdin"], Some("5555\n"));
    let ids = pg
        .primary
        .sql("SELECT count(DISTINCT id) = count(*) FROM accounts");
    assert_eq!(ids, "t");
    // The audit on PostgreSQL has the copied records and the new ones.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n: i64 = pg
            .primary
            .sql("SELECT count(*) FROM audit")
            .parse()
            .expect("count");
        let copied = counts.iter().find(|(t, _)| *t == "audit").expect("audit").1;
        if n >= copied + 8 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "audit has {n} rows, copied {copied}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(d.stop().success());

    // A second copy into the now non-empty database: refused, nothing changed.
    let before = pg.primary.sql("SELECT count(*) FROM accounts");
    let (ok, text) = copy(
        &src,
        &format!("sqlite:{}", db.display()),
        &format!("postgres:{url}"),
    );
    assert!(
        !ok,
        "a copy into a non-empty database must be refused:\n{text}"
    );
    assert!(text.contains("not empty"), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    assert_eq!(pg.primary.sql("SELECT count(*) FROM accounts"), before);

    // Backup and restore as docs/operations.md prints them: pg_dump, then pg_restore into a
    // new database, and an otpd on it lets alice in with her next code, not the used one.
    let bin = products::postgres::bin_dir();
    let dump = src.path().join("otpd.dump");
    let restored = pg.primary.url_of("restored");
    pg.primary.sql_in("postgres", "CREATE DATABASE restored");
    for (name, db_url) in [("postgres-backup", &url), ("postgres-restore", &restored)] {
        run_block(
            &docs_block("docs/operations.md", name),
            &[
                ("pg_dump ", format!("{}/pg_dump ", bin.display())),
                ("pg_restore ", format!("{}/pg_restore ", bin.display())),
                ("/var/backups/otpd/otpd.dump", dump.display().to_string()),
                ("postgresql://otpd@db1.example.org/otpd", db_url.clone()),
            ],
        );
    }
    let node = pg_env(
        &restored,
        &src.path().join("data").join("otpd.key"),
        &email_cfg,
    );
    let d = node.start();
    let sock = node.socket_path();
    let a = check(&sock, "alice", &format!("1234{}", hotp_code(2)), "vpn");
    assert_eq!(a["verdict"], "reject", "used before the dump: {a}");
    let a = check(&sock, "alice", &format!("1234{}", hotp_code(3)), "vpn");
    assert_eq!(
        a["verdict"], "accept",
        "the next code on the restored database: {a}"
    );
    assert!(d.stop().success());
    pg.kill_primary();
}

#[test]
fn bad_arguments_and_unreachable_targets_get_clear_errors() {
    let src = Env::new("");
    let db = src.path().join("data").join("otpd.db");
    let pg = Cluster::primary();
    let url = pg.url();
    let cases: Vec<(String, String, &str)> = vec![
        (
            format!("{}", db.display()),
            format!("postgres:{url}"),
            "--from must be sqlite:PATH",
        ),
        (
            format!("sqlite:{}", db.display()),
            url.replace("postgresql://", "mysql://"),
            "--to must be postgres:URL",
        ),
        (
            "sqlite:/nonexistent/otpd.db".into(),
            format!("postgres:{url}"),
            "no such database file",
        ),
        (
            format!("sqlite:{}", src.config.display()),
            format!("postgres:{url}"),
            "not an otpd database",
        ),
        (
            format!("sqlite:{}", db.display()),
            // Nothing listens there; the password in the url must not be printed.
            format!(
                "postgres:postgresql://otpd:s3cr3t-pw@127.0.0.1:{}/otpd?connect_timeout=3",
                common::free_tcp_port()
            ),
            "127.0.0.1",
        ),
    ];
    for (from, to, want) in cases {
        let (ok, text) = copy(&src, &from, &to);
        assert!(!ok, "{from} -> {to} must fail:\n{text}");
        assert!(
            text.contains(want),
            "{from} -> {to}: want {want:?} in:\n{text}"
        );
        assert!(
            !text.contains("panicked") && !text.contains("s3cr3t"),
            "{text}"
        );
    }
    // None of that wrote anything into the database.
    let tables = pg
        .primary
        .sql("SELECT count(*) FROM information_schema.tables WHERE table_name = 'accounts'");
    if tables == "1" {
        assert_eq!(pg.primary.sql("SELECT count(*) FROM accounts"), "0");
    }
}
