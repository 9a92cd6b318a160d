//! HOTP (RFC 4226) and TOTP (RFC 6238) code generation and window matching.

use crate::crypto::ct_eq;
use hmac::{Hmac, Mac};

pub use crate::model::Algorithm;

/// The code for one counter value, as the zero-padded decimal string the user types.
pub fn hotp(algorithm: Algorithm, key: &[u8], counter: u64, digits: u32) -> String {
    let code = Keyed::new(algorithm, key).code(counter, digits);
    format!("{code:0width$}", width = digits as usize)
}

/// Dynamic truncation, RFC 4226 §5.3, to `digits` decimal digits.
fn truncate(h: &[u8], digits: u32) -> u32 {
    let offset = (h[h.len() - 1] & 0x0f) as usize;
    let bin = u32::from_be_bytes([
        h[offset] & 0x7f,
        h[offset + 1],
        h[offset + 2],
        h[offset + 3],
    ]);
    bin % 10u32.pow(digits)
}

/// HMAC keyed once for the codes of many counters: a login computes its whole window, and
/// keying costs two of the four hash blocks of each code.
enum Keyed {
    Sha1(Hmac<sha1::Sha1>),
    Sha256(Hmac<sha2::Sha256>),
    Sha512(Hmac<sha2::Sha512>),
}

impl Keyed {
    // HMAC takes keys of any length (RFC 2104 hashes long ones): new_from_slice cannot fail.
    #[allow(clippy::expect_used)]
    fn new(algorithm: Algorithm, key: &[u8]) -> Keyed {
        match algorithm {
            Algorithm::Sha1 => Keyed::Sha1(Hmac::new_from_slice(key).expect("any key length")),
            Algorithm::Sha256 => Keyed::Sha256(Hmac::new_from_slice(key).expect("any key length")),
            Algorithm::Sha512 => Keyed::Sha512(Hmac::new_from_slice(key).expect("any key length")),
        }
    }

    fn code(&self, counter: u64, digits: u32) -> u32 {
        macro_rules! run {
            ($m:expr) => {{
                let mut m = $m.clone();
                m.update(&counter.to_be_bytes());
                truncate(&m.finalize().into_bytes(), digits)
            }};
        }
        match self {
            Keyed::Sha1(m) => run!(m),
            Keyed::Sha256(m) => run!(m),
            Keyed::Sha512(m) => run!(m),
        }
    }
}

/// `code` as the zero-padded decimal digits the user types, in `buf`.
fn decimal(mut code: u32, digits: u32, buf: &mut [u8; 10]) -> &[u8] {
    let n = (digits as usize).min(buf.len());
    for b in buf[..n].iter_mut().rev() {
        *b = b'0' + (code % 10) as u8;
        code /= 10;
    }
    &buf[..n]
}

/// The TOTP time step for a unix time.
pub fn totp_step(unix: i64, period: u32) -> i64 {
    unix.div_euclid(i64::from(period))
}

/// Finds the counter in `candidates` whose code equals `code`, comparing in constant time and
/// always computing every candidate so that the answer time does not depend on where (or
/// whether) the code matched.
pub fn find_counter(
    algorithm: Algorithm,
    key: &[u8],
    digits: u32,
    code: &str,
    candidates: impl Iterator<Item = i64>,
) -> Option<i64> {
    let mut found = None;
    let keyed = Keyed::new(algorithm, key);
    let mut buf = [0u8; 10];
    for c in candidates {
        if c < 0 {
            continue;
        }
        let ok = ct_eq(
            decimal(keyed.code(c as u64, digits), digits, &mut buf),
            code.as_bytes(),
        );
        if ok && found.is_none() {
            found = Some(c);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED20: &[u8] = b"12345678901234567890";
    const SEED32: &[u8] = b"12345678901234567890123456789012";
    const SEED64: &[u8] = b"1234567890123456789012345678901234567890123456789012345678901234";

    #[test]
    fn rfc4226_appendix_d() {
        let expected = [
            "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583",
            "399871", "520489",
        ];
        for (i, e) in expected.iter().enumerate() {
            assert_eq!(
                hotp(Algorithm::Sha1, SEED20, i as u64, 6),
                *e,
                "counter {i}"
            );
        }
    }

    #[test]
    fn rfc6238_appendix_b() {
        let table: &[(i64, &str, &str, &str)] = &[
            (59, "94287082", "46119246", "90693936"),
            (1111111109, "07081804", "68084774", "25091201"),
            (1111111111, "14050471", "67062674", "99943326"),
            (1234567890, "89005924", "91819424", "93441116"),
            (2000000000, "69279037", "90698825", "38618901"),
            (20000000000, "65353130", "77737706", "47863826"),
        ];
        for (t, s1, s256, s512) in table {
            let step = totp_step(*t, 30) as u64;
            assert_eq!(hotp(Algorithm::Sha1, SEED20, step, 8), *s1, "sha1 t={t}");
            assert_eq!(
                hotp(Algorithm::Sha256, SEED32, step, 8),
                *s256,
                "sha256 t={t}"
            );
            assert_eq!(
                hotp(Algorithm::Sha512, SEED64, step, 8),
                *s512,
                "sha512 t={t}"
            );
            // The window search computes its codes its own way (HMAC keyed once).
            let step = step as i64;
            for (alg, seed, code) in [
                (Algorithm::Sha1, SEED20, s1),
                (Algorithm::Sha256, SEED32, s256),
                (Algorithm::Sha512, SEED64, s512),
            ] {
                let found = find_counter(alg, seed, 8, code, step - 3..step + 3);
                assert_eq!(found, Some(step), "{alg:?} t={t}");
            }
        }
    }

    #[test]
    fn find_counter_in_window() {
        let code = hotp(Algorithm::Sha1, SEED20, 7, 6);
        assert_eq!(
            find_counter(Algorithm::Sha1, SEED20, 6, &code, 0..10),
            Some(7)
        );
        assert_eq!(find_counter(Algorithm::Sha1, SEED20, 6, &code, 0..7), None);
        assert_eq!(
            find_counter(Algorithm::Sha1, SEED20, 6, "12345", 0..10),
            None
        );
    }
}
