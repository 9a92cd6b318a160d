//! Key file, sealing of secrets at rest, keyed hashes and constant-time comparison.
//!
//! One 32-byte master key (the key file) is the root of everything. Sub-keys are derived with
//! HMAC-SHA256 under fixed labels so that the sealing key and the hashing key are independent:
//! a leak of one derived key says nothing about the other.

mod keyfile;

pub use keyfile::{create_key_file, load_key_file, write_key_file, KeyFileError};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};
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

    pub fn generate() -> Result<Self, CryptoError> {
        let mut k = [0u8; 32];
        fill_random(&mut k)?;
        Ok(MasterKey(k))
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
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

/// Associated data of the sealed hash key in the store.
pub const HASH_KEY_AAD: &[u8] = b"otpd hash key";

/// Everything derived from the key file(s) that the engine and the admin commands need.
///
/// Sealing uses the current key; opening tries every key known (the current one, and during a
/// key rotation the next one), and when none opens a blob, re-reads the key files once a
/// second at most: that is how a running daemon follows `otpd key rotate` without a restart.
pub struct Keys {
    seal: RwLock<SealKeys>,
    hash_key: Zeroizing<[u8; 32]>,
    source: Option<PathBuf>,
    last_reload: Mutex<Option<Instant>>,
}

struct SealKeys {
    current: XChaCha20Poly1305,
    others: Vec<XChaCha20Poly1305>,
    /// Key check values of `current` then `others`, in the same order.
    checks: Vec<[u8; 32]>,
}

fn cipher(master: &MasterKey) -> XChaCha20Poly1305 {
    let k = master.derive(b"otpd v1 seal");
    XChaCha20Poly1305::new(k.as_ref().into())
}

/// The key check value stored with the database: a MAC of a fixed label under a sub-key of
/// its own, so it tells whether a key file belongs to a database without revealing anything
/// about the sealing or hashing keys.
fn key_check(master: &MasterKey) -> [u8; 32] {
    let k = master.derive(b"otpd v1 key check");
    hmac_sha256(k.as_ref(), b"otpd key check value")
}

impl Keys {
    /// Keys from one master key, the hash key derived from it (no rotation yet).
    pub fn new(master: &MasterKey) -> Self {
        Keys {
            seal: RwLock::new(SealKeys {
                current: cipher(master),
                others: Vec::new(),
                checks: vec![key_check(master)],
            }),
            hash_key: master.derive(b"otpd v1 keyed hash"),
            source: None,
            last_reload: Mutex::new(None),
        }
    }

    /// Keys from the key file at `path` (and `path.new`, left by an unfinished rotation).
    /// `sealed_hash_key` is the store's copy of the hash key, present once a key was rotated:
    /// keyed hashes must survive rotation, so after the first one the hash key no longer comes
    /// from the current master.
    pub fn load(path: &Path, sealed_hash_key: Option<&[u8]>) -> Result<Keys, KeyFileError> {
        let masters = load_all(path)?;
        let first = masters.first().ok_or_else(|| KeyFileError::Missing {
            path: path.to_path_buf(),
        })?;
        let mut keys = Keys::new(first);
        keys.set_masters(&masters);
        keys.source = Some(path.to_path_buf());
        if let Some(blob) = sealed_hash_key {
            let hk = keys
                .open(HASH_KEY_AAD, blob)
                .map_err(|_| KeyFileError::WrongKey {
                    path: path.to_path_buf(),
                })?;
            if hk.len() != 32 {
                return Err(KeyFileError::WrongKey {
                    path: path.to_path_buf(),
                });
            }
            keys.hash_key.copy_from_slice(&hk);
        }
        Ok(keys)
    }

    fn set_masters(&self, masters: &[MasterKey]) {
        let mut it = masters.iter();
        if let Some(first) = it.next() {
            let mut w = self.seal.write().unwrap_or_else(|p| p.into_inner());
            w.current = cipher(first);
            w.others = it.map(cipher).collect();
            w.checks = masters.iter().map(key_check).collect();
        }
    }

    /// Seals under `next` from now on, keeping the present keys for opening (key rotation).
    pub fn rotate_to(&self, next: &MasterKey) {
        let mut w = self.seal.write().unwrap_or_else(|p| p.into_inner());
        let old = std::mem::replace(&mut w.current, cipher(next));
        w.others.insert(0, old);
        w.checks.insert(0, key_check(next));
    }

    /// The key check value of the current key, to store with the database.
    pub fn key_check(&self) -> [u8; 32] {
        let r = self.seal.read().unwrap_or_else(|p| p.into_inner());
        r.checks.first().copied().unwrap_or([0u8; 32])
    }

    /// Whether a stored key check value belongs to one of the keys held (during a rotation
    /// the database may already carry the next key's value).
    pub fn fits_key_check(&self, stored: &[u8]) -> bool {
        let r = self.seal.read().unwrap_or_else(|p| p.into_inner());
        r.checks.iter().any(|c| ct_eq(c, stored))
    }

    /// The hash key sealed under the current key, for the store.
    pub fn sealed_hash_key(&self) -> Result<Vec<u8>, CryptoError> {
        self.seal(HASH_KEY_AAD, self.hash_key.as_ref())
    }

    /// Authenticated encryption of a secret. `aad` binds the blob to its owner (the token
    /// serial), so a sealed secret copied into another row does not open.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce)?;
        let r = self.seal.read().unwrap_or_else(|p| p.into_inner());
        let ct = r
            .current
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
        if let Some(pt) = self.try_open(aad, blob)? {
            return Ok(pt);
        }
        if self.reload_if_due() {
            if let Some(pt) = self.try_open(aad, blob)? {
                return Ok(pt);
            }
        }
        Err(CryptoError::Open)
    }

    /// Opens with the current key only: what a finished rotation must reach for every row.
    pub fn open_current(&self, aad: &[u8], blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let (nonce, ct) = split_blob(blob)?;
        let r = self.seal.read().unwrap_or_else(|p| p.into_inner());
        r.current
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Open)
    }

    fn try_open(&self, aad: &[u8], blob: &[u8]) -> Result<Option<Zeroizing<Vec<u8>>>, CryptoError> {
        let (nonce, ct) = split_blob(blob)?;
        let r = self.seal.read().unwrap_or_else(|p| p.into_inner());
        for c in std::iter::once(&r.current).chain(r.others.iter()) {
            if let Ok(pt) = c.decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad }) {
                return Ok(Some(Zeroizing::new(pt)));
            }
        }
        Ok(None)
    }

    /// Re-reads the key files, at most once a second; true if it did.
    fn reload_if_due(&self) -> bool {
        let Some(path) = &self.source else {
            return false;
        };
        {
            let mut last = self.last_reload.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
                return false;
            }
            *last = Some(Instant::now());
        }
        match load_all(path) {
            Ok(masters) if !masters.is_empty() => {
                self.set_masters(&masters);
                tracing::info!(key = %path.display(), "key file re-read (key rotation)");
                true
            }
            Ok(_) => false,
            Err(e) => {
                tracing::error!("key file re-read failed: {e}");
                false
            }
        }
    }

    /// Keyed hash of a low-entropy secret (PIN, app password, backup code). Without the key
    /// file a stolen database gives nothing to brute-force offline.
    // HMAC takes keys of any length (RFC 2104 hashes long ones): new_from_slice cannot fail.
    #[allow(clippy::expect_used)]
    pub fn keyed_hash(&self, salt: &[u8], secret: &[u8]) -> [u8; HASH_LEN] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.hash_key.as_ref())
            .expect("HMAC accepts any key length");
        mac.update(&(salt.len() as u32).to_be_bytes());
        mac.update(salt);
        mac.update(secret);
        mac.finalize().into_bytes().into()
    }

    /// A keyed name for state that several nodes share (a two-step login's State, a
    /// re-login entry): the same on every node that has this key file and database, nothing
    /// to anyone who has only the database. Under a sub-key of the hash key per `label`, so
    /// it survives key rotation as keyed hashes do. The parts are length-prefixed: ("ab","c")
    /// and ("a","bc") do not collide.
    // HMAC takes keys of any length: new_from_slice cannot fail.
    #[allow(clippy::expect_used)]
    pub fn shared_name(&self, label: &[u8], parts: &[&[u8]]) -> [u8; 32] {
        let sub = Zeroizing::new(hmac_sha256(self.hash_key.as_ref(), label));
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(sub.as_ref())
            .expect("HMAC accepts any key length");
        for part in parts {
            mac.update(&(part.len() as u32).to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// Constant-time check of a secret against a stored keyed hash.
    pub fn verify_hash(&self, salt: &[u8], secret: &[u8], expected: &[u8]) -> bool {
        ct_eq(&self.keyed_hash(salt, secret), expected)
    }
}

fn split_blob(blob: &[u8]) -> Result<(&[u8], &[u8]), CryptoError> {
    if blob.len() < 1 + NONCE_LEN || blob[0] != SEAL_VERSION {
        return Err(CryptoError::Open);
    }
    Ok(blob[1..].split_at(NONCE_LEN))
}

/// The key files of one installation, current first: `PATH`, then `PATH.new` if an
/// unfinished rotation left one.
fn load_all(path: &Path) -> Result<Vec<MasterKey>, KeyFileError> {
    let mut out = vec![load_key_file(path)?];
    let next = next_key_path(path);
    if next.exists() {
        out.push(load_key_file(&next)?);
    }
    Ok(out)
}

/// Where `otpd key rotate` writes the next key before it takes over.
pub fn next_key_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".new");
    PathBuf::from(p)
}

