//! How many of a listen address's threads receive at once.
//!
//! Every thread asleep in `recvfrom` costs a wake-up and a thread switch per datagram it is
//! woken for; with 65 of them on one socket that was the largest cost of a login on two cores
//! (docs/performance.md). So only `target` threads hold the receiving role, a few per core:
//! under load they find the next datagram waiting and do not sleep at all. The other threads
//! are parked here. A thread that must sleep in a login (its commit, a validation server:
//! `crate::blocking`) lends its role to a parked thread and takes it back when it wakes; the
//! thread that then finds one role too many parks itself after its datagram.

use crate::blocking::Lender;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

pub struct Receivers {
    /// Threads holding the role now, lent roles not counted.
    holding: AtomicUsize,
    target: usize,
    /// Guards the parked threads' check of `holding` against a lend in between.
    lock: Mutex<()>,
    parked: Condvar,
}

impl Receivers {
    pub fn new(target: usize) -> Receivers {
        Receivers {
            holding: AtomicUsize::new(0),
            target: target.max(1),
            lock: Mutex::new(()),
            parked: Condvar::new(),
        }
    }

    pub fn target(&self) -> usize {
        self.target
    }

    /// Parks until a role is free, then takes it. `false`: the server stops.
    pub fn take(&self, stopping: &AtomicBool, poll: Duration) -> bool {
        let mut g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if stopping.load(Ordering::Relaxed) {
                return false;
            }
            let n = self.holding.load(Ordering::Acquire);
            if n < self.target
                && self
                    .holding
                    .compare_exchange(n, n + 1, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                return true;
            }
            g = match self.parked.wait_timeout(g, poll) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// Gives the role up when there is one too many (a lender woke); the caller parks next.
    pub fn retire_if_over(&self) -> bool {
        let mut n = self.holding.load(Ordering::Acquire);
        while n > self.target {
            match self
                .holding
                .compare_exchange(n, n - 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(now) => n = now,
            }
        }
        false
    }

    /// Wakes every parked thread, to see that the server stops.
    pub fn wake_all(&self) {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.parked.notify_all();
    }
}

impl Lender for Receivers {
    fn lend(&self) {
        self.holding.fetch_sub(1, Ordering::AcqRel);
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.parked.notify_one();
    }

    fn reclaim(&self) {
        self.holding.fetch_add(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const POLL: Duration = Duration::from_millis(20);

    #[test]
    fn a_lent_role_wakes_a_parked_thread_and_the_one_too_many_retires() {
        let r = Arc::new(Receivers::new(1));
        let stop = Arc::new(AtomicBool::new(false));
        assert!(r.take(&stop, POLL), "the first thread takes the role");
        let (r2, stop2) = (r.clone(), stop.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        let parked = std::thread::spawn(move || {
            let got = r2.take(&stop2, Duration::from_secs(30));
            tx.send(got).expect("send");
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "no role is free: the second thread stays parked"
        );
        r.lend();
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)),
            Ok(true),
            "a lend wakes it (well before its 30 s poll)"
        );
        parked.join().expect("thread");
        assert!(!r.retire_if_over(), "one holder while the lender sleeps");
        r.reclaim();
        assert!(r.retire_if_over(), "two holders after it woke: one retires");
        assert!(!r.retire_if_over(), "and only one");
    }

    #[test]
    fn parked_threads_see_the_stop() {
        let r = Arc::new(Receivers::new(1));
        let stop = Arc::new(AtomicBool::new(false));
        assert!(r.take(&stop, POLL));
        let (r2, stop2) = (r.clone(), stop.clone());
        let t = std::thread::spawn(move || r2.take(&stop2, Duration::from_secs(30)));
        std::thread::sleep(Duration::from_millis(50));
        stop.store(true, Ordering::SeqCst);
        r.wake_all();
        assert!(!t.join().expect("thread"), "stopping, not a role");
    }
}
