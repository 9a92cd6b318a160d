//! The duplicate cache (RFC 5080 §2.2.2): a retransmitted Access-Request (same source
//! address and port, Identifier and Request Authenticator) gets the very bytes of the first
//! answer and is not validated again. Without it an HOTP login whose Accept was lost on the
//! way turns into a Reject ("code already used") on the client's retry.
//!
//! A request is marked "in progress" before its validation starts; a copy that arrives
//! meanwhile is dropped, and the client's next retry finds the finished answer. The cache is
//! bounded: entries leave after the window, and when it is full the oldest leave first.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub src: SocketAddr,
    pub identifier: u8,
    pub authenticator: [u8; 16],
}

#[derive(Debug, Clone)]
enum Slot {
    InProgress,
    Answered(Arc<[u8]>),
}

/// What the cache knows about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// First sight: it is now marked in progress; the caller must `finish` or `abandon` it.
    New,
    /// A copy is being validated right now.
    InProgress,
    /// Answered before: send these bytes again.
    Answered(Arc<[u8]>),
}

struct Inner {
    map: HashMap<Key, (Instant, Slot)>,
    /// Answer times, oldest first; an entry whose time no longer matches the map is stale.
    /// Only answers are queued: a request in progress leaves the map through its
    /// [`InProgress`] guard (finished or abandoned), so it needs no place here, and one place
    /// per answer instead of two halves the queue (9 MiB at a full cache, docs/performance.md).
    order: VecDeque<(Instant, Key)>,
}

pub struct DuplicateCache {
    window: Duration,
    capacity: usize,
    inner: Mutex<Inner>,
}

