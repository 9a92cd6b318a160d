//! Two otpd nodes on one PostgreSQL database, each serving HTTP (issues 17 and 18): what the
//! HTTP features keep in the store is shared by the nodes. A device trusted through node A
//! logs in with the PIN alone through node B until it is revoked through A's management API;
//! an API key made with `otpd api-key add` against the PostgreSQL configuration works on both
//! nodes and is refused on both once revoked; a token renamed through A's API shows on B.
//! `otpd store copy` carries an SQLite installation's trusted devices and API keys.
//! PostgreSQL (a primary with a synchronous standby) is started by the tests
//! (tests/products/postgres.rs).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job

mod common;
mod products;

use common::http::{curl, Answer};
use common::{free_tcp_port, hotp_code, Daemon, Env};
use products::postgres::{Cluster, Replication};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const PIN: &str = "1234";

/// One node: its directory and config (`otpd init` run), the port its HTTP listens on.
struct Node {
    env: Env,
    port: u16,
}

/// A node on `url` named `name`, sharing `key` when given, serving plain HTTP on loopback to
/// one client ("portal", class web, validate and api) that may trust devices for 30 days.
fn node(url: &str, name: &str, key: Option<&Path>) -> Node {
    node_with(url, name, key, "")
}

/// `node` with more `[store]` keys.
fn node_with(url: &str, name: &str, key: Option<&Path>, store_extra: &str) -> Node {
    let port = free_tcp_port();
    let top = key
        .map(|k| format!("key_file = \"{}\"", k.display()))
        .unwrap_or_default();
    let tables = format!(
        "[store]\nkind = \"postgres\"\nurl = \"{url}\"\nnode_name = \"{name}\"\n\
         {store_extra}\n[services.web]\ntrusted_device_ttl = \"30d\"\n\
         [http]\nlisten_plain = [\"127.0.0.1:{port}\"]\n\
         [[http.clients]]\nname = \"portal\"\naddress = \"127.0.0.0/8\"\nservice = \"web\"\n\
         api = [\"validate\", \"api\"]\n"
    );
    Node {
        env: Env::with_tables(&top, &tables),
        port,
    }
}

fn key_of(env: &Env) -> PathBuf {
    env.path().join("data/otpd.key")
}

/// Nodes A and B on the cluster's primary, both serving; alice (PIN 1234, an HOTP token on
/// the shared secret, level everywhere) made through A. Returns the nodes, their daemons
/// and alice's token serial.
fn two_nodes(c: &Cluster) -> (Node, Node, Daemon, Daemon, String) {
    let a = node(&c.url(), "A", None);
    let b = node(&c.url(), "B", Some(&key_of(&a.env)));
    let serial = a.env.enrol("alice", PIN, "hotp", "everywhere");
    let da = a.env.start();
    let db = b.env.start();
    (a, b, da, db, serial)
}

/// `/validate/check` on `node` with a form; the JSON answer (always 200 in this dialect).
fn check(node: &Node, form: &[(&str, &str)]) -> Value {
    let mut args: Vec<String> = Vec::new();
    for (k, v) in form {
        args.push("--data-urlencode".into());
        args.push(format!("{k}={v}"));
    }
    args.push(format!("http://127.0.0.1:{}/validate/check", node.port));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let a = curl(&refs);
    assert_eq!(a.status, 200, "{}", a.body);
    a.json()
}

