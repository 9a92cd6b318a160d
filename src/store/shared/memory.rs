//! The shared state of a single host: in this process's memory, bounded, gone with the
//! process. A restart ends half-done two-step logins (one more PIN prompt), empties the
//! re-login cache (one more full login) and forgives the counted guesses that no account row
//! holds; nothing of it lets anyone in.

use super::{Challenge, Count, Counter, Key, ReloginEntry, ReloginHit, SharedStateStore};
use crate::store::StoreResult;
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

/// Open States in all: a bound on memory whatever happens.
const MAX_CHALLENGES: usize = 65_536;
/// Re-login entries held at most; the oldest go first. About 200 bytes each.
const MAX_RELOGIN: usize = 65_536;
/// Counters kept at most; beyond it, expired ones go first, then the older half.
pub(super) const MAX_COUNTERS: usize = 200_000;

#[derive(Default)]
struct Challenges {
    by_key: HashMap<Key, Challenge>,
    /// Keys per user, oldest first.
    by_user: HashMap<String, Vec<Key>>,
}

impl Challenges {
    fn remove(&mut self, key: &Key) -> Option<Challenge> {
        let c = self.by_key.remove(key)?;
        if let Some(list) = self.by_user.get_mut(&c.user) {
            list.retain(|k| k != key);
            if list.is_empty() {
                self.by_user.remove(&c.user);
            }
        }
        Some(c)
    }

    fn purge_expired(&mut self, now_ms: i64) {
        self.by_key.retain(|_, c| c.expires_ms > now_ms);
        let by_key = &self.by_key;
        self.by_user.retain(|_, list| {
            list.retain(|k| by_key.contains_key(k));
            !list.is_empty()
        });
    }
}

struct Relogin {
    serial: String,
    created_ms: i64,
    last_ms: i64,
    idle_ms: i64,
    max_ms: i64,
    /// Matches the entry's place in `order`; a stale place (entry replaced) is skipped.
    seq: u64,
}

#[derive(Default)]
struct Relogins {
    map: HashMap<Key, Relogin>,
    /// Keys in order of creation, for dropping the oldest.
    order: VecDeque<(Key, u64)>,
    seq: u64,
}

/// [`SharedStateStore`] in memory.
pub struct MemoryShared {
    challenges: Mutex<Challenges>,
    relogin: Mutex<Relogins>,
    /// Counter and the second it expires.
    counters: Mutex<HashMap<String, (Counter, i64)>>,
    max_relogin: usize,
}

impl Default for MemoryShared {
    fn default() -> Self {
        MemoryShared::new()
    }
}

impl MemoryShared {
    pub fn new() -> MemoryShared {
        MemoryShared::with_relogin_bound(MAX_RELOGIN)
    }

    /// With room for `max_relogin` re-login entries (tests of the bound).
    pub fn with_relogin_bound(max_relogin: usize) -> MemoryShared {
        MemoryShared {
            challenges: Mutex::default(),
            relogin: Mutex::default(),
            counters: Mutex::default(),
            max_relogin: max_relogin.max(1),
        }
    }

