//! What the management API answers: plain data made from the store's rows, with nothing a
//! login could use (no sealed secret, no hash, no counter). Secrets shown once (a new
//! token's secret, backup codes, an app password) are wiped when the answer is dropped.

use crate::model::{Account, AppPassword, AuditRecord, Token};
use serde::{Serialize, Serializer};
use zeroize::Zeroizing;

fn wiped<S: Serializer>(v: &Zeroizing<String>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.as_str())
}

fn wiped_opt<S: Serializer>(v: &Option<Zeroizing<String>>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_some(v.as_str()),
        None => s.serialize_none(),
    }
}

fn wiped_list<S: Serializer>(v: &[Zeroizing<String>], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|c| c.as_str()))
}

#[derive(Debug, Clone, Serialize)]
pub struct TokenView {
    pub serial: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// pending, active or disabled.
    pub state: String,
    pub label: String,
    /// The length of a code.
    pub digits: u32,
    /// Unix seconds.
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    /// A pending token: when it can no longer be activated (`enrol_timeout`).
    pub activate_before: Option<i64>,
}

impl TokenView {
    pub(super) fn of(t: &Token, activate_before: Option<i64>) -> TokenView {
        TokenView {
            serial: t.serial.clone(),
            kind: t.kind.as_str().to_string(),
            state: t.state.as_str().to_string(),
            label: t.label.clone(),
            digits: t.digits,
            created_at: t.created_at,
            last_used_at: t.last_used_at,
            activate_before,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LockView {
    /// Locked now (until `locked_until`).
    pub locked: bool,
    pub locked_until: Option<i64>,
    /// Failed logins in a row, as stored.
    pub failures: u32,
    pub last_failure: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BackupView {
    pub serial: String,
    pub left: u32,
    pub total: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct AccountView {
    pub name: String,
    pub level: String,
    pub has_pin: bool,
    pub created_at: i64,
    pub lock: LockView,
    pub tokens: Vec<TokenView>,
    /// `null` when the account never had a set.
    pub backup_codes: Option<BackupView>,
}

impl AccountView {
    pub(super) fn lock_of(a: &Account, now: i64) -> LockView {
        LockView {
            locked: a.locked_until.is_some_and(|t| t > now),
            locked_until: a.locked_until.filter(|t| *t > now),
            failures: a.failures,
            last_failure: a.last_failure,
        }
    }
}

/// One line of the admin's user list.
#[derive(Debug, Clone, Serialize)]
pub struct UserSummary {
    pub name: String,
    pub level: String,
    pub has_pin: bool,
    pub created_at: i64,
    pub locked: bool,
}

/// A new token: what the user needs to set up the app, shown once.
#[derive(Serialize)]
pub struct EnrolView {
    pub token: TokenView,
    /// The otpauth:// URI (OATH kinds).
    #[serde(serialize_with = "wiped_opt")]
    pub otpauth_uri: Option<Zeroizing<String>>,
    /// The secret in base32, in groups of four for typing.
    #[serde(serialize_with = "wiped_opt")]
    pub secret: Option<Zeroizing<String>>,
    /// The URI as a QR code: an SVG document.
    #[serde(serialize_with = "wiped_opt")]
    pub qr_svg: Option<Zeroizing<String>>,
    /// The URI as a QR code: a PNG `data:` URI.
    #[serde(serialize_with = "wiped_opt")]
    pub qr_png: Option<Zeroizing<String>>,
    /// An e-mail token: the (masked) address its first code went to.
    pub code_sent_to: Option<String>,
}

/// A new set of backup codes, shown once.
#[derive(Serialize)]
pub struct BackupSetView {
    pub serial: String,
    #[serde(serialize_with = "wiped_list")]
    pub codes: Vec<Zeroizing<String>>,
}

/// A new app password, shown once.
#[derive(Serialize)]
pub struct NewAppPasswordView {
    #[serde(serialize_with = "wiped")]
    pub password: Zeroizing<String>,
    pub app_password: AppPassword,
    /// Classes the account's level asks an app password for now, where this one works.
    pub effective_for: Vec<String>,
}

/// One page of the account's own audit, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct ActivityView {
    pub page: usize,
    pub per_page: usize,
    /// Whether an older page exists.
    pub more: bool,
    pub items: Vec<AuditRecord>,
}

/// A trusted device, without anything that logs in (its token was shown once, at login).
#[derive(Debug, Clone, Serialize)]
pub struct DeviceView {
    pub id: i64,
    pub label: String,
    /// The service class it was trusted for.
    pub class: String,
    /// The client (front-end client name) it was trusted through.
    pub client: Option<String>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub expires_at: i64,
    pub expired: bool,
}

impl DeviceView {
    pub(super) fn of(d: &crate::store::TrustedDevice, now: i64) -> DeviceView {
        DeviceView {
            id: d.id,
            label: d.label.clone(),
            class: d.class.clone(),
            client: d.client.clone(),
            created_at: d.created_at,
            last_used_at: d.last_used_at,
            expires_at: d.expires_at,
            expired: d.expires_at <= now,
        }
    }
}
