//! `systemctl reload otpd` (SIGHUP): read the configuration again and, if it is valid, let
//! every request from now on see it. Requests already running finish on the engine they
//! started with: nothing in flight is lost or answered twice.

use super::housekeeping::Housekeeping;
use crate::config::Config;
use crate::engine::Engine;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

/// The engine the front-ends use, swapped whole on reload. A read lock and an `Arc` clone per
/// request: far below the cost of one login.
pub struct EngineHandle {
    current: RwLock<Arc<Engine>>,
    config_path: Option<PathBuf>,
    /// The database's housekeeping side; the store itself stays with the engine.
    housekeeping: Arc<dyn Housekeeping>,
    /// Requests between bytes in and answer out, so a stop can wait for them.
    in_flight: AtomicUsize,
    idle: tokio::sync::Notify,
    /// Counts reloads, so front-ends can rebuild what they derive from the configuration.
    generation: AtomicU64,
}

/// Held by a front-end while it works on one request.
pub struct InFlight<'a>(&'a EngineHandle);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// [`InFlight`] that owns its handle: for a request whose answer leaves from another thread
/// (a deferred RADIUS answer, sent by the store's writer).
pub struct InFlightOwned(Arc<EngineHandle>);

impl Drop for InFlightOwned {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl EngineHandle {
    pub fn new(
        engine: Arc<Engine>,
        config_path: Option<PathBuf>,
        housekeeping: Arc<dyn Housekeeping>,
    ) -> EngineHandle {
        EngineHandle {
            current: RwLock::new(engine),
            housekeeping,
            config_path,
            in_flight: AtomicUsize::new(0),
            idle: tokio::sync::Notify::new(),
            generation: AtomicU64::new(0),
        }
    }

    /// Changes with every reload that took effect.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Marks one request as being worked on until the guard drops.
    pub fn begin(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self)
    }

    /// [`EngineHandle::begin`] with a guard that may move to another thread.
    pub fn begin_owned(self: &Arc<Self>) -> InFlightOwned {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlightOwned(self.clone())
    }

    /// Waits until no request is being worked on, at most `limit`; returns how many were still
    /// running then.
    pub async fn drained(&self, limit: std::time::Duration) -> usize {
        let wait = async {
            loop {
                let notified = self.idle.notified();
                if self.in_flight.load(Ordering::Acquire) == 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(limit, wait).await;
        self.in_flight.load(Ordering::Acquire)
    }

    /// What the daemon may ask of the database besides logins.
    pub fn housekeeping(&self) -> &dyn Housekeeping {
        self.housekeeping.as_ref()
    }

    pub fn current(&self) -> Arc<Engine> {
        // A panic while holding the lock leaves a complete Arc behind: safe to take over.
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Loads the configuration file again. On success the new configuration serves every
    /// request from now on; on failure the old one stays and the error says why.
    pub fn reload(&self) -> Result<Vec<String>, String> {
        let new = Config::load(self.config_path.as_deref()).map_err(|e| e.to_string())?;
        let old = self.current();
        let warnings = needs_restart(old.config(), &new);
        let next = Arc::new(old.reconfigure(Arc::new(new)));
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = next;
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(warnings)
    }

    pub fn config_path(&self) -> Option<&Path> {
        self.config_path.as_deref()
    }
}

fn store_settings(s: &crate::config::StoreConfig) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// Settings that are read once at start (files opened, sockets bound): a changed value is
/// reported, and the running one stays until a restart.
fn needs_restart(old: &Config, new: &Config) -> Vec<String> {
    let mut w = Vec::new();
    let mut check = |key: &str, changed: bool| {
        if changed {
            w.push(format!("`{key}` changed: takes effect at the next restart"));
        }
    };
    check("data_dir", old.data_dir != new.data_dir);
    check("database", old.database_path() != new.database_path());
    check("key_file", old.key_path() != new.key_path());
    // The store is opened once; the message names the table, never the url.
    check(
        "store",
        store_settings(&old.store) != store_settings(&new.store),
    );
    check("radius.listen", old.radius.listen != new.radius.listen);
    check(
        "radius.max_in_flight",
        old.radius.max_in_flight != new.radius.max_in_flight,
    );
    check(
        "radius.max_in_flight_per_source",
        old.radius.max_in_flight_per_source != new.radius.max_in_flight_per_source,
    );
    check(
        "radius.receive_threads",
        old.radius.receive_threads != new.radius.receive_threads,
    );
    check(
        "radius.state_lifetime",
        old.radius.state_lifetime != new.radius.state_lifetime,
    );
    check("socket.path", old.socket.path != new.socket.path);
    check("socket.group", old.socket.group != new.socket.group);
    check(
        "socket.max_connections",
        old.socket.max_connections != new.socket.max_connections,
    );
    check("metrics.listen", old.metrics.listen != new.metrics.listen);
    check(
        "log",
        old.log.level != new.log.level || old.log.format != new.log.format,
    );
    w
}

/// Takes SIGHUP over from its default (which ends the process) before the daemon says it is
/// ready, then reloads on each one for as long as the daemon runs.
pub fn on_sighup(
    handle: Arc<EngineHandle>,
) -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let hup = signal(SignalKind::hangup())?;
    Ok(reload_loop(handle, hup))
}

async fn reload_loop(handle: Arc<EngineHandle>, mut hup: tokio::signal::unix::Signal) {
    while hup.recv().await.is_some() {
        super::notify::notify("RELOADING=1");
        let h = handle.clone();
        let res = tokio::task::spawn_blocking(move || h.reload()).await;
        match res {
            Ok(Ok(warnings)) => {
                crate::metrics::get().reload(true);
                for w in warnings {
                    tracing::warn!("reload: {w}");
                }
                tracing::info!("configuration reloaded");
            }
            Ok(Err(e)) => {
                crate::metrics::get().reload(false);
                tracing::error!("reload refused, the running configuration stays: {e}");
            }
            Err(e) => {
                crate::metrics::get().reload(false);
                tracing::error!("reload failed, the running configuration stays: {e}");
            }
        }
        super::notify::notify("READY=1");
    }
}
