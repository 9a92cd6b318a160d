//! Accounts and their tokens kept in memory, so that a login need not read them from the
//! database: on PostgreSQL a round trip and the server's work for every login, the largest
//! part of a login's cost there; on SQLite about a quarter of the daemon's CPU at high load.
//!
//! The cache is only as good as what tells it about changes. Its owner's change feed
//! (`store/postgres/feed.rs`: NOTIFY; `store/sqlite/feed.rs`: a table that triggers fill)
//! evicts an account whenever any writer changed it (whoever made the change: another node,
//! the CLI, the management API, an admin's own SQL), and a login that finds its account held
//! passes the feed's barrier first: everything announced before the login began has been
//! applied. A hit is therefore never older than a read made when the login began. A login
//! whose account is not held reads the database without the barrier ([`AccountCache::get_or_read`]).
//!
//! Two races are closed here rather than by the feed:
//! - a read that began before a change and is stored after the change was announced would
//!   bring the old data back: every eviction stamps the account's slot with a new epoch, and
//!   a read is stored only if no stamp on its slot (and no clear) is newer than the epoch
//!   taken before the read began;
//! - while the feed is down (its connection lost) nothing is served or stored: announcements
//!   may have been missed, so everything is forgotten and logins read from the database.
//!
//! The counter of a token this process advanced is written through ([`AccountCache::advanced`])
//! rather than evicted: the next login of the same user then needs no read. A counter lower
//! than the database's (another node's advance whose announcement is on its way) is safe: the
//! advance is conditional (`last_counter < new`) and a code already used loses there.

use crate::store::sqlite::commit::{Answer, Op};
use crate::store::{Found, StoreResult};
use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Slots of eviction stamps: accounts share a slot by id modulo this; a shared slot only
/// means a read is not stored now and then.
const SLOTS: usize = 4096;

pub struct AccountCache {
    capacity: usize,
    inner: Mutex<Inner>,
    /// Bumped by every eviction and clear.
    epoch: AtomicU64,
    /// Per slot: the epoch of the latest eviction of an account in it.
    stamps: Box<[AtomicU64]>,
    /// The epoch of the latest clear: reads older than it are not stored.
    cleared: AtomicU64,
    on: AtomicBool,
}

#[derive(Default)]
struct Inner {
    /// Behind a pointer: the table holds one per slot, not the rows (about 200 bytes), and
    /// has twice as many slots as entries. Shared with the logins that use them: a hit
    /// copies nothing, and a write-through copies only a row a login holds at that moment.
    by_name: HashMap<String, Found>,
    name_of: HashMap<i64, String>,
    account_of_token: HashMap<i64, i64>,
    /// Account ids in the order they were stored, the oldest evicted first when full; ids
    /// evicted meanwhile are skipped.
    order: VecDeque<i64>,
}

impl Inner {
    fn forget(&mut self, id: i64) {
        if let Some(name) = self.name_of.remove(&id) {
            if let Some(entry) = self.by_name.remove(&name) {
                for t in &entry.1 {
                    self.account_of_token.remove(&t.id);
                }
            }
        }
    }
}

thread_local! {
    /// The cache (by address; 0: none) whose barrier this thread passed after every login it
    /// is running now had arrived ([`AccountCache::for_received`]).
    static PASSED: Cell<usize> = const { Cell::new(0) };
}

/// Taken before a read from the database: whether the read may be stored afterwards.
#[derive(Debug, Clone, Copy)]
pub struct ReadStamp(u64);

impl AccountCache {
    /// A cache of at most `capacity` accounts; it serves nothing until [`AccountCache::start`].
    pub fn new(capacity: usize) -> AccountCache {
        AccountCache {
            capacity,
            inner: Mutex::new(Inner::default()),
            epoch: AtomicU64::new(1),
            stamps: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            cleared: AtomicU64::new(0),
            on: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn slot(id: i64) -> usize {
        (id.unsigned_abs() % SLOTS as u64) as usize
    }

    /// Serving from now on: the feed listens, and everything changed from now on reaches
    /// [`AccountCache::evict_account`].
    pub fn start(&self) {
        self.clear();
        self.on.store(true, Ordering::SeqCst);
    }

    /// Stops serving and forgets everything (the feed lost its connection).
    pub fn stop(&self) {
        self.on.store(false, Ordering::SeqCst);
        self.clear();
    }

    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::SeqCst)
    }

    /// Forgets everything; reads begun before this are not stored.
    pub fn clear(&self) {
        let e = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        self.cleared.store(e, Ordering::SeqCst);
        *self.lock() = Inner::default();
    }

