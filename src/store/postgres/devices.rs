//! Trusted devices (`DeviceStore`) on PostgreSQL: plain statements on the pool's sessions,
//! each committed (and on the synchronous standby) before it returns, as on SQLite. Not
//! through the writer: a device is made or used by a web login now and then. Every node
//! reads the same table, so a device trusted through one node is known to all of them and a
//! revoke on one ends it everywhere at its next use.

use super::PgStore;
use crate::store::devices::{DeviceStore, NewDevice, TrustedDevice};
use crate::store::{StoreError, StoreResult};
use postgres::Row;

const COLS: &str = "id, account_id, client, class, label, hash, binding, created_at, \
                    last_used_at, expires_at";

fn device(r: &Row) -> StoreResult<TrustedDevice> {
    Ok(TrustedDevice {
        id: r.try_get(0)?,
        account_id: r.try_get(1)?,
        client: r.try_get(2)?,
        class: r.try_get(3)?,
        label: r.try_get(4)?,
        hash: r.try_get(5)?,
        binding: r.try_get(6)?,
        created_at: r.try_get(7)?,
        last_used_at: r.try_get(8)?,
        expires_at: r.try_get(9)?,
    })
}

fn count(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

impl DeviceStore for PgStore {
    fn insert_device(&self, d: &NewDevice<'_>, keep: usize) -> StoreResult<i64> {
        let keep = i64::try_from(keep)
            .map_err(|_| StoreError::Corrupt(format!("device bound {keep} out of range")))?;
        let mut c = self.pool.get()?;
        c.transaction(|tx| {
            // Two nodes trusting devices of one account at once would each keep `keep` of
            // what they saw: the account's row lock makes the second wait for the first.
            tx.execute(
                "SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE",
                &[&d.account_id],
            )?;
            let id: i64 = tx
                .query_one(
                    "INSERT INTO trusted_devices
                         (account_id, client, class, label, hash, binding, created_at,
                          expires_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                    &[
                        &d.account_id,
                        &d.client,
                        &d.class,
                        &d.label,
                        &d.hash,
                        &d.binding,
                        &d.created_at,
                        &d.expires_at,
                    ],
                )?
                .try_get(0)?;
            // The newest `keep` by last use (a device never used counts from its creation)
            // stay, as on SQLite.
            tx.execute(
                "DELETE FROM trusted_devices WHERE account_id = $1 AND id NOT IN (
                     SELECT id FROM trusted_devices WHERE account_id = $1
                     ORDER BY COALESCE(last_used_at, created_at) DESC, id DESC LIMIT $2)",
                &[&d.account_id, &keep],
            )?;
            Ok(id)
        })
    }

    fn device_by_hash(&self, hash: &[u8]) -> StoreResult<Option<TrustedDevice>> {
        let mut c = self.pool.get()?;
        c.query_opt(
            &format!("SELECT {COLS} FROM trusted_devices WHERE hash = $1"),
            &[&hash],
        )?
        .map(|r| device(&r))
        .transpose()
    }

    fn devices(&self, account_id: i64) -> StoreResult<Vec<TrustedDevice>> {
        let mut c = self.pool.get()?;
        c.query(
            &format!("SELECT {COLS} FROM trusted_devices WHERE account_id = $1 ORDER BY id"),
            &[&account_id],
        )?
        .iter()
        .map(device)
        .collect()
    }

    fn touch_device(&self, id: i64, now: i64) -> StoreResult<()> {
        self.pool.get()?.execute(
            "UPDATE trusted_devices SET last_used_at = $2 WHERE id = $1",
            &[&id, &now],
        )?;
        Ok(())
    }

    fn delete_device(&self, account_id: i64, id: i64) -> StoreResult<bool> {
        let n = self.pool.get()?.execute(
            "DELETE FROM trusted_devices WHERE account_id = $1 AND id = $2",
            &[&account_id, &id],
        )?;
        Ok(n > 0)
    }

    fn delete_devices(&self, account_id: i64) -> StoreResult<usize> {
        let n = self.pool.get()?.execute(
            "DELETE FROM trusted_devices WHERE account_id = $1",
            &[&account_id],
        )?;
        Ok(count(n))
    }

    fn delete_all_devices(&self) -> StoreResult<usize> {
        let n = self
            .pool
            .get()?
            .execute("DELETE FROM trusted_devices", &[])?;
        Ok(count(n))
    }
}
