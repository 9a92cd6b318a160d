//! otpd's privacyIDEA dialect against what a real privacyIDEA 3.14 answered
//! (../shared/reference/privacyidea-3.14/): for each reference request of a feature otpd has,
//! the same request goes to the real daemon, and the two answers are compared by HTTP status,
//! keys, JSON types and the values that carry the decision (`result.status`, `result.value`,
//! `result.authentication`, `result.error.code`). Every difference must be listed in the table
//! "Differences from privacyIDEA 3.14" of docs/http.md, and every listed one must still occur.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job

mod common;

use common::http::{curl, Answer};
use common::{free_tcp_port, hotp_code, Env, SmtpSink};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;

fn reference_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/privacyidea-3.14");
    assert!(
        d.join("README.md").exists(),
        "the privacyIDEA 3.14 reference answers are missing: expected {} (shared/ next to the \
         repository)",
        d.display()
    );
    d
}

/// (status, body) of a reference file; 50_email_challenge.json holds a body alone.
fn reference(name: &str) -> (Option<u16>, Value) {
    let text = std::fs::read_to_string(reference_dir().join(name)).expect("read reference");
    let v: Value = serde_json::from_str(&text).expect("reference json");
    match v.get("http_status").and_then(Value::as_u64) {
        Some(s) => (Some(s as u16), v["body"].clone()),
        None if v.get("body").is_some() => (None, v["body"].clone()),
        None => (None, v),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Values that are the decision itself, compared as values.
const DECISIVE: [&str; 4] = [
    "result.status",
    "result.value",
    "result.authentication",
    "result.error.code",
];

fn compare(path: &str, theirs: &Value, ours: &Value, out: &mut Vec<(String, String)>) {
    if kind(theirs) != kind(ours) {
        out.push((path.to_string(), "type".into()));
        return;
    }
    if DECISIVE.contains(&path) && !theirs.is_object() && theirs != ours {
        out.push((path.to_string(), "value".into()));
    }
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match (theirs, ours) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, va) in a {
                match b.get(k) {
                    Some(vb) => compare(&join(k), va, vb, out),
                    None => out.push((join(k), "missing".into())),
                }
            }
            for k in b.keys().filter(|k| !a.contains_key(*k)) {
                out.push((join(k), "extra".into()));
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if let (Some(x), Some(y)) = (a.first(), b.first()) {
                compare(&format!("{path}[]"), x, y, out);
            }
        }
        _ => {}
    }
}

/// The rows of docs/http.md's difference table: (file or `*`, key path or `-`, kind).
fn listed() -> BTreeSet<(String, String, String)> {
    let docs =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/http.md"))
            .expect("read docs/http.md");
    let section = docs
        .split("## Differences from privacyIDEA 3.14")
        .nth(1)
        .expect("docs/http.md has a section `## Differences from privacyIDEA 3.14`");
    let section = section.split("\n## ").next().unwrap_or("");
    let mut rows = BTreeSet::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<String> = line
            .split('|')
            .map(|c| c.trim().trim_matches('`').to_string())
            .collect();
        if cells.len() >= 4 {
            rows.insert((cells[1].clone(), cells[2].clone(), cells[3].clone()));
        }
    }
    rows
}

struct Run {
    port: u16,
}

impl Run {
    fn send(
        &self,
        method: &str,
        path: &str,
        params: &[(&str, &str)],
        from: &str,
        header: Option<&str>,
    ) -> Answer {
        let mut args: Vec<String> = vec!["--interface".into(), from.into()];
        if method == "GET" {
            args.push("-G".into());
        }
        if let Some(h) = header {
            args.extend(["-H".into(), h.into()]);
        }
        for (k, v) in params {
            args.extend(["--data-urlencode".into(), format!("{k}={v}")]);
        }
        if method == "POST" && params.is_empty() {
            args.extend(["-X".into(), "POST".into()]);
        }
        args.push(format!("http://127.0.0.1:{}{path}", self.port));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        curl(&refs)
    }
}

/// Reference files of features otpd does not have, or of the management API (checked
/// elsewhere): they too must be named in docs/http.md, as `not compared`.
const NOT_COMPARED: [&str; 22] = [
    "03_token_init_hotp.json",
    "17_policy_set.json",
    "22_policy_admin.json",
    "25_policy_passOnNoToken.json",
    "27_policy_delete.json",
    "28_policy_passthru.json",
    "29_check_passthru_ok.json",
    "30_check_passthru_bad.json",
    "31_policy_delete.json",
    "32_policy_passOnNoUser.json",
    "33_check_passOnNoUser.json",
    "34_policy_delete.json",
    "35_token_list.json",
    "36_token_disable.json",
    "38_token_enable.json",
    "39_token_init_totp.json",
    "41_user_token_init_totp.json",
    "42_user_token_list.json",
    "43_user_token_delete.json",
    "44_token_init_applspec.json",
    "45_token_init_pw.json",
    "46_token_delete.json",
];

