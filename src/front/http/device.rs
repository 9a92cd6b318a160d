//! Trusted devices over HTTP (docs/http.md#trusted-devices), otpd's addition to privacyIDEA's
//! `/validate/check`: `remember_device=1` (with `device_label`, else the User-Agent) asks to
//! trust the device after an accepted PIN+code, and the answer's `detail.trusted_device`
//! carries its token once; `device_token=...` with `pass` = the PIN alone logs in with it.

use super::params::Params;
use super::reply::Failure;
use super::Caller;
use crate::engine::{DeviceRequest, IssuedDevice};
use serde_json::{json, Value};
use zeroize::Zeroizing;

/// Longest device token read; a real one has 43 characters.
const MAX_TOKEN_LEN: usize = 128;

/// The device parameters of a login. `may_remember`: the answer can carry a new device
/// token (privacyIDEA's `/validate/check`); elsewhere `remember_device` is refused rather
/// than a device made whose token nobody would see.
pub(super) fn request(
    p: &Params,
    caller: &Caller,
    may_remember: bool,
) -> Result<DeviceRequest, Failure> {
    let token = match p.some("device_token") {
        Some(t) if t.len() > MAX_TOKEN_LEN => {
            return Err(Failure::parameter(&format!(
                "parameter `device_token` is longer than {MAX_TOKEN_LEN} bytes"
            )))
        }
        Some(t) => Some(Zeroizing::new(t.to_string())),
        None => None,
    };
    let remember = match p.some("remember_device") {
        None => false,
        Some(v) => match v.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => true,
            "0" | "false" | "no" | "off" => false,
            _ => {
                return Err(Failure::parameter(
                    "parameter `remember_device` must be 1 or 0 (true or false)",
                ))
            }
        },
    };
    if remember && !may_remember {
        return Err(Failure::parameter(
            "`remember_device` is answered only by /validate/check in privacyIDEA's dialect",
        ));
    }
    let label = p
        .some("device_label")
        .or(caller.user_agent.as_deref())
        .unwrap_or("device");
    Ok(DeviceRequest {
        remember: remember.then(|| label.to_string()),
        token,
    })
}

/// What goes into the answer's `detail`: shown once, never logged.
pub(super) fn detail(d: &IssuedDevice) -> Value {
    json!({
        "id": d.id,
        "label": d.label,
        "token": d.token.as_str(),
        "expires": d.expires_at,
    })
}
