//! `otpd serve`: the daemon (src/daemon/) with the configuration the command line chose.

use super::{CliError, Outcome};
use crate::config::Config;
use crate::daemon::{self, DaemonError};

pub fn run(cfg: Config, config_path: Option<&std::path::Path>) -> Result<Outcome, CliError> {
    daemon::serve(cfg, config_path).map_err(|e| match e {
        DaemonError::Admin(e) => CliError::Admin(e),
        DaemonError::Start(msg) => CliError::Other(msg),
    })?;
    Ok(Outcome::Ok)
}
