//! Wire protocol v1 of otpd's Unix socket: one JSON object per line each way
//! (docs/protocol.md). The one definition the daemon, the PAM module and the CLI share: the
//! daemon parses requests and writes answers ([`daemon`]), callers write requests and read
//! answers ([`client`]). Pure functions, no I/O, no runtime; depends on serde and zeroize
//! only, so the PAM module can link it into any process.

pub mod client;
pub mod daemon;

pub use daemon::{
    account_answer, check_answer, error_answer, parse, ping_answer, status_answer, ProtoError,
    Request,
};

use serde::{Deserialize, Serialize};

/// Protocol version this daemon speaks (`ping` reports it).
pub const VERSION: u32 = 1;
/// Longest request line, newline excluded. Longer lines are answered with an error and the
/// connection is closed: the daemon never buffers more than this per connection.
pub const MAX_LINE: usize = 64 * 1024;
/// Bounds of the short text fields; the engine bounds user and password itself.
const MAX_FIELD: usize = 256;
const MAX_STATE: usize = 1024;

/// Error codes on the wire (docs/protocol.md lists them).
pub mod codes {
    pub const BAD_JSON: &str = "bad_json";
    pub const MISSING_FIELD: &str = "missing_field";
    pub const BAD_FIELD: &str = "bad_field";
    pub const UNKNOWN_OP: &str = "unknown_op";
    pub const LINE_TOO_LONG: &str = "line_too_long";
    pub const FORBIDDEN: &str = "forbidden";
    pub const BUSY: &str = "busy";
    pub const INTERNAL: &str = "internal";
}

/// The verdict of a check, as the wire spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Reject,
    Challenge,
    /// Not the daemon's to decide: the rest of the PAM stack decides.
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

/// The verdict of the account phase, as the wire spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountVerdict {
    Allow,
    Deny,
    /// Not the daemon's account: the rest of the stack decides.
    Ignore,
}

impl AccountVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountVerdict::Allow => "allow",
            AccountVerdict::Deny => "deny",
            AccountVerdict::Ignore => "ignore",
        }
    }
}

/// The answer to `status`: the daemon's health and counts (never a user name or secret).
#[derive(Debug, Serialize, Deserialize)]
pub struct StatusAnswer {
    pub version: String,
    pub protocol: u32,
    pub uptime_s: u64,
    /// "ok", or what the store said when asked.
    pub store: String,
    pub accounts: Option<usize>,
    pub tokens: Option<usize>,
    /// Logins answered since start, by verdict.
    pub requests: std::collections::BTreeMap<String, u64>,
}
