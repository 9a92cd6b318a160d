//! `[radius]` and `[[radius.clients]]`.

use super::{invalid, Config, ConfigError};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RadiusConfig {
    /// Addresses to listen on; empty switches RADIUS off.
    pub listen: Vec<SocketAddr>,
    /// How long an answer is kept for a retransmitted request.
    #[serde(with = "super::duration")]
    pub duplicate_window: Duration,
    /// Requests in flight at once (validated, or waiting for their commit); more are dropped
    /// and counted.
    pub max_in_flight: usize,
    /// Requests from one source address in flight at once, so that one client (or whoever
    /// forges its address) cannot take every slot; 0 = a quarter of the worker threads
    /// (front/radius/server.rs).
    pub max_in_flight_per_source: usize,
    /// Threads per listen address that receive at once; 0 = one per CPU. The others wait
    /// parked and take over while a login sleeps (crate::blocking).
    pub receive_threads: usize,
    /// How long a two-step login's State stays valid.
    #[serde(with = "super::duration")]
    pub state_lifetime: Duration,
    pub clients: Vec<RadiusClientConfig>,
}

impl Default for RadiusConfig {
    fn default() -> Self {
        RadiusConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 1812))],
            duplicate_window: Duration::from_secs(30),
            max_in_flight: 1024,
            max_in_flight_per_source: 0,
            receive_threads: 0,
            state_lifetime: Duration::from_secs(120),
            clients: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RadiusClientConfig {
    pub name: String,
    /// An IP address or a CIDR block.
    #[serde(deserialize_with = "ip_or_net")]
    pub address: IpNet,
    #[serde(skip_serializing)]
    pub secret: String,
    /// The service class logins from this client count as.
    pub service: String,
    #[serde(default = "yes")]
    pub require_message_authenticator: bool,
}

fn yes() -> bool {
    true
}

fn ip_or_net<'de, D: serde::Deserializer<'de>>(d: D) -> Result<IpNet, D::Error> {
    let s = String::deserialize(d)?;
    if let Ok(n) = s.parse::<IpNet>() {
        return Ok(n);
    }
    s.parse::<std::net::IpAddr>().map(IpNet::from).map_err(|_| {
        serde::de::Error::custom(format!("`{s}` is neither an IP address nor a CIDR block"))
    })
}

impl RadiusConfig {
    pub(super) fn validate(&self, cfg: &Config) -> Result<(), ConfigError> {
        if self.max_in_flight == 0 || self.max_in_flight > 1_000_000 {
            return Err(invalid("radius.max_in_flight", "allowed: 1 to 1000000"));
        }
        if self.max_in_flight_per_source > self.max_in_flight {
            return Err(invalid(
                "radius.max_in_flight_per_source",
                format!(
                    "at most max_in_flight ({}); 0 means a quarter of it",
                    self.max_in_flight
                ),
            ));
        }
        if self.receive_threads > 64 {
            return Err(invalid(
                "radius.receive_threads",
                "allowed: 0 (one per CPU) to 64, the worker threads of a listen address",
            ));
        }
        for (i, c) in self.clients.iter().enumerate() {
            let key = format!("radius.clients[{i}] ({})", c.name);
            if c.name.is_empty() {
                return Err(invalid(
                    format!("radius.clients[{i}].name"),
                    "must not be empty",
                ));
            }
            if c.secret.len() < 8 {
                return Err(invalid(
                    format!("{key}.secret"),
                    "a shared secret needs at least 8 characters (16 or more recommended)",
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
        }
        Ok(())
    }
}