#[test]
fn otpd_answers_as_privacyidea_3_14_did_or_docs_list_the_difference() {
    let sink = SmtpSink::start("ok");
    let port = free_tcp_port();
    let env = Env::with_tables(
        &sink.config(""),
        &format!(
            "[services.vpn]\nchallenge_on_pin_only = true\n\
             [lockout]\nfree_failures = 100\nmax_failures = 0\nper_source_max_failures = 0\n\
             source_max_failures = 0\n\
             [http]\nlisten_plain = [\"127.0.0.1:{port}\"]\n\
             service_accounts = [{{ name = \"admin\", secret = \"adminpw-adminpw-adminpw\" }}]\n\
             [[http.clients]]\nname = \"pi\"\naddress = \"127.0.0.1\"\nservice = \"vpn\"\n\
             unknown_user_error = true\n\
             [[http.clients]]\nname = \"pnt\"\naddress = \"127.0.0.2\"\nservice = \"vpn\"\n\
             no_second_factor = \"accept\"\n"
        ),
    );
    env.enrol("alice", "1234", "hotp", "everywhere");
    env.enrol("alice@realm1", "1234", "hotp", "everywhere");
    // otpd keeps no account at an OTP level without a token: bob's is disabled.
    let bob = env.enrol("bob", "1234", "hotp", "everywhere");
    env.ok(&["token", "disable", &bob], None);
    env.enrol("carol", "1234", "hotp", "web-otp");
    let eve = env.enrol("eve", "1234", "hotp", "everywhere");
    env.ok(&["token", "disable", &eve], None);
    env.ok(&["user", "add", "dave", "--pin-stdin"], Some("1234\n"));
    env.ok(
        &[
            "token",
            "add",
            "dave",
            "--type",
            "email",
            "--address",
            "dave@example.org",
            "--active",
        ],
        None,
    );
    env.ok(&["user", "set", "dave", "--level", "everywhere"], None);
    let _d = env.start();
    let run = Run { port };
    let pc = |n: u64| format!("1234{}", hotp_code(n));
    let (pi, pnt) = ("127.0.0.1", "127.0.0.2");

    let mut answers: Vec<(&str, Answer)> = Vec::new();
    let auth = run.send(
        "POST",
        "/auth",
        &[
            ("username", "admin"),
            ("password", "adminpw-adminpw-adminpw"),
        ],
        pi,
        None,
    );
    let token = auth.json()["result"]["value"]["token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    answers.push(("01_auth_admin.json", auth));
    answers.push((
        "02_auth_admin_wrong.json",
        run.send(
            "POST",
            "/auth",
            &[("username", "admin"), ("password", "wrong")],
            pi,
            None,
        ),
    ));
    answers.push((
        "04_check_accept.json",
        run.send(
            "POST",
            "/validate/check",
            &[("user", "alice"), ("realm", "realm1"), ("pass", &pc(0))],
            pi,
            None,
        ),
    ));
    answers.push((
        "05_check_reject_wrong_otp.json",
        run.send(
            "POST",
            "/validate/check",
            &[("user", "alice"), ("pass", "1234000000")],
            pi,
            None,
        ),
    ));
    answers.push((
        "06_check_reject_wrong_pin.json",
        run.send(
            "POST",
            "/validate/check",
            &[
                ("user", "alice"),
                ("pass", &format!("9999{}", hotp_code(1))),
            ],
            pi,
            None,
        ),
    ));
    answers.push((
        "07_check_GET_user_at_realm.json",
        run.send(
            "GET",
            "/validate/check",
            &[("user", "alice@realm1"), ("pass", &pc(0))],
            pi,
            None,
        ),
    ));
    answers.push((
        "08_check_unknown_user.json",
        run.send(
            "POST",
            "/validate/check",
            &[("user", "nosuchuser"), ("pass", "1234123456")],
            pi,
            None,
        ),
    ));
    answers.push((
        "09_check_missing_pass.json",
        run.send("POST", "/validate/check", &[("user", "alice")], pi, None),
    ));
    answers.push((
        "10_check_missing_user.json",
        run.send("POST", "/validate/check", &[("pass", "123")], pi, None),
    ));
    answers.push((
        "11_check_user_without_token.json",
        run.send(
            "POST",
            "/validate/check",
            &[("user", "bob"), ("pass", "bobpw")],
            pi,
            None,
        ),
    ));
    answers.push((
        "12_radiuscheck_ok.json",
        run.send(
            "POST",
            "/validate/radiuscheck",
            &[("user", "alice"), ("pass", &pc(1))],
            pi,
            None,
        ),
    ));
    answers.push((
        "13_radiuscheck_fail.json",
        run.send(
            "POST",
            "/validate/radiuscheck",
            &[("user", "alice"), ("pass", "1234000000")],
            pi,
            None,
        ),
    ));
    answers.push((
        "14_samlcheck.json",
        run.send(
            "POST",
            "/validate/samlcheck",
            &[("user", "alice"), ("pass", &pc(2))],
            pi,
            None,
        ),
    ));
    answers.push((
        "15_check_serial_otponly.json",
        run.send(
            "POST",
            "/validate/check",
            &[
                ("serial", "HOTPALICE"),
                ("pass", &hotp_code(2)),
                ("otponly", "1"),
            ],
            pi,
            None,
        ),
    ));
    answers.push((
        "16_check_serial.json",
        run.send(
            "POST",
            "/validate/check",
            &[("serial", "HOTPALICE"), ("pass", &pc(2))],
            pi,
            None,
        ),
    ));
    let challenge = run.send(
        "POST",
        "/validate/check",
        &[("user", "alice"), ("pass", "1234")],
        pi,
        None,
    );
    let tid = challenge.json()["detail"]["transaction_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    answers.push(("18_check_pin_only_challenge.json", challenge));
    answers.push((
        "19_polltransaction.json",
        run.send(
            "GET",
            "/validate/polltransaction",
            &[("transaction_id", &tid)],
            pi,
            None,
        ),
    ));
    answers.push((
        "20_check_answer_challenge.json",
        run.send(
            "POST",
            "/validate/check",
            &[
                ("user", "alice"),
                ("transaction_id", &tid),
                ("pass", &hotp_code(2)),
            ],
            pi,
            None,
        ),
    ));
    answers.push((
        "21_check_state_wrong.json",
        run.send(
            "POST",
            "/validate/check",
            &[
                ("user", "alice"),
                ("state", "nonexist"),
                ("pass", &hotp_code(3)),
            ],
            pi,
            None,
        ),
    ));
    let bearer = format!("Authorization: {token}");
    answers.push((
        "23_triggerchallenge.json",
        run.send(
            "POST",
            "/validate/triggerchallenge",
            &[("user", "alice")],
            pi,
            Some(&bearer),
        ),
    ));
    answers.push((
        "24_triggerchallenge_noauth.json",
        run.send(
            "POST",
            "/validate/triggerchallenge",
            &[("user", "alice")],
            pi,
            None,
        ),
    ));
    answers.push((
        "26_check_passOnNoToken.json",
        run.send(
            "POST",
            "/validate/check",
            &[("user", "carol"), ("pass", "anything")],
            pnt,
            None,
        ),
    ));
    answers.push((
        "37_check_disabled_token.json",
        run.send(
            "POST",
            "/validate/check",
            &[("user", "eve"), ("pass", &pc(0))],
            pi,
            None,
        ),
    ));
    answers.push((
        "40_auth_user.json",
        run.send(
            "POST",
            "/auth",
            &[("username", "alice"), ("password", "alicepw")],
            pi,
            None,
        ),
    ));
    answers.push((
        "50_email_challenge.json",
        run.send(
            "POST",
            "/validate/check",
            &[("user", "dave"), ("pass", "1234")],
            pi,
            None,
        ),
    ));
    sink.wait_for(1);

    // Every reference file is compared or named as not compared.
    let compared: BTreeSet<&str> = answers.iter().map(|(f, _)| *f).collect();
    let all: Vec<String> = std::fs::read_dir(reference_dir())
        .expect("read reference dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".json"))
        .collect();
    let docs = listed();
    let mut unlisted = Vec::new();
    for f in &all {
        if !compared.contains(f.as_str()) {
            let named = NOT_COMPARED.contains(&f.as_str())
                && docs.contains(&(f.clone(), "-".into(), "not compared".into()));
            if !named {
                unlisted.push(format!("| `{f}` | `-` | `not compared` | (why) |"));
            }
        }
    }

    let mut seen = BTreeSet::new();
    for (file, ours) in &answers {
        let (status, theirs) = reference(file);
        let mut diffs = Vec::new();
        if let Some(s) = status {
            if s != ours.status {
                diffs.push(("-".to_string(), "status".to_string()));
            }
        }
        let ours_body: Value = if ours.body.is_empty() {
            Value::String(String::new())
        } else {
            ours.json()
        };
        compare("", &theirs, &ours_body, &mut diffs);
        for (path, k) in diffs {
            // A row names one file or `*` (every file), and one key path or a prefix ending
            // in `.*` (every key below it).
            let hit = docs
                .iter()
                .find(|(f, p, kind)| {
                    (f == file || f == "*")
                        && kind == &k
                        && (p == &path
                            || p.strip_suffix('*').is_some_and(|pre| path.starts_with(pre)))
                })
                .cloned();
            if let Some(row) = hit {
                seen.insert(row);
            } else {
                unlisted.push(format!(
                    "| `{file}` | `{path}` | `{k}` | (why) |   otpd answered {} {}",
                    ours.status, ours.body
                ));
            }
        }
    }
    assert!(
        unlisted.is_empty(),
        "differences from privacyIDEA 3.14 that docs/http.md does not list:\n{}",
        unlisted.join("\n")
    );
    let stale: Vec<_> = docs
        .iter()
        .filter(|r| r.2 != "not compared" && !seen.contains(*r))
        .collect();
    assert!(
        stale.is_empty(),
        "docs/http.md lists differences that no longer occur: {stale:?}"
    );
}
