//! The outside services token kinds talk to, as traits: the daemon plugs in the real ones
//! (SMTP, the YubiKey validation servers), tests plug in their own (`Engine::with_mailer`,
//! `Engine::with_validator`). A kind never opens a connection itself.

use super::email::Smtp;
use super::remote::{RemoteError, ValidationServers};
use crate::config::{EmailConfig, YubicoConfig};
use std::sync::Arc;
use std::time::Duration;
use zeroize::Zeroizing;

/// One message to send. Wiped when dropped: subject or body hold the code.
pub struct Outgoing {
    pub to: String,
    pub subject: Zeroizing<String>,
    pub body: Zeroizing<String>,
}

/// Why a message was not sent. The texts go to the audit: never the code.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    #[error("[email] is not configured (no email.host)")]
    NotConfigured,
    #[error("{0} sends already in progress; try again in a moment")]
    Busy(usize),
    #[error("the relay {relay} did not finish within {}", humantime::format_duration(*timeout))]
    Timeout { relay: String, timeout: Duration },
    #[error("connection refused by {0}")]
    ConnectionRefused(String),
    #[error("cannot reach {relay}: {msg}")]
    Connect { relay: String, msg: String },
    #[error("TLS with {relay} failed: {msg}")]
    Tls { relay: String, msg: String },
    #[error("the relay {relay} refused: {msg}")]
    Refused { relay: String, msg: String },
    #[error("{0}")]
    Other(String),
}

/// Sends a message. The daemon's is [`Smtp`]; tests put a recorder here.
pub trait Mailer: Send + Sync {
    fn send(&self, cfg: &EmailConfig, mail: &Outgoing) -> Result<(), SendError>;
}

/// Asks a YubiKey validation server (YubiCloud, a provider's YK-VAL) whether an OTP is good
/// and unused. The daemon's is [`ValidationServers`].
pub trait Validator: Send + Sync {
    fn verify(&self, cfg: &YubicoConfig, otp: &str) -> Result<(), RemoteError>;
}

/// The ports a login or an enrolment may use.
#[derive(Clone)]
pub struct Ports {
    pub mailer: Arc<dyn Mailer>,
    pub validator: Arc<dyn Validator>,
}

impl Ports {
    /// SMTP and the validation servers of the configuration.
    pub fn real() -> Ports {
        Ports {
            mailer: Arc::new(Smtp),
            validator: Arc::new(ValidationServers),
        }
    }
}

impl std::fmt::Debug for Ports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ports")
    }
}
