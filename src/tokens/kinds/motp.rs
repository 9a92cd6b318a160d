//! Mobile-OTP apps: secret and mPIN sealed together, a code per 10-second step; the step is
//! the counter, so a code never works twice.

use crate::model::{Token, TokenKind};
use crate::tokens::class::{EnrolError, Enrolment, Opt, Options, Services, TokenClass};
use crate::tokens::motp;
use crate::tokens::{Claim, Match, Miss};
use zeroize::Zeroizing;

impl TokenKind {
    #[allow(non_upper_case_globals)]
    pub const Motp: TokenKind = TokenKind::named("motp");
}

pub struct Motp;

static OPTIONS: [Opt; 2] = [
    Opt::value(
        "secret",
        "HEX",
        "The app's init secret, 16 to 64 hex characters",
    )
    .required(),
    Opt::value("mpin", "PIN", "The app's own PIN (sealed with the secret)").required(),
];

impl TokenClass for Motp {
    fn kind(&self) -> TokenKind {
        TokenKind::Motp
    }
    fn about(&self) -> &'static str {
        "Mobile-OTP app (needs --secret HEX and --mpin)"
    }
    fn serial_prefix(&self) -> &'static str {
        "MOTP"
    }
    fn code_len(&self, _token: &Token) -> usize {
        motp::CODE_LEN
    }
    fn check_shape(&self, _token: &Token, code: &str) -> Result<(), String> {
        if code.len() == motp::CODE_LEN && code.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(())
        } else {
            Err(format!("an mOTP code is {} hex digits", motp::CODE_LEN))
        }
    }

    /// Within the window around the expected step (now plus the phone's remembered drift).
    fn check(
        &self,
        sv: &Services<'_>,
        token: &Token,
        secret: &[u8],
        code: &str,
        now: i64,
    ) -> Result<Claim, Miss> {
        let Some((secret, mpin)) = motp::unpack_secret(secret) else {
            return Err(Some(format!("token {}: damaged mOTP secret", token.serial)));
        };
        let cfg = &sv.cfg.motp;
        let now_step = now.div_euclid(motp::STEP_SECS);
        let expected = now_step + token.drift;
        let w = cfg.window_steps();
        let floor = token.last_counter + 1;
        let candidates = (expected - w..=expected + w).filter(|s| *s >= floor);
        let max = cfg.max_drift_steps();
        motp::find_step(secret, mpin, code, candidates)
            .map(|s| {
                Claim::Counter(Match {
                    counter: s,
                    drift: (s - now_step).clamp(-max, max),
                })
            })
            .ok_or(None)
    }

    fn options(&self) -> Option<&'static [Opt]> {
        Some(&OPTIONS)
    }

    /// The secret as the app shows it (hex) and the app's own mPIN, sealed together. The
    /// account PIN is still typed in front of every code.
    fn enrol(
        &self,
        _sv: &Services<'_>,
        o: &Options,
        label: &str,
        _active: bool,
    ) -> Result<Enrolment, EnrolError> {
        let invalid = |m: &str| EnrolError::Invalid(m.into());
        // The app hashes the secret as text: keep it as typed, in the lower case apps show.
        let secret: Zeroizing<String> =
            Zeroizing::new(o.get("secret").unwrap_or("").trim().to_ascii_lowercase());
        let mpin = o.get("mpin").unwrap_or("");
        if !(16..=64).contains(&secret.len()) || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid(
                "--secret for mOTP is the app's init secret: 16 to 64 hex characters",
            ));
        }
        if !(4..=16).contains(&mpin.len()) || !mpin.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(invalid(
                "--mpin is the mOTP app's own PIN: 4 to 16 ASCII letters or digits",
            ));
        }
        let blob =
            motp::pack_secret(&secret, mpin).ok_or_else(|| invalid("--secret is too long"))?;
        Ok(Enrolment::plain(blob, motp::CODE_LEN, label.to_string()))
    }

    fn describe(&self, token: &Token) -> Vec<(&'static str, String)> {
        vec![
            ("step", format!("{} s", motp::STEP_SECS)),
            ("clock skew", format!("{} s", token.drift * motp::STEP_SECS)),
        ]
    }
}
