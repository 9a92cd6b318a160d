//! Webmail re-login cache. Roundcube logs in to IMAP again on every page view with what the
//! user typed, and a one-time code works once: without this cache the second page view fails.
//!
//! After an OTP Accept for a class with `relogin_cache = true`, the same (user, class, source
//! address, password) is accepted again until `relogin_idle` passes without a login or
//! `relogin_max` after the first one. What is held is only a keyed hash of those four (and of
//! the account's PIN hash, so a PIN change ends every entry), under a key made at random when
//! the process starts: memory dumps and swap give nothing to brute-force, and a restart empties
//! the cache. Logins without a source address are never cached: "the same source" is the
//! whole safety argument.

use super::{Attempt, Commit, Decision, Engine, Verdict};
use crate::config::ServiceConfig;
use crate::crypto;
use crate::model::TokenState;
use crate::store::CommitMode;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use zeroize::Zeroizing;

/// Entries held at most; the oldest go first. About 200 bytes each.
pub const MAX_ENTRIES: usize = 65_536;

type Key = [u8; 32];

struct Entry {
    serial: String,
    created_ms: i64,
    last_ms: i64,
    idle_ms: i64,
    max_ms: i64,
    /// Matches the entry's place in `order`; a stale place (entry replaced) is skipped.
    seq: u64,
}

#[derive(Default)]
struct Inner {
    map: HashMap<Key, Entry>,
    /// Keys in order of creation, for evicting the oldest.
    order: VecDeque<(Key, u64)>,
    seq: u64,
}

pub struct ReloginCache {
    /// None when the random generator failed at start: then nothing is cached.
    key: Option<Zeroizing<[u8; 32]>>,
    inner: Mutex<Inner>,
    max_entries: usize,
}

/// A cache hit: the token the first login matched, and how long ago that was.
#[derive(Debug)]
pub struct Hit {
    pub serial: String,
    pub age_s: i64,
}

