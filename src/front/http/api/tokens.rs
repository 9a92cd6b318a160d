//! `/api/v1/users/{user}/tokens`: enrol, list, show, activate, label, enable, disable,
//! resync, delete.

use super::body::ProofJson;
use super::{read_body, run, AppState, Call};
use crate::admin::portal::{Caller, EnrolRequest, Portal, PortalResult, Proof};
use axum::extract::{Path, Request, State};
use axum::response::Response;
use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use zeroize::Zeroizing;

pub(super) async fn list(
    State(st): State<AppState>,
    Path(user): Path<String>,
    req: Request,
) -> Response {
    run(&st, Call::of(&req), StatusCode::OK, move |p, c| {
        p.tokens(c, &user)
    })
    .await
}

pub(super) async fn show(
    State(st): State<AppState>,
    Path((user, serial)): Path<(String, String)>,
    req: Request,
) -> Response {
    run(&st, Call::of(&req), StatusCode::OK, move |p, c| {
        p.token(c, &user, &serial)
    })
    .await
}

/// An option's value: a string, or a number or boolean written as JSON would.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum OptionValue {
    Text(String),
    Number(serde_json::Number),
    Flag(bool),
}

impl OptionValue {
    fn text(self) -> Zeroizing<String> {
        Zeroizing::new(match self {
            OptionValue::Text(s) => s,
            OptionValue::Number(n) => n.to_string(),
            OptionValue::Flag(b) => b.to_string(),
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Enrol {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    options: BTreeMap<String, OptionValue>,
}

pub(super) async fn enrol(
    State(st): State<AppState>,
    Path(user): Path<String>,
    req: Request,
) -> Response {
    let b = match read_body::<Enrol>(&st, req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let e = b.value;
    let r = EnrolRequest {
        kind: e.kind,
        label: e.label,
        options: e.options.into_iter().map(|(k, v)| (k, v.text())).collect(),
    };
    run(&st, b.call, StatusCode::CREATED, move |p, c| {
        p.enrol(c, &user, &r)
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Code {
    code: String,
}

pub(super) async fn activate(
    State(st): State<AppState>,
    Path((user, serial)): Path<(String, String)>,
    req: Request,
) -> Response {
    let b = match read_body::<Code>(&st, req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let code = Zeroizing::new(b.value.code);
    run(&st, b.call, StatusCode::OK, move |p, c| {
        p.activate(c, &user, &serial, &code)
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Label {
    label: String,
}

pub(super) async fn label(
    State(st): State<AppState>,
    Path((user, serial)): Path<(String, String)>,
    req: Request,
) -> Response {
    let b = match read_body::<Label>(&st, req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let label = b.value.label;
    run(&st, b.call, StatusCode::OK, move |p, c| {
        p.rename(c, &user, &serial, &label)
    })
    .await
}

/// A body that may carry a proof and nothing else.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct MaybeProof {
    #[serde(default)]
    proof: Option<ProofJson>,
}

/// An action whose body may carry a fresh proof (the weakening ones): the body read and
/// bounded, the proof handed to `f`, which the portal checks when the action weakens.
pub(super) async fn with_proof<T, F>(st: &AppState, req: Request, ok: StatusCode, f: F) -> Response
where
    T: Serialize + Send + 'static,
    F: FnOnce(&Portal, &Caller, Option<&Proof>) -> PortalResult<T> + Send + 'static,
{
    let b = match read_body::<MaybeProof>(st, req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let proof = b.value.proof.map(ProofJson::into_proof);
    run(st, b.call, ok, move |p, c| f(p, c, proof.as_ref())).await
}

pub(super) async fn enable(
    State(st): State<AppState>,
    Path((user, serial)): Path<(String, String)>,
    req: Request,
) -> Response {
    with_proof(&st, req, StatusCode::OK, move |p, c, _| {
        p.set_enabled(c, &user, &serial, true, None)
    })
    .await
}

pub(super) async fn disable(
    State(st): State<AppState>,
    Path((user, serial)): Path<(String, String)>,
    req: Request,
) -> Response {
    with_proof(&st, req, StatusCode::OK, move |p, c, proof| {
        p.set_enabled(c, &user, &serial, false, proof)
    })
    .await
}

pub(super) async fn delete(
    State(st): State<AppState>,
    Path((user, serial)): Path<(String, String)>,
    req: Request,
) -> Response {
    with_proof(&st, req, StatusCode::NO_CONTENT, move |p, c, proof| {
        p.delete_token(c, &user, &serial, proof)
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Resync {
    code1: String,
    code2: String,
}

pub(super) async fn resync(
    State(st): State<AppState>,
    Path((user, serial)): Path<(String, String)>,
    req: Request,
) -> Response {
    let b = match read_body::<Resync>(&st, req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Resync { code1, code2 } = b.value;
    run(&st, b.call, StatusCode::OK, move |p, c| {
        p.resync(c, &user, &serial, &code1, &code2)
    })
    .await
}
