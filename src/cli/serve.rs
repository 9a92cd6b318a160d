//! `otpd serve`: open everything, start the front-ends, run until SIGTERM/SIGINT.

use super::{CliError, Outcome};
use crate::admin;
use crate::config::Config;
use crate::engine::Engine;
use std::sync::Arc;

pub fn run(cfg: Config) -> Result<Outcome, CliError> {
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
    // The engine knows no protocol: the two-step login's State lifetime is RADIUS's setting,
    // handed over here.
    let engine = Arc::new(
        Engine::new(cfg.clone(), store, keys).with_challenge_lifetime(cfg.radius.state_lifetime),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Other(format!("cannot start the runtime: {e}")))?;
    rt.block_on(crate::front::serve(cfg, engine))
        .map_err(|e| CliError::Other(e.to_string()))?;
    Ok(Outcome::Ok)
}
