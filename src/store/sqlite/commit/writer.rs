//! The writer thread: takes what is queued, commits it as one transaction, then answers.

use super::ops::{apply_with, Answer, Op};
use super::queue::{lock, Job, Queue, Reply, Taken, SLOT};
use super::MAX_BATCH;
use crate::store::sqlite::feed::Feed;
use crate::store::ticket::{ticket, Ticket};
use crate::store::{StoreError, StoreResult};
use rusqlite::Connection;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The handle the store keeps: the queue and the writer thread.
pub(in crate::store) struct Committer {
    queue: Arc<Queue>,
    /// The writer's connection, lent to logins' reads while it is idle (SQLite only: the
    /// PostgreSQL writer's session is its own).
    conn: Option<Arc<Mutex<Connection>>>,
    /// The account cache's feed, when the store has a cache: the writer writes its won
    /// advances through and deletes the changes the feed has read.
    feed: Option<Arc<Feed>>,
    thread: Option<JoinHandle<()>>,
}

pub(in crate::store) fn stopped() -> StoreError {
    StoreError::Commit("the store's writer thread has stopped".into())
}

impl Committer {
    /// Opens the writer's own connection to `path` and starts its thread; it checkpoints
    /// every `wal_pages` WAL pages.
    pub(in crate::store) fn start(
        path: &Path,
        wal_pages: u32,
        feed: Option<Arc<Feed>>,
    ) -> StoreResult<Committer> {
        Committer::start_holding(path, wal_pages, AUDIT_HOLD, feed)
    }

