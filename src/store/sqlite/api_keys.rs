//! [`ApiKeyStore`] on SQLite: plain statements on the pool's connections (no login waits on
//! them).

use super::{one_row, SqliteStore};
use crate::model::{ApiKey, ApiScope};
use crate::store::api_keys::ApiKeyStore;
use crate::store::{StoreError, StoreResult};
use rusqlite::{params, OptionalExtension, Row};

const COLS: &str = "id, name, scope, created_at, last_used_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<ApiKey> {
    let scope: String = r.get(2)?;
    let scope = ApiScope::parse(&scope).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            2,
            rusqlite::types::Type::Text,
            format!("unknown API key scope `{scope}`").into(),
        )
    })?;
    Ok(ApiKey {
        id: r.get(0)?,
        name: r.get(1)?,
        scope,
        created_at: r.get(3)?,
        last_used_at: r.get(4)?,
    })
}

impl ApiKeyStore for SqliteStore {
    fn insert_api_key(
        &self,
        name: &str,
        scope: ApiScope,
        hash: &[u8],
        now: i64,
    ) -> StoreResult<ApiKey> {
        let conn = self.conn();
        match conn.execute(
            "INSERT INTO api_keys (name, scope, hash, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![name, scope.as_str(), hash, now],
        ) {
            Ok(_) => {}
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                return Err(StoreError::Exists(format!("API key `{name}`")));
            }
            Err(e) => return Err(e.into()),
        }
        Ok(ApiKey {
            id: conn.last_insert_rowid(),
            name: name.to_string(),
            scope,
            created_at: now,
            last_used_at: None,
        })
    }

    fn api_key_by_hash(&self, hash: &[u8]) -> StoreResult<Option<ApiKey>> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {COLS} FROM api_keys WHERE hash = ?1"),
                [hash],
                from_row,
            )
            .optional()?)
    }

    fn api_keys(&self) -> StoreResult<Vec<ApiKey>> {
        let conn = self.conn();
        let mut st = conn.prepare(&format!("SELECT {COLS} FROM api_keys ORDER BY name"))?;
        let rows = st.query_map([], from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn delete_api_key(&self, name: &str) -> StoreResult<()> {
        let n = self
            .conn()
            .execute("DELETE FROM api_keys WHERE name = ?1", [name])?;
        one_row(n, &format!("API key `{name}`"))
    }

    fn touch_api_key(&self, id: i64, now: i64) -> StoreResult<()> {
        self.conn().execute(
            "UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1",
            params![id, now],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_by_hash_and_names_are_unique() {
        let s = SqliteStore::open_in_memory().expect("store");
        let k = s
            .insert_api_key("portal", ApiScope::Portal, &[7u8; 32], 100)
            .expect("insert");
        assert_eq!(k.scope, ApiScope::Portal);
        assert!(matches!(
            s.insert_api_key("portal", ApiScope::Read, &[8u8; 32], 101),
            Err(StoreError::Exists(_))
        ));
        let found = s.api_key_by_hash(&[7u8; 32]).expect("read").expect("found");
        assert_eq!(found.name, "portal");
        assert!(s.api_key_by_hash(&[9u8; 32]).expect("read").is_none());
        s.touch_api_key(found.id, 160).expect("touch");
        assert_eq!(s.api_keys().expect("list")[0].last_used_at, Some(160));
        s.delete_api_key("portal").expect("delete");
        assert!(s.api_key_by_hash(&[7u8; 32]).expect("read").is_none());
        assert!(matches!(
            s.delete_api_key("portal"),
            Err(StoreError::NotFound(_))
        ));
    }
}
