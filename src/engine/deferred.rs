//! Deferred answers as values: a login asked for with [`Engine::check_deferrable`] may come
//! back [`Checked::Pending`] with the store's ticket for its counter advance; the front-end
//! hands it a [`Responder`], the one way back to its client, which runs once the advance is
//! durable (docs/performance.md explains why RADIUS answers this way).

use super::{CheckRequest, Decision, Engine};
use crate::store::{CommitMode, Completion, Outcome, Ticket};
use std::sync::Arc;

/// How this login's conditional write commits, and its ticket once it was deferred. Passed
/// down the OTP path; a path that acts on an Accept before answering (the re-login cache)
/// passes its own `Wait`.
pub(super) struct Commit {
    pub(super) mode: CommitMode,
    pub(super) ticket: Option<Ticket>,
}

impl Commit {
    pub(super) fn new(mode: CommitMode) -> Commit {
        Commit { mode, ticket: None }
    }
}

/// What a front-end gets from [`Engine::check_deferrable`].
pub enum Checked {
    /// Decided and audited.
    Done(Decision),
    /// Decided as if the counter advance won; not final (and not audited) until the store
    /// has the outcome: see [`Pending::then`].
    Pending(Pending),
}

/// A login whose counter advance is queued but not yet durable.
pub struct Pending {
    pub(super) decision: Decision,
    pub(super) ticket: Ticket,
}

/// Sends a deferred login's final decision to its client. It runs on the thread that makes
/// the advance durable (the store's writer), so it must be short and must not wait for the
/// store: encode, send, release what the request held.
pub trait Responder: Send + 'static {
    fn respond(self, d: &Decision);
}

impl Pending {
    /// Once the advance is durable, lost to another login that used the code first, or
    /// failed: [`Engine::settle`] makes the final decision and writes its audit record, then
    /// `responder` sends it. Nothing is answered before the commit. (Generic, so that the
    /// responder travels inside the one allocation the store keeps for the completion.)
    pub fn then<R: Responder>(self, engine: Arc<Engine>, req: CheckRequest, responder: R) {
        self.ticket.then(Box::new(Settle {
            engine,
            req,
            decision: self.decision,
            responder,
        }));
    }
}

struct Settle<R> {
    engine: Arc<Engine>,
    req: CheckRequest,
    decision: Decision,
    responder: R,
}

impl<R: Responder> Completion for Settle<R> {
    fn complete(self: Box<Self>, outcome: Outcome) {
        let Settle {
            engine,
            req,
            decision,
            responder,
        } = *self;
        let d = engine.settle(&req, decision, outcome);
        responder.respond(&d);
    }
}

/// A provisional Accept turned into the Reject the waiting path gives (otp.rs): same user,
/// class and token, the reason given.
pub(super) fn lost(d: Decision, why: String) -> Decision {
    let mut r = Decision::reject(d.user, why);
    r.serial = d.serial;
    r.class = d.class;
    r
}
