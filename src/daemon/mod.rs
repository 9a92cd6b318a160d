//! The daemon (`otpd serve`): the one place that plugs the store, the engine and the
//! front-ends together, and what runs beside the front-ends while they serve.
//!
//! | module | holds |
//! |---|---|
//! | `serve` | the assembly: open the store, build the engine, start the front-ends, stop cleanly |
//! | `reload` | [`EngineHandle`], the engine swapped on SIGHUP, and requests in flight |
//! | `housekeeping` | [`Housekeeping`], the database's non-login side; the watchdog; audit pruning |
//! | `notify` | systemd's readiness and watchdog protocol |
//! | `metrics_http` | the Prometheus endpoint |

mod housekeeping;
pub mod metrics_http;
pub mod notify;
pub mod reload;
mod serve;

pub use housekeeping::Housekeeping;
pub use reload::EngineHandle;
pub use serve::serve;

use crate::admin::AdminError;
use crate::front::FrontError;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The state directory, key or database could not be set up or opened.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// Something the daemon needs to run could not be started.
    #[error("{0}")]
    Start(String),
}

impl From<FrontError> for DaemonError {
    fn from(e: FrontError) -> DaemonError {
        match e {
            FrontError::Start(msg) => DaemonError::Start(msg),
        }
    }
}
