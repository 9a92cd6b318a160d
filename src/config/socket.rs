//! `[socket]`: the local Unix socket for the PAM module and local callers.

use super::{invalid, ConfigError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SocketConfig {
    /// Set to an empty string to switch the socket off.
    pub path: PathBuf,
    /// Group that owns the socket (mode 0660), e.g. `dovecot`; none keeps the daemon's group.
    pub group: Option<String>,
    /// Peer uids allowed to ask (SO_PEERCRED).
    pub allow_uids: Vec<u32>,
    /// Peer gids allowed to ask.
    pub allow_gids: Vec<u32>,
    #[serde(with = "super::duration")]
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl Default for SocketConfig {
    fn default() -> Self {
        SocketConfig {
            path: PathBuf::from("/run/otpd/otpd.sock"),
            group: None,
            allow_uids: vec![0],
            allow_gids: Vec::new(),
            idle_timeout: Duration::from_secs(30),
            max_connections: 256,
        }
    }
}

impl SocketConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_connections == 0 || self.max_connections > 100_000 {
            return Err(invalid("socket.max_connections", "allowed: 1 to 100000"));
        }
        Ok(())
    }
}
