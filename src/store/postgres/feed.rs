//! The change feed that keeps this node's account cache (`store/cache.rs`) true to the
//! database: a session of its own that LISTENs on `otpd_cache`, and the barrier every login
//! passes before it may use the cache.
//!
//! Who announces (schema step 4, `schema.rs`): triggers on `accounts` and `tokens` announce
//! `a ID` for every change of an account or its tokens, whoever makes it, except a counter's
//! advance by otpd's writers; the writers announce those themselves, once per batch, as
//! `c ORIGIN ID,ID,...` (batch.rs), so that a node can tell its own advances (already written
//! through) from another node's. `*` (a TRUNCATE) forgets everything.
//!
//! The barrier: PostgreSQL hands a listening session every notification committed before the
//! session's next query is answered, ahead of that answer. A login therefore waits until
//! one empty query sent after it arrived has come back on the listening session and the
//! notifications that came before it have been applied. One round trip serves every login
//! that arrived before it was sent, as one commit serves a batch; the first login that finds
//! no round on its way sends the next one from its own thread.
//!
//! Lost connection: the cache stops serving and forgets everything (announcements may have
//! been missed) until the session is back and listening; logins read from the database
//! meanwhile. A barrier that takes longer than the statement timeout lets its logins read
//! from the database too.

use super::connect::PgSettings;
use crate::store::cache::AccountCache;
use postgres::fallible_iterator::FallibleIterator;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The channel the triggers and writers announce on.
pub(super) const CHANNEL: &str = "otpd_cache";

/// How long the feed sleeps without a login waiting before it reads what was announced
/// anyway (so that announcements do not pile up on its connection while logins are few).
const IDLE_ROUND: Duration = Duration::from_secs(1);
/// Between attempts to reconnect.
const RECONNECT: Duration = Duration::from_millis(500);

pub(super) struct Feed {
    cache: Arc<AccountCache>,
    /// This process's name in the writers' announcements.
    origin: String,
    /// The listening session; `None` while it is being (re)made.
    session: Mutex<Option<postgres::Client>>,
    rounds: Mutex<Rounds>,
    changed: Condvar,
    timeout: Duration,
}

#[derive(Default)]
struct Rounds {
    /// The next round to be sent; a login arriving now needs it.
    next: u64,
    /// The latest round whose answer and notifications were applied.
    done: u64,
    /// A round is on its way (some login's thread runs it).
    running: bool,
    /// Listening now.
    up: bool,
    /// When the latest round ended (the idle rounds go by it).
    last: Option<Instant>,
}

impl Feed {
    /// Starts the feed's thread, which (re)connects and reads the announcements when no login
    /// does; the cache serves once the feed listens.
    pub(super) fn start(
        settings: PgSettings,
        cache: Arc<AccountCache>,
        origin: String,
    ) -> std::io::Result<Arc<Feed>> {
        let feed = Arc::new(Feed {
            cache,
            origin,
            session: Mutex::new(None),
            rounds: Mutex::new(Rounds {
                next: 1,
                ..Rounds::default()
            }),
            changed: Condvar::new(),
            timeout: settings.statement_timeout,
        });
        let f = feed.clone();
        std::thread::Builder::new()
            .name("otpd-pg-feed".into())
            .spawn(move || f.run(&settings))?;
        Ok(feed)
    }