/// Constant-time equality; lengths are not secret.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

// HMAC takes keys of any length (RFC 2104 hashes long ones): new_from_slice cannot fail.
#[allow(clippy::expect_used)]
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
    fn rotation_keeps_old_blobs_open_and_seals_under_the_next_key() {
        let k = keys();
        let old_blob = k.seal(b"a", b"x").expect("seal");
        let hash = k.keyed_hash(b"s", b"1234");
        let next = MasterKey::from_bytes([9u8; 32]);
        k.rotate_to(&next);
        assert_eq!(&k.open(b"a", &old_blob).expect("old opens")[..], b"x");
        assert!(k.open_current(b"a", &old_blob).is_err());
        let new_blob = k.seal(b"a", b"y").expect("seal");
        assert_eq!(
            &Keys::new(&next).open(b"a", &new_blob).expect("next")[..],
            b"y"
        );
        assert!(
            k.verify_hash(b"s", b"1234", &hash),
            "hash key unchanged by rotation"
        );
    }

    #[test]
    fn key_check_value_tells_keys_apart_and_follows_rotation() {
        let k = keys();
        let old = k.key_check();
        assert!(k.fits_key_check(&old));
        let other = Keys::new(&MasterKey::from_bytes([8u8; 32]));
        assert!(!other.fits_key_check(&old), "another key must not fit");
        assert_ne!(old, *k.hash_key, "not the hash key");
        let next = MasterKey::from_bytes([9u8; 32]);
        k.rotate_to(&next);
        assert!(k.fits_key_check(&old) && k.fits_key_check(&Keys::new(&next).key_check()));
        assert_eq!(k.key_check(), Keys::new(&next).key_check());
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
