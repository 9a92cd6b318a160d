//! privacyIDEA 3.x's validate dialect (docs/http.md#privacyidea): the answers have
//! privacyIDEA's keys, JSON types and HTTP statuses, so its clients (FreeRADIUS plugin,
//! privacyidea-pam, SSO plugins) work unchanged.

use super::login::{self, Login, Outcome};
use super::params::{self, Params};
use super::{reply, AppState, Caller};
use crate::config::http::Dialect;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use hyper::StatusCode;
use serde_json::{json, Value};

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/validate/check", get(check).post(check))
}

/// Service accounts logged in through `/auth` (filled in by `auth`).
pub(super) struct Sessions {}

impl Sessions {
    pub(super) fn new() -> Sessions {
        Sessions {}
    }
}

/// `/validate/check`: privacyIDEA's, or LinOTP's for a client set to `dialect = "linotp"`.
async fn check(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    req: Request,
) -> Response {
    let p = match params::read(req, st.gate.max_body).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    if caller.client.dialect == Dialect::Linotp {
        return super::linotp::check_with(&st, &caller, &p).await;
    }
    match run(&st, &caller, &p).await {
        Ok(o) => answer(o),
        Err(r) => r,
    }
}

/// The parameters of a login, checked as privacyIDEA checks them.
pub(super) async fn run(st: &AppState, caller: &Caller, p: &Params) -> Result<Outcome, Response> {
    let Some(user) = p.some("user") else {
        return Err(reply::parameter(
            "You need to specify a serial, user or credential_id.",
        ));
    };
    let Some(pass) = p.get("pass") else {
        return Err(reply::parameter("Missing parameter: 'pass'"));
    };
    let state = p.some("transaction_id").or_else(|| p.some("state"));
    login::decide(st, caller, Login { user, pass, state }).await
}

/// A decision in privacyIDEA's shape (always HTTP 200), or error 904 for an unknown user.
pub(super) fn answer(o: Outcome) -> Response {
    match o {
        Outcome::Accept { message, serial } => {
            let mut detail = json!({"message": message});
            if let Some(s) = serial {
                detail["type"] = json!(login::kind_of_serial(&s));
                detail["serial"] = json!(s);
            }
            reply::decision(
                json!({"authentication": "ACCEPT", "status": true, "value": true}),
                Some(detail),
            )
        }
        Outcome::Reject { message } => reply::decision(
            json!({"authentication": "REJECT", "status": true, "value": false}),
            Some(json!({"message": message})),
        ),
        Outcome::Challenge { message, state } => reply::decision(
            json!({"authentication": "CHALLENGE", "status": true, "value": false}),
            Some(challenge_detail(&message, &state)),
        ),
        Outcome::UnknownUser { user } => unknown_user(&user),
    }
}

/// privacyIDEA's 904 (HTTP 400).
pub(super) fn unknown_user(user: &str) -> Response {
    reply::error(
        StatusCode::BAD_REQUEST,
        904,
        &format!("ERR904: User <{user}> does not exist."),
    )
}

/// A challenge's `detail`: one challenge for the account (otpd asks for a code of any of its
/// tokens), its transaction id being the engine's State.
pub(super) fn challenge_detail(message: &str, state: &str) -> Value {
    json!({
        "client_mode": "interactive",
        "message": message,
        "messages": [message],
        "multi_challenge": [{
            "client_mode": "interactive",
            "message": message,
            "serial": "",
            "transaction_id": state,
            "type": "otpd",
        }],
        "preferred_client_mode": "interactive",
        "serial": "",
        "transaction_id": state,
        "transaction_ids": [state],
        "type": "otpd",
    })
}
