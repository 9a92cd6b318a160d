//! Plain data shared by the store, the engine and the admin commands.

use serde::{Deserialize, Serialize};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};
use zeroize::Zeroizing;

/// A token kind, by the name stored in the `kind` column and typed after `token add`.
///
/// Not a closed enum: each kind is one file under `tokens/kinds/`, which names its kind with a
/// constant (`TokenKind::Totp`, ...) and registers its class in `tokens/kinds/mod.rs`. Whatever
/// depends on the kind asks that class (`tokens::class`), never matches on the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenKind(&'static str);

impl TokenKind {
    /// For the constants in the kinds' own files; a name must be registered to be parsed.
    pub const fn named(name: &'static str) -> TokenKind {
        TokenKind(name)
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl Serialize for TokenKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

impl std::fmt::Display for TokenKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenState {
    /// Enrolled but not yet confirmed with a correct code: matches nothing.
    Pending,
    Active,
    Disabled,
}

impl TokenState {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenState::Pending => "pending",
            TokenState::Active => "active",
            TokenState::Disabled => "disabled",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(TokenState::Pending),
            "active" => Some(TokenState::Active),
            "disabled" => Some(TokenState::Disabled),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Account {
    #[serde(skip)]
    pub id: i64,
    pub name: String,
    pub level: String,
    #[serde(skip)]
    pub pin_salt: Option<Vec<u8>>,
    #[serde(skip)]
    pub pin_hash: Option<Vec<u8>>,
    pub has_pin: bool,
    pub failures: u32,
    /// Unix seconds of the last failed login, if any.
    pub last_failure: Option<i64>,
    /// Unix seconds until which the account is locked, if locked.
    pub locked_until: Option<i64>,
    pub created_at: i64,
    /// Sources (addresses, /64s, station ids) the account has logged in from, most recently added first:
    /// their failures are counted apart from everybody else's (engine/gate.rs).
    #[serde(skip)]
    pub familiar_sources: Vec<String>,
    /// How often the admin unlocked the account.
    #[serde(skip)]
    pub unlocks: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Token {
    #[serde(skip)]
    pub id: i64,
    pub serial: String,
    pub user: String,
    #[serde(skip)]
    pub account_id: i64,
    #[serde(rename = "type")]
    pub kind: TokenKind,
    pub state: TokenState,
    pub algorithm: Algorithm,
    pub digits: u32,
    /// TOTP period in seconds (0 for HOTP).
    pub period: u32,
    #[serde(skip)]
    pub sealed_secret: Vec<u8>,
    /// Last accepted HOTP counter, TOTP time step or packed YubiKey counter; -1 when never
    /// used.
    pub last_counter: i64,
    /// TOTP: measured clock offset of the device, in steps.
    pub drift: i64,
    pub label: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    /// An identifier that is not secret and names the device: a YubiKey's public id
    /// (modhex). Unique among YubiKeys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_id: Option<String>,
    /// Where codes are sent (an e-mail token's address). Not serialised as it is: lists show
    /// it masked (the kind's `describe`).
    #[serde(skip)]
    pub address: Option<String>,
    /// The secret once a login has opened it (`tokens::Matcher::check`).
    #[serde(skip)]
    pub opened: Opened,
}

/// A token's secret, opened once for as long as the token's row is kept: the account cache
/// (`store/cache.rs`) hands the same rows to every login of the account, and opening the
/// sealed secret for each was about 6 % of the daemon's CPU at window 128
/// (docs/performance.md). It holds nothing the key file in the same memory does not already
/// open; it is wiped when the row goes, and never printed.
#[derive(Clone, Default)]
pub struct Opened(OnceLock<Zeroizing<Vec<u8>>>);

impl Opened {
    pub fn get(&self) -> Option<&[u8]> {
        self.0.get().map(|s| s.as_slice())
    }

    /// Keeps `secret` unless another login kept one first (the same secret), and returns
    /// the one kept.
    pub fn keep(&self, secret: Zeroizing<Vec<u8>>) -> &[u8] {
        self.0.get_or_init(|| secret).as_slice()
    }
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "Opened(..)"
        } else {
            "Opened(-)"
        })
    }
}

#[derive(Debug, Clone)]
pub struct NewToken {
    pub serial: String,
    pub account_id: i64,
    pub kind: TokenKind,
    pub state: TokenState,
    pub algorithm: Algorithm,
    pub digits: u32,
    pub period: u32,
    pub sealed_secret: Vec<u8>,
    pub label: String,
    pub created_at: i64,
    pub public_id: Option<String>,
    pub address: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    /// Unix milliseconds.
    pub ts_ms: i64,
    pub user: String,
    pub service: String,
    pub rhost: Option<String>,
    pub client: Option<String>,
    pub verdict: String,
    pub reason: String,
    pub serial: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub user: Option<String>,
    pub since_ms: Option<i64>,
    pub limit: usize,
}

/// An app-specific password: used alone, without PIN, where the account's level asks for one.
/// Only its keyed hash is stored.
#[derive(Debug, Clone, Serialize)]
pub struct AppPassword {
    pub id: i64,
    #[serde(skip)]
    pub account_id: i64,
    pub label: String,
    /// Service classes it works for; empty = every class that asks for an app password.
    pub services: Vec<String>,
    #[serde(skip)]
    pub salt: Vec<u8>,
    #[serde(skip)]
    pub hash: Vec<u8>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    /// Source address (or client) of the last use.
    pub last_used_from: Option<String>,
}

impl AppPassword {
    pub fn allows(&self, class: &str) -> bool {
        self.services.is_empty() || self.services.iter().any(|s| s == class)
    }
}

/// One stored backup code: a keyed hash, never the code.
#[derive(Debug, Clone)]
pub struct BackupCode {
    pub id: i64,
    pub salt: Vec<u8>,
    pub hash: Vec<u8>,
}

/// The code last sent for an e-mail token: a keyed hash, never the code.
#[derive(Debug, Clone)]
pub struct EmailCode {
    /// Never reused: a replaced code's claim cannot redeem its successor.
    pub id: i64,
    pub salt: Vec<u8>,
    pub hash: Vec<u8>,
    /// Unix seconds; the code works before this.
    pub expires_at: i64,
    pub used: bool,
}

/// The HMAC hash of an OATH token (HOTP, TOTP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
            Algorithm::Sha512 => "SHA512",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "sha1" => Some(Algorithm::Sha1),
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }
}

