//! Group commit: one writer thread turns many small writes into one durable transaction.
//!
//! Every login that changes the database (a counter advance, a spent backup or e-mailed code,
//! a token's or app password's last use, an audit record, a failure count) used to commit on
//! its own, and each commit with `synchronous=FULL` costs one fsync:
//! a few thousand commits per second at most, whatever the CPU. The writer thread takes
//! everything queued (up to [`MAX_BATCH`]), runs it in one `BEGIN IMMEDIATE … COMMIT`, pays
//! one fsync, and only then answers each waiter. While it waits for the disk, the next batch
//! queues up, so the batch grows with the load and the fsync rate stays bounded.
//!
//! What this keeps:
//! - `advance_counter`, `use_backup_code` and `use_email_code` return only after the commit
//!   that holds their update is durable: an Accept never leaves before its code is used on
//!   disk.
//! - All writes go through one FIFO queue and one connection, in order: an audit record queued
//!   after a counter update is committed with it or after it, never before.
//! - The statements are the same conditional writes as before and run one after another in
//!   the transaction: of two advances to the same counter in one batch, the second sees the
//!   first and changes nothing (`false`, "code already used").
//! - A batch whose statements or commit fail is rolled back as a whole and every waiter in it
//!   gets the error: the engine answers Reject, never Accept.
//!
//! What a crash can lose: audit records are queued without waiting, so a crash (SIGKILL,
//! power cut) can lose the audit records of the last batch, which was not yet committed
//! (audit records alone wait up to 2 ms for a counter update to share their commit). Never a
//! counter: no Accept left for a counter update that was not durable.

use super::{StoreError, StoreResult};
use crate::model::AuditRecord;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Most writes in one transaction. Large enough that one fsync serves every request a busy
/// front-end can have in flight; small enough that one batch's latency stays short.
pub const MAX_BATCH: usize = 512;
/// Writes waiting for the writer thread at most. When full, callers block (back-pressure on
/// the front-ends' bounded worker pools) instead of growing memory.
pub const QUEUE_BOUND: usize = 4096;
/// WAL pages after which the writer checkpoints (SQLite's automatic checkpoint, in the commit
/// that crosses it). Each checkpoint stalls one batch while it copies the pages to the
/// database and fsyncs it; its cost grows with the distinct pages, which a busy store keeps
/// rewriting, not with the WAL's length. SQLite's default of 1,000 made a checkpoint every
/// ~70 commits and the window-8 p99 1.3-1.6 ms; 4,000 (16 MiB of WAL) made it 0.7-0.9 ms
/// in the same runs (docs/performance.md).
pub const WAL_CHECKPOINT_PAGES: u32 = 4000;

pub(super) const SQL_ADVANCE: &str =
    "UPDATE tokens SET last_counter = ?2, drift = ?3, last_used_at = ?4,
         state = CASE WHEN ?5 THEN 'active' ELSE state END
     WHERE id = ?1 AND last_counter < ?2";
/// A lock that has ended is forgotten with the failures that made it, so the next guess
/// starts a fresh count (engine/gate.rs): one guess per lock duration cannot keep the
/// account locked for good.
pub(super) const SQL_FAILURE: &str = "UPDATE accounts SET
         failures = CASE WHEN locked_until <= ?2 THEN 1 ELSE failures + 1 END,
         last_failure = ?2,
         locked_until = CASE
             WHEN locked_until <= ?2 THEN CASE WHEN ?3 = 1 THEN ?4 END
             WHEN locked_until IS NOT NULL THEN locked_until
             WHEN ?3 > 0 AND failures + 1 >= ?3 THEN ?4
             END
     WHERE id = ?1 RETURNING failures";
pub(super) const SQL_UNLOCK: &str = "UPDATE accounts SET failures = 0, last_failure = NULL,
         locked_until = NULL, unlocks = unlocks + 1 WHERE id = ?1";
pub(super) const SQL_FAMILIAR: &str = "UPDATE accounts SET familiar = ?2 WHERE id = ?1";
pub(super) const SQL_CLEAR: &str =
    "UPDATE accounts SET failures = 0, last_failure = NULL, locked_until = NULL
     WHERE id = ?1 AND (failures != 0 OR locked_until IS NOT NULL)";
