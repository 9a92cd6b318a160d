//! Trusted devices ("trust this browser for 30 days"): what the store keeps of each, behind a
//! trait of their own so that a store can add them without touching the rest
//! ([`crate::store::LoginStore::devices`] says whether it has them).
//!
//! A device is never stored in a form that logs in: only the keyed hash of its token (the
//! engine makes and compares it, engine/trusted.rs), and a keyed hash of what the account
//! looked like when the device was trusted (`binding`), so that a change made by any path
//! ends it at its next use. The store makes no decisions about them.

use super::StoreResult;

/// One trusted device of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedDevice {
    pub id: i64,
    pub account_id: i64,
    /// The front-end client it was trusted through (a RADIUS or HTTP client name, "pam").
    pub client: Option<String>,
    /// The service class it was trusted for.
    pub class: String,
    /// What the user calls it ("Firefox on the office laptop"); shown in lists and the audit.
    pub label: String,
    /// Keyed hash of the device token.
    pub hash: Vec<u8>,
    /// Keyed hash of the account's level, PIN hash and active tokens when it was trusted.
    pub binding: Vec<u8>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub expires_at: i64,
}

/// A device to store (the id and last use come from the store).
#[derive(Debug, Clone)]
pub struct NewDevice<'a> {
    pub account_id: i64,
    pub client: Option<&'a str>,
    pub class: &'a str,
    pub label: &'a str,
    pub hash: &'a [u8],
    pub binding: &'a [u8],
    pub created_at: i64,
    pub expires_at: i64,
}

/// What a login and the administration need of trusted devices. Every write is durable
/// before it returns, except `touch_device` (bookkeeping: losing it in a crash loses one
/// "last used" time).
pub trait DeviceStore: Send + Sync {
    /// Stores a device and keeps at most `keep` of the account's devices: the least
    /// recently used ones beyond that are dropped in the same step. Returns its id.
    fn insert_device(&self, d: &NewDevice<'_>, keep: usize) -> StoreResult<i64>;
    /// The device whose token hashes to `hash`, whoever's it is (the engine checks account,
    /// client, class and lifetime, so that each refusal says why).
    fn device_by_hash(&self, hash: &[u8]) -> StoreResult<Option<TrustedDevice>>;
    /// The account's devices, oldest first.
    fn devices(&self, account_id: i64) -> StoreResult<Vec<TrustedDevice>>;
    /// Records a use.
    fn touch_device(&self, id: i64, now: i64) -> StoreResult<()>;
    /// Removes one device of the account; `false` when it has no device `id`.
    fn delete_device(&self, account_id: i64, id: i64) -> StoreResult<bool>;
    /// Removes every device of the account; returns how many there were.
    fn delete_devices(&self, account_id: i64) -> StoreResult<usize>;
}
