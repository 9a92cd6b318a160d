//! The management API in the running daemon: a [`Portal`] per request, on the engine of the
//! moment, so a reload (SIGHUP) changes levels, classes and `enrol_timeout` for the API as
//! it does for logins, and the proofs go through that engine's guessing gate.

use super::{Portal, Prover};
use crate::admin::Admin;
use crate::crypto::Keys;
use crate::engine::Engine;
use crate::store::AdminStore;
use std::sync::Arc;

/// Where the engine of the moment comes from (the daemon's reload handle).
pub trait LiveEngine: Send + Sync {
    fn engine(&self) -> Arc<Engine>;
}

pub struct Portals {
    store: Arc<dyn AdminStore>,
    keys: Arc<Keys>,
    live: Arc<dyn LiveEngine>,
}

impl Portals {
    pub fn new(store: Arc<dyn AdminStore>, keys: Arc<Keys>, live: Arc<dyn LiveEngine>) -> Portals {
        Portals { store, keys, live }
    }

    /// A portal on the current engine and configuration.
    pub fn portal(&self) -> Portal {
        let engine = self.live.engine();
        let admin = Admin::new(
            engine.shared_config(),
            self.store.clone(),
            self.keys.clone(),
        );
        let prover: Arc<dyn Prover> = engine;
        Portal::new(admin, prover)
    }
}
