//! Token types: how a code is matched against a token's secret and counter.
//!
//! Matching is pure: it reads the token and proposes what to store. The store then makes
//! that proposal stick with a conditional write, which is what keeps a code single-use under
//! concurrency.
//!
//! Every token kind answers two questions for the engine, so its loop stays one loop:
//! how long the code part of a password is ([`code_len`], the PIN is what comes before), and
//! what a typed code proves ([`Matcher::check`] gives a [`Claim`], [`Matcher::redeem`] makes
//! it stick exactly once).

pub mod email;
pub mod motp;
pub mod oath;
pub mod remote;
pub mod yubico;

use crate::config::{Config, HotpConfig, TotpConfig};
use crate::crypto::Keys;
use crate::model::{Token, TokenKind};
use crate::store::{Advance, CommitMode, LoginStore, StoreResult, Ticket};
use oath::{find_counter, totp_step};

/// Length in characters of the code part of a password for this token.
pub fn code_len(token: &Token) -> usize {
    fixed_code_len(token.kind).unwrap_or(token.digits as usize)
}

/// The code length of kinds whose codes have one length (OATH tokens have their `digits`).
pub fn fixed_code_len(kind: TokenKind) -> Option<usize> {
    match kind {
        // E-mailed codes have the length `[email] digits` had when the token was enrolled.
        TokenKind::Totp | TokenKind::Hotp | TokenKind::Email => None,
        TokenKind::Yubikey | TokenKind::YubikeyRemote => Some(yubico::OTP_LEN),
        TokenKind::Motp => Some(motp::CODE_LEN),
        TokenKind::Backup => Some(BACKUP_CODE_LEN),
    }
}

/// Digits of a printed backup code.
pub const BACKUP_CODE_LEN: usize = 8;

/// Splits a password into (PIN, code) at the token's code length; `None` when the password
/// is too short for this token or the cut would fall inside a character.
pub fn split<'a>(password: &'a str, token: &Token) -> Option<(&'a str, &'a str)> {
    let n = code_len(token);
    if password.len() <= n || !password.is_char_boundary(password.len() - n) {
        return None;
    }
    Some(password.split_at(password.len() - n))
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

/// Matches codes for every token kind. Borrowed per request; holds nothing itself.
pub struct Matcher<'a> {
    cfg: &'a Config,
    store: &'a dyn LoginStore,
    keys: &'a Keys,
}

impl<'a> Matcher<'a> {
    pub fn new(cfg: &'a Config, store: &'a dyn LoginStore, keys: &'a Keys) -> Self {
        Matcher { cfg, store, keys }
    }

