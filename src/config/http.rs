//! `[http]` and `[[http.clients]]`: the HTTP(S) front-end (src/front/http/, docs/http.md).

use super::{invalid, Config, ConfigError};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// The parts of the HTTP interface a client may use (`[[http.clients]] api`).
pub const API_PARTS: [&str; 2] = ["validate", "api"];

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Addresses served over TLS (needs `cert_file` and `key_file`); empty: no HTTPS.
    pub listen: Vec<SocketAddr>,
    /// Addresses served as plain HTTP, for a reverse proxy on the same host that does TLS.
    /// Only loopback addresses unless `plain_remote` is set.
    pub listen_plain: Vec<SocketAddr>,
    /// Plain HTTP on a non-loopback address: codes and PINs cross the network in the clear.
    pub plain_remote: bool,
    /// PEM certificate chain and private key; read at start and again on SIGHUP.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Open connections at once; a connection beyond gets 503 and is closed.
    pub max_connections: usize,
    /// Open connections from one address at once; beyond: 429 and closed.
    pub max_connections_per_source: usize,
    /// Requests being worked on at once; beyond: 503.
    pub max_in_flight: usize,
    /// Requests being worked on at once from one source; beyond: 429.
    pub max_in_flight_per_source: usize,
    /// Largest request head (request line and headers); at least 8192 (hyper's floor).
    pub max_header_bytes: usize,
    /// Largest request body; beyond: 413.
    pub max_body_bytes: usize,
    /// Time for the request head to arrive once a request started.
    #[serde(with = "super::duration")]
    pub header_timeout: Duration,
    /// Time for a whole request, body and answer included; beyond: 408.
    #[serde(with = "super::duration")]
    pub request_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request.
    #[serde(with = "super::duration")]
    pub idle_timeout: Duration,
    /// Reverse proxies whose X-Forwarded-For names the user's address (rhost) and the client
    /// the request counts as. From anyone else the header is ignored.
    #[serde(deserialize_with = "ips_or_nets")]
    pub trusted_proxies: Vec<IpNet>,
    pub clients: Vec<HttpClientConfig>,
    /// Accounts that may call `/auth` and then `/validate/triggerchallenge` (privacyIDEA's
    /// service accounts).
    pub service_accounts: Vec<ServiceAccount>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: Vec::new(),
            listen_plain: Vec::new(),
            plain_remote: false,
            cert_file: None,
            key_file: None,
            max_connections: 1024,
            max_connections_per_source: 256,
            max_in_flight: 256,
            max_in_flight_per_source: 64,
            max_header_bytes: 16 * 1024,
            max_body_bytes: 16 * 1024,
            header_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            trusted_proxies: Vec::new(),
            clients: Vec::new(),
            service_accounts: Vec::new(),
        }
    }
}

/// Which validate dialect `/validate/check` speaks to a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    Privacyidea,
    Linotp,
}

/// What a client gets when the account's level asks no second factor for its class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NoSecondFactor {
    Reject,
    Accept,
}

/// Whether the client sends the otpd PIN before the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PinMode {
    Required,
    /// The client checked the user's own password first and sends the code alone.
    None,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpClientConfig {
    pub name: String,
    /// An IP address or a CIDR block.
    #[serde(deserialize_with = "super::radius::ip_or_net")]
    pub address: IpNet,
    /// The service class its logins count as.
    pub service: String,
    /// Parts of the interface it may use: `validate`, `api`.
    #[serde(default = "validate_only")]
    pub api: Vec<String>,
    #[serde(default = "privacyidea")]
    pub dialect: Dialect,
    #[serde(default = "reject")]
    pub no_second_factor: NoSecondFactor,
    #[serde(default = "required")]
    pub pin: PinMode,
    /// Unknown users get privacyIDEA's error 904 (HTTP 400) instead of a plain Reject: only
    /// for a client that must tell them apart, since it tells which names exist.
    #[serde(default)]
    pub unknown_user_error: bool,
}

/// Addresses or CIDR blocks: `"127.0.0.1"` is the block of that one address.
fn ips_or_nets<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    let items = Vec::<String>::deserialize(d)?;
    items
        .iter()
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    serde::de::Error::custom(format!(
                        "`{s}` is neither an IP address nor a CIDR block"
                    ))
                })
        })
        .collect()
}

