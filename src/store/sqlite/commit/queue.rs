//! The bounded FIFO between the logins and the writer, and who hears each write's answer.

use super::ops::{Answer, Op};
use super::QUEUE_BOUND;
use crate::store::ticket::Resolver;
use crate::store::StoreResult;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Where a waiter's answer lands. One per thread, reused: a thread waits for one write at a
/// time, and the writer only holds a clone until it has answered.
pub(in crate::store) struct Slot {
    pub(in crate::store) answer: Mutex<Option<StoreResult<Answer>>>,
    pub(in crate::store) ready: Condvar,
}

impl Slot {
    fn put(&self, a: StoreResult<Answer>) {
        *lock(&self.answer) = Some(a);
        self.ready.notify_one();
    }
}

thread_local! {
    pub(in crate::store) static SLOT: Arc<Slot> = Arc::new(Slot {
        answer: Mutex::new(None),
        ready: Condvar::new(),
    });
}

/// Who hears a write's answer.
pub(in crate::store) enum Reply {
    /// A thread asleep until the commit.
    Slot(Arc<Slot>),
    /// A caller that went on without waiting and holds the ticket (`CommitMode::Defer`).
    Ticket(Resolver),
}

impl Reply {
    pub(in crate::store) fn put(self, a: StoreResult<Answer>) {
        match self {
            Reply::Slot(s) => s.put(a),
            Reply::Ticket(r) => r.resolve(a.and_then(Answer::won)),
        }
    }
}

/// What [`Queue::take_until`] found.
pub(in crate::store) enum Taken {
    Jobs,
    Timeout,
    /// Closed and empty: the writer is done.
    Closed,
}

pub(in crate::store) struct Job {
    pub(in crate::store) op: Op,
    /// `None`: nobody waits (audit records), or answered already.
    pub(in crate::store) reply: Option<Reply>,
}

impl Job {
    /// An audit record nobody waits for: what the writer holds back, and keeps when the disk
    /// failed its commit.
    pub(in crate::store) fn is_audit_record(&self) -> bool {
        self.reply.is_none() && matches!(self.op, Op::Audit(_))
    }
}

impl Drop for Job {
    /// A job dropped unanswered (the writer panicked) must not leave its waiter asleep for
    /// ever: it hears that the write failed.
    fn drop(&mut self) {
        if let Some(r) = self.reply.take() {
            r.put(Err(super::writer::stopped()));
        }
    }
}
/// A poisoned lock only means another thread panicked while holding it; the data (a queue,
/// an answer) is still consistent, so take it over.
pub(in crate::store) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The bounded FIFO between the logins and the writer. A Mutex and two Condvars rather than
/// a channel: the writer is woken only when it sleeps, and nobody spins (on two cores a
/// spinning waiter takes the CPU the writer needs).
pub(in crate::store) struct Queue {
    pub(in crate::store) state: Mutex<QueueState>,
    /// Whether the writer sleeps waiting for a job. Changed only under the state's lock, so
    /// a push that holds it knows whether to wake the writer; read without the lock it is a
    /// hint only (the writer may be waking), see `Committer::idle_conn`.
    pub(in crate::store) writer_idle: AtomicBool,
    /// Set by the writer after each commit: whether the batch was small enough that the
    /// writer is not under load (then it may lend its connection while idle).
    pub(in crate::store) writer_quiet: AtomicBool,
    pub(in crate::store) has_jobs: Condvar,
    pub(in crate::store) has_room: Condvar,
}

pub(in crate::store) struct QueueState {
    pub(in crate::store) jobs: VecDeque<Job>,
    /// Jobs in `jobs` that are not audit records: the writes a write must not overtake.
    pub(in crate::store) writes: usize,
    pub(in crate::store) closed: bool,
    pub(in crate::store) senders_wait: usize,
    /// The writer sleeps until a deadline: it holds audit records and wakes to commit them
    /// anyway, so another audit record need not wake it sooner (at window 1 that was a
    /// wake-up of the writer per login, for a record it only puts aside).
    wakes_by_itself: bool,
    /// The writer waits a moment for a login to share the commit of the audit records that
    /// are due (`take_within`): a login then queues rather than commit on its own thread.
    pub(in crate::store) lingering: bool,
}

impl Queue {
    /// An empty, open queue.
    pub(in crate::store) fn new(capacity: usize) -> Queue {
        Queue {
            state: Mutex::new(QueueState {
                jobs: VecDeque::with_capacity(capacity),
                writes: 0,
                closed: false,
                senders_wait: 0,
                wakes_by_itself: false,
                lingering: false,
            }),
            writer_idle: AtomicBool::new(false),
            writer_quiet: AtomicBool::new(false),
            has_jobs: Condvar::new(),
            has_room: Condvar::new(),
        }
    }

