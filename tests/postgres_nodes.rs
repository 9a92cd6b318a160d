//! Several otpd nodes on one PostgreSQL database (issue 17): a code is accepted at most once
//! across all nodes, overlapping batches never deadlock, a commit that is only local (its
//! wait for the synchronous standby cancelled) is no Accept, nodes starting together on an
//! empty database migrate once, and a primary without a synchronous standby is refused.
//! PostgreSQL is started by the tests (tests/products/postgres.rs).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job

mod common;
mod products;

use common::{socket_call, Daemon, Env};
use products::postgres::{Cluster, Replication};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// The `[store]` table of a node on `url`.
fn store_table(url: &str, node: &str, extra: &str) -> String {
    format!("[store]\nkind = \"postgres\"\nurl = \"{url}\"\nnode_name = \"{node}\"\n{extra}\n")
}

/// A node's private directory and config (socket, RADIUS off), sharing `key` when given;
/// `otpd init` run (which migrates and checks replication).
fn node(url: &str, name: &str, key: Option<&Path>, tables: &str) -> Env {
    let top = key
        .map(|k| format!("key_file = \"{}\"", k.display()))
        .unwrap_or_default();
    Env::with_tables(&top, &format!("{}{tables}", store_table(url, name, "")))
}

/// A node's directory and config without running anything.
fn node_uninitialised(url: &str, name: &str, key: &Path, extra: &str) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("otpd.toml");
    let text = format!(
        "key_file = \"{}\"\ndata_dir = \"{}\"\n{}[socket]\npath = \"{}\"\n[radius]\nlisten = []\n",
        key.display(),
        dir.path().join("data").display(),
        store_table(url, name, extra),
        dir.path().join("otpd.sock").display()
    );
    std::fs::write(&config, text).expect("config");
    Env { dir, config }
}

fn key_of(env: &Env) -> PathBuf {
    env.path().join("data/otpd.key")
}

/// Two nodes A and B on the cluster's primary, both serving.
struct Two {
    a: Env,
    b: Env,
    da: Daemon,
    db: Daemon,
}

/// Replays are failed logins: without this, the 31 losers of a round lock the account.
const NO_LOCKOUT: &str = "[lockout]\nfree_failures = 1000000\nmax_failures = 0\n\
    per_source_max_failures = 0\nsource_max_failures = 0\n";

fn two_nodes(url: &str, tables: &str) -> Two {
    let a = node(url, "A", None, tables);
    let b = node(url, "B", Some(&key_of(&a)), tables);
    let da = a.start();
    let db = b.start();
    Two { a, b, da, db }
}

fn check(user: &str, password: &str) -> Value {
    json!({"op":"check","user":user,"password":password,"service":"vpn","client":"pam"})
}

