//! The PostgreSQL store: several otpd nodes on one database (a primary with a synchronous
//! standby), with the contract of `store/login.rs` held across all of them.
//!
//! Files: this one opens the store (schema, the replication check); `connect.rs` the url,
//! TLS and the notice watch; `pool.rs` the synchronous connections for reads and admin
//! writes; `batch.rs` and `writer.rs` the group commit; `login.rs`, `admin.rs`, `audit.rs`
//! the traits; `rows.rs` the row mappings; `schema.rs` the migrations.
//!
//! Durable means replicated: every session commits with `synchronous_commit = on` (or the
//! server's stronger `remote_apply`), and a commit whose wait for the standby was cancelled
//! (success plus a WARNING) counts as failed. Without a synchronous standby otpd refuses to
//! start unless `allow_async_replication = true`.

mod admin;
mod api_keys;
mod audit;
mod batch;
pub(crate) mod connect;
mod devices;
mod feed;
mod login;
pub(crate) mod pool;
mod rows;
pub mod schema;
pub mod shared;
mod writer;

use crate::config::StoreConfig;
use crate::store::cache::AccountCache;
use crate::store::sqlite::commit::{Answer, Committer, Op};
use crate::store::{StoreError, StoreResult};
pub(crate) use admin::backup_refused;
use connect::PgSettings;
use pool::PgPool;
use std::sync::Arc;

pub struct PgStore {
    pool: Arc<PgPool>,
    committer: Committer,
    /// Accounts and tokens in memory, kept true by the change feed (`[store] cache_accounts`;
    /// none when 0).
    cached: Option<(Arc<AccountCache>, Arc<feed::Feed>)>,
}

impl PgStore {
    /// Connects, checks replication, brings the schema up to date (one node at a time) and
    /// starts the writer.
    pub fn open(cfg: &StoreConfig) -> StoreResult<PgStore> {
        let settings = PgSettings::from_config(cfg)?;
        let pool = Arc::new(PgPool::new(settings.clone()));
        {
            let mut conn = pool.get()?;
            check_replication(&mut conn, &settings)?;
            let m = schema::migrate(&mut conn)?;
            if m.from != m.to {
                tracing::info!(
                    node = %settings.node,
                    "migrated the PostgreSQL schema from version {} to {}",
                    m.from,
                    m.to
                );
            }
            backfill_skeletons(&mut conn)?;
        }
        let origin = origin()?;
        let cached = match cfg.cache_accounts() {
            0 => None,
            n => {
                let cache = Arc::new(AccountCache::new(n));
                let feed = feed::Feed::start(settings.clone(), cache.clone(), origin.clone())
                    .map_err(|e| {
                        StoreError::Commit(format!("cannot start the cache's feed thread: {e}"))
                    })?;
                Some((cache, feed))
            }
        };
        let committer = writer::start(
            settings,
            writer::CacheLink {
                origin,
                cache: cached.as_ref().map(|(c, _)| c.clone()),
            },
        )?;
        Ok(PgStore {
            pool,
            committer,
            cached,
        })
    }

    /// The connection pool, for other stores that keep their state in the same database
    /// (the shared short-lived state of several nodes).
    #[allow(dead_code)]
    pub(crate) fn pool(&self) -> &Arc<PgPool> {
        &self.pool
    }

    fn write(&self, op: Op) -> StoreResult<Answer> {
        self.committer.write(op)
    }

    fn write_won(&self, op: Op) -> StoreResult<bool> {
        self.write(op)?.won()
    }
}

/// Refuses a server that is not a writable primary, or one without a synchronous standby
/// (unless the admin allowed that).
fn check_replication(conn: &mut pool::PgConn, s: &PgSettings) -> StoreResult<()> {
    let row = conn.query_opt(
        "SELECT pg_is_in_recovery(), current_setting('synchronous_standby_names'),
                current_setting('synchronous_commit'),
                (SELECT count(*) FROM pg_stat_replication
                  WHERE sync_state IN ('sync', 'quorum'))",
        &[],
    )?;
    let Some(row) = row else {
        return Err(StoreError::Refused("PostgreSQL answered no row".into()));
    };
    let standby: bool = row.try_get(0)?;
    let names: String = row.try_get(1)?;
    let commit: String = row.try_get(2)?;
    let sync_now: i64 = row.try_get(3)?;
    if standby {
        return Err(StoreError::Refused(
            "the PostgreSQL server is a standby (read-only); point store.url at the primary, \
             or list every host with target_session_attrs=read-write"
                .into(),
        ));
    }
    let sync = !names.trim().is_empty() && (commit == "on" || commit == "remote_apply");
    if !sync {
        if !s.allow_async_replication {
            return Err(StoreError::Refused(format!(
                "the PostgreSQL primary has no synchronous standby (synchronous_standby_names \
                 = '{names}', synchronous_commit = {commit}): a failover would lose counters \
                 already acknowledged, and a one-time code already used would become valid \
                 again. Configure a synchronous standby (docs/cluster.md), or set \
                 [store] allow_async_replication = true to accept that risk"
            )));
        }
        tracing::warn!(
            "PostgreSQL replication is asynchronous (allow_async_replication = true): a \
             failover can make a used one-time code valid again"
        );
    } else if sync_now == 0 {
        tracing::warn!(
            "no synchronous standby is connected to the PostgreSQL primary now: commits, and \
             with them every Accept, wait until one is"
        );
    }
    Ok(())
}

/// Fills in the look-alike key of accounts that have none (rows copied in by other tools).
fn backfill_skeletons(conn: &mut pool::PgConn) -> StoreResult<()> {
    let rows = conn.query("SELECT id, name FROM accounts WHERE skeleton IS NULL", &[])?;
    if rows.is_empty() {
        return Ok(());
    }
    conn.transaction(|tx| {
        for r in &rows {
            let id: i64 = r.try_get(0)?;
            let name: String = r.try_get(1)?;
            tx.execute(
                "UPDATE accounts SET skeleton = $2 WHERE id = $1",
                &[&id, &crate::confusable::skeleton(&name)],
            )?;
        }
        Ok(())
    })
}

/// This process's name in the writers' announcements: random, so two nodes never share it
/// (node names may, by mistake).
fn origin() -> StoreResult<String> {
    let mut b = [0u8; 8];
    getrandom::getrandom(&mut b)
        .map_err(|e| StoreError::Commit(format!("no randomness for the cache origin: {e}")))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn one_row(changed: u64, what: &str) -> StoreResult<()> {
    if changed == 0 {
        Err(StoreError::NotFound(what.to_string()))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
