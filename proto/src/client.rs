//! The caller's side: requests into lines, answer lines into verdicts (the PAM module, the
//! CLI).

use serde::{Deserialize, Serialize};
use std::fmt;
use zeroize::Zeroizing;

/// Longest text we hand to the conversation: 512 is PAM_MAX_MSG_SIZE, and some
/// conversation functions refuse or truncate longer messages.
const MAX_USER_MESSAGE: usize = 512;

#[derive(Serialize)]
struct CheckRequest<'a> {
    op: &'static str,
    user: &'a str,
    password: &'a str,
    service: &'a str,
    rhost: Option<&'a str>,
    client: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<&'a str>,
    /// When this module stops waiting (ms since the Unix epoch): a daemon that gets to the
    /// request later drops it unevaluated, so the code is not spent for nobody.
    deadline_ms: u64,
}

#[derive(Serialize)]
struct AccountRequest<'a> {
    op: &'static str,
    user: &'a str,
    service: &'a str,
    rhost: Option<&'a str>,
}

/// Encodes a check request as one line. The buffer is sized for the worst case up front
/// (every byte escaped as `\uXXXX`) so serde never reallocates and leaves a stray copy of
/// the password in freed memory; the caller's `Zeroizing` wipes the one copy there is.
pub fn encode_check(
    user: &str,
    password: &str,
    service: &str,
    rhost: Option<&str>,
    state: Option<&str>,
    deadline_ms: u64,
) -> Zeroizing<Vec<u8>> {
    let variable = user.len()
        + password.len()
        + service.len()
        + rhost.map_or(0, str::len)
        + state.map_or(0, str::len);
    let mut line = Zeroizing::new(Vec::with_capacity(variable * 6 + 128));
    let request = CheckRequest {
        op: "check",
        user,
        password,
        service,
        rhost,
        client: "pam",
        state,
        deadline_ms,
    };
    write_line(&mut line, &request);
    line
}

/// The `status` request (`otpd status`, monitoring).
pub fn encode_status() -> Vec<u8> {
    b"{\"op\":\"status\"}\n".to_vec()
}

/// The answer to `status`.
pub fn parse_status(line: &[u8]) -> Result<crate::StatusAnswer, ResponseError> {
    if let Ok(s) = serde_json::from_slice::<crate::StatusAnswer>(line) {
        return Ok(s);
    }
    parse_raw(line)?;
    Err(ResponseError::Garbage("not a status answer".to_string()))
}

pub fn encode_account(user: &str, service: &str, rhost: Option<&str>) -> Zeroizing<Vec<u8>> {
    let mut line = Zeroizing::new(Vec::new());
    let request = AccountRequest {
        op: "account",
        user,
        service,
        rhost,
    };
    write_line(&mut line, &request);
    line
}

fn write_line<T: Serialize>(line: &mut Vec<u8>, value: &T) {
    // Serialising plain strings into a Vec cannot fail (no I/O, no maps with odd keys);
    // an empty line would make the daemon answer an error, which fails closed.
    if serde_json::to_writer(&mut *line, value).is_err() {
        line.clear();
    }
    line.push(b'\n');
}

/// Every field any response may carry; which ones must be present depends on the verdict.
/// Unknown fields are ignored so the daemon can add some without breaking old modules.
#[derive(Deserialize)]
struct RawResponse {
    verdict: Option<String>,
    message: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum CheckVerdict {
    Accept,
    Reject,
    Challenge {
        message: String,
        state: Zeroizing<String>,
    },
    Defer,
    Deny {
        message: String,
    },
}

#[derive(Debug, PartialEq, Eq)]
pub enum AccountAnswer {
    Allow,
    Deny { message: String },
    Ignore,
}

/// A response that is not a verdict: both are handled as "daemon unavailable".
#[derive(Debug, PartialEq, Eq)]
pub enum ResponseError {
    /// The daemon answered `{"error": ...}`.
    Daemon(String),
    /// Not JSON, or JSON without a verdict we know.
    Garbage(String),
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseError::Daemon(text) => write!(f, "otpd answered error: {text}"),
            ResponseError::Garbage(why) => write!(f, "unreadable response from otpd: {why}"),
        }
    }
}