/// `per_node` copies of one login sent to each socket at the same moment; their verdicts.
fn burst(socks: &[PathBuf], user: &str, password: &str, per_node: usize) -> Vec<String> {
    let barrier = Arc::new(Barrier::new(socks.len() * per_node));
    std::thread::scope(|s| {
        let hs: Vec<_> = socks
            .iter()
            .flat_map(|sock| (0..per_node).map(move |_| sock))
            .map(|sock| {
                let barrier = barrier.clone();
                s.spawn(move || {
                    barrier.wait();
                    socket_call(sock, &check(user, password))["verdict"]
                        .as_str()
                        .unwrap_or("none")
                        .to_string()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("client")).collect()
    })
}

/// Waits until `sql` on the primary answers `want` (queued audit records land a moment after
/// the answers).
fn wait_sql(c: &Cluster, sql: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = c.primary.sql(sql);
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{sql}: {got}, want {want}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn one_code_sent_to_two_nodes_at_once_is_accepted_once() {
    let c = Cluster::with_standby(Replication::Sync);
    let t = two_nodes(&c.url(), NO_LOCKOUT);
    t.a.enrol("hal", "1234", "hotp", "everywhere");
    const ROUNDS: usize = 50;
    // TOTP: one account per round, all on the same secret, so every round has a fresh code
    // without waiting 30 s for the next time step.
    for r in 0..ROUNDS {
        t.b.enrol(&format!("tia{r}"), "1234", "totp", "everywhere");
    }
    let socks = [t.a.socket_path(), t.b.socket_path()];
    for r in 0..ROUNDS {
        let code = common::hotp_code(r as u64);
        let v = burst(&socks, "hal", &format!("1234{code}"), 16);
        let accepts = v.iter().filter(|x| *x == "accept").count();
        assert_eq!(accepts, 1, "HOTP round {r}: {v:?}");
        assert!(v.iter().all(|x| x == "accept" || x == "reject"), "{v:?}");

        let user = format!("tia{r}");
        let code = common::totp_code_now();
        let v = burst(&socks, &user, &format!("1234{code}"), 16);
        let accepts = v.iter().filter(|x| *x == "accept").count();
        assert_eq!(accepts, 1, "TOTP round {r}: {v:?}");
    }
    // Exactly one accept per round in the audit, written by both nodes.
    wait_sql(
        &c,
        "SELECT count(*) FROM audit WHERE \"user\" = 'hal'",
        &(ROUNDS * 32).to_string(),
    );
    wait_sql(
        &c,
        "SELECT count(*) FROM audit WHERE \"user\" LIKE 'tia%'",
        &(ROUNDS * 32).to_string(),
    );
    assert_eq!(
        c.primary
            .sql("SELECT count(*) FROM audit WHERE \"user\" = 'hal' AND verdict = 'accept'"),
        ROUNDS.to_string()
    );
    assert_eq!(
        c.primary.sql(
            "SELECT count(DISTINCT \"user\") || ' ' || count(*) FROM audit
             WHERE \"user\" LIKE 'tia%' AND verdict = 'accept'"
        ),
        format!("{ROUNDS} {ROUNDS}")
    );
    assert_eq!(
        c.primary
            .sql("SELECT string_agg(DISTINCT node, ',' ORDER BY node) FROM audit"),
        "A,B"
    );
    for d in [&t.da, &t.db] {
        let log = d.log_text();
        assert!(!log.contains("commit of"), "a failed commit:\n{log}");
    }
}

#[test]
fn a_code_accepted_on_one_node_is_rejected_on_the_other() {
    let c = Cluster::with_standby(Replication::Sync);
    let t = two_nodes(&c.url(), "");
    t.a.enrol("ann", "1234", "hotp", "everywhere");
    let pw = format!("1234{}", common::hotp_code(0));
    assert_eq!(
        socket_call(&t.a.socket_path(), &check("ann", &pw))["verdict"],
        "accept"
    );
    assert_eq!(
        socket_call(&t.b.socket_path(), &check("ann", &pw))["verdict"],
        "reject"
    );
    assert_eq!(
        socket_call(&t.a.socket_path(), &check("ann", &pw))["verdict"],
        "reject"
    );
    // The next code works on B: the counter both see is the one A wrote.
    let pw = format!("1234{}", common::hotp_code(1));
    assert_eq!(
        socket_call(&t.b.socket_path(), &check("ann", &pw))["verdict"],
        "accept"
    );
    wait_sql(
        &c,
        "SELECT string_agg(node || ':' || verdict, ',' ORDER BY id) FROM audit
         WHERE \"user\" = 'ann'",
        "A:accept,B:reject,A:reject,B:accept",
    );
    // Backups of a PostgreSQL store are PostgreSQL's: otpd says which tools to use.
    let file = t.a.path().join("backup.db");
    for args in [
        vec!["backup", file.to_str().expect("path")],
        vec!["restore", file.to_str().expect("path"), "--yes"],
        vec!["restore", file.to_str().expect("path")],
    ] {
        let out = t.a.run(&args, None);
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            text.contains("pg_dump") && text.contains("docs/operations.md"),
            "{args:?}: {text}"
        );
    }
    assert!(!file.exists());
    // A clean stop closes the store's sessions without trouble.
    for d in [t.da, t.db] {
        let log = d.log.clone();
        let status = d.stop();
        assert!(
            status.success(),
            "{status}:\n{}",
            log.lock().expect("log").join("\n")
        );
    }
}

/// Commits of the two nodes' writers wait for a synchronous standby that is gone; the admin
/// (or a timeout) cancels the wait: PostgreSQL reports the commit as done, with a WARNING,
/// though it is only on the primary. The login must be rejected.
#[test]
fn a_commit_whose_synchronous_wait_is_cancelled_is_rejected() {
    let mut c = Cluster::with_standby(Replication::Sync);
    let t = two_nodes(&c.url(), "");
    t.a.enrol("cal", "1234", "hotp", "everywhere");
    c.stop_standby();
    let sock = t.a.socket_path();
    let pw = format!("1234{}", common::hotp_code(0));
    let login = std::thread::spawn(move || socket_call(&sock, &check("cal", &pw)));
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let waiting = c.primary.sql(
            "SELECT count(*) FROM pg_stat_activity
             WHERE wait_event = 'SyncRep' AND application_name = 'otpd@A'",
        );
        if waiting != "0" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no commit of node A waits for the standby"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    c.primary.sql(
        "SELECT pg_cancel_backend(pid) FROM pg_stat_activity
         WHERE wait_event = 'SyncRep' AND application_name = 'otpd@A'",
    );
    let answer = login.join().expect("login");
    assert_eq!(answer["verdict"], "reject", "{answer}");
    // The counter did reach the primary's disk: the code stays used, never valid again.
    assert_eq!(
        c.primary
            .sql("SELECT last_counter FROM tokens t JOIN accounts a ON a.id = t.account_id WHERE a.name = 'cal'"),
        "0"
    );
    let log = t.da.log_text();
    assert!(log.contains("synchronous"), "the log says why:\n{log}");
    drop(t.db);
}

/// The synchronous standby gone: PostgreSQL's own statement_timeout does not end a commit's
/// wait for it, so without a limit of otpd's own the login would never be answered and the
/// writer, holding its batch's row locks, would stall every later login on every node.
#[test]
fn a_commit_the_standby_never_acknowledges_is_rejected_within_the_statement_timeout() {
    let mut c = Cluster::with_standby(Replication::Sync);
    let a = node(&c.url(), "A", None, NO_LOCKOUT);
    std::fs::write(
        &a.config,
        std::fs::read_to_string(&a.config).unwrap().replace(
            "node_name = \"A\"",
            "node_name = \"A\"\nstatement_timeout = \"1s\"",
        ),
    )
    .unwrap();
    let da = a.start();
    a.enrol("dan", "1234", "hotp", "everywhere");
    c.stop_standby();
    let sock = a.socket_path();
    let started = Instant::now();
    let answer = socket_call(
        &sock,
        &check("dan", &format!("1234{}", common::hotp_code(0))),
    );
    let took = started.elapsed();
    assert_eq!(answer["verdict"], "reject", "{answer}");
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
    // The cancelled commit let go of its locks: no session of node A still waits.
    wait_sql(
        &c,
        "SELECT count(*) FROM pg_stat_activity
         WHERE wait_event = 'SyncRep' AND application_name = 'otpd@A'",
        "0",
    );
    // The standby back: logins are accepted again without a restart, and the code whose
    // commit was only local stays spent (its counter reached the primary's disk).
    c.standby_mut().restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut counter = 1;
    loop {
        let v = socket_call(
            &sock,
            &check("dan", &format!("1234{}", common::hotp_code(counter))),
        );
        if v["verdict"] == "accept" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no accept after the standby came back: {v}"
        );
        counter += 1;
        std::thread::sleep(Duration::from_millis(300));
    }
    let log = da.log_text();
    assert!(
        log.contains("statement_timeout"),
        "the log says why:\n{log}"
    );
}

#[test]
fn nodes_started_together_on_an_empty_database_migrate_once_and_both_serve() {
    let c = Cluster::with_standby(Replication::Sync);
    // The key file both nodes share (made by a SQLite installation of its own).
    let keyed = Env::new("");
    let key = key_of(&keyed);
    let a = node_uninitialised(&c.url(), "A", &key, "");
    let b = node_uninitialised(&c.url(), "B", &key, "");
    let (da, db) = std::thread::scope(|s| {
        let ha = s.spawn(|| Daemon::start(&a));
        let hb = s.spawn(|| Daemon::start(&b));
        (ha.join().expect("A"), hb.join().expect("B"))
    });
    let migrated = [&da, &db]
        .iter()
        .filter(|d| d.log_text().contains("migrated the PostgreSQL schema"))
        .count();
    assert_eq!(migrated, 1, "A:\n{}\nB:\n{}", da.log_text(), db.log_text());
    assert_eq!(
        c.primary.sql("SELECT version FROM otpd_schema"),
        otpd::store::postgres::schema::MIGRATIONS.len().to_string(),
        "every step this build knows"
    );
    a.enrol("eve", "1234", "hotp", "everywhere");
    let pw = |n| format!("1234{}", common::hotp_code(n));
    assert_eq!(
        socket_call(&a.socket_path(), &check("eve", &pw(0)))["verdict"],
        "accept"
    );
    assert_eq!(
        socket_call(&b.socket_path(), &check("eve", &pw(1)))["verdict"],
        "accept"
    );
    // A database a newer otpd has migrated is refused, not written to.
    c.primary.sql("UPDATE otpd_schema SET version = 99");
    let out = a.run(&["user", "list"], None);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "ran against schema 99");
    assert!(text.contains("schema version 99 is newer"), "{text}");
    assert_eq!(c.primary.sql("SELECT version FROM otpd_schema"), "99");
    drop((da, db));
}

