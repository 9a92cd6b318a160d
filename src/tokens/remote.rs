//! YubiKey OTPs checked by a validation server (YubiCloud or a provider's YK-VAL), protocol
//! 2.0, through `yubico_ng`.
//!
//! `yubico_ng` signs the request and checks the answer (HMAC-SHA1 over the sorted
//! parameters, the echoed OTP and nonce). What it leaves to us, and this module adds:
//! - the HTTP transport: a blocking `ureq` agent (rustls on ring, no OpenSSL), whose
//!   per-request timeout is ours to set (yubico_ng's own timeout only applies to reqwest);
//! - several URLs: tried in order within one overall time budget, moving on only when a
//!   server could not give an answer (down, slow, 5xx, BACKEND_ERROR); a server that did
//!   answer (REPLAYED_OTP, BAD_OTP, a bad signature) ends the attempt;
//! - errors an admin can act on, naming the URL and the timeout.
//!
//! The call blocks its thread for at most `[yubico] timeout`: a thread of tokio's blocking
//! pool (the socket front-end) or a RADIUS thread, which hands its receiving to another one
//! meanwhile (`crate::blocking`).

use super::ports::Validator;
use crate::config::YubicoConfig;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use yubico_ng::transport::{BlockingTransport, Response};
use yubico_ng::{Verifier, YubicoError};

/// Largest answer read from a validation server (a real one is a few hundred bytes).
const MAX_BODY: u64 = 16 * 1024;

/// One agent for the process: it holds the connection pool and the TLS roots. Timeouts are
/// set per request, so configurations with different timeouts can share it.
fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("otpd/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent()
    })
}

struct Transport {
    timeout: Duration,
}

impl BlockingTransport for Transport {
    type Error = YubicoError;

    fn yubico_get(&self, url: &str) -> Result<Response, YubicoError> {
        let mut resp = agent()
            .get(url)
            .config()
            .timeout_global(Some(self.timeout))
            .build()
            .call()
            .map_err(YubicoError::transport)?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_string()
            .map_err(YubicoError::transport)?;
        Ok(Response { status, body })
    }
}

/// Why the validation servers did not accept an OTP.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("yubikey-remote token but [yubico] client_id and api_key are not set")]
    NotConfigured,
    #[error("validation server {url} did not answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("validation server {url} cannot be reached: {msg}")]
    Unreachable { url: String, msg: String },
    #[error("validation server {url} answered {status}: {msg}")]
    Refused {
        url: String,
        status: &'static str,
        msg: String,
    },
    #[error("validation server {url}: {msg}")]
    Other { url: String, msg: String },
    #[error("no validation server left within the time budget of {0:?}")]
    OutOfTime(Duration),
}

impl RemoteError {
    /// Did the server give a real answer (so trying another server makes no sense)?
    fn is_answer(&self) -> bool {
        matches!(self, RemoteError::Refused { .. })
    }
}

fn classify(url: &str, timeout: Duration, e: YubicoError) -> RemoteError {
    let url = url.to_string();
    let refused = |status: &'static str, e: &YubicoError| RemoteError::Refused {
        url: url.clone(),
        status,
        msg: e.to_string(),
    };
    match &e {
        YubicoError::Transport(inner) => match inner.downcast_ref::<ureq::Error>() {
            Some(ureq::Error::Timeout(_)) => RemoteError::Timeout { url, timeout },
            Some(other) => RemoteError::Unreachable {
                url,
                msg: other.to_string(),
            },
            None => RemoteError::Unreachable {
                url,
                msg: inner.to_string(),
            },
        },
        YubicoError::BadOtp => refused("BAD_OTP", &e),
        YubicoError::ReplayedOtp => refused("REPLAYED_OTP", &e),
        YubicoError::ReplayedRequest => refused("REPLAYED_REQUEST", &e),
        YubicoError::BadSignature => refused("BAD_SIGNATURE (check yubico.api_key)", &e),
        YubicoError::NoSuchClient => refused("NO_SUCH_CLIENT (check yubico.client_id)", &e),
        YubicoError::OperationNotAllowed => refused("OPERATION_NOT_ALLOWED", &e),
        YubicoError::MissingParameter => refused("MISSING_PARAMETER", &e),
        YubicoError::SignatureMismatch => refused(
            "an answer whose signature does not match (wrong yubico.api_key, or tampered)",
            &e,
        ),
        YubicoError::OTPMismatch | YubicoError::NonceMismatch => {
            refused("an answer for another request (tampered)", &e)
        }
        _ => RemoteError::Other {
            url,
            msg: e.to_string(),
        },
    }
}

/// The validation servers of `[yubico]`, over HTTPS: the real [`Validator`].
pub struct ValidationServers;

impl Validator for ValidationServers {
    fn verify(&self, cfg: &YubicoConfig, otp: &str) -> Result<(), RemoteError> {
        verify(cfg, otp)
    }
}

/// Asks the validation servers whether `otp` is good and unused. The caller has checked
/// that the OTP's public id is the token's: the server only says "valid for some key".
fn verify(cfg: &YubicoConfig, otp: &str) -> Result<(), RemoteError> {
    if !cfg.is_configured() {
        return Err(RemoteError::NotConfigured);
    }
    // The whole exchange may take up to `[yubico] timeout`: another thread receives meanwhile.
    crate::blocking::section(|| ask_servers(cfg, otp))
}

fn ask_servers(cfg: &YubicoConfig, otp: &str) -> Result<(), RemoteError> {
    let deadline = Instant::now() + cfg.timeout;
    let mut last = RemoteError::OutOfTime(cfg.timeout);
    for url in &cfg.api_urls {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let config = yubico_ng::config::Config::default()
            .set_client_id(cfg.client_id.clone())
            .set_api_host(url.clone())
            .set_key(cfg.api_key.trim())
            .map_err(|e| RemoteError::Other {
                url: url.clone(),
                msg: format!("yubico.api_key: {e}"),
            })?;
        let verifier = Verifier::with_client(config, Transport { timeout: left }).map_err(|e| {
            RemoteError::Other {
                url: url.clone(),
                msg: e.to_string(),
            }
        })?;
        match verifier.verify_blocking(otp) {
            Ok(()) => return Ok(()),
            Err(e) => {
                let e = classify(url, cfg.timeout, e);
                tracing::warn!("yubikey validation: {e}");
                if e.is_answer() {
                    return Err(e);
                }
                last = e;
            }
        }
    }
    Err(last)
}