    /// [`Committer::start`] with audit records held up to `hold` (tests hold them longer).
    pub(in crate::store) fn start_holding(
        path: &Path,
        wal_pages: u32,
        hold: Duration,
        feed: Option<Arc<Feed>>,
    ) -> StoreResult<Committer> {
        let conn = Connection::open(path).map_err(|e| StoreError::Open {
            path: path.display().to_string(),
            msg: e.to_string(),
        })?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: the commit that answers an advance must be on disk, not just in the OS cache.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "wal_autocheckpoint", wal_pages)?;
        // Its own statements and the login's read (`idle_conn`): more than rusqlite's 16,
        // and a statement pushed out is parsed again on its next use.
        conn.set_prepared_statement_cache_capacity(32);
        // Checkpoints stay SQLite's automatic ones, in the writer's commit that crosses
        // `wal_pages`. (A checkpointer thread beside the writer was tried: it never catches up
        // with a writer that keeps appending, so the WAL was never restarted and grew to
        // gigabytes in a minute of load.)
        let queue = Arc::new(Queue::new(MAX_BATCH));
        let q = queue.clone();
        let conn = Arc::new(Mutex::new(conn));
        let c = conn.clone();
        let f = feed.clone();
        let thread = std::thread::Builder::new()
            .name("otpd-commit".into())
            .spawn(move || writer(&c, &q, hold, f.as_deref()))
            .map_err(|e| StoreError::Commit(format!("cannot start the writer thread: {e}")))?;
        Ok(Committer {
            queue,
            conn: Some(conn),
            feed,
            thread: Some(thread),
        })
    }

    /// The writer's connection, while the writer sleeps, for a login's read. Its page cache
    /// is current: the last commit was its own. A reader's cache was emptied by that commit
    /// (SQLite drops a connection's whole cache when another connection has written), so a
    /// login read there 9 pages again (`pread64`, docs/performance.md). Only while the
    /// writer is idle, and never waited for: a busy writer is not held up by reads.
    pub(in crate::store) fn idle_conn(&self) -> Option<MutexGuard<'_, Connection>> {
        if !self.queue.writer_quiet.load(Ordering::Relaxed)
            || !self.queue.writer_idle.load(Ordering::Relaxed)
        {
            return None;
        }
        self.conn.as_ref()?.try_lock().ok()
    }

    /// Runs `f` on the writer's connection (tests: to make its commits fail).
    #[cfg(test)]
    pub(in crate::store) fn with_conn<R>(&self, f: impl FnOnce(&Connection) -> R) -> Option<R> {
        self.conn.as_ref().map(|c| f(&lock(c)))
    }

    /// A committer whose writer thread (`thread`, already running) empties `queue`: the
    /// PostgreSQL store's writer shares this queue and its waiting rules.
    pub(in crate::store) fn from_parts(queue: Arc<Queue>, thread: JoinHandle<()>) -> Committer {
        Committer {
            queue,
            conn: None,
            feed: None,
            thread: Some(thread),
        }
    }

    /// Commits `op` on the calling thread when the writer sleeps with nothing queued and its
    /// last batch was a single login: logins that come one by one. Handing such a login to
    /// the writer cost a wake-up of the writer's thread, on two cores mostly the other core's
    /// (window 1, docs/performance.md); here the login's thread, which is running already,
    /// pays the commit and answers itself. The connection is taken with `try_lock` and the
    /// queue is checked while it is held, so the commit neither overtakes a queued write (a
    /// write queued after the check waits for this commit: the writer needs the connection
    /// too) nor waits for anyone: not for another process's write lock either (the writer
    /// waits for that). Queued audit records may be overtaken: the writer holds them back
    /// anyway, and each was queued after its own login's commit. Not while the writer
    /// lingers for a login to share its audit records' commit: the login then queues and
    /// shares it. On a tokio worker (the socket front-end) the fsync holds up the worker's
    /// other tasks for its duration, which only happens at this low load and which the other
    /// workers may steal meanwhile; moving them away first (`block_in_place`) wakes a
    /// thread, the cost this saves, and without the commit here the socket fell to
    /// 0.83-0.96 of RADIUS at window 1 (bench/socket.sh, 2026-12-06). `None`: queue it.
    fn commit_here(&self, op: &Op) -> Option<StoreResult<Answer>> {
        // The same moments as a lent read: the writer quiet and asleep.
        let conn = self.idle_conn()?;
        let q = &self.queue;
        {
            let st = lock(&q.state);
            if st.writes > 0 || st.closed || st.lingering || !q.writer_idle.load(Ordering::Relaxed)
            {
                return None;
            }
        }
        // Another process writing (an import, a backup) would keep this thread in SQLite's
        // busy handler, up to seconds on a tokio worker: only begin when the write lock is
        // free at once; otherwise the writer waits for it, as for any batch.
        let began = with_busy_timeout(&conn, Duration::ZERO, |c| {
            c.prepare_cached("BEGIN IMMEDIATE")?.execute([])
        });
        if began.is_err() {
            return None;
        }
        let result = transact(&conn, std::iter::once(op), true, self.feed.as_deref());
        drop(conn);
        Some(match result {
            Ok(mut answers) => answers
                .pop()
                .unwrap_or_else(|| Err(StoreError::Commit("a write without an answer".into()))),
            Err(e) => {
                // As a failed batch: rolled back, its one waiter hears so (Reject).
                tracing::error!("store commit of 1 write failed: {e}; 1 write lost");
                Err(StoreError::Commit(e.to_string()))
            }
        })
    }

    /// Queues `op` and waits until the batch that holds it is committed (or failed).
    pub(in crate::store) fn write(&self, op: Op) -> StoreResult<Answer> {
        if let Some(answer) = self.commit_here(&op) {
            return answer;
        }
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
        if let Some(answer) = self.commit_here(&op) {
            // Resolved before the caller leaves its completion: it runs at once, here.
            resolver.resolve(answer.and_then(Answer::won));
            return Ok(ticket);
        }
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

/// How long the writer waits for another process's write (the CLI's) before its batch fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long audit records that are due wait for a write to share their commit with.
pub(in crate::store) const AUDIT_LINGER: Duration = Duration::from_millis(2);

/// How long an audit record may wait for the commit that takes it. Records gathered over
/// this long share one commit, and the commits of the counter updates in between carry no
/// audit pages: at window 1 two of a commit's three WAL frames were the previous login's
/// audit record and its index entry, each a page to write and flush (docs/performance.md).
const AUDIT_HOLD: Duration = Duration::from_millis(5);
/// Batches of at most this many writes besides audit records mean the logins come one by
/// one: only then does the idle writer lend its connection to a login's read. Under load
/// the writer is idle only for moments, and a read on its connection then held up its next
/// commit (window 128, docs/performance.md).
const QUIET_BATCH: usize = 1;
/// Audit records held at most; more are committed at once.
const AUDIT_HOLD_MAX: usize = 256;
/// Audit records kept for another try after failed commits at most.
const AUDIT_RETRY_MAX: usize = super::QUEUE_BOUND;

fn writer(conn: &Mutex<Connection>, queue: &Queue, hold: Duration, feed: Option<&Feed>) {
    super::queue::IS_WRITER.with(|w| w.set(true));
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut held = Held {
        hold,
        jobs: Vec::new(),
        since: None,
        failed: false,
        scratch: Vec::new(),
    };
    loop {
        // Sleeps until there is a write or the held audit records are due. No timer for the
        // batch itself: under load it fills while the previous commit waits for the disk.
        if let Taken::Closed = queue.take_until(&mut batch, MAX_BATCH, held.due_at()) {
            // A clean exit loses nothing: what is held is committed now.
            held.release_into(&mut batch);
            if !batch.is_empty() {
                commit(&lock(conn), &mut batch, &mut held, feed);
            }
            if !held.jobs.is_empty() {
                tracing::error!(
                    "{} audit records lost: the store closed while its disk failed",
                    held.jobs.len()
                );
            }
            return;
        }
        held.hold_audit_records(&mut batch);
        let due = held.is_due(Instant::now());
        if batch.is_empty() {
            if !due {
                continue;
            }
            // Only audit records, which nobody waits for: a login that comes within the
            // linger shares their fsync, so whether a login waits for one fsync or two
            // depends less on when the logins before it came (a timing signal,
            // docs/security.md).
            queue.take_within(&mut batch, MAX_BATCH, AUDIT_LINGER);
            held.hold_audit_records(&mut batch);
        }
        if due {
            held.release_into(&mut batch);
        }
        let logins = batch.iter().filter(|j| !j.is_audit_record()).count();
        let quiet = logins <= QUIET_BATCH;
        commit(&lock(conn), &mut batch, &mut held, feed);
        queue.writer_quiet.store(quiet, Ordering::Relaxed);
    }
}

/// Audit records taken out of the batches until they are due.
struct Held {
    hold: Duration,
    jobs: Vec<Job>,
    since: Option<Instant>,
    /// The last commit that took them failed: they wait for the time, not for the count,
    /// so a disk that stays full is not retried with thousands of records at every batch.
    failed: bool,
    /// Reused to sort a batch without allocating.
    scratch: Vec<Job>,
}

impl Held {
    fn hold_audit_records(&mut self, batch: &mut Vec<Job>) {
        if !batch.iter().any(Job::is_audit_record) {
            return;
        }
        self.scratch.append(batch);
        for job in self.scratch.drain(..) {
            if job.is_audit_record() {
                self.jobs.push(job);
            } else {
                batch.push(job);
            }
        }
        if self.since.is_none() {
            self.since = Some(Instant::now());
        }
    }

    fn due_at(&self) -> Option<Instant> {
        self.since.map(|s| s + self.hold)
    }

    fn is_due(&self, now: Instant) -> bool {
        (!self.failed && self.jobs.len() >= AUDIT_HOLD_MAX)
            || self.due_at().is_some_and(|d| now >= d)
    }

    /// Holds `jobs`, audit records of a failed commit, again in front of those held since:
    /// they are older. Beyond [`AUDIT_RETRY_MAX`] the oldest are dropped (a disk that stays
    /// full must not grow memory); returns how many.
    fn hold_again(&mut self, mut jobs: Vec<Job>) -> usize {
        if jobs.is_empty() {
            return 0;
        }
        jobs.append(&mut self.jobs);
        let excess = jobs.len().saturating_sub(AUDIT_RETRY_MAX);
        jobs.drain(..excess);
        self.jobs = jobs;
        // Due again after the hold, not at once: while the disk stays full, they are tried
        // again every few milliseconds, not in a loop.
        self.since = Some(Instant::now());
        self.failed = true;
        excess
    }

    /// The held records go first: they were queued before the batch.
    fn release_into(&mut self, batch: &mut Vec<Job>) {
        if self.jobs.is_empty() {
            return;
        }
        self.scratch.append(batch);
        batch.append(&mut self.jobs);
        batch.append(&mut self.scratch);
        self.since = None;
        self.failed = false;
    }
}

/// One transaction for the whole batch, one commit, then the answers.
fn commit(conn: &Connection, batch: &mut Vec<Job>, held: &mut Held, feed: Option<&Feed>) {
    let result = transact(conn, batch.iter().map(|j| &j.op), false, feed);
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
            // on disk, and everyone who waits for it hears so. Audit records, which nobody
            // waits for, are held again when the disk is what failed (full, read-only, I/O
            // errors, locked by another process): the next commit that succeeds takes them,
            // so an Accept answered before the disk filled keeps its record.
            let retry = is_transient(&e);
            let writes = batch.len();
            let msg = e.to_string();
            let mut again = Vec::new();
            let mut lost = 0;
            for mut job in batch.drain(..) {
                if let Some(reply) = job.reply.take() {
                    reply.put(Err(StoreError::Commit(msg.clone())));
                } else if retry && job.is_audit_record() {
                    again.push(job);
                } else {
                    lost += 1;
                }
            }
            let retried = again.len();
            // The oldest go first when too many are held, and these are the oldest.
            let dropped = held.hold_again(again);
            let kept = retried.saturating_sub(dropped);
            lost += dropped;
            tracing::error!(
                "store commit of {writes} writes failed: {msg}; {kept} audit records kept \
                 for the next commit, {lost} writes lost"
            );
        }
    }
}

