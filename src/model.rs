//! Plain data shared by the store, the engine and the admin commands.

use crate::tokens::oath::Algorithm;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenKind {
    Totp,
    Hotp,
    /// Yubico OTP validated here: private id and AES key sealed, public id in clear.
    Yubikey,
    /// Yubico OTP checked by a validation server: only the public id is kept.
    YubikeyRemote,
    /// Mobile-OTP: secret and mPIN sealed together, 10-second steps.
    Motp,
    /// A set of printed one-use backup codes (keyed hashes in `backup_codes`).
    Backup,
    /// Codes sent by e-mail on request: the address in `public_id`, the current code as a
    /// keyed hash in `email_codes`.
    Email,
}

impl TokenKind {
    pub const ALL: [TokenKind; 7] = [
        TokenKind::Totp,
        TokenKind::Hotp,
        TokenKind::Yubikey,
        TokenKind::YubikeyRemote,
        TokenKind::Motp,
        TokenKind::Backup,
        TokenKind::Email,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Totp => "totp",
            TokenKind::Hotp => "hotp",
            TokenKind::Yubikey => "yubikey",
            TokenKind::YubikeyRemote => "yubikey-remote",
            TokenKind::Motp => "motp",
            TokenKind::Backup => "backup",
            TokenKind::Email => "email",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        TokenKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
    /// The start of a new token's serial.
    pub fn serial_prefix(self) -> &'static str {
        match self {
            TokenKind::Totp => "TOTP",
            TokenKind::Hotp => "HOTP",
            TokenKind::Yubikey => "YK",
            TokenKind::YubikeyRemote => "YKR",
            TokenKind::Motp => "MOTP",
            TokenKind::Backup => "BKUP",
            TokenKind::Email => "MAIL",
        }
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
    /// An identifier that is not secret: a YubiKey's public id (modhex), an e-mail token's
    /// address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_id: Option<String>,
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