fn parse_raw(line: &[u8]) -> Result<RawResponse, ResponseError> {
    let raw: RawResponse = serde_json::from_slice(line)
        .map_err(|e| ResponseError::Garbage(format!("not a JSON response object ({e})")))?;
    if let Some(error) = raw.error {
        return Err(ResponseError::Daemon(printable(&error, 200)));
    }
    Ok(raw)
}

pub fn parse_check(line: &[u8]) -> Result<CheckVerdict, ResponseError> {
    let mut raw = parse_raw(line)?;
    let message = printable(raw.message.as_deref().unwrap_or(""), MAX_USER_MESSAGE);
    // Taken out at once so the opaque state is wiped even when the verdict is rejected.
    let state = raw.state.take().map(Zeroizing::new);
    match raw.verdict.as_deref() {
        Some("accept") => Ok(CheckVerdict::Accept),
        Some("reject") => Ok(CheckVerdict::Reject),
        Some("defer") => Ok(CheckVerdict::Defer),
        Some("deny") => Ok(CheckVerdict::Deny { message }),
        Some("challenge") => match state {
            Some(state) if !state.is_empty() => Ok(CheckVerdict::Challenge { message, state }),
            _ => Err(ResponseError::Garbage(
                "challenge without a state".to_string(),
            )),
        },
        other => Err(unknown_verdict(other)),
    }
}

pub fn parse_account(line: &[u8]) -> Result<AccountAnswer, ResponseError> {
    let raw = parse_raw(line)?;
    let message = printable(raw.message.as_deref().unwrap_or(""), MAX_USER_MESSAGE);
    match raw.verdict.as_deref() {
        Some("allow") => Ok(AccountAnswer::Allow),
        Some("deny") => Ok(AccountAnswer::Deny { message }),
        Some("ignore") => Ok(AccountAnswer::Ignore),
        other => Err(unknown_verdict(other)),
    }
}

fn unknown_verdict(verdict: Option<&str>) -> ResponseError {
    ResponseError::Garbage(match verdict {
        Some(v) => format!("unknown verdict {:?}", printable(v, 40)),
        None => "no verdict".to_string(),
    })
}

