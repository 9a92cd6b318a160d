//! `[[radius.clients]]`: who may ask, with which shared secret, and what their logins count as.

use super::message_authenticator::Secret;
use crate::config::RadiusClientConfig;
use ipnet::IpNet;
use std::net::IpAddr;
use std::sync::Arc;

pub struct Client {
    pub name: String,
    pub net: IpNet,
    pub secret: Secret,
    /// The service class of every login from this client.
    pub service: String,
    pub require_message_authenticator: bool,
    /// Type of the attribute that names the user's source (0: none); config validated it.
    pub source_attribute: u8,
}

impl Client {
    pub fn new(name: &str, net: IpNet, secret: &[u8], service: &str, require_ma: bool) -> Client {
        Client {
            name: name.to_string(),
            net,
            secret: Secret::new(secret),
            service: service.to_string(),
            require_message_authenticator: require_ma,
            source_attribute: crate::config::CALLING_STATION_ID,
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("name", &self.name)
            .field("net", &self.net)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

pub struct Clients(Vec<Arc<Client>>);

impl Clients {
    pub fn from_config(cfg: &[RadiusClientConfig]) -> Clients {
        Clients(
            cfg.iter()
                .map(|c| {
                    let mut client = Client::new(
                        &c.name,
                        c.address,
                        c.secret.as_bytes(),
                        &c.service,
                        c.require_message_authenticator,
                    );
                    // Validated at load; a bad value cannot get here, but if it did, no
                    // source is the safe reading (only the account's own limits apply).
                    client.source_attribute = c.source_attribute_type().unwrap_or(0);
                    Arc::new(client)
                })
                .collect(),
        )
    }

    /// The most specific block that holds `ip`; an IPv4 client reaching an IPv6 socket
    /// (`::ffff:a.b.c.d`) is matched as IPv4.
    pub fn find(&self, ip: IpAddr) -> Option<&Arc<Client>> {
        let ip = ip.to_canonical();
        // On equal prefixes the first configured client wins (max_by_key keeps the last).
        self.0
            .iter()
            .rev()
            .filter(|c| c.net.contains(&ip))
            .max_by_key(|c| c.net.prefix_len())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(name: &str, address: &str) -> RadiusClientConfig {
        RadiusClientConfig {
            name: name.into(),
            address: address.parse().expect("net"),
            secret: "0123456789abcdef".into(),
            service: "vpn".into(),
            require_message_authenticator: true,
            source_attribute: "Calling-Station-Id".into(),
        }
    }

    #[test]
    fn most_specific_wins_and_mapped_v4_matches() {
        let c = Clients::from_config(&[cfg("lan", "10.0.0.0/8"), cfg("gw", "10.1.2.3/32")]);
        let name = |ip: &str| c.find(ip.parse().expect("ip")).map(|c| c.name.clone());
        assert_eq!(name("10.1.2.3").as_deref(), Some("gw"));
        assert_eq!(name("10.9.9.9").as_deref(), Some("lan"));
        assert_eq!(name("::ffff:10.1.2.3").as_deref(), Some("gw"));
        assert_eq!(name("192.0.2.1"), None);
    }
}
