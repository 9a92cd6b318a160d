//! Yubico OTP, validated locally: modhex decoding, AES-128 decryption, CRC check, counters.
//!
//! A Yubico OTP is 44 modhex characters: 12 of public id, then one AES-128 block holding
//! private id (6 bytes), use counter (u16 little-endian, kept across power cycles; its top
//! bit is a flag, not part of the count), timestamp (3 bytes), session counter (u8, per
//! power-up; when it wraps the key moves the use counter on), random (2 bytes) and a CRC16
//! over all 16 bytes.

use crate::crypto::ct_eq;
use aes::cipher::{generic_array::GenericArray, BlockDecrypt, KeyInit};

pub const OTP_LEN: usize = 44;
pub const PUBLIC_ID_LEN: usize = 12;
const MODHEX: &[u8; 16] = b"cbdefghijklnrtuv";
/// The use counter is 15 bits; the top bit is the key's "used this power-up" flag (Yubico's
/// libyubikey masks it the same way). Left in, one OTP could compare far above its successors.
const USE_COUNTER_MASK: u16 = 0x7fff;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum YubicoError {
    #[error("not a Yubico OTP (44 modhex characters)")]
    Format,
    #[error("OTP is for another YubiKey (public id)")]
    PublicId,
    #[error("OTP does not decrypt to a valid block (wrong AES key or damaged OTP)")]
    Crc,
    #[error("OTP is for another YubiKey (private id)")]
    PrivateId,
}

/// The counters of a decrypted OTP, packed so that a later OTP compares greater:
/// use counter in the high bits, session counter in the low 8 bits.
pub fn packed_counter(use_ctr: u16, session_ctr: u8) -> i64 {
    (i64::from(use_ctr) << 8) | i64::from(session_ctr)
}

/// Decodes modhex (case-insensitive); `None` on any other character or odd length.
pub fn modhex_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if b.len() % 2 != 0 {
        return None;
    }
    let nib = |c: u8| {
        MODHEX
            .iter()
            .position(|m| *m == c.to_ascii_lowercase())
            .map(|p| p as u8)
    };
    b.chunks(2)
        .map(|p| Some(nib(p[0])? << 4 | nib(p[1])?))
        .collect()
}

pub fn modhex_encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .flat_map(|b| [MODHEX[(b >> 4) as usize], MODHEX[(b & 15) as usize]])
        .map(char::from)
        .collect()
}

/// CRC-16 as the YubiKey computes it (reflected 0x8408, initial 0xffff).
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xffff;
    for &b in data {
        crc ^= u16::from(b);
        for _ in 0..8 {
            let lsb = crc & 1;
            crc >>= 1;
            if lsb != 0 {
                crc ^= 0x8408;
            }
        }
    }
    crc
}

/// A decrypted, checked OTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    pub use_counter: u16,
    pub session_counter: u8,
    pub timestamp: u32,
}

impl Decoded {
    pub fn packed(&self) -> i64 {
        packed_counter(self.use_counter, self.session_counter)
    }
}

/// A token's sealed secret: private id followed by the AES key.
pub const SECRET_LEN: usize = 6 + 16;

pub fn pack_secret(private_id: &[u8; 6], aes_key: &[u8; 16]) -> zeroize::Zeroizing<Vec<u8>> {
    let mut v = zeroize::Zeroizing::new(Vec::with_capacity(SECRET_LEN));
    v.extend_from_slice(private_id);
    v.extend_from_slice(aes_key);
    v
}

/// Private id and AES key from a token's opened secret.
pub fn unpack_secret(secret: &[u8]) -> Option<([u8; 6], zeroize::Zeroizing<[u8; 16]>)> {
    if secret.len() != SECRET_LEN {
        return None;
    }
    let mut private_id = [0u8; 6];
    private_id.copy_from_slice(&secret[..6]);
    let mut key = zeroize::Zeroizing::new([0u8; 16]);
    key.copy_from_slice(&secret[6..]);
    Some((private_id, key))
}

/// True for 12 modhex characters: the public id of a 44-character OTP.
pub fn is_public_id(s: &str) -> bool {
    s.len() == PUBLIC_ID_LEN && modhex_decode(s).is_some()
}

/// The public id of an OTP, if it is shaped like one.
pub fn public_id(otp: &str) -> Option<&str> {
    (otp.len() == OTP_LEN && otp.is_ascii()).then(|| &otp[..PUBLIC_ID_LEN])
}