impl DuplicateCache {
    pub fn new(window: Duration, capacity: usize) -> DuplicateCache {
        DuplicateCache {
            window,
            capacity: capacity.max(1),
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                order: VecDeque::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every change is one insert or remove: a map left by a panicking holder is usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn begin(&self, key: Key, now: Instant) -> Seen {
        let mut inner = self.lock();
        self.expire(&mut inner, now);
        if let Some((_, slot)) = inner.map.get(&key) {
            return match slot {
                Slot::InProgress => Seen::InProgress,
                Slot::Answered(bytes) => Seen::Answered(bytes.clone()),
            };
        }
        while inner.map.len() >= self.capacity {
            if !pop_oldest(&mut inner) {
                break;
            }
        }
        inner.map.insert(key, (now, Slot::InProgress));
        Seen::New
    }

    /// Stores the answer; the window starts now.
    pub fn finish(&self, key: Key, answer: Arc<[u8]>, now: Instant) {
        let mut inner = self.lock();
        while inner.order.len() >= self.capacity {
            if !pop_oldest(&mut inner) {
                break;
            }
        }
        inner.map.insert(key, (now, Slot::Answered(answer)));
        inner.order.push_back((now, key));
    }

    /// Forgets a request that got no answer (dropped for load, or its validation failed), so
    /// that a retry is treated as new.
    pub fn abandon(&self, key: Key) {
        let mut inner = self.lock();
        if matches!(inner.map.get(&key), Some((_, Slot::InProgress))) {
            inner.map.remove(&key);
        }
    }

    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn expire(&self, inner: &mut Inner, now: Instant) {
        while let Some(&(at, _)) = inner.order.front() {
            if now.saturating_duration_since(at) < self.window {
                break;
            }
            pop_oldest(inner);
        }
    }
}

/// Removes the oldest queue entry and its map entry if that is still the same one.
fn pop_oldest(inner: &mut Inner) -> bool {
    let Some((at, key)) = inner.order.pop_front() else {
        return false;
    };
    if inner.map.get(&key).is_some_and(|(t, _)| *t == at) {
        inner.map.remove(&key);
    }
    true
}

/// Marks a request in progress for as long as it lives; dropped without `finish`, it
/// abandons the request (a panicked or cancelled validation must not block retries for the
/// whole window).
pub struct InProgress {
    cache: Arc<DuplicateCache>,
    key: Key,
    done: bool,
}

impl InProgress {
    pub fn new(cache: Arc<DuplicateCache>, key: Key) -> InProgress {
        InProgress {
            cache,
            key,
            done: false,
        }
    }

    pub fn finish(mut self, answer: Arc<[u8]>) {
        self.cache.finish(self.key, answer, Instant::now());
        self.done = true;
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        if !self.done {
            self.cache.abandon(self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> Key {
        Key {
            src: SocketAddr::from(([127, 0, 0, 1], 40000)),
            identifier: n,
            authenticator: [n; 16],
        }
    }

    #[test]
    fn new_in_progress_answered_expired() {
        let c = DuplicateCache::new(Duration::from_secs(30), 100);
        let t0 = Instant::now();
        assert_eq!(c.begin(key(1), t0), Seen::New);
        assert_eq!(c.begin(key(1), t0), Seen::InProgress);
        let answer: Arc<[u8]> = Arc::from(&b"answer"[..]);
        c.finish(key(1), answer.clone(), t0 + Duration::from_secs(1));
        assert_eq!(
            c.begin(key(1), t0 + Duration::from_secs(30)),
            Seen::Answered(answer)
        );
        // The window counts from the answer, not from the first sight.
        assert_eq!(c.begin(key(1), t0 + Duration::from_secs(31)), Seen::New);
    }

    #[test]
    fn other_identifier_or_authenticator_is_new() {
        let c = DuplicateCache::new(Duration::from_secs(30), 100);
        let t0 = Instant::now();
        assert_eq!(c.begin(key(1), t0), Seen::New);
        let mut k = key(1);
        k.authenticator[0] ^= 1;
        assert_eq!(c.begin(k, t0), Seen::New);
        let mut k = key(1);
        k.src.set_port(40001);
        assert_eq!(c.begin(k, t0), Seen::New);
    }

    #[test]
    fn bounded_oldest_leaves_first() {
        let c = DuplicateCache::new(Duration::from_secs(30), 10);
        let t0 = Instant::now();
        for n in 0..50u8 {
            assert_eq!(c.begin(key(n), t0), Seen::New);
            c.finish(key(n), Arc::from(&[n][..]), t0);
            assert!(c.len() <= 10);
            assert!(c.lock().order.len() <= 20);
        }
        assert_eq!(c.begin(key(0), t0), Seen::New, "evicted");
        assert!(matches!(c.begin(key(49), t0), Seen::Answered(_)));
    }

    #[test]
    fn an_answer_takes_one_place_in_the_order_and_one_in_progress_none() {
        let c = DuplicateCache::new(Duration::from_secs(30), 10);
        let t0 = Instant::now();
        for n in 0..10u8 {
            assert_eq!(c.begin(key(n), t0), Seen::New);
            c.finish(key(n), Arc::from(&[n][..]), t0);
        }
        assert_eq!(c.begin(key(10), t0), Seen::New);
        assert_eq!(c.lock().order.len(), 9, "the oldest answer made room");
        assert_eq!(c.begin(key(10), t0), Seen::InProgress);
        c.abandon(key(10));
        assert_eq!(c.begin(key(10), t0), Seen::New, "abandoned: new again");
        assert!(matches!(c.begin(key(9), t0), Seen::Answered(_)));
        // Expired answers leave in order, the request in progress stays until its guard ends.
        let later = t0 + Duration::from_secs(31);
        assert_eq!(c.begin(key(11), later), Seen::New);
        assert_eq!(c.lock().order.len(), 0);
        assert_eq!(c.begin(key(10), later), Seen::InProgress);
    }

    #[test]
    fn guard_abandons_on_drop() {
        let c = Arc::new(DuplicateCache::new(Duration::from_secs(30), 10));
        let t0 = Instant::now();
        assert_eq!(c.begin(key(1), t0), Seen::New);
        drop(InProgress::new(c.clone(), key(1)));
        assert_eq!(c.begin(key(1), t0), Seen::New);
        InProgress::new(c.clone(), key(1)).finish(Arc::from(&b"x"[..]));
        assert!(matches!(c.begin(key(1), t0), Seen::Answered(_)));
    }
}
