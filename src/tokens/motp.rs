//! mOTP (Mobile-OTP): the first 6 hex digits of MD5(str(unix_time / 10) + secret + mPIN).
//! The code changes every 10 seconds; there is no counter but the time step.

use crate::crypto::ct_eq;
use md5::{Digest, Md5};

pub const STEP_SECS: i64 = 10;
pub const CODE_LEN: usize = 6;

/// A token's sealed secret: the secret (as the app shows it) and the mPIN, length-prefixed.
pub fn pack_secret(secret: &str, mpin: &str) -> Option<zeroize::Zeroizing<Vec<u8>>> {
    let n = u8::try_from(secret.len()).ok()?;
    let mut v = zeroize::Zeroizing::new(Vec::with_capacity(1 + secret.len() + mpin.len()));
    v.push(n);
    v.extend_from_slice(secret.as_bytes());
    v.extend_from_slice(mpin.as_bytes());
    Some(v)
}

/// Secret and mPIN from a token's opened secret.
pub fn unpack_secret(blob: &[u8]) -> Option<(&str, &str)> {
    let (&n, rest) = blob.split_first()?;
    let n = usize::from(n);
    if rest.len() < n {
        return None;
    }
    let (secret, mpin) = rest.split_at(n);
    Some((
        std::str::from_utf8(secret).ok()?,
        std::str::from_utf8(mpin).ok()?,
    ))
}

/// The code for one 10-second step. `secret` is the hex secret as the app shows it.
pub fn code(step: i64, secret: &str, mpin: &str) -> String {
    let digest = Md5::digest(format!("{step}{secret}{mpin}").as_bytes());
    let mut hex = data_encoding::HEXLOWER.encode(&digest);
    hex.truncate(CODE_LEN);
    hex
}

/// Finds the step whose code equals `typed` (case-insensitive), computing every candidate.
pub fn find_step(
    secret: &str,
    mpin: &str,
    typed: &str,
    candidates: impl Iterator<Item = i64>,
) -> Option<i64> {
    let typed = typed.to_ascii_lowercase();
    let mut found = None;
    for s in candidates {
        if ct_eq(code(s, secret, mpin).as_bytes(), typed.as_bytes()) && found.is_none() {
            found = Some(s);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_packing_round_trips_and_refuses_damage() {
        let b = pack_secret("0123456789abcdef", "1234").expect("pack");
        assert_eq!(unpack_secret(&b), Some(("0123456789abcdef", "1234")));
        assert_eq!(unpack_secret(&b[..5]), None);
        assert_eq!(unpack_secret(&[]), None);
    }

    #[test]
    fn matches_the_published_construction() {
        // md5("1700000000" / 10 = "170000000" + "0123456789abcdef" + "1234"), first 6 hex
        // digits, computed independently with Python: hashlib.md5(b"1700000000123456789abcdef1234")
        let c = code(170_000_000, "0123456789abcdef", "1234");
        assert_eq!(c, "05aae5");
        assert_eq!(
            find_step(
                "0123456789abcdef",
                "1234",
                &c.to_uppercase(),
                169_999_990..170_000_010
            ),
            Some(170_000_000)
        );
        assert_eq!(
            find_step("0123456789abcdef", "4321", &c, 169_999_990..170_000_010),
            None
        );
    }
}
