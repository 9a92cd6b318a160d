//! The management API (`/api/v1`) over HTTP with curl against the real daemon: every
//! endpoint, the weakening actions with and without a fresh proof (and a replayed proof),
//! scopes, another user's token, a revoked key, malformed and oversized bodies, the audit,
//! and no secret in the log.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job

mod common;

use common::http::{client, curl, http_env, Answer};
use common::{hotp_code, Env, SECRET_B32};
use serde_json::{json, Value};

const PIN: &str = "1234";

struct Api {
    port: u16,
}

impl Api {
    fn call(&self, key: Option<&str>, method: &str, path: &str, body: Option<&Value>) -> Answer {
        let url = format!("http://127.0.0.1:{}/api/v1{path}", self.port);
        let auth = key.map(|k| format!("Authorization: Bearer {k}"));
        let text = body.map(Value::to_string);
        let mut args: Vec<&str> = vec!["-X", method];
        if let Some(a) = &auth {
            args.extend(["-H", a]);
        }
        if let Some(t) = &text {
            args.extend(["-H", "Content-Type: application/json", "--data-binary", t]);
        }
        args.push(&url);
        curl(&args)
    }

    fn raw(&self, key: &str, method: &str, path: &str, body: &str) -> Answer {
        let url = format!("http://127.0.0.1:{}/api/v1{path}", self.port);
        let auth = format!("Authorization: Bearer {key}");
        curl(&[
            "-X",
            method,
            "-H",
            &auth,
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
            &url,
        ])
    }
}

