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
    /// (front/radius/server.rs, per_source.rs).
    pub max_in_flight_per_source: usize,
    /// Threads per listen address that receive at once; 0 = one per CPU. The others wait
    /// parked and take over while a login sleeps (crate::blocking).
    pub receive_threads: usize,
    /// Bytes of datagrams the kernel may queue for each listen address while otpd is busy
    /// (a slow flush, a burst of logins after a NAS restarts); 0 = the kernel's default
    /// (`net.core.rmem_default`, about 256 requests). The kernel caps it at
    /// `net.core.rmem_max` and otpd warns when it did.
    pub receive_buffer: usize,
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
            receive_buffer: DEFAULT_RECEIVE_BUFFER,
            state_lifetime: Duration::from_secs(120),
            clients: Vec::new(),
        }
    }
}

/// 1 MiB: about 2,500 requests queued in the kernel (it counts about 830 bytes for a small
/// datagram and doubles what it is asked for), ten times its default and a fraction of a
/// second of work. Not more: under a flood that outruns the receive loop, a real request
/// waits behind everything queued (docs/security.md#floods).
pub const DEFAULT_RECEIVE_BUFFER: usize = 1 << 20;
const MAX_RECEIVE_BUFFER: usize = 256 << 20;

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
    /// The attribute that says who the user is (their address or station id), for the
    /// per-source limits and familiar sources: `Calling-Station-Id` (default),
    /// `Framed-IP-Address`, an attribute number, or `none`. Never the NAS's own address.
    #[serde(default = "calling_station_id")]
    pub source_attribute: String,
}

fn yes() -> bool {
    true
}

fn calling_station_id() -> String {
    "Calling-Station-Id".into()
}

/// Attribute type of Calling-Station-Id (RFC 2865 §5.31).
pub const CALLING_STATION_ID: u8 = 31;

impl RadiusClientConfig {
    /// The attribute type `source_attribute` names; 0 for `none`.
    pub fn source_attribute_type(&self) -> Result<u8, String> {
        let s = self.source_attribute.trim();
        match s.to_ascii_lowercase().as_str() {
            "calling-station-id" => Ok(CALLING_STATION_ID),
            "framed-ip-address" => Ok(8),
            "none" => Ok(0),
            _ => match s.parse::<u8>() {
                Ok(0) | Err(_) => Err(format!(
                    "`{s}` is not Calling-Station-Id, Framed-IP-Address, none, or an attribute \
                     number from 1 to 255"
                )),
                // The NAS's own address says nothing about the user.
                Ok(4) | Ok(95) => Err(
                    "NAS-IP-Address and NAS-IPv6-Address are the NAS's own address, not the \
                     user's: guessing through one NAS would block every user behind it"
                        .to_string(),
                ),
                Ok(n) => Ok(n),
            },
        }
    }
}

pub(super) fn ip_or_net<'de, D: serde::Deserializer<'de>>(d: D) -> Result<IpNet, D::Error> {
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
        if self.receive_buffer != 0
            && !(64 << 10..=MAX_RECEIVE_BUFFER).contains(&self.receive_buffer)
        {
            return Err(invalid(
                "radius.receive_buffer",
                "allowed: 0 (the kernel's default) or 65536 to 268435456 bytes",
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
            if let Err(why) = c.source_attribute_type() {
                return Err(invalid(format!("{key}.source_attribute"), why));
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
