//! privacyIDEA's JSON envelope (`jsonrpc`, `id`, `result`, `detail`, `time`, `version`) and the
//! errors every route shares. Errors of the transport (busy, too slow, too large) use the
//! same envelope with the HTTP status as their code, so a privacyIDEA client reads them as
//! errors and not as a decision.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use hyper::StatusCode;
use serde_json::{json, Value};

/// `version` as privacyIDEA's clients expect a string there.
pub(super) const VERSION: &str = concat!("otpd ", env!("CARGO_PKG_VERSION"));
/// `versionnumber`: the privacyIDEA API version whose answers otpd gives.
pub(super) const API_VERSION: &str = "3.14";

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A decision's body: `id` 2, `result` with `authentication`, `versionnumber`.
pub(super) fn decision(result: Value, detail: Option<Value>) -> Response {
    let mut body = json!({
        "id": 2,
        "jsonrpc": "2.0",
        "result": result,
        "time": now(),
        "version": VERSION,
        "versionnumber": API_VERSION,
    });
    if let (Some(d), Some(obj)) = (detail, body.as_object_mut()) {
        obj.insert("detail".into(), d);
    }
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// An error in privacyIDEA's shape: `result.status` false, `result.error {code, message}`,
/// `id` 1, `detail` null.
pub(super) fn error(status: StatusCode, code: i64, message: &str) -> Response {
    error_with_detail(status, code, message, Value::Null)
}

pub(super) fn error_with_detail(
    status: StatusCode,
    code: i64,
    message: &str,
    detail: Value,
) -> Response {
    let body = json!({
        "detail": detail,
        "id": 1,
        "jsonrpc": "2.0",
        "result": {"error": {"code": code, "message": message}, "status": false},
        "time": now(),
        "version": VERSION,
    });
    (status, axum::Json(body)).into_response()
}

/// The request limits: 503 when otpd as a whole is full, 429 when this source has its share.
pub(super) fn busy(all: bool) -> Response {
    let mut r = if all {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            503,
            "otpd is busy; try again shortly",
        )
    } else {
        error(
            StatusCode::TOO_MANY_REQUESTS,
            429,
            "too many requests from this address at once",
        )
    };
    r.headers_mut().insert(
        hyper::header::RETRY_AFTER,
        hyper::header::HeaderValue::from_static("1"),
    );
    r
}

/// The answer to a connection beyond the connection limits; the connection closes after it.
pub(super) fn refused(all: bool) -> hyper::Response<Body> {
    let mut r = busy(all);
    r.headers_mut().insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("close"),
    );
    r
}

/// A request that took longer than `request_timeout` (a body that trickles in).
pub(super) fn too_slow() -> Response {
    let mut r = error(
        StatusCode::REQUEST_TIMEOUT,
        408,
        "the request took too long; closing",
    );
    r.headers_mut().insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("close"),
    );
    r
}

/// An unknown path, answered as privacyIDEA (Flask) answers one.
pub(super) async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"error": "Not found"})),
    )
        .into_response()
}

/// A request that could not be decided, before each dialect renders it.
#[derive(Debug)]
pub(super) struct Failure {
    pub status: StatusCode,
    pub code: i64,
    pub message: String,
}

impl Failure {
    pub(super) fn parameter(message: &str) -> Failure {
        Failure {
            status: StatusCode::BAD_REQUEST,
            code: 905,
            message: format!("ERR905: {message}"),
        }
    }
    pub(super) fn internal() -> Failure {
        Failure {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: 500,
            message: "internal error; the login was not decided".into(),
        }
    }
    /// privacyIDEA's envelope.
    pub(super) fn privacyidea(self) -> Response {
        error(self.status, self.code, &self.message)
    }
}
