//! `otpd serve`: open everything, start the front-ends, run until SIGTERM/SIGINT.

use super::{CliError, Outcome};
use crate::admin;
use crate::config::Config;
use crate::engine::Engine;
use crate::front::Housekeeping;
use crate::store::DaemonStore;
use std::sync::Arc;

pub fn run(mut cfg: Config, config_path: Option<&std::path::Path>) -> Result<Outcome, CliError> {
    quick_start_socket(&mut cfg, config_path);
    // On a fresh machine (nothing there yet) serve sets itself up, so the quick start is one
    // command. A half-present state (a database without its key, or a key without its
    // database) is refused by init.
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
    if !cfg.socket.path.as_os_str().is_empty() {
        println!("otpd: socket {}", cfg.socket.path.display());
    }
    let (store, keys) = admin::open(&cfg)?;
    let cfg = Arc::new(cfg);
    let engine = Arc::new(Engine::for_daemon(
        cfg.clone(),
        store.clone(),
        keys,
        Arc::new(crate::engine::SystemClock),
    ));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Other(format!("cannot start the runtime: {e}")))?;
    // The daemon's housekeeping sees the store's audit and status side only; logins go
    // through the engine's login side.
    let handle = Arc::new(crate::front::EngineHandle::new(
        engine,
        config_path.map(|p| p.to_path_buf()),
        Arc::new(StoreHousekeeping(store)),
    ));
    rt.block_on(crate::front::serve(handle))
        .map_err(|e| CliError::Other(e.to_string()))?;
    Ok(Outcome::Ok)
}

/// The front-ends' housekeeping port on the store's daemon side.
struct StoreHousekeeping(Arc<dyn DaemonStore>);

impl Housekeeping for StoreHousekeeping {
    fn ping(&self) -> Result<(), String> {
        self.0.ping().map_err(|e| e.to_string())
    }

    fn counts(&self) -> Result<(u64, u64), String> {
        self.0
            .counts()
            .map(|c| (c.accounts, c.tokens))
            .map_err(|e| e.to_string())
    }

    fn prune_audit(&self, before_ms: i64) -> Result<usize, String> {
        self.0.prune_audit(before_ms).map_err(|e| e.to_string())
    }
}

/// From a clone, without a configuration file and not as root, `/run/otpd` cannot be
/// created: the quick start then puts the socket into the state directory instead of failing.
/// A socket path that was asked for (file or environment) is never moved.
fn quick_start_socket(cfg: &mut Config, config_path: Option<&std::path::Path>) {
    let default = crate::config::SocketConfig::default().path;
    if config_path.is_some()
        || std::env::var_os("OTPD__SOCKET__PATH").is_some()
        || cfg.socket.path != default
    {
        return;
    }
    let creatable = default
        .parent()
        .is_some_and(|dir| dir.is_dir() || std::fs::create_dir_all(dir).is_ok());
    if !creatable {
        let fallback = cfg.data_dir.join("otpd.sock");
        tracing::warn!(
            "cannot create {}; without a configuration file the socket goes to {} instead",
            default.display(),
            fallback.display()
        );
        cfg.socket.path = fallback;
        // A trial run as a normal user: that user may ask its own daemon (`otpd status`);
        // it can read the key file anyway.
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if !cfg.socket.allow_uids.contains(&me) {
            cfg.socket.allow_uids.push(me);
        }
    }
}
