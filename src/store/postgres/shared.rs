//! The shared state (store/shared/) in PostgreSQL, for several nodes on one database: open
//! States of two-step logins, the re-login cache and the failure counters that no account
//! row holds, in UNLOGGED tables (schema step 2).
//!
//! UNLOGGED: no WAL, so these writes cost no flush and no wait for the standby, and nothing
//! of them reaches the standby. A crash of the primary empties the tables and a failover
//! starts with them empty: half-done two-step logins need the PIN again, the re-login cache
//! needs one full login, and the counted guesses that no account row holds are forgiven.
//! Nothing is ever brought back: a State taken on the old primary cannot reappear on the new
//! one, since it was never there.
//!
//! Every operation is one statement on a pooled session, atomic against every other node:
//! a State is taken by `DELETE ... RETURNING` (of two nodes deleting the same row, the
//! second waits for the first's row lock, then finds nothing: exactly one gets it), a
//! counter by one `INSERT ... ON CONFLICT DO UPDATE` whose arithmetic is the rule of
//! `Counter::bumped`. Expired rows are deleted by whichever node passes `PURGE_EVERY_MS`
//! first; reads ignore nothing themselves, the engine judges expiry as it does in memory.

use super::pool::PgPool;
use crate::store::shared::{
    Challenge, Count, Counter, Key, ReloginEntry, ReloginHit, SharedStateStore,
};
use crate::store::{StoreError, StoreResult};
use postgres::Row;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, LazyLock};

/// The schema step that creates the tables (appended to `schema::MIGRATIONS`).
pub const MIGRATION: &str = "
    CREATE UNLOGGED TABLE shared_challenges (
        key         BYTEA PRIMARY KEY,
        user_name   TEXT NOT NULL,
        client      TEXT,
        class       TEXT NOT NULL,
        sealed_pin  BYTEA NOT NULL,
        created_ms  BIGINT NOT NULL,
        expires_ms  BIGINT NOT NULL
    );
    CREATE INDEX shared_challenges_user ON shared_challenges(user_name, created_ms);
    CREATE INDEX shared_challenges_expires ON shared_challenges(expires_ms);
    CREATE UNLOGGED TABLE shared_relogin (
        key         BYTEA PRIMARY KEY,
        serial      TEXT NOT NULL,
        created_ms  BIGINT NOT NULL,
        last_ms     BIGINT NOT NULL,
        idle_ms     BIGINT NOT NULL,
        max_ms      BIGINT NOT NULL
    );
    CREATE UNLOGGED TABLE shared_counters (
        key       TEXT PRIMARY KEY,
        failures  BIGINT NOT NULL,
        since     BIGINT NOT NULL,
        last      BIGINT,
        until     BIGINT,
        expires   BIGINT NOT NULL
    );
    CREATE INDEX shared_counters_expires ON shared_counters(expires);";

/// How often (at most, per node) expired rows are deleted.
const PURGE_EVERY_MS: i64 = 60_000;

const TAKE: &str = "DELETE FROM shared_challenges WHERE key = $1
     RETURNING user_name, client, class, sealed_pin, expires_ms";

/// Drops this user's expired States and the oldest beyond `per_user - 1`, then stores the new
/// one. Two nodes issuing for one user at the same moment may leave one State more than the
/// bound until the next issue: a bound on memory, not on safety.
const PUT: &str = "WITH gone AS (
         DELETE FROM shared_challenges WHERE user_name = $2 AND (expires_ms <= $6 OR key IN (
             SELECT key FROM shared_challenges WHERE user_name = $2
             ORDER BY created_ms DESC, key DESC OFFSET $8))
     )
     INSERT INTO shared_challenges (key, user_name, client, class, sealed_pin, created_ms,
                                    expires_ms)
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

const HIT: &str = "UPDATE shared_relogin SET last_ms = $2
     WHERE key = $1 AND $2 - last_ms <= idle_ms AND $2 - created_ms <= max_ms
     RETURNING serial, created_ms";

const RELOGIN_PUT: &str = "INSERT INTO shared_relogin
         (key, serial, created_ms, last_ms, idle_ms, max_ms)
     VALUES ($1, $2, $3, $3, $4, $5)
     ON CONFLICT (key) DO UPDATE SET serial = excluded.serial,
         created_ms = excluded.created_ms, last_ms = excluded.last_ms,
         idle_ms = excluded.idle_ms, max_ms = excluded.max_ms";

