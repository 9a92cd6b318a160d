//! The connections that wait for a request line, so that a full house closes the one that
//! has waited longest instead of refusing a real login.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// The open connections that wait for a request line (idle between requests, or a line not
/// yet complete), by when their wait began. Full house: the one that waited longest is closed
/// for the newcomer. A connection whose request is being worked on is never closed. A peer
/// that opens connections and sends nothing only ever pushes out its own oldest ones; a real
/// client sends its line right after connecting, so it would take `max_connections` newer
/// connections in those microseconds to push it out.
#[derive(Default)]
pub(super) struct Waiting {
    /// Tickets in order; 0 means "working, not evictable".
    next: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<ConnState>>>,
}

pub(super) struct ConnState {
    /// Ticket taken when the current wait for a line began; 0 while a request is worked on.
    waiting_since: AtomicU64,
    pub(super) evict: Notify,
}

/// Removes a connection from [`Waiting`] when it ends.
pub(super) struct Registered {
    waiting: Arc<Waiting>,
    id: u64,
    pub(super) state: Arc<ConnState>,
}

impl Waiting {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ConnState>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ticket(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(super) fn register(self: &Arc<Self>) -> Registered {
        let id = self.ticket();
        let state = Arc::new(ConnState {
            waiting_since: AtomicU64::new(id),
            evict: Notify::new(),
        });
        self.lock().insert(id, state.clone());
        Registered {
            waiting: self.clone(),
            id,
            state,
        }
    }

    /// Tells the connection that has waited longest to close. False when none waits.
    pub(super) fn evict_oldest(&self) -> bool {
        let m = self.lock();
        let oldest = m
            .values()
            .filter(|c| c.waiting_since.load(Ordering::Relaxed) != 0)
            .min_by_key(|c| c.waiting_since.load(Ordering::Relaxed));
        match oldest {
            Some(c) => {
                c.waiting_since.store(0, Ordering::Relaxed);
                // Stored if the connection is not parked on it right now: it closes at its
                // next wait.
                c.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

impl Registered {
    pub(super) fn waiting(&self) {
        let t = self.waiting.ticket();
        self.state.waiting_since.store(t, Ordering::Relaxed);
    }

    pub(super) fn working(&self) {
        self.state.waiting_since.store(0, Ordering::Relaxed);
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.waiting.lock().remove(&self.id);
    }
}
