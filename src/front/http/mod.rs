//! The HTTP(S) front-end (docs/http.md): privacyIDEA's and LinOTP's validate dialects, and the
//! place where the management API (`api.rs`) mounts. Like the other front-ends it turns
//! requests into a `CheckRequest` and the engine's `Decision` back into an answer; it never
//! sees a token or the store.
//!
//! | module | holds |
//! |---|---|
//! | `server` | accept loop, connection bounds (all, per source), TLS, hyper per connection, idle watchdog |
//! | `tls` | certificate and key, reloaded after SIGHUP |
//! | `gate` | who is asking (client by address, X-Forwarded-For from trusted proxies), which part it may use, requests in flight (all, per source), the request time limit |
//! | `params` | parameters from the query, a form or a JSON body, bounded |
//! | `reply` | privacyIDEA's JSON envelope and errors |
//! | `login` | the engine call and what a decision means for a client (no second factor, unknown users) |
//! | `privacyidea` | `/validate/check`, `/validate/radiuscheck`, `/validate/samlcheck` (404, as 3.14), `/validate/polltransaction` |
//! | `auth` | `/auth` for service accounts, `/validate/triggerchallenge` |
//! | `linotp` | LinOTP's `/validate/check`, `/validate/simplecheck`, `/validate/samlcheck` |
//! | `api` | the management API's router (`/api/v1`) |

pub mod api;
mod auth;
mod device;
mod gate;
mod linotp;
mod login;
mod params;
mod privacyidea;
mod reply;
mod server;
mod tls;

pub use gate::Caller;

use crate::admin::portal::Portals;
use crate::daemon::EngineHandle;
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;

/// The connection a request came in on; put into each request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub addr: SocketAddr,
    pub tls: bool,
}

/// What the routes share.
#[derive(Clone)]
pub struct AppState {
    pub handle: Arc<EngineHandle>,
    gate: Arc<gate::Gate>,
    sessions: Arc<auth::Sessions>,
    /// The management API's operations (api/).
    portals: Arc<Portals>,
}

/// Every route of the HTTP interface behind the gate.
pub fn router(handle: Arc<EngineHandle>, portals: Arc<Portals>) -> Router {
    let cfg = handle.current().config().http.clone();
    let state = AppState {
        handle,
        gate: Arc::new(gate::Gate::new(&cfg)),
        sessions: Arc::new(auth::Sessions::new()),
        portals,
    };
    Router::new()
        .merge(privacyidea::routes())
        .merge(linotp::routes())
        .merge(api::router())
        .fallback(reply::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            gate::gate,
        ))
        .with_state(state)
}

/// The running front-end: its accept tasks.
pub struct HttpFront {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl HttpFront {
    /// Binds every configured address (before the daemon says it is ready) and serves.
    pub async fn start(
        handle: Arc<EngineHandle>,
        portals: Arc<Portals>,
    ) -> Result<Option<HttpFront>, String> {
        let cfg = handle.current().config().http.clone();
        if !cfg.enabled() {
            return Ok(None);
        }
        let tls = match (&cfg.cert_file, &cfg.key_file, cfg.listen.is_empty()) {
            (Some(c), Some(k), false) => Some(tls::TlsSource::new(handle.clone(), c, k)?),
            _ => None,
        };
        let shared = Arc::new(server::Shared::new(
            cfg.clone(),
            tls,
            router(handle, portals),
        ));
        let mut tasks = Vec::new();
        for (addrs, is_tls) in [(&cfg.listen, true), (&cfg.listen_plain, false)] {
            for l in server::bind(addrs).await? {
                let scheme = if is_tls { "https" } else { "http" };
                if let Ok(a) = l.local_addr() {
                    tracing::info!("http: listening on {scheme}://{a}");
                }
                tasks.push(tokio::spawn(server::accept_loop(l, shared.clone(), is_tls)));
            }
        }
        Ok(Some(HttpFront { tasks }))
    }

    /// Stops accepting; requests being worked on finish (the daemon waits for them).
    pub fn stop(self) {
        for t in self.tasks {
            t.abort();
        }
    }
}
