//! The assembly: what `otpd serve` opens, builds and starts, in that order, and how it stops.

use super::housekeeping::{self, StoreHousekeeping};
use super::{metrics_http, notify, reload, DaemonError, EngineHandle};
use crate::admin;
use crate::config::Config;
use crate::engine::Engine;
use crate::front::radius;
use crate::front::socket::SocketFront;
use std::sync::Arc;

/// `otpd serve`: sets up a fresh machine, opens the store, builds the daemon's engine and
/// serves until SIGTERM or SIGINT.
pub fn serve(mut cfg: Config, config_path: Option<&std::path::Path>) -> Result<(), DaemonError> {
    quick_start_socket(&mut cfg, config_path);
    // On a fresh machine (nothing there yet) serve sets itself up, so the quick start is one
    // command. A half-present state (a database without its key, or a key without its
    // database) is refused by init.
    if admin::needs_init(&cfg) {
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
        .map_err(|e| DaemonError::Start(format!("cannot start the runtime: {e}")))?;
    // The daemon's housekeeping sees the store's audit and status side only; logins go
    // through the engine's login side.
    let handle = Arc::new(EngineHandle::new(
        engine,
        config_path.map(|p| p.to_path_buf()),
        Arc::new(StoreHousekeeping(store)),
    ));
    rt.block_on(run(handle))
}

/// How long a stop waits for requests already being worked on.
const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Starts every configured front-end and runs until SIGTERM or SIGINT.
async fn run(handle: Arc<EngineHandle>) -> Result<(), DaemonError> {
    // Uptime counts from here, not from the first request that touches the metrics.
    crate::metrics::get();
    let engine = handle.current();
    let cfg = Arc::new(engine.config().clone());
    let stop = shutdown_signal()
        .map_err(|e| DaemonError::Start(format!("cannot take over SIGTERM/SIGINT: {e}")))?;
    // Bound before READY=1: a unit ordered after otpd can rely on the socket being there.
    let socket = match SocketFront::bind(&cfg.socket).await? {
        Some(front) => Some(front.spawn(handle.clone())),
        None => {
            tracing::info!("socket switched off (socket.path is empty)");
            None
        }
    };
    let _pruner = tokio::spawn(housekeeping::prune_audit(handle.clone()));
    let reloader = reload::on_sighup(handle.clone())
        .map_err(|e| DaemonError::Start(format!("cannot take over SIGHUP for reload: {e}")))?;
    tokio::spawn(reloader);
    if let Some(addr) = cfg.metrics.listen {
        let l = metrics_http::bind(addr)
            .await
            .map_err(|e| DaemonError::Start(format!("metrics endpoint {addr}: {e}")))?;
        tracing::info!("metrics endpoint on http://{addr}/metrics");
        tokio::spawn(metrics_http::serve(l));
    }
    if let Some(every) = notify::watchdog_interval() {
        tokio::spawn(housekeeping::watchdog(handle.clone(), every / 2));
    }
    let radius = radius::start(&cfg, handle.clone())
        .await
        .map_err(DaemonError::Start)?;
    tracing::info!("otpd ready");
    notify::notify("READY=1");
    stop.await;
    notify::notify("STOPPING=1");
    tracing::info!("otpd stopping");
    // No new work from here on; what is being worked on gets its answer, within a bound.
    if let Some((task, file)) = socket {
        task.abort();
        file.remove();
    }
    if let Some(r) = radius {
        r.stop().await;
    }
    let left = handle.drained(DRAIN_LIMIT).await;
    if left > 0 {
        tracing::warn!("stopping with {left} requests unanswered after {DRAIN_LIMIT:?}");
    }
    Ok(())
}

/// Takes SIGTERM and SIGINT over before the daemon says it is ready, so a stop that comes
/// early is still an orderly one.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
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
