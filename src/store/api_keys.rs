//! The management API's keys: a small store of its own, so a store that does not keep them
//! yet (see [`AdminStore::api_keys`](super::AdminStore::api_keys)) still serves logins.
//! Only a keyed hash of each key is stored; the hash is deterministic (the key is 256 random
//! bits, so a salt adds nothing), which lets a request find its key by one index lookup.

use super::StoreResult;
use crate::model::{ApiKey, ApiScope};

pub trait ApiKeyStore: Send + Sync {
    /// Stores a new key; `Exists` when the name is taken.
    fn insert_api_key(
        &self,
        name: &str,
        scope: ApiScope,
        hash: &[u8],
        now: i64,
    ) -> StoreResult<ApiKey>;
    /// The key whose keyed hash is `hash`, if any.
    fn api_key_by_hash(&self, hash: &[u8]) -> StoreResult<Option<ApiKey>>;
    /// Every key, by name.
    fn api_keys(&self) -> StoreResult<Vec<ApiKey>>;
    /// Deletes the key; `NotFound` when there is none of that name. Durable before it
    /// returns: the next request with it is refused.
    fn delete_api_key(&self, name: &str) -> StoreResult<()>;
    /// Records a use (Unix seconds).
    fn touch_api_key(&self, id: i64, now: i64) -> StoreResult<()>;
}
