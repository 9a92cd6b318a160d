//! The audit's reads and pruning, and the daemon's status queries.

use super::{audit_from_row, SqliteStore};
use crate::model::{AuditFilter, AuditRecord};
use crate::store::{AuditStore, Counts, StatusStore, StoreResult};
use rusqlite::params;

impl AuditStore for SqliteStore {
    fn audit(&self, f: &AuditFilter) -> StoreResult<Vec<AuditRecord>> {
        let conn = self.conn();
        let limit = if f.limit == 0 {
            i64::MAX
        } else {
            f.limit as i64
        };
        // Newest `limit` rows, shown oldest first as a log reads.
        let mut st = conn.prepare_cached(
            "SELECT * FROM (
                SELECT ts_ms, user, service, rhost, client, verdict, reason, serial, id
                FROM audit WHERE (?1 IS NULL OR user = ?1) AND (?2 IS NULL OR ts_ms >= ?2)
                ORDER BY id DESC LIMIT ?3) ORDER BY id",
        )?;
        let rows = st.query_map(params![f.user, f.since_ms, limit], audit_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn prune_audit(&self, before_ms: i64) -> StoreResult<usize> {
        Ok(self
            .conn()
            .execute("DELETE FROM audit WHERE ts_ms < ?1", [before_ms])?)
    }
}

impl StatusStore for SqliteStore {
    fn ping(&self) -> StoreResult<()> {
        self.conn()
            .query_row("SELECT count(*) FROM meta WHERE name = 'ping'", [], |_| {
                Ok(())
            })?;
        Ok(())
    }

    fn counts(&self) -> StoreResult<Counts> {
        // Counted where the rows are: loading every account and token to count them cost a
        // status request as much as a full listing.
        let conn = self.conn();
        let (accounts, tokens) = conn.query_row(
            "SELECT (SELECT count(*) FROM accounts), (SELECT count(*) FROM tokens)",
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
        )?;
        Ok(Counts {
            accounts: u64::try_from(accounts).unwrap_or(0),
            tokens: u64::try_from(tokens).unwrap_or(0),
        })
    }
}