    /// Does `code` match `token` now? Does all of a kind's work whatever the outcome, so the
    /// time says little about why a code failed. Never writes.
    pub fn check(&self, token: &Token, code: &str, now: i64) -> Result<Claim, Miss> {
        let secret = match self
            .keys
            .open(token.serial.as_bytes(), &token.sealed_secret)
        {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(serial = %token.serial, "token secret: {e}");
                return Err(Some(format!("token {}: {e}", token.serial)));
            }
        };
        match token.kind {
            TokenKind::Totp | TokenKind::Hotp => {
                match_oath(token, &secret, code, now, &self.cfg.hotp, &self.cfg.totp)
                    .map(Claim::Counter)
                    .ok_or(None)
            }
            TokenKind::Yubikey => match_yubikey(token, &secret, code).map(Claim::Counter),
            TokenKind::Motp => {
                match_motp(token, &secret, code, now, &self.cfg.motp).map(Claim::Counter)
            }
            TokenKind::Backup => self.match_backup_code(token, code),
            TokenKind::Email => self.match_email_code(token, code, now),
            TokenKind::YubikeyRemote => {
                let public_id = token.public_id.as_deref().unwrap_or("");
                // Checked here, before anything goes out: the server would accept a good
                // OTP of any key, not only this token's.
                if yubico::public_id(code).is_none_or(|p| !p.eq_ignore_ascii_case(public_id)) {
                    return Err(Some(yubico::YubicoError::PublicId.to_string()));
                }
                if yubico::modhex_decode(code).is_none() {
                    return Err(Some(yubico::YubicoError::Format.to_string()));
                }
                remote::verify(&self.cfg.yubico, &code.to_ascii_lowercase())
                    .map(|()| Claim::Remote)
                    .map_err(|e| Some(e.to_string()))
            }
        }
    }

    /// Compares the code with every unused backup code's keyed hash (all of them, whatever
    /// matched, in constant time each).
    fn match_backup_code(&self, token: &Token, code: &str) -> Result<Claim, Miss> {
        if code.len() != BACKUP_CODE_LEN || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(None);
        }
        let codes = self.store.backup_codes(token.id).map_err(|e| {
            tracing::error!(serial = %token.serial, "backup codes: {e}");
            Some(format!("backup codes not readable: {e}"))
        })?;
        let mut found = None;
        for c in &codes {
            if self.keys.verify_hash(&c.salt, code.as_bytes(), &c.hash) && found.is_none() {
                found = Some(c.id);
            }
        }
        match (found, codes.is_empty()) {
            (Some(id), _) => Ok(Claim::BackupCode(id)),
            (None, true) => Err(Some("no backup code left".into())),
            (None, false) => Err(None),
        }
    }

    /// Compares the code with the keyed hash of the code last sent to the token's address.
    /// The hash is computed whatever the code's state, so the time does not tell an expired
    /// or used code from a wrong one.
    fn match_email_code(&self, token: &Token, code: &str, now: i64) -> Result<Claim, Miss> {
        let sent = self.store.email_code(token.id).map_err(|e| {
            tracing::error!(serial = %token.serial, "e-mail code: {e}");
            Some(format!("e-mail code not readable: {e}"))
        })?;
        let Some(sent) = sent else {
            return Err(Some(if self.cfg.email.is_configured() {
                "no e-mail code was sent to this token (the PIN alone asks for one)".into()
            } else {
                "no e-mail code was sent to this token: [email] is not configured".into()
            }));
        };
        let shape_ok =
            code.len() == token.digits as usize && code.bytes().all(|b| b.is_ascii_digit());
        let same = self
            .keys
            .verify_hash(&sent.salt, code.as_bytes(), &sent.hash)
            && shape_ok;
        if !same {
            return Err(None);
        }
        if sent.used {
            return Err(Some("e-mail code already used".into()));
        }
        if now >= sent.expires_at {
            return Err(Some(format!(
                "e-mail code expired {} s ago",
                now - sent.expires_at
            )));
        }
        Ok(Claim::EmailCode(sent.id))
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
        match claim {
            Claim::Counter(m) => Ok(
                match self
                    .store
                    .advance_counter(token.id, m.counter, m.drift, now, activate, mode)?
                {
                    Advance::Durable(true) => Redeemed::Won("ok".into()),
                    Advance::Durable(false) => Redeemed::Lost,
                    Advance::Pending(ticket) => Redeemed::Pending(ticket),
                },
            ),
            Claim::BackupCode(id) => {
                if !self.store.use_backup_code(token.id, *id, now)? {
                    return Ok(Redeemed::Lost);
                }
                let (left, _) = self.store.backup_code_counts(token.id)?;
                Ok(Redeemed::Won(format!("ok: backup code used, {left} left")))
            }
            Claim::EmailCode(id) => Ok(
                if self.store.use_email_code(token.id, *id, now, activate)? {
                    Redeemed::Won("ok: e-mail code used".into())
                } else {
                    Redeemed::Lost
                },
            ),
            Claim::Remote => {
                self.store.mark_token_used(token.id, now, activate)?;
                Ok(Redeemed::Won(
                    "ok: validation server accepted the OTP".into(),
                ))
            }
        }
    }
}

/// Decrypts and checks a Yubico OTP against a local YubiKey token. Its (use, session)
/// counter must be above the last accepted one: a captured OTP never works twice, and an
/// older one (counter going backwards) never works at all.
fn match_yubikey(token: &Token, secret: &[u8], otp: &str) -> Result<Match, Miss> {
    let Some(public_id) = token.public_id.as_deref() else {
        return Err(Some(format!("token {} has no public id", token.serial)));
    };
    let Some((private_id, key)) = yubico::unpack_secret(secret) else {
        return Err(Some(format!(
            "token {}: secret of the wrong length",
            token.serial
        )));
    };
    let d = yubico::decode(otp, public_id, &private_id, &key).map_err(|e| Some(e.to_string()))?;
    let counter = d.packed();
    if counter <= token.last_counter {
        return Err(Some(format!(
            "YubiKey OTP already used or older than the last one accepted (use counter {}, \
             session {})",
            d.use_counter, d.session_counter
        )));
    }
    Ok(Match { counter, drift: 0 })
}

