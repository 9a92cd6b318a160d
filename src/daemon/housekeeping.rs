//! What runs beside the front-ends and touches the database for the daemon itself: the
//! systemd watchdog's probe and the hourly audit pruning, through [`Housekeeping`].

use super::notify;
use super::EngineHandle;
use crate::engine::Clock;
use crate::store::DaemonStore;
use std::sync::Arc;

/// What the daemon asks of the database besides logins (those go through the engine): the
/// watchdog's probe, the audit's pruning and `status`'s counts, counted where the rows are.
/// Errors are the database's, as text, so the front-ends that answer `status` need no store.
pub trait Housekeeping: Send + Sync {
    /// One cheap read; `Err` when the database does not answer.
    fn ping(&self) -> Result<(), String>;
    /// (accounts, tokens)
    fn counts(&self) -> Result<(u64, u64), String>;
    /// Deletes audit records older than `before_ms`; returns how many.
    fn prune_audit(&self, before_ms: i64) -> Result<usize, String>;
}

/// [`Housekeeping`] on the store's daemon side.
pub(super) struct StoreHousekeeping(pub(super) Arc<dyn DaemonStore>);

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

/// Pings systemd's watchdog only while the store answers: a daemon whose database hangs is
/// restarted rather than left rejecting every login.
pub(super) async fn watchdog(handle: Arc<EngineHandle>, every: std::time::Duration) {
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
pub(super) async fn prune_audit(handle: Arc<EngineHandle>) {
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