    /// (open States, re-login entries, counters), for tests of the bounds.
    pub fn sizes(&self) -> (usize, usize, usize) {
        (
            lock(&self.challenges).by_key.len(),
            lock(&self.relogin).map.len(),
            lock(&self.counters).len(),
        )
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every operation is a single insert or remove, or a counter update: after a panic
    // elsewhere the maps are still consistent enough to use.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SharedStateStore for MemoryShared {
    fn put_challenge(
        &self,
        key: &Key,
        c: &Challenge,
        now_ms: i64,
        per_user: usize,
    ) -> StoreResult<bool> {
        let mut open = lock(&self.challenges);
        if open.by_key.len() >= MAX_CHALLENGES {
            open.purge_expired(now_ms);
        }
        let mine: Vec<Key> = open.by_user.get(&c.user).cloned().unwrap_or_default();
        for k in &mine {
            if open.by_key.get(k).is_some_and(|p| p.expires_ms <= now_ms) {
                open.remove(k);
            }
        }
        while open.by_user.get(&c.user).map_or(0, Vec::len) >= per_user.max(1) {
            let Some(oldest) = open.by_user.get(&c.user).and_then(|l| l.first()).copied() else {
                break;
            };
            open.remove(&oldest);
        }
        if open.by_key.len() >= MAX_CHALLENGES {
            return Ok(false);
        }
        open.by_user.entry(c.user.clone()).or_default().push(*key);
        open.by_key.insert(*key, c.clone());
        Ok(true)
    }

    fn take_challenge(&self, key: &Key) -> StoreResult<Option<Challenge>> {
        Ok(lock(&self.challenges).remove(key))
    }

    fn relogin_hit(&self, key: &Key, now_ms: i64) -> StoreResult<Option<ReloginHit>> {
        let mut inner = lock(&self.relogin);
        let Some(e) = inner.map.get_mut(key) else {
            return Ok(None);
        };
        if now_ms - e.last_ms > e.idle_ms || now_ms - e.created_ms > e.max_ms {
            inner.map.remove(key);
            return Ok(None);
        }
        e.last_ms = now_ms;
        Ok(Some(ReloginHit {
            serial: e.serial.clone(),
            created_ms: e.created_ms,
        }))
    }

    fn relogin_put(&self, key: &Key, e: ReloginEntry<'_>) -> StoreResult<()> {
        let mut inner = lock(&self.relogin);
        let now_ms = e.now_ms;
        // Oldest first: drop what has run past its maximum, then make room.
        while let Some((k, seq)) = inner.order.front().copied() {
            let expired = match inner.map.get(&k) {
                Some(old) if old.seq == seq => now_ms - old.created_ms > old.max_ms,
                _ => true,
            };
            let full = inner.map.len() >= self.max_relogin && !inner.map.contains_key(key);
            if !expired && !full {
                break;
            }
            inner.order.pop_front();
            if inner.map.get(&k).is_some_and(|old| old.seq == seq) {
                inner.map.remove(&k);
            }
        }
        inner.seq += 1;
        let seq = inner.seq;
        inner.map.insert(
            *key,
            Relogin {
                serial: e.serial.to_string(),
                created_ms: now_ms,
                last_ms: now_ms,
                idle_ms: e.idle_ms,
                max_ms: e.max_ms,
                seq,
            },
        );
        inner.order.push_back((*key, seq));
        // Places of replaced or forgotten entries pile up in `order`; keep it bounded too.
        if inner.order.len() > 2 * self.max_relogin {
            let Relogins { map, order, .. } = &mut *inner;
            order.retain(|(k, s)| map.get(k).is_some_and(|e| e.seq == *s));
        }
        Ok(())
    }

    fn relogin_forget(&self, key: &Key) -> StoreResult<()> {
        lock(&self.relogin).map.remove(key);
        Ok(())
    }

    fn counters(&self, keys: &[&str]) -> StoreResult<Vec<Option<Counter>>> {
        let m = lock(&self.counters);
        Ok(keys.iter().map(|k| m.get(*k).map(|(c, _)| *c)).collect())
    }

    fn count(&self, key: &str, now: i64, how: Count) -> StoreResult<Counter> {
        let mut m = lock(&self.counters);
        if m.len() >= MAX_COUNTERS && !m.contains_key(key) {
            evict(&mut m, now);
        }
        let old = m.get(key).map(|(c, _)| *c).unwrap_or(Counter {
            since: now,
            ..Counter::default()
        });
        let c = old.bumped(now, how);
        m.insert(key.to_string(), (c, c.expires(how)));
        Ok(c)
    }

    fn forget(&self, key: &str) -> StoreResult<()> {
        lock(&self.counters).remove(key);
        Ok(())
    }
}

fn evict(m: &mut HashMap<String, (Counter, i64)>, now: i64) {
    m.retain(|_, (_, expires)| *expires > now);
    if m.len() >= MAX_COUNTERS {
        // Still full of live counters (a flood of distinct sources): drop the older half.
        // Blocks are a courtesy to the real user, not the only defence: the account's own
        // delay and lock (its row) still hold.
        let mut starts: Vec<i64> = m.values().map(|(c, _)| c.since).collect();
        starts.sort_unstable();
        let cut = starts[starts.len() / 2];
        m.retain(|_, (c, _)| c.since > cut);
    }
}
