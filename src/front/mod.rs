//! Front-ends: protocol in, `CheckRequest` to the engine, `Decision` back out as bytes.

use crate::engine::Clock;
use std::sync::Arc;

pub mod metrics_http;
pub mod notify;
pub mod protocol;
pub mod radius;
pub mod reload;
pub mod socket;

pub use reload::EngineHandle;

#[derive(Debug, thiserror::Error)]
pub enum FrontError {
    #[error("{0}")]
    Start(String),
}

/// What the daemon asks of the database besides logins (those go through the engine): the
/// watchdog's probe, the audit's pruning and `status`'s counts, counted where the rows are.
/// The assembly (`otpd serve`) provides it; errors are the database's, as text.
pub trait Housekeeping: Send + Sync {
    /// One cheap read; `Err` when the database does not answer.
    fn ping(&self) -> Result<(), String>;
    /// (accounts, tokens)
    fn counts(&self) -> Result<(u64, u64), String>;
    /// Deletes audit records older than `before_ms`; returns how many.
    fn prune_audit(&self, before_ms: i64) -> Result<usize, String>;
}

/// How long a stop waits for requests already being worked on.
const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Starts every configured front-end and runs until SIGTERM or SIGINT.
pub async fn serve(handle: Arc<EngineHandle>) -> Result<(), FrontError> {
    // Uptime counts from here, not from the first request that touches the metrics.
    crate::metrics::get();
    let engine = handle.current();
    let cfg = Arc::new(engine.config().clone());
    let stop = shutdown_signal()
        .map_err(|e| FrontError::Start(format!("cannot take over SIGTERM/SIGINT: {e}")))?;
    // Bound before READY=1: a unit ordered after otpd can rely on the socket being there.
    let socket = match socket::SocketFront::bind(&cfg.socket).await? {
        Some(front) => Some(front.spawn(handle.clone())),
        None => {
            tracing::info!("socket switched off (socket.path is empty)");
            None
        }
    };
    let _pruner = tokio::spawn(prune_audit(handle.clone()));
    let reloader = reload::on_sighup(handle.clone())
        .map_err(|e| FrontError::Start(format!("cannot take over SIGHUP for reload: {e}")))?;
    tokio::spawn(reloader);
    if let Some(addr) = cfg.metrics.listen {
        let l = metrics_http::bind(addr)
            .await
            .map_err(|e| FrontError::Start(format!("metrics endpoint {addr}: {e}")))?;
        tracing::info!("metrics endpoint on http://{addr}/metrics");
        tokio::spawn(metrics_http::serve(l));
    }
    if let Some(every) = notify::watchdog_interval() {
        tokio::spawn(watchdog(handle.clone(), every / 2));
    }
    let radius = radius::start(&cfg, handle.clone())
        .await
        .map_err(FrontError::Start)?;
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

/// Pings systemd's watchdog only while the store answers: a daemon whose database hangs is
/// restarted rather than left rejecting every login.
async fn watchdog(handle: Arc<EngineHandle>, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let h = handle.clone();
        let probe = tokio::time::timeout(
            every,
            tokio::task::spawn_blocking(move || h.housekeeping().ping()),
        )
        .await;
        match probe {
            Ok(Ok(Ok(_))) => notify::notify("WATCHDOG=1"),
            other => tracing::error!("watchdog: store did not answer: {other:?}"),
        }
    }
}

/// Hourly pruning of old audit records (`[audit] keep_days`, as configured now).
async fn prune_audit(handle: Arc<EngineHandle>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        tick.tick().await;
        let engine = handle.current();
        let keep_days = engine.config().audit.keep_days;
        if keep_days == 0 {
            continue;
        }
        let h = handle.clone();
        let before_ms = crate::engine::SystemClock.now_ms() - i64::from(keep_days) * 86_400_000;
        match tokio::task::spawn_blocking(move || h.housekeeping().prune_audit(before_ms)).await {
            Ok(Ok(n)) if n > 0 => {
                tracing::info!("audit: pruned {n} records older than {keep_days} days")
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!("audit pruning failed: {e}"),
            Err(e) => tracing::warn!("audit pruning task failed: {e}"),
        }
    }
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