/// Asserts the status and, for an error, the stable code; returns the JSON (Null for 204).
fn expect(a: &Answer, status: u16, code: Option<&str>) -> Value {
    assert_eq!(a.status, status, "{}", a.body);
    if status == 204 {
        assert!(a.body.is_empty(), "{}", a.body);
        return Value::Null;
    }
    let v = a.json();
    if let Some(c) = code {
        assert_eq!(v["error"]["code"], c, "{v}");
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    v
}

fn key(env: &Env, name: &str, scope: &str) -> String {
    let out = env.ok(&["api-key", "add", name, "--scope", scope, "--json"], None);
    let v: Value = serde_json::from_str(&out).expect("json");
    v["key"].as_str().expect("key").to_string()
}

fn setup() -> (Env, Api) {
    let (env, port) = http_env(
        "max_body_bytes = 4096",
        &client("portal", "api = [\"api\"]"),
        "",
    );
    env.ok(&["user", "add", "alice"], None);
    (env, Api { port })
}

fn proof(counter: u64) -> Value {
    json!({"password": format!("{PIN}{}", hotp_code(counter)), "rhost": "198.51.100.7"})
}

#[test]
fn the_portal_sets_up_and_weakens_an_account_only_with_fresh_proofs() {
    let (env, api) = setup();
    let portal = key(&env, "portal", "portal");
    let d = env.start();
    let p = Some(portal.as_str());

    // The document is public; everything else needs a key.
    let doc = expect(&api.call(None, "GET", "/openapi.json", None), 200, None);
    assert!(doc["paths"]["/api/v1/users/{user}/tokens"]["post"].is_object());
    expect(
        &api.call(None, "GET", "/users/alice", None),
        401,
        Some("unauthorized"),
    );
    let forged = format!("otpd_{}", "A".repeat(43));
    expect(
        &api.call(Some(&forged), "GET", "/users/alice", None),
        401,
        Some("unauthorized"),
    );

    let v = expect(&api.call(p, "GET", "/users/alice", None), 200, None);
    assert_eq!(
        (v["level"].as_str(), v["has_pin"].as_bool()),
        (Some("off"), Some(false))
    );
    assert_eq!(v["lock"]["locked"], false);
    let v = expect(
        &api.call(p, "PUT", "/users/alice/pin", Some(&json!({"pin": PIN}))),
        200,
        None,
    );
    assert_eq!(v["has_pin"], true);

    // Enrol, then "test before saving".
    let body = json!({"type": "hotp", "label": "phone", "options": {"secret": SECRET_B32}});
    let e = expect(
        &api.call(p, "POST", "/users/alice/tokens", Some(&body)),
        201,
        None,
    );
    let serial = e["token"]["serial"].as_str().expect("serial").to_string();
    assert_eq!(e["token"]["state"], "pending");
    assert!(e["token"]["activate_before"].is_i64());
    assert!(e["otpauth_uri"]
        .as_str()
        .unwrap()
        .starts_with("otpauth://hotp/"));
    assert_eq!(e["secret"].as_str().unwrap().replace(' ', ""), SECRET_B32);
    assert!(e["qr_svg"].as_str().unwrap().contains("<svg"));
    assert!(e["qr_png"]
        .as_str()
        .unwrap()
        .starts_with("data:image/png;base64,"));
    let t = format!("/users/alice/tokens/{serial}");
    let wrong = json!({"code": "000000"});
    expect(
        &api.call(p, "POST", &format!("{t}/activate"), Some(&wrong)),
        409,
        Some("conflict"),
    );
    let first = json!({"code": hotp_code(0)});
    let v = expect(
        &api.call(p, "POST", &format!("{t}/activate"), Some(&first)),
        200,
        None,
    );
    assert_eq!(v["state"], "active");
    let v = expect(
        &api.call(
            p,
            "PUT",
            &format!("{t}/label"),
            Some(&json!({"label": "old phone"})),
        ),
        200,
        None,
    );
    assert_eq!(v["label"], "old phone");
    let list = expect(&api.call(p, "GET", "/users/alice/tokens", None), 200, None);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let one = expect(&api.call(p, "GET", &t, None), 200, None);
    assert_eq!(one["label"], "old phone");
    let resync = json!({"code1": hotp_code(5), "code2": hotp_code(6)});
    expect(
        &api.call(p, "POST", &format!("{t}/resync"), Some(&resync)),
        200,
        None,
    );

    // Raising the level needs no proof.
    let v = expect(
        &api.call(
            p,
            "PUT",
            "/users/alice/level",
            Some(&json!({"level": "everywhere"})),
        ),
        200,
        None,
    );
    assert_eq!(v["level"], "everywhere");

    // Backup codes: the account has a token, so a new set needs a proof; a used one fails.
    expect(
        &api.call(p, "POST", "/users/alice/backup-codes", None),
        403,
        Some("proof_required"),
    );
    let set = expect(
        &api.call(
            p,
            "POST",
            "/users/alice/backup-codes",
            Some(&json!({"proof": proof(7)})),
        ),
        201,
        None,
    );
    let codes: Vec<String> = set["codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(codes.len(), 10);
    let replay = json!({"proof": proof(7)});
    expect(
        &api.call(p, "POST", "/users/alice/backup-codes", Some(&replay)),
        403,
        Some("proof_refused"),
    );
    let wrong_pin = json!({"proof": {"password": format!("9999{}", hotp_code(8))}});
    expect(
        &api.call(p, "POST", "/users/alice/backup-codes", Some(&wrong_pin)),
        403,
        Some("proof_refused"),
    );
    let left = expect(
        &api.call(p, "GET", "/users/alice/backup-codes", None),
        200,
        None,
    );
    assert_eq!(
        (left["left"].as_u64(), left["total"].as_u64()),
        (Some(10), Some(10))
    );

    // App passwords.
    let ap = expect(
        &api.call(
            p,
            "POST",
            "/users/alice/app-passwords",
            Some(&json!({"label": "Thunderbird", "services": ["mail"]})),
        ),
        201,
        None,
    );
    let app_password = ap["password"].as_str().unwrap().to_string();
    let id = ap["app_password"]["id"].as_i64().unwrap();
    let list = expect(
        &api.call(p, "GET", "/users/alice/app-passwords", None),
        200,
        None,
    );
    assert_eq!(list[0]["label"], "Thunderbird");
    assert!(list[0]["last_used_at"].is_null());
    assert!(list[0].get("hash").is_none() && list[0].get("password").is_none());
    expect(
        &api.call(
            p,
            "DELETE",
            &format!("/users/alice/app-passwords/{id}"),
            None,
        ),
        204,
        None,
    );
    expect(
        &api.call(
            p,
            "DELETE",
            &format!("/users/alice/app-passwords/{id}"),
            None,
        ),
        404,
        Some("not_found"),
    );

    // The last active token (backup codes aside): disabling and deleting need a proof.
    expect(
        &api.call(p, "POST", &format!("{t}/disable"), None),
        403,
        Some("proof_required"),
    );
    let v = expect(
        &api.call(
            p,
            "POST",
            &format!("{t}/disable"),
            Some(&json!({"proof": proof(9)})),
        ),
        200,
        None,
    );
    assert_eq!(v["state"], "disabled");
    let v = expect(
        &api.call(p, "POST", &format!("{t}/enable"), None),
        200,
        None,
    );
    assert_eq!(v["state"], "active");
    expect(
        &api.call(p, "DELETE", &t, None),
        403,
        Some("proof_required"),
    );
    expect(
        &api.call(p, "DELETE", &t, Some(&json!({"proof": proof(9)}))),
        403,
        Some("proof_refused"),
    );
    expect(&api.call(p, "GET", &t, None), 200, None);
    expect(
        &api.call(p, "DELETE", &t, Some(&json!({"proof": proof(10)}))),
        204,
        None,
    );
    expect(&api.call(p, "GET", &t, None), 404, Some("not_found"));

    // Lowering the level: a backup code is a proof too.
    expect(
        &api.call(
            p,
            "PUT",
            "/users/alice/level",
            Some(&json!({"level": "off"})),
        ),
        403,
        Some("proof_required"),
    );
    let backup_proof = json!({"level": "off", "proof": {"password": format!("{PIN}{}", codes[0])}});
    let v = expect(
        &api.call(p, "PUT", "/users/alice/level", Some(&backup_proof)),
        200,
        None,
    );
    assert_eq!(v["level"], "off");
    let left = expect(
        &api.call(p, "GET", "/users/alice/backup-codes", None),
        200,
        None,
    );
    assert_eq!(left["left"], 9);

    // "My activity": newest first, paged, with the key's name, the API's reads left out.
    // Audit records are queued, not waited for (store/sqlite/commit/): wait, bounded, for
    // the last change's record to be readable.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let a = api.call(p, "GET", "/users/alice/activity?per_page=1", None);
        if a.json()["items"][0]["reason"] == "set level off" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", a.body);
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let page = expect(
        &api.call(p, "GET", "/users/alice/activity?per_page=5", None),
        200,
        None,
    );
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    assert_eq!(page["more"], true);
    let ts: Vec<i64> = items.iter().map(|r| r["ts_ms"].as_i64().unwrap()).collect();
    assert!(ts.windows(2).all(|w| w[0] >= w[1]), "{ts:?}");
    assert!(items.iter().all(|r| r["verdict"] != "read"), "{page}");
    assert_eq!(items[0]["reason"], "set level off");
    assert_eq!(items[0]["client"], "api-key:portal");
    let page2 = expect(
        &api.call(p, "GET", "/users/alice/activity?per_page=5&page=2", None),
        200,
        None,
    );
    assert_ne!(page2["items"][0], items[0]);
    let all = expect(
        &api.call(p, "GET", "/users/alice/activity?per_page=100", None),
        200,
        None,
    );
    let all = all["items"].as_array().unwrap();
    let proofs: Vec<&Value> = all.iter().filter(|r| r["service"] == "api-proof").collect();
    // 7 (accept), 7 again, 9999+8, 9 (accept), 9 again, 10 (accept), the backup code.
    assert_eq!(proofs.len(), 7, "{all:?}");
    assert_eq!(
        proofs.iter().filter(|r| r["verdict"] == "accept").count(),
        4
    );
    assert!(all
        .iter()
        .any(|r| r["verdict"] == "refused"
            && r["reason"].as_str().unwrap().contains("proof_required")));
    expect(
        &api.call(p, "GET", "/users/alice/activity?page=0", None),
        400,
        Some("invalid"),
    );

    // No secret in the log: not the key, the PIN+codes, the backup codes, the app password.
    let log = d.log_text();
    assert!(log.contains("api-key:portal"), "{log}");
    let mut secrets = vec![portal.clone(), app_password, SECRET_B32.to_string()];
    secrets.extend((0..11).map(|c| format!("{PIN}{}", hotp_code(c))));
    secrets.extend(codes);
    for s in &secrets {
        assert!(!log.contains(s.as_str()), "the log holds a secret");
    }
}

#[test]
fn scopes_other_users_revoked_keys_and_bad_bodies_are_refused() {
    let (env, api) = setup();
    let portal = key(&env, "portal", "portal");
    let read = key(&env, "auditor", "read");
    let admin = key(&env, "helpdesk", "admin");
    let bob_serial = env.enrol("bob", PIN, "hotp", "everywhere");
    let _d = env.start();
    let (p, r, a) = (
        Some(portal.as_str()),
        Some(read.as_str()),
        Some(admin.as_str()),
    );

    // A portal key acts on one named user; listing and the admin's actions are not its.
    expect(&api.call(p, "GET", "/users", None), 403, Some("forbidden"));
    expect(
        &api.call(p, "POST", "/users/bob/unlock", None),
        403,
        Some("forbidden"),
    );
    expect(
        &api.call(p, "DELETE", "/users/bob", None),
        403,
        Some("forbidden"),
    );
    expect(
        &api.call(p, "POST", "/users", Some(&json!({"name": "mallory"}))),
        403,
        Some("forbidden"),
    );
    // bob's token addressed under alice's name: not found, as a serial that does not exist.
    let theirs = format!("/users/alice/tokens/{bob_serial}");
    let a1 = expect(&api.call(p, "GET", &theirs, None), 404, Some("not_found"));
    let a2 = expect(
        &api.call(p, "GET", "/users/alice/tokens/HOTP00000000", None),
        404,
        Some("not_found"),
    );
    assert_eq!(
        a1["error"]["message"]
            .as_str()
            .map(|m| m.replace(&bob_serial, "X")),
        a2["error"]["message"]
            .as_str()
            .map(|m| m.replace("HOTP00000000", "X"))
    );
    let proof = json!({"proof": {"password": format!("{PIN}{}", hotp_code(0))}});
    expect(
        &api.call(p, "DELETE", &theirs, Some(&proof)),
        404,
        Some("not_found"),
    );
    expect(
        &api.call(p, "POST", &format!("{theirs}/disable"), Some(&proof)),
        404,
        Some("not_found"),
    );
    expect(
        &api.call(a, "GET", &format!("/users/bob/tokens/{bob_serial}"), None),
        200,
        None,
    );

    // A read key reads only.
    expect(&api.call(r, "GET", "/users/bob", None), 200, None);
    let users = expect(&api.call(r, "GET", "/users", None), 200, None);
    assert_eq!(users.as_array().unwrap().len(), 2);
    expect(
        &api.call(r, "PUT", "/users/bob/pin", Some(&json!({"pin": "4321"}))),
        403,
        Some("forbidden"),
    );
    expect(
        &api.call(r, "POST", "/users/bob/backup-codes", None),
        403,
        Some("forbidden"),
    );

    // An admin key: what the CLI does, no proof needed (the lost phone).
    let v = expect(
        &api.call(
            a,
            "POST",
            "/users",
            Some(&json!({"name": "carol", "pin": "2468"})),
        ),
        201,
        None,
    );
    assert_eq!(v["name"], "carol");
    expect(
        &api.call(a, "POST", "/users", Some(&json!({"name": "carol"}))),
        409,
        Some("conflict"),
    );
    expect(
        &api.call(
            a,
            "POST",
            &format!("/users/bob/tokens/{bob_serial}/disable"),
            None,
        ),
        200,
        None,
    );
    expect(
        &api.call(
            a,
            "PUT",
            "/users/bob/level",
            Some(&json!({"level": "nonsense"})),
        ),
        400,
        Some("invalid"),
    );
    let v = expect(&api.call(a, "POST", "/users/bob/unlock", None), 200, None);
    assert_eq!(v["lock"]["locked"], false);
    expect(&api.call(a, "DELETE", "/users/carol", None), 204, None);
    expect(
        &api.call(a, "GET", "/users/carol", None),
        404,
        Some("not_found"),
    );

    // Methods and paths the API does not have: its own JSON errors.
    expect(
        &api.call(a, "PATCH", "/users/bob", None),
        405,
        Some("method_not_allowed"),
    );
    expect(
        &api.call(a, "GET", "/nonsense", None),
        404,
        Some("not_found"),
    );

    // Bodies: malformed, wrong field, wrong type (never echoed), too large.
    let m = expect(
        &api.raw(&admin, "PUT", "/users/bob/pin", "{\"pin\": "),
        400,
        Some("malformed_json"),
    );
    assert!(m["error"]["message"].as_str().unwrap().contains("line 1"));
    let u = expect(
        &api.raw(&admin, "PUT", "/users/bob/pin", "{\"pim\": \"4321\"}"),
        400,
        Some("invalid"),
    );
    assert!(u["error"]["message"].as_str().unwrap().contains("pim"));
    let t = api.raw(&admin, "PUT", "/users/bob/pin", "{\"pin\": 97531246}");
    expect(&t, 400, Some("invalid"));
    assert!(!t.body.contains("97531246"), "{}", t.body);
    let big = format!("{{\"pin\": \"{}\"}}", "1".repeat(8000));
    expect(
        &api.raw(&admin, "PUT", "/users/bob/pin", &big),
        413,
        Some("too_large"),
    );
    let short = expect(
        &api.call(a, "PUT", "/users/bob/pin", Some(&json!({"pin": "12"}))),
        400,
        Some("invalid"),
    );
    assert!(!short["error"]["message"]
        .as_str()
        .unwrap()
        .contains("\"12\""));

    // The key rotates with the key file; a revoked key is refused at once.
    env.ok(&["key", "rotate"], None);
    expect(&api.call(p, "GET", "/users/alice", None), 200, None);
    env.ok(&["api-key", "revoke", "portal"], None);
    expect(
        &api.call(p, "GET", "/users/alice", None),
        401,
        Some("unauthorized"),
    );
    let listed = env.ok(&["api-key", "list", "--json"], None);
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["name"] == "helpdesk" && k["last_used_at"].is_i64()));
    // Audit records are queued, not waited for (store/sqlite/commit/): poll, bounded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut audit = String::new();
    while std::time::Instant::now() < deadline {
        audit = env.ok(&["audit", "--user", "-", "--json"], None);
        if audit.contains("unauthorized") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(audit.contains("unauthorized"), "{audit}");
}

/// `otpd check` asking to trust the device (or bringing a device token back).
fn login(env: &Env, password: &str, remember: Option<&str>, token: Option<&str>) -> Value {
    let mut args = vec![
        "check",
        "bob",
        "--service",
        "web",
        "--client",
        "portal",
        "--json",
    ];
    if let Some(l) = remember {
        args.extend(["--remember-device", l]);
    }
    if let Some(t) = token {
        args.extend(["--device-token", t]);
    }
    let out = env.run(&args, Some(&format!("{password}\n")));
    // A run that printed no decision says why (once seen in CI with an empty stdout).
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "otpd check printed no JSON ({e}); {}; stdout: {}; stderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn trusted_devices_are_listed_and_revoked_one_by_one_or_all_with_a_proof() {
    let (env, port) = http_env(
        "",
        &client("portal", "api = [\"api\"]"),
        "[services.web]\ntrusted_device_ttl = \"30d\"\n",
    );
    let api = Api { port };
    env.ok(&["user", "add", "alice"], None);
    env.enrol("bob", PIN, "hotp", "everywhere");
    let portal = key(&env, "portal", "portal");
    let p = Some(portal.as_str());
    let _d = env.start();
    let mut tokens = Vec::new();
    for (n, label) in ["Firefox", "Phone"].iter().enumerate() {
        let v = login(
            &env,
            &format!("{PIN}{}", hotp_code(n as u64)),
            Some(label),
            None,
        );
        assert_eq!(v["verdict"], "accept", "{v}");
        tokens.push(
            v["device_token"]
                .as_str()
                .expect("device token")
                .to_string(),
        );
    }

    let list = expect(
        &api.call(p, "GET", "/users/bob/trusted-devices", None),
        200,
        None,
    );
    let list = list.as_array().unwrap().clone();
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0]["label"], "Firefox");
    assert_eq!(list[0]["class"], "web");
    assert_eq!(list[0]["expired"], false);
    let text = serde_json::to_string(&list).unwrap();
    assert!(tokens.iter().all(|t| !text.contains(t.as_str())));
    assert!(list[0].get("hash").is_none() && list[0].get("binding").is_none());
    let first = list[0]["id"].as_i64().unwrap();

    // Someone else's device is not found under another name.
    let other = format!("/users/alice/trusted-devices/{first}");
    expect(&api.call(p, "DELETE", &other, None), 404, Some("not_found"));
    expect(
        &api.call(p, "DELETE", "/users/bob/trusted-devices/x", None),
        404,
        Some("not_found"),
    );

    // One by one: no proof needed; the device no longer logs in with the PIN alone.
    assert_eq!(
        login(&env, PIN, None, Some(&tokens[0]))["verdict"],
        "accept"
    );
    expect(
        &api.call(
            p,
            "DELETE",
            &format!("/users/bob/trusted-devices/{first}"),
            None,
        ),
        204,
        None,
    );
    assert_eq!(
        login(&env, PIN, None, Some(&tokens[0]))["verdict"],
        "reject"
    );
    expect(
        &api.call(
            p,
            "DELETE",
            &format!("/users/bob/trusted-devices/{first}"),
            None,
        ),
        404,
        Some("not_found"),
    );

    // All at once: a proof from a portal key, refused when used before.
    expect(
        &api.call(p, "DELETE", "/users/bob/trusted-devices", None),
        403,
        Some("proof_required"),
    );
    let used = json!({"proof": proof(1)});
    expect(
        &api.call(p, "DELETE", "/users/bob/trusted-devices", Some(&used)),
        403,
        Some("proof_refused"),
    );
    assert_eq!(
        login(&env, PIN, None, Some(&tokens[1]))["verdict"],
        "accept"
    );
    let v = expect(
        &api.call(
            p,
            "DELETE",
            "/users/bob/trusted-devices",
            Some(&json!({"proof": proof(2)})),
        ),
        200,
        None,
    );
    assert_eq!(v["revoked"], 1);
    assert_eq!(
        login(&env, PIN, None, Some(&tokens[1]))["verdict"],
        "reject"
    );
    let list = expect(
        &api.call(p, "GET", "/users/bob/trusted-devices", None),
        200,
        None,
    );
    assert_eq!(list.as_array().unwrap().len(), 0);
}
