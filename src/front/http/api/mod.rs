//! The management API under `/api/v1` (docs/http-api.md): JSON in and out, `Authorization:
//! Bearer KEY`. Translation only: each handler reads the path and body, hands them with the
//! presented key to an `admin::portal::Portal` method on the blocking pool, and turns the
//! answer or the error (`{"error": {"code", "message"}}`, a stable code) into a response.
//! Who may do what, whose token is whose and when a proof is needed is decided there; the
//! proof itself by the engine. No token and no store is seen here.
//!
//! The routes are one table ([`routes`]); the router is built from it, and a test holds the
//! OpenAPI document (`openapi.json`, served at `/api/v1/openapi.json`) to the same table.

mod accounts;
mod body;
mod extras;
mod tokens;

use super::{AppState, Caller as HttpCaller};
use crate::admin::portal::{Caller, Portal, PortalError, PortalResult};
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;
use hyper::{Method, StatusCode};
use serde::Serialize;
use serde_json::json;

use body::read_body;

/// The document, written by hand for the portal's developers (see docs/http-api.md for why).
pub const OPENAPI: &str = include_str!("openapi.json");

/// Every route of `/api/v1`: method, path (axum's `{param}` syntax, as in the document) and
/// handler.
pub(super) fn routes() -> Vec<(Method, &'static str, MethodRouter<AppState>)> {
    fn r<H, T>(
        m: Method,
        path: &'static str,
        h: H,
    ) -> (Method, &'static str, MethodRouter<AppState>)
    where
        H: axum::handler::Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(m.clone()).unwrap_or(MethodFilter::GET);
        (m, path, on(filter, h))
    }
    vec![
        r(Method::GET, "/api/v1/openapi.json", openapi),
        r(Method::GET, "/api/v1/users", accounts::list),
        r(Method::POST, "/api/v1/users", accounts::create),
        r(Method::GET, "/api/v1/users/{user}", accounts::show),
        r(Method::DELETE, "/api/v1/users/{user}", accounts::delete),
        r(Method::PUT, "/api/v1/users/{user}/level", accounts::level),
        r(Method::PUT, "/api/v1/users/{user}/pin", accounts::pin),
        r(
            Method::POST,
            "/api/v1/users/{user}/unlock",
            accounts::unlock,
        ),
        r(
            Method::GET,
            "/api/v1/users/{user}/activity",
            accounts::activity,
        ),
        r(Method::GET, "/api/v1/users/{user}/tokens", tokens::list),
        r(Method::POST, "/api/v1/users/{user}/tokens", tokens::enrol),
        r(
            Method::GET,
            "/api/v1/users/{user}/tokens/{serial}",
            tokens::show,
        ),
        r(
            Method::DELETE,
            "/api/v1/users/{user}/tokens/{serial}",
            tokens::delete,
        ),
        r(
            Method::PUT,
            "/api/v1/users/{user}/tokens/{serial}/label",
            tokens::label,
        ),
        r(
            Method::POST,
            "/api/v1/users/{user}/tokens/{serial}/activate",
            tokens::activate,
        ),
        r(
            Method::POST,
            "/api/v1/users/{user}/tokens/{serial}/enable",
            tokens::enable,
        ),
        r(
            Method::POST,
            "/api/v1/users/{user}/tokens/{serial}/disable",
            tokens::disable,
        ),
        r(
            Method::POST,
            "/api/v1/users/{user}/tokens/{serial}/resync",
            tokens::resync,
        ),
        r(
            Method::GET,
            "/api/v1/users/{user}/backup-codes",
            extras::backup_status,
        ),
        r(
            Method::POST,
            "/api/v1/users/{user}/backup-codes",
            extras::backup_new,
        ),
        r(
            Method::GET,
            "/api/v1/users/{user}/app-passwords",
            extras::app_passwords,
        ),
        r(
            Method::POST,
            "/api/v1/users/{user}/app-passwords",
            extras::app_password_new,
        ),
        r(
            Method::DELETE,
            "/api/v1/users/{user}/app-passwords/{id}",
            extras::app_password_revoke,
        ),
        r(
            Method::GET,
            "/api/v1/users/{user}/trusted-devices",
            extras::devices,
        ),
        r(
            Method::DELETE,
            "/api/v1/users/{user}/trusted-devices",
            extras::devices_revoke_all,
        ),
        r(
            Method::DELETE,
            "/api/v1/users/{user}/trusted-devices/{id}",
            extras::device_revoke,
        ),
    ]
}

/// The routes of `/api/v1`; the state is the front-end's [`AppState`]. A method a path does
/// not serve, and a path under `/api/v1` that does not exist, get this API's JSON errors
/// too (the catch-all is not a route of the document).
pub fn router() -> Router<AppState> {
    routes()
        .into_iter()
        .fold(Router::new(), |router, (_, path, h)| router.route(path, h))
        .method_not_allowed_fallback(method_not_allowed)
        .route("/api/v1/{*rest}", axum::routing::any(no_such_endpoint))
}

async fn method_not_allowed() -> Response {
    error_with(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method; see /api/v1/openapi.json",
    )
}

async fn no_such_endpoint() -> Response {
    error_with(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; see /api/v1/openapi.json",
    )
}

async fn openapi() -> Response {
    ([(hyper::header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// `{"error": {"code", "message"}}` with the code's HTTP status.
pub(super) fn error(e: &PortalError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    error_with(status, e.code(), &e.to_string())
}

pub(super) fn error_with(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"error": {"code": code, "message": message}});
    let mut r = (status, axum::Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Bearer"),
        );
    }
    r
}

/// What a handler needs of the request besides path and body: the presented key and the
/// address the audit names.
pub(super) struct Call {
    bearer: Option<String>,
    source: Option<String>,
    action: String,
}

impl Call {
    pub(super) fn of(req: &Request) -> Call {
        let bearer = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.trim().split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then(|| rest.trim().to_string())
            });
        let source = req
            .extensions()
            .get::<HttpCaller>()
            .map(|c| c.source.to_string());
        Call {
            bearer,
            source,
            action: format!("{} {}", req.method(), req.uri().path()),
        }
    }
}

/// Authenticates the call and runs `f` on the blocking pool (the admin's operations read
/// and write the store synchronously); answers `ok` with `f`'s value as JSON.
pub(super) async fn run<T, F>(st: &AppState, call: Call, ok: StatusCode, f: F) -> Response
where
    T: Serialize + Send + 'static,
    F: FnOnce(&Portal, &Caller) -> PortalResult<T> + Send + 'static,
{
    let portals = st.portals.clone();
    let done = tokio::task::spawn_blocking(move || {
        let portal = portals.portal();
        let caller = match call.bearer.as_deref() {
            Some(key) => portal.authenticate(key, call.source.clone()),
            None => Err(PortalError::Unauthorized),
        };
        match caller {
            Ok(c) => f(&portal, &c),
            Err(e) => {
                if matches!(e, PortalError::Unauthorized) {
                    portal.audit_unauthorized(call.source, &call.action);
                }
                Err(e)
            }
        }
    })
    .await;
    match done {
        Ok(Ok(v)) if ok == StatusCode::NO_CONTENT => {
            drop(v);
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(Ok(v)) => (ok, axum::Json(v)).into_response(),
        Ok(Err(e)) => error(&e),
        Err(e) => {
            tracing::error!("api: a request's task ended: {e}");
            error(&PortalError::Internal(String::new()))
        }
    }
}

#[cfg(test)]
mod tests;