fn verdict(v: &Value) -> String {
    v["result"]["authentication"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// A management API call on `node` with `key`.
fn api(node: &Node, key: &str, method: &str, path: &str, body: Option<&Value>) -> Answer {
    let url = format!("http://127.0.0.1:{}/api/v1{path}", node.port);
    let auth = format!("Authorization: Bearer {key}");
    let text = body.map(Value::to_string);
    let mut args: Vec<&str> = vec!["-X", method, "-H", &auth];
    if let Some(t) = &text {
        args.extend(["-H", "Content-Type: application/json", "--data-binary", t]);
    }
    args.push(&url);
    curl(&args)
}

/// `otpd api-key add NAME --scope SCOPE` against `env`'s (PostgreSQL) configuration.
fn api_key(env: &Env, name: &str, scope: &str) -> String {
    let out = env.ok(&["api-key", "add", name, "--scope", scope, "--json"], None);
    let v: Value = serde_json::from_str(&out).expect("api-key json");
    v["key"].as_str().expect("key").to_string()
}

#[test]
fn a_device_trusted_on_one_node_logs_in_on_the_other_until_revoked_there() {
    let c = Cluster::with_standby(Replication::Sync);
    let (a, b, _da, _db, _serial) = two_nodes(&c);

    // Trusted through A after a PIN+code.
    let pw = format!("{PIN}{}", hotp_code(0));
    let v = check(
        &a,
        &[
            ("user", "alice"),
            ("pass", &pw),
            ("remember_device", "1"),
            ("device_label", "laptop"),
        ],
    );
    assert_eq!(verdict(&v), "ACCEPT", "{v}");
    let token = v["detail"]["trusted_device"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("node A made no device token: {v}"))
        .to_string();

    // B knows it: the PIN alone with it logs in; the PIN alone without it does not.
    let with = [("user", "alice"), ("pass", PIN), ("device_token", &token)];
    let v = check(&b, &with);
    assert_eq!(verdict(&v), "ACCEPT", "the PIN and A's device on B: {v}");
    let v = check(&b, &[("user", "alice"), ("pass", PIN)]);
    assert_eq!(verdict(&v), "REJECT", "the PIN alone on B: {v}");

    // B lists it (with its use through B), and A revokes it through its management API.
    let portal = api_key(&a.env, "portal", "portal");
    let list = api(&b, &portal, "GET", "/users/alice/trusted-devices", None);
    assert_eq!(list.status, 200, "{}", list.body);
    let list = list.json();
    let devices = list.as_array().expect("device list");
    assert_eq!(devices.len(), 1, "{list}");
    assert_eq!(devices[0]["label"], "laptop", "{list}");
    assert!(!list.to_string().contains(&token), "{list}");
    let id = devices[0]["id"].as_i64().expect("id");
    let gone = api(
        &a,
        &portal,
        "DELETE",
        &format!("/users/alice/trusted-devices/{id}"),
        None,
    );
    assert_eq!(gone.status, 204, "{}", gone.body);

    // Refused on B (and on A) from then on.
    let v = check(&b, &with);
    assert_eq!(verdict(&v), "REJECT", "A's revoked device on B: {v}");
    let v = check(&a, &with);
    assert_eq!(verdict(&v), "REJECT", "the revoked device on A: {v}");
    assert_eq!(c.primary.sql("SELECT count(*) FROM trusted_devices"), "0");
}

#[test]
fn an_api_key_made_with_the_cli_works_on_both_nodes_and_a_rename_shows_on_both() {
    let c = Cluster::with_standby(Replication::Sync);
    let (a, b, _da, _db, serial) = two_nodes(&c);
    // Made by the CLI with B's configuration: it goes to the shared database, not to a file.
    let admin = api_key(&b.env, "admin", "admin");
    assert_eq!(
        c.primary
            .sql("SELECT name || ' ' || scope FROM api_keys ORDER BY name"),
        "admin admin"
    );
    let listed = a.env.ok(&["api-key", "list", "--json"], None);
    assert!(
        listed.contains("\"admin\""),
        "A's CLI lists B's key: {listed}"
    );
    assert!(!listed.contains(&admin), "{listed}");
    for n in [&a, &b] {
        let r = api(n, &admin, "GET", "/users/alice", None);
        assert_eq!(r.status, 200, "port {}: {}", n.port, r.body);
        assert_eq!(r.json()["name"], "alice", "{}", r.body);
    }

    // Renamed through A, shown by B.
    let path = format!("/users/alice/tokens/{serial}");
    let renamed = api(
        &a,
        &admin,
        "PUT",
        &format!("{path}/label"),
        Some(&json!({"label": "old phone"})),
    );
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    let shown = api(&b, &admin, "GET", &path, None);
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert_eq!(shown.json()["label"], "old phone", "{}", shown.body);

    // Revoked with A's CLI: refused by both nodes at the next request.
    a.env.ok(&["api-key", "revoke", "admin"], None);
    for n in [&a, &b] {
        let r = api(n, &admin, "GET", "/users/alice", None);
        assert_eq!(r.status, 401, "port {}: {}", n.port, r.body);
    }
}

#[test]
fn store_copy_carries_trusted_devices_and_api_keys_to_postgres() {
    // An SQLite installation: alice trusts a device through `otpd check` as the portal
    // client, and the portal has an API key.
    let src = Env::with_tables("", "[services.web]\ntrusted_device_ttl = \"30d\"\n");
    src.enrol("alice", PIN, "hotp", "everywhere");
    let out = src.run(
        &[
            "check",
            "alice",
            "--service",
            "web",
            "--client",
            "portal",
            "--remember-device",
            "laptop",
            "--json",
        ],
        Some(&format!("{PIN}{}\n", hotp_code(0))),
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("check json");
    assert_eq!(v["verdict"], "accept", "{v}");
    let device = v["device_token"]
        .as_str()
        .expect("device token")
        .to_string();
    let portal = api_key(&src, "portal", "portal");

    let pg = Cluster::primary();
    let db = src.path().join("data/otpd.db");
    let out = src
        .cmd(&[
            "store",
            "copy",
            "--from",
            &format!("sqlite:{}", db.display()),
            "--to",
            &format!("postgres:{}", pg.url()),
        ])
        .output()
        .expect("otpd store copy");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    for t in ["trusted_devices", "api_keys"] {
        assert_eq!(
            pg.primary.sql(&format!("SELECT count(*) FROM {t}")),
            "1",
            "{t}: {text}"
        );
    }

    // A node on PostgreSQL with the installation's key file takes both.
    let n = node_with(
        &pg.url(),
        "A",
        Some(&key_of(&src)),
        "allow_async_replication = true",
    );
    let _d = n.env.start();
    let r = api(&n, &portal, "GET", "/users/alice", None);
    assert_eq!(r.status, 200, "the copied API key: {}", r.body);
    let v = check(
        &n,
        &[("user", "alice"), ("pass", PIN), ("device_token", &device)],
    );
    assert_eq!(verdict(&v), "ACCEPT", "the copied device: {v}");
    let v = check(&n, &[("user", "alice"), ("pass", PIN)]);
    assert_eq!(verdict(&v), "REJECT", "the PIN alone: {v}");
}
