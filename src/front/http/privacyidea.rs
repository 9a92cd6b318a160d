//! privacyIDEA 3.x's validate dialect (docs/http.md#privacyidea): the answers have
//! privacyIDEA's keys, JSON types and HTTP statuses, so its clients (FreeRADIUS plugin,
//! privacyidea-pam, SSO plugins) work unchanged.

use super::login::{self, Login, Outcome};
use super::params::{self, Params};
use super::reply::{self, Failure};
use super::{auth, device, AppState, Caller};
use crate::config::http::Dialect;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use hyper::StatusCode;
use serde_json::{json, Value};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/validate/check", get(check).post(check))
        .route("/validate/radiuscheck", get(radiuscheck).post(radiuscheck))
        .route("/validate/samlcheck", get(samlcheck).post(samlcheck))
        .route(
            "/validate/polltransaction",
            get(polltransaction).post(polltransaction),
        )
        .route("/validate/triggerchallenge", post(auth::triggerchallenge))
        .route("/auth", post(auth::auth))
}

/// `/validate/check`: privacyIDEA's, or LinOTP's for a client set to `dialect = "linotp"`.
async fn check(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    req: Request,
) -> Response {
    let p = match params::read(req, st.gate.max_body).await {
        Ok(p) => p,
        Err(f) if caller.client.dialect == Dialect::Linotp => return super::linotp::failure(f),
        Err(f) => return f.privacyidea(),
    };
    if caller.client.dialect == Dialect::Linotp {
        return super::linotp::check_with(&st, &caller, &p).await;
    }
    match run_with(&st, &caller, &p, true).await {
        Ok(o) => answer(o),
        Err(f) => f.privacyidea(),
    }
}

/// For FreeRADIUS's rlm_rest: 204 and an empty body for an Accept, 400 and an empty body
/// for everything else (a challenge cannot be said here).
async fn radiuscheck(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    req: Request,
) -> Response {
    let accepted = match params::read(req, st.gate.max_body).await {
        Ok(p) => matches!(run(&st, &caller, &p).await, Ok(Outcome::Accept { .. })),
        Err(_) => false,
    };
    let status = if accepted {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::BAD_REQUEST
    };
    status.into_response()
}

/// privacyIDEA 3.14 removed `/validate/samlcheck` (404); LinOTP still has it.
async fn samlcheck(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    req: Request,
) -> Response {
    if caller.client.dialect == Dialect::Linotp {
        return super::linotp::samlcheck_request(&st, &caller, req).await;
    }
    reply::not_found().await
}

/// otpd has no token that is confirmed out of band (push): a transaction never turns into
/// an Accept by polling, so the answer is always "not (yet) accepted".
async fn polltransaction(State(st): State<AppState>, req: Request) -> Response {
    let p = match params::read(req, st.gate.max_body).await {
        Ok(p) => p,
        Err(f) => return f.privacyidea(),
    };
    if p.some("transaction_id").is_none() {
        return Failure::parameter("Missing parameter: 'transaction_id'").privacyidea();
    }
    reply::decision(
        json!({"authentication": "REJECT", "status": true, "value": false}),
        Some(json!({"challenge_status": "pending"})),
    )
}

/// The parameters of a login, checked as privacyIDEA checks them. `realm` is not used: the
/// account is the name as sent (otpd's accounts are often whole addresses).
pub(super) async fn run(st: &AppState, caller: &Caller, p: &Params) -> Result<Outcome, Failure> {
    run_with(st, caller, p, false).await
}

/// [`run`]; `may_remember`: the answer can carry a new trusted device's token.
async fn run_with(
    st: &AppState,
    caller: &Caller,
    p: &Params,
    may_remember: bool,
) -> Result<Outcome, Failure> {
    let Some(user) = p.some("user") else {
        return Err(Failure::parameter(
            "You need to specify a serial, user or credential_id.",
        ));
    };
    let Some(pass) = p.get("pass") else {
        return Err(Failure::parameter("Missing parameter: 'pass'"));
    };
    let state = p.some("transaction_id").or_else(|| p.some("state"));
    let device = device::request(p, caller, may_remember)?;
    login::decide(
        st,
        caller,
        Login {
            user,
            pass,
            state,
            trigger: false,
            device,
        },
    )
    .await
}

/// A decision in privacyIDEA's shape (always HTTP 200), or error 904 for an unknown user.
pub(super) fn answer(o: Outcome) -> Response {
    match o {
        Outcome::Accept {
            message,
            serial,
            device,
        } => {
            let mut detail = json!({"message": message});
            if let Some(s) = serial {
                detail["type"] = json!(login::kind_of_serial(&s));
                detail["serial"] = json!(s);
            }
            if let Some(d) = &device {
                detail["trusted_device"] = device::detail(d);
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
        Outcome::Challenge {
            message,
            state,
            serial,
        } => reply::decision(
            json!({"authentication": "CHALLENGE", "status": true, "value": false}),
            Some(challenge_detail(&message, &state, serial.as_deref())),
        ),
        Outcome::UnknownUser { user } => unknown_user(&user).privacyidea(),
    }
}

/// privacyIDEA's 904 (HTTP 400).
pub(super) fn unknown_user(user: &str) -> Failure {
    Failure {
        status: StatusCode::BAD_REQUEST,
        code: 904,
        message: format!("ERR904: User <{user}> does not exist."),
    }
}

/// A challenge's `detail`: one challenge for the account (otpd asks for a code of any of its
/// tokens, or of the e-mail token it just sent one for), its transaction id being the
/// engine's State.
pub(super) fn challenge_detail(message: &str, state: &str, serial: Option<&str>) -> Value {
    let serial = serial.unwrap_or_default();
    let kind = if serial.is_empty() {
        "otp"
    } else {
        login::kind_of_serial(serial)
    };
    json!({
        "client_mode": "interactive",
        "message": message,
        "messages": [message],
        "multi_challenge": [{
            "client_mode": "interactive",
            "message": message,
            "serial": serial,
            "transaction_id": state,
            "type": kind,
        }],
        "preferred_client_mode": "interactive",
        "serial": serial,
        "transaction_id": state,
        "transaction_ids": [state],
        "type": kind,
    })
}
