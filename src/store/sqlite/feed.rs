//! What keeps the daemon's account cache (`store/cache.rs`) true to an SQLite file that other
//! processes write too (`otpd` admin commands, an admin's own `sqlite3`): the `changes` table
//! that triggers fill (schema step 13), and the barrier every login passes before it may
//! use the cache.
//!
//! SQLite has no notifications between processes, so the feed is read, not listened to: a
//! login waits until one read of `changes` begun after it arrived has been applied to the
//! cache. A read transaction sees every commit made before it began, so a hit is never older
//! than a read of the account made when the login began. One read serves every login that
//! arrived before it began; the first login that finds no read on its way makes the next one
//! on its own thread, the others wait for it (as PostgreSQL's feed does with its round trip).
//!
//! The daemon's own counter advances are not announced (schema step 13 says how the trigger
//! knows them); its writer writes them through into the cache after each commit, and
//! deletes the rows the feed has applied (`commit/writer.rs`) inside a batch's transaction,
//! so that costs no flush of its own.

use crate::store::cache::AccountCache;
use crate::store::{StoreError, StoreResult};
use rusqlite::Connection;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a login waits for another login's read of the feed before it reads its account
/// from the database instead. A read of the feed takes microseconds; this is for a file
/// locked by a recovery.
const WAIT: Duration = Duration::from_secs(2);
/// The longest the feed goes unread while the writer commits.
const REFRESH: Duration = Duration::from_secs(1);
/// Rows applied before the writer deletes them: one `DELETE` per so many changes.
const FORGET_EVERY: i64 = 1024;

pub(in crate::store) struct Feed {
    pub(in crate::store) cache: Arc<AccountCache>,
    /// The feed's own connection, when the writer's is not lent.
    reader: Mutex<Connection>,
    /// The last change applied; rows up to it may go (the writer deletes them).
    applied: AtomicI64,
    /// The last change the writer deleted up to.
    forgotten: AtomicI64,
    rounds: Mutex<Rounds>,
    changed: Condvar,
}

#[derive(Default)]
struct Rounds {
    /// The next read to begin; a login arriving now needs it.
    next: u64,
    /// The latest read applied.
    done: u64,
    /// A read is on its way (some login's thread makes it).
    running: bool,
    /// When the latest read ended.
    last: Option<Instant>,
}

