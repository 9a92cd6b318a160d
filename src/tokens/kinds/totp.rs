//! TOTP (RFC 6238): a code per time step; the step is the counter, so a code works once.

use super::oath;
use crate::model::{Token, TokenKind};
use crate::tokens::class::{EnrolError, Enrolment, Opt, Options, Services, Shown, TokenClass};
use crate::tokens::oath::{find_counter, totp_step};
use crate::tokens::{Claim, Match, Miss, ResyncError};

impl TokenKind {
    #[allow(non_upper_case_globals)]
    pub const Totp: TokenKind = TokenKind::named("totp");
}

pub struct Totp;

const PERIOD: Opt =
    Opt::value("period", "SECONDS", "TOTP period in seconds (30 or 60)").default("30");
static OPTIONS: [Opt; 4] = [oath::SECRET, oath::DIGITS, oath::ALGORITHM, PERIOD];

impl TokenClass for Totp {
    fn kind(&self) -> TokenKind {
        TokenKind::Totp
    }
    fn about(&self) -> &'static str {
        "Time-based codes from an app (RFC 6238); prints the secret and a QR code"
    }
    fn serial_prefix(&self) -> &'static str {
        "TOTP"
    }
    fn code_len(&self, token: &Token) -> usize {
        token.digits as usize
    }
    fn check_shape(&self, token: &Token, code: &str) -> Result<(), String> {
        oath::check_shape(token, code)
    }

    /// Within the window around the expected step (now plus the device's remembered drift),
    /// above the last used step; the drift it implies is capped.
    fn check(
        &self,
        sv: &Services<'_>,
        token: &Token,
        secret: &[u8],
        code: &str,
        now: i64,
    ) -> Result<Claim, Miss> {
        let totp = &sv.cfg.totp;
        let now_step = totp_step(now, token.period);
        let expected = now_step + token.drift;
        let w = i64::from(totp.window);
        let floor = token.last_counter + 1;
        let candidates = (expected - w..=expected + w).filter(|s| *s >= floor);
        let max = i64::from(totp.max_drift);
        find_counter(token.algorithm, secret, token.digits, code, candidates)
            .map(|s| {
                Claim::Counter(Match {
                    counter: s,
                    drift: (s - now_step).clamp(-max, max),
                })
            })
            .ok_or(None)
    }

    fn resync(
        &self,
        sv: &Services<'_>,
        token: &Token,
        secret: &[u8],
        codes: (&str, &str),
        now: i64,
    ) -> Result<Match, ResyncError> {
        let totp = &sv.cfg.totp;
        let now_step = totp_step(now, token.period);
        let r = i64::from(totp.resync_window);
        let range = (now_step - r).max(token.last_counter + 1)..=(now_step + r);
        let second = oath::find_pair(token, secret, codes, range)?;
        let drift = second - now_step;
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

    fn resynced(&self, token: &Token) -> String {
        format!(
            ": device clock offset {} s",
            token.drift * i64::from(token.period)
        )
    }

    fn options(&self) -> Option<&'static [Opt]> {
        Some(&OPTIONS)
    }

    fn enrol(
        &self,
        _sv: &Services<'_>,
        o: &Options,
        label: &str,
        _active: bool,
    ) -> Result<Enrolment, EnrolError> {
        oath::enrol(o, label, || {
            let raw = o.get("period").unwrap_or("30");
            match raw.parse::<u32>() {
                Ok(p @ (30 | 60)) => Ok(p),
                _ => Err(EnrolError::Invalid(format!(
                    "--period must be 30 or 60, not {raw}"
                ))),
            }
        })
    }

    fn after_enrol(
        &self,
        sv: &Services<'_>,
        token: &Token,
        secret: &[u8],
        _active: bool,
        _now: i64,
    ) -> Result<Shown, EnrolError> {
        Ok(oath::shown(sv, token, secret))
    }

    fn describe(&self, token: &Token) -> Vec<(&'static str, String)> {
        vec![
            ("algorithm", token.algorithm.as_str().to_string()),
            ("digits", token.digits.to_string()),
            ("period", format!("{} s", token.period)),
            (
                "clock skew",
                format!("{} s", token.drift * i64::from(token.period)),
            ),
        ]
    }
}
