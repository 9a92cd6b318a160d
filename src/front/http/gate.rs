//! Before any route: who is asking, whether it may use this part of the interface, and
//! whether there is room for one more request (all sources, and its own share).

use super::{reply, AppState, Peer};
use crate::config::{HttpClientConfig, HttpConfig};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use hyper::StatusCode;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Semaphore;

/// The request's client as configured, and the address it counts as.
#[derive(Debug, Clone)]
pub struct Caller {
    pub client: HttpClientConfig,
    /// The requester's address: the peer, or what a trusted proxy forwarded.
    pub source: IpAddr,
    pub peer: Peer,
    /// The User-Agent header, the default label of a trusted device (device.rs).
    pub user_agent: Option<String>,
}

/// The request bounds, fixed at start (changing them needs a restart).
pub(super) struct Gate {
    in_flight: Semaphore,
    per_source: Mutex<HashMap<IpAddr, usize>>,
    per_source_max: usize,
    request_timeout: Duration,
    pub(super) max_body: usize,
}

impl Gate {
    pub(super) fn new(cfg: &HttpConfig) -> Gate {
        Gate {
            in_flight: Semaphore::new(cfg.max_in_flight),
            per_source: Mutex::new(HashMap::new()),
            per_source_max: cfg.max_in_flight_per_source,
            request_timeout: cfg.request_timeout,
            max_body: cfg.max_body_bytes,
        }
    }

    fn take(&self, ip: IpAddr) -> bool {
        let mut m = self.per_source.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(ip).or_insert(0);
        if *n >= self.per_source_max {
            return false;
        }
        *n += 1;
        true
    }

    fn give(&self, ip: IpAddr) {
        let mut m = self.per_source.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&ip);
            }
        }
    }
}

/// One request's share of its source's requests in flight.
struct Turn(std::sync::Arc<Gate>, IpAddr);

impl Drop for Turn {
    fn drop(&mut self) {
        self.0.give(self.1);
    }
}

/// The part of the interface a path belongs to (`[[http.clients]] api`).
pub(super) fn part_of(path: &str) -> &'static str {
    if path == "/api" || path.starts_with("/api/") {
        "api"
    } else {
        "validate"
    }
}

/// The address a request counts as: from a trusted proxy, the last address of
/// X-Forwarded-For that is not itself a trusted proxy; else the peer.
fn source(cfg: &HttpConfig, peer: IpAddr, headers: &hyper::HeaderMap) -> IpAddr {
    if !cfg.is_trusted_proxy(peer) {
        return peer;
    }
    let mut chain: Vec<IpAddr> = Vec::new();
    for v in headers.get_all("x-forwarded-for") {
        let Ok(s) = v.to_str() else { return peer };
        for item in s.split(',') {
            match item.trim().parse::<IpAddr>() {
                Ok(ip) => chain.push(ip),
                // A chain we cannot read: trust none of it.
                Err(_) => return peer,
            }
        }
    }
    chain
        .into_iter()
        .rev()
        .find(|ip| !cfg.is_trusted_proxy(*ip))
        .unwrap_or(peer)
}

pub(super) async fn gate(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(peer) = req.extensions().get::<Peer>().copied() else {
        return reply::error(StatusCode::INTERNAL_SERVER_ERROR, 500, "no peer address");
    };
    let engine = st.handle.current();
    let cfg = &engine.config().http;
    let source = source(cfg, peer.addr.ip(), req.headers());
    let Some(client) = cfg.client_for(source) else {
        tracing::debug!("http: {source} is no configured client");
        return reply::error(
            StatusCode::FORBIDDEN,
            403,
            "this address is no client of otpd",
        );
    };
    let part = part_of(req.uri().path());
    if !client.may_use(part) {
        return reply::error(
            StatusCode::FORBIDDEN,
            403,
            &format!("client {} may not use the {part} interface", client.name),
        );
    }
    let caller = Caller {
        client: client.clone(),
        source,
        peer,
        user_agent: req
            .headers()
            .get(hyper::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect()),
    };
    drop(engine);
    let gate = &st.gate;
    let Ok(_permit) = gate.in_flight.try_acquire() else {
        return reply::busy(true);
    };
    if !gate.take(source) {
        return reply::busy(false);
    }
    // Given back however the request ends, a client that hangs up included.
    let _turn = Turn(st.gate.clone(), source);
    req.extensions_mut().insert(caller);
    let answer = tokio::time::timeout(gate.request_timeout, next.run(req)).await;
    match answer {
        Ok(r) => r,
        Err(_) => reply::too_slow(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let cfg = HttpConfig {
            trusted_proxies: vec!["127.0.0.1/32".parse().expect("net")],
            ..HttpConfig::default()
        };
        let mut h = hyper::HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "203.0.113.9, 127.0.0.1".parse().expect("h"),
        );
        let proxy: IpAddr = "127.0.0.1".parse().expect("ip");
        let other: IpAddr = "127.0.0.2".parse().expect("ip");
        assert_eq!(source(&cfg, proxy, &h).to_string(), "203.0.113.9");
        assert_eq!(source(&cfg, other, &h), other);
        h.insert("x-forwarded-for", "nonsense".parse().expect("h"));
        assert_eq!(source(&cfg, proxy, &h), proxy);
        assert_eq!(part_of("/api/v1/users"), "api");
        assert_eq!(part_of("/validate/check"), "validate");
    }
}