/// Decrypts and checks `otp` against a token's public id, private id and AES key. Counter
/// ordering (replay) is the caller's: it compares `packed()` with the last accepted value.
pub fn decode(
    otp: &str,
    public_id: &str,
    private_id: &[u8; 6],
    aes_key: &[u8; 16],
) -> Result<Decoded, YubicoError> {
    if otp.len() != OTP_LEN || !otp.is_ascii() {
        return Err(YubicoError::Format);
    }
    let otp = otp.to_ascii_lowercase();
    let (pid, ct) = otp.split_at(PUBLIC_ID_LEN);
    modhex_decode(pid).ok_or(YubicoError::Format)?;
    let ct = modhex_decode(ct).ok_or(YubicoError::Format)?;
    if !ct_eq(pid.as_bytes(), public_id.to_ascii_lowercase().as_bytes()) {
        return Err(YubicoError::PublicId);
    }
    let cipher = aes::Aes128::new(GenericArray::from_slice(aes_key));
    let mut block = GenericArray::clone_from_slice(&ct);
    cipher.decrypt_block(&mut block);
    let pt: [u8; 16] = block.into();
    // A correct block with its CRC appended leaves this fixed residue.
    if crc16(&pt) != 0xf0b8 {
        return Err(YubicoError::Crc);
    }
    if !ct_eq(&pt[..6], private_id) {
        return Err(YubicoError::PrivateId);
    }
    Ok(Decoded {
        use_counter: u16::from_le_bytes([pt[6], pt[7]]) & USE_COUNTER_MASK,
        timestamp: u32::from_le_bytes([pt[8], pt[9], pt[10], 0]),
        session_counter: pt[11],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Produced independently with Python's yubiotp 1.0 (PyPI):
    //   YubiKey(uid=8792ebfe26cc, session(use)=5, counter(session)=3).generate(),
    //   encode_otp(otp, ecde18dbe76fbd0c33330f1c354871db, public_id=modhex(010203040506))
    const KEY: [u8; 16] = [
        0xec, 0xde, 0x18, 0xdb, 0xe7, 0x6f, 0xbd, 0x0c, 0x33, 0x33, 0x0f, 0x1c, 0x35, 0x48, 0x71,
        0xdb,
    ];
    const UID: [u8; 6] = [0x87, 0x92, 0xeb, 0xfe, 0x26, 0xcc];
    const OTP: &str = "cbcdcecfcgchthrvueejggieugrhkrjugcjghgngucgd";

    #[test]
    fn decodes_an_independently_made_otp() {
        let d = decode(OTP, "cbcdcecfcgch", &UID, &KEY).expect("decode");
        assert_eq!(d.use_counter, 5);
        assert_eq!(d.session_counter, 3);
        assert_eq!(d.timestamp, 3378);
        assert!(d.packed() > packed_counter(5, 2));
        assert!(d.packed() < packed_counter(6, 0));
        assert!(decode(&OTP.to_uppercase(), "cbcdcecfcgch", &UID, &KEY).is_ok());
    }

    #[test]
    fn rejects_wrong_key_ids_and_garbage() {
        let mut k = KEY;
        k[0] ^= 1;
        assert_eq!(decode(OTP, "cbcdcecfcgch", &UID, &k), Err(YubicoError::Crc));
        let mut u = UID;
        u[5] ^= 1;
        assert_eq!(
            decode(OTP, "cbcdcecfcgch", &u, &KEY),
            Err(YubicoError::PrivateId)
        );
        assert_eq!(
            decode(OTP, "cbcdcecfcgcj", &UID, &KEY),
            Err(YubicoError::PublicId)
        );
        assert_eq!(
            decode(&OTP[1..], "cbcdcecfcgch", &UID, &KEY),
            Err(YubicoError::Format)
        );
        let bad = OTP.replace('t', "x");
        assert_eq!(
            decode(&bad, "cbcdcecfcgch", &UID, &KEY),
            Err(YubicoError::Format)
        );
        let umlaut = format!("ä{}", &OTP[2..]);
        assert_eq!(
            decode(&umlaut, "cbcdcecfcgch", &UID, &KEY),
            Err(YubicoError::Format)
        );
    }

    #[test]
    fn use_counter_flag_bit_is_not_part_of_the_count() {
        use aes::cipher::BlockEncrypt;
        let mut pt = [0u8; 16];
        pt[..6].copy_from_slice(&UID);
        pt[6..8].copy_from_slice(&(0x8000u16 | 7).to_le_bytes());
        pt[11] = 2;
        let crc = !crc16(&pt[..14]);
        pt[14..].copy_from_slice(&crc.to_le_bytes());
        let cipher = aes::Aes128::new(GenericArray::from_slice(&KEY));
        let mut block = GenericArray::clone_from_slice(&pt);
        cipher.encrypt_block(&mut block);
        let otp = format!("cbcdcecfcgch{}", modhex_encode(&block));
        let d = decode(&otp, "cbcdcecfcgch", &UID, &KEY).expect("decode");
        assert_eq!(d.use_counter, 7);
        assert_eq!(d.packed(), packed_counter(7, 2));
    }

    #[test]
    fn modhex_round_trip() {
        let b = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];
        assert_eq!(modhex_decode(&modhex_encode(&b)).expect("decode"), b);
        assert_eq!(modhex_encode(&[0x01, 0x02]), "cbcd");
        assert!(modhex_decode("cbc").is_none());
        assert!(modhex_decode("cbca").is_none());
    }
}
