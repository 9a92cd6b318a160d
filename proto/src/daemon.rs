//! The daemon's side: a request line into a [`Request`], answers into response lines.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{codes, AccountVerdict, StatusAnswer, Verdict, MAX_FIELD, MAX_STATE, VERSION};

/// A request the daemon understood.
#[derive(Debug)]
pub enum Request {
    Check {
        user: String,
        password: Zeroizing<String>,
        service: String,
        rhost: Option<String>,
        client: Option<String>,
        state: Option<String>,
        /// When the caller stops waiting, in milliseconds since the Unix epoch (its wall
        /// clock, which is ours: the socket is local). Absent from older clients.
        deadline_ms: Option<u64>,
    },
    Account {
        user: String,
        service: String,
        rhost: Option<String>,
    },
    Ping,
    /// Health and counts, for `otpd status` and monitoring.
    Status,
}

/// Why a request line was not understood. `code` is stable for programs, `message` for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtoError {
    pub code: &'static str,
    pub message: String,
}

impl ProtoError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        ProtoError {
            code,
            message: message.into(),
        }
    }
}

/// Every field any request may carry. Unknown fields are ignored, so a newer client can add
/// some without breaking this daemon; a known field of the wrong type is an error. The fields
/// are read as JSON values and their types checked here, not by serde: serde's message for a
/// wrong type quotes the value ("invalid type: integer `4711287082`"), and a password sent
/// as a number must not come back in the answer or go into the log.
#[derive(Deserialize)]
struct Wire {
    op: Option<serde_json::Value>,
    user: Option<serde_json::Value>,
    password: Option<serde_json::Value>,
    service: Option<serde_json::Value>,
    rhost: Option<serde_json::Value>,
    client: Option<serde_json::Value>,
    state: Option<serde_json::Value>,
    deadline_ms: Option<serde_json::Value>,
}

/// A field that must be a string (or null, or absent): its string, moved out without a copy.
fn string_field(field: &str, v: Option<serde_json::Value>) -> Result<Option<String>, ProtoError> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(ProtoError::new(
            codes::BAD_FIELD,
            format!(
                "field `{field}` must be a string, not {}",
                json_type_name(&other)
            ),
        )),
    }
}

/// A field that must be a whole number of milliseconds (or null, or absent).
fn millis_field(field: &str, v: Option<serde_json::Value>) -> Result<Option<u64>, ProtoError> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Number(n)) if n.is_u64() => Ok(n.as_u64()),
        Some(other) => Err(ProtoError::new(
            codes::BAD_FIELD,
            format!(
                "field `{field}` must be a whole number of milliseconds, not {}",
                json_type_name(&other)
            ),
        )),
    }
}

fn json_type_name(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

pub fn parse(line: &[u8]) -> Result<Request, ProtoError> {
    // serde would take an array for a struct too; the protocol says object.
    if line.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ProtoError::new(
            codes::BAD_JSON,
            "a request is one JSON object on one line",
        ));
    }
    let w: Wire = serde_json::from_slice(line).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            // With every field a JSON value, what is left here is a field given twice; its
            // text names the field only. Anything else gets a fixed text, never serde's,
            // which may quote a value.
            Category::Data if e.to_string().starts_with("duplicate field `") => {
                ProtoError::new(codes::BAD_FIELD, format!("bad request: {e}"))
            }
            Category::Data => {
                ProtoError::new(codes::BAD_FIELD, "bad request: a field has the wrong type")
            }
            // Syntax errors say where, not what: no value in them.
            _ => ProtoError::new(codes::BAD_JSON, format!("not a JSON object: {e}")),
        }
    })?;
    // Moved out at once so the password is wiped on every path below.
    let password = string_field("password", w.password)?.map(Zeroizing::new);
    let op = string_field("op", w.op)?.ok_or_else(|| missing("op"))?;
    let user = string_field("user", w.user)?;
    let service = string_field("service", w.service)?;
    let rhost = string_field("rhost", w.rhost)?;
    let client = string_field("client", w.client)?;
    let state = string_field("state", w.state)?;
    match op.as_str() {
        "check" => {
            let password = password.ok_or_else(|| missing("password"))?;
            Ok(Request::Check {
                user: user.ok_or_else(|| missing("user"))?,
                password,
                service: bounded("service", service.ok_or_else(|| missing("service"))?)?,
                rhost: rhost.map(|r| bounded("rhost", r)).transpose()?,
                client: client.map(|c| bounded("client", c)).transpose()?,
                state: state
                    .map(|s| bounded_to("state", s, MAX_STATE))
                    .transpose()?,
                deadline_ms: millis_field("deadline_ms", w.deadline_ms)?,
            })
        }
        "account" => Ok(Request::Account {
            user: user.ok_or_else(|| missing("user"))?,
            service: bounded("service", service.ok_or_else(|| missing("service"))?)?,
            rhost: rhost.map(|r| bounded("rhost", r)).transpose()?,
        }),
        "ping" => Ok(Request::Ping),
        "status" => Ok(Request::Status),
        other => Err(ProtoError::new(
            codes::UNKNOWN_OP,
            match op_name(other) {
                Some(name) => {
                    format!("unknown op `{name}`; this daemon knows check, account, ping, status")
                }
                None => "unknown op (not shown: an op is a short word of letters, `-` and \
                         `_`); this daemon knows check, account, ping, status"
                    .to_string(),
            },
        )),
    }
}

