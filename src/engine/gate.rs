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
//! the account row's `failures`/`last_failure`/`locked_until` (durable); the familiar one is
//! a counter of the shared state (store/shared/: this process's memory on a single host,
//! the database's UNLOGGED table with several nodes; a restart of it forgives the bucket,
//! which needs a guesser at one of the user's own places).
//!
//! Several nodes count into the same row and counter, each with its own memory here. While
//! attempts are in flight and for `SYNC_MS` after this process last counted a failure, the
//! row a login read may predate that commit: the memory entry and the row are merged (the
//! higher count, the later failure, the longer lock), so neither this node's recent failures
//! nor another node's are lost. After that the row alone counts again (a success or an
//! unlock elsewhere shows). The admin's unlock (`otpd user unlock`, from any process) counts
//! up `unlocks` in the row, and an entry that sees a higher count starts afresh at once.
//! Slots of attempts in flight are per node: n nodes let n times `free_failures` guesses be
//! evaluated at once before the first failure lands (docs/cluster-state.md).

use super::lockout;
use crate::config::LockoutConfig;
use crate::model::Account;
use crate::store::shared::Counter;
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

    /// The familiar bucket as the shared state holds it.
    fn from_counter(c: Option<Counter>) -> Bucket {
        let c = c.unwrap_or_default();
        Bucket {
            failures: c.failures,
            last_failure: c.last,
            locked_until: c.until,
            in_flight: 0,
        }
    }

    /// Takes the durable view (`row`) in: in place of the memory once the entry is quiet
    /// (nothing in flight, no failure of this process counted for `SYNC_MS`); else the two
    /// merged, since each may hold failures the other has not seen yet. Ended locks are
    /// forgotten on both sides first: an old row's ended lock must not wipe newer failures.
    fn sync(&mut self, mut row: Bucket, quiet: bool, now: i64) {
        row.expire(now);
        self.expire(now);
        if quiet && self.in_flight == 0 {
            *self = row;
            return;
        }
        self.failures = self.failures.max(row.failures);
        self.last_failure = self.last_failure.max(row.last_failure);
        self.locked_until = self.locked_until.max(row.locked_until);
    }

    fn dirty(&self) -> bool {
        self.failures > 0 || self.locked_until.is_some()
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
    /// unfamiliar source, or says why the attempt is refused unseen. `familiar_row`: the
    /// familiar bucket as the shared state holds it (read by this login when `familiar`).
    pub fn enter(
        &self,
        account: &Account,
        familiar: bool,
        familiar_row: Option<Counter>,
        now_ms: i64,
        cfg: &LockoutConfig,
    ) -> Result<Pass<'_>, Refusal> {
        let deadline = Instant::now() + MAX_WAIT;
        let ask = SlotRequest {
            account,
            familiar,
            familiar_row,
            now_ms,
            cfg,
        };
        match self.take_slot(ask, None) {
            Err(Refusal::Busy) => {
                // A RADIUS worker lends its receiving while it waits (blocking.rs).
                crate::blocking::section(|| self.take_slot(ask, Some(deadline)))
            }
            done => done,
        }
    }

    /// The slot, or why not. Without a `deadline` an attempt that would have to wait for
    /// attempts in flight is refused as `Busy` at once (the caller then waits as a marked
    /// sleep); with one it waits for them until then.
    fn take_slot(
        &self,
        ask: SlotRequest<'_>,
        deadline: Option<Instant>,
    ) -> Result<Pass<'_>, Refusal> {
        let SlotRequest {
            account,
            familiar,
            familiar_row,
            now_ms,
            cfg,
        } = ask;
        let now = now_ms.div_euclid(1000);
        let shard = self.shard(account.id);
        let mut map = lock(&shard.map);
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
            // This process's own failures can be missing from the row (their commits may not
            // have landed when it was read; `changed_ms` is the latest of them), and other
            // nodes' failures from the memory. A ghost has no row: its memory is all there is.
            if account.id >= 0 {
                let quiet = now_ms.saturating_sub(e.changed_ms) >= SYNC_MS;
                e.unfamiliar.sync(Bucket::from_row(account), quiet, now);
                if familiar {
                    e.familiar
                        .sync(Bucket::from_counter(familiar_row), quiet, now);
                }
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
                        clear_pair: false,
                    });
                }
                Admit::No(r) => return Err(r),
                Admit::WaitForInFlight => {
                    let left = deadline.map_or(Duration::ZERO, |d| {
                        d.saturating_duration_since(Instant::now())
                    });
                    if left.is_zero() {
                        return Err(Refusal::Busy);
                    }
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

/// What [`Gate::enter`] asks for, once without waiting and, if attempts are in flight,
/// again with a deadline.
#[derive(Clone, Copy)]
struct SlotRequest<'a> {
    account: &'a Account,
    familiar: bool,
    familiar_row: Option<Counter>,
    now_ms: i64,
    cfg: &'a LockoutConfig,
}

/// One admitted attempt. Dropped without a verdict (an accept that is not a proof, a PIN
/// alone that earned a challenge, an error), it gives its slot back and counts nothing.
pub struct Pass<'g> {
    gate: &'g Gate,
    account_id: i64,
    familiar: bool,
    done: bool,
    /// The source's counter against this account had failures when the login read it: a
    /// success clears it (a write only then, engine/guessing.rs).
    pub(super) clear_pair: bool,
}

impl Pass<'_> {
    /// Whether the attempt comes from one of the account's familiar sources.
    pub fn familiar(&self) -> bool {
        self.familiar
    }

    /// Counts the attempt as a failure of its bucket, at once: an attempt waiting for this
    /// one sees it. `durable`: the bucket's count after this failure as the row or the shared
    /// counter has it (all nodes' failures), when it was written; it already holds this
    /// failure, and the memory may too (another login may have read the row back and merged
    /// it in before this call), so it is not added to again. Without it (a ghost, a write
    /// that failed) the memory alone counts this one.
    pub fn failed(mut self, now: i64, cfg: &LockoutConfig, durable: Option<u32>) -> Counted {
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
            b.failures = match durable {
                Some(n) => b.failures.max(n),
                None => b.failures.saturating_add(1),
            };
            b.last_failure = Some(now);
            if cfg.max_failures > 0 && b.failures >= cfg.max_failures {
                b.locked_until = Some(now + cfg.lock_duration.as_secs() as i64);
                counted.locked = true;
            }
            counted.failures = b.failures;
        });
        counted
    }

    /// A full login succeeded: both buckets start afresh (the user is here). Returns whether
    /// the familiar bucket held failures or a lock (its shared counter is then cleared too).
    pub fn succeeded(mut self) -> bool {
        self.done = true;
        let mut familiar_dirty = false;
        self.gate.finish(self.account_id, self.familiar, |e| {
            familiar_dirty = e.familiar.dirty();
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
        familiar_dirty
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
#[path = "gate_tests.rs"]
mod tests;
