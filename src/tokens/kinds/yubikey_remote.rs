//! YubiKeys whose OTPs a validation server checks (`[yubico]`, through the
//! [`Validator`](crate::tokens::ports::Validator) port). Only the public id is kept: the key's
//! secrets live at the server, which also keeps its counters.

use super::yubikey::{check_otp_shape, check_public_id, refuse_enrolled_key, PUBLIC_ID};
use crate::model::{Token, TokenKind};
use crate::tokens::class::{EnrolError, Enrolment, Opt, Options, Services, TokenClass};
use crate::tokens::yubico;
use crate::tokens::{Claim, Miss};
use zeroize::Zeroizing;

impl TokenKind {
    #[allow(non_upper_case_globals)]
    pub const YubikeyRemote: TokenKind = TokenKind::named("yubikey-remote");
}

pub struct YubikeyRemote;

static OPTIONS: [Opt; 1] = [PUBLIC_ID];

impl TokenClass for YubikeyRemote {
    fn kind(&self) -> TokenKind {
        TokenKind::YubikeyRemote
    }
    fn asks_outside(&self) -> bool {
        true
    }
    fn about(&self) -> &'static str {
        "YubiKey checked by the validation server of [yubico]"
    }
    fn serial_prefix(&self) -> &'static str {
        "YKR"
    }
    fn code_len(&self, _token: &Token) -> usize {
        yubico::OTP_LEN
    }
    fn check_shape(&self, _token: &Token, code: &str) -> Result<(), String> {
        check_otp_shape(code)
    }

    fn check(
        &self,
        sv: &Services<'_>,
        token: &Token,
        _secret: &[u8],
        code: &str,
        _now: i64,
    ) -> Result<Claim, Miss> {
        let public_id = token.public_id.as_deref().unwrap_or("");
        // Checked here, before anything goes out: the server would accept a good OTP of any
        // key, not only this token's.
        if yubico::public_id(code).is_none_or(|p| !p.eq_ignore_ascii_case(public_id)) {
            return Err(Some(yubico::YubicoError::PublicId.to_string()));
        }
        if yubico::modhex_decode(code).is_none() {
            return Err(Some(yubico::YubicoError::Format.to_string()));
        }
        sv.ports
            .validator
            .verify(&sv.cfg.yubico, &code.to_ascii_lowercase())
            .map(|()| Claim::Remote)
            .map_err(|e| Some(e.to_string()))
    }

    fn options(&self) -> Option<&'static [Opt]> {
        Some(&OPTIONS)
    }

    fn enrol(
        &self,
        sv: &Services<'_>,
        o: &Options,
        label: &str,
        _active: bool,
    ) -> Result<Enrolment, EnrolError> {
        let public_id = check_public_id(o.get("public-id").unwrap_or(""))?;
        if !sv.cfg.yubico.is_configured() {
            return Err(EnrolError::Refused(
                "a yubikey-remote token needs a validation server: set [yubico] client_id and \
                 api_key first (see docs/tokens.md)"
                    .into(),
            ));
        }
        refuse_enrolled_key(sv, &public_id)?;
        let label = if label.is_empty() {
            format!("YubiKey {public_id} (validation server)")
        } else {
            label.to_string()
        };
        // Nothing secret to keep; an empty sealed blob keeps every row alike for rotation,
        // backup checks and the engine.
        let mut e = Enrolment::plain(Zeroizing::new(Vec::new()), yubico::OTP_LEN, label);
        e.public_id = Some(public_id);
        Ok(e)
    }

    fn describe(&self, token: &Token) -> Vec<(&'static str, String)> {
        vec![
            (
                "public id",
                token.public_id.clone().unwrap_or_else(|| "-".into()),
            ),
            ("checked by", "the validation server ([yubico])".into()),
        ]
    }
}