fn missing(field: &str) -> ProtoError {
    ProtoError::new(codes::MISSING_FIELD, format!("missing field `{field}`"))
}

fn bounded(field: &str, v: String) -> Result<String, ProtoError> {
    bounded_to(field, v, MAX_FIELD)
}

fn bounded_to(field: &str, v: String, max: usize) -> Result<String, ProtoError> {
    if v.len() > max {
        return Err(ProtoError::new(
            codes::BAD_FIELD,
            format!("field `{field}` is longer than {max} bytes"),
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(ProtoError::new(
            codes::BAD_FIELD,
            format!("field `{field}` contains a control character"),
        ));
    }
    Ok(v)
}

/// An unknown op is echoed only when it looks like an op name: a short word of ASCII
/// letters, `-` and `_`. Anything else (digits, other characters, length) could be a
/// password sent in the wrong field, and errors never echo a value that might be one.
fn op_name(s: &str) -> Option<&str> {
    let word = !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_alphabetic() || b == b'-' || b == b'_');
    word.then_some(s)
}

#[derive(Serialize)]
struct CheckAnswer<'a> {
    verdict: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<&'a str>,
}

#[derive(Serialize)]
struct AccountAnswer<'a> {
    verdict: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    message: &'a str,
}

#[derive(Serialize)]
struct ErrorAnswer<'a> {
    error: &'a str,
    code: &'a str,
}

/// One response line, newline included. Only what the user may see goes on the wire: the
/// front-end passes no reason (that is the audit's).
pub fn check_answer(verdict: Verdict, message: &str, state: Option<&str>) -> Vec<u8> {
    line(&CheckAnswer {
        verdict: verdict.as_str(),
        message,
        state,
    })
}

pub fn account_answer(v: AccountVerdict, message: &str) -> Vec<u8> {
    line(&AccountAnswer {
        verdict: v.as_str(),
        message,
    })
}

pub fn ping_answer() -> Vec<u8> {
    line(&serde_json::json!({ "pong": true, "version": VERSION }))
}

pub fn status_answer(s: &StatusAnswer) -> Vec<u8> {
    line(s)
}

pub fn error_answer(e: &ProtoError) -> Vec<u8> {
    line(&ErrorAnswer {
        error: &e.message,
        code: e.code,
    })
}

