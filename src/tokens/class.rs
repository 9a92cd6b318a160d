//! The one trait every token kind implements, and what its methods are given.
//!
//! A kind owns everything that differs between kinds: how long its code is, what a typed code
//! proves and how that is made to stick, what enrolment takes and stores, and what `token
//! list` and `token show` print about it. The engine, the admin and the CLI ask the kind's
//! class (`tokens::class`) and never match on the kind's name.

use super::ports::Ports;
use super::{Claim, Match, Miss, Redeemed, ResyncError};
use crate::config::Config;
use crate::crypto::Keys;
use crate::model::{Token, TokenKind};
use crate::store::{AdminStore, CommitMode, LoginStore, StoreResult};
use crate::tokens::oath::Algorithm;
use std::collections::BTreeMap;
use zeroize::Zeroizing;

/// What a kind may use while it checks, redeems or enrols: borrowed per request.
pub struct Services<'a> {
    pub cfg: &'a Config,
    pub store: &'a dyn LoginStore,
    /// The administration's store, at enrolment only (`None` on a login's path): what an
    /// enrolment checks across all tokens (one YubiKey, one token).
    pub admin: Option<&'a dyn AdminStore>,
    pub keys: &'a Keys,
    pub ports: &'a Ports,
}

/// One option of a kind's enrolment (`otpd token add KIND --NAME VALUE`). Declared as data so
/// that the CLI (and a management API later) builds its flags from it.
#[derive(Debug, Clone, Copy)]
pub struct Opt {
    /// The flag's name without dashes, and the key in [`Options`].
    pub name: &'static str,
    pub value_name: &'static str,
    pub help: &'static str,
    pub required: bool,
    pub default: Option<&'static str>,
    /// The only values accepted (checked before the kind sees them); empty = any.
    pub choices: &'static [&'static str],
}

impl Opt {
    pub const fn value(name: &'static str, value_name: &'static str, help: &'static str) -> Opt {
        Opt {
            name,
            value_name,
            help,
            required: false,
            default: None,
            choices: &[],
        }
    }
    pub const fn required(self) -> Opt {
        Opt {
            required: true,
            ..self
        }
    }
    pub const fn default(self, v: &'static str) -> Opt {
        Opt {
            default: Some(v),
            ..self
        }
    }
    pub const fn choices(self, c: &'static [&'static str]) -> Opt {
        Opt { choices: c, ..self }
    }
}

/// The values given for a kind's [`Opt`]s. Wiped when dropped: secrets are among them.
#[derive(Default)]
pub struct Options {
    values: BTreeMap<&'static str, Zeroizing<String>>,
}

/// Names only: values may be secrets.
impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.values.keys()).finish()
    }
}

impl Options {
    pub fn set(&mut self, name: &'static str, value: impl Into<String>) -> &mut Self {
        self.values.insert(name, Zeroizing::new(value.into()));
        self
    }
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(|v| v.as_str())
    }
}

/// Why an enrolment was not done. The text names the option at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnrolError {
    /// The input is wrong: fix the command.
    #[error("{0}")]
    Invalid(String),
    /// The input is fine but the state forbids it (configuration, a key enrolled already).
    #[error("{0}")]
    Refused(String),
}

/// What a kind asks to store for a new token; the admin adds serial, owner and state.
pub struct Enrolment {
    /// Sealed under the token's serial. Empty for kinds whose secret lives elsewhere.
    pub secret: Zeroizing<Vec<u8>>,
    pub algorithm: Algorithm,
    /// The code's length where the kind has one per token.
    pub digits: u32,
    pub period: u32,
    pub label: String,
    pub public_id: Option<String>,
    pub address: Option<String>,
}

impl Enrolment {
    /// A kind without OATH parameters: algorithm unused, `digits` the code's length.
    pub fn plain(secret: Zeroizing<Vec<u8>>, digits: usize, label: String) -> Enrolment {
        Enrolment {
            secret,
            algorithm: Algorithm::Sha1,
            digits: digits as u32,
            period: 0,
            label,
            public_id: None,
            address: None,
        }
    }
}

/// What the admin is shown once a new token is stored.
pub enum Shown {
    Nothing,
    /// The secret to type or scan into an app (base32 and the otpauth:// URI).
    Secret {
        b32: Zeroizing<String>,
        uri: Zeroizing<String>,
    },
    /// A first code went to this (masked) address; typing it back activates the token.
    CodeSentTo(String),
}