    /// What a hit gives: the account and its tokens as last read or written through.
    pub fn get(&self, name: &str) -> Option<Found> {
        if !self.is_on() {
            return None;
        }
        self.lock().by_name.get(name).cloned()
    }

    fn holds(&self, name: &str) -> bool {
        self.lock().by_name.contains_key(name)
    }

    /// To be taken before reading `name` from the database.
    pub fn stamp(&self) -> ReadStamp {
        ReadStamp(self.epoch.load(Ordering::SeqCst))
    }

    /// Keeps what a read begun at `stamp` found, unless the account (or everything) was
    /// evicted since: then the read may be older than the database and is not kept.
    pub fn put(&self, stamp: ReadStamp, found: &Found) {
        if !self.is_on() || self.capacity == 0 {
            return;
        }
        let (account, tokens) = &**found;
        let mut g = self.lock();
        // Checked under the lock that evictions take too: an eviction is either seen here
        // or comes after the insert and removes it.
        if self.cleared.load(Ordering::SeqCst) > stamp.0
            || self.stamps[Self::slot(account.id)].load(Ordering::SeqCst) > stamp.0
        {
            return;
        }
        if !g.by_name.contains_key(&account.name) {
            // Full: the oldest stored goes, not the whole cache: starting over freed and
            // refilled thousands of entries at once, and the allocator kept the peak of both
            // (75.7 MiB with 100,000 accounts cycling through 16,384, 22:16 run).
            while g.by_name.len() >= self.capacity {
                let Some(id) = g.order.pop_front() else {
                    break;
                };
                g.forget(id);
            }
            g.order.push_back(account.id);
            if g.order.len() > 2 * self.capacity.max(16) {
                // Ids of accounts evicted by a change pile up: keep those still held.
                let Inner { order, name_of, .. } = &mut *g;
                order.retain(|id| name_of.contains_key(id));
            }
        }
        if let Some(old) = g.name_of.insert(account.id, account.name.clone()) {
            if old != account.name {
                g.by_name.remove(&old);
            }
        }
        for t in tokens {
            g.account_of_token.insert(t.id, account.id);
        }
        // A copy, not the rows as read: those sit among the read's short-lived allocations
        // and leave holes when they go, and their token vector has room for four. Storing the
        // rows as read raised the peak RSS with 100,000 accounts from 59 to 70 MiB
        // (docs/performance.md); a copy per miss costs little beside the read.
        g.by_name.insert(
            account.name.clone(),
            Arc::new((account.clone(), tokens.to_vec())),
        );
    }

    /// Forgets one account: something of it or its tokens changed.
    pub fn evict_account(&self, id: i64) {
        let mut g = self.lock();
        let e = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        self.stamps[Self::slot(id)].store(e, Ordering::SeqCst);
        g.forget(id);
    }

    /// The account of a token this cache holds.
    pub fn account_of_token(&self, token_id: i64) -> Option<i64> {
        self.lock().account_of_token.get(&token_id).copied()
    }

    /// This process advanced a token's counter and the advance is committed: the cached
    /// token follows (never backwards).
    pub fn advanced(&self, token_id: i64, counter: i64, drift: i64, now: i64) {
        let mut g = self.lock();
        let Inner {
            by_name,
            name_of,
            account_of_token,
            ..
        } = &mut *g;
        let Some(name) = account_of_token
            .get(&token_id)
            .and_then(|id| name_of.get(id))
        else {
            return;
        };
        let Some(entry) = by_name.get_mut(name) else {
            return;
        };
        let Some(i) = entry
            .1
            .iter()
            .position(|t| t.id == token_id && counter > t.last_counter)
        else {
            return;
        };
        // A login still holding the old rows keeps them; the cache takes a copy then.
        if let Some(t) = Arc::make_mut(entry).1.get_mut(i) {
            t.last_counter = counter;
            t.drift = drift;
            t.last_used_at = Some(now);
        }
    }

    /// What a login reads: from the cache when the account is held and `barrier` (the
    /// owner's change feed applies everything committed before the login began) succeeds,
    /// else from `read`, whose find is kept unless a change overtook it.
    ///
    /// A name not held goes to the database without the barrier: a read sees every commit
    /// made before it, and one made after it evicts the account's slot, so the find is then
    /// not kept (or is removed) whether or not the feed was current. So unknown names, and
    /// an account whose failures keep evicting it, pay no feed read (a flood of them made
    /// every login wait for one).
    pub fn get_or_read(
        &self,
        name: &str,
        barrier: impl FnOnce() -> bool,
        read: impl FnOnce() -> StoreResult<Option<Found>>,
    ) -> StoreResult<Option<Found>> {
        if !self.is_on() {
            return read();
        }
        let m = crate::metrics::get();
        if self.holds(name) {
            if !self.passed() && !barrier() {
                return read();
            }
            // The barrier may have evicted it.
            if let Some(hit) = self.get(name) {
                m.account_cache(true);
                return Ok(Some(hit));
            }
        }
        m.account_cache(false);
        let stamp = self.stamp();
        let found = read()?;
        if let Some(f) = &found {
            self.put(stamp, f);
        }
        Ok(found)
    }