/// The time of the latest unknown-user failure and their count. The count makes every such
/// write change the page: a write of an unchanged value leaves nothing to flush, and the
/// commit then returned without an fsync, 130 µs sooner than a known account's failure count
/// (a timing signal for logins paced more than the audit's 2 ms linger apart).
pub(super) const SQL_UNKNOWN: &str = "INSERT INTO meta (name, value)
     VALUES ('unknown_user_last_failure', ?1), ('unknown_user_failures', 1)
     ON CONFLICT (name) DO UPDATE SET value = CASE
         WHEN name = 'unknown_user_failures' THEN value + 1 ELSE excluded.value END";
pub(super) const SQL_TOUCH_APP_PASSWORD: &str =
    "UPDATE app_passwords SET last_used_at = ?2, last_used_from = ?3 WHERE id = ?1";
pub(super) const SQL_TOKEN_USED: &str = "UPDATE tokens SET last_used_at = ?2,
         state = CASE WHEN ?3 THEN 'active' ELSE state END
     WHERE id = ?1";
pub(super) const SQL_USE_BACKUP_CODE: &str = "UPDATE backup_codes SET used_at = ?3
     WHERE id = ?1 AND token_id = ?2 AND used_at IS NULL";
pub(super) const SQL_USE_EMAIL_CODE: &str = "UPDATE email_codes SET used_at = ?3
     WHERE id = ?1 AND token_id = ?2 AND used_at IS NULL AND expires_at > ?3";
pub(super) const SQL_AUDIT: &str =
    "INSERT INTO audit (ts_ms, user, service, rhost, client, verdict, reason, serial)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

/// One write.
#[derive(Debug)]
pub(super) enum Op {
    Advance {
        token_id: i64,
        counter: i64,
        drift: i64,
        now: i64,
        activate: bool,
    },
    Failure {
        account_id: i64,
        now: i64,
        lock_at: u32,
        lock_until: i64,
    },
    ClearFailures {
        account_id: i64,
    },
    Unlock {
        account_id: i64,
    },
    UnknownFailure {
        now: i64,
    },
    /// The account's familiar sources, most recently added first: bookkeeping, nobody waits for it.
    Familiar {
        account_id: i64,
        sources: String,
    },
    Audit(AuditRecord),
    /// When and from where an app password was last used: bookkeeping, nobody waits for it.
    TouchAppPassword {
        id: i64,
        now: i64,
        from: Option<String>,
    },
    /// A token used without a counter of ours (a validation server's YubiKey, mOTP).
    TokenUsed {
        token_id: i64,
        now: i64,
        activate: bool,
    },
    /// A backup code spent, if still unused: `Advanced(true)` for the one login that spends it.
    UseBackupCode {
        token_id: i64,
        code_id: i64,
        now: i64,
    },
    /// An e-mailed code spent, if still unused and unexpired; as `UseBackupCode`.
    UseEmailCode {
        token_id: i64,
        code_id: i64,
        now: i64,
        activate: bool,
    },
    /// A statement that fails, to test that a failed batch answers every waiter with an error.
    #[cfg(test)]
    Poison,
}

/// What a write reports back.
#[derive(Debug)]
pub(super) enum Answer {
    Done,
    Advanced(bool),
    Failures(u32),
}

impl Answer {
    /// Whether a conditional write (an advance, a spent code) won.
    pub(super) fn won(self) -> StoreResult<bool> {
        match self {
            Answer::Advanced(won) => Ok(won),
            other => Err(StoreError::Commit(format!("unexpected answer {other:?}"))),
        }
    }
}