#[test]
fn a_primary_without_a_synchronous_standby_is_refused_unless_allowed() {
    let c = Cluster::with_standby(Replication::Async);
    let keyed = Env::new("");
    let key = key_of(&keyed);
    let a = node_uninitialised(&c.url(), "A", &key, "");
    let out = a.run(&["serve"], None);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "started: {text}");
    assert!(
        text.contains("no synchronous standby") && text.contains("allow_async_replication"),
        "{text}"
    );
    assert!(
        text.contains("used would become valid") || text.contains("valid"),
        "{text}"
    );
    // Nothing was created on the way to the refusal.
    assert_eq!(
        c.primary.sql("SELECT to_regclass('otpd_schema') IS NULL"),
        "t"
    );
    let b = node_uninitialised(&c.url(), "B", &key, "allow_async_replication = true");
    let d = b.start();
    assert!(
        d.log_text().contains("asynchronous"),
        "the risk is logged:\n{}",
        d.log_text()
    );
}

/// Two stores on one database, each with its own writer session, as two nodes are to the
/// database: 500 counter advances queued at once on each (so each writer commits batches of
/// hundreds), over the same 50 tokens in opposite orders, ten times. Batches that locked rows
/// in the order of their logins would deadlock (PostgreSQL breaks one with 40P01 after
/// `deadlock_timeout`, failing every login in it).
#[test]
fn overlapping_batches_in_opposite_orders_never_deadlock() {
    use otpd::config::{StoreConfig, StoreKind};
    use otpd::model::{NewToken, TokenState};
    use otpd::store::{AdminStore, Advance, CommitMode, Completion, LoginStore, Outcome, PgStore};

    struct Tx(std::sync::mpsc::Sender<(i64, i64, Outcome)>, i64, i64);
    impl Completion for Tx {
        fn complete(self: Box<Self>, outcome: Outcome) {
            let _ = self.0.send((self.1, self.2, outcome));
        }
    }

    let c = Cluster::with_standby(Replication::Sync);
    let open = |node: &str| {
        let cfg = StoreConfig {
            kind: StoreKind::Postgres,
            url: Some(c.url()),
            node_name: Some(node.into()),
            ..StoreConfig::default()
        };
        PgStore::open(&cfg).expect("open the store")
    };
    let a = open("A");
    let b = open("B");
    let account = a
        .create_account("batch", "everywhere", None, 0)
        .expect("account");
    let ids: Vec<i64> = (0..50)
        .map(|i| {
            a.insert_token(&NewToken {
                serial: format!("BATCH{i}"),
                account_id: account,
                kind: otpd::model::TokenKind::Hotp,
                state: TokenState::Active,
                algorithm: otpd::tokens::oath::Algorithm::Sha1,
                digits: 6,
                period: 0,
                sealed_secret: vec![1],
                label: String::new(),
                created_at: 0,
                public_id: None,
                address: None,
            })
            .expect("token")
        })
        .collect();
    let reversed: Vec<i64> = ids.iter().rev().copied().collect();
    let (tx, rx) = std::sync::mpsc::channel();
    let mut best: std::collections::HashMap<i64, i64> = std::collections::HashMap::new();
    let started = Instant::now();
    const ROUNDS: i64 = 10;
    const PER_NODE: usize = 500;
    for round in 0..ROUNDS {
        let barrier = Barrier::new(2);
        std::thread::scope(|s| {
            for (store, order) in [(&a, &ids), (&b, &reversed)] {
                let tx = tx.clone();
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    for k in 0..PER_NODE {
                        let token = order[k % order.len()];
                        let counter = round * 1000 + k as i64;
                        match store
                            .advance_counter(token, counter, 0, 1, false, CommitMode::Defer)
                            .expect("queued")
                        {
                            Advance::Pending(t) => t.then(Box::new(Tx(tx.clone(), token, counter))),
                            Advance::Durable(won) => {
                                let _ = tx.send((token, counter, Ok(won)));
                            }
                        }
                    }
                });
            }
        });
        for (order, _) in [(&ids, 0), (&reversed, 1)] {
            for k in 0..PER_NODE {
                let e = best.entry(order[k % order.len()]).or_insert(-1);
                *e = (*e).max(round * 1000 + k as i64);
            }
        }
    }
    drop(tx);
    let mut won = 0;
    let mut answers = 0;
    for (_, _, outcome) in rx.iter() {
        answers += 1;
        match outcome {
            Ok(true) => won += 1,
            Ok(false) => {}
            Err(e) => panic!("a batch failed: {e}"),
        }
    }
    let total = ROUNDS as usize * PER_NODE * 2;
    assert_eq!(answers, total);
    eprintln!(
        "{total} advances on 50 tokens from two writers in opposite orders: {won} won, \
         {} lost, no failure, {:?}",
        total - won,
        started.elapsed()
    );
    for (id, want) in &best {
        assert_eq!(
            c.primary
                .sql(&format!("SELECT last_counter FROM tokens WHERE id = {id}")),
            want.to_string(),
            "token {id} holds the highest counter sent"
        );
    }
    let log = c.primary.log();
    assert!(!log.contains("deadlock detected"), "{log}");
    // The daemon's last handle on a store can go away on a thread that drives tokio tasks,
    // where blocking on a runtime panics: closing the store there must not.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        tokio::spawn(async move { drop((a, b)) })
            .await
            .expect("the stores close on a runtime thread")
    });
}