impl Feed {
    /// The feed of the database at `path` (migrated: `changes` exists) and a cache of
    /// `capacity` accounts, serving from now on: what was changed before is in no cache.
    pub(in crate::store) fn open(path: &Path, capacity: usize) -> StoreResult<Arc<Feed>> {
        let conn = Connection::open(path).map_err(|e| StoreError::Open {
            path: path.display().to_string(),
            msg: e.to_string(),
        })?;
        conn.busy_timeout(WAIT)?;
        let last: i64 = conn.query_row(
            "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'changes'), 0)",
            [],
            |r| r.get(0),
        )?;
        let cache = Arc::new(AccountCache::new(capacity));
        cache.start();
        Ok(Arc::new(Feed {
            cache,
            reader: Mutex::new(conn),
            applied: AtomicI64::new(last),
            forgotten: AtomicI64::new(0),
            rounds: Mutex::new(Rounds {
                next: 1,
                ..Rounds::default()
            }),
            changed: Condvar::new(),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Rounds> {
        self.rounds.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until every change committed before now has reached the cache. `false`: waited
    /// too long; the caller reads from the database. `idle` lends the writer's connection
    /// when it sleeps: its page cache is current, where the feed's own connection finds its
    /// cache emptied by every commit since its last read (window 1, docs/performance.md).
    pub(in crate::store) fn barrier<'c>(
        &self,
        idle: impl Fn() -> Option<MutexGuard<'c, Connection>>,
    ) -> bool {
        let deadline = Instant::now() + WAIT;
        let mut r = self.lock();
        let mine = r.next;
        // Not a marked sleep (`blocking::section`): a read of the feed is local work of
        // microseconds, as the account read it spares is; lending the RADIUS receiving role
        // for it cost more than the read.
        loop {
            if r.done >= mine {
                return true;
            }
            if !r.running {
                r = self.lead(r, &idle);
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            r = match self.changed.wait_timeout(r, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// Makes the next read; every read a login waits for is this one or an earlier one.
    fn lead<'a, 'c>(
        &'a self,
        mut r: MutexGuard<'a, Rounds>,
        idle: &impl Fn() -> Option<MutexGuard<'c, Connection>>,
    ) -> MutexGuard<'a, Rounds> {
        let round = r.next;
        r.next += 1;
        r.running = true;
        drop(r);
        let read = match idle() {
            Some(conn) => self.read(&conn),
            None => self.read(&self.reader.lock().unwrap_or_else(|p| p.into_inner())),
        };
        if let Err(e) = read {
            // What changed since the last read is unknown: nothing cached may be served, and
            // a read begun before now may not be kept. Logins read from the database until
            // the next read of the feed succeeds and the cache fills again.
            self.cache.clear();
            tracing::warn!(
                "the account cache's change feed could not be read ({e}); cache emptied"
            );
        }
        let mut r = self.lock();
        r.running = false;
        r.done = round;
        r.last = Some(Instant::now());
        self.changed.notify_all();
        r
    }

    /// Reads the feed when no login has for [`REFRESH`], so that its rows can be deleted
    /// while no login uses the cache (a flood of unknown names or failures writes a row
    /// each and passes no barrier). The writer calls it after its commits.
    pub(in crate::store) fn refresh_if_stale(&self) {
        let r = self.lock();
        if r.running || r.last.is_some_and(|t| t.elapsed() < REFRESH) {
            return;
        }
        drop(self.lead(r, &|| None));
    }

    /// Applies what changed since the last read; only one read runs at a time (`running`).
    fn read(&self, conn: &Connection) -> rusqlite::Result<()> {
        let last = self.applied.load(Ordering::Acquire);
        let mut st =
            conn.prepare_cached("SELECT seq, account_id FROM changes WHERE seq > ?1 ORDER BY seq")?;
        let mut rows = st.query([last])?;
        let mut newest = last;
        while let Some(row) = rows.next()? {
            newest = row.get(0)?;
            if let Some(id) = row.get::<_, Option<i64>>(1)? {
                self.cache.evict_account(id);
            }
        }
        self.applied.store(newest, Ordering::Release);
        Ok(())
    }

    /// Rows of `changes` that may be deleted now (up to the returned number), when enough
    /// have been applied since the last delete; the caller deletes them inside its
    /// transaction and reports back with [`Feed::forgot`].
    pub(in crate::store) fn to_forget(&self) -> Option<i64> {
        let applied = self.applied.load(Ordering::Acquire);
        (applied - self.forgotten.load(Ordering::Relaxed) >= FORGET_EVERY).then_some(applied)
    }

    pub(in crate::store) fn forgot(&self, upto: i64) {
        self.forgotten.fetch_max(upto, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::super::schema::MIGRATIONS;
    use super::super::ACCOUNT_COLS;
    use rusqlite::Connection;

    /// Token columns that the daemon's own advance changes (schema step 13): no announcement.
    const ADVANCE: [&str; 4] = ["last_counter", "drift", "last_used_at", "advances"];
    /// The daemon's own advance, as its writer makes it.
    const DAEMON_ADVANCE: &str = "last_counter = last_counter + 1, advances = advances + 1";

    fn db() -> Connection {
        let c = Connection::open_in_memory().expect("db");
        for step in MIGRATIONS {
            c.execute_batch(step).expect("migration");
        }
        c.execute_batch(
            "INSERT INTO accounts (id, name, level, created_at) VALUES (1, 'a', 'otp', 0), (2, 'b', 'otp', 0);
             INSERT INTO tokens (id, serial, account_id, kind, state, algorithm, digits, period,
                 secret, last_counter, created_at)
             VALUES (1, 'T1', 1, 'hotp', 'active', 'sha1', 6, 30, x'00', 5, 0);
             DELETE FROM changes;",
        )
        .expect("rows");
        c
    }

    fn changes(c: &Connection) -> i64 {
        c.query_row("SELECT count(*) FROM changes", [], |r| r.get(0))
            .expect("count")
    }

    fn columns(c: &Connection, table: &str) -> Vec<String> {
        let mut st = c
            .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
            .expect("columns");
        let names = st.query_map([], |r| r.get(0)).expect("columns");
        names.collect::<Result<_, _>>().expect("columns")
    }

    /// Another value for `col`, whatever its type.
    fn changed(col: &str) -> String {
        format!(
            "CASE typeof({col}) WHEN 'integer' THEN {col} + 1 WHEN 'text' THEN {col} || 'x'
             WHEN 'blob' THEN {col} || x'01' ELSE 1 END"
        )
    }

    #[test]
    fn every_column_a_login_reads_is_announced() {
        for col in columns(&db(), "tokens") {
            let c = db();
            // Each column changed along with the daemon's own advance: only the advance's
            // own columns may go unannounced.
            let set = match col.as_str() {
                "last_counter" | "advances" => DAEMON_ADVANCE.to_string(),
                _ => format!("{col} = {}, {DAEMON_ADVANCE}", changed(&col)),
            };
            c.execute_batch(&format!("UPDATE tokens SET {set}"))
                .expect(&col);
            // A token moved to another account changes both.
            let want = match col.as_str() {
                "account_id" => 2,
                c if ADVANCE.contains(&c) => 0,
                _ => 1,
            };
            assert_eq!(changes(&c), want, "tokens.{col}");
        }
        for col in ACCOUNT_COLS
            .split(',')
            .map(|s| s.trim().trim_start_matches("a."))
        {
            let c = db();
            c.execute_batch(&format!(
                "UPDATE accounts SET {col} = {} WHERE id = 2",
                changed(col)
            ))
            .expect(col);
            assert_eq!(changes(&c), 1, "accounts.{col}");
        }
    }

    #[test]
    fn only_the_daemons_own_advances_go_unannounced() {
        use super::super::commit::{apply, apply_with, Op};
        let c = db();
        let advance = |counter| Op::Advance {
            token_id: 1,
            counter,
            drift: 1,
            now: 100,
            activate: false,
        };
        let won = apply_with(&c, &advance(9), true).expect("advance");
        assert!(won.and_then(|a| a.won()).expect("answer"));
        assert_eq!(changes(&c), 0, "the daemon's advance");
        // Another process's advance (`otpd check`): the daemon must hear of it.
        let won = apply(&c, &advance(12)).expect("advance");
        assert!(won.and_then(|a| a.won()).expect("answer"));
        assert_eq!(changes(&c), 1, "the CLI's advance");
        c.execute_batch("DELETE FROM changes").expect("clear");
        c.execute_batch("UPDATE tokens SET last_counter = last_counter - 1")
            .expect("back");
        assert_eq!(changes(&c), 1, "a counter moved back");
        c.execute_batch("UPDATE tokens SET last_counter = last_counter + 5, state = 'disabled'")
            .expect("disable");
        assert_eq!(changes(&c), 2, "moved forward and disabled");
        c.execute_batch(
            "INSERT INTO tokens (serial, account_id, kind, state, algorithm, digits, period,
                 secret, created_at) VALUES ('T2', 2, 'totp', 'active', 'sha1', 6, 30, x'00', 0);
             DELETE FROM tokens WHERE serial = 'T2';
             DELETE FROM accounts WHERE id = 2;
             UPDATE accounts SET probes = probes + 1 WHERE id = 1;",
        )
        .expect("more");
        assert_eq!(changes(&c), 6, "added, deleted, account deleted, probed");
        // An account added is not announced: the cache holds no name it did not find.
        c.execute_batch("INSERT INTO accounts (name, level, created_at) VALUES ('c', 'otp', 0)")
            .expect("insert");
        assert_eq!(changes(&c), 6);
    }
}
