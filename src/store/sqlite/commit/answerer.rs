//! The thread that answers a batch's deferred logins once their commit is durable, so that
//! the writer goes straight on to the next batch. A deferred login's answer is work: the
//! engine settles it, queues its audit record, and the front-end signs and sends the answer
//! (about 6 µs each); done on the writer, a batch of 64 kept the next commit waiting for
//! 0.4 ms (bench/run.sh's time split, PostgreSQL at window 128). The PostgreSQL writer uses
//! it; SQLite's does not: its writer waits for a local fsync, not a round trip, and handing
//! the answers over made its batches five times smaller and its CPU per login higher at
//! window 128 (79 → 16 logins per flush, one run, 2026-12-06, docs/performance.md). Waiting threads
//! (`Reply::Slot`) are still woken by the writer itself: that is one notification, not work.

use super::ops::Answer;
use super::queue::{Job, Reply};
use crate::store::ticket::Resolver;
use crate::store::StoreResult;
use std::sync::mpsc;

type Batch = Vec<(Resolver, StoreResult<bool>)>;

pub(in crate::store) struct Answerer {
    tx: Option<mpsc::Sender<Batch>>,
}

impl Answerer {
    /// Starts the thread; without one (the system refused a thread) answers are given on the
    /// writer's thread, as before.
    pub(in crate::store) fn start(name: &str) -> Answerer {
        let (tx, rx) = mpsc::channel::<Batch>();
        let started = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                // Like the writer, it never waits for room in the queue: the audit records
                // its answers queue would otherwise hold back answers whose commits are
                // durable until the database is back (a failover: Accepts would come late).
                super::queue::IS_WRITER.with(|w| w.set(true));
                for batch in rx {
                    for (resolver, outcome) in batch {
                        resolver.resolve(outcome);
                    }
                }
            });
        match started {
            Ok(_) => Answerer { tx: Some(tx) },
            Err(e) => {
                tracing::warn!("cannot start the thread {name} ({e}); the writer answers itself");
                Answerer { tx: None }
            }
        }
    }

    /// Answers a batch's jobs in order: waiting threads at once, deferred logins on the
    /// answering thread.
    pub(in crate::store) fn answer<I>(&self, jobs: I)
    where
        I: IntoIterator<Item = (Job, StoreResult<Answer>)>,
    {
        let mut deferred: Batch = Vec::new();
        for (mut job, a) in jobs {
            match job.reply.take() {
                Some(Reply::Ticket(r)) if self.tx.is_some() => {
                    deferred.push((r, a.and_then(Answer::won)));
                }
                Some(reply) => reply.put(a),
                None => {}
            }
        }
        if deferred.is_empty() {
            return;
        }
        if let Some(tx) = &self.tx {
            if let Err(mpsc::SendError(batch)) = tx.send(deferred) {
                // The thread is gone: answer here rather than leave anyone without one.
                for (resolver, outcome) in batch {
                    resolver.resolve(outcome);
                }
            }
        }
    }
}
