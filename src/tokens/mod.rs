//! Token kinds: how a code is matched against a token's secret and counter.
//!
//! Every kind is one file in `kinds/` implementing [`TokenClass`] (its code length, check,
//! redeem, enrolment and description) and one registration line in `kinds/mod.rs`. This
//! module holds what all kinds share: splitting a password, the claims a matching code makes,
//! and [`Matcher`], which opens a token's secret and hands it to the token's class.
//!
//! Matching is pure: it reads the token and proposes what to store. The store then makes
//! that proposal stick with a conditional write, which is what keeps a code single-use under
//! concurrency.

pub mod class;
pub mod email;
pub mod kinds;
pub mod motp;
pub mod oath;
pub mod ports;
pub mod remote;
pub mod yubico;

pub use class::{Detail, EnrolError, Enrolment, Opt, Options, Services, Shown, TokenClass};
pub use kinds::backup::BACKUP_CODE_LEN;
pub use kinds::{class, classes};
pub use ports::Ports;

use crate::config::Config;
use crate::crypto::Keys;
use crate::model::Token;
use crate::store::{Advance, CommitMode, LoginStore, StoreResult, Ticket};

/// Length in characters of the code part of a password for this token.
pub fn code_len(token: &Token) -> usize {
    class(token.kind).code_len(token)
}

/// Splits a password into (PIN, code) at the token's code length; `None` when the password
/// is too short for this token or the cut would fall inside a character.
pub fn split<'a>(password: &'a str, token: &Token) -> Option<(&'a str, &'a str)> {
    let n = code_len(token);
    if password.len() <= n || !password.is_char_boundary(password.len() - n) {
        return None;
    }
    Some(password.split_at(password.len() - n))
}

/// The password as the code alone, for a client that checked the user's own password
/// itself and sends no PIN: it must be exactly one code of this token long.
pub fn code_alone<'a>(password: &'a str, token: &Token) -> Option<&'a str> {
    (password.len() == code_len(token)).then_some(password)
}

/// What a matching code asks the store to do so that it works once only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Store this counter (and drift) with the conditional `advance_counter`.
    Counter(Match),
    /// A validation server accepted the OTP; it keeps the counters, we record the use.
    Remote,
    /// This backup code (by id) matched: mark it used, once.
    BackupCode(i64),
    /// The e-mail code (by id) last sent matched: mark it used, once, if still unexpired.
    EmailCode(i64),
}

/// Why a code did not match, when there is more to say than "wrong code" (for the audit
/// only; the user sees the same answer for every failure).
pub type Miss = Option<String>;

/// The outcome of making a claim stick.
#[derive(Debug)]
pub enum Redeemed {
    /// This request won; the string is the audit reason.
    Won(String),
    /// Another request used this code (or a later one) first: a replay or a race.
    Lost,
    /// A counter advance asked for with [`CommitMode::Defer`] and queued: won or lost is
    /// known when the ticket resolves.
    Pending(Ticket),
}

/// Two pending outcomes are never equal: each ticket is its own write.
impl PartialEq for Redeemed {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Redeemed::Won(a), Redeemed::Won(b)) => a == b,
            (Redeemed::Lost, Redeemed::Lost) => true,
            _ => false,
        }
    }
}

/// What a successful match wants written back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    pub counter: i64,
    pub drift: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResyncError {
    #[error("the two codes were not found as consecutive codes within the resync window")]
    NotFound,
    #[error("only HOTP and TOTP tokens can be resynchronised; a {0} token needs none")]
    NotOath(&'static str),
    #[error("the token's clock is {steps} steps ({seconds} s) off, more than totp.max_drift = {max} steps allows; set the device's clock, or raise totp.max_drift")]
    DriftTooLarge { steps: i64, seconds: i64, max: u32 },
}

/// Matches codes for every token kind. Borrowed per request; holds nothing itself.
pub struct Matcher<'a> {
    sv: Services<'a>,
}

impl<'a> Matcher<'a> {
    pub fn new(
        cfg: &'a Config,
        store: &'a dyn LoginStore,
        keys: &'a Keys,
        ports: &'a Ports,
    ) -> Self {
        Matcher {
            sv: Services {
                cfg,
                store,
                admin: None,
                keys,
                ports,
            },
        }
    }

    /// Does `code` match `token` now? Opens the secret (every kind, also those that keep
    /// none, so the time is alike) unless this row was opened before, and asks the token's
    /// class. Never writes.
    pub fn check(&self, token: &Token, code: &str, now: i64) -> Result<Claim, Miss> {
        let secret = match token.opened.get() {
            Some(s) => s,
            None => match self
                .sv
                .keys
                .open(token.serial.as_bytes(), &token.sealed_secret)
            {
                Ok(s) => token.opened.keep(s),
                Err(e) => {
                    tracing::error!(serial = %token.serial, "token secret: {e}");
                    return Err(Some(format!("token {}: {e}", token.serial)));
                }
            },
        };
        class(token.kind).check(&self.sv, token, secret, code, now)
    }

    /// Makes a claim stick with one conditional, durable write. `activate` turns a pending
    /// token active (enrolment's confirming code). `mode` is passed to a counter advance,
    /// which alone may come back [`Redeemed::Pending`]; the other claims always wait.
    pub fn redeem(
        &self,
        token: &Token,
        claim: &Claim,
        now: i64,
        activate: bool,
        mode: CommitMode,
    ) -> StoreResult<Redeemed> {
        class(token.kind).redeem(&self.sv, token, claim, now, activate, mode)
    }

    /// Resynchronises a counter- or time-based token from two consecutive codes.
    pub fn resync(
        &self,
        token: &Token,
        code1: &str,
        code2: &str,
        now: i64,
    ) -> Result<Result<Match, ResyncError>, crate::crypto::CryptoError> {
        let secret = self
            .sv
            .keys
            .open(token.serial.as_bytes(), &token.sealed_secret)?;
        Ok(class(token.kind).resync(&self.sv, token, &secret, (code1, code2), now))
    }
}

/// The store write for each claim; a kind's `redeem` unless it has its own.
pub fn redeem_claim(
    store: &dyn LoginStore,
    token: &Token,
    claim: &Claim,
    now: i64,
    activate: bool,
    mode: CommitMode,
) -> StoreResult<Redeemed> {
    match claim {
        Claim::Counter(m) => Ok(
            match store.advance_counter(token.id, m.counter, m.drift, now, activate, mode)? {
                Advance::Durable(true) => Redeemed::Won("ok".into()),
                Advance::Durable(false) => Redeemed::Lost,
                Advance::Pending(ticket) => Redeemed::Pending(ticket),
            },
        ),
        Claim::BackupCode(id) => {
            if !store.use_backup_code(token.id, *id, now)? {
                return Ok(Redeemed::Lost);
            }
            let (left, _) = store.backup_code_counts(token.id)?;
            Ok(Redeemed::Won(format!("ok: backup code used, {left} left")))
        }
        Claim::EmailCode(id) => Ok(if store.use_email_code(token.id, *id, now, activate)? {
            Redeemed::Won("ok: e-mail code used".into())
        } else {
            Redeemed::Lost
        }),
        Claim::Remote => {
            store.mark_token_used(token.id, now, activate)?;
            Ok(Redeemed::Won(
                "ok: validation server accepted the OTP".into(),
            ))
        }
    }
}
