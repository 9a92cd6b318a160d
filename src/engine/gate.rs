//! The guessing gate: the one place every attempt that will look at a PIN, a code or an app
//! password passes first (one-step, PIN alone, the State round trip, e-mail sending, app
//! passwords, backup codes).
//!
//! An attempt takes its slot before it is evaluated: the account's count of attempts in
//! flight rises under the same lock that reads the failures, so an attempt that starts while
//! others are being evaluated sees them as if they had already failed. However many arrive at
//! once, no more are evaluated than the failures the configuration still allows:
//! `free_failures` at once, then one per delay, then the lock (docs/security.md#brute-force).
//! An attempt that only has to wait for attempts in flight (a mail client opening four
//! connections) waits for them, briefly, instead of being refused.
//!
//! Failures are counted in two buckets per account (Azure AD calls this "smart lockout"):
//! one for sources the account has logged in from before (familiar), one for every other
//! source and for logins without a source. Guessing from elsewhere locks only the unfamiliar
//! bucket, so the real user still gets in from their usual place. The unfamiliar bucket is
//! the account row's `failures`/`last_failure`/`locked_until` (durable); the familiar one
//! lives in memory only (a restart forgives it, which needs a guesser at one of the user's
//! own places).
//!
//! The memory entry is authoritative while attempts are in flight and for `SYNC_MS` after
//! this process last counted a failure, when the row a login read may predate that commit;
//! after that it is taken from the row again. The admin's unlock (`otpd user unlock`, from
//! any process) counts up `unlocks` in the row, and an entry that sees a higher count starts
//! afresh at once.

use super::lockout;
use crate::config::LockoutConfig;
use crate::model::Account;
use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long the memory entry wins over the row a login read.
const SYNC_MS: i64 = 2_000;
/// How long an attempt waits for attempts in flight before it is refused as throttled.
const MAX_WAIT: Duration = Duration::from_millis(250);
/// Accounts with an entry at most: entries exist only while an account has failures, a lock
/// or attempts in flight; beyond it, entries with nothing in flight go first.
const MAX_ENTRIES: usize = 65_536;
const SHARDS: usize = 16;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Bucket {
    failures: u32,
    last_failure: Option<i64>,
    locked_until: Option<i64>,
    in_flight: u32,
}

impl Bucket {
    fn from_row(a: &Account) -> Bucket {
        Bucket {
            failures: a.failures,
            last_failure: a.last_failure,
            locked_until: a.locked_until,
            in_flight: 0,
        }
    }

    /// A lock that has ended is forgotten with the failures that made it: the next guesser
    /// needs the full count again.
    fn expire(&mut self, now: i64) {
        if self.locked_until.is_some_and(|u| u <= now) {
            *self = Bucket {
                in_flight: self.in_flight,
                ..Bucket::default()
            };
        }
    }

    fn pristine(&self) -> bool {
        self.failures == 0 && self.locked_until.is_none() && self.in_flight == 0
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    unfamiliar: Bucket,
    familiar: Bucket,
    /// When this process last counted a failure of the account (ms).
    changed_ms: i64,
    /// The admin's unlocks the entry has seen.
    unlocks: i64,
}

impl Entry {
    fn bucket(&mut self, familiar: bool) -> &mut Bucket {
        if familiar {
            &mut self.familiar
        } else {
            &mut self.unfamiliar
        }
    }
}

/// Why an attempt is refused before it is evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Locked {
        secs: i64,
        familiar: bool,
    },
    Throttled {
        failures: u32,
        secs: i64,
        familiar: bool,
    },
    Busy,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let from = |familiar: bool| {
            if familiar {
                " (familiar sources)"
            } else {
                ""
            }
        };
        match self {
            Refusal::Locked { secs, familiar } => {
                write!(f, "account locked for {secs} s more{}", from(*familiar))
            }
            Refusal::Throttled {
                failures,
                secs,
                familiar,
            } => write!(
                f,
                "throttled after {failures} failures: {secs} s to wait{}",
                from(*familiar)
            ),
            Refusal::Busy => write!(
                f,
                "throttled: other attempts of this account were still being checked"
            ),
        }
    }
}

#[derive(Default)]
struct Shard {
    map: Mutex<HashMap<i64, Entry>>,
    released: Condvar,
}