/// Matches an mOTP code within the window around the expected step (now plus the phone's
/// remembered drift). The step is the counter, so a code never works twice.
fn match_motp(
    token: &Token,
    secret: &[u8],
    code: &str,
    now: i64,
    cfg: &crate::config::MotpConfig,
) -> Result<Match, Miss> {
    let Some((secret, mpin)) = motp::unpack_secret(secret) else {
        return Err(Some(format!("token {}: damaged mOTP secret", token.serial)));
    };
    let now_step = now.div_euclid(motp::STEP_SECS);
    let expected = now_step + token.drift;
    let w = cfg.window_steps();
    let floor = token.last_counter + 1;
    let candidates = (expected - w..=expected + w).filter(|s| *s >= floor);
    let max = cfg.max_drift_steps();
    motp::find_step(secret, mpin, code, candidates)
        .map(|s| Match {
            counter: s,
            drift: (s - now_step).clamp(-max, max),
        })
        .ok_or(None)
}

/// What a successful match wants written back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    pub counter: i64,
    pub drift: i64,
}

/// Matches `code` against an OATH token with its normal login window. Codes at or behind the
/// last used counter never match.
pub fn match_oath(
    token: &Token,
    secret: &[u8],
    code: &str,
    now: i64,
    hotp: &HotpConfig,
    totp: &TotpConfig,
) -> Option<Match> {
    match token.kind {
        TokenKind::Hotp => {
            let start = token.last_counter + 1;
            let end = token.last_counter + i64::from(hotp.window);
            find_counter(token.algorithm, secret, token.digits, code, start..=end).map(|c| Match {
                counter: c,
                drift: 0,
            })
        }
        TokenKind::Totp => {
            let now_step = totp_step(now, token.period);
            let expected = now_step + token.drift;
            let w = i64::from(totp.window);
            let floor = token.last_counter + 1;
            let candidates = (expected - w..=expected + w).filter(|s| *s >= floor);
            let max = i64::from(totp.max_drift);
            find_counter(token.algorithm, secret, token.digits, code, candidates).map(|s| Match {
                counter: s,
                drift: (s - now_step).clamp(-max, max),
            })
        }
        _ => None,
    }
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

/// Finds two consecutive codes in a wide window (for a token that ran ahead or a clock that
/// drifted). Returns the counter of the second code.
pub fn resync_oath(
    token: &Token,
    secret: &[u8],
    code1: &str,
    code2: &str,
    now: i64,
    hotp: &HotpConfig,
    totp: &TotpConfig,
) -> Result<Match, ResyncError> {
    let range = match token.kind {
        TokenKind::Hotp => {
            (token.last_counter + 1)..=(token.last_counter + i64::from(hotp.resync_window))
        }
        TokenKind::Totp => {
            let now_step = totp_step(now, token.period);
            let r = i64::from(totp.resync_window);
            (now_step - r).max(token.last_counter + 1)..=(now_step + r)
        }
        other => return Err(ResyncError::NotOath(other.as_str())),
    };
    let found = range.into_iter().find(|&c| {
        find_counter(
            token.algorithm,
            secret,
            token.digits,
            code1,
            std::iter::once(c),
        )
        .is_some()
            && find_counter(
                token.algorithm,
                secret,
                token.digits,
                code2,
                std::iter::once(c + 1),
            )
            .is_some()
    });
    let second = found.ok_or(ResyncError::NotFound)? + 1;
    match token.kind {
        TokenKind::Totp => {
            let drift = second - totp_step(now, token.period);
            if drift.abs() > i64::from(totp.max_drift) {
                return Err(ResyncError::DriftTooLarge {
                    steps: drift,
                    seconds: drift * i64::from(token.period),
                    max: totp.max_drift,
                });
            }
            Ok(Match {
                counter: second,
                drift,
            })
        }
        _ => Ok(Match {
            counter: second,
            drift: 0,
        }),
    }
}