/// The verdict of a login.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Accept,
    Reject,
    Challenge,
    /// Not ours: let the normal password stack decide.
    Defer,
    /// The service is switched off for this account.
    Deny,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Accept => "accept",
            Verdict::Reject => "reject",
            Verdict::Challenge => "challenge",
            Verdict::Defer => "defer",
            Verdict::Deny => "deny",
        }
    }
}

/// Time, injectable so tests can move it.
pub trait Clock: Send + Sync {
    /// Unix time in milliseconds.
    fn now_ms(&self) -> i64;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// What an API key may do (the management API, `front/http/api/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiScope {
    /// Everything the CLI does for accounts, unlock included, without a fresh proof.
    Admin,
    /// The provider's portal: one named user per request, weakening actions only with a
    /// fresh PIN+code.
    Portal,
    /// Reads only.
    Read,
}

impl ApiScope {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiScope::Admin => "admin",
            ApiScope::Portal => "portal",
            ApiScope::Read => "read",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(ApiScope::Admin),
            "portal" => Some(ApiScope::Portal),
            "read" => Some(ApiScope::Read),
            _ => None,
        }
    }
}

/// An API key as stored: its name and scope; the key itself only as a keyed hash, never
/// serialised.
#[derive(Debug, Clone, Serialize)]
pub struct ApiKey {
    #[serde(skip)]
    pub id: i64,
    pub name: String,
    pub scope: ApiScope,
    pub created_at: i64,
    /// Unix seconds, updated at most once a minute (a write per request would cost more than
    /// it tells).
    pub last_used_at: Option<i64>,
}
