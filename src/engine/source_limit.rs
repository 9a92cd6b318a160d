//! Limits per source address, in memory, so that guessing from one address cannot lock the
//! real user out and spraying many accounts from one address stops early.
//!
//! Two counters per window:
//! - per (address, account): after `per_source_max_failures` failures the address is blocked
//!   for that account only. It is held below the account's `max_failures`, so one address can
//!   never reach the account lock: the real user, elsewhere, still gets in.
//! - per address over all accounts: after `source_max_failures` the address is blocked for
//!   every account.
//!
//! IPv6 sources count by /64, the smallest block an ISP hands out, so an attacker cannot step
//! through the addresses of their own prefix. A source that is not an IP address (a station
//! id such as a MAC address, RADIUS Calling-Station-Id) is compared as given. Without a known
//! source (a local login, a NAS that names no station) only the account's own limits apply.

use crate::config::LockoutConfig;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Entries kept at most; beyond it, expired ones go first, then the oldest.
const MAX_ENTRIES: usize = 100_000;

/// Longest station id kept as a source; longer ones are cut (front-ends bound them already).
const MAX_SOURCE_LEN: usize = 64;

type Source = String;

/// Who a login comes from, as the limits and the familiar sources count it: an IPv4 address,
/// an IPv6 /64 (`2001:db8:1:2::/64`), or any other station id as given.
pub fn source_key(rhost: Option<&str>) -> Option<String> {
    let r = rhost?.trim();
    if r.is_empty() {
        return None;
    }
    Some(match r.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let net = std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1));
                format!("{net}/64")
            }
        },
        Err(_) => r.chars().take(MAX_SOURCE_LEN).collect(),
    })
}

fn source(rhost: Option<&str>) -> Option<Source> {
    source_key(rhost)
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    window_start: i64,
    blocked_until: i64,
}

impl Entry {
    fn live(&self, now: i64, window: i64) -> bool {
        now < self.blocked_until || now < self.window_start + window
    }
}

#[derive(Default)]
pub struct SourceLimiter {
    by_source: Mutex<HashMap<Source, Entry>>,
    by_pair: Mutex<HashMap<(Source, String), Entry>>,
}

impl SourceLimiter {
    pub fn new() -> SourceLimiter {
        SourceLimiter::default()
    }

    /// Why a login from `rhost` for `user` is refused unseen, if it is.
    pub fn blocked(
        &self,
        rhost: Option<&str>,
        user: &str,
        now: i64,
        cfg: &LockoutConfig,
    ) -> Option<String> {
        let src = source(rhost)?;
        if cfg.source_max_failures > 0 {
            let m = lock(&self.by_source);
            if let Some(e) = m.get(src.as_str()) {
                if now < e.blocked_until {
                    return Some(format!(
                        "source address blocked for {} s after {} failures on any account",
                        e.blocked_until - now,
                        e.failures
                    ));
                }
            }
        }
        if cfg.per_source_limit() > 0 {
            let m = lock(&self.by_pair);
            if let Some(e) = m.get(&(src.clone(), user.to_string())) {
                if now < e.blocked_until {
                    return Some(format!(
                        "source address blocked for this account for {} s after {} failures",
                        e.blocked_until - now,
                        e.failures
                    ));
                }
            }
        }
        None
    }

    /// Counts a failed login from `rhost` for `user`.
    pub fn failed(&self, rhost: Option<&str>, user: &str, now: i64, cfg: &LockoutConfig) {
        let Some(src) = source(rhost) else { return };
        let window = cfg.source_window.as_secs() as i64;
        let block = cfg.source_block.as_secs() as i64;
        if cfg.source_max_failures > 0 {
            let mut m = lock(&self.by_source);
            bump(
                &mut m,
                src.clone(),
                now,
                window,
                block,
                cfg.source_max_failures,
            );
        }
        let per_pair = cfg.per_source_limit();
        if per_pair > 0 {
            let mut m = lock(&self.by_pair);
            bump(
                &mut m,
                (src, user.to_string()),
                now,
                window,
                block,
                per_pair,
            );
        }
    }

    /// A successful login from `rhost` for `user`: that pair starts afresh. The address's
    /// count over all accounts stays: one good login must not launder a spray.
    pub fn succeeded(&self, rhost: Option<&str>, user: &str) {
        let Some(src) = source(rhost) else { return };
        lock(&self.by_pair).remove(&(src, user.to_string()));
    }

