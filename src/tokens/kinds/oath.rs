//! What TOTP and HOTP share: enrolment with a base32 secret, digits and algorithm, the
//! otpauth:// URI apps scan, and the shape of their codes.

use crate::model::{Token, TokenKind};
use crate::tokens::class::{EnrolError, Enrolment, Opt, Options, Services, Shown};
use crate::tokens::oath::{find_counter, Algorithm};
use crate::tokens::ResyncError;
use zeroize::Zeroizing;

pub const SECRET: Opt = Opt::value(
    "secret",
    "B32",
    "Secret in base32 (hardware tokens); a random one is made otherwise",
);
pub const DIGITS: Opt = Opt::value("digits", "N", "Digits of a code (6 or 8)").default("6");
pub const ALGORITHM: Opt = Opt::value("algorithm", "ALG", "HMAC hash")
    .default("sha1")
    .choices(&["sha1", "sha256", "sha512"]);

/// Base32 as apps and token vendors write it: any case, spaces, dashes and padding allowed.
pub fn decode_base32(s: &str) -> Result<Zeroizing<Vec<u8>>, EnrolError> {
    let clean: Zeroizing<String> = Zeroizing::new(
        s.chars()
            .filter(|c| !c.is_whitespace() && *c != '-' && *c != '=')
            .map(|c| c.to_ascii_uppercase())
            .collect(),
    );
    let bytes = data_encoding::BASE32_NOPAD
        .decode(clean.as_bytes())
        .map_err(|_| {
            EnrolError::Invalid("--secret is not valid base32 (letters A-Z and digits 2-7)".into())
        })?;
    if bytes.len() < 10 {
        return Err(EnrolError::Invalid(format!(
            "--secret is {} bits; at least 80 bits (16 base32 characters) are needed, 160 recommended",
            bytes.len() * 8
        )));
    }
    if bytes.len() > 128 {
        return Err(EnrolError::Invalid(
            "--secret is longer than 128 bytes".into(),
        ));
    }
    Ok(Zeroizing::new(bytes))
}

/// Secret, digits and algorithm of a new OATH token; `period` checks the kind's own option
/// (0 for HOTP), after the digits as before.
pub fn enrol(
    o: &Options,
    label: &str,
    period: impl FnOnce() -> Result<u32, EnrolError>,
) -> Result<Enrolment, EnrolError> {
    let digits_raw = o.get("digits").unwrap_or("6");
    let digits = match digits_raw.parse::<u32>() {
        Ok(d @ (6 | 8)) => d,
        _ => {
            return Err(EnrolError::Invalid(format!(
                "--digits must be 6 or 8, not {digits_raw}"
            )))
        }
    };
    let period = period()?;
    let algorithm_raw = o.get("algorithm").unwrap_or("sha1");
    let algorithm = Algorithm::parse(algorithm_raw).ok_or_else(|| {
        EnrolError::Invalid(format!(
            "--algorithm must be sha1, sha256 or sha512, not {algorithm_raw}"
        ))
    })?;
    let secret = match o.get("secret") {
        Some(b32) => decode_base32(b32)?,
        None => {
            let len = match algorithm {
                Algorithm::Sha1 => 20,
                Algorithm::Sha256 => 32,
                Algorithm::Sha512 => 64,
            };
            Zeroizing::new(
                crate::crypto::random_vec(len).map_err(|e| EnrolError::Refused(e.to_string()))?,
            )
        }
    };
    Ok(Enrolment {
        secret,
        algorithm,
        digits,
        period,
        label: label.to_string(),
        public_id: None,
        address: None,
    })
}

/// The secret in base32 and the URI an app scans: shown once, after the token is stored.
pub fn shown(sv: &Services<'_>, token: &Token, secret: &[u8]) -> Shown {
    let b32 = Zeroizing::new(data_encoding::BASE32_NOPAD.encode(secret));
    let uri = Zeroizing::new(otpauth_uri(&sv.cfg.issuer, token, &b32));
    Shown::Secret { b32, uri }
}

/// `code` as the digits this token shows.
pub fn check_shape(token: &Token, code: &str) -> Result<(), String> {
    if code.len() == token.digits as usize && code.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(format!("a code for this token is {} digits", token.digits))
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The Key URI Format authenticator apps read from the QR code.
pub fn otpauth_uri(issuer: &str, token: &Token, secret_b32: &str) -> String {
    let mut uri = format!(
        "otpauth://{}/{}:{}?secret={}&issuer={}&algorithm={}&digits={}",
        token.kind.as_str(),
        percent_encode(issuer),
        percent_encode(&token.user),
        secret_b32,
        percent_encode(issuer),
        token.algorithm.as_str(),
        token.digits
    );
    if token.kind == TokenKind::Totp {
        uri.push_str(&format!("&period={}", token.period));
    } else {
        uri.push_str(&format!("&counter={}", token.last_counter + 1));
    }
    uri
}

/// The counter of `codes.1` where `codes.0` is the one before it, within `range`.
pub(super) fn find_pair(
    token: &Token,
    secret: &[u8],
    codes: (&str, &str),
    range: std::ops::RangeInclusive<i64>,
) -> Result<i64, ResyncError> {
    let at = |code: &str, c: i64| {
        find_counter(
            token.algorithm,
            secret,
            token.digits,
            code,
            std::iter::once(c),
        )
        .is_some()
    };
    range
        .into_iter()
        .find(|&c| at(codes.0, c) && at(codes.1, c + 1))
        .map(|c| c + 1)
        .ok_or(ResyncError::NotFound)
}