const READ: &str = "SELECT key, failures, since, last, until FROM shared_counters
     WHERE key = ANY($1)";

/// `Count::Window` ($3 window, $4 block, $5 max) as one upsert. `R` is "the window has run out
/// and no block holds": the count starts afresh.
static WINDOW: LazyLock<String> = LazyLock::new(|| {
    let r = "($2 >= c.since + $3 AND (c.until IS NULL OR $2 >= c.until))";
    let n = format!("(CASE WHEN {r} THEN 1 ELSE c.failures + 1 END)");
    let since = format!("(CASE WHEN {r} THEN $2 ELSE c.since END)");
    let until = format!("(CASE WHEN {n} >= $5 THEN $2 + $4 WHEN {r} THEN NULL ELSE c.until END)");
    let sql = format!(
        "INSERT INTO shared_counters AS c (key, failures, since, last, until, expires)
         VALUES ($1, 1, $2, $2, CASE WHEN 1 >= $5 THEN $2 + $4 END,
                 GREATEST($2 + $3, CASE WHEN 1 >= $5 THEN $2 + $4 END))
         ON CONFLICT (key) DO UPDATE SET failures = {n}, since = {since}, last = $2,
             until = {until}, expires = GREATEST({since} + $3, {until})
         RETURNING failures, since, last, until"
    );
    with_bigint_params(&sql)
});

/// `Count::Bucket` ($3 lock_at, $4 lock_until, $5 keep) as one upsert. `E` is "a lock that
/// has ended": it is forgotten with its failures.
static BUCKET: LazyLock<String> = LazyLock::new(|| {
    let e = "(c.until IS NOT NULL AND c.until <= $2)";
    let first = "(CASE WHEN $3 > 0 AND 1 >= $3 THEN $4 END)";
    let n = format!("(CASE WHEN {e} THEN 1 ELSE c.failures + 1 END)");
    let since = format!("(CASE WHEN {e} OR c.failures = 0 THEN $2 ELSE c.since END)");
    let until = format!(
        "(CASE WHEN {e} THEN {first} WHEN c.until IS NOT NULL THEN c.until \
         WHEN $3 > 0 AND c.failures + 1 >= $3 THEN $4 END)"
    );
    let sql = format!(
        "INSERT INTO shared_counters AS c (key, failures, since, last, until, expires)
         VALUES ($1, 1, $2, $2, {first}, GREATEST($2 + $5, {first}))
         ON CONFLICT (key) DO UPDATE SET failures = {n}, since = {since}, last = $2,
             until = {until}, expires = GREATEST($2 + $5, {until})
         RETURNING failures, since, last, until"
    );
    with_bigint_params(&sql)
});

/// Every numeric parameter ($2 to $5) typed BIGINT where it stands: PostgreSQL would take
/// `1 >= $5` or `$3 > 0` for an INTEGER and refuse the i64 bound to it.
fn with_bigint_params(sql: &str) -> String {
    (2..=5).fold(sql.to_string(), |s, i| {
        s.replace(&format!("${i}"), &format!("${i}::bigint"))
    })
}

/// [`SharedStateStore`] on the PostgreSQL store's connection pool.
pub struct PgShared {
    pool: Arc<PgPool>,
    /// When this node last deleted expired rows (ms).
    last_purge_ms: AtomicI64,
}

impl PgShared {
    pub(crate) fn new(pool: Arc<PgPool>) -> PgShared {
        PgShared {
            pool,
            last_purge_ms: AtomicI64::new(i64::MIN),
        }
    }

    /// Deletes expired rows, at most once per `PURGE_EVERY_MS` on this node. A failure is
    /// logged and tried again next time: expired rows are ignored by their readers anyway.
    fn purge_if_due(&self, now_ms: i64) {
        let last = self.last_purge_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) < PURGE_EVERY_MS
            || self
                .last_purge_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let now_s = now_ms.div_euclid(1000);
        let run = || -> StoreResult<()> {
            let mut conn = self.pool.get()?;
            conn.execute(
                "DELETE FROM shared_challenges WHERE expires_ms <= $1",
                &[&now_ms],
            )?;
            conn.execute(
                "DELETE FROM shared_relogin
                 WHERE $1 - last_ms > idle_ms OR $1 - created_ms > max_ms",
                &[&now_ms],
            )?;
            conn.execute("DELETE FROM shared_counters WHERE expires <= $1", &[&now_s])?;
            Ok(())
        };
        if let Err(e) = run() {
            tracing::warn!("expired shared state not deleted: {e}");
        }
    }
}

