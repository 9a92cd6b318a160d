//! One login over HTTP: parameters into a `CheckRequest`, the engine on the blocking pool,
//! and what its `Decision` means for this client (every dialect shares this).

use super::super::deferred;
use super::reply::Failure;
use super::{AppState, Caller};
use crate::config::http::{NoSecondFactor, PinMode};
use crate::engine::{CheckRequest, Decision, DeviceRequest, IssuedDevice, Verdict};
use crate::metrics::{self, Frontend};
use zeroize::Zeroizing;

/// What a decision is for an HTTP client.
pub(super) enum Outcome {
    Accept {
        message: String,
        serial: Option<String>,
        /// A device this login trusted (`remember_device`): its token goes out once.
        device: Option<IssuedDevice>,
    },
    Reject {
        message: String,
    },
    Challenge {
        message: String,
        state: String,
        serial: Option<String>,
    },
    /// An unknown user, told apart only for a client set to see it (`unknown_user_error`).
    UnknownUser {
        user: String,
    },
}

/// What a dialect hands over: the parameters of one login.
pub(super) struct Login<'a> {
    pub user: &'a str,
    pub pass: &'a str,
    pub state: Option<&'a str>,
    /// Start a challenge without the PIN (`/validate/triggerchallenge`, a service account
    /// vouches for the request).
    pub trigger: bool,
    /// Trusted devices: a device token brought, or the wish to trust this one (device.rs).
    pub device: DeviceRequest,
}

/// Asks the engine, as the client is configured.
pub(super) async fn decide(
    st: &AppState,
    caller: &Caller,
    login: Login<'_>,
) -> Result<Outcome, Failure> {
    let c = &caller.client;
    let req = CheckRequest {
        user: login.user.to_string(),
        password: Zeroizing::new(if login.trigger {
            String::new()
        } else {
            login.pass.to_string()
        }),
        service: c.service.clone(),
        rhost: Some(caller.source.to_string()),
        client: Some(c.name.clone()),
        state: login.state.map(str::to_string),
        // A client that turns "no second factor here" into a Reject answers Defer as it
        // answers Reject: the engine must make them cost the same.
        defer_is_reject: c.no_second_factor == NoSecondFactor::Reject && !c.unknown_user_error,
        code_only: c.pin == PinMode::None || login.trigger,
        device: login.device,
    };
    let started = std::time::Instant::now();
    let handle = st.handle.clone();
    let working = handle.begin_owned();
    let engine = handle.current();
    // A login that waits for its commit holds no thread (front/deferred.rs).
    let d = deferred::check(engine, req, |_, _| None, deferred::Run::Pool)
        .await
        .map_err(|e| {
            tracing::error!("http: {e}");
            Failure::internal()
        })?;
    drop(working);
    metrics::get().request(Frontend::Http, d.verdict, started.elapsed());
    Ok(outcome(d, caller))
}

fn outcome(d: Decision, caller: &Caller) -> Outcome {
    let c = &caller.client;
    match d.verdict {
        Verdict::Accept => Outcome::Accept {
            message: d.message,
            serial: d.serial,
            device: d.device,
        },
        Verdict::Challenge => Outcome::Challenge {
            message: d.message,
            state: d.state.unwrap_or_default(),
            serial: d.serial,
        },
        _ if d.is_unknown_user() && c.unknown_user_error => Outcome::UnknownUser { user: d.user },
        Verdict::Defer if !d.is_unknown_user() && c.no_second_factor == NoSecondFactor::Accept => {
            Outcome::Accept {
                message: format!(
                    "no second factor required here: the account's level asks none for class {} \
                     (accepted as client {} is set to, no_second_factor = \"accept\")",
                    d.class.as_deref().unwrap_or(&c.service),
                    c.name
                ),
                serial: None,
                device: None,
            }
        }
        // Defer and Deny are Rejects to a client with no password stack behind it; the
        // message is the engine's one for every failure, so none tells them apart.
        Verdict::Reject | Verdict::Defer | Verdict::Deny => Outcome::Reject {
            message: crate::engine::messages::REJECT.to_string(),
        },
    }
}

/// A token kind's name as privacyIDEA's `type` says it, from the serial's prefix (otpd's
/// serials start with their kind: HOTP…, TOTP…, YK…).
pub(super) fn kind_of_serial(serial: &str) -> &'static str {
    let prefixes: [(&str, &str); 7] = [
        ("HOTP", "hotp"),
        ("TOTP", "totp"),
        ("MOTP", "motp"),
        ("MAIL", "email"),
        ("BKUP", "paper"),
        ("YKR", "yubico"),
        ("YK", "yubikey"),
    ];
    prefixes
        .iter()
        .find(|(p, _)| serial.starts_with(p))
        .map(|(_, k)| *k)
        .unwrap_or("otpd")
}