    #[cfg(test)]
    fn len(&self) -> (usize, usize) {
        (lock(&self.by_source).len(), lock(&self.by_pair).len())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The maps hold counters only: after a panic elsewhere they are still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn bump<K: std::hash::Hash + Eq + Clone>(
    m: &mut HashMap<K, Entry>,
    key: K,
    now: i64,
    window: i64,
    block: i64,
    max: u32,
) {
    if m.len() >= MAX_ENTRIES && !m.contains_key(&key) {
        evict(m, now, window);
    }
    let e = m.entry(key).or_insert(Entry {
        failures: 0,
        window_start: now,
        blocked_until: 0,
    });
    if now >= e.window_start + window && now >= e.blocked_until {
        *e = Entry {
            failures: 0,
            window_start: now,
            blocked_until: 0,
        };
    }
    e.failures = e.failures.saturating_add(1);
    if e.failures >= max {
        e.blocked_until = now + block;
    }
}

fn evict<K: std::hash::Hash + Eq + Clone>(m: &mut HashMap<K, Entry>, now: i64, window: i64) {
    m.retain(|_, e| e.live(now, window));
    if m.len() >= MAX_ENTRIES {
        // Still full of live entries (a flood of distinct sources): drop the older half.
        // Blocks are a courtesy to the real user, not the only defence: the account's own
        // delay and lock still hold.
        let mut starts: Vec<i64> = m.values().map(|e| e.window_start).collect();
        starts.sort_unstable();
        let cut = starts[starts.len() / 2];
        m.retain(|_, e| e.window_start > cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cfg() -> LockoutConfig {
        LockoutConfig {
            per_source_max_failures: 3,
            source_max_failures: 5,
            source_window: Duration::from_secs(600),
            source_block: Duration::from_secs(900),
            ..LockoutConfig::default()
        }
    }

    #[test]
    fn one_address_is_blocked_for_one_account_only() {
        let l = SourceLimiter::new();
        let c = cfg();
        for _ in 0..3 {
            assert!(l.blocked(Some("192.0.2.7"), "alice", 100, &c).is_none());
            l.failed(Some("192.0.2.7"), "alice", 100, &c);
        }
        assert!(l.blocked(Some("192.0.2.7"), "alice", 101, &c).is_some());
        assert!(l.blocked(Some("192.0.2.8"), "alice", 101, &c).is_none());
        assert!(l.blocked(Some("192.0.2.7"), "bob", 101, &c).is_none());
        assert!(l
            .blocked(Some("192.0.2.7"), "alice", 100 + 900, &c)
            .is_none());
    }

    #[test]
    fn spraying_many_accounts_blocks_the_address() {
        let l = SourceLimiter::new();
        let c = cfg();
        for u in ["a", "b", "c", "d", "e"] {
            l.failed(Some("2001:db8::1"), u, 10, &c);
        }
        // Another address of the same /64 is the same source.
        let why = l.blocked(Some("2001:db8::ffff"), "zed", 11, &c);
        assert!(why.is_some_and(|w| w.contains("any account")));
        assert!(l.blocked(Some("2001:db8:1::1"), "zed", 11, &c).is_none());
    }

    #[test]
    fn window_expires_and_success_clears_the_pair() {
        let l = SourceLimiter::new();
        let c = cfg();
        l.failed(Some("192.0.2.9"), "alice", 0, &c);
        l.failed(Some("192.0.2.9"), "alice", 0, &c);
        l.succeeded(Some("192.0.2.9"), "alice");
        l.failed(Some("192.0.2.9"), "alice", 1, &c);
        l.failed(Some("192.0.2.9"), "alice", 1, &c);
        assert!(l.blocked(Some("192.0.2.9"), "alice", 2, &c).is_none());
        // Two old failures fall out of the window: one more is not a block.
        l.failed(Some("192.0.2.9"), "alice", 700, &c);
        assert!(l.blocked(Some("192.0.2.9"), "alice", 700, &c).is_none());
    }

    #[test]
    fn pair_limit_stays_below_the_account_lock() {
        let mut c = cfg();
        c.per_source_max_failures = 50;
        c.max_failures = 4;
        assert_eq!(c.per_source_limit(), 3);
        c.max_failures = 0;
        assert_eq!(c.per_source_limit(), 50);
        c.max_failures = 1;
        assert_eq!(c.per_source_limit(), 1);
    }

    #[test]
    fn no_source_no_limit_and_station_ids_count_as_given() {
        let l = SourceLimiter::new();
        let c = cfg();
        for _ in 0..10 {
            l.failed(None, "alice", 0, &c);
            l.failed(Some("  "), "alice", 0, &c);
        }
        assert!(l.blocked(None, "alice", 0, &c).is_none());
        assert_eq!(l.len(), (0, 0));
        // A Wi-Fi station's MAC address is a source like an address.
        for _ in 0..3 {
            l.failed(Some("00-11-22-33-44-55"), "alice", 0, &c);
        }
        assert!(l
            .blocked(Some("00-11-22-33-44-55"), "alice", 0, &c)
            .is_some());
        assert!(l
            .blocked(Some("00-11-22-33-44-56"), "alice", 0, &c)
            .is_none());
    }

    #[test]
    fn source_keys() {
        assert_eq!(source_key(Some("192.0.2.1")).as_deref(), Some("192.0.2.1"));
        assert_eq!(
            source_key(Some("::ffff:192.0.2.1")).as_deref(),
            Some("192.0.2.1")
        );
        assert_eq!(
            source_key(Some("2001:db8:1:2:3:4:5:6")).as_deref(),
            Some("2001:db8:1:2::/64")
        );
        assert_eq!(source_key(Some("AA:BB")).as_deref(), Some("AA:BB"));
        assert_eq!(source_key(None), None);
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_sources() {
        let l = SourceLimiter::new();
        let c = cfg();
        for i in 0..(MAX_ENTRIES as u32 + 5_000) {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
            l.failed(Some(&ip), "alice", i64::from(i / 1000), &c);
        }
        let (s, p) = l.len();
        assert!(s <= MAX_ENTRIES && p <= MAX_ENTRIES, "{s} {p}");
    }
}
