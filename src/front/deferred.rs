//! A login for a front-end on tokio: the engine decides on the blocking pool, and a login
//! whose counter advance must first be durable comes back [`Checked::Pending`] and is
//! answered by the store's writer through a channel. The blocking thread is free again as
//! soon as the engine has decided; no thread sleeps through the group commit (before, each
//! waiting login held a pool thread, and the pool's thread switches cost more than the
//! login, docs/performance.md).

use crate::engine::{CheckRequest, Checked, Decision, Engine, Responder};
use std::sync::Arc;
use tokio::sync::oneshot;

/// Why a login got no decision: its task on the pool failed (a panic), so its answer was
/// dropped unsent.
#[derive(Debug, thiserror::Error)]
#[error("the engine's task ended without a decision")]
pub struct Dropped;

/// Hands a login's decision back to the task that waits for it.
struct Answer(oneshot::Sender<Decision>);

impl Responder for Answer {
    fn respond(self, d: &Decision) {
        // The task is gone only when its connection was dropped: nobody to answer.
        let _ = self.0.send(d.clone());
    }
}

/// Decides `req`. `before` runs on the blocking thread right before the engine and may
/// answer instead of it (the socket's caller gave up: a wait for the pool counts against
/// its deadline). The decision comes through one channel whoever sends it, the pool thread
/// or the store's writer: the waiting task is woken once per login.
pub async fn check<F>(
    engine: Arc<Engine>,
    req: CheckRequest,
    before: F,
) -> Result<Decision, Dropped>
where
    F: FnOnce(&Engine, &CheckRequest) -> Option<Decision> + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    // Not joined: a panic drops `tx`, and the wait below ends with `Dropped`.
    drop(tokio::task::spawn_blocking(move || {
        if let Some(d) = before(&engine, &req) {
            let _ = tx.send(d);
            return;
        }
        match engine.check_deferrable(&req) {
            Checked::Done(d) => {
                let _ = tx.send(d);
            }
            Checked::Pending(p) => p.then(engine, req, Answer(tx)),
        }
    }));
    rx.await.map_err(|_| Dropped)
}
