//! What the engine's unit tests share: an engine and an admin on one in-memory store, with a
//! clock the test moves, and the RFC 4226 secret.

use super::{Clock, Engine};
use crate::admin::{Admin, TokenOptions};
use crate::config::Config;
use crate::crypto::{Keys, MasterKey};
use crate::model::TokenKind;
use crate::store::{AdminStore, SqliteStore};
use crate::tokens::oath::Algorithm;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// RFC 4226 Appendix D's secret, raw and in base32.
pub const SECRET: &[u8] = b"12345678901234567890";
pub const SECRET_B32: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

/// A clock that stands still until the test moves it (milliseconds).
pub struct TestClock(pub AtomicI64);

impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

impl TestClock {
    pub fn now_s(&self) -> i64 {
        self.now_ms() / 1000
    }

    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs * 1000, Ordering::SeqCst);
    }
}

pub struct Parts {
    pub engine: Engine,
    pub admin: Admin,
    pub clock: Arc<TestClock>,
    pub store: Arc<dyn AdminStore>,
    pub keys: Arc<Keys>,
}

/// An engine and an admin for `cfg` (finished already) on `store`, sharing keys and clock.
pub fn parts_with_store(cfg: Arc<Config>, store: Arc<dyn AdminStore>) -> Parts {
    let keys = Arc::new(Keys::new(&MasterKey::from_bytes([3u8; 32])));
    let clock = Arc::new(TestClock(AtomicI64::new(1_700_000_000_000)));
    let engine = Engine::with_clock(cfg.clone(), store.clone(), keys.clone(), clock.clone());
    let mut admin = Admin::new(cfg, store.clone(), keys.clone());
    admin.clock = clock.clone();
    Parts {
        engine,
        admin,
        clock,
        store,
        keys,
    }
}

/// The same on a fresh in-memory store.
pub fn parts(cfg: Arc<Config>) -> Parts {
    parts_with_store(
        cfg,
        Arc::new(SqliteStore::open_in_memory().expect("in-memory store")),
    )
}

/// An OATH token of `kind` on [`SECRET`], 6 digits, SHA-1, 30 s.
pub fn oath_token(kind: TokenKind, active: bool) -> TokenOptions {
    TokenOptions {
        kind,
        secret_b32: Some(SECRET_B32.to_string().into()),
        digits: 6,
        algorithm: Algorithm::Sha1,
        period: 30,
        label: String::new(),
        active,
    }
}
