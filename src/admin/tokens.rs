//! The admin's token operations after enrolment (`admin/enrol.rs`): activation with a first
//! code, resynchronisation, state and deletion, and the OATH enrolment the engine's tests use.

use super::{invalid, Admin, AdminError};
use crate::crypto;
use crate::model::{Token, TokenKind, TokenState};
use crate::store::{Advance, CommitMode, StoreError};
use crate::tokens::oath::Algorithm;
use crate::tokens::{Matcher, Options, Redeemed, ResyncError, Shown};
use zeroize::Zeroizing;

/// A token just enrolled: everything the user needs to set up the app, shown once.
pub struct Enrolled {
    pub token: Token,
    pub secret_b32: Zeroizing<String>,
    pub uri: Zeroizing<String>,
}

pub struct TokenOptions {
    pub kind: TokenKind,
    pub secret_b32: Option<Zeroizing<String>>,
    pub digits: u32,
    pub algorithm: Algorithm,
    pub period: u32,
    pub label: String,
    pub active: bool,
}

impl Admin {
    /// Enrols an OATH token (TOTP or HOTP) from typed options (`otpd token add` passes the
    /// same through [`Admin::enrol`]).
    pub fn add_token(&self, raw_user: &str, o: TokenOptions) -> Result<Enrolled, AdminError> {
        if !matches!(o.kind, TokenKind::Totp | TokenKind::Hotp) {
            return Err(invalid(format!(
                "a {} token is not enrolled with a base32 secret; see otpd token add --help",
                o.kind.as_str()
            )));
        }
        let mut opts = Options::default();
        opts.set("digits", o.digits.to_string())
            .set("algorithm", o.algorithm.as_str())
            .set("period", o.period.to_string());
        if let Some(b32) = &o.secret_b32 {
            opts.set("secret", b32.as_str());
        }
        let (token, shown) = self.enrol(raw_user, o.kind, &opts, &o.label, o.active)?;
        match shown {
            Shown::Secret { b32, uri } => Ok(Enrolled {
                token,
                secret_b32: b32,
                uri,
            }),
            _ => Err(invalid("an OATH token's enrolment showed no secret")),
        }
    }

    pub fn token(&self, serial: &str) -> Result<Token, AdminError> {
        self.store
            .token(serial)?
            .ok_or_else(|| invalid(format!("no token `{serial}` (see otpd token list)")))
    }

    /// A pending token becomes active once the user proves, with one correct code, that the
    /// app holds the secret. The code counts as used.
    pub fn activate(&self, serial: &str, code: &str) -> Result<Token, AdminError> {
        let token = self.token(serial)?;
        match token.state {
            TokenState::Pending => {}
            TokenState::Active => {
                return Err(AdminError::Refused(format!(
                    "token {serial} is already active"
                )))
            }
            TokenState::Disabled => {
                return Err(AdminError::Refused(format!(
                    "token {serial} is disabled; enable it with otpd token enable {serial}"
                )))
            }
        }
        if self.enrol_expired(&token) {
            let _ = self.store.delete_token(serial);
            return Err(AdminError::Refused(format!(
                "token {serial} waited longer than enrol_timeout ({}) for its first code and \
                 has expired; it was removed: enrol a new one",
                humantime::format_duration(self.cfg.enrol_timeout)
            )));
        }
        super::enrol::check_code_shape(&token, code)?;
        let ports = self.ports();
        let matcher = Matcher::new(&self.cfg, self.store.as_ref(), &self.keys, &ports);
        let now = self.now();
        let claim = matcher.check(&token, code, now).map_err(|why| {
            AdminError::Refused(format!(
                "code does not match token {serial}{}; check the device's clock (TOTP, mOTP) \
                 or type the next code; the token stays pending",
                why.map(|w| format!(" ({w})")).unwrap_or_default()
            ))
        })?;
        match matcher.redeem(&token, &claim, now, true, CommitMode::Wait)? {
            Redeemed::Won(_) => {
                self.end_devices(token.account_id, "a token was activated");
                self.token(serial)
            }
            Redeemed::Lost => Err(AdminError::Refused("that code was used already".into())),
            // `Wait` is answered durably by contract (store/login.rs).
            Redeemed::Pending(_) => Err(not_waited()),
        }
    }

