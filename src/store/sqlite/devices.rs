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

    fn delete_all_devices(&self) -> StoreResult<usize> {
        Ok(self.conn().execute("DELETE FROM trusted_devices", [])?)
    }

    fn delete_devices(&self, account_id: i64) -> StoreResult<usize> {
        Ok(self.conn().execute(
            "DELETE FROM trusted_devices WHERE account_id = ?1",
            [account_id],
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::AdminStore;

    fn device(account_id: i64, hash: &[u8], at: i64) -> NewDevice<'_> {
        NewDevice {
            account_id,
            client: Some("portal"),
            class: "web",
            label: "laptop",
            hash,
            binding: b"b",
            created_at: at,
            expires_at: at + 100,
        }
    }

    #[test]
    fn the_least_recently_used_go_first_and_deletes_stay_in_their_account() {
        let s = SqliteStore::open_in_memory().expect("store");
        let a = s.create_account("alice", "off", None, 0).expect("alice");
        let b = s.create_account("bob", "off", None, 0).expect("bob");
        let first = s.insert_device(&device(a, b"h1", 1), 2).expect("1");
        let second = s.insert_device(&device(a, b"h2", 2), 2).expect("2");
        // The oldest one was used since: the untouched second goes when a third comes.
        s.touch_device(first, 10).expect("touch");
        let third = s.insert_device(&device(a, b"h3", 3), 2).expect("3");
        let ids: Vec<i64> = s.devices(a).expect("list").iter().map(|d| d.id).collect();
        assert_eq!(ids, [first, third]);
        assert!(s.device_by_hash(b"h2").expect("lookup").is_none());
        assert_eq!(
            s.device_by_hash(b"h3").expect("lookup").map(|d| d.id),
            Some(third)
        );
        let _ = second;
        // bob cannot delete alice's device by its id.
        assert!(!s.delete_device(b, first).expect("delete"));
        assert!(s.delete_device(a, first).expect("delete"));
        // A hash is unique: the same token cannot be stored twice.
        assert!(s.insert_device(&device(b, b"h3", 4), 2).is_err());
        assert_eq!(s.delete_all_devices().expect("all"), 1);
    }
}