/// Runs openssl; fails the test with its output.
fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1 signed by it, in `dir`: `NAME-ca.pem`,
/// `NAME-server.pem`, `NAME-server.key`.
fn make_certs(dir: &Path, name: &str) {
    let ca_key = format!("{name}-ca.key");
    let ca = format!("{name}-ca.pem");
    let key = format!("{name}-server.key");
    let csr = format!("{name}-server.csr");
    let cert = format!("{name}-server.pem");
    let ext = format!("{name}-ext.cnf");
    std::fs::write(dir.join(&ext), "subjectAltName = IP:127.0.0.1\n").expect("ext");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name} test CA"),
            "-keyout",
            &ca_key,
            "-out",
            &ca,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            &key,
            "-out",
            &csr,
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &cert,
        ],
    );
}

/// TLS to PostgreSQL through rustls: with the CA named in `ca_file` and `sslmode=require`,
/// every session of the node is encrypted; a server whose certificate another CA signed is
/// refused at start with a message naming the host.
#[test]
fn a_node_talks_tls_to_postgres_and_refuses_an_unknown_certificate() {
    let c = Cluster::primary();
    let certs = c.root().join("certs");
    std::fs::create_dir(&certs).expect("certs dir");
    make_certs(&certs, "good");
    make_certs(&certs, "other");
    // The server reads its key as the postgres user, and only from a file of mode 0600.
    for f in ["good-server.pem", "good-server.key"] {
        let p = certs.join(f);
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("mode");
        let out = std::process::Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&p)
            .output()
            .expect("chown");
        assert!(out.status.success());
    }
    let set = |k: &str, v: &Path| {
        c.primary
            .sql(&format!("ALTER SYSTEM SET {k} = '{}'", v.display()))
    };
    set("ssl_cert_file", &certs.join("good-server.pem"));
    set("ssl_key_file", &certs.join("good-server.key"));
    c.primary.sql("ALTER SYSTEM SET ssl = on");
    c.primary.sql("SELECT pg_reload_conf()");
    std::thread::sleep(Duration::from_millis(300));
    let url = format!(
        "host=127.0.0.1 port={} user=postgres dbname=otpd sslmode=require",
        c.primary.port
    );
    let keyed = Env::new("");
    let key = key_of(&keyed);
    let extra = |ca: &str| {
        format!(
            "allow_async_replication = true\nca_file = \"{}\"",
            certs.join(ca).display()
        )
    };
    let t = node_uninitialised(&url, "T", &key, &extra("good-ca.pem"));
    let d = t.start();
    t.enrol("tls", "1234", "hotp", "everywhere");
    let pw = format!("1234{}", common::hotp_code(0));
    assert_eq!(
        socket_call(&t.socket_path(), &check("tls", &pw))["verdict"],
        "accept"
    );
    assert_eq!(
        c.primary.sql(
            "SELECT count(*) FILTER (WHERE s.ssl) > 0, count(*) FILTER (WHERE NOT s.ssl)
             FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name = 'otpd@T'"
        ),
        "t|0",
        "the node's sessions are all encrypted"
    );
    drop(d);
    let u = node_uninitialised(&url, "U", &key, &extra("other-ca.pem"));
    let out = u.run(&["user", "list"], None);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "connected with another CA");
    assert!(
        text.contains("PostgreSQL at 127.0.0.1") && text.to_lowercase().contains("certificate"),
        "{text}"
    );
}