fn line<T: Serialize>(v: &T) -> Vec<u8> {
    // Serialising these plain structs cannot fail; should it ever, the client still gets a
    // well-formed error line rather than nothing.
    let mut out = serde_json::to_vec(v)
        .unwrap_or_else(|_| br#"{"error":"internal error","code":"internal"}"#.to_vec());
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(line: &str) -> ProtoError {
        parse(line.as_bytes()).expect_err(line)
    }

    #[test]
    fn the_module_s_requests_parse() {
        // Exactly what the PAM module sends (`client::encode_check`).
        let r = parse(
            br#"{"op":"check","user":"alice","password":"1234287082","service":"imap","rhost":"192.0.2.7","client":"pam"}"#,
        )
        .expect("check");
        match r {
            Request::Check {
                user,
                password,
                service,
                rhost,
                client,
                state,
                deadline_ms,
            } => {
                assert_eq!(user, "alice");
                assert_eq!(password.as_str(), "1234287082");
                assert_eq!(service, "imap");
                assert_eq!(rhost.as_deref(), Some("192.0.2.7"));
                assert_eq!(client.as_deref(), Some("pam"));
                assert_eq!(state, None);
                assert_eq!(deadline_ms, None, "older modules send no deadline");
            }
            other => panic!("{other:?}"),
        }
        let r = parse(
            br#"{"op":"check","user":"a","password":"p","service":"imap","rhost":null,"client":"pam","deadline_ms":1796508100084}"#,
        )
        .expect("check with deadline");
        assert!(matches!(
            r,
            Request::Check {
                deadline_ms: Some(1796508100084),
                ..
            }
        ));
        let r = parse(
            br#"{"op":"check","user":"bob","password":"287082","service":"sshd","rhost":null,"client":"pam","state":"st-1"}"#,
        )
        .expect("check with state");
        assert!(matches!(r, Request::Check { rhost: None, state: Some(ref s), .. } if s == "st-1"));
        let r = parse(br#"{"op":"account","user":"alice","service":"imap","rhost":"::1"}"#)
            .expect("account");
        assert!(matches!(r, Request::Account { rhost: Some(ref h), .. } if h == "::1"));
        assert!(matches!(parse(br#"{"op":"ping"}"#), Ok(Request::Ping)));
        // Unknown fields are ignored.
        assert!(matches!(
            parse(br#"{"op":"ping","x":[1,2]}"#),
            Ok(Request::Ping)
        ));
    }

    #[test]
    fn malformed_requests_have_codes() {
        assert_eq!(err("not json").code, codes::BAD_JSON);
        assert_eq!(err("").code, codes::BAD_JSON);
        assert_eq!(err("{\"op\":").code, codes::BAD_JSON);
        assert_eq!(err("[1,2]").code, codes::BAD_JSON);
        assert_eq!(err(r#"{"op":42}"#).code, codes::BAD_FIELD);
        assert_eq!(err(r#"{"user":"a"}"#).code, codes::MISSING_FIELD);
        let e = err(r#"{"op":"check","user":"a","service":"imap"}"#);
        assert_eq!(e.code, codes::MISSING_FIELD);
        assert!(e.message.contains("`password`"), "{e:?}");
        let e = err(r#"{"op":"account","user":"a"}"#);
        assert!(e.message.contains("`service`"), "{e:?}");
        let e = err(r#"{"op":"delete-everything"}"#);
        assert_eq!(e.code, codes::UNKNOWN_OP);
        assert!(e.message.contains("delete-everything"), "{e:?}");
        let long = "s".repeat(300);
        let e = err(&format!(
            r#"{{"op":"account","user":"a","service":"{long}"}}"#
        ));
        assert_eq!(e.code, codes::BAD_FIELD);
        let e = err(r#"{"op":"account","user":"a","service":"im\nap"}"#);
        assert_eq!(e.code, codes::BAD_FIELD);
        for bad in ["\"soon\"", "-1", "1.5"] {
            let e = err(&format!(
                r#"{{"op":"check","user":"a","password":"p","service":"imap","deadline_ms":{bad}}}"#
            ));
            assert_eq!(e.code, codes::BAD_FIELD, "{bad}: {e:?}");
        }
    }

    #[test]
    fn a_value_of_the_wrong_type_is_named_by_field_never_echoed() {
        let cases = [
            (
                r#"{"op":"check","user":"a","password":4711287082,"service":"imap"}"#,
                "password",
                "a number",
            ),
            (
                r#"{"op":"check","user":"a","password":[4711287082],"service":"imap"}"#,
                "password",
                "an array",
            ),
            (
                r#"{"op":"check","user":"a","password":{"p":"4711287082"},"service":"imap"}"#,
                "password",
                "an object",
            ),
            (
                r#"{"op":"check","user":4711287082,"password":"x","service":"imap"}"#,
                "user",
                "a number",
            ),
            (
                r#"{"op":"check","user":"a","password":"x","service":true,"rhost":"4711287082"}"#,
                "service",
                "a boolean",
            ),
        ];
        for (line, field, ty) in cases {
            let e = err(line);
            assert_eq!(e.code, codes::BAD_FIELD, "{line}");
            assert!(e.message.contains(&format!("`{field}`")), "{line}: {e:?}");
            assert!(e.message.contains(ty), "{line}: {e:?}");
            assert!(!e.message.contains("4711287082"), "{line}: {e:?}");
        }
        let e = err(r#"{"op":"check","password":"4711287082","password":"4711287082"}"#);
        assert!(e.message.contains("`password`"), "{e:?}");
        assert!(!e.message.contains("4711287082"), "{e:?}");
        let e = err(r#"{"op":"check","password":"4711287082""#);
        assert!(!e.message.contains("4711287082"), "{e:?}");
        let e = err(r#"{"op":"4711287082"}"#);
        assert_eq!(e.code, codes::UNKNOWN_OP);
        assert!(!e.message.contains("4711287082"), "{e:?}");
    }

    #[test]
    fn answers_are_single_lines_without_the_reason() {
        let a = check_answer(Verdict::Reject, "Login failed", None);
        assert_eq!(a.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&a).expect("json");
        assert_eq!(v["verdict"], "reject");
        assert!(v.get("state").is_none());
        let v: serde_json::Value =
            serde_json::from_slice(&check_answer(Verdict::Challenge, "Code:", Some("s1")))
                .expect("json");
        assert_eq!(v["state"], "s1");
        let v: serde_json::Value =
            serde_json::from_slice(&account_answer(AccountVerdict::Allow, "")).expect("json");
        assert_eq!(v, serde_json::json!({"verdict":"allow"}));
        let v: serde_json::Value =
            serde_json::from_slice(&error_answer(&ProtoError::new(codes::BUSY, "too many")))
                .expect("json");
        assert_eq!(v, serde_json::json!({"error":"too many","code":"busy"}));
    }
}
