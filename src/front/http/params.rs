//! A request's parameters as privacyIDEA reads them: the query string, then a form or a JSON
//! object in the body (the body wins over the query for the same name). Values are wiped
//! when dropped: `pass` holds a PIN and a code.

use super::reply::Failure;
use axum::extract::Request;
use hyper::Method;
use serde_json::Value;
use zeroize::Zeroizing;

#[derive(Default)]
pub(super) struct Params(Vec<(String, Zeroizing<String>)>);

impl Params {
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A parameter that must be there and not empty.
    pub(super) fn some(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    fn push(&mut self, k: String, v: String) {
        self.0.push((k, Zeroizing::new(v)));
    }

    fn form(&mut self, bytes: &[u8]) {
        for (k, v) in form_urlencoded::parse(bytes) {
            self.push(k.into_owned(), v.into_owned());
        }
    }
}

/// Reads the parameters of a request within `max_body` bytes of body.
pub(super) async fn read(req: Request, max_body: usize) -> Result<Params, Failure> {
    let mut p = Params::default();
    if let Some(q) = req.uri().query() {
        p.form(q.as_bytes());
    }
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return Ok(p);
    }
    let json = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| {
            t.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    let body = match axum::body::to_bytes(req.into_body(), max_body).await {
        Ok(b) => Zeroizing::new(b.to_vec()),
        Err(e) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            return Err(if too_large {
                Failure {
                    status: hyper::StatusCode::PAYLOAD_TOO_LARGE,
                    code: 413,
                    message: format!("request body larger than {max_body} bytes"),
                }
            } else {
                Failure::parameter("the request body could not be read")
            });
        }
    };
    if body.is_empty() {
        return Ok(p);
    }
    if !json {
        p.form(&body);
        return Ok(p);
    }
    // The parser's message may quote the body (a password): say where, not what.
    let v: Value = serde_json::from_slice(&body).map_err(|e| {
        Failure::parameter(&format!(
            "malformed JSON body (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let Value::Object(map) = v else {
        return Err(Failure::parameter("the JSON body must be an object"));
    };
    for (k, v) in map {
        let s = match v {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => String::new(),
            Value::Array(_) | Value::Object(_) => {
                return Err(Failure::parameter(&format!(
                    "parameter `{}` must be a string",
                    k.chars().take(64).collect::<String>()
                )))
            }
        };
        p.push(k, s);
    }
    Ok(p)
}
