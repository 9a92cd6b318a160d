//! Front-ends: protocol in, `CheckRequest` to the engine, `Decision` back out as bytes.

use crate::config::Config;
use crate::engine::{Clock, Engine};
use std::sync::Arc;

pub mod notify;
pub mod radius;

#[derive(Debug, thiserror::Error)]
pub enum FrontError {
    #[error("{0}")]
    Start(String),
}

/// Starts every configured front-end and runs until SIGTERM or SIGINT.
pub async fn serve(cfg: Arc<Config>, engine: Arc<Engine>) -> Result<(), FrontError> {
    let _pruner = tokio::spawn(prune_audit(cfg.clone(), engine.clone()));
    if let Some(every) = notify::watchdog_interval() {
        tokio::spawn(watchdog(engine.clone(), every / 2));
    }
    let radius = radius::start(&cfg, engine.clone())
        .await
        .map_err(FrontError::Start)?;
    let stop = shutdown_signal();
    tracing::info!("otpd ready");
    notify::notify("READY=1");
    stop.await;
    notify::notify("STOPPING=1");
    tracing::info!("otpd stopping");
    if let Some(r) = radius {
        r.stop().await;
    }
    Ok(())
}

/// Pings systemd's watchdog only while the store answers: a daemon whose database hangs is
/// restarted rather than left rejecting every login.
async fn watchdog(engine: Arc<Engine>, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let store = engine.store().clone();
        let probe = tokio::time::timeout(
            every,
            tokio::task::spawn_blocking(move || store.meta("watchdog")),
        )
        .await;
        match probe {
            Ok(Ok(Ok(_))) => notify::notify("WATCHDOG=1"),
            other => tracing::error!("watchdog: store did not answer: {other:?}"),
        }
    }
}

/// Hourly pruning of old audit records (`[audit] keep_days`).
async fn prune_audit(cfg: Arc<Config>, engine: Arc<Engine>) {
    let keep_days = cfg.audit.keep_days;
    if keep_days == 0 {
        return;
    }
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        tick.tick().await;
        let store = engine.store().clone();
        let before_ms = crate::engine::SystemClock.now_ms() - i64::from(keep_days) * 86_400_000;
        match tokio::task::spawn_blocking(move || store.prune_audit(before_ms)).await {
            Ok(Ok(n)) if n > 0 => {
                tracing::info!("audit: pruned {n} records older than {keep_days} days")
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!("audit pruning failed: {e}"),
            Err(e) => tracing::warn!("audit pruning task failed: {e}"),
        }
    }
}

/// Registers the SIGTERM/SIGINT handlers at once and returns a future that ends on either.
/// Registering before READY matters: a SIGTERM sent right after READY would otherwise hit
/// the default action and kill the process uncleanly.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut t), Ok(mut i)) => {
                tokio::select! {
                    _ = t.recv() => {}
                    _ = i.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}
