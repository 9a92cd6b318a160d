//! Where a login's thread sleeps on something other than its own work: a commit it must wait
//! for, a full write queue, a validation server, a mail relay.
//!
//! The RADIUS front-end keeps only a few threads receiving (one woken thread per datagram
//! costs more CPU than the validation, docs/performance.md), and the other threads parked.
//! A thread about to sleep here lends its receiving role to a parked one, so a slow login
//! never leaves the socket unread; it takes the role back afterwards, and the front-end
//! parks whichever thread is one too many. Threads without a lender (tokio's blocking pool,
//! the CLI, tests) sleep as before.

use std::cell::RefCell;
use std::sync::Arc;

/// Who is told that this thread is about to sleep, and when it woke.
pub trait Lender: Send + Sync {
    fn lend(&self);
    fn reclaim(&self);
}

thread_local! {
    static LENDER: RefCell<Option<Arc<dyn Lender>>> = const { RefCell::new(None) };
}

/// Sets (or clears) the lender of the calling thread.
pub fn set_lender(l: Option<Arc<dyn Lender>>) {
    LENDER.with(|x| *x.borrow_mut() = l);
}

/// Marks a sleep from here until the guard is dropped.
pub fn enter() -> Sleeping {
    let lender = LENDER.with(|x| x.borrow().clone());
    if let Some(l) = &lender {
        l.lend();
    }
    Sleeping(lender)
}

/// Runs `f`, which may sleep, as a marked sleep.
pub fn section<R>(f: impl FnOnce() -> R) -> R {
    let _s = enter();
    f()
}

/// The thread's sleep; dropping it (also on unwinding) takes the role back.
pub struct Sleeping(Option<Arc<dyn Lender>>);

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
}
