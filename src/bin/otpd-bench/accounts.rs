//! The benchmark's accounts, derived from a seed: the same seed gives the same users, PINs,
//! HOTP secrets and static passwords in the import file, the FreeRADIUS users file and the
//! load generator, so nothing has to be stored between them.
//!
//! HOTP is computed here on its own (RFC 4226), not with otpd's code: the benchmark checks
//! the server, so it must not share the server's mistakes.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;
use std::io::Write;

pub struct Accounts {
    pub users: Vec<String>,
    pub pins: Vec<String>,
    pub secrets: Vec<[u8; 20]>,
    pub statics: Vec<String>,
}

fn derive(seed: &str, label: &str, i: usize) -> [u8; 32] {
    // HMAC-SHA256 accepts keys of any length.
    let mut m = match <Hmac<Sha256> as Mac>::new_from_slice(seed.as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes any key length"),
    };
    m.update(label.as_bytes());
    m.update(&(i as u64).to_be_bytes());
    m.finalize().into_bytes().into()
}

impl Accounts {
    pub fn new(seed: &str, prefix: &str, n: usize) -> Accounts {
        let mut a = Accounts {
            users: Vec::with_capacity(n),
            pins: Vec::with_capacity(n),
            secrets: Vec::with_capacity(n),
            statics: Vec::with_capacity(n),
        };
        for i in 0..n {
            a.users.push(format!("{prefix}{i:06}"));
            let p = derive(seed, "pin", i);
            a.pins.push(format!(
                "{:06}",
                u32::from_be_bytes([p[0], p[1], p[2], p[3]]) % 1_000_000
            ));
            let s = derive(seed, "secret", i);
            let mut secret = [0u8; 20];
            secret.copy_from_slice(&s[..20]);
            a.secrets.push(secret);
            let st = derive(seed, "static", i);
            a.statics.push(data_encoding::HEXLOWER.encode(&st[..8]));
        }
        a
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// PIN followed by the HOTP code for `counter`.
    pub fn otp_password(&self, i: usize, counter: u64) -> String {
        let mut p = self.pins[i].clone();
        p.push_str(&hotp(&self.secrets[i], counter));
        p
    }

    /// Whether the code of `counter` is also the code of one of the counters a server may
    /// still accept after it: otpd's default HOTP window (10) ahead of `counter`, plus one
    /// for a request the generator gave up on that the server may still have counted. Such
    /// a replay is accepted rightly, as the code of that later counter.
    pub fn repeats_ahead(&self, i: usize, counter: u64) -> bool {
        let code = hotp(&self.secrets[i], counter);
        (1..=11).any(|k| hotp(&self.secrets[i], counter + k) == code)
    }

    /// `otpd user import` input: one account per line, HOTP token at counter 0.
    pub fn write_otpd(&self, out: &mut impl Write, level: &str) -> std::io::Result<()> {
        for i in 0..self.len() {
            writeln!(
                out,
                r#"{{"user":"{}","pin":"{}","level":"{level}","tokens":[{{"type":"hotp","secret":"{}","digits":6,"counter":0,"serial":"BENCH{i:06}"}}]}}"#,
                self.users[i],
                self.pins[i],
                data_encoding::BASE32_NOPAD.encode(&self.secrets[i]),
            )?;
        }
        Ok(())
    }

    /// A FreeRADIUS `users` file with each account's static password.
    pub fn write_freeradius(&self, out: &mut impl Write) -> std::io::Result<()> {
        for i in 0..self.len() {
            writeln!(
                out,
                "{}\tCleartext-Password := \"{}\"\n",
                self.users[i], self.statics[i]
            )?;
        }
        Ok(())
    }
}

/// RFC 4226 HOTP, SHA-1, six digits.
pub fn hotp(secret: &[u8], counter: u64) -> String {
    let mut m = match <Hmac<Sha1> as Mac>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes any key length"),
    };
    m.update(&counter.to_be_bytes());
    let h = m.finalize().into_bytes();
    let off = (h[19] & 0x0f) as usize;
    let bin = (u32::from(h[off] & 0x7f) << 24)
        | (u32::from(h[off + 1]) << 16)
        | (u32::from(h[off + 2]) << 8)
        | u32::from(h[off + 3]);
    format!("{:06}", bin % 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4226_appendix_d() {
        let k = b"12345678901234567890";
        let want = [
            "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583",
            "399871", "520489",
        ];
        for (c, w) in want.iter().enumerate() {
            assert_eq!(hotp(k, c as u64), *w, "counter {c}");
        }
    }

    #[test]
    fn derivation_is_deterministic_and_distinct() {
        let a = Accounts::new("s", "u", 3);
        let b = Accounts::new("s", "u", 3);
        assert_eq!(a.users, b.users);
        assert_eq!(a.secrets, b.secrets);
        assert_ne!(a.secrets[0], a.secrets[1]);
        assert_eq!(a.users[2], "u000002");
        assert_ne!(Accounts::new("t", "u", 1).secrets[0], a.secrets[0]);
    }
}
