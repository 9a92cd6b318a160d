//! What goes into the engine and what comes out.

use super::messages;
pub use crate::model::Verdict;
use unicode_normalization::UnicodeNormalization;
use zeroize::Zeroizing;

/// How every unknown-user decision's reason begins (engine/equal_time.rs).
pub const UNKNOWN_USER: &str = "unknown user";

/// Longest password the engine looks at; RADIUS allows 128, PAM callers anything.
pub const MAX_PASSWORD_LEN: usize = 512;
pub const MAX_USER_LEN: usize = 256;

#[derive(Debug, Clone, Default)]
pub struct CheckRequest {
    pub user: String,
    /// PIN followed by the code (or what a challenge asked for). Wiped when dropped.
    pub password: Zeroizing<String>,
    /// Service class, or a PAM service name that config maps to one.
    pub service: String,
    /// Where the login comes from (client address), if known.
    pub rhost: Option<String>,
    /// Which front-end client asked (RADIUS client name, "pam", "cli").
    pub client: Option<String>,
    /// Continues a challenge.
    pub state: Option<String>,
    /// The front-end answers Defer and Deny as it answers Reject (RADIUS has no password
    /// stack behind it): then they must cost what a Reject costs, or their speed tells an
    /// account at level `off`, or no account at all, from one that asks for a code.
    pub defer_is_reject: bool,
    /// The password is the code alone: the client checked the user's own password itself
    /// (an HTTP client with `pin = "none"`, docs/http.md). The gate still counts.
    pub code_only: bool,
    /// Trusted devices: a device token brought back, or the wish to trust this device.
    pub device: DeviceRequest,
}

/// What a front-end carries for trusted devices (engine/trusted.rs). Both parts are optional
/// and independent of the protocol: HTTP carries them as `device_token` and
/// `remember_device`/`device_label`, another front-end as it can.
#[derive(Clone, Default)]
pub struct DeviceRequest {
    /// After an accepted PIN+code, trust this device under this label ("Firefox on the
    /// office laptop"); the answer carries its token once ([`Decision::device`]).
    pub remember: Option<String>,
    /// The token of a trusted device; `password` is then the PIN alone. Wiped when dropped.
    pub token: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for DeviceRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceRequest")
            .field("remember", &self.remember)
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

/// A device trusted by this login: its token goes to the client once and is never stored or
/// logged (the store keeps a keyed hash).
#[derive(Clone)]
pub struct IssuedDevice {
    pub id: i64,
    pub label: String,
    /// 256 random bits, base64url without padding (43 characters).
    pub token: Zeroizing<String>,
    /// Unix seconds.
    pub expires_at: i64,
}

impl std::fmt::Debug for IssuedDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedDevice")
            .field("id", &self.id)
            .field("label", &self.label)
            .field("token", &"<hidden>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct Decision {
    pub verdict: Verdict,
    /// Safe to show the user.
    pub message: String,
    /// For the audit and the log only.
    pub reason: String,
    /// The token that matched, if one did.
    pub serial: Option<String>,
    /// Challenge state to send back with the next request.
    pub state: Option<String>,
    /// The user name after normalisation.
    pub user: String,
    /// The service class the login counted as.
    pub class: Option<String>,
    /// The device this login trusted (it asked to, and its class allows it): the client
    /// shows or keeps the token; nothing else may.
    pub device: Option<IssuedDevice>,
}

impl Decision {
    fn new(verdict: Verdict, message: &str, user: String, reason: impl Into<String>) -> Self {
        Decision {
            verdict,
            message: message.to_string(),
            reason: reason.into(),
            serial: None,
            state: None,
            user,
            class: None,
            device: None,
        }
    }
    pub fn accept(user: String, serial: String) -> Self {
        Decision::new(Verdict::Accept, messages::ACCEPT, user, "ok").serial(serial)
    }
    pub fn reject(user: String, reason: impl Into<String>) -> Self {
        Decision::new(Verdict::Reject, messages::REJECT, user, reason)
    }
    pub fn defer(user: String, reason: impl Into<String>) -> Self {
        Decision::new(Verdict::Defer, messages::DEFER, user, reason)
    }
    pub fn deny(user: String, reason: impl Into<String>) -> Self {
        Decision::new(Verdict::Deny, messages::DENY, user, reason)
    }
    pub fn challenge(user: String, message: &str, state: String, reason: &str) -> Self {
        let mut d = Decision::new(Verdict::Challenge, message, user, reason);
        d.state = Some(state);
        d
    }
    pub fn serial(mut self, serial: String) -> Self {
        self.serial = Some(serial);
        self
    }
    /// Whether the name matched no account (`unknown_user`): a front-end set to tell unknown
    /// users apart (privacyIDEA's error 904) asks this, never the reason's wording.
    pub fn is_unknown_user(&self) -> bool {
        self.reason.starts_with(UNKNOWN_USER)
    }
    pub fn class(mut self, class: String) -> Self {
        self.class = Some(class);
        self
    }
}

/// One spelling per account: Unicode NFC (a name typed as NFD finds the same account), no
/// control characters, no surrounding white space, bounded length.
pub fn normalize_user(raw: &str) -> Result<String, &'static str> {
    let u: String = raw.nfc().collect();
    if u.is_empty() {
        return Err("empty user name");
    }
    if u.len() > MAX_USER_LEN {
        return Err("user name longer than 256 bytes");
    }
    if u.chars().any(char::is_control) {
        return Err("control character in user name");
    }
    if u.trim() != u {
        return Err("white space around user name");
    }
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nfc_and_nfd_are_one_user() {
        let nfc = normalize_user("j\u{00f6}rg").expect("nfc");
        let nfd = normalize_user("jo\u{0308}rg").expect("nfd");
        assert_eq!(nfc, nfd);
    }

    #[test]
    fn bad_user_names() {
        assert!(normalize_user("").is_err());
        assert!(normalize_user(" alice").is_err());
        assert!(normalize_user("al\0ice").is_err());
        assert!(normalize_user(&"a".repeat(257)).is_err());
        assert!(normalize_user("alice@example.org").is_ok());
    }
}