/// RADIUS answers a login from the writer thread once its batch is committed (the deferred
/// path): on PostgreSQL too, and the code is then spent for every node.
#[test]
fn a_radius_accept_on_one_node_is_spent_on_the_other() {
    let c = Cluster::with_standby(Replication::Sync);
    let port = common::free_udp_port();
    let radius = format!(
        "[radius]\nlisten = [\"127.0.0.1:{port}\"]\n[[radius.clients]]\nname = \"nas\"\n\
         address = \"127.0.0.1\"\nsecret = \"s3cr3t-nas\"\nservice = \"vpn\"\n"
    );
    let a = node(&c.url(), "A", None, &radius);
    let b = node(&c.url(), "B", Some(&key_of(&a)), "");
    let da = a.start();
    let db = b.start();
    a.enrol("rad", "1234", "hotp", "everywhere");
    let pap = |n: u64| {
        format!(
            "User-Name = \"rad\", User-Password = \"1234{}\", Message-Authenticator = 0x00\n",
            common::hotp_code(n)
        )
    };
    let (ok, out) = common::radclient(port, "auth", "s3cr3t-nas", &pap(0), 3);
    assert!(ok && out.contains("Access-Accept"), "{out}");
    let replay = socket_call(
        &b.socket_path(),
        &check("rad", &format!("1234{}", common::hotp_code(0))),
    );
    assert_eq!(replay["verdict"], "reject", "{replay}");
    // B spends the next code; A's RADIUS then refuses it.
    let next = socket_call(
        &b.socket_path(),
        &check("rad", &format!("1234{}", common::hotp_code(1))),
    );
    assert_eq!(next["verdict"], "accept", "{next}");
    let (_, out) = common::radclient(port, "auth", "s3cr3t-nas", &pap(1), 3);
    assert!(out.contains("Access-Reject"), "{out}");
    wait_sql(
        &c,
        "SELECT string_agg(node || ':' || verdict, ',' ORDER BY id) FROM audit
         WHERE \"user\" = 'rad'",
        "A:accept,B:reject,B:accept,A:reject",
    );
    // A clean stop after RADIUS logins: the last handle on the store may go away on a thread
    // of the runtime, where closing a session by blocking on it used to abort the process.
    for d in [da, db] {
        let log = d.log.clone();
        let status = d.stop();
        assert!(
            status.success(),
            "{status}:\n{}",
            log.lock().expect("log").join("\n")
        );
    }
}