/// Text from the daemon ends up on a terminal or in syslog: control characters could move
/// the cursor or forge log lines, so they become spaces, and the length is capped on a
/// character boundary.
pub fn printable(text: &str, max_bytes: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_bytes));
    for c in text.chars() {
        let c = if c.is_control() && c != '\n' { ' ' } else { c };
        if out.len() + c.len_utf8() > max_bytes {
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn json(line: &[u8]) -> Value {
        assert_eq!(line.last(), Some(&b'\n'), "request must end with a newline");
        assert_eq!(
            line.iter().filter(|&&b| b == b'\n').count(),
            1,
            "exactly one line"
        );
        serde_json::from_slice(line).expect("request is JSON")
    }

    #[test]
    fn check_request_has_exactly_the_contract_fields() {
        let line = encode_check(
            "alice",
            "1234287082",
            "imap",
            Some("192.0.2.7"),
            None,
            1796508100084,
        );
        let v = json(&line);
        assert_eq!(
            v,
            serde_json::json!({"op":"check","user":"alice","password":"1234287082",
                "service":"imap","rhost":"192.0.2.7","client":"pam",
                "deadline_ms":1796508100084u64})
        );
    }

    #[test]
    fn check_request_with_state_and_without_rhost() {
        let line = encode_check("bob", "42\"\n\\", "sshd", None, Some("st-1"), 7);
        let v = json(&line);
        assert_eq!(
            v,
            serde_json::json!({"op":"check","user":"bob","password":"42\"\n\\",
                "service":"sshd","rhost":null,"client":"pam","state":"st-1",
                "deadline_ms":7})
        );
    }

    #[test]
    fn worst_case_escaping_fits_the_preallocated_buffer() {
        let password = "\u{1}".repeat(100);
        let line = encode_check("u", &password, "s", None, None, u64::MAX);
        assert!(line.len() <= line.capacity());
        assert_eq!(json(&line)["password"], Value::String(password));
    }

    #[test]
    fn account_request_has_exactly_the_contract_fields() {
        let line = encode_account("alice", "imap", Some("::1"));
        assert_eq!(
            json(&line),
            serde_json::json!({"op":"account","user":"alice","service":"imap","rhost":"::1"})
        );
    }

    #[test]
    fn check_verdicts() {
        assert_eq!(
            parse_check(br#"{"verdict":"accept"}"#),
            Ok(CheckVerdict::Accept)
        );
        assert_eq!(
            parse_check(br#"{"verdict":"reject","message":"no"}"#),
            Ok(CheckVerdict::Reject)
        );
        assert_eq!(
            parse_check(br#"{"verdict":"defer"}"#),
            Ok(CheckVerdict::Defer)
        );
        assert_eq!(
            parse_check(br#"{"verdict":"deny","message":"IMAP is off for you"}"#),
            Ok(CheckVerdict::Deny {
                message: "IMAP is off for you".into()
            })
        );
        assert_eq!(
            parse_check(br#"{"verdict":"challenge","message":"Code:","state":"abc","x":1}"#),
            Ok(CheckVerdict::Challenge {
                message: "Code:".into(),
                state: Zeroizing::new("abc".into())
            })
        );
    }

    #[test]
    fn bad_check_responses() {
        for (line, want) in [
            (&b"not json"[..], "not a JSON response object"),
            (b"[1,2]", "not a JSON response object"),
            (b"{}", "no verdict"),
            (br#"{"verdict":"allow"}"#, "unknown verdict \"allow\""),
            (br#"{"verdict":"ACCEPT"}"#, "unknown verdict"),
            (br#"{"verdict":42}"#, "not a JSON response object"),
            (
                br#"{"verdict":"challenge","message":"x"}"#,
                "challenge without a state",
            ),
            (
                br#"{"verdict":"challenge","state":""}"#,
                "challenge without a state",
            ),
        ] {
            match parse_check(line) {
                Err(ResponseError::Garbage(why)) => assert!(why.contains(want), "{why}"),
                other => panic!("{:?} gave {other:?}", String::from_utf8_lossy(line)),
            }
        }
    }

    #[test]
    fn error_response_wins_over_everything() {
        assert_eq!(
            parse_check(br#"{"error":"store\u0007 locked","verdict":"accept"}"#),
            Err(ResponseError::Daemon("store  locked".into()))
        );
        assert_eq!(
            parse_account(br#"{"error":"x"}"#),
            Err(ResponseError::Daemon("x".into()))
        );
    }

    #[test]
    fn account_verdicts() {
        assert_eq!(
            parse_account(br#"{"verdict":"allow"}"#),
            Ok(AccountAnswer::Allow)
        );
        assert_eq!(
            parse_account(br#"{"verdict":"ignore"}"#),
            Ok(AccountAnswer::Ignore)
        );
        assert_eq!(
            parse_account(br#"{"verdict":"deny","message":"off"}"#),
            Ok(AccountAnswer::Deny {
                message: "off".into()
            })
        );
        assert!(matches!(
            parse_account(br#"{"verdict":"accept"}"#),
            Err(ResponseError::Garbage(_))
        ));
    }

    #[test]
    fn printable_strips_controls_and_caps_on_char_boundary() {
        assert_eq!(printable("a\x1b[2Jb\r\nc", 100), "a [2Jb \nc");
        assert_eq!(printable("ääää", 5), "ää");
    }
}
