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
//! one `SELECT 1` sent after it arrived has come back on the feed's session and the
//! notifications that came before it have been applied. One round trip serves every login
//! that arrived before it was sent, as one commit serves a batch.
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
    /// The highest round a login waits for.
    wanted: u64,
    /// Listening now.
    up: bool,
}

impl Feed {
    /// Starts the feed's thread; the cache serves once the feed listens.
    pub(super) fn start(
        settings: PgSettings,
        cache: Arc<AccountCache>,
        origin: String,
    ) -> std::io::Result<Arc<Feed>> {
        let feed = Arc::new(Feed {
            cache,
            origin,
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

    /// Waits until everything announced before now has reached the cache. `false`: the feed
    /// is down or late; the caller reads from the database.
    pub(super) fn barrier(&self) -> bool {
        let deadline = Instant::now() + self.timeout;
        let mut r = self.lock();
        if !r.up {
            return false;
        }
        let mine = r.next;
        if r.wanted < mine {
            r.wanted = mine;
            self.changed.notify_all();
        }
        let _asleep = crate::blocking::enter();
        while r.up && r.done < mine {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            r = match self.changed.wait_timeout(r, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        r.up && r.done >= mine
    }

    fn set_up(&self, up: bool) {
        let mut r = self.lock();
        r.up = up;
        if up {
            self.cache.start();
        } else {
            self.cache.stop();
        }
        self.changed.notify_all();
    }

    fn run(&self, settings: &PgSettings) {
        loop {
            match self.listen(settings) {
                Ok(mut client) => {
                    self.set_up(true);
                    let e = self.serve(&mut client);
                    self.set_up(false);
                    tracing::warn!(
                        "PostgreSQL: the account cache's change feed ended ({e}); logins read \
                         from the database until it is back"
                    );
                }
                Err(e) => tracing::warn!(
                    "PostgreSQL: the account cache's change feed cannot listen ({e}); logins \
                     read from the database meanwhile"
                ),
            }
            std::thread::sleep(RECONNECT);
        }
    }

    fn listen(&self, settings: &PgSettings) -> Result<postgres::Client, String> {
        let (mut client, _) = settings.connect_sync().map_err(|e| e.to_string())?;
        client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .map_err(|e| e.to_string())?;
        Ok(client)
    }

    /// Rounds until the session fails; returns why.
    fn serve(&self, client: &mut postgres::Client) -> String {
        loop {
            let round = {
                let mut r = self.lock();
                if r.wanted < r.next {
                    r = match self.changed.wait_timeout(r, IDLE_ROUND) {
                        Ok((g, _)) => g,
                        Err(p) => p.into_inner().0,
                    };
                }
                let round = r.next;
                r.next += 1;
                round
            };
            if let Err(e) = client.simple_query("SELECT 1") {
                return e.to_string();
            }
            let mut notes = client.notifications();
            let mut it = notes.iter();
            loop {
                match it.next() {
                    Ok(Some(n)) => self.apply(n.payload()),
                    Ok(None) => break,
                    Err(e) => return e.to_string(),
                }
            }
            let mut r = self.lock();
            r.done = round;
            self.changed.notify_all();
        }
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
enum Announcement<'a> {
    Account(i64),
    Counters { origin: &'a str, accounts: Vec<i64> },
    All,
}

impl<'a> Announcement<'a> {
    fn parse(s: &'a str) -> Option<Announcement<'a>> {
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
