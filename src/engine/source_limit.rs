//! Limits per source address, so that guessing from one address cannot lock the real user
//! out and spraying many accounts from one address stops early. The counters are shared
//! state (store/shared/): this process's memory on a single host, the database with several
//! nodes, so failures on every node add up.
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
use crate::model::Account;
use crate::store::shared::{self, Count, Counter, SharedStateStore};
use crate::store::StoreResult;
use std::net::IpAddr;

/// Longest station id kept as a source; longer ones are cut (front-ends bound them already).
const MAX_SOURCE_LEN: usize = 64;

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
        // Control characters dropped: they make no two stations different, and PostgreSQL's
        // TEXT takes no NUL (the counters are shared state, store/shared/).
        Err(_) => r
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_SOURCE_LEN)
            .collect(),
    })
}

/// What a login's one read of the shared counters found.
#[derive(Debug, Default)]
pub(super) struct Seen {
    /// Why the source is refused unseen, if it is.
    pub(super) block: Option<String>,
    /// The source's counter against this account holds failures (a success clears it).
    pub(super) pair_counted: bool,
    /// The account's familiar-source bucket, when asked for.
    pub(super) familiar: Option<Counter>,
}

/// Reads, in one go, the counters a login from `source` for `user` depends on: the source's
/// over all accounts, the source's against this account, and (`familiar_of`) the account's
/// familiar-source bucket.
pub(super) fn look(
    shared: &dyn SharedStateStore,
    source: Option<&str>,
    user: &str,
    familiar_of: Option<&Account>,
    now: i64,
    cfg: &LockoutConfig,
) -> StoreResult<Seen> {
    let Some(src) = source else {
        return Ok(Seen::default());
    };
    let by_source = cfg.source_max_failures > 0;
    let by_pair = cfg.per_source_limit() > 0;
    let mut keys = Vec::with_capacity(3);
    if by_source {
        keys.push(shared::counter_for_source(src));
    }
    if by_pair {
        keys.push(shared::counter_for_pair(src, user));
    }
    if let Some(account) = familiar_of {
        keys.push(shared::counter_for_familiar(account));
    }
    if keys.is_empty() {
        return Ok(Seen::default());
    }
    let names: Vec<&str> = keys.iter().map(String::as_str).collect();
    let mut found = shared.counters(&names)?.into_iter();
    let mut seen = Seen::default();
    if by_source {
        if let Some(c) = found.next().flatten() {
            if let Some(until) = c.until.filter(|u| now < *u) {
                seen.block = Some(format!(
                    "source address blocked for {} s after {} failures on any account",
                    until - now,
                    c.failures
                ));
            }
        }
    }
    if by_pair {
        if let Some(c) = found.next().flatten() {
            seen.pair_counted = c.failures > 0;
            match c.until.filter(|u| now < *u) {
                Some(until) if seen.block.is_none() => {
                    seen.block = Some(format!(
                        "source address blocked for this account for {} s after {} failures",
                        until - now,
                        c.failures
                    ));
                }
                _ => {}
            }
        }
    }
    if familiar_of.is_some() {
        seen.familiar = found.next().flatten();
    }
    Ok(seen)
}

/// Counts a failed login from `source` for `user`. A counter that cannot be written is
/// logged: the login is a Reject already, and the account's own row still counts it.
pub(super) fn failed(
    shared: &dyn SharedStateStore,
    source: Option<&str>,
    user: &str,
    now: i64,
    cfg: &LockoutConfig,
) {
    let Some(src) = source else { return };
    let window = cfg.source_window.as_secs() as i64;
    let block = cfg.source_block.as_secs() as i64;
    let count = |key: String, max: u32| {
        let how = Count::Window { window, block, max };
        if let Err(e) = shared.count(&key, now, how) {
            tracing::warn!("source failure not counted: {e}");
        }
    };
    if cfg.source_max_failures > 0 {
        count(shared::counter_for_source(src), cfg.source_max_failures);
    }
    let per_pair = cfg.per_source_limit();
    if per_pair > 0 {
        count(shared::counter_for_pair(src, user), per_pair);
    }
}

/// A successful login from `source` for `user`: that pair starts afresh. The address's
/// count over all accounts stays: one good login must not launder a spray.
pub(super) fn succeeded(shared: &dyn SharedStateStore, source: Option<&str>, user: &str) {
    let Some(src) = source else { return };
    if let Err(e) = shared.forget(&shared::counter_for_pair(src, user)) {
        tracing::warn!("source counter not cleared: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryShared;
    use std::time::Duration;

    /// The limits on one memory store, asked as a login asks them.
    struct L(MemoryShared);

    impl L {
        fn new() -> L {
            L(MemoryShared::new())
        }

        fn blocked(
            &self,
            rhost: Option<&str>,
            user: &str,
            now: i64,
            c: &LockoutConfig,
        ) -> Option<String> {
            look(&self.0, source_key(rhost).as_deref(), user, None, now, c)
                .expect("look")
                .block
        }

        fn failed(&self, rhost: Option<&str>, user: &str, now: i64, c: &LockoutConfig) {
            failed(&self.0, source_key(rhost).as_deref(), user, now, c)
        }

        fn succeeded(&self, rhost: Option<&str>, user: &str) {
            succeeded(&self.0, source_key(rhost).as_deref(), user)
        }
    }

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
        let l = L::new();
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
        let l = L::new();
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
        let l = L::new();
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
        let l = L::new();
        let c = cfg();
        for _ in 0..10 {
            l.failed(None, "alice", 0, &c);
            l.failed(Some("  "), "alice", 0, &c);
        }
        assert!(l.blocked(None, "alice", 0, &c).is_none());
        assert_eq!(l.0.sizes().2, 0);
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
        assert_eq!(source_key(Some("AA\0:B\nB")).as_deref(), Some("AA:BB"));
        assert_eq!(source_key(None), None);
    }
}
