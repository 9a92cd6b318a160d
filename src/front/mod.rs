//! Front-ends: protocol in, `CheckRequest` to the engine, `Decision` back out as bytes.

use crate::config::Config;
use crate::engine::Engine;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum FrontError {
    #[error("{0}")]
    Start(String),
}

/// Starts every configured front-end and runs until SIGTERM or SIGINT.
pub async fn serve(cfg: Arc<Config>, engine: Arc<Engine>) -> Result<(), FrontError> {
    let _ = (&cfg, &engine);
    tracing::info!("otpd ready");
    shutdown_signal().await;
    tracing::info!("otpd stopping");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
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
