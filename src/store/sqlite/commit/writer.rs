//! The writer thread: takes what is queued, commits it as one transaction, then answers.

use super::ops::{apply, Answer, Op};
use super::queue::{lock, Job, Queue, Reply, SLOT};
use super::MAX_BATCH;
use crate::store::ticket::{ticket, Ticket};
use crate::store::{StoreError, StoreResult};
use rusqlite::Connection;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The handle the store keeps: the queue and the writer thread.
pub(in crate::store) struct Committer {
    queue: Arc<Queue>,
    thread: Option<JoinHandle<()>>,
}

pub(in crate::store) fn stopped() -> StoreError {
    StoreError::Commit("the store's writer thread has stopped".into())
}

impl Committer {
    /// Opens the writer's own connection to `path` and starts its thread; it checkpoints
    /// every `wal_pages` WAL pages.
    pub(in crate::store) fn start(path: &Path, wal_pages: u32) -> StoreResult<Committer> {
        let conn = Connection::open(path).map_err(|e| StoreError::Open {
            path: path.display().to_string(),
            msg: e.to_string(),
        })?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: the commit that answers an advance must be on disk, not just in the OS cache.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "wal_autocheckpoint", wal_pages)?;
        // Checkpoints stay SQLite's automatic ones, in the writer's commit that crosses
        // `wal_pages`. (A checkpointer thread beside the writer was tried: it never catches up
        // with a writer that keeps appending, so the WAL was never restarted and grew to
        // gigabytes in a minute of load.)
        let queue = Arc::new(Queue::new(MAX_BATCH));
        let q = queue.clone();
        let thread = std::thread::Builder::new()
            .name("otpd-commit".into())
            .spawn(move || writer(conn, &q))
            .map_err(|e| StoreError::Commit(format!("cannot start the writer thread: {e}")))?;
        Ok(Committer {
            queue,
            thread: Some(thread),
        })
    }

    /// A committer whose writer thread (`thread`, already running) empties `queue`: the
    /// PostgreSQL store's writer shares this queue and its waiting rules.
    pub(in crate::store) fn from_parts(queue: Arc<Queue>, thread: JoinHandle<()>) -> Committer {
        Committer {
            queue,
            thread: Some(thread),
        }
    }

    /// Queues `op` and waits until the batch that holds it is committed (or failed).
    pub(in crate::store) fn write(&self, op: Op) -> StoreResult<Answer> {
        SLOT.with(|slot| {
            *lock(&slot.answer) = None;
            self.queue.push(Job {
                op,
                reply: Some(Reply::Slot(slot.clone())),
            })?;
            crate::blocking::section(|| {
                let mut a = lock(&slot.answer);
                loop {
                    if let Some(answer) = a.take() {
                        return answer;
                    }
                    a = slot.ready.wait(a).unwrap_or_else(|p| p.into_inner());
                }
            })
        })
    }

    /// Queues the conditional write `op` without waiting; its outcome comes through the
    /// ticket once the batch that holds it is committed (or failed).
    pub(in crate::store) fn write_deferred(&self, op: Op) -> StoreResult<Ticket> {
        let (ticket, resolver) = ticket();
        self.queue.push(Job {
            op,
            reply: Some(Reply::Ticket(resolver)),
        })?;
        Ok(ticket)
    }

    /// Queues `op` without waiting for it to be durable. Blocks only while the queue is full.
    pub(in crate::store) fn write_later(&self, op: Op) -> StoreResult<()> {
        self.queue.push(Job { op, reply: None })
    }
}

impl Drop for Committer {
    /// Closes the queue and waits for the writer to commit what is left in it, so audit
    /// records queued by a short-lived command (`otpd check`) are not lost on a clean exit.
    fn drop(&mut self) {
        self.queue.close();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("the store's writer thread panicked");
            }
        }
    }
}

/// How long audit records alone wait for a write to share their commit with.
pub(in crate::store) const AUDIT_LINGER: Duration = Duration::from_millis(2);

fn writer(mut conn: Connection, queue: &Queue) {
    super::queue::IS_WRITER.with(|w| w.set(true));
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    // Sleeps until there is a write; takes whatever queued meanwhile, up to the cap. No timer:
    // under load the batch fills while the previous commit waits for the disk.
    while queue.take(&mut batch, MAX_BATCH) {
        if batch.iter().all(|j| j.reply.is_none()) {
            // Only audit records, which nobody waits for: the login that follows usually
            // comes within a fraction of a millisecond and its counter update can share the
            // fsync. A lone login thus costs one commit, not two, and whether a login waits
            // for one fsync or two no longer depends on how long the login before it took
            // (a timing signal, docs/security.md).
            queue.take_within(&mut batch, MAX_BATCH, AUDIT_LINGER);
        }
        commit(&mut conn, &mut batch);
    }
}

/// One transaction for the whole batch, one commit, then the answers.
fn commit(conn: &mut Connection, batch: &mut Vec<Job>) {
    let m = crate::metrics::get();
    let started = Instant::now();
    let cpu = crate::metrics::phase::maybe_start(crate::metrics::phase::Phase::Commit);
    // BEGIN and COMMIT as cached statements: thousands of commits a second would otherwise
    // parse them anew each time.
    let result = (|| -> rusqlite::Result<Vec<StoreResult<Answer>>> {
        conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        let run = || -> rusqlite::Result<Vec<StoreResult<Answer>>> {
            let mut answers = Vec::with_capacity(batch.len());
            for job in batch.iter() {
                answers.push(apply(conn, &job.op)?);
            }
            conn.prepare_cached("COMMIT")?.execute([])?;
            Ok(answers)
        };
        run().inspect_err(|_| {
            // Whatever the batch did is undone; if SQLite already rolled back, this fails
            // harmlessly.
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
        })
    })();
    m.store_commit.observe_duration(started.elapsed());
    crate::metrics::phase::lap(cpu, crate::metrics::phase::Phase::Commit);
    m.store_batch.observe(batch.len() as f64);
    match result {
        Ok(answers) => {
            for (mut job, answer) in batch.drain(..).zip(answers) {
                if let Some(reply) = job.reply.take() {
                    reply.put(answer);
                }
            }
        }
        Err(e) => {
            // The transaction was rolled back (dropped uncommitted): nothing of this batch is
            // on disk, and everyone who waits for it hears so.
            let lost = batch.iter().filter(|j| j.reply.is_none()).count();
            tracing::error!(
                "store commit of {} writes failed: {e}; {lost} audit records lost",
                batch.len()
            );
            let msg = e.to_string();
            for mut job in batch.drain(..) {
                if let Some(reply) = job.reply.take() {
                    reply.put(Err(StoreError::Commit(msg.clone())));
                }
            }
        }
    }
}