    /// A pending token older than `enrol_timeout`: it can no longer be activated.
    pub fn enrol_expired(&self, token: &Token) -> bool {
        token.state == TokenState::Pending
            && self.now() - token.created_at > self.cfg.enrol_timeout.as_secs() as i64
    }

    /// Deletes the account's pending tokens that [expired](Admin::enrol_expired); returns
    /// their serials.
    pub fn purge_expired_enrolments(&self, account: &str) -> Result<Vec<String>, AdminError> {
        let mut gone = Vec::new();
        for t in self.store.tokens(Some(account))? {
            if self.enrol_expired(&t) {
                self.store.delete_token(&t.serial)?;
                gone.push(t.serial);
            }
        }
        Ok(gone)
    }

    pub fn resync(&self, serial: &str, code1: &str, code2: &str) -> Result<Token, AdminError> {
        let token = self.token(serial)?;
        check_code_syntax(code1, token.digits)?;
        check_code_syntax(code2, token.digits)?;
        let ports = self.ports();
        let matcher = Matcher::new(&self.cfg, self.store.as_ref(), &self.keys, &ports);
        let m = matcher
            .resync(&token, code1, code2, self.now())?
            .map_err(|e| match e {
                ResyncError::NotFound | ResyncError::NotOath(_) => {
                    AdminError::Refused(format!("token {serial}: {e}"))
                }
                ResyncError::DriftTooLarge { .. } => {
                    AdminError::Refused(format!("token {serial}: {e}"))
                }
            })?;
        match self.store.advance_counter(
            token.id,
            m.counter,
            m.drift,
            self.now(),
            false,
            CommitMode::Wait,
        )? {
            Advance::Durable(true) => {}
            Advance::Durable(false) => {
                return Err(AdminError::Refused("those codes were used already".into()))
            }
            Advance::Pending(_) => return Err(not_waited()),
        }
        self.token(serial)
    }

    pub fn set_token_state(&self, serial: &str, state: TokenState) -> Result<Token, AdminError> {
        let token = self.token(serial)?;
        if state == TokenState::Active && token.state == TokenState::Pending {
            return Err(AdminError::Refused(format!(
                "token {serial} is pending; activate it with a code: otpd token activate {serial} CODE"
            )));
        }
        self.store.set_token_state(serial, state)?;
        if state != token.state {
            self.end_devices(token.account_id, "a token's state changed");
        }
        self.token(serial)
    }

    pub fn delete_token(&self, serial: &str) -> Result<(), AdminError> {
        let token = self.token(serial)?;
        self.store.delete_token(serial)?;
        self.end_devices(token.account_id, "a token was deleted");
        Ok(())
    }
}

fn check_code_syntax(code: &str, digits: u32) -> Result<(), AdminError> {
    if code.len() != digits as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(format!("a code for this token is {digits} digits")));
    }
    Ok(())
}

/// Base32 as apps and token vendors write it: any case, spaces, dashes and padding allowed.
pub fn decode_base32(s: &str) -> Result<Zeroizing<Vec<u8>>, AdminError> {
    Ok(crate::tokens::kinds::oath::decode_base32(s)?)
}

pub(super) fn new_serial(kind: TokenKind) -> Result<String, AdminError> {
    let r = crypto::random_vec(4)?;
    Ok(format!(
        "{}{}",
        kind.serial_prefix(),
        data_encoding::HEXUPPER.encode(&r)
    ))
}

/// A store that answered a `CommitMode::Wait` write with a ticket broke its contract.
fn not_waited() -> AdminError {
    AdminError::Store(StoreError::Commit(
        "the store queued a write that was to be waited for".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_forms() {
        let a = decode_base32("JBSW Y3DP EHPK 3PXP").expect("spaced");
        let b = decode_base32("jbswy3dpehpk3pxp").expect("lower");
        assert_eq!(*a, *b);
        assert!(decode_base32("JBSW").is_err(), "too short");
        assert!(
            decode_base32("JBSWY3DPEHPK3PX1").is_err(),
            "1 is not base32"
        );
    }
}
