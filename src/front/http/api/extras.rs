//! `/api/v1/users/{user}/backup-codes` and `/app-passwords`.

use super::tokens::with_proof;
use super::{read_body, run, AppState, Call};
use axum::extract::{Path, Request, State};
use axum::response::Response;
use hyper::StatusCode;
use serde::Deserialize;

pub(super) async fn backup_status(
    State(st): State<AppState>,
    Path(user): Path<String>,
    req: Request,
) -> Response {
    run(&st, Call::of(&req), StatusCode::OK, move |p, c| {
        p.backup_codes(c, &user)
    })
    .await
}

pub(super) async fn backup_new(
    State(st): State<AppState>,
    Path(user): Path<String>,
    req: Request,
) -> Response {
    with_proof(&st, req, StatusCode::CREATED, move |p, c, proof| {
        p.new_backup_codes(c, &user, proof)
    })
    .await
}

pub(super) async fn app_passwords(
    State(st): State<AppState>,
    Path(user): Path<String>,
    req: Request,
) -> Response {
    run(&st, Call::of(&req), StatusCode::OK, move |p, c| {
        p.app_passwords(c, &user)
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewAppPassword {
    label: String,
    #[serde(default)]
    services: Vec<String>,
}

pub(super) async fn app_password_new(
    State(st): State<AppState>,
    Path(user): Path<String>,
    req: Request,
) -> Response {
    let b = match read_body::<NewAppPassword>(&st, req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let NewAppPassword { label, services } = b.value;
    run(&st, b.call, StatusCode::CREATED, move |p, c| {
        p.add_app_password(c, &user, &label, &services)
    })
    .await
}

pub(super) async fn app_password_revoke(
    State(st): State<AppState>,
    Path((user, id)): Path<(String, String)>,
    req: Request,
) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return super::error_with(
            StatusCode::NOT_FOUND,
            "not_found",
            "an app password is addressed by its numeric id",
        );
    };
    run(&st, Call::of(&req), StatusCode::NO_CONTENT, move |p, c| {
        p.revoke_app_password(c, &user, id)
    })
    .await
}

pub(super) async fn devices(
    State(st): State<AppState>,
    Path(user): Path<String>,
    req: Request,
) -> Response {
    run(&st, Call::of(&req), StatusCode::OK, move |p, c| {
        p.devices(c, &user)
    })
    .await
}

pub(super) async fn devices_revoke_all(
    State(st): State<AppState>,
    Path(user): Path<String>,
    req: Request,
) -> Response {
    with_proof(&st, req, StatusCode::OK, move |p, c, proof| {
        p.revoke_devices(c, &user, proof)
    })
    .await
}

pub(super) async fn device_revoke(
    State(st): State<AppState>,
    Path((user, id)): Path<(String, String)>,
    req: Request,
) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return super::error_with(
            StatusCode::NOT_FOUND,
            "not_found",
            "a trusted device is addressed by its numeric id",
        );
    };
    run(&st, Call::of(&req), StatusCode::NO_CONTENT, move |p, c| {
        p.revoke_device(c, &user, id)
    })
    .await
}
