//! A login for a front-end on tokio: the engine decides on the blocking pool or on the
//! worker thread itself ([`Run`]), and a login whose counter advance must first be durable
//! comes back [`Checked::Pending`] and is answered by the store's writer through a channel.
//! The deciding thread is free again as soon as the engine has decided; no thread sleeps
//! through the group commit (before, each waiting login held a pool thread, and the pool's
//! thread switches cost more than the login, docs/performance.md).

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

/// Where the engine decides a login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Run {
    /// On tokio's blocking pool: two thread hand-overs per login.
    Pool,
    /// On the calling worker thread, when it is one of a multi-threaded runtime (else on the
    /// pool): the login's sleeps move the worker's other tasks away first (blocking.rs).
    Here,
}

/// Decides `req`. `before` runs right before the engine and may answer instead of it (the
/// socket's caller gave up: a wait for the pool counts against its deadline). The decision
/// comes through one channel whoever sends it, the deciding thread or the store's writer:
/// the waiting task is woken at most once per login.
pub async fn check<F>(
    engine: Arc<Engine>,
    req: CheckRequest,
    before: F,
    run: Run,
) -> Result<Decision, Dropped>
where
    F: FnOnce(&Engine, &CheckRequest) -> Option<Decision> + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    let decide = move || {
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
    };
    // A panic drops `tx`: the wait below ends with `Dropped`. The pool's thread is not
    // joined: the answer alone wakes this task, once.
    if here(run) {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            crate::blocking::on_worker(decide)
        }));
    } else {
        drop(tokio::task::spawn_blocking(decide));
    }
    rx.await.map_err(|_| Dropped)
}

/// Whether to run on this thread: asked to, and a worker of a multi-threaded runtime.
fn here(run: Run) -> bool {
    run == Run::Here
        && tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

/// Runs `f`, engine work that may sleep, where `run` says. `Dropped`: it panicked (the
/// caller answers with an error instead of losing the connection).
pub async fn call<R, F>(run: Run, f: F) -> Result<R, Dropped>
where
    R: Send + 'static,
    F: FnOnce() -> R + Send + 'static,
{
    if here(run) {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            crate::blocking::on_worker(f)
        }))
        .map_err(|_| Dropped)
    } else {
        tokio::task::spawn_blocking(f).await.map_err(|_| Dropped)
    }
}
