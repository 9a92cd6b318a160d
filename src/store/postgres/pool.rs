//! A small bounded pool of synchronous connections for reads and admin writes.
//!
//! Our own rather than r2d2 or deadpool: what it must do is little (at most `connections`
//! sessions, a bounded wait for a free one, a broken session dropped and opened anew, each
//! with its notice watch and its prepared statements), and it stays a type of ours that the
//! shared-state store (challenges, re-login cache) can use as it is.

use super::connect::{NoticeWatch, PgSettings};
use crate::store::{StoreError, StoreResult};
use postgres::types::ToSql;
use postgres::{Client, Row, Statement};
use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// One session: the client, its notice watch and the statements prepared on it.
pub(crate) struct PgConn {
    client: Client,
    watch: NoticeWatch,
    prepared: HashMap<String, Statement>,
}

impl PgConn {
    /// The client itself, for what the methods below do not cover.
    #[allow(dead_code)]
    pub(crate) fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// `sql` prepared once per session.
    pub(crate) fn statement(&mut self, sql: &str) -> StoreResult<Statement> {
        if let Some(st) = self.prepared.get(sql) {
            return Ok(st.clone());
        }
        let st = self.client.prepare(sql)?;
        self.prepared.insert(sql.to_string(), st.clone());
        Ok(st)
    }

    pub(crate) fn query(&mut self, sql: &str, p: &[&(dyn ToSql + Sync)]) -> StoreResult<Vec<Row>> {
        crate::blocking::section(|| {
            let st = self.statement(sql)?;
            Ok(self.client.query(&st, p)?)
        })
    }

    pub(crate) fn query_opt(
        &mut self,
        sql: &str,
        p: &[&(dyn ToSql + Sync)],
    ) -> StoreResult<Option<Row>> {
        crate::blocking::section(|| {
            let st = self.statement(sql)?;
            Ok(self.client.query_opt(&st, p)?)
        })
    }

    /// A durable write of its own (autocommit): rows changed.
    pub(crate) fn execute(&mut self, sql: &str, p: &[&(dyn ToSql + Sync)]) -> StoreResult<u64> {
        crate::blocking::section(|| {
            let before = self.watch.count();
            let st = self.statement(sql)?;
            let n = self.client.execute(&st, p)?;
            self.check_replicated(before)?;
            Ok(n)
        })
    }

    /// Runs `f` in one transaction and commits it; durable (replicated) before it returns
    /// `Ok`. An error from `f` rolls everything back.
    pub(crate) fn transaction<T>(
        &mut self,
        f: impl FnOnce(&mut postgres::Transaction<'_>) -> StoreResult<T>,
    ) -> StoreResult<T> {
        crate::blocking::section(|| {
            let before = self.watch.count();
            let mut tx = self.client.transaction()?;
            let out = f(&mut tx)?;
            tx.commit()?;
            self.check_replicated(before)?;
            Ok(out)
        })
    }

    /// A commit whose wait for the standby was cancelled came back as success: it is only
    /// local, so it counts as failed.
    fn check_replicated(&self, before: u64) -> StoreResult<()> {
        if self.watch.count() != before {
            return Err(sync_wait_cancelled());
        }
        Ok(())
    }
}

pub(crate) fn sync_wait_cancelled() -> StoreError {
    StoreError::Commit(
        "the wait for the synchronous standby was cancelled: the commit is only local and \
         does not count"
            .into(),
    )
}

pub(crate) struct PgPool {
    settings: PgSettings,
    state: Mutex<PoolState>,
    freed: Condvar,
}

struct PoolState {
    idle: Vec<PgConn>,
    /// Sessions open, idle or lent.
    open: usize,
}

/// A session lent by the pool; back to the pool when dropped (or closed, if it broke).
pub(crate) struct Pooled<'a> {
    pool: &'a PgPool,
    conn: Option<PgConn>,
}

impl std::ops::Deref for Pooled<'_> {
    type Target = PgConn;
    fn deref(&self) -> &PgConn {
        // Only `drop` takes the connection out.
        match &self.conn {
            Some(c) => c,
            None => unreachable_conn(),
        }
    }
}

impl std::ops::DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut PgConn {
        match &mut self.conn {
            Some(c) => c,
            None => unreachable_conn(),
        }
    }
}

#[allow(clippy::panic)]
fn unreachable_conn() -> ! {
    // A `Pooled` holds its connection from creation to drop; nothing else takes it.
    panic!("pooled connection used after it was returned")
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            let mut st = self.pool.lock();
            // A broken session is dropped, not reused (a transaction dropped on an error has
            // rolled itself back already).
            if c.client.is_closed() {
                st.open -= 1;
            } else {
                st.idle.push(c);
            }
            drop(st);
            self.pool.freed.notify_one();
        }
    }
}

impl Drop for PgPool {
    /// `postgres::Client` closes its session by blocking on a runtime of its own, which
    /// panics on a thread that drives tokio tasks: the daemon's last handle on the store can
    /// be dropped in one. The sessions are closed on a thread of their own instead.
    fn drop(&mut self) {
        let idle = std::mem::take(&mut self.lock().idle);
        if idle.is_empty() {
            return;
        }
        match std::thread::Builder::new()
            .name("otpd-pg-close".into())
            .spawn(move || drop(idle))
        {
            Ok(t) => {
                let _ = t.join();
            }
            Err(e) => tracing::warn!("PostgreSQL sessions left unclosed: {e}"),
        }
    }
}

impl PgPool {
    pub(crate) fn new(settings: PgSettings) -> PgPool {
        PgPool {
            settings,
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        }
    }

    #[allow(dead_code)]
    pub(crate) fn settings(&self) -> &PgSettings {
        &self.settings
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A session: an idle one, a new one while fewer than `connections` are open, else the
    /// first one freed within the connect timeout.
    pub(crate) fn get(&self) -> StoreResult<Pooled<'_>> {
        let deadline = Instant::now() + self.settings.connect_timeout;
        let mut st = self.lock();
        loop {
            if let Some(c) = st.idle.pop() {
                if c.client.is_closed() {
                    st.open -= 1;
                    continue;
                }
                return Ok(Pooled {
                    pool: self,
                    conn: Some(c),
                });
            }
            if st.open < self.settings.connections {
                st.open += 1;
                drop(st);
                return match crate::blocking::section(|| self.settings.connect_sync()) {
                    Ok((client, watch)) => Ok(Pooled {
                        pool: self,
                        conn: Some(PgConn {
                            client,
                            watch,
                            prepared: HashMap::new(),
                        }),
                    }),
                    Err(e) => {
                        self.lock().open -= 1;
                        self.freed.notify_one();
                        Err(e)
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(StoreError::Commit(format!(
                    "all {} PostgreSQL connections stayed busy for {:?}",
                    self.settings.connections, self.settings.connect_timeout
                )));
            }
            st = crate::blocking::section(|| match self.freed.wait_timeout(st, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            });
        }
    }
}
