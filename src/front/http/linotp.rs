//! LinOTP's validate dialect (docs/http.md#linotp). Its `/validate/check` and
//! `/validate/samlcheck` share their paths with privacyIDEA's: a client set to
//! `dialect = "linotp"` gets LinOTP's shape there, and every client gets it under
//! `/linotp/validate/...`. `/validate/simplecheck` is LinOTP's only.

use super::login::Outcome;
use super::params::{self, Params};
use super::reply::{self, Failure};
use super::{privacyidea, AppState, Caller};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::{json, Value};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/linotp/validate/check", get(check).post(check))
        .route("/linotp/validate/samlcheck", get(samlcheck).post(samlcheck))
        .route(
            "/linotp/validate/simplecheck",
            get(simplecheck).post(simplecheck),
        )
        .route("/validate/simplecheck", get(simplecheck).post(simplecheck))
}

/// LinOTP's envelope around a `result`.
fn envelope(result: Value, detail: Option<Value>) -> Response {
    let mut body = json!({"id": 0, "jsonrpc": "2.0", "result": result, "version": reply::VERSION});
    if let (Some(d), Some(o)) = (detail, body.as_object_mut()) {
        o.insert("detail".into(), d);
    }
    Json(body).into_response()
}

/// LinOTP answers errors with HTTP 200 and `result.status` false; the transport's own limits
/// (413, 429, ...) keep their status.
pub(super) fn failure(f: Failure) -> Response {
    let body = json!({
        "id": 0,
        "jsonrpc": "2.0",
        "result": {"status": false, "error": {"code": f.code, "message": f.message}},
        "version": reply::VERSION,
    });
    let status = if f.status.is_client_error() && f.code >= 900 {
        hyper::StatusCode::OK
    } else {
        f.status
    };
    (status, Json(body)).into_response()
}

async fn check(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    req: Request,
) -> Response {
    match params::read(req, st.gate.max_body).await {
        Ok(p) => check_with(&st, &caller, &p).await,
        Err(f) => failure(f),
    }
}

/// LinOTP's `/validate/check`: `result.value` true or false, a challenge in `detail`.
pub(super) async fn check_with(st: &AppState, caller: &Caller, p: &Params) -> Response {
    match privacyidea::run(st, caller, p).await {
        Ok(Outcome::Accept { .. }) => envelope(json!({"status": true, "value": true}), None),
        Ok(Outcome::Reject { .. }) => envelope(json!({"status": true, "value": false}), None),
        Ok(Outcome::Challenge { message, state, .. }) => envelope(
            json!({"status": true, "value": false}),
            Some(json!({"transactionid": state, "message": message, "state": state})),
        ),
        Ok(Outcome::UnknownUser { user }) => failure(privacyidea::unknown_user(&user)),
        Err(f) => failure(f),
    }
}

async fn samlcheck(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    req: Request,
) -> Response {
    samlcheck_request(&st, &caller, req).await
}

/// LinOTP's `/validate/samlcheck`: `result.value` holds `auth` and the user's attributes
/// (otpd keeps none but the name).
pub(super) async fn samlcheck_request(st: &AppState, caller: &Caller, req: Request) -> Response {
    let p = match params::read(req, st.gate.max_body).await {
        Ok(p) => p,
        Err(f) => return failure(f),
    };
    let user = p.get("user").unwrap_or_default().to_string();
    match privacyidea::run(st, caller, &p).await {
        Ok(Outcome::Accept { .. }) => envelope(
            json!({"status": true, "value": {"auth": true, "attributes": {"username": user}}}),
            None,
        ),
        Ok(Outcome::Challenge { message, state, .. }) => envelope(
            json!({"status": true, "value": {"auth": false, "attributes": {}}}),
            Some(json!({"transactionid": state, "message": message, "state": state})),
        ),
        Ok(Outcome::Reject { .. }) => envelope(
            json!({"status": true, "value": {"auth": false, "attributes": {}}}),
            None,
        ),
        Ok(Outcome::UnknownUser { user }) => failure(privacyidea::unknown_user(&user)),
        Err(f) => failure(f),
    }
}

/// LinOTP's `/validate/simplecheck`: plain text `:-)` for an Accept, `:-(` for anything
/// else, and `:-( <transaction> <message>` for a challenge.
async fn simplecheck(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    req: Request,
) -> Response {
    let text = match params::read(req, st.gate.max_body).await {
        Ok(p) => match privacyidea::run(&st, &caller, &p).await {
            Ok(Outcome::Accept { .. }) => ":-)".to_string(),
            Ok(Outcome::Challenge { message, state, .. }) => format!(":-( {state} {message}"),
            Ok(_) => ":-(".to_string(),
            Err(f) if f.code == 413 || f.code >= 500 => return failure(f),
            Err(_) => ":-(".to_string(),
        },
        Err(f) if f.code == 413 => return failure(f),
        Err(_) => ":-(".to_string(),
    };
    (
        [(hyper::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}