/// Runs one write on `conn` (inside the caller's transaction, or on its own in autocommit
/// mode). `Ok(Err(_))` is this write's own answer (the account vanished); `Err(_)` is a
/// database error that must fail the whole batch.
pub(super) fn apply(conn: &Connection, op: &Op) -> rusqlite::Result<StoreResult<Answer>> {
    Ok(Ok(match op {
        Op::Advance {
            token_id,
            counter,
            drift,
            now,
            activate,
        } => {
            let mut st = conn.prepare_cached(SQL_ADVANCE)?;
            Answer::Advanced(st.execute(params![token_id, counter, drift, now, activate])? == 1)
        }
        Op::Failure {
            account_id,
            now,
            lock_at,
            lock_until,
        } => {
            let mut st = conn.prepare_cached(SQL_FAILURE)?;
            let n: Option<u32> = st
                .query_row(params![account_id, now, lock_at, lock_until], |r| r.get(0))
                .optional()?;
            match n {
                Some(n) => Answer::Failures(n),
                // Deleted while its login was being checked: nothing to count.
                None => return Ok(Err(StoreError::NotFound(format!("account {account_id}")))),
            }
        }
        Op::ClearFailures { account_id } => {
            conn.prepare_cached(SQL_CLEAR)?.execute([account_id])?;
            Answer::Done
        }
        Op::Unlock { account_id } => {
            conn.prepare_cached(SQL_UNLOCK)?.execute([account_id])?;
            Answer::Done
        }
        Op::Familiar {
            account_id,
            sources,
        } => {
            conn.prepare_cached(SQL_FAMILIAR)?
                .execute(params![account_id, sources])?;
            Answer::Done
        }
        Op::UnknownFailure { now } => {
            conn.prepare_cached(SQL_UNKNOWN)?
                .execute(params![now.to_string().into_bytes()])?;
            Answer::Done
        }
        Op::Audit(r) => {
            conn.prepare_cached(SQL_AUDIT)?.execute(params![
                r.ts_ms, r.user, r.service, r.rhost, r.client, r.verdict, r.reason, r.serial
            ])?;
            Answer::Done
        }
        Op::TouchAppPassword { id, now, from } => {
            conn.prepare_cached(SQL_TOUCH_APP_PASSWORD)?
                .execute(params![id, now, from])?;
            Answer::Done
        }
        Op::TokenUsed {
            token_id,
            now,
            activate,
        } => {
            let n = conn
                .prepare_cached(SQL_TOKEN_USED)?
                .execute(params![token_id, now, activate])?;
            if n == 0 {
                return Ok(Err(StoreError::NotFound(format!("token id {token_id}"))));
            }
            Answer::Done
        }
        Op::UseBackupCode {
            token_id,
            code_id,
            now,
        } => spend(conn, SQL_USE_BACKUP_CODE, *token_id, *code_id, *now, false)?,
        Op::UseEmailCode {
            token_id,
            code_id,
            now,
            activate,
        } => spend(
            conn,
            SQL_USE_EMAIL_CODE,
            *token_id,
            *code_id,
            *now,
            *activate,
        )?,
        #[cfg(test)]
        Op::Poison => {
            conn.execute("INSERT INTO no_such_table VALUES (1)", [])?;
            Answer::Done
        }
    }))
}

/// Spends a single-use code with `sql` (which changes it only while it is unused) and, for
/// the one login that spent it, records its token's use.
fn spend(
    conn: &Connection,
    sql: &str,
    token_id: i64,
    code_id: i64,
    now: i64,
    activate: bool,
) -> rusqlite::Result<Answer> {
    let won = conn
        .prepare_cached(sql)?
        .execute(params![code_id, token_id, now])?
        == 1;
    if won {
        conn.prepare_cached(SQL_TOKEN_USED)?
            .execute(params![token_id, now, activate])?;
    }
    Ok(Answer::Advanced(won))
}

/// Where a waiter's answer lands. One per thread, reused: a thread waits for one write at a
/// time, and the writer only holds a clone until it has answered.
struct Slot {
    answer: Mutex<Option<StoreResult<Answer>>>,
    ready: Condvar,
}

impl Slot {
    fn put(&self, a: StoreResult<Answer>) {
        *lock(&self.answer) = Some(a);
        self.ready.notify_one();
    }
}

thread_local! {
    static SLOT: Arc<Slot> = Arc::new(Slot {
        answer: Mutex::new(None),
        ready: Condvar::new(),
    });
}

/// Who hears a write's answer.
enum Reply {
    /// A thread asleep until the commit.
    Slot(Arc<Slot>),
    /// A login that went on without waiting (see [`Deferred`]).
    Deferred(Arc<DeferCell>),
}

impl Reply {
    fn put(self, a: StoreResult<Answer>) {
        match self {
            Reply::Slot(s) => s.put(a),
            Reply::Deferred(d) => d.complete(a.and_then(Answer::won)),
        }
    }
}

struct Job {
    op: Op,
    /// `None`: nobody waits (audit records), or answered already.
    reply: Option<Reply>,
}

impl Drop for Job {
    /// A job dropped unanswered (the writer panicked) must not leave its waiter asleep for
    /// ever: it hears that the write failed.
    fn drop(&mut self) {
        if let Some(r) = self.reply.take() {
            r.put(Err(stopped()));
        }
    }
}

