//! Service classes (`[services.NAME]`) and what each level asks of them (`[levels]`): the
//! built-in tables and how the configuration's tables combine with them.

use super::duration;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Per service class settings (`[services.NAME]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// PAM service names that count as this class.
    pub pam_services: Vec<String>,
    /// Source addresses whose logins count as this class whatever the PAM service says
    /// (the webmail host's IMAP logins count as `web`).
    pub rhosts: Vec<IpNet>,
    /// Two-step login: the PIN alone gets a Challenge asking for the code.
    pub challenge_on_pin_only: bool,
    /// Re-login cache after an OTP Accept (webmail logs in on every page view).
    pub relogin_cache: bool,
    #[serde(with = "duration")]
    pub relogin_idle: Duration,
    #[serde(with = "duration")]
    pub relogin_max: Duration,
    /// How long a trusted device lasts (engine/trusted.rs): after an accepted PIN+code, a
    /// client that asks gets a device token, and the PIN alone with it logs in without a
    /// code until then. 0 (the default, in every class) = no trusted devices.
    #[serde(with = "duration")]
    pub trusted_device_ttl: Duration,
}

/// The longest `trusted_device_ttl` allowed: half a year (the business portal's policy; BIS
/// asks for 30 days).
pub const MAX_TRUSTED_DEVICE_TTL: Duration = Duration::from_secs(180 * 24 * 3600);

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            pam_services: Vec::new(),
            rhosts: Vec::new(),
            challenge_on_pin_only: false,
            relogin_cache: false,
            relogin_idle: Duration::from_secs(15 * 60),
            relogin_max: Duration::from_secs(8 * 3600),
            trusted_device_ttl: Duration::ZERO,
        }
    }
}

/// What a login of one service class needs at one security level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Requirement {
    /// PIN followed by a code.
    Otp,
    /// Not ours: the normal password stack decides (Defer).
    Password,
    /// An app-specific password alone.
    AppPassword,
    /// The service is switched off for the account.
    Deny,
}

impl Requirement {
    pub fn as_str(self) -> &'static str {
        match self {
            Requirement::Otp => "otp",
            Requirement::Password => "password",
            Requirement::AppPassword => "app-password",
            Requirement::Deny => "deny",
        }
    }
}

pub const BUILTIN_CLASSES: [&str; 4] = ["web", "mail", "ssh", "vpn"];
/// The cell of a level that applies to classes it does not name.
pub const ANY_CLASS: &str = "*";

/// Reads `[services.NAME]` tables as changes to the built-in class of that name (or to an
/// empty class for a new name): each key given wins, every other key keeps its value.
pub(super) fn services_over_builtin<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, ServiceConfig>, D::Error> {
    use serde::de::Error;
    let raw = BTreeMap::<String, serde_json::Value>::deserialize(d)?;
    let builtin = default_services();
    let mut out = BTreeMap::new();
    for (name, given) in raw {
        let base = builtin.get(&name).cloned().unwrap_or_default();
        let mut merged = serde_json::to_value(&base).map_err(D::Error::custom)?;
        match (given, &mut merged) {
            (serde_json::Value::Object(keys), serde_json::Value::Object(m)) => m.extend(keys),
            _ => {
                return Err(D::Error::custom(format!(
                    "services.{name}: must be a table of settings"
                )))
            }
        }
        let svc = ServiceConfig::deserialize(merged)
            .map_err(|e| D::Error::custom(format!("services.{name}: {e}")))?;
        out.insert(name, svc);
    }
    Ok(out)
}

pub(super) fn default_services() -> BTreeMap<String, ServiceConfig> {
    let mk = |pam: &[&str], relogin: bool| ServiceConfig {
        pam_services: pam.iter().map(|s| s.to_string()).collect(),
        relogin_cache: relogin,
        ..ServiceConfig::default()
    };
    let mut m = BTreeMap::new();
    m.insert("web".into(), mk(&["roundcube", "webmail", "sogo"], true));
    m.insert(
        "mail".into(),
        mk(
            &[
                "dovecot",
                "imap",
                "pop3",
                "smtp",
                "submission",
                "sieve",
                "managesieve",
                "lmtp",
            ],
            false,
        ),
    );
    m.insert("ssh".into(), mk(&["sshd"], false));
    m.insert("vpn".into(), mk(&["openvpn", "strongswan", "ppp"], false));
    m
}

pub(super) fn default_levels() -> BTreeMap<String, BTreeMap<String, Requirement>> {
    use Requirement::*;
    let rows: [(&str, [Requirement; 5]); 5] = [
        // web, mail, ssh, vpn, any other class
        ("off", [Password, Password, Password, Password, Password]),
        ("web-otp", [Otp, Password, Password, Password, Password]),
        ("web-only", [Otp, Deny, Deny, Deny, Deny]),
        ("app-passwords", [Otp, AppPassword, Otp, Otp, AppPassword]),
        ("everywhere", [Otp, Otp, Otp, Otp, Otp]),
    ];
    let cols = ["web", "mail", "ssh", "vpn", ANY_CLASS];
    rows.iter()
        .map(|(level, cells)| {
            let row = cols
                .iter()
                .zip(cells.iter())
                .map(|(c, r)| (c.to_string(), *r))
                .collect();
            (level.to_string(), row)
        })
        .collect()
}

pub(super) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}
