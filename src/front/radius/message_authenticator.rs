//! Message-Authenticator (RFC 3579 §3.2) and the Response Authenticator (RFC 2865 §3). The
//! `radius` crate computes neither in the form BlastRADIUS (CVE-2024-3596) asks for, so both
//! are ours.
//!
//! Message-Authenticator = HMAC-MD5(secret, the whole packet with the attribute's 16 value
//! bytes zeroed). In a request the Authenticator field is the Request Authenticator as sent;
//! in a response it is the Request Authenticator of the request being answered. The Response
//! Authenticator is then MD5(Code | Identifier | Length | Request Authenticator | Attributes |
//! secret), over attributes that already hold the final Message-Authenticator.

use super::wire::{HEADER_LEN, MESSAGE_AUTHENTICATOR, MESSAGE_AUTHENTICATOR_LEN};
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use zeroize::Zeroizing;

type HmacMd5 = Hmac<Md5>;

/// A client's shared secret, with HMAC-MD5 keyed with it once, when the client is
/// configured: keying is two of the five MD5 blocks of a request's check and two of the four
/// of an answer's signature. The keyed state is as good as the secret; like the secret it
/// lives as long as the client (only the secret's bytes are wiped on drop).
pub struct Secret {
    bytes: Zeroizing<Vec<u8>>,
    /// HMAC takes keys of any length, so `None` cannot happen.
    keyed: Option<HmacMd5>,
}