/// The gate of every account.
pub struct Gate {
    shards: [Shard; SHARDS],
    /// Keys the ghost ids of unknown names; per process, so ids say nothing outside it.
    ghost_key: std::collections::hash_map::RandomState,
}

impl Default for Gate {
    fn default() -> Self {
        Gate::new()
    }
}

/// What a failure did to its bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    pub failures: u32,
    pub locked: bool,
    /// The durable row counts this bucket (the unfamiliar one).
    pub durable: bool,
}

impl Gate {
    pub fn new() -> Gate {
        Gate {
            shards: std::array::from_fn(|_| Shard::default()),
            ghost_key: std::collections::hash_map::RandomState::new(),
        }
    }

    /// A stand-in account for a name that has none, with a negative id no real account has:
    /// its failures live in memory only, so that an unknown name is throttled and locked
    /// like a real one (engine/mod.rs `unknown_user`).
    pub fn ghost(&self, name: &str) -> Account {
        use std::hash::BuildHasher;
        let id = (self.ghost_key.hash_one(name) >> 1) as i64;
        Account {
            id: -1 - id,
            name: String::new(),
            level: String::new(),
            pin_salt: None,
            pin_hash: None,
            has_pin: false,
            failures: 0,
            last_failure: None,
            locked_until: None,
            created_at: 0,
            familiar_sources: Vec::new(),
            unlocks: 0,
        }
    }

    fn shard(&self, account_id: i64) -> &Shard {
        &self.shards[account_id.rem_euclid(SHARDS as i64) as usize]
    }

    /// Takes a slot for one attempt of `account` (as read by this login) from a familiar or
    /// unfamiliar source, or says why the attempt is refused unseen.
    pub fn enter(
        &self,
        account: &Account,
        familiar: bool,
        now_ms: i64,
        cfg: &LockoutConfig,
    ) -> Result<Pass<'_>, Refusal> {
        let now = now_ms.div_euclid(1000);
        let shard = self.shard(account.id);
        let deadline = Instant::now() + MAX_WAIT;
        let mut map = lock(&shard.map);
        let mut sleep = None;
        loop {
            if map.len() >= MAX_ENTRIES && !map.contains_key(&account.id) {
                evict(&mut map, now);
            }
            let e = map.entry(account.id).or_insert_with(|| Entry {
                unfamiliar: Bucket::from_row(account),
                familiar: Bucket::default(),
                changed_ms: i64::MIN,
                unlocks: account.unlocks,
            });
            if account.unlocks > e.unlocks {
                // The admin unlocked it since: start afresh, both buckets.
                e.unlocks = account.unlocks;
                e.changed_ms = i64::MIN;
                e.familiar = Bucket {
                    in_flight: e.familiar.in_flight,
                    ..Bucket::default()
                };
            }
            // Only this process's own failures can be missing from the row (their commits
            // may not have landed when it was read): `changed_ms` is the latest of them.
            // A ghost has no row: its memory is all there is.
            if account.id >= 0
                && e.unfamiliar.in_flight == 0
                && now_ms.saturating_sub(e.changed_ms) >= SYNC_MS
            {
                e.unfamiliar = Bucket::from_row(account);
            }
            let b = e.bucket(familiar);
            b.expire(now);
            match admit(b, now, cfg, familiar) {
                Admit::Yes => {
                    b.in_flight += 1;
                    return Ok(Pass {
                        gate: self,
                        account_id: account.id,
                        familiar,
                        done: false,
                    });
                }
                Admit::No(r) => return Err(r),
                Admit::WaitForInFlight => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(Refusal::Busy);
                    }
                    // A RADIUS worker lends its receiving while it waits (blocking.rs).
                    let _s = sleep.get_or_insert_with(crate::blocking::enter);
                    map = shard
                        .released
                        .wait_timeout(map, left)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|p| p.into_inner().0);
                }
            }
        }
    }

    fn finish(&self, account_id: i64, familiar: bool, f: impl FnOnce(&mut Entry)) {
        let shard = self.shard(account_id);
        let mut map = lock(&shard.map);
        if let Some(e) = map.get_mut(&account_id) {
            let b = e.bucket(familiar);
            b.in_flight = b.in_flight.saturating_sub(1);
            f(e);
            if e.unfamiliar.pristine() && e.familiar.pristine() {
                map.remove(&account_id);
            }
        }
        drop(map);
        shard.released.notify_all();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(&s.map).len()).sum()
    }
}