    fn lock(&self) -> MutexGuard<'_, Rounds> {
        self.rounds.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'a>(&self, r: MutexGuard<'a, Rounds>, d: Duration) -> MutexGuard<'a, Rounds> {
        match self.changed.wait_timeout(r, d) {
            Ok((g, _)) => g,
            Err(p) => p.into_inner().0,
        }
    }

    /// Waits until everything announced before now has reached the cache. `false`: the feed
    /// is down or late; the caller reads from the database.
    ///
    /// The first login to find no round on its way runs the next one itself, on its own
    /// thread, and the others wait for it: a round then costs no hand-over to another thread
    /// and back, only the round trip.
    pub(super) fn barrier(&self) -> bool {
        let deadline = Instant::now() + self.timeout;
        let mut r = self.lock();
        let mine = r.next;
        crate::blocking::section(move || loop {
            if !r.up {
                return false;
            }
            if r.done >= mine {
                return true;
            }
            if !r.running {
                r = self.lead(r);
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            r = self.wait(r, deadline - now);
        })
    }

    /// Runs the next round; every round a login waits for is this one or an earlier one.
    fn lead<'a>(&'a self, mut r: MutexGuard<'a, Rounds>) -> MutexGuard<'a, Rounds> {
        let round = r.next;
        r.next += 1;
        r.running = true;
        drop(r);
        let result = self.round();
        let mut r = self.lock();
        r.running = false;
        r.last = Some(Instant::now());
        match result {
            Ok(()) => r.done = round,
            Err(e) => {
                if r.up {
                    r.up = false;
                    self.cache.stop();
                    tracing::warn!(
                        "PostgreSQL: the account cache's change feed ended ({e}); logins read \
                         from the database until it is back"
                    );
                }
            }
        }
        self.changed.notify_all();
        r
    }

    /// One empty query on the listening session and the notifications that came before its
    /// answer, applied. An error drops the session: the feed's thread makes a new one. Empty
    /// rather than `SELECT 1`: the server answers it without parsing, planning or running a
    /// statement, and delivers the notifications before any answer all the same (they are
    /// sent when the session is about to report ready for the next query).
    fn round(&self) -> Result<(), String> {
        let mut s = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let Some(client) = s.as_mut() else {
            return Err("no session".into());
        };
        let result = (|| {
            client.batch_execute("").map_err(|e| e.to_string())?;
            let mut notes = client.notifications();
            let mut it = notes.iter();
            while let Some(n) = it.next().map_err(|e| e.to_string())? {
                self.apply(n.payload());
            }
            Ok(())
        })();
        if result.is_err() {
            *s = None;
        }
        result
    }

    /// Connects and listens whenever the session is gone, and runs a round when no login has
    /// for a while (so that announcements do not pile up on the session while logins are few).
    fn run(&self, settings: &PgSettings) {
        loop {
            let r = self.lock();
            if !r.up {
                drop(r);
                match self.listen(settings) {
                    Ok(client) => {
                        *self.session.lock().unwrap_or_else(|p| p.into_inner()) = Some(client);
                        let mut r = self.lock();
                        r.up = true;
                        // Forgets all: what was announced while nobody listened is lost.
                        self.cache.start();
                        self.changed.notify_all();
                    }
                    Err(e) => {
                        tracing::warn!(
                            "PostgreSQL: the account cache's change feed cannot listen ({e}); \
                             logins read from the database meanwhile"
                        );
                        std::thread::sleep(RECONNECT);
                    }
                }
                continue;
            }
            let idle = !r.running && r.last.is_none_or(|t| t.elapsed() >= IDLE_ROUND);
            if idle {
                drop(self.lead(r));
                continue;
            }
            drop(self.wait(r, IDLE_ROUND));
        }
    }

    fn listen(&self, settings: &PgSettings) -> Result<postgres::Client, String> {
        // Named apart from the node's other sessions, so that an admin (and the tests) can
        // tell it in pg_stat_activity: its empty rounds show no query of their own.
        let mut settings = settings.clone();
        let name = format!(
            "{} feed",
            settings.config.get_application_name().unwrap_or("otpd")
        );
        settings.config.application_name(name);
        let (mut client, _) = settings.connect_sync().map_err(|e| e.to_string())?;
        client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .map_err(|e| e.to_string())?;
        Ok(client)
    }

    fn apply(&self, payload: &str) {
        match Announcement::parse(payload) {
            Some(Announcement::Account(id)) => self.cache.evict_account(id),
            Some(Announcement::Counters { origin, accounts }) => {
                if origin != self.origin {
                    for id in accounts {
                        self.cache.evict_account(id);
                    }
                }
            }
            Some(Announcement::All) => self.cache.clear(),
            None => {
                tracing::warn!("PostgreSQL: an announcement on {CHANNEL} not understood; the account cache starts over");
                self.cache.clear();
            }
        }
    }
}

/// What the triggers and the writers announce.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Announcement<'a> {
    Account(i64),
    Counters { origin: &'a str, accounts: Vec<i64> },
    All,
}

impl<'a> Announcement<'a> {
    pub(super) fn parse(s: &'a str) -> Option<Announcement<'a>> {
        if s == "*" {
            return Some(Announcement::All);
        }
        if let Some(id) = s.strip_prefix("a ") {
            return id.parse().ok().map(Announcement::Account);
        }
        let rest = s.strip_prefix("c ")?;
        let (origin, ids) = rest.split_once(' ')?;
        let accounts = ids
            .split(',')
            .map(str::parse)
            .collect::<Result<Vec<i64>, _>>()
            .ok()?;
        Some(Announcement::Counters { origin, accounts })
    }
}

#[cfg(test)]
mod tests {
    use super::Announcement;

    #[test]
    fn announcements_parse() {
        assert_eq!(Announcement::parse("*"), Some(Announcement::All));
        assert_eq!(Announcement::parse("a 42"), Some(Announcement::Account(42)));
        assert_eq!(
            Announcement::parse("c 9f3a 1,2,3"),
            Some(Announcement::Counters {
                origin: "9f3a",
                accounts: vec![1, 2, 3]
            })
        );
        for bad in ["", "a", "a x", "c 9f3a", "c 9f3a 1,,2", "b 1"] {
            assert_eq!(Announcement::parse(bad), None, "{bad}");
        }
    }
}
