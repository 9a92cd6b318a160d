//! The management API under `/api/v1` (issue 18 item 6, branch h18api): its routes are merged
//! here into the HTTP front-end's router, behind the same gate (a client needs `api` in its
//! `[[http.clients]] api` list). Until then `/api/v1/...` answers 404 like any unknown path.

use super::AppState;
use axum::Router;

/// The routes of `/api/v1`; the state is the front-end's [`AppState`].
pub fn router() -> Router<AppState> {
    Router::new()
}
