//! Settings of the token kinds beyond OATH: `[yubico]` (validation server) and `[motp]`.

use super::{invalid, ConfigError};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// YubiCloud's validation endpoint (protocol 2.0).
pub const YUBICLOUD_URL: &str = "https://api.yubico.com/wsapi/2.0/verify";

/// `[yubico]`: the validation server (YubiCloud or the provider's own YK-VAL) that checks
/// the OTPs of `yubikey-remote` tokens.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct YubicoConfig {
    /// Validation URLs, tried in order until one answers.
    pub api_urls: Vec<String>,
    /// Client id issued with the API key; empty switches remote validation off.
    pub client_id: String,
    /// The API key (base64 of 20 bytes): signs requests and checks the server's answers.
    #[serde(skip_serializing)]
    pub api_key: String,
    /// How long one login may wait for the servers, all URLs together.
    #[serde(with = "super::duration")]
    pub timeout: Duration,
}

impl Default for YubicoConfig {
    fn default() -> Self {
        YubicoConfig {
            api_urls: vec![YUBICLOUD_URL.to_string()],
            client_id: String::new(),
            api_key: String::new(),
            timeout: Duration::from_secs(3),
        }
    }
}

impl YubicoConfig {
    pub fn is_configured(&self) -> bool {
        !self.client_id.is_empty()
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.timeout < Duration::from_millis(100) || self.timeout > Duration::from_secs(30) {
            return Err(invalid(
                "yubico.timeout",
                "allowed: 100ms to 30s (a login waits this long at most)",
            ));
        }
        for u in &self.api_urls {
            if !(u.starts_with("https://") || u.starts_with("http://")) || u.contains(['?', '#']) {
                return Err(invalid(
                    "yubico.api_urls",
                    format!("`{u}` is not an http(s) URL without query (…/wsapi/2.0/verify)"),
                ));
            }
        }
        if !self.is_configured() {
            return Ok(());
        }
        if self.api_urls.is_empty() {
            return Err(invalid("yubico.api_urls", "needs at least one URL"));
        }
        if self.client_id.len() > 64 || !self.client_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(invalid("yubico.client_id", "letters and digits, as issued"));
        }
        match data_encoding::BASE64.decode(self.api_key.trim().as_bytes()) {
            Ok(k) if k.len() == 20 => Ok(()),
            Ok(k) => Err(invalid(
                "yubico.api_key",
                format!("is {} bytes; an API key is base64 of 20 bytes", k.len()),
            )),
            Err(_) => Err(invalid(
                "yubico.api_key",
                "is not base64 (with = padding, as issued)",
            )),
        }
    }
}

/// `[motp]`: Mobile-OTP (10-second steps).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MotpConfig {
    /// Codes accepted either side of the expected time (the remembered drift included).
    #[serde(with = "super::duration")]
    pub window: Duration,
    /// Largest clock offset of a phone that otpd remembers and follows.
    #[serde(with = "super::duration")]
    pub max_drift: Duration,
}

impl Default for MotpConfig {
    fn default() -> Self {
        MotpConfig {
            window: Duration::from_secs(180),
            max_drift: Duration::from_secs(600),
        }
    }
}

impl MotpConfig {
    /// The window in 10-second steps.
    pub fn window_steps(&self) -> i64 {
        (self.window.as_secs() / 10) as i64
    }

    pub fn max_drift_steps(&self) -> i64 {
        (self.max_drift.as_secs() / 10) as i64
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.window > Duration::from_secs(600) {
            return Err(invalid("motp.window", "allowed: 0 to 10m"));
        }
        if self.max_drift > Duration::from_secs(24 * 3600) {
            return Err(invalid("motp.max_drift", "allowed: 0 to 24h"));
        }
        Ok(())
    }
}
