//! Request bodies: bounded by `[http] max_body_bytes`, JSON objects of a known shape (unknown
//! fields refused), wiped after use (they may hold a PIN, a code or a secret). A parse error
//! names the field and the place but never repeats a value.

use super::{error_with, AppState, Call};
use crate::admin::portal::Proof;
use axum::extract::Request;
use axum::response::Response;
use hyper::StatusCode;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use zeroize::Zeroizing;

/// A parsed body with the call it came with.
pub(super) struct Body<T> {
    pub call: Call,
    pub value: T,
}

/// `"proof": {"password": PIN+code, "rhost": the user's address}` in a weakening request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProofJson {
    password: String,
    #[serde(default)]
    rhost: Option<String>,
}

impl ProofJson {
    pub(super) fn into_proof(self) -> Proof {
        Proof {
            password: Zeroizing::new(self.password),
            rhost: self.rhost,
        }
    }
}

/// Reads the body as `T`; an empty body reads as `{}` (for endpoints whose fields are all
/// optional).
pub(super) async fn read_body<T: DeserializeOwned>(
    st: &AppState,
    req: Request,
) -> Result<Body<T>, Response> {
    let call = Call::of(&req);
    let limit = st.gate.max_body;
    let bytes = match axum::body::to_bytes(req.into_body(), limit).await {
        Ok(b) => Zeroizing::new(b.to_vec()),
        Err(_) => {
            return Err(error_with(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                &format!("request body larger than {limit} bytes (or cut off)"),
            ))
        }
    };
    let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &bytes
    };
    match serde_json::from_slice::<T>(text) {
        Ok(value) => Ok(Body { call, value }),
        Err(e) => Err(json_error(&e)),
    }
}

/// serde's own words where they name only fields ("missing field `level`", "unknown field
/// `x`"); a wrong type or value is reported by place alone, since serde would quote it.
fn json_error(e: &serde_json::Error) -> Response {
    use serde_json::error::Category;
    let at = format!("line {} column {}", e.line(), e.column());
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => error_with(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            &format!("the body is not a JSON object ({at})"),
        ),
        Category::Data => {
            let msg = e.to_string();
            let named = msg.starts_with("missing field") || msg.starts_with("unknown field");
            let what = if named {
                msg.split(" at line").next().unwrap_or("").to_string()
            } else {
                "a field has the wrong type or value".to_string()
            };
            error_with(
                StatusCode::BAD_REQUEST,
                "invalid",
                &format!("{what} ({at}); see /api/v1/openapi.json"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Pin {
        pin: String,
    }

    async fn text(r: Response) -> String {
        let b = axum::body::to_bytes(r.into_body(), 4096)
            .await
            .expect("body");
        String::from_utf8_lossy(&b).into_owned()
    }

    #[tokio::test]
    async fn errors_name_fields_but_never_repeat_a_value() {
        let e = serde_json::from_str::<Pin>(r#"{"pin": 48213579}"#).expect_err("type");
        let t = text(json_error(&e)).await;
        assert!(!t.contains("48213579"), "{t}");
        assert!(t.contains("\"invalid\""), "{t}");
        let e = serde_json::from_str::<Pin>(r#"{"pim": "4821"}"#).expect_err("unknown");
        let t = text(json_error(&e)).await;
        assert!(
            t.contains("unknown field `pim`") && !t.contains("4821"),
            "{t}"
        );
        let e = serde_json::from_str::<Pin>(r#"{"pin": "48"#).expect_err("cut");
        assert!(text(json_error(&e)).await.contains("malformed_json"));
    }
}
