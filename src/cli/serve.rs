//! `otpd serve`: open everything, start the front-ends, run until SIGTERM/SIGINT.

use super::{CliError, Outcome};
use crate::admin;
use crate::config::Config;
use crate::engine::Engine;
use std::sync::Arc;

pub fn run(cfg: Config, config_path: Option<&std::path::Path>) -> Result<Outcome, CliError> {
    // On a fresh machine (nothing there yet) serve sets itself up, so the quick start is one
    // command. A half-present state (database without key) is refused by init.
    if !cfg.key_path().exists() || !cfg.database_path().exists() {
        let r = admin::init(&cfg)?;
        if r.created_key {
            tracing::warn!(
                key = %cfg.key_path().display(),
                "created a new key file; back it up apart from the database"
            );
        }
    }
    let state = std::fs::canonicalize(&cfg.data_dir).unwrap_or_else(|_| cfg.data_dir.clone());
    println!(
        "otpd {}: state directory {}",
        env!("CARGO_PKG_VERSION"),
        state.display()
    );
    let (store, keys) = admin::open(&cfg)?;
    let cfg = Arc::new(cfg);
    let engine = Arc::new(Engine::new(cfg.clone(), store, keys));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Other(format!("cannot start the runtime: {e}")))?;
    let handle = Arc::new(crate::front::EngineHandle::new(
        engine,
        config_path.map(|p| p.to_path_buf()),
    ));
    rt.block_on(crate::front::serve(handle))
        .map_err(|e| CliError::Other(e.to_string()))?;
    Ok(Outcome::Ok)
}