fn validate_only() -> Vec<String> {
    vec!["validate".into()]
}
fn privacyidea() -> Dialect {
    Dialect::Privacyidea
}
fn reject() -> NoSecondFactor {
    NoSecondFactor::Reject
}
fn required() -> PinMode {
    PinMode::Required
}

impl HttpClientConfig {
    pub fn may_use(&self, part: &str) -> bool {
        self.api.iter().any(|p| p == part)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceAccount {
    pub name: String,
    /// At least 16 characters; compared in constant time, never logged.
    #[serde(skip_serializing)]
    pub secret: String,
}

impl HttpConfig {
    /// Whether anything is to be served.
    pub fn enabled(&self) -> bool {
        !self.listen.is_empty() || !self.listen_plain.is_empty()
    }

    /// The client an address belongs to: the narrowest block that holds it.
    pub fn client_for(&self, ip: IpAddr) -> Option<&HttpClientConfig> {
        self.clients
            .iter()
            .filter(|c| c.address.contains(&ip))
            .max_by_key(|c| c.address.prefix_len())
    }

    pub fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|n| n.contains(&ip))
    }

    pub(super) fn validate(&self, cfg: &Config) -> Result<(), ConfigError> {
        if !self.listen.is_empty() && (self.cert_file.is_none() || self.key_file.is_none()) {
            return Err(invalid(
                "http.listen",
                "HTTPS needs http.cert_file and http.key_file; for plain HTTP behind a local \
                 reverse proxy use http.listen_plain",
            ));
        }
        if !self.plain_remote {
            if let Some(a) = self.listen_plain.iter().find(|a| !a.ip().is_loopback()) {
                return Err(invalid(
                    "http.listen_plain",
                    format!(
                        "{a} is not a loopback address: plain HTTP carries PINs and codes in \
                         the clear; use http.listen with TLS, or set http.plain_remote = true"
                    ),
                ));
            }
        }
        let ranges: [(&str, usize, usize); 4] = [
            ("http.max_connections", self.max_connections, 100_000),
            (
                "http.max_connections_per_source",
                self.max_connections_per_source,
                self.max_connections,
            ),
            ("http.max_in_flight", self.max_in_flight, 100_000),
            (
                "http.max_in_flight_per_source",
                self.max_in_flight_per_source,
                self.max_in_flight,
            ),
        ];
        for (key, v, max) in ranges {
            if v == 0 || v > max {
                return Err(invalid(key, format!("allowed: 1 to {max}")));
            }
        }
        if !(8192..=1024 * 1024).contains(&self.max_header_bytes) {
            return Err(invalid("http.max_header_bytes", "allowed: 8192 to 1048576"));
        }
        if !(256..=1024 * 1024).contains(&self.max_body_bytes) {
            return Err(invalid("http.max_body_bytes", "allowed: 256 to 1048576"));
        }
        for (key, d) in [
            ("http.header_timeout", self.header_timeout),
            ("http.request_timeout", self.request_timeout),
            ("http.idle_timeout", self.idle_timeout),
        ] {
            if d.is_zero() || d > Duration::from_secs(3600) {
                return Err(invalid(key, "allowed: more than 0 and at most 1h"));
            }
        }
        for (i, c) in self.clients.iter().enumerate() {
            let key = format!("http.clients[{i}] ({})", c.name);
            if c.name.is_empty() {
                return Err(invalid(
                    format!("http.clients[{i}].name"),
                    "must not be empty",
                ));
            }
            if !cfg.services.contains_key(&c.service) {
                return Err(invalid(
                    format!("{key}.service"),
                    format!(
                        "no service class `{}`; known: {}",
                        c.service,
                        cfg.class_names().join(", ")
                    ),
                ));
            }
            if let Some(p) = c.api.iter().find(|p| !API_PARTS.contains(&p.as_str())) {
                return Err(invalid(
                    format!("{key}.api"),
                    format!("unknown part `{p}`; known: {}", API_PARTS.join(", ")),
                ));
            }
        }
        for (i, a) in self.service_accounts.iter().enumerate() {
            if a.name.is_empty() || a.name.contains(char::is_control) {
                return Err(invalid(
                    format!("http.service_accounts[{i}].name"),
                    "must be a non-empty name without control characters",
                ));
            }
            if a.secret.chars().count() < 16 {
                return Err(invalid(
                    format!("http.service_accounts[{i}] ({}).secret", a.name),
                    "needs at least 16 characters",
                ));
            }
        }
        Ok(())
    }
}