enum Admit {
    Yes,
    No(Refusal),
    WaitForInFlight,
}

fn admit(b: &Bucket, now: i64, cfg: &LockoutConfig, familiar: bool) -> Admit {
    if let Some(until) = b.locked_until {
        if now < until {
            return Admit::No(Refusal::Locked {
                secs: until - now,
                familiar,
            });
        }
    }
    // Every attempt in flight may still fail: count it as if it had.
    let would_be = b.failures.saturating_add(b.in_flight);
    let lock_at = cfg.max_failures;
    let free = cfg.free_failures.max(1);
    if b.in_flight > 0 && ((lock_at > 0 && would_be >= lock_at) || would_be >= free) {
        // Whether this one may run depends on how those end.
        return Admit::WaitForInFlight;
    }
    let wait = lockout::delay_secs(b.failures, cfg);
    if let Some(last) = b.last_failure {
        if wait > 0 && now < last + wait {
            return Admit::No(Refusal::Throttled {
                failures: b.failures,
                secs: last + wait - now,
                familiar,
            });
        }
    }
    Admit::Yes
}

/// One admitted attempt. Dropped without a verdict (an accept that is not a proof, a PIN
/// alone that earned a challenge, an error), it gives its slot back and counts nothing.
pub struct Pass<'g> {
    gate: &'g Gate,
    account_id: i64,
    familiar: bool,
    done: bool,
}

impl Pass<'_> {
    /// Counts the attempt as a failure of its bucket, at once: an attempt waiting for this
    /// one sees it.
    pub fn failed(mut self, now: i64, cfg: &LockoutConfig) -> Counted {
        self.done = true;
        let familiar = self.familiar;
        let mut counted = Counted {
            failures: 0,
            locked: false,
            durable: !familiar,
        };
        self.gate.finish(self.account_id, familiar, |e| {
            e.changed_ms = now.saturating_mul(1000);
            let b = e.bucket(familiar);
            b.expire(now);
            b.failures = b.failures.saturating_add(1);
            b.last_failure = Some(now);
            if cfg.max_failures > 0 && b.failures >= cfg.max_failures {
                b.locked_until = Some(now + cfg.lock_duration.as_secs() as i64);
                counted.locked = true;
            }
            counted.failures = b.failures;
        });
        counted
    }

    /// A full login succeeded: both buckets start afresh (the user is here).
    pub fn succeeded(mut self) {
        self.done = true;
        self.gate.finish(self.account_id, self.familiar, |e| {
            let (a, b) = (e.unfamiliar.in_flight, e.familiar.in_flight);
            e.unfamiliar = Bucket {
                in_flight: a,
                ..Bucket::default()
            };
            e.familiar = Bucket {
                in_flight: b,
                ..Bucket::default()
            };
        });
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.gate.finish(self.account_id, self.familiar, |_| {});
        }
    }
}