    /// Runs `run`, which decides logins that had all arrived before this call, after one
    /// pass of `barrier` for all of them instead of one each: a front-end that has received
    /// several requests at once pays the feed's read or round trip once (on PostgreSQL,
    /// waiting for it per login was over half of the receiving threads' CPU at window 128).
    /// A barrier that fails leaves each login to its own.
    pub fn for_received(&self, barrier: impl FnOnce() -> bool, run: &mut dyn FnMut()) {
        if !self.is_on() || !barrier() {
            return run();
        }
        struct Restore(usize);
        impl Drop for Restore {
            fn drop(&mut self) {
                PASSED.set(self.0);
            }
        }
        let _restore = Restore(PASSED.replace(self.id()));
        run()
    }

    fn id(&self) -> usize {
        self as *const AccountCache as usize
    }

    /// Whether the running login is inside [`AccountCache::for_received`] of this cache.
    fn passed(&self) -> bool {
        PASSED.get() == self.id()
    }

    /// Accounts held now (for the metrics and tests).
    pub fn len(&self) -> usize {
        self.lock().by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The counters a committed batch advanced, into this process's cache. An activation changes
/// the token's state: the database announces that, and the account is read again instead.
pub(in crate::store) fn write_through<'a>(
    cache: &AccountCache,
    ops: impl Iterator<Item = &'a Op>,
    answers: &[StoreResult<Answer>],
) {
    for (op, a) in ops.zip(answers) {
        if let (
            Op::Advance {
                token_id,
                counter,
                drift,
                now,
                activate: false,
            },
            Ok(Answer::Advanced(true)),
        ) = (op, a)
        {
            cache.advanced(*token_id, *counter, *drift, *now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Account, Algorithm, Token, TokenKind, TokenState};

    fn account(id: i64, name: &str) -> Account {
        Account {
            id,
            name: name.into(),
            level: "otp".into(),
            pin_salt: None,
            pin_hash: None,
            has_pin: false,
            failures: 0,
            last_failure: None,
            locked_until: None,
            created_at: 0,
            familiar_sources: vec![],
            unlocks: 0,
        }
    }

    fn found(a: Account, t: Vec<Token>) -> Found {
        Arc::new((a, t))
    }

    /// The rows a login was handed stay as they were when the cache writes an advance
    /// through: the cache copies them rather than change what a login is deciding on.
    #[test]
    fn a_write_through_leaves_the_rows_a_login_holds_alone() {
        let c = started(10);
        c.put(c.stamp(), &found(account(1, "a"), vec![token(7, 1)]));
        let held = c.get("a").expect("cached");
        c.advanced(7, 9, 0, 100);
        assert_eq!(held.1[0].last_counter, 5, "the login's rows are unchanged");
        assert_eq!(c.get("a").expect("cached").1[0].last_counter, 9);
    }

    fn token(id: i64, account_id: i64) -> Token {
        Token {
            id,
            serial: format!("T{id}"),
            user: String::new(),
            account_id,
            kind: TokenKind::Hotp,
            state: TokenState::Active,
            algorithm: Algorithm::Sha1,
            digits: 6,
            period: 0,
            sealed_secret: vec![],
            last_counter: 5,
            drift: 0,
            label: String::new(),
            created_at: 0,
            last_used_at: None,
            public_id: None,
            address: None,
            opened: Default::default(),
        }
    }

    fn started(cap: usize) -> AccountCache {
        let c = AccountCache::new(cap);
        c.start();
        c
    }

    #[test]
    fn serves_nothing_until_started_and_after_stopped() {
        let c = AccountCache::new(10);
        let s = c.stamp();
        c.put(s, &found(account(1, "a"), vec![token(1, 1)]));
        assert!(c.get("a").is_none());
        c.start();
        let s = c.stamp();
        c.put(s, &found(account(1, "a"), vec![token(1, 1)]));
        assert!(c.get("a").is_some());
        c.stop();
        assert!(c.get("a").is_none());
        c.start();
        assert!(c.get("a").is_none(), "a restart begins empty");
    }

    #[test]
    fn a_read_overtaken_by_an_eviction_is_not_kept() {
        let c = started(10);
        let s = c.stamp();
        // The change is announced while the read is on its way.
        c.evict_account(1);
        c.put(s, &found(account(1, "a"), vec![token(1, 1)]));
        assert!(c.get("a").is_none());
        // Another account in another slot is not affected.
        c.put(s, &found(account(2, "b"), vec![token(2, 2)]));
        assert!(c.get("b").is_some());
        // A read begun after the eviction is kept.
        let s = c.stamp();
        c.put(s, &found(account(1, "a"), vec![token(1, 1)]));
        assert!(c.get("a").is_some());
    }

    #[test]
    fn a_read_begun_before_a_clear_is_not_kept() {
        let c = started(10);
        let s = c.stamp();
        c.clear();
        c.put(s, &found(account(1, "a"), vec![token(1, 1)]));
        assert!(c.get("a").is_none());
    }

    #[test]
    fn eviction_forgets_the_account_and_its_tokens() {
        let c = started(10);
        c.put(c.stamp(), &found(account(1, "a"), vec![token(7, 1)]));
        c.evict_account(1);
        assert!(c.get("a").is_none());
        // A later advance of its token finds nothing to write through.
        c.advanced(7, 9, 0, 1);
        assert!(c.get("a").is_none());
    }

    #[test]
    fn advances_are_written_through_and_never_go_back() {
        let c = started(10);
        c.put(
            c.stamp(),
            &found(account(1, "a"), vec![token(7, 1), token(8, 1)]),
        );
        c.advanced(7, 9, 1, 100);
        let hit = c.get("a").expect("cached");
        let t = &hit.1;
        assert_eq!(
            (t[0].last_counter, t[0].drift, t[0].last_used_at),
            (9, 1, Some(100))
        );
        assert_eq!(t[1].last_counter, 5);
        c.advanced(7, 8, 0, 200);
        let hit = c.get("a").expect("cached");
        let t = &hit.1;
        assert_eq!(t[0].last_counter, 9);
    }

    #[test]
    fn full_evicts_the_oldest_and_stays_bounded() {
        let c = started(3);
        for i in 0..10 {
            c.put(
                c.stamp(),
                &found(account(i, &format!("u{i}")), vec![token(100 + i, i)]),
            );
            assert!(c.len() <= 3);
        }
        for i in 0..7 {
            assert!(c.get(&format!("u{i}")).is_none(), "u{i}");
            assert_eq!(c.account_of_token(100 + i), None);
        }
        for i in 7..10 {
            assert!(c.get(&format!("u{i}")).is_some(), "u{i}");
        }
        // Accounts evicted by changes leave their ids in the order; it stays bounded.
        for i in 10..1000 {
            c.put(
                c.stamp(),
                &found(account(i, &format!("u{i}")), vec![token(100 + i, i)]),
            );
            c.evict_account(i);
        }
        assert!(c.lock().order.len() <= 2 * 16 + 1);
        assert!(
            c.get("u9").is_some(),
            "an account stored before is still held"
        );
    }

    #[test]
    fn capacity_zero_keeps_nothing() {
        let c = started(0);
        c.put(c.stamp(), &found(account(1, "a"), vec![token(1, 1)]));
        assert!(c.is_empty());
    }

    /// Logins run inside `for_received` use the one barrier passed for all of them; before
    /// and after it, and for another cache, each login passes its own; a failed barrier
    /// leaves each login to its own too.
    #[test]
    fn a_group_passes_one_barrier_and_only_its_own_cache_counts_it() {
        use std::cell::Cell;
        let (c, other) = (started(10), started(10));
        for cache in [&c, &other] {
            cache.put(cache.stamp(), &found(account(1, "a"), vec![token(1, 1)]));
        }
        let barriers = Cell::new(0);
        let hit = |cache: &AccountCache| {
            let r = cache.get_or_read(
                "a",
                || {
                    barriers.set(barriers.get() + 1);
                    true
                },
                || panic!("held: no read"),
            );
            assert!(r.expect("hit").is_some());
        };
        hit(&c);
        assert_eq!(barriers.get(), 1, "alone: its own barrier");
        let group = Cell::new(0);
        c.for_received(
            || {
                group.set(group.get() + 1);
                true
            },
            &mut || {
                for _ in 0..5 {
                    hit(&c);
                }
                hit(&other);
            },
        );
        assert_eq!(group.get(), 1, "one barrier for the group");
        assert_eq!(
            barriers.get(),
            2,
            "only the other cache's login passed its own"
        );
        hit(&c);
        assert_eq!(barriers.get(), 3, "after the group: its own again");
        c.for_received(|| false, &mut || hit(&c));
        assert_eq!(barriers.get(), 4, "a failed group barrier: its own");
    }
}
