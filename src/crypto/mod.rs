//! Key file, sealing of secrets at rest, keyed hashes and constant-time comparison.
//!
//! One 32-byte master key (the key file) is the root of everything. Sub-keys are derived with
//! HMAC-SHA256 under fixed labels so that the sealing key and the hashing key are independent:
//! a leak of one derived key says nothing about the other.

mod keyfile;

pub use keyfile::{create_key_file, load_key_file, KeyFileError};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

/// Version byte at the start of every sealed blob, so the format can change later.
const SEAL_VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
/// Length of a keyed hash and of its salt.
pub const HASH_LEN: usize = 32;
pub const SALT_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("sealed secret is damaged or was sealed under another key")]
    Open,
    #[error("sealing failed")]
    Seal,
    #[error("the system random generator failed: {0}")]
    Random(String),
}

/// The master key as read from the key file. Wiped from memory when dropped.
#[derive(Clone, Zeroize)]
#[zeroize(drop)]
pub struct MasterKey([u8; 32]);

impl MasterKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        MasterKey(bytes)
    }

    fn derive(&self, label: &[u8]) -> Zeroizing<[u8; 32]> {
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&hmac_sha256(&self.0, label));
        out
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

/// Everything derived from the master key that the engine and the admin commands need.
pub struct Keys {
    seal: XChaCha20Poly1305,
    hash_key: Zeroizing<[u8; 32]>,
}

impl Keys {
    pub fn new(master: &MasterKey) -> Self {
        let seal_key = master.derive(b"otpd v1 seal");
        Keys {
            seal: XChaCha20Poly1305::new(seal_key.as_ref().into()),
            hash_key: master.derive(b"otpd v1 keyed hash"),
        }
    }

    /// Authenticated encryption of a secret. `aad` binds the blob to its owner (the token
    /// serial), so a sealed secret copied into another row does not open.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce)?;
        let ct = self
            .seal
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| CryptoError::Seal)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(SEAL_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    pub fn open(&self, aad: &[u8], blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if blob.len() < 1 + NONCE_LEN || blob[0] != SEAL_VERSION {
            return Err(CryptoError::Open);
        }
        let (nonce, ct) = blob[1..].split_at(NONCE_LEN);
        self.seal
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Open)
    }

    /// Keyed hash of a low-entropy secret (PIN, app password, backup code). Without the key
    /// file a stolen database gives nothing to brute-force offline.
    pub fn keyed_hash(&self, salt: &[u8], secret: &[u8]) -> [u8; HASH_LEN] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.hash_key.as_ref())
            .expect("HMAC accepts any key length");
        mac.update(&(salt.len() as u32).to_be_bytes());
        mac.update(salt);
        mac.update(secret);
        mac.finalize().into_bytes().into()
    }

    /// Constant-time check of a secret against a stored keyed hash.
    pub fn verify_hash(&self, salt: &[u8], secret: &[u8], expected: &[u8]) -> bool {
        ct_eq(&self.keyed_hash(salt, secret), expected)
    }
}

/// Constant-time equality; lengths are not secret.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

pub fn fill_random(buf: &mut [u8]) -> Result<(), CryptoError> {
    getrandom::getrandom(buf).map_err(|e| CryptoError::Random(e.to_string()))
}

pub fn random_vec(len: usize) -> Result<Vec<u8>, CryptoError> {
    let mut v = vec![0u8; len];
    fill_random(&mut v)?;
    Ok(v)
}

/// A uniformly random number below `bound` (rejection sampling, no modulo bias).
pub fn random_below(bound: u32) -> Result<u32, CryptoError> {
    let zone = u32::MAX - (u32::MAX % bound);
    loop {
        let mut b = [0u8; 4];
        fill_random(&mut b)?;
        let v = u32::from_le_bytes(b);
        if v < zone {
            return Ok(v % bound);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::new(&MasterKey::from_bytes([7u8; 32]))
    }

    #[test]
    fn seal_round_trip_and_aad_binding() {
        let k = keys();
        let blob = k.seal(b"TOTP0001", b"secret bytes").expect("seal");
        assert_eq!(
            &k.open(b"TOTP0001", &blob).expect("open")[..],
            b"secret bytes"
        );
        assert!(
            k.open(b"TOTP0002", &blob).is_err(),
            "other aad must not open"
        );
        let mut tampered = blob.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(k.open(b"TOTP0001", &tampered).is_err());
        let other = Keys::new(&MasterKey::from_bytes([8u8; 32]));
        assert!(
            other.open(b"TOTP0001", &blob).is_err(),
            "other key must not open"
        );
    }

    #[test]
    fn keyed_hash_depends_on_salt_and_key() {
        let k = keys();
        let h = k.keyed_hash(b"salt", b"1234");
        assert!(k.verify_hash(b"salt", b"1234", &h));
        assert!(!k.verify_hash(b"salt", b"1235", &h));
        assert!(!k.verify_hash(b"tlas", b"1234", &h));
        let other = Keys::new(&MasterKey::from_bytes([8u8; 32]));
        assert!(!other.verify_hash(b"salt", b"1234", &h));
    }

    #[test]
    fn random_below_stays_in_range() {
        for _ in 0..1000 {
            assert!(random_below(10).expect("rng") < 10);
        }
    }
}