    pub(in crate::store) fn push(&self, job: Job) -> StoreResult<()> {
        let mut st = lock(&self.state);
        let full = |st: &QueueState| {
            st.jobs.len() >= QUEUE_BOUND && !st.closed && !IS_WRITER.with(|w| w.get())
        };
        if full(&st) {
            st = crate::blocking::section(move || {
                while full(&st) {
                    st.senders_wait += 1;
                    st = self.has_room.wait(st).unwrap_or_else(|p| p.into_inner());
                    st.senders_wait -= 1;
                }
                st
            });
        }
        if st.closed {
            return Err(super::writer::stopped());
        }
        let audit = job.is_audit_record();
        let wake = self.writer_idle.load(Ordering::Relaxed) && !(st.wakes_by_itself && audit);
        if !audit {
            st.writes += 1;
        }
        st.jobs.push_back(job);
        drop(st);
        if wake {
            self.has_jobs.notify_one();
        }
        Ok(())
    }

    /// Moves up to `max` jobs into `batch`, sleeping while there are none. `false`: closed
    /// and empty, the writer is done.
    pub(in crate::store) fn take(&self, batch: &mut Vec<Job>, max: usize) -> bool {
        !matches!(self.take_until(batch, max, None), Taken::Closed)
    }

    /// Like [`Queue::take`], but sleeps only until `deadline` when there is one.
    pub(in crate::store) fn take_until(
        &self,
        batch: &mut Vec<Job>,
        max: usize,
        deadline: Option<Instant>,
    ) -> Taken {
        let mut st = lock(&self.state);
        while st.jobs.is_empty() && !st.closed {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Taken::Timeout;
            }
            st = self.wait_for_jobs(st, deadline);
        }
        if st.jobs.is_empty() {
            return Taken::Closed;
        }
        self.move_jobs(st, batch, max);
        Taken::Jobs
    }

    /// Adds to `batch` whatever arrives within `linger` (up to `max` in all), returning as
    /// soon as something came or the queue closed.
    pub(in crate::store) fn take_within(&self, batch: &mut Vec<Job>, max: usize, linger: Duration) {
        let deadline = Instant::now() + linger;
        let mut st = lock(&self.state);
        st.lingering = true;
        while st.jobs.is_empty() && !st.closed {
            if Instant::now() >= deadline {
                st.lingering = false;
                return;
            }
            st = self.wait_for_jobs(st, Some(deadline));
        }
        st.lingering = false;
        self.move_jobs(st, batch, max.saturating_sub(batch.len()));
    }

    /// The writer asleep until a job is pushed (or `deadline`, when there is one); while it
    /// sleeps, pushes wake it and logins may borrow its connection.
    fn wait_for_jobs<'a>(
        &self,
        mut st: MutexGuard<'a, QueueState>,
        deadline: Option<Instant>,
    ) -> MutexGuard<'a, QueueState> {
        self.writer_idle.store(true, Ordering::Relaxed);
        st.wakes_by_itself = deadline.is_some();
        st = match deadline {
            None => self.has_jobs.wait(st).unwrap_or_else(|p| p.into_inner()),
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                match self.has_jobs.wait_timeout(st, left) {
                    Ok((g, _)) => g,
                    Err(p) => p.into_inner().0,
                }
            }
        };
        self.writer_idle.store(false, Ordering::Relaxed);
        st.wakes_by_itself = false;
        st
    }

    /// Moves up to `n` jobs into `batch` and wakes the senders waiting for room.
    fn move_jobs(&self, mut st: MutexGuard<'_, QueueState>, batch: &mut Vec<Job>, n: usize) {
        let n = st.jobs.len().min(n);
        let from = batch.len();
        batch.extend(st.jobs.drain(..n));
        let writes = batch[from..]
            .iter()
            .filter(|j| !j.is_audit_record())
            .count();
        st.writes = st.writes.saturating_sub(writes);
        let room = st.senders_wait > 0;
        drop(st);
        if room {
            self.has_room.notify_all();
        }
    }

    pub(in crate::store) fn close(&self) {
        lock(&self.state).closed = true;
        self.has_jobs.notify_all();
        self.has_room.notify_all();
    }
}

thread_local! {
    /// Whether this thread is the writer: its own writes (audit records of deferred logins,
    /// queued by their completions) must not wait for room in the queue only it empties.
    pub(in crate::store) static IS_WRITER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}
