//! [`ApiKeyStore`] on PostgreSQL: plain statements on the pool's sessions, each committed
//! before it returns. The keys live in the database every node uses, so a key made with
//! `otpd api-key add` against any node's configuration works on all of them, and a revoke
//! ends it on all of them at its next request.

use super::{one_row, PgStore};
use crate::model::{ApiKey, ApiScope};
use crate::store::api_keys::ApiKeyStore;
use crate::store::{StoreError, StoreResult};
use postgres::error::SqlState;
use postgres::Row;

const COLS: &str = "id, name, scope, created_at, last_used_at";

fn api_key(r: &Row) -> StoreResult<ApiKey> {
    let scope: String = r.try_get(2)?;
    let scope = ApiScope::parse(&scope)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown API key scope `{scope}`")))?;
    Ok(ApiKey {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        scope,
        created_at: r.try_get(3)?,
        last_used_at: r.try_get(4)?,
    })
}

impl ApiKeyStore for PgStore {
    fn insert_api_key(
        &self,
        name: &str,
        scope: ApiScope,
        hash: &[u8],
        now: i64,
    ) -> StoreResult<ApiKey> {
        let mut c = self.pool.get()?;
        let inserted = c.query_opt(
            "INSERT INTO api_keys (name, scope, hash, created_at) VALUES ($1, $2, $3, $4)
             RETURNING id",
            &[&name, &scope.as_str(), &hash, &now],
        );
        let id: i64 = match inserted {
            Ok(Some(r)) => r.try_get(0)?,
            Ok(None) => return Err(StoreError::Corrupt("INSERT returned no id".into())),
            Err(StoreError::Postgres(e)) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                return Err(StoreError::Exists(format!("API key `{name}`")));
            }
            Err(e) => return Err(e),
        };
        Ok(ApiKey {
            id,
            name: name.to_string(),
            scope,
            created_at: now,
            last_used_at: None,
        })
    }

    fn api_key_by_hash(&self, hash: &[u8]) -> StoreResult<Option<ApiKey>> {
        let mut c = self.pool.get()?;
        c.query_opt(
            &format!("SELECT {COLS} FROM api_keys WHERE hash = $1"),
            &[&hash],
        )?
        .map(|r| api_key(&r))
        .transpose()
    }

    fn api_keys(&self) -> StoreResult<Vec<ApiKey>> {
        let mut c = self.pool.get()?;
        c.query(&format!("SELECT {COLS} FROM api_keys ORDER BY name"), &[])?
            .iter()
            .map(api_key)
            .collect()
    }

    fn delete_api_key(&self, name: &str) -> StoreResult<()> {
        let n = self
            .pool
            .get()?
            .execute("DELETE FROM api_keys WHERE name = $1", &[&name])?;
        one_row(n, &format!("API key `{name}`"))
    }

    fn touch_api_key(&self, id: i64, now: i64) -> StoreResult<()> {
        self.pool.get()?.execute(
            "UPDATE api_keys SET last_used_at = $2 WHERE id = $1",
            &[&id, &now],
        )?;
        Ok(())
    }
}
