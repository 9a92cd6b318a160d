//! The audit's reads and pruning, and the daemon's status queries.

use super::rows::{self, AUDIT_COLS};
use super::PgStore;
use crate::model::{AuditFilter, AuditRecord};
use crate::store::{AuditStore, Counts, StatusStore, StoreResult};

impl AuditStore for PgStore {
    fn audit(&self, f: &AuditFilter) -> StoreResult<Vec<AuditRecord>> {
        let mut c = self.pool.get()?;
        let limit = if f.limit == 0 {
            i64::MAX
        } else {
            i64::try_from(f.limit).unwrap_or(i64::MAX)
        };
        // Newest `limit` rows, shown oldest first as a log reads.
        let found = c.query(
            &format!(
                "SELECT {AUDIT_COLS} FROM (
                    SELECT * FROM audit
                    WHERE ($1::text IS NULL OR \"user\" = $1)
                      AND ($2::bigint IS NULL OR ts_ms >= $2)
                    ORDER BY id DESC LIMIT $3) r ORDER BY id"
            ),
            &[&f.user, &f.since_ms, &limit],
        )?;
        found.iter().map(rows::audit).collect()
    }

    fn prune_audit(&self, before_ms: i64) -> StoreResult<usize> {
        let n = self
            .pool
            .get()?
            .execute("DELETE FROM audit WHERE ts_ms < $1", &[&before_ms])?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}

impl StatusStore for PgStore {
    fn ping(&self) -> StoreResult<()> {
        self.pool.get()?.query_opt("SELECT 1", &[])?;
        Ok(())
    }

    fn counts(&self) -> StoreResult<Counts> {
        let mut c = self.pool.get()?;
        let r = c.query_opt(
            "SELECT (SELECT count(*) FROM accounts), (SELECT count(*) FROM tokens)",
            &[],
        )?;
        let (accounts, tokens) = match r {
            Some(r) => (r.try_get::<_, i64>(0)?, r.try_get::<_, i64>(1)?),
            None => (0, 0),
        };
        Ok(Counts {
            accounts: u64::try_from(accounts).unwrap_or(0),
            tokens: u64::try_from(tokens).unwrap_or(0),
        })
    }
}