// ---- deferred answers ----------------------------------------------------------------------
//
// A login's thread normally sleeps until the batch holding its counter advance is committed,
// and the writer wakes it: two thread switches per login, about a quarter of the daemon's CPU
// under load (docs/performance.md). A front-end that can send its answer from any thread
// (RADIUS) lets the login go on instead: the advance is queued, the engine decides as if it
// won, and the front-end hands the writer what to do once the commit is durable. The
// conditional update stays the arbiter: when it did not win (another login used the code
// first), the front-end is told so and answers Reject. Nothing leaves before the commit.

/// The durable outcome of one deferred counter advance: `Ok(true)` won and durable,
/// `Ok(false)` the code was used first, `Err` the commit failed.
pub type Outcome = StoreResult<bool>;
type Then = Box<dyn FnOnce(Outcome) + Send>;

enum DeferState {
    Waiting,
    Done(Outcome),
    Then(Then),
    Finished,
}

struct DeferCell(Mutex<DeferState>);

impl DeferCell {
    /// The writer's side: runs what the front-end left, or keeps the outcome for it.
    fn complete(&self, outcome: Outcome) {
        let mut st = lock(&self.0);
        match std::mem::replace(&mut *st, DeferState::Finished) {
            DeferState::Then(f) => {
                drop(st);
                f(outcome);
            }
            DeferState::Waiting => *st = DeferState::Done(outcome),
            // Completed twice cannot happen (one job, one answer); keep the first.
            other => *st = other,
        }
    }
}

/// A counter advance queued without waiting; see [`Deferred::then`].
pub struct Deferred(Arc<DeferCell>);

impl Deferred {
    /// Runs `f` with the outcome once the commit is done: on the writer's thread, or at once
    /// on this one when the commit already happened.
    pub fn then(self, f: impl FnOnce(Outcome) + Send + 'static) {
        let mut st = lock(&self.0 .0);
        match std::mem::replace(&mut *st, DeferState::Finished) {
            DeferState::Done(outcome) => {
                drop(st);
                f(outcome);
            }
            DeferState::Waiting => *st = DeferState::Then(Box::new(f)),
            other => *st = other,
        }
    }
}

struct DeferContext {
    /// Set by [`defer_begin`] for one login on this thread.
    allowed: bool,
    /// Suspended by a [`NoDefer`] guard (paths that act on an Accept before answering).
    suspended: u32,
    taken: Option<Deferred>,
}