/// The primary stops naming a synchronous standby while the nodes run (a reload; a failover
/// to a primary set up without one): a commit would be only local, so no login is accepted
/// and nothing of its batch is committed, until a synchronous standby is named again.
#[test]
fn a_primary_that_drops_its_synchronous_standby_while_running_accepts_nothing() {
    let c = Cluster::with_standby(Replication::Sync);
    let t = two_nodes(&c.url(), "");
    t.a.enrol("dan", "1234", "hotp", "everywhere");
    let reload = |names: &str| {
        c.primary.sql(&format!(
            "ALTER SYSTEM SET synchronous_standby_names = '{names}'"
        ));
        c.primary.sql("SELECT pg_reload_conf()");
        std::thread::sleep(Duration::from_millis(300));
    };
    reload("");
    let pw = |n| format!("1234{}", common::hotp_code(n));
    for sock in [t.a.socket_path(), t.b.socket_path()] {
        let v = socket_call(&sock, &check("dan", &pw(0)));
        assert_eq!(v["verdict"], "reject", "{v}");
    }
    assert_eq!(
        c.primary.sql(
            "SELECT last_counter FROM tokens t JOIN accounts a ON a.id = t.account_id
             WHERE a.name = 'dan'"
        ),
        "-1",
        "nothing of the refused batches was committed"
    );
    assert!(
        t.da.log_text().contains("names no synchronous standby"),
        "{}",
        t.da.log_text()
    );
    reload("s1");
    let v = socket_call(&t.b.socket_path(), &check("dan", &pw(0)));
    assert_eq!(v["verdict"], "accept", "{v}");
}

