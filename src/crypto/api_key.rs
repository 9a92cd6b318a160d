//! API keys: 256 random bits, shown once as `otpd_` + base64url, stored only as a keyed hash.
//!
//! The hash key is a sub-key of the keyed-hash key (which survives key rotation, see
//! [`Keys::load`]), so API keys keep working across `otpd key rotate`, and a stolen database
//! alone gives neither the keys nor anything to test guesses against.

use super::{fill_random, hmac_sha256, CryptoError, Keys, HASH_LEN};
use data_encoding::BASE64URL_NOPAD;
use zeroize::Zeroizing;

/// What every key starts with: secret scanners and people recognise it.
pub const API_KEY_PREFIX: &str = "otpd_";
/// Random bytes in a key.
const KEY_BYTES: usize = 32;

/// A new key, as the admin is shown it once.
pub fn new_api_key() -> Result<Zeroizing<String>, CryptoError> {
    let mut raw = Zeroizing::new([0u8; KEY_BYTES]);
    fill_random(raw.as_mut())?;
    let mut s = Zeroizing::new(String::from(API_KEY_PREFIX));
    s.push_str(&BASE64URL_NOPAD.encode(raw.as_ref()));
    Ok(s)
}

/// Whether `s` has the shape of a key (before any store lookup: a wrong shape is refused
/// without touching the database).
pub fn looks_like_api_key(s: &str) -> bool {
    s.strip_prefix(API_KEY_PREFIX).is_some_and(|rest| {
        BASE64URL_NOPAD
            .decode(rest.as_bytes())
            .is_ok_and(|b| b.len() == KEY_BYTES)
    })
}

impl Keys {
    /// The keyed hash an API key is stored and looked up by.
    pub fn api_key_hash(&self, key: &str) -> [u8; HASH_LEN] {
        let sub = Zeroizing::new(hmac_sha256(self.hash_key.as_ref(), b"otpd v1 api key"));
        hmac_sha256(sub.as_ref(), key.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;

    #[test]
    fn keys_are_random_well_formed_and_hashed_under_the_key_file() {
        let a = new_api_key().expect("rng");
        let b = new_api_key().expect("rng");
        assert_ne!(*a, *b);
        assert!(looks_like_api_key(&a), "{}", a.len());
        assert!(!looks_like_api_key("otpd_short"));
        assert!(!looks_like_api_key(&a.replace("otpd_", "xxxx_")));
        let k1 = Keys::new(&MasterKey::from_bytes([1; 32]));
        let k2 = Keys::new(&MasterKey::from_bytes([2; 32]));
        assert_eq!(k1.api_key_hash(&a), k1.api_key_hash(&a));
        assert_ne!(k1.api_key_hash(&a), k2.api_key_hash(&a));
        assert_ne!(k1.api_key_hash(&a), k1.api_key_hash(&b));
        // Not the plain keyed hash of PINs and codes: a sub-key of its own.
        assert_ne!(k1.api_key_hash(&a), k1.keyed_hash(&[], a.as_bytes()));
    }
}
