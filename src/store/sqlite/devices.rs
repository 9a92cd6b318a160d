//! Trusted devices (`DeviceStore`): plain statements on the pool's connections, each durable
//! before it returns. Not through the group committer: a device is made or used by a web
//! login now and then, not by every mail client poll.

use super::SqliteStore;
use crate::store::devices::{DeviceStore, NewDevice, TrustedDevice};
use crate::store::StoreResult;
use rusqlite::{params, OptionalExtension, Row};

const COLS: &str = "id, account_id, client, class, label, hash, binding, created_at, \
                    last_used_at, expires_at";

fn device_from_row(r: &Row) -> rusqlite::Result<TrustedDevice> {
    Ok(TrustedDevice {
        id: r.get(0)?,
        account_id: r.get(1)?,
        client: r.get(2)?,
        class: r.get(3)?,
        label: r.get(4)?,
        hash: r.get(5)?,
        binding: r.get(6)?,
        created_at: r.get(7)?,
        last_used_at: r.get(8)?,
        expires_at: r.get(9)?,
    })
}

impl DeviceStore for SqliteStore {
    fn insert_device(&self, d: &NewDevice<'_>, keep: usize) -> StoreResult<i64> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO trusted_devices
                 (account_id, client, class, label, hash, binding, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                d.account_id,
                d.client,
                d.class,
                d.label,
                d.hash,
                d.binding,
                d.created_at,
                d.expires_at
            ],
        )?;
        let id = tx.last_insert_rowid();
        // The newest `keep` by last use (a device never used counts from its creation) stay.
        tx.execute(
            "DELETE FROM trusted_devices WHERE account_id = ?1 AND id NOT IN (
                 SELECT id FROM trusted_devices WHERE account_id = ?1
                 ORDER BY COALESCE(last_used_at, created_at) DESC, id DESC LIMIT ?2)",
            params![d.account_id, keep as i64],
        )?;
        tx.commit()?;
        Ok(id)
    }

    fn device_by_hash(&self, hash: &[u8]) -> StoreResult<Option<TrustedDevice>> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(&format!(
            "SELECT {COLS} FROM trusted_devices WHERE hash = ?1"
        ))?;
        Ok(st.query_row([hash], device_from_row).optional()?)
    }

    fn devices(&self, account_id: i64) -> StoreResult<Vec<TrustedDevice>> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(&format!(
            "SELECT {COLS} FROM trusted_devices WHERE account_id = (SELECT ?1) ORDER BY id"
        ))?;
        let rows = st.query_map([account_id], device_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn touch_device(&self, id: i64, now: i64) -> StoreResult<()> {
        self.conn().execute(
            "UPDATE trusted_devices SET last_used_at = ?2 WHERE id = ?1",
            params![id, now],
        )?;
        Ok(())
    }

    fn delete_device(&self, account_id: i64, id: i64) -> StoreResult<bool> {
        let n = self.conn().execute(
            "DELETE FROM trusted_devices WHERE account_id = ?1 AND id = ?2",
            params![account_id, id],
        )?;
        Ok(n > 0)
    }

    fn delete_devices(&self, account_id: i64) -> StoreResult<usize> {
        Ok(self.conn().execute(
            "DELETE FROM trusted_devices WHERE account_id = ?1",
            [account_id],
        )?)
    }
}