fn evict(map: &mut HashMap<i64, Entry>, now: i64) {
    for e in map.values_mut() {
        e.unfamiliar.expire(now);
        e.familiar.expire(now);
    }
    map.retain(|_, e| !(e.unfamiliar.pristine() && e.familiar.pristine()));
    if map.len() >= MAX_ENTRIES {
        // Still full of accounts with failures: drop those with nothing in flight. The
        // unfamiliar bucket is in the row and comes back from it.
        map.retain(|_, e| e.unfamiliar.in_flight > 0 || e.familiar.in_flight > 0);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Counters only: after a panic elsewhere they are still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// The row after `failed` calls, as the store would hold it.
    fn row(failures: u32, last: i64, locked_until: Option<i64>) -> Account {
        Account {
            failures,
            last_failure: Some(last),
            locked_until,
            ..acct()
        }
    }

    fn acct() -> Account {
        Account {
            id: 7,
            name: "alice".into(),
            level: "everywhere".into(),
            pin_salt: None,
            pin_hash: None,
            has_pin: true,
            failures: 0,
            last_failure: None,
            locked_until: None,
            created_at: 0,
            familiar_sources: Vec::new(),
            unlocks: 0,
        }
    }

    fn cfg() -> LockoutConfig {
        LockoutConfig {
            free_failures: 3,
            delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            max_failures: 6,
            lock_duration: Duration::from_secs(100),
            ..LockoutConfig::default()
        }
    }

    #[test]
    fn parallel_attempts_take_their_slots_before_they_are_evaluated() {
        let g = Arc::new(Gate::new());
        let evaluated = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..64)
            .map(|_| {
                let (g, evaluated) = (g.clone(), evaluated.clone());
                std::thread::spawn(move || {
                    if let Ok(p) = g.enter(&acct(), false, 10_000, &cfg()) {
                        evaluated.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(5));
                        p.failed(10, &cfg());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert_eq!(evaluated.load(Ordering::SeqCst), 3, "free failures only");
    }

    #[test]
    fn attempts_that_only_wait_for_others_get_in_when_those_succeed() {
        let g = Gate::new();
        let c = cfg();
        let held: Vec<_> = (0..3)
            .map(|_| g.enter(&acct(), false, 0, &c).expect("free"))
            .collect();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| g.enter(&acct(), false, 0, &c).map(|p| p.succeeded()));
            std::thread::sleep(Duration::from_millis(20));
            for p in held {
                p.succeeded();
            }
            assert!(waiter.join().expect("join").is_ok());
        });
        assert_eq!(g.len(), 0, "nothing kept for a healthy account");
    }

    #[test]
    fn a_lock_that_ends_needs_the_full_count_again() {
        let g = Gate::new();
        let c = cfg();
        let mut a = acct();
        let mut now = 0;
        for _ in 0..6 {
            now += 100;
            let n = g
                .enter(&a, false, now * 1000, &c)
                .expect("admitted")
                .failed(now, &c);
            a = row(n.failures, now, n.locked.then_some(now + 100));
        }
        assert!(matches!(
            g.enter(&a, false, now * 1000, &c),
            Err(Refusal::Locked { .. })
        ));
        now += 100;
        let n = g
            .enter(&a, false, now * 1000, &c)
            .expect("lock over")
            .failed(now, &c);
        assert_eq!((n.failures, n.locked), (1, false));
    }

    #[test]
    fn familiar_sources_have_their_own_bucket() {
        let g = Gate::new();
        let c = LockoutConfig {
            lock_duration: Duration::from_secs(1000),
            ..cfg()
        };
        let mut a = acct();
        for i in 0..6 {
            let now = i * 100;
            let n = g
                .enter(&a, false, now * 1000, &c)
                .expect("admitted")
                .failed(now, &c);
            a = row(n.failures, now, n.locked.then_some(now + 1000));
        }
        assert!(g.enter(&a, false, 600_000, &c).is_err());
        g.enter(&a, true, 600_000, &c)
            .expect("familiar gets in")
            .succeeded();
        // The user's success forgives the guesses from elsewhere too (and clears the row).
        assert!(g.enter(&acct(), false, 600_000, &c).is_ok());
    }

    #[test]
    fn an_unknown_name_is_throttled_like_an_account() {
        let g = Gate::new();
        let c = LockoutConfig {
            delay: Duration::from_secs(60),
            ..cfg()
        };
        let ghost = g.ghost("mallory");
        assert!(ghost.id < 0);
        assert_eq!(ghost.id, g.ghost("mallory").id);
        assert_ne!(ghost.id, g.ghost("mallorz").id);
        for _ in 0..3 {
            g.enter(&ghost, false, 0, &c).expect("free").failed(0, &c);
        }
        // Its memory is not replaced by a row, however long it is quiet.
        assert!(matches!(
            g.enter(&ghost, false, 30_000, &c),
            Err(Refusal::Throttled { .. })
        ));
    }

    #[test]
    fn the_row_wins_again_once_the_entry_is_quiet() {
        let g = Gate::new();
        let c = LockoutConfig {
            delay: Duration::from_secs(60),
            ..cfg()
        };
        for _ in 0..3 {
            g.enter(&acct(), false, 0, &c).expect("free").failed(0, &c);
        }
        // A row read before those commits (failures 0) does not undo them ...
        assert!(matches!(
            g.enter(&acct(), false, 500, &c),
            Err(Refusal::Throttled { .. })
        ));
        // ... an admin's unlock (from any process) does, at once ...
        let unlocked = Account {
            unlocks: 1,
            ..acct()
        };
        g.enter(&unlocked, false, 600, &c)
            .expect("unlocked")
            .failed(0, &c);
        // ... and after SYNC_MS the row counts again.
        assert!(g.enter(&unlocked, false, 3_000, &c).is_ok());
    }
}
