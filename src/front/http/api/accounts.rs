//! `/api/v1/users` and `/api/v1/users/{user}`: list, create, show, delete, level, PIN,
//! unlock, activity.

use super::body::ProofJson;
use super::{read_body, run, AppState, Call};
use axum::extract::{Path, Query, Request, State};
use axum::response::Response;
use hyper::StatusCode;
use serde::Deserialize;
use zeroize::Zeroizing;

pub(super) async fn list(State(st): State<AppState>, req: Request) -> Response {
    run(&st, Call::of(&req), StatusCode::OK, |p, c| p.users(c)).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewUser {
    name: String,
    #[serde(default)]
    pin: Option<String>,
    #[serde(default)]
    level: Option<String>,
}

pub(super) async fn create(State(st): State<AppState>, req: Request) -> Response {
    let b = match read_body::<NewUser>(&st, req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let u = b.value;
    let pin = u.pin.map(Zeroizing::new);
    run(&st, b.call, StatusCode::CREATED, move |p, c| {
        p.create_user(
            c,
            &u.name,
            pin.as_deref().map(String::as_str),
            u.level.as_deref(),
        )
    })
    .await
}

pub(super) async fn show(
    State(st): State<AppState>,
    Path(user): Path<String>,
    req: Request,
) -> Response {
    run(&st, Call::of(&req), StatusCode::OK, move |p, c| {
        p.show(c, &user)
    })
    .await
}

pub(super) async fn delete(
    State(st): State<AppState>,
    Path(user): Path<String>,
    req: Request,
) -> Response {
    run(&st, Call::of(&req), StatusCode::NO_CONTENT, move |p, c| {
        p.delete_user(c, &user)
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Level {
    level: String,
    #[serde(default)]
    proof: Option<ProofJson>,
}

pub(super) async fn level(
    State(st): State<AppState>,
    Path(user): Path<String>,
    req: Request,
) -> Response {
    let b = match read_body::<Level>(&st, req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Level { level, proof } = b.value;
    let proof = proof.map(ProofJson::into_proof);
    run(&st, b.call, StatusCode::OK, move |p, c| {
        p.set_level(c, &user, &level, proof.as_ref())
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Pin {
    pin: String,
}

pub(super) async fn pin(
    State(st): State<AppState>,
    Path(user): Path<String>,
    req: Request,
) -> Response {
    let b = match read_body::<Pin>(&st, req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let pin = Zeroizing::new(b.value.pin);
    run(&st, b.call, StatusCode::OK, move |p, c| {
        p.set_pin(c, &user, &pin)
    })
    .await
}

pub(super) async fn unlock(
    State(st): State<AppState>,
    Path(user): Path<String>,
    req: Request,
) -> Response {
    run(&st, Call::of(&req), StatusCode::OK, move |p, c| {
        p.unlock(c, &user)
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Page {
    #[serde(default = "first")]
    page: usize,
    #[serde(default = "per_page")]
    per_page: usize,
}

fn first() -> usize {
    1
}

fn per_page() -> usize {
    20
}

pub(super) async fn activity(
    State(st): State<AppState>,
    Path(user): Path<String>,
    page: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
    req: Request,
) -> Response {
    let Ok(Query(page)) = page else {
        return super::error_with(
            StatusCode::BAD_REQUEST,
            "invalid",
            "query: page and per_page are positive whole numbers",
        );
    };
    run(&st, Call::of(&req), StatusCode::OK, move |p, c| {
        p.activity(c, &user, page.page, page.per_page)
    })
    .await
}
