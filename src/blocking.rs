//! Where a login's thread sleeps on something other than its own work: a commit it must wait
//! for, a full write queue, a validation server, a mail relay, a PostgreSQL round trip.
//!
//! The RADIUS front-end keeps only a few threads receiving (one woken thread per datagram
//! costs more CPU than the validation, docs/performance.md), and the other threads parked.
//! A thread about to sleep here lends its receiving role to a parked one, so a slow login
//! never leaves the socket unread; it takes the role back afterwards, and the front-end
//! parks whichever thread is one too many.
//!
//! The Unix socket front-end runs a login on the tokio worker thread that read its line (a
//! hand-over to the blocking pool and back cost more than the login). A sleep there would
//! hold up every connection queued on that worker, so a sleep in such a login is run through
//! tokio's `block_in_place`: the worker's queue moves to another thread first. Threads of
//! neither kind (tokio's blocking pool, the CLI, the writers, tests) sleep as they are.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

/// Who is told that this thread is about to sleep, and when it woke.
pub trait Lender: Send + Sync {
    fn lend(&self);
    fn reclaim(&self);
}

thread_local! {
    static LENDER: RefCell<Option<Arc<dyn Lender>>> = const { RefCell::new(None) };
    /// Set while a login runs on a worker thread of a multi-threaded tokio runtime.
    static ON_WORKER: Cell<bool> = const { Cell::new(false) };
    /// Runs once, before the next sleep that lends this thread's role: a RADIUS thread
    /// deciding a group of datagrams hands the ones it has not decided to another thread.
    static BEFORE_LENDING: RefCell<Option<Box<dyn FnOnce()>>> = const { RefCell::new(None) };
}

/// Sets what runs once before this thread next lends its role ([`section`]); `None` clears
/// it.
pub fn before_lending(f: Option<Box<dyn FnOnce()>>) {
    BEFORE_LENDING.with(|x| *x.borrow_mut() = f);
}

/// Sets (or clears) the lender of the calling thread.
pub fn set_lender(l: Option<Arc<dyn Lender>>) {
    LENDER.with(|x| *x.borrow_mut() = l);
}

/// Runs `f`, which may sleep, as a marked sleep.
pub fn section<R>(f: impl FnOnce() -> R) -> R {
    if ON_WORKER.get() {
        return tokio::task::block_in_place(f);
    }
    let lender = LENDER.with(|x| x.borrow().clone());
    if let Some(l) = &lender {
        if let Some(hand_over) = BEFORE_LENDING.with(|x| x.borrow_mut().take()) {
            hand_over();
        }
        l.lend();
    }
    let _back = Sleeping(lender);
    f()
}

/// Runs `f`, a login, on the calling tokio worker thread: its marked sleeps (`section`)
/// move the worker's other tasks away first. Only for a worker of a multi-threaded runtime
/// (`block_in_place` refuses the others); the caller checks
/// [`tokio::runtime::RuntimeFlavor`].
pub fn on_worker<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            ON_WORKER.set(self.0);
        }
    }
    let _reset = Reset(ON_WORKER.replace(true));
    f()
}

/// The thread's sleep; dropping it (also on unwinding) takes the role back.
struct Sleeping(Option<Arc<dyn Lender>>);

impl Drop for Sleeping {
    fn drop(&mut self) {
        if let Some(l) = self.0.take() {
            l.reclaim();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI32, Ordering};

    struct Count(AtomicI32, AtomicI32);
    impl Lender for Count {
        fn lend(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        fn reclaim(&self) {
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_section_lends_once_and_takes_back_once_and_only_on_its_thread() {
        let c = Arc::new(Count(AtomicI32::new(0), AtomicI32::new(0)));
        set_lender(Some(c.clone()));
        let r = section(|| {
            assert_eq!(c.0.load(Ordering::SeqCst), 1, "lent before the sleep");
            assert_eq!(c.1.load(Ordering::SeqCst), 0);
            7
        });
        assert_eq!(r, 7);
        assert_eq!(c.1.load(Ordering::SeqCst), 1, "taken back after it");
        std::thread::spawn(|| section(|| ()))
            .join()
            .expect("thread");
        assert_eq!(
            c.0.load(Ordering::SeqCst),
            1,
            "another thread has no lender"
        );
        set_lender(None);
        section(|| ());
        assert_eq!(c.0.load(Ordering::SeqCst), 1, "cleared");
    }

    #[test]
    fn what_runs_before_lending_runs_once_before_the_lend() {
        let c = Arc::new(Count(AtomicI32::new(0), AtomicI32::new(0)));
        let seen = Arc::new(AtomicI32::new(-1));
        set_lender(Some(c.clone()));
        let (s, c2) = (seen.clone(), c.clone());
        before_lending(Some(Box::new(move || {
            s.store(c2.0.load(Ordering::SeqCst), Ordering::SeqCst);
        })));
        section(|| ());
        assert_eq!(seen.load(Ordering::SeqCst), 0, "ran, before the lend");
        seen.store(-1, Ordering::SeqCst);
        section(|| ());
        assert_eq!(seen.load(Ordering::SeqCst), -1, "once");
        let s = seen.clone();
        before_lending(Some(Box::new(move || s.store(7, Ordering::SeqCst))));
        before_lending(None);
        section(|| ());
        assert_eq!(seen.load(Ordering::SeqCst), -1, "cleared");
        set_lender(None);
    }
}