/// The same through two otpd processes: 500 logins in flight at once on each node, over the
/// same 50 HOTP tokens, node A's clients going through the accounts in one order and B's in
/// the other. Every login is answered, no batch fails, PostgreSQL reports no deadlock. (Here
/// the engine's own work spreads the logins out, so batches are smaller and mixed: with a
/// writer that locked in the order of the logins this still passed, while the test above,
/// with batches of hundreds, deadlocked; both are kept.)
#[test]
fn overlapping_login_batches_on_two_daemons_never_deadlock() {
    let c = Cluster::with_standby(Replication::Sync);
    let tables = |env_dir: &Path| {
        format!(
            "{NO_LOCKOUT}[socket]\npath = \"{}\"\nmax_connections = 2048\n",
            env_dir.join("otpd.sock").display()
        )
    };
    // The socket goes where Env::socket_path looks for it: set before the directory exists.
    let a_dir = tempfile::tempdir().expect("tempdir");
    let b_dir = tempfile::tempdir().expect("tempdir");
    let write = |dir: &Path, name: &str, key: Option<&Path>| {
        let config = dir.join("otpd.toml");
        let key_line = key
            .map(|k| format!("key_file = \"{}\"\n", k.display()))
            .unwrap_or_default();
        std::fs::write(
            &config,
            format!(
                "{key_line}data_dir = \"{}\"\n{}{}[radius]\nlisten = []\n",
                dir.join("data").display(),
                store_table(&c.url(), name, ""),
                tables(dir)
            ),
        )
        .expect("config");
        config
    };
    let a = Env {
        config: write(a_dir.path(), "A", None),
        dir: a_dir,
    };
    a.ok(&["init"], None);
    let b = Env {
        config: write(b_dir.path(), "B", Some(&key_of(&a))),
        dir: b_dir,
    };
    b.ok(&["init"], None);
    let users: Vec<String> = (0..50).map(|i| format!("ov{i:02}")).collect();
    for u in &users {
        a.enrol(u, "1234", "hotp", "everywhere");
    }
    let da = a.start();
    let db = b.start();
    let codes: Vec<String> = (0..20).map(common::hotp_code).collect();
    const PER_NODE: usize = 500;
    let mut accepted = 0;
    for round in 0..2 {
        let barrier = Arc::new(Barrier::new(2 * PER_NODE));
        let verdicts: Vec<String> = std::thread::scope(|s| {
            let mut hs = Vec::new();
            for (sock, forward) in [(a.socket_path(), true), (b.socket_path(), false)] {
                for k in 0..PER_NODE {
                    let i = if forward { k % 50 } else { 49 - k % 50 };
                    let user = &users[i];
                    let pw = format!("1234{}", codes[round * 10 + k / 50]);
                    let sock = sock.clone();
                    let barrier = barrier.clone();
                    hs.push(s.spawn(move || {
                        barrier.wait();
                        socket_call(&sock, &check(user, &pw))["verdict"]
                            .as_str()
                            .unwrap_or("none")
                            .to_string()
                    }));
                }
            }
            hs.into_iter().map(|h| h.join().expect("client")).collect()
        });
        assert!(
            verdicts.iter().all(|v| v == "accept" || v == "reject"),
            "{verdicts:?}"
        );
        accepted += verdicts.iter().filter(|v| *v == "accept").count();
    }
    eprintln!("{} logins on two nodes, {accepted} accepted", 4 * PER_NODE);
    // At most one accept per (account, code): 50 accounts, 20 codes.
    assert!((50..=1000).contains(&accepted), "{accepted}");
    for d in [&da, &db] {
        let log = d.log_text();
        assert!(!log.contains("commit of"), "a failed commit:\n{log}");
    }
    let log = c.primary.log();
    assert!(!log.contains("deadlock detected"), "{log}");
    // Every account's counter is one of the codes it was sent, and no code was accepted
    // twice: each accept moved a counter forward.
    assert_eq!(
        c.primary
            .sql("SELECT count(*) FROM audit WHERE verdict = 'accept' AND \"user\" LIKE 'ov%'"),
        accepted.to_string()
    );
    let moved: i64 = c
        .primary
        .sql("SELECT sum(last_counter + 1) FROM tokens WHERE serial IN (SELECT t.serial FROM tokens t JOIN accounts a ON a.id = t.account_id WHERE a.name LIKE 'ov%')")
        .parse()
        .expect("sum");
    assert!(
        moved >= accepted as i64,
        "{accepted} accepts but the counters moved {moved} steps in all"
    );
}
