//! LinOTP's validate dialect (docs/http.md#linotp). Its `/validate/check` shares the path with
//! privacyIDEA's: a client set to `dialect = "linotp"` gets LinOTP's shape there, and every
//! client gets it under `/linotp/validate/...`.

use super::login::Outcome;
use super::params::{self, Params};
use super::{privacyidea, reply, AppState, Caller};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::json;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/linotp/validate/check", get(check).post(check))
}

async fn check(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    req: Request,
) -> Response {
    match params::read(req, st.gate.max_body).await {
        Ok(p) => check_with(&st, &caller, &p).await,
        Err(r) => r,
    }
}

/// LinOTP's `/validate/check`: `result.value` true or false, a challenge in `detail`.
pub(super) async fn check_with(st: &AppState, caller: &Caller, p: &Params) -> Response {
    let o = match privacyidea::run(st, caller, p).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let body = match o {
        Outcome::Accept { .. } => {
            json!({"result": {"status": true, "value": true}, "version": reply::VERSION, "id": 0, "jsonrpc": "2.0"})
        }
        Outcome::Reject { .. } | Outcome::UnknownUser { .. } => {
            json!({"result": {"status": true, "value": false}, "version": reply::VERSION, "id": 0, "jsonrpc": "2.0"})
        }
        Outcome::Challenge { message, state } => json!({
            "result": {"status": true, "value": false},
            "detail": {"transactionid": state, "message": message},
            "version": reply::VERSION, "id": 0, "jsonrpc": "2.0",
        }),
    };
    Json(body).into_response()
}
