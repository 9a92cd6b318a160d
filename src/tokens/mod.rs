//! Token types: how a code is matched against a token's secret and counter.
//!
//! Matching is pure: it reads the token and proposes the counter/drift to store. The store
//! then makes that proposal stick with a conditional write, which is what keeps a code
//! single-use under concurrency.

pub mod motp;
pub mod oath;
pub mod yubico;

use crate::config::{HotpConfig, TotpConfig};
use crate::model::{Token, TokenKind};
use oath::{find_counter, totp_step};

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
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResyncError {
    #[error("the two codes were not found as consecutive codes within the resync window")]
    NotFound,
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
        TokenKind::Hotp => Ok(Match {
            counter: second,
            drift: 0,
        }),
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
    }
}
