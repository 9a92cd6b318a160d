//! Codes sent by e-mail on request: the token holds an address; the current code is a keyed
//! hash in `email_codes` (sending: `tokens::email`, through the `Mailer` port).

use crate::model::{Token, TokenKind};
use crate::tokens::class::{
    Detail, EnrolError, Enrolment, Opt, Options, Services, Shown, TokenClass,
};
use crate::tokens::email;
use crate::tokens::{Claim, Miss};
use zeroize::Zeroizing;

impl TokenKind {
    #[allow(non_upper_case_globals)]
    pub const Email: TokenKind = TokenKind::named("email");
}

pub struct Email;

static OPTIONS: [Opt; 1] = [Opt::value(
    "address",
    "ADDRESS",
    "Where codes are sent. Without --active a first code goes there now",
)
.required()];

impl TokenClass for Email {
    fn kind(&self) -> TokenKind {
        TokenKind::Email
    }
    fn about(&self) -> &'static str {
        "Codes sent by e-mail at login ([email] configured)"
    }
    fn serial_prefix(&self) -> &'static str {
        "MAIL"
    }
    /// The length `[email] digits` had when the token was enrolled.
    fn code_len(&self, token: &Token) -> usize {
        token.digits as usize
    }
    fn check_shape(&self, token: &Token, code: &str) -> Result<(), String> {
        if code.len() == token.digits as usize && code.bytes().all(|b| b.is_ascii_digit()) {
            Ok(())
        } else {
            Err(format!(
                "a code sent to this token is {} digits (see the e-mail)",
                token.digits
            ))
        }
    }

    /// Compares the code with the keyed hash of the code last sent to the token's address.
    /// The hash is computed whatever the code's state, so the time does not tell an expired
    /// or used code from a wrong one.
    fn check(
        &self,
        sv: &Services<'_>,
        token: &Token,
        _secret: &[u8],
        code: &str,
        now: i64,
    ) -> Result<Claim, Miss> {
        let sent = sv.store.email_code(token.id).map_err(|e| {
            tracing::error!(serial = %token.serial, "e-mail code: {e}");
            Some(format!("e-mail code not readable: {e}"))
        })?;
        let Some(sent) = sent else {
            return Err(Some(if sv.cfg.email.is_configured() {
                "no e-mail code was sent to this token (the PIN alone asks for one)".into()
            } else {
                "no e-mail code was sent to this token: [email] is not configured".into()
            }));
        };
        let shape_ok =
            code.len() == token.digits as usize && code.bytes().all(|b| b.is_ascii_digit());
        let same = sv.keys.verify_hash(&sent.salt, code.as_bytes(), &sent.hash) && shape_ok;
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

    fn options(&self) -> Option<&'static [Opt]> {
        Some(&OPTIONS)
    }

    /// Active at once with `active` (the admin vouches for the address); otherwise a first
    /// code is sent once the token is stored (`after_enrol`), and typing it back proves that
    /// the address reaches the user.
    fn enrol(
        &self,
        sv: &Services<'_>,
        o: &Options,
        label: &str,
        active: bool,
    ) -> Result<Enrolment, EnrolError> {
        let address = email::check_address(o.get("address").unwrap_or(""))
            .map_err(|e| EnrolError::Invalid(format!("--address: {e}")))?;
        if !active && !sv.cfg.email.is_configured() {
            return Err(EnrolError::Refused(
                "a pending e-mail token is activated with a code sent to it, but [email] is \
                 not configured (email.host, email.from); configure it, or enrol with --active"
                    .into(),
            ));
        }
        let label = if label.is_empty() {
            format!("e-mail {}", email::mask(&address))
        } else {
            label.to_string()
        };
        let mut e = Enrolment::plain(
            Zeroizing::new(Vec::new()),
            sv.cfg.email.digits as usize,
            label,
        );
        e.address = Some(address);
        Ok(e)
    }

    fn after_enrol(
        &self,
        sv: &Services<'_>,
        token: &Token,
        _secret: &[u8],
        active: bool,
        now: i64,
    ) -> Result<Shown, EnrolError> {
        if active {
            return Ok(Shown::Nothing);
        }
        send_code(sv, token, now).map(Shown::CodeSentTo)
    }

    fn describe(&self, token: &Token) -> Vec<(&'static str, String)> {
        vec![
            (
                "address",
                token.address.clone().unwrap_or_else(|| "-".into()),
            ),
            ("digits", token.digits.to_string()),
        ]
    }

    /// Lists are read over shoulders and pasted into tickets: the address is masked there.
    fn detail(&self, _sv: &Services<'_>, token: &Token) -> crate::store::StoreResult<Detail> {
        Ok(Detail {
            text: token
                .address
                .as_deref()
                .map(email::mask)
                .unwrap_or_default(),
            json: Vec::new(),
        })
    }

    fn json_fields(&self, token: &Token, full: bool) -> Vec<(&'static str, serde_json::Value)> {
        let address = if full {
            token.address.clone()
        } else {
            token.address.as_deref().map(email::mask)
        };
        vec![("address", address.into())]
    }
}

/// Sends a fresh code to the token's address (it replaces the one sent before; the account's
/// hourly limit counts it); the masked address on success.
pub fn send_code(sv: &Services<'_>, token: &Token, now: i64) -> Result<String, EnrolError> {
    email::issue(
        &sv.cfg.email,
        sv.store,
        sv.keys,
        sv.ports.mailer.as_ref(),
        token,
        &token.user,
        now,
    )
    .map_err(|e| EnrolError::Refused(e.to_string()))
}