impl Secret {
    pub fn new(bytes: &[u8]) -> Secret {
        Secret {
            bytes: Zeroizing::new(bytes.to_vec()),
            keyed: HmacMd5::new_from_slice(bytes).ok(),
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.bytes
    }

    /// HMAC-MD5 over `parts` one after the other; all zeros (which fails every comparison
    /// rather than pass one) in the case that cannot happen.
    fn hmac_md5(&self, parts: &[&[u8]]) -> [u8; 16] {
        let Some(mut mac) = self.keyed.clone() else {
            return [0u8; 16];
        };
        for p in parts {
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }
}

/// Checks the Message-Authenticator at `offset` (as found by `wire::check`) in constant time.
pub fn verify(packet: &[u8], offset: usize, secret: &Secret) -> bool {
    let value = offset + 2..offset + MESSAGE_AUTHENTICATOR_LEN;
    let Some(sent) = packet.get(value.clone()) else {
        return false;
    };
    if packet.get(offset) != Some(&MESSAGE_AUTHENTICATOR) {
        return false;
    }
    // The packet with the value zeroed, without copying it.
    let expected = secret.hmac_md5(&[
        &packet[..value.start],
        &[0u8; MESSAGE_AUTHENTICATOR_LEN - 2],
        &packet[value.end..],
    ]);
    crate::crypto::ct_eq(sent, &expected)
}

/// MD5(packet | secret), where the packet's Authenticator field holds the Request
/// Authenticator.
pub fn response_authenticator(packet: &[u8], secret: &[u8]) -> [u8; 16] {
    let mut md5 = Md5::new();
    md5.update(packet);
    md5.update(secret);
    md5.finalize().into()
}

/// Signs an encoded response in place: `packet` must carry a Message-Authenticator as its
/// first attribute. Writes the Message-Authenticator, then the Response Authenticator.
/// Returns false (and leaves the packet unusable) if the packet has no such first attribute.
pub fn sign_response(packet: &mut [u8], request_authenticator: &[u8; 16], secret: &Secret) -> bool {
    let value = HEADER_LEN + 2..HEADER_LEN + MESSAGE_AUTHENTICATOR_LEN;
    if packet.len() < HEADER_LEN + MESSAGE_AUTHENTICATOR_LEN
        || packet[HEADER_LEN] != MESSAGE_AUTHENTICATOR
        || usize::from(packet[HEADER_LEN + 1]) != MESSAGE_AUTHENTICATOR_LEN
    {
        return false;
    }
    packet[4..HEADER_LEN].copy_from_slice(request_authenticator);
    packet[value.clone()].fill(0);
    let ma = secret.hmac_md5(&[packet]);
    packet[value].copy_from_slice(&ma);
    let ra = response_authenticator(packet, secret.as_slice());
    packet[4..HEADER_LEN].copy_from_slice(&ra);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 2104 HMAC written out over plain MD5, independent of the `hmac` crate.
    fn rfc2104_hmac_md5(key: &[u8], msg: &[u8]) -> [u8; 16] {
        let mut k = [0u8; 64];
        if key.len() > 64 {
            k[..16].copy_from_slice(&Md5::digest(key));
        } else {
            k[..key.len()].copy_from_slice(key);
        }
        let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
        let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
        let inner = Md5::digest([ipad.as_slice(), msg].concat());
        Md5::digest([opad.as_slice(), inner.as_slice()].concat()).into()
    }

    fn hex(s: &str) -> Vec<u8> {
        data_encoding::HEXLOWER
            .decode(s.as_bytes())
            .expect("hex vector")
    }

    #[test]
    fn hmac_md5_rfc2202_vectors() {
        assert_eq!(
            Secret::new(&[0x0b; 16]).hmac_md5(&[b"Hi There"]).to_vec(),
            hex("9294727a3638bb1c13f48ef8158bfc9d")
        );
        assert_eq!(
            Secret::new(b"Jefe")
                .hmac_md5(&[b"what do ya ", b"want for nothing?"])
                .to_vec(),
            hex("750c783e6ab0b503eaa86e310a5db738")
        );
    }

    /// Each secret's keyed state is its own, also for one longer than a block (hashed first).
    #[test]
    fn hmac_md5_with_secrets_of_different_lengths() {
        let long = [0x61u8; 80];
        let secrets: [&[u8]; 3] = [b"alpha-secret", &long, b"beta"];
        for secret in secrets {
            let msg = b"Access-Request bytes";
            assert_eq!(
                Secret::new(secret).hmac_md5(&[msg]),
                rfc2104_hmac_md5(secret, msg),
                "secret of {} bytes",
                secret.len()
            );
        }
    }

    /// RFC 2865 §7.1: the Access-Accept for nemo, secret "xyzzy5461".
    #[test]
    fn response_authenticator_rfc2865_vector() {
        let request_auth = hex("0f403f9473978057bd83d5cb98f4227a");
        let mut response =
            hex("02000026000000000000000000000000000000000606000000010f06000000000e06c0a80103");
        response[4..20].copy_from_slice(&request_auth);
        assert_eq!(
            response_authenticator(&response, b"xyzzy5461").to_vec(),
            hex("86fe220e7624ba2a1005f6bf9b55e0b2")
        );
    }

    /// A response signed by hand, following RFC 3579 and RFC 2865 step by step.
    #[test]
    fn sign_response_by_hand() {
        let secret = b"testing123-secret";
        let req_auth: [u8; 16] = *b"0123456789abcdef";
        // Access-Reject, id 42, Message-Authenticator then Reply-Message "no".
        let mut p = vec![3u8, 42, 0, 42, 0xee];
        p.resize(20, 0xee); // garbage Authenticator: must be replaced
        p.extend_from_slice(&[80, 18]);
        p.extend_from_slice(&[0x55; 16]); // garbage value: must be replaced
        p.extend_from_slice(&[18, 4, b'n', b'o']);
        assert_eq!(p.len(), 42);
        assert!(sign_response(&mut p, &req_auth, &Secret::new(secret)));

        let mut expect = p.clone();
        expect[4..20].copy_from_slice(&req_auth);
        expect[22..38].fill(0);
        let ma = rfc2104_hmac_md5(secret, &expect);
        assert_eq!(&p[22..38], &ma);
        expect[22..38].copy_from_slice(&ma);
        let ra: [u8; 16] = Md5::digest([expect.as_slice(), secret].concat()).into();
        assert_eq!(&p[4..20], &ra);
    }

    #[test]
    fn verify_request_message_authenticator() {
        let secret = b"s3cret-s3cret";
        let mut p = vec![1u8, 1, 0, 38];
        p.extend_from_slice(b"ABCDEFGHIJKLMNOP");
        p.extend_from_slice(&[80, 18]);
        p.extend_from_slice(&[0; 16]);
        let ma = rfc2104_hmac_md5(secret, &p);
        p[22..38].copy_from_slice(&ma);
        assert!(verify(&p, 20, &Secret::new(secret)));
        assert!(!verify(&p, 20, &Secret::new(b"other-secret")));
        p[5] ^= 1;
        assert!(
            !verify(&p, 20, &Secret::new(secret)),
            "authenticator is covered"
        );
        assert!(
            !verify(&p, 30, &Secret::new(secret)),
            "offset must point at the attribute"
        );
    }

    #[test]
    fn sign_needs_message_authenticator_first() {
        let mut p = vec![2u8, 1, 0, 24];
        p.resize(20, 0);
        p.extend_from_slice(&[18, 4, b'o', b'k']);
        assert!(!sign_response(&mut p, &[0; 16], &Secret::new(b"secret12")));
    }
}
