//! HOTP (RFC 4226): a code per counter value; the token's counter only moves forward.

use super::oath;
use crate::model::{Token, TokenKind};
use crate::tokens::class::{EnrolError, Enrolment, Opt, Options, Services, Shown, TokenClass};
use crate::tokens::oath::find_counter;
use crate::tokens::{Claim, Match, Miss, ResyncError};

impl TokenKind {
    #[allow(non_upper_case_globals)]
    pub const Hotp: TokenKind = TokenKind::named("hotp");
}

pub struct Hotp;

static OPTIONS: [Opt; 3] = [oath::SECRET, oath::DIGITS, oath::ALGORITHM];

impl TokenClass for Hotp {
    fn kind(&self) -> TokenKind {
        TokenKind::Hotp
    }
    fn about(&self) -> &'static str {
        "Counter-based codes (RFC 4226), hardware OATH tokens; prints the secret and a QR code"
    }
    fn serial_prefix(&self) -> &'static str {
        "HOTP"
    }
    fn code_len(&self, token: &Token) -> usize {
        token.digits as usize
    }
    fn check_shape(&self, token: &Token, code: &str) -> Result<(), String> {
        oath::check_shape(token, code)
    }

    /// The next `[hotp] window` counters after the last used one.
    fn check(
        &self,
        sv: &Services<'_>,
        token: &Token,
        secret: &[u8],
        code: &str,
        _now: i64,
    ) -> Result<Claim, Miss> {
        let start = token.last_counter + 1;
        let end = token.last_counter + i64::from(sv.cfg.hotp.window);
        find_counter(token.algorithm, secret, token.digits, code, start..=end)
            .map(|c| {
                Claim::Counter(Match {
                    counter: c,
                    drift: 0,
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
        _now: i64,
    ) -> Result<Match, ResyncError> {
        let range =
            (token.last_counter + 1)..=(token.last_counter + i64::from(sv.cfg.hotp.resync_window));
        let counter = oath::find_pair(token, secret, codes, range)?;
        Ok(Match { counter, drift: 0 })
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
        oath::enrol(o, label, || Ok(0))
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
            ("counter", token.last_counter.to_string()),
        ]
    }
}
