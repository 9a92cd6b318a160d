//! A conditional write's answer that comes later: the value a store hands back for
//! [`CommitMode::Defer`](super::CommitMode), and the only way its answer travels on.
//!
//! Store-neutral: any store that can tell "queued" from "durable" (a group committer, an
//! asynchronous database driver) makes a pair with [`ticket`], returns the [`Ticket`] at once
//! and resolves the [`Resolver`] once the write is durable or lost.

use super::{StoreError, StoreResult};
use std::sync::{Arc, Mutex, MutexGuard};

/// The durable outcome of a deferred conditional write: `Ok(true)` won and durable,
/// `Ok(false)` another request used the code first, `Err` the write failed (nothing of it is
/// durable).
pub type Outcome = StoreResult<bool>;

/// What runs once a deferred write's outcome is known. It runs on whatever thread resolves
/// the ticket (for SQLite, the store's single writer thread, between two batches), so it must
/// be short and must not wait for the store: settle the decision, queue the audit record,
/// send the answer. Like a DNS server's response handler, it is the one way back to the
/// client of a deferred login.
pub trait Completion: Send + 'static {
    fn complete(self: Box<Self>, outcome: Outcome);
}

enum State {
    Waiting,
    Done(Outcome),
    Then(Box<dyn Completion>),
    Finished,
}

struct Cell(Mutex<State>);

/// A conditional write queued without waiting; [`Ticket::then`] says what to do with its
/// outcome. Dropping a ticket without `then` drops the outcome (the write still happens).
pub struct Ticket(Arc<Cell>);

/// The store's side of a [`Ticket`]: resolved exactly once. Dropped unresolved (a writer
/// that stopped or panicked), it resolves as a failed write, so no login waits for ever.
pub struct Resolver(Option<Arc<Cell>>);

/// A new pair: the ticket for the caller, the resolver for whoever makes the write durable.
pub fn ticket() -> (Ticket, Resolver) {
    let cell = Arc::new(Cell(Mutex::new(State::Waiting)));
    (Ticket(cell.clone()), Resolver(Some(cell)))
}

fn lock(c: &Cell) -> MutexGuard<'_, State> {
    // A poisoned lock means a completion panicked elsewhere; the state is still one of ours.
    c.0.lock().unwrap_or_else(|p| p.into_inner())
}

impl Ticket {
    /// Runs `c` with the outcome: at once on this thread when it is known already, else on
    /// the thread that resolves it.
    pub fn then(self, c: Box<dyn Completion>) {
        let mut st = lock(&self.0);
        match std::mem::replace(&mut *st, State::Finished) {
            State::Done(outcome) => {
                drop(st);
                c.complete(outcome);
            }
            State::Waiting => *st = State::Then(c),
            // `then` consumes the ticket, so it cannot be called twice; keep what was there.
            other => *st = other,
        }
    }
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ticket")
    }
}

impl Resolver {
    /// Delivers the outcome: runs the completion left by [`Ticket::then`], or keeps the
    /// outcome for it.
    pub fn resolve(mut self, outcome: Outcome) {
        if let Some(cell) = self.0.take() {
            deliver(&cell, outcome);
        }
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        if let Some(cell) = self.0.take() {
            deliver(
                &cell,
                Err(StoreError::Commit(
                    "the write was dropped before it was committed".into(),
                )),
            );
        }
    }
}

fn deliver(cell: &Cell, outcome: Outcome) {
    let mut st = lock(cell);
    match std::mem::replace(&mut *st, State::Finished) {
        State::Then(c) => {
            drop(st);
            c.complete(outcome);
        }
        State::Waiting => *st = State::Done(outcome),
        // Resolved twice cannot happen (`resolve` consumes the resolver); keep the first.
        other => *st = other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Send(std::sync::mpsc::Sender<Outcome>);
    impl Completion for Send {
        fn complete(self: Box<Self>, outcome: Outcome) {
            let _ = self.0.send(outcome);
        }
    }

    #[test]
    fn the_outcome_reaches_the_completion_whichever_comes_first() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (t, r) = ticket();
        t.then(Box::new(Send(tx.clone())));
        r.resolve(Ok(true));
        assert!(matches!(rx.try_recv(), Ok(Ok(true))));
        let (t, r) = ticket();
        r.resolve(Ok(false));
        t.then(Box::new(Send(tx.clone())));
        assert!(matches!(rx.try_recv(), Ok(Ok(false))));
        let (t, r) = ticket();
        t.then(Box::new(Send(tx)));
        drop(r);
        assert!(matches!(rx.try_recv(), Ok(Err(StoreError::Commit(_)))));
    }
}