fn counter(r: &Row, at: usize) -> StoreResult<Counter> {
    let failures: i64 = r.try_get(at)?;
    Ok(Counter {
        failures: u32::try_from(failures.max(0)).unwrap_or(u32::MAX),
        since: r.try_get(at + 1)?,
        last: r.try_get(at + 2)?,
        until: r.try_get(at + 3)?,
    })
}

fn key_bytes(key: &Key) -> &[u8] {
    key.as_slice()
}

impl SharedStateStore for PgShared {
    fn put_challenge(
        &self,
        key: &Key,
        c: &Challenge,
        now_ms: i64,
        per_user: usize,
    ) -> StoreResult<bool> {
        self.purge_if_due(now_ms);
        let keep = i64::try_from(per_user.max(1) - 1).unwrap_or(i64::MAX);
        self.pool.get()?.execute(
            PUT,
            &[
                &key_bytes(key),
                &c.user,
                &c.client,
                &c.class,
                &c.sealed_pin,
                &now_ms,
                &c.expires_ms,
                &keep,
            ],
        )?;
        Ok(true)
    }

    fn take_challenge(&self, key: &Key) -> StoreResult<Option<Challenge>> {
        let row = self.pool.get()?.query_opt(TAKE, &[&key_bytes(key)])?;
        row.map(|r| {
            Ok(Challenge {
                user: r.try_get(0)?,
                client: r.try_get(1)?,
                class: r.try_get(2)?,
                sealed_pin: r.try_get(3)?,
                expires_ms: r.try_get(4)?,
            })
        })
        .transpose()
    }

    fn relogin_hit(&self, key: &Key, now_ms: i64) -> StoreResult<Option<ReloginHit>> {
        let row = self
            .pool
            .get()?
            .query_opt(HIT, &[&key_bytes(key), &now_ms])?;
        row.map(|r| {
            Ok(ReloginHit {
                serial: r.try_get(0)?,
                created_ms: r.try_get(1)?,
            })
        })
        .transpose()
    }

    fn relogin_put(&self, key: &Key, e: ReloginEntry<'_>) -> StoreResult<()> {
        self.purge_if_due(e.now_ms);
        self.pool.get()?.execute(
            RELOGIN_PUT,
            &[&key_bytes(key), &e.serial, &e.now_ms, &e.idle_ms, &e.max_ms],
        )?;
        Ok(())
    }

    fn relogin_forget(&self, key: &Key) -> StoreResult<()> {
        self.pool.get()?.execute(
            "DELETE FROM shared_relogin WHERE key = $1",
            &[&key_bytes(key)],
        )?;
        Ok(())
    }

    fn counters(&self, keys: &[&str]) -> StoreResult<Vec<Option<Counter>>> {
        let names: Vec<&str> = keys.to_vec();
        let rows = self.pool.get()?.query(READ, &[&names])?;
        let mut out = vec![None; keys.len()];
        for r in &rows {
            let k: String = r.try_get(0)?;
            if let Some(i) = keys.iter().position(|x| *x == k) {
                out[i] = Some(counter(r, 1)?);
            }
        }
        Ok(out)
    }

    fn count(&self, key: &str, now: i64, how: Count) -> StoreResult<Counter> {
        self.purge_if_due(now.saturating_mul(1000));
        let mut conn = self.pool.get()?;
        let row = match how {
            Count::Window { window, block, max } => conn.query_opt(
                WINDOW.as_str(),
                &[&key, &now, &window, &block, &i64::from(max)],
            )?,
            Count::Bucket {
                lock_at,
                lock_until,
                keep,
            } => conn.query_opt(
                BUCKET.as_str(),
                &[&key, &now, &i64::from(lock_at), &lock_until, &keep],
            )?,
        };
        match row {
            Some(r) => counter(&r, 0),
            None => Err(StoreError::Commit(
                "a failure counter's upsert came back without a row".into(),
            )),
        }
    }

    fn forget(&self, key: &str) -> StoreResult<()> {
        self.pool
            .get()?
            .execute("DELETE FROM shared_counters WHERE key = $1", &[&key])?;
        Ok(())
    }
}