impl ReloginCache {
    pub fn new(max_entries: usize) -> ReloginCache {
        let mut k = Zeroizing::new([0u8; 32]);
        let key = match crypto::fill_random(k.as_mut()) {
            Ok(()) => Some(k),
            Err(e) => {
                tracing::error!("re-login cache switched off: {e}");
                None
            }
        };
        ReloginCache {
            key,
            inner: Mutex::new(Inner::default()),
            max_entries: max_entries.max(1),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Nothing in here can be left half-updated by a panic in a way that matters for
        // safety: the worst is a stale `order` slot, which is skipped.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The keyed hash naming one (user, class, rhost, PIN hash, password).
    pub fn key_of(
        &self,
        user: &str,
        class: &str,
        rhost: &str,
        pin_hash: &[u8],
        password: &str,
    ) -> Option<Key> {
        let k = self.key.as_ref()?;
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(k.as_ref()).ok()?;
        // Length prefixes: ("ab","c") and ("a","bc") must not collide.
        for part in [
            user.as_bytes(),
            class.as_bytes(),
            rhost.as_bytes(),
            pin_hash,
            password.as_bytes(),
        ] {
            mac.update(&(part.len() as u32).to_be_bytes());
            mac.update(part);
        }
        Some(mac.finalize().into_bytes().into())
    }

    /// A live entry for `key`, refreshed (its idle time starts again). Expired entries are
    /// dropped on the way. The map is looked up by the keyed hash itself: without the
    /// per-process key an attacker cannot aim at an entry, so the lookup's timing tells
    /// nothing.
    pub fn lookup(&self, key: &Key, now_ms: i64) -> Option<Hit> {
        let mut inner = self.inner();
        let e = inner.map.get_mut(key)?;
        if now_ms - e.last_ms > e.idle_ms || now_ms - e.created_ms > e.max_ms {
            inner.map.remove(key);
            return None;
        }
        e.last_ms = now_ms;
        Some(Hit {
            serial: e.serial.clone(),
            age_s: (now_ms - e.created_ms).div_euclid(1000),
        })
    }

    pub fn remember(&self, key: Key, serial: &str, now_ms: i64, svc: &ServiceConfig) {
        let mut inner = self.inner();
        // Oldest first: drop what has run past its maximum, then make room.
        while let Some((k, seq)) = inner.order.front().copied() {
            let expired = match inner.map.get(&k) {
                Some(e) if e.seq == seq => now_ms - e.created_ms > e.max_ms,
                _ => true,
            };
            let full = inner.map.len() >= self.max_entries && !inner.map.contains_key(&key);
            if !expired && !full {
                break;
            }
            inner.order.pop_front();
            if inner.map.get(&k).is_some_and(|e| e.seq == seq) {
                inner.map.remove(&k);
            }
        }
        inner.seq += 1;
        let seq = inner.seq;
        inner.map.insert(
            key,
            Entry {
                serial: serial.to_string(),
                created_ms: now_ms,
                last_ms: now_ms,
                idle_ms: svc.relogin_idle.as_millis() as i64,
                max_ms: svc.relogin_max.as_millis() as i64,
                seq,
            },
        );
        inner.order.push_back((key, seq));
        // Places of replaced or forgotten entries pile up in `order`; keep it bounded too.
        if inner.order.len() > 2 * self.max_entries {
            let Inner { map, order, .. } = &mut *inner;
            order.retain(|(k, s)| map.get(k).is_some_and(|e| e.seq == *s));
        }
    }

    pub fn forget(&self, key: &Key) {
        self.inner().map.remove(key);
    }

    pub fn len(&self) -> usize {
        self.inner().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Engine {
    /// The OTP check with the re-login cache in front of it (for classes that have it on).
    pub(super) fn otp_with_relogin(&self, a: Attempt<'_>, commit: &mut Commit) -> Decision {
        let (class, req) = (a.class, a.req);
        let svc = self.cfg.services.get(class).filter(|s| s.relogin_cache);
        // A challenge answer is not what the user typed at the first login.
        let key = match (svc, req.rhost.as_deref(), &req.state) {
            (Some(_), Some(rhost), None) => self.relogin.key_of(
                &a.user,
                class,
                rhost,
                a.account.pin_hash.as_deref().unwrap_or_default(),
                &req.password,
            ),
            _ => None,
        };
        let (Some(svc), Some(key)) = (svc, key) else {
            return self.check_otp_two_step(a, commit);
        };
        // An Accept here goes into the cache before the answer leaves: it must be final, so
        // this login waits for its commit (no deferred answer, engine/mod.rs).
        let commit = &mut Commit::new(CommitMode::Wait);
        let now_ms = self.clock.now_ms();
        if let Some(hit) = self.relogin.lookup(&key, now_ms) {
            // The token that made the first login must still be there and active: disabling
            // or deleting it ends its cached logins too. (`tokens` are this account's, read
            // for this login.)
            match a.tokens.iter().find(|t| t.serial == hit.serial) {
                Some(t) if t.state == TokenState::Active => {
                    crate::metrics::get().relogin_hit();
                    let mut d = Decision::accept(a.user, hit.serial);
                    d.reason = format!("re-login cache (first login {} s ago)", hit.age_s);
                    return d;
                }
                _ => self.relogin.forget(&key),
            }
        }
        let d = self.check_otp_two_step(a, commit);
        if d.verdict == Verdict::Accept {
            if let Some(serial) = &d.serial {
                self.relogin.remember(key, serial, now_ms, svc);
            }
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn svc(idle: u64, max: u64) -> ServiceConfig {
        ServiceConfig {
            relogin_cache: true,
            relogin_idle: Duration::from_secs(idle),
            relogin_max: Duration::from_secs(max),
            ..ServiceConfig::default()
        }
    }

    fn key(c: &ReloginCache, user: &str, class: &str, rhost: &str, pw: &str) -> Key {
        c.key_of(user, class, rhost, b"pinhash", pw).expect("key")
    }

    #[test]
    fn every_part_of_the_key_matters() {
        let c = ReloginCache::new(10);
        let base = key(&c, "alice", "web", "192.0.2.10", "1234287082");
        assert_eq!(base, key(&c, "alice", "web", "192.0.2.10", "1234287082"));
        assert_ne!(base, key(&c, "bob", "web", "192.0.2.10", "1234287082"));
        assert_ne!(base, key(&c, "alice", "mail", "192.0.2.10", "1234287082"));
        assert_ne!(base, key(&c, "alice", "web", "192.0.2.11", "1234287082"));
        assert_ne!(base, key(&c, "alice", "web", "192.0.2.10", "1234287083"));
        assert_ne!(
            base,
            c.key_of("alice", "web", "192.0.2.10", b"other", "1234287082")
                .expect("key")
        );
        // Length prefixes keep shifted boundaries apart.
        assert_ne!(key(&c, "ab", "c", "x", "p"), key(&c, "a", "bc", "x", "p"));
        // Another process (another random key) names the same login differently.
        let other = ReloginCache::new(10);
        assert_ne!(
            base,
            key(&other, "alice", "web", "192.0.2.10", "1234287082")
        );
    }

    #[test]
    fn idle_and_max_end_an_entry() {
        let c = ReloginCache::new(10);
        let s = svc(60, 300);
        let k = key(&c, "alice", "web", "192.0.2.10", "pw");
        c.remember(k, "TOTP1", 0, &s);
        assert_eq!(c.lookup(&k, 59_000).expect("within idle").serial, "TOTP1");
        // Each hit restarts the idle time...
        assert!(c.lookup(&k, 118_000).is_some());
        assert!(c.lookup(&k, 177_000).is_some());
        assert!(c.lookup(&k, 236_000).is_some());
        assert!(c.lookup(&k, 295_000).is_some());
        // ...but not the maximum.
        assert!(c.lookup(&k, 301_000).is_none());
        assert!(c.is_empty(), "expired entry is dropped");

        c.remember(k, "TOTP1", 0, &s);
        assert!(c.lookup(&k, 61_000).is_none(), "idle ran out");
    }

    #[test]
    fn size_is_bounded_and_the_oldest_go_first() {
        let c = ReloginCache::new(3);
        let s = svc(600, 3600);
        let keys: Vec<Key> = (0..5)
            .map(|i| key(&c, &format!("u{i}"), "web", "192.0.2.10", "pw"))
            .collect();
        for (i, k) in keys.iter().enumerate() {
            c.remember(*k, "T", i as i64, &s);
        }
        assert_eq!(c.len(), 3);
        assert!(c.lookup(&keys[0], 10).is_none());
        assert!(c.lookup(&keys[1], 10).is_none());
        assert!(c.lookup(&keys[4], 10).is_some());
        // Re-remembering one key many times does not grow `order` without bound.
        for t in 0..100 {
            c.remember(keys[4], "T", 20 + t, &s);
        }
        assert!(c.inner().order.len() <= 6);
        assert_eq!(c.len(), 3);
    }
}