thread_local! {
    static DEFER: std::cell::RefCell<DeferContext> = const {
        std::cell::RefCell::new(DeferContext {
            allowed: false,
            suspended: 0,
            taken: None,
        })
    };
    /// Whether this thread is the writer: its own writes (audit records of deferred logins)
    /// must not wait for room in the queue only it empties.
    static IS_WRITER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// From here until [`defer_end`], this thread's first counter advance is queued without
/// waiting (when the store has a group committer) and reported as won.
pub fn defer_begin() {
    DEFER.with(|d| {
        let mut d = d.borrow_mut();
        d.allowed = true;
        d.taken = None;
    });
}

/// Ends the deferral window; the advance that was deferred in it, if one was.
pub fn defer_end() -> Option<Deferred> {
    DEFER.with(|d| {
        let mut d = d.borrow_mut();
        d.allowed = false;
        d.taken.take()
    })
}

/// While alive, advances on this thread wait for their commit as usual.
pub struct NoDefer(());

impl NoDefer {
    pub fn new() -> NoDefer {
        DEFER.with(|d| d.borrow_mut().suspended += 1);
        NoDefer(())
    }
}

impl Default for NoDefer {
    fn default() -> Self {
        NoDefer::new()
    }
}

impl Drop for NoDefer {
    fn drop(&mut self) {
        DEFER.with(|d| {
            let mut d = d.borrow_mut();
            d.suspended = d.suspended.saturating_sub(1);
        });
    }
}

/// Whether the next advance on this thread may be deferred.
fn may_defer() -> bool {
    DEFER.with(|d| {
        let d = d.borrow();
        d.allowed && d.suspended == 0 && d.taken.is_none()
    })
}

/// A poisoned lock only means another thread panicked while holding it; the data (a queue,
/// an answer) is still consistent, so take it over.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The bounded FIFO between the logins and the writer. A Mutex and two Condvars rather than
/// a channel: the writer is woken only when it sleeps, and nobody spins (on two cores a
/// spinning waiter takes the CPU the writer needs).
struct Queue {
    state: Mutex<QueueState>,
    has_jobs: Condvar,
    has_room: Condvar,
}

struct QueueState {
    jobs: VecDeque<Job>,
    closed: bool,
    writer_sleeps: bool,
    senders_wait: usize,
}

impl Queue {
    fn push(&self, job: Job) -> StoreResult<()> {
        let mut st = lock(&self.state);
        let mut _asleep = None;
        while st.jobs.len() >= QUEUE_BOUND && !st.closed && !IS_WRITER.with(|w| w.get()) {
            _asleep.get_or_insert_with(crate::blocking::enter);
            st.senders_wait += 1;
            st = self.has_room.wait(st).unwrap_or_else(|p| p.into_inner());
            st.senders_wait -= 1;
        }
        if st.closed {
            return Err(stopped());
        }
        st.jobs.push_back(job);
        let wake = st.writer_sleeps;
        drop(st);
        if wake {
            self.has_jobs.notify_one();
        }
        Ok(())
    }

    /// Moves up to `max` jobs into `batch`, sleeping while there are none. `false`: closed
    /// and empty, the writer is done.
    fn take(&self, batch: &mut Vec<Job>, max: usize) -> bool {
        let mut st = lock(&self.state);
        while st.jobs.is_empty() && !st.closed {
            st.writer_sleeps = true;
            st = self.has_jobs.wait(st).unwrap_or_else(|p| p.into_inner());
            st.writer_sleeps = false;
        }
        if st.jobs.is_empty() {
            return false;
        }
        let n = st.jobs.len().min(max);
        batch.extend(st.jobs.drain(..n));
        let room = st.senders_wait > 0;
        drop(st);
        if room {
            self.has_room.notify_all();
        }
        true
    }

    /// Adds to `batch` whatever arrives within `linger` (up to `max` in all), returning as
    /// soon as something came or the queue closed.
    fn take_within(&self, batch: &mut Vec<Job>, max: usize, linger: Duration) {
        let deadline = Instant::now() + linger;
        let mut st = lock(&self.state);
        while st.jobs.is_empty() && !st.closed {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            st.writer_sleeps = true;
            st = match self.has_jobs.wait_timeout(st, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
            st.writer_sleeps = false;
        }
        let n = st.jobs.len().min(max.saturating_sub(batch.len()));
        batch.extend(st.jobs.drain(..n));
        let room = st.senders_wait > 0;
        drop(st);
        if room {
            self.has_room.notify_all();
        }
    }

    fn close(&self) {
        lock(&self.state).closed = true;
        self.has_jobs.notify_all();
        self.has_room.notify_all();
    }
}

/// The handle the store keeps: the queue and the writer thread.
pub(super) struct Committer {
    queue: Arc<Queue>,
    thread: Option<JoinHandle<()>>,
}

fn stopped() -> StoreError {
    StoreError::Commit("the store's writer thread has stopped".into())
}

impl Committer {
    /// Opens the writer's own connection to `path` and starts its thread; it checkpoints
    /// every `wal_pages` WAL pages.
    pub(super) fn start(path: &Path, wal_pages: u32) -> StoreResult<Committer> {
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
        let queue = Arc::new(Queue {
            state: Mutex::new(QueueState {
                jobs: VecDeque::with_capacity(MAX_BATCH),
                closed: false,
                writer_sleeps: false,
                senders_wait: 0,
            }),
            has_jobs: Condvar::new(),
            has_room: Condvar::new(),
        });
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

    /// Queues `op` and waits until the batch that holds it is committed (or failed).
    pub(super) fn write(&self, op: Op) -> StoreResult<Answer> {
        if matches!(op, Op::Advance { .. }) && may_defer() {
            let cell = Arc::new(DeferCell(Mutex::new(DeferState::Waiting)));
            self.queue.push(Job {
                op,
                reply: Some(Reply::Deferred(cell.clone())),
            })?;
            DEFER.with(|d| d.borrow_mut().taken = Some(Deferred(cell)));
            return Ok(Answer::Advanced(true));
        }
        SLOT.with(|slot| {
            *lock(&slot.answer) = None;
            self.queue.push(Job {
                op,
                reply: Some(Reply::Slot(slot.clone())),
            })?;
            let _asleep = crate::blocking::enter();
            let mut a = lock(&slot.answer);
            loop {
                if let Some(answer) = a.take() {
                    return answer;
                }
                a = slot.ready.wait(a).unwrap_or_else(|p| p.into_inner());
            }
        })
    }

    /// Queues `op` without waiting for it to be durable. Blocks only while the queue is full.
    pub(super) fn write_later(&self, op: Op) -> StoreResult<()> {
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
const AUDIT_LINGER: Duration = Duration::from_millis(2);

fn writer(mut conn: Connection, queue: &Queue) {
    IS_WRITER.with(|w| w.set(true));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SqliteStore, Store};
    use std::sync::Arc;

    fn store() -> (tempfile::TempDir, Arc<SqliteStore>, i64) {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = SqliteStore::open(&dir.path().join("c.db")).expect("open");
        let acct = s
            .create_account("alice", "everywhere", None, 0)
            .expect("account");
        let tok = s
            .insert_token(&crate::model::NewToken {
                serial: "HOTP0001".into(),
                account_id: acct,
                kind: crate::model::TokenKind::Hotp,
                state: crate::model::TokenState::Active,
                algorithm: crate::tokens::oath::Algorithm::Sha1,
                digits: 6,
                period: 0,
                sealed_secret: vec![1, 2, 3],
                label: String::new(),
                created_at: 0,
                public_id: None,
                address: None,
            })
            .expect("token");
        (dir, Arc::new(s), tok)
    }

    fn rec(ts_ms: i64) -> AuditRecord {
        AuditRecord {
            ts_ms,
            user: "alice".into(),
            service: "vpn".into(),
            rhost: None,
            client: None,
            verdict: "accept".into(),
            reason: "ok".into(),
            serial: None,
        }
    }

    #[test]
    fn sixteen_parallel_advances_to_one_counter_win_once() {
        let (_d, s, tok) = store();
        for round in 0..20 {
            let wins: usize = (0..16)
                .map(|_| {
                    let s = s.clone();
                    std::thread::spawn(move || s.advance_counter(tok, round, 0, 1, false))
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|h| h.join().expect("join").expect("advance"))
                .filter(|won| *won)
                .count();
            assert_eq!(wins, 1, "round {round}");
        }
    }

    #[test]
    fn an_advance_is_on_disk_when_it_returns() {
        let (d, s, tok) = store();
        assert!(s.advance_counter(tok, 7, 0, 1, false).expect("advance"));
        // Another connection (another process would see the same) reads the new counter.
        let other = Connection::open(d.path().join("c.db")).expect("open");
        let c: i64 = other
            .query_row(
                "SELECT last_counter FROM tokens WHERE id = ?1",
                [tok],
                |r| r.get(0),
            )
            .expect("read");
        assert_eq!(c, 7);
        assert!(!s.advance_counter(tok, 7, 0, 1, false).expect("replay"));
        assert!(!s.advance_counter(tok, 3, 0, 1, false).expect("older"));
    }

    #[test]
    fn audit_records_keep_their_order_across_threads_and_batches() {
        let (d, s, tok) = store();
        // Each thread's records must come out in the order that thread queued them.
        let handles: Vec<_> = (0..4i64)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for i in 0..500i64 {
                        s.append_audit(&rec(t * 1_000_000 + i)).expect("append");
                        if i % 50 == 0 {
                            s.advance_counter(tok, t * 1000 + i, 0, 1, false)
                                .expect("advance");
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("join");
        }
        drop(Arc::try_unwrap(s).ok().expect("last reference"));
        let s2 = SqliteStore::open(&d.path().join("c.db")).expect("reopen");
        let all = s2.audit(&Default::default()).expect("audit");
        assert_eq!(all.len(), 2000, "every queued record is committed on drop");
        for t in 0..4i64 {
            let mine: Vec<i64> = all
                .iter()
                .map(|r| r.ts_ms)
                .filter(|ts| ts / 1_000_000 == t)
                .collect();
            let mut sorted = mine.clone();
            sorted.sort_unstable();
            assert_eq!(mine, sorted, "thread {t} out of order");
        }
    }

    #[test]
    fn an_audit_record_queued_before_an_advance_is_durable_with_it() {
        let (d, s, tok) = store();
        s.append_audit(&rec(42)).expect("append");
        assert!(s.advance_counter(tok, 1, 0, 1, false).expect("advance"));
        let other = Connection::open(d.path().join("c.db")).expect("open");
        let n: i64 = other
            .query_row("SELECT count(*) FROM audit WHERE ts_ms = 42", [], |r| {
                r.get(0)
            })
            .expect("read");
        assert_eq!(n, 1);
    }

    #[test]
    fn failures_count_atomically_under_parallel_calls() {
        let (_d, s, _tok) = store();
        let id = s.account("alice").expect("a").expect("alice").id;
        let mut seen: Vec<u32> = (0..32)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || s.record_failure(id, 5, 0, 0))
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().expect("join").expect("failure"))
            .collect();
        seen.sort_unstable();
        assert_eq!(
            seen,
            (1..=32).collect::<Vec<u32>>(),
            "each call saw its own count"
        );
        s.clear_failures(id).expect("clear");
        assert_eq!(s.account("alice").expect("a").expect("alice").failures, 0);
    }

    #[test]
    fn a_failure_after_an_ended_lock_starts_a_fresh_count() {
        let (_d, s, _tok) = store();
        let id = s.account("alice").expect("a").expect("alice").id;
        for now in 1..=3 {
            s.record_failure(id, now, 3, 100).expect("failure");
        }
        let a = s.account("alice").expect("a").expect("alice");
        assert_eq!((a.failures, a.locked_until), (3, Some(100)));
        // Still locked at 99 (another process's login): counted on, the lock not moved. At
        // 100 the lock is over: one, and no lock.
        assert_eq!(s.record_failure(id, 99, 3, 199).expect("failure"), 4);
        assert_eq!(s.record_failure(id, 100, 3, 200).expect("failure"), 1);
        let a = s.account("alice").expect("a").expect("alice");
        assert_eq!((a.failures, a.locked_until), (1, None));
        // Unlocking counts the unlock, so a running daemon sees it.
        s.unlock_account(id).expect("unlock");
        let a = s.account("alice").expect("a").expect("alice");
        assert_eq!((a.failures, a.unlocks), (0, 1));
    }

    #[test]
    fn familiar_sources_round_trip() {
        let (_d, s, _tok) = store();
        let id = s.account("alice").expect("a").expect("alice").id;
        let list = vec!["192.0.2.1".to_string(), "2001:db8::/64".to_string()];
        s.set_familiar_sources(id, &list).expect("set");
        // Queued without a wait: an audit-free advance later makes it durable.
        s.clear_failures(id).expect("a waited write");
        let a = s.account("alice").expect("a").expect("alice");
        assert_eq!(a.familiar_sources, list);
    }

    /// Runs the threads `spawn` starts so that their writes share one batch with a write
    /// that fails: another connection holds the write lock, the writer's next batch (one
    /// advance to 1) waits in BEGIN IMMEDIATE, and everything queued meanwhile (a poison,
    /// then `spawn`'s writes) forms the batch after it. Returns the threads' results.
    fn in_a_failed_batch<T: Send + 'static>(
        d: &tempfile::TempDir,
        s: &Arc<SqliteStore>,
        tok: i64,
        spawn: impl FnOnce() -> Vec<std::thread::JoinHandle<T>>,
    ) -> Vec<T> {
        let c = s.committer().expect("a file store has a committer");
        let other = Connection::open(d.path().join("c.db")).expect("open");
        other.execute_batch("BEGIN IMMEDIATE").expect("lock");
        let first = std::thread::spawn({
            let s = s.clone();
            move || s.advance_counter(tok, 1, 0, 1, false)
        });
        std::thread::sleep(Duration::from_millis(100));
        c.write_later(Op::Poison).expect("queue poison");
        let waiters = spawn();
        std::thread::sleep(Duration::from_millis(200));
        other.execute_batch("COMMIT").expect("unlock");
        assert!(first.join().expect("join").expect("first batch commits"));
        waiters
            .into_iter()
            .map(|w| w.join().expect("join"))
            .collect()
    }

    #[test]
    fn a_failed_batch_answers_every_waiter_with_an_error() {
        let (d, s, tok) = store();
        let results = in_a_failed_batch(&d, &s, tok, || {
            (10..14)
                .map(|n| {
                    let s = s.clone();
                    std::thread::spawn(move || s.advance_counter(tok, n, 0, 1, false))
                })
                .collect()
        });
        for r in results {
            assert!(
                matches!(r, Err(StoreError::Commit(_))),
                "a waiter in the failed batch must get an error, got {r:?}"
            );
        }
        // Nothing of the failed batch reached the disk, and the writer goes on working.
        assert_eq!(
            s.token("HOTP0001").expect("t").expect("token").last_counter,
            1
        );
        assert!(s.advance_counter(tok, 2, 0, 1, false).expect("after"));
    }

    /// Runs `advance` inside a deferral window and returns the outcome `then` receives.
    fn deferred_outcome(advance: impl FnOnce() -> StoreResult<bool>) -> Outcome {
        defer_begin();
        let provisional = advance();
        let deferred = defer_end().expect("the advance was deferred");
        assert!(
            matches!(provisional, Ok(true)),
            "a deferred advance reports a provisional win, got {provisional:?}"
        );
        let (tx, rx) = std::sync::mpsc::channel();
        deferred.then(move |o| {
            let _ = tx.send(o);
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the outcome arrives")
    }

    #[test]
    fn a_deferred_advance_hears_won_once_it_is_on_disk() {
        let (d, s, tok) = store();
        let path = d.path().join("c.db");
        defer_begin();
        assert!(s.advance_counter(tok, 5, 0, 1, false).expect("queued"));
        let deferred = defer_end().expect("deferred");
        let (tx, rx) = std::sync::mpsc::channel();
        deferred.then(move |o| {
            // What a fresh connection sees while the outcome is being delivered.
            let on_disk: i64 = Connection::open(&path)
                .expect("open")
                .query_row("SELECT last_counter FROM tokens", [], |r| r.get(0))
                .expect("read");
            let _ = tx.send((o, on_disk));
        });
        let (outcome, on_disk) = rx.recv_timeout(Duration::from_secs(10)).expect("outcome");
        assert!(matches!(outcome, Ok(true)), "{outcome:?}");
        assert_eq!(on_disk, 5, "committed before the outcome was delivered");
    }

    #[test]
    fn a_deferred_advance_that_another_login_beat_hears_lost() {
        let (_d, s, tok) = store();
        assert!(s.advance_counter(tok, 7, 0, 1, false).expect("first"));
        let outcome = deferred_outcome(|| s.advance_counter(tok, 6, 0, 1, false));
        assert!(matches!(outcome, Ok(false)), "{outcome:?}");
    }

    #[test]
    fn only_the_first_advance_of_a_window_is_deferred_and_no_defer_waits() {
        let (_d, s, tok) = store();
        defer_begin();
        {
            let _wait = NoDefer::new();
            assert!(s.advance_counter(tok, 3, 0, 1, false).expect("waited"));
            // Waited for its commit: a second, lower advance loses for real.
            assert!(!s.advance_counter(tok, 2, 0, 1, false).expect("waited"));
        }
        assert!(defer_end().is_none(), "nothing was deferred under NoDefer");
        let outcome = deferred_outcome(|| s.advance_counter(tok, 4, 0, 1, false));
        assert!(matches!(outcome, Ok(true)), "{outcome:?}");
        // Outside a window every advance waits again.
        assert!(!s.advance_counter(tok, 4, 0, 1, false).expect("waited"));
    }

    #[test]
    fn a_deferred_advance_in_a_failed_batch_hears_the_error() {
        let (d, s, tok) = store();
        let outcomes = in_a_failed_batch(&d, &s, tok, || {
            let s = s.clone();
            vec![std::thread::spawn(move || {
                deferred_outcome(|| s.advance_counter(tok, 10, 0, 1, false))
            })]
        });
        assert!(
            matches!(outcomes[..], [Err(StoreError::Commit(_))]),
            "{outcomes:?}"
        );
        assert_eq!(
            s.token("HOTP0001").expect("t").expect("token").last_counter,
            1,
            "nothing of the failed batch on disk"
        );
    }

    #[test]
    fn every_unknown_user_failure_writes_to_the_database() {
        // A commit that changes nothing returns without an fsync, far sooner than a known
        // account's failure count: unknown users paced apart were answered 242 µs (81 %)
        // sooner (examples/timing.rs 1000 5). Each such write must change the database,
        // also within one second.
        let (d, s, _tok) = store();
        let other = Connection::open(d.path().join("c.db")).expect("open");
        let version = || -> i64 {
            other
                .query_row("PRAGMA data_version", [], |r| r.get(0))
                .expect("data_version")
        };
        s.record_unknown_failure(100).expect("first");
        for n in 0..3 {
            let before = version();
            s.record_unknown_failure(100).expect("again, same second");
            assert_ne!(
                version(),
                before,
                "write {n} within one second changed nothing"
            );
        }
        let count: i64 = other
            .query_row(
                "SELECT value FROM meta WHERE name = 'unknown_user_failures'",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(count, 4);
    }
}