/// What `token list` adds for a token: the DETAIL column and extra JSON fields.
#[derive(Default)]
pub struct Detail {
    pub text: String,
    pub json: Vec<(&'static str, serde_json::Value)>,
}

/// A token kind. One implementation per file in `tokens/kinds/`, registered once there.
pub trait TokenClass: Send + Sync {
    /// The name stored in the database and typed after `token add`.
    fn kind(&self) -> TokenKind;
    /// One line for `otpd token add --help`.
    fn about(&self) -> &'static str;
    /// The start of a new token's serial.
    fn serial_prefix(&self) -> &'static str;
    /// Length in characters of the code part of a password (the PIN is what comes before).
    fn code_len(&self, token: &Token) -> usize;
    /// Whether `code` is shaped like a code of this token; the error says what one looks like
    /// (activation, so that a typo is not reported as "does not match").
    fn check_shape(&self, token: &Token, code: &str) -> Result<(), String>;

    /// Does `code` match `token` now? `secret` is the opened sealed secret. Does all of its
    /// work whatever the outcome, so the time says little about why a code failed. Never
    /// writes.
    fn check(
        &self,
        sv: &Services<'_>,
        token: &Token,
        secret: &[u8],
        code: &str,
        now: i64,
    ) -> Result<Claim, Miss>;

    /// Makes a claim stick, once, with one conditional durable write. `activate` turns a
    /// pending token active (enrolment's confirming code).
    fn redeem(
        &self,
        sv: &Services<'_>,
        token: &Token,
        claim: &Claim,
        now: i64,
        activate: bool,
        mode: CommitMode,
    ) -> StoreResult<Redeemed> {
        super::redeem_claim(sv.store, token, claim, now, activate, mode)
    }

    /// Finds two consecutive codes in a wide window (a token that ran ahead, a clock that
    /// drifted). Only counter- and time-based kinds can.
    fn resync(
        &self,
        _sv: &Services<'_>,
        _token: &Token,
        _secret: &[u8],
        _codes: (&str, &str),
        _now: i64,
    ) -> Result<Match, ResyncError> {
        Err(ResyncError::NotOath(self.kind().as_str()))
    }

    /// Whether checking a code asks a service outside otpd (a validation server). Such a
    /// check is never run for its cost alone (engine/equal_time.rs): it would spend the
    /// user's OTP there, and a network's time cannot be imitated anyway.
    fn asks_outside(&self) -> bool {
        false
    }

    /// How `token resync` reports where the token now stands, after "resynchronised".
    fn resynced(&self, token: &Token) -> String {
        format!(" at counter {}", token.last_counter)
    }

    /// The options of `otpd token add KIND`; `None` for kinds enrolled another way (backup
    /// codes). Label, `--active` and output flags are common to all and not listed.
    fn options(&self) -> Option<&'static [Opt]>;

    /// Checks the options and says what to store. `active`: the admin vouches for the token
    /// (no confirming code).
    fn enrol(
        &self,
        _sv: &Services<'_>,
        _o: &Options,
        _label: &str,
        _active: bool,
    ) -> Result<Enrolment, EnrolError> {
        Err(EnrolError::Invalid(format!(
            "a {} token is not enrolled with otpd token add",
            self.kind()
        )))
    }

    /// Runs once the token is stored: what to show the admin. An error here removes the
    /// token again (nothing half-enrolled stays).
    fn after_enrol(
        &self,
        _sv: &Services<'_>,
        _token: &Token,
        _secret: &[u8],
        _active: bool,
        _now: i64,
    ) -> Result<Shown, EnrolError> {
        Ok(Shown::Nothing)
    }

    /// The kind's lines of `token show`, after serial, user, type and state.
    fn describe(&self, token: &Token) -> Vec<(&'static str, String)>;

    /// The DETAIL column of `token list` and its JSON fields.
    fn detail(&self, _sv: &Services<'_>, token: &Token) -> StoreResult<Detail> {
        Ok(Detail {
            text: token.public_id.clone().unwrap_or_default(),
            json: Vec::new(),
        })
    }

    /// JSON fields shown in place of what serialising the token gives (`full`: one token
    /// asked for by serial, where the admin sees everything).
    fn json_fields(&self, _token: &Token, _full: bool) -> Vec<(&'static str, serde_json::Value)> {
        Vec::new()
    }
}
