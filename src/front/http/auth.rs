//! privacyIDEA's service accounts: `/auth` trades a configured name and secret for a session
//! token, which `/validate/triggerchallenge` needs in its Authorization header (the SSO
//! plugins start a login this way, before the user typed anything).

use super::login::{self, Login, Outcome};
use super::params;
use super::reply::{self, Failure};
use super::{privacyidea, AppState, Caller};
use axum::extract::{Request, State};
use axum::response::Response;
use axum::Extension;
use hyper::StatusCode;
use serde_json::json;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// How long a session token works (privacyIDEA's default).
const SESSION_LIFETIME: Duration = Duration::from_secs(3600);
/// Sessions kept at once; the oldest goes first.
const MAX_SESSIONS: usize = 1024;
/// Wrong secrets from one address before it must wait out `FAILURE_WINDOW`.
const MAX_FAILURES: u32 = 5;
const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Session tokens of service accounts, and failed `/auth` attempts per address.
pub(super) struct Sessions {
    open: Mutex<HashMap<String, (String, Instant)>>,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl Sessions {
    pub(super) fn new() -> Sessions {
        Sessions {
            open: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn issue(&self, name: &str) -> Result<String, Failure> {
        let mut bytes = [0u8; 32];
        getrandom::getrandom(&mut bytes).map_err(|_| Failure::internal())?;
        let token = data_encoding::HEXLOWER.encode(&bytes);
        let now = Instant::now();
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|_, (_, until)| *until > now);
        if open.len() >= MAX_SESSIONS {
            if let Some(oldest) = open.iter().min_by_key(|(_, v)| v.1).map(|(k, _)| k.clone()) {
                open.remove(&oldest);
            }
        }
        open.insert(token.clone(), (name.to_string(), now + SESSION_LIFETIME));
        Ok(token)
    }

    /// The service account a token belongs to, if it is open and still configured.
    fn holder(&self, token: &str) -> Option<String> {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(token)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(name, _)| name.clone())
    }

    fn blocked(&self, ip: IpAddr) -> bool {
        let f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        f.get(&ip)
            .is_some_and(|(n, since)| *n >= MAX_FAILURES && since.elapsed() < FAILURE_WINDOW)
    }

    fn failed(&self, ip: IpAddr) {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if f.len() > 10_000 {
            f.retain(|_, (_, since)| since.elapsed() < FAILURE_WINDOW);
        }
        let e = f.entry(ip).or_insert((0, Instant::now()));
        if e.1.elapsed() >= FAILURE_WINDOW {
            *e = (0, Instant::now());
        }
        e.0 += 1;
    }
}

fn auth_failed(code: i64, message: &str) -> Response {
    reply::error_with_detail(StatusCode::UNAUTHORIZED, code, message, json!({}))
}

/// `POST /auth` with `username` and `password`: a session token for a service account.
pub(super) async fn auth(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    req: Request,
) -> Response {
    let p = match params::read(req, st.gate.max_body).await {
        Ok(p) => p,
        Err(f) => return f.privacyidea(),
    };
    if st.sessions.blocked(caller.source) {
        return reply::busy(false);
    }
    let (user, pass) = (
        p.get("username").unwrap_or_default(),
        p.get("password").unwrap_or_default(),
    );
    let engine = st.handle.current();
    // Every account is compared, so the time does not tell which name exists.
    let mut found = None;
    for a in &engine.config().http.service_accounts {
        let same =
            a.name.as_bytes().ct_eq(user.as_bytes()) & a.secret.as_bytes().ct_eq(pass.as_bytes());
        if bool::from(same) {
            found = Some(a.name.clone());
        }
    }
    let Some(name) = found else {
        st.sessions.failed(caller.source);
        tracing::info!(target: "otpd::audit", "http /auth refused from {}", caller.source);
        return auth_failed(4031, "Authentication failed.");
    };
    let token = match st.sessions.issue(&name) {
        Ok(t) => t,
        Err(f) => return f.privacyidea(),
    };
    tracing::info!(target: "otpd::audit", "http /auth: service account {name:?} from {}", caller.source);
    reply::decision(
        json!({
            "authentication": "ACCEPT",
            "status": true,
            "value": {
                "auth": true,
                "log_level": 20,
                "realm": "",
                "rights": ["triggerchallenge"],
                "role": "admin",
                "token": token,
                "username": name,
            },
        }),
        None,
    )
}

/// `POST /validate/triggerchallenge` with `user`: a challenge without the PIN (an e-mailed
/// code is sent), for a caller holding a service account's session token.
pub(super) async fn triggerchallenge(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    req: Request,
) -> Response {
    let header = ["authorization", "pi-authorization"]
        .iter()
        .find_map(|h| req.headers().get(*h))
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().trim_start_matches("Bearer ").to_string());
    let Some(token) = header else {
        return auth_failed(
            4033,
            "Authentication failure. Missing Authorization header.",
        );
    };
    let engine = st.handle.current();
    let holder = st.sessions.holder(&token).filter(|n| {
        engine
            .config()
            .http
            .service_accounts
            .iter()
            .any(|a| &a.name == n)
    });
    drop(engine);
    if holder.is_none() {
        return auth_failed(4033, "Authentication failure. Wrong credentials.");
    }
    let p = match params::read(req, st.gate.max_body).await {
        Ok(p) => p,
        Err(f) => return f.privacyidea(),
    };
    let Some(user) = p.some("user") else {
        return Failure::parameter("Missing parameter: 'user'").privacyidea();
    };
    let o = login::decide(
        &st,
        &caller,
        Login {
            user,
            pass: "",
            state: None,
            trigger: true,
            device: Default::default(),
        },
    )
    .await;
    match o {
        Ok(Outcome::Challenge {
            message,
            state,
            serial,
        }) => reply::decision(
            json!({"authentication": "CHALLENGE", "status": true, "value": 1}),
            Some(privacyidea::challenge_detail(
                &message,
                &state,
                serial.as_deref(),
            )),
        ),
        Ok(Outcome::UnknownUser { user }) => privacyidea::unknown_user(&user).privacyidea(),
        Ok(_) => reply::decision(
            json!({"authentication": "REJECT", "status": true, "value": 0}),
            Some(json!({"messages": [], "multi_challenge": [], "transaction_ids": []})),
        ),
        Err(f) => f.privacyidea(),
    }
}
