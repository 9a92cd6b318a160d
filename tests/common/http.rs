//! HTTP front-end tests: a daemon with `[http]` on a free loopback port, and curl as the
//! client (an ordinary one: what an admin would type).

use super::{free_tcp_port, require, Env};
use std::process::Command;

/// A data directory whose config serves plain HTTP on a free port; `http_keys` go into
/// `[http]`, `clients` are `[[http.clients]]` tables, `tables` anything else.
pub fn http_env(http_keys: &str, clients: &str, tables: &str) -> (Env, u16) {
    let port = free_tcp_port();
    let env = Env::with_tables(
        "",
        &format!(
            "{tables}\n[http]\nlisten_plain = [\"127.0.0.1:{port}\"]\n{http_keys}\n{clients}\n"
        ),
    );
    (env, port)
}

/// One `[[http.clients]]` table for the whole loopback range.
pub fn client(name: &str, extra: &str) -> String {
    format!(
        "[[http.clients]]\nname = \"{name}\"\naddress = \"127.0.0.0/8\"\nservice = \"vpn\"\n{extra}\n"
    )
}

/// An answer: HTTP status and body.
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}), status {}: {:?}", self.status, self.body))
    }
}

/// curl with `args`, the URL last; the status and body come back.
pub fn curl(args: &[&str]) -> Answer {
    require("curl", "curl");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    Answer {
        status: code.trim().parse().unwrap_or(0),
        body: body.to_string(),
    }
}

/// POST a form to `path`.
pub fn post_form(port: u16, path: &str, form: &[(&str, &str)]) -> Answer {
    let mut args: Vec<String> = Vec::new();
    for (k, v) in form {
        args.push("--data-urlencode".into());
        args.push(format!("{k}={v}"));
    }
    args.push(format!("http://127.0.0.1:{port}{path}"));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    curl(&refs)
}

/// POST a JSON body to `path`.
pub fn post_json(port: u16, path: &str, body: &str) -> Answer {
    curl(&[
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        body,
        &format!("http://127.0.0.1:{port}{path}"),
    ])
}

/// GET `path` with a query made of `params`.
pub fn get(port: u16, path: &str, params: &[(&str, &str)]) -> Answer {
    let mut args: Vec<String> = vec!["-G".into()];
    for (k, v) in params {
        args.push("--data-urlencode".into());
        args.push(format!("{k}={v}"));
    }
    args.push(format!("http://127.0.0.1:{port}{path}"));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    curl(&refs)
}

/// `result.authentication` of a privacyIDEA answer (or "" when absent).
pub fn authentication(a: &Answer) -> String {
    a.json()["result"]["authentication"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}