/// Runs `f` on `conn` with SQLite's busy timeout set to `wait`, then sets the writer's back.
fn with_busy_timeout<R>(
    conn: &Connection,
    wait: Duration,
    f: impl FnOnce(&Connection) -> rusqlite::Result<R>,
) -> rusqlite::Result<R> {
    conn.busy_timeout(wait)?;
    let r = f(conn);
    if let Err(e) = conn.busy_timeout(BUSY_TIMEOUT) {
        tracing::error!("cannot set the writer's busy timeout back: {e}");
    }
    r
}

/// Runs `ops` in one transaction (begun here unless `begun`) and commits it: each write's
/// answer, or the error that rolled the whole transaction back.
fn transact<'a>(
    conn: &Connection,
    ops: impl ExactSizeIterator<Item = &'a Op> + Clone,
    begun: bool,
    feed: Option<&Feed>,
) -> rusqlite::Result<Vec<StoreResult<Answer>>> {
    crate::metrics::phase::nested(crate::metrics::phase::Phase::Commit, || {
        transact_timed(conn, ops, begun, feed)
    })
}

fn transact_timed<'a>(
    conn: &Connection,
    ops: impl ExactSizeIterator<Item = &'a Op> + Clone,
    begun: bool,
    feed: Option<&Feed>,
) -> rusqlite::Result<Vec<StoreResult<Answer>>> {
    let m = crate::metrics::get();
    let started = Instant::now();
    let n = ops.len();
    let forget = feed.and_then(Feed::to_forget);
    // BEGIN and COMMIT as cached statements: thousands of commits a second would otherwise
    // parse them anew each time.
    let result = (|| -> rusqlite::Result<Vec<StoreResult<Answer>>> {
        if !begun {
            conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        }
        let run = || -> rusqlite::Result<Vec<StoreResult<Answer>>> {
            let mut answers = Vec::with_capacity(n);
            for op in ops.clone() {
                answers.push(apply_with(conn, op, feed.is_some())?);
            }
            if let Some(upto) = forget {
                // Read by the feed already; in this transaction, so it costs no flush.
                conn.prepare_cached("DELETE FROM changes WHERE seq <= ?1")?
                    .execute([upto])?;
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
    if let (Some(f), Ok(answers)) = (feed, &result) {
        // Before the answers leave: the user's next login finds the counter moved on.
        crate::store::cache::write_through(&f.cache, ops, answers);
        if let Some(upto) = forget {
            f.forgot(upto);
        }
        f.refresh_if_stale();
    }
    m.store_commit.observe_duration(started.elapsed());
    m.store_batch.observe(n as f64);
    result
}

/// Failures of the disk or the file rather than of a statement: worth trying again.
fn is_transient(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode as C;
    matches!(
        e.sqlite_error_code(),
        Some(C::DiskFull | C::SystemIoFailure | C::ReadOnly | C::DatabaseBusy | C::DatabaseLocked)
    )
}
