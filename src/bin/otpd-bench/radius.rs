//! The client side of RADIUS PAP, written from RFC 2865 and RFC 3579 (not shared with the
//! server, so the benchmark checks the server's side rather than agreeing with it):
//! Access-Request with a hidden User-Password and a Message-Authenticator, and the checks of
//! every reply (length, identifier, Response Authenticator, Message-Authenticator).

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};

pub const ACCESS_REQUEST: u8 = 1;
pub const ACCESS_ACCEPT: u8 = 2;
pub const ACCESS_REJECT: u8 = 3;
pub const ACCESS_CHALLENGE: u8 = 11;

const USER_NAME: u8 = 1;
const USER_PASSWORD: u8 = 2;
const NAS_IP_ADDRESS: u8 = 4;
const MESSAGE_AUTHENTICATOR: u8 = 80;
const HEADER: usize = 20;

/// Builds an Access-Request into `out`: Message-Authenticator first (as BlastRADIUS advice
/// has it), User-Name, User-Password hidden per RFC 2865 §5.2, NAS-IP-Address 127.0.0.1.
pub fn access_request(
    out: &mut Vec<u8>,
    id: u8,
    authenticator: &[u8; 16],
    user: &str,
    password: &[u8],
    secret: &[u8],
) {
    out.clear();
    out.extend_from_slice(&[ACCESS_REQUEST, id, 0, 0]);
    out.extend_from_slice(authenticator);
    let ma_at = out.len() + 2;
    out.extend_from_slice(&[MESSAGE_AUTHENTICATOR, 18]);
    out.extend_from_slice(&[0u8; 16]);
    let user = &user.as_bytes()[..user.len().min(253)];
    out.extend_from_slice(&[USER_NAME, (user.len() + 2) as u8]);
    out.extend_from_slice(user);
    let hidden = hide_password(password, secret, authenticator);
    out.extend_from_slice(&[USER_PASSWORD, (hidden.len() + 2) as u8]);
    out.extend_from_slice(&hidden);
    out.extend_from_slice(&[NAS_IP_ADDRESS, 6, 127, 0, 0, 1]);
    let len = out.len() as u16;
    out[2..4].copy_from_slice(&len.to_be_bytes());
    let mac = hmac_md5(secret, &[out.as_slice()]);
    out[ma_at..ma_at + 16].copy_from_slice(&mac);
}

/// RFC 2865 §5.2: the password padded to a multiple of 16 (at most 128), each block XORed
/// with MD5(secret + previous cipher block), the first with the Request Authenticator.
pub fn hide_password(password: &[u8], secret: &[u8], authenticator: &[u8; 16]) -> Vec<u8> {
    let p = &password[..password.len().min(128)];
    let blocks = p.len().div_ceil(16).max(1);
    let mut out = vec![0u8; blocks * 16];
    out[..p.len()].copy_from_slice(p);
    let mut prev: [u8; 16] = *authenticator;
    for b in 0..blocks {
        let mut h = Md5::new();
        h.update(secret);
        h.update(prev);
        let key = h.finalize();
        for (i, k) in key.iter().enumerate() {
            out[b * 16 + i] ^= k;
        }
        prev.copy_from_slice(&out[b * 16..b * 16 + 16]);
    }
    out
}

fn hmac_md5(secret: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    let mut m = match <Hmac<Md5> as Mac>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes any key length"),
    };
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadReply {
    /// Shorter than a header, or its Length field disagrees with the datagram.
    Length,
    /// An attribute runs past the end or is shorter than 2 bytes.
    Attributes,
    /// The Response Authenticator is not MD5(Code+ID+Length+RequestAuth+Attributes+Secret).
    ResponseAuthenticator,
    /// No Message-Authenticator although one was required.
    NoMessageAuthenticator,
    /// The Message-Authenticator does not verify.
    MessageAuthenticator,
    /// A code that does not answer an Access-Request.
    Code(u8),
}

/// Checks a reply to the request with `request_auth`; returns its code. The caller has matched
/// the identifier.
pub fn verify_reply(
    reply: &[u8],
    request_auth: &[u8; 16],
    secret: &[u8],
    require_ma: bool,
) -> Result<u8, BadReply> {
    if reply.len() < HEADER {
        return Err(BadReply::Length);
    }
    let len = u16::from_be_bytes([reply[2], reply[3]]) as usize;
    if len < HEADER || len > reply.len() || len > 4096 {
        return Err(BadReply::Length);
    }
    let reply = &reply[..len];
    let code = reply[0];
    if !matches!(code, ACCESS_ACCEPT | ACCESS_REJECT | ACCESS_CHALLENGE) {
        return Err(BadReply::Code(code));
    }
    // Response Authenticator (RFC 2865 §3).
    let mut h = Md5::new();
    h.update(&reply[..4]);
    h.update(request_auth);
    h.update(&reply[HEADER..]);
    h.update(secret);
    if h.finalize().as_slice() != &reply[4..HEADER] {
        return Err(BadReply::ResponseAuthenticator);
    }
    // Message-Authenticator (RFC 3579 §3.2): HMAC-MD5 over the reply with the Request
    // Authenticator in place of the Response Authenticator and the attribute's value zeroed.
    let mut at = HEADER;
    let mut ma = None;
    while at < len {
        if at + 2 > len {
            return Err(BadReply::Attributes);
        }
        let (t, l) = (reply[at], reply[at + 1] as usize);
        if l < 2 || at + l > len {
            return Err(BadReply::Attributes);
        }
        if t == MESSAGE_AUTHENTICATOR {
            if l != 18 {
                return Err(BadReply::MessageAuthenticator);
            }
            ma = Some(at + 2);
        }
        at += l;
    }
    match ma {
        None if require_ma => Err(BadReply::NoMessageAuthenticator),
        None => Ok(code),
        Some(v) => {
            let zero = [0u8; 16];
            let mac = hmac_md5(
                secret,
                &[
                    &reply[..4],
                    request_auth,
                    &reply[HEADER..v],
                    &zero,
                    &reply[v + 16..],
                ],
            );
            if mac.as_slice() == &reply[v..v + 16] {
                Ok(code)
            } else {
                Err(BadReply::MessageAuthenticator)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The server's side, written from the RFC text for the test only.
    fn unhide(hidden: &[u8], secret: &[u8], auth: &[u8; 16]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut prev = auth.to_vec();
        for c in hidden.chunks(16) {
            let mut h = Md5::new();
            h.update(secret);
            h.update(&prev);
            let key = h.finalize();
            out.extend(c.iter().zip(key.iter()).map(|(a, b)| a ^ b));
            prev = c.to_vec();
        }
        while out.last() == Some(&0) {
            out.pop();
        }
        out
    }

    fn reply(code: u8, id: u8, req_auth: &[u8; 16], secret: &[u8], with_ma: bool) -> Vec<u8> {
        let mut r = vec![code, id, 0, 0];
        r.extend_from_slice(req_auth);
        if with_ma {
            r.extend_from_slice(&[MESSAGE_AUTHENTICATOR, 18]);
            r.extend_from_slice(&[0u8; 16]);
        }
        r.extend_from_slice(&[18, 7, b'h', b'e', b'l', b'l', b'o']);
        let len = r.len() as u16;
        r[2..4].copy_from_slice(&len.to_be_bytes());
        if with_ma {
            let mac = hmac_md5(secret, &[r.as_slice()]);
            r[22..38].copy_from_slice(&mac);
        }
        let mut h = Md5::new();
        h.update(&r);
        h.update(secret);
        let ra = h.finalize();
        r[4..20].copy_from_slice(&ra);
        r
    }

    #[test]
    fn password_hiding_round_trips_over_several_blocks() {
        let auth = [7u8; 16];
        for pw in [
            &b"123456"[..],
            b"0123456789abcdef",
            b"a password of more than 32 bytes!!",
        ] {
            let h = hide_password(pw, b"s3cret", &auth);
            assert_eq!(h.len() % 16, 0);
            assert_eq!(unhide(&h, b"s3cret", &auth), pw);
        }
    }

    #[test]
    fn request_carries_a_valid_message_authenticator() {
        let mut p = Vec::new();
        let auth = [9u8; 16];
        access_request(&mut p, 42, &auth, "alice", b"1234287082", b"s3cret");
        assert_eq!(p[0], ACCESS_REQUEST);
        assert_eq!(p[1], 42);
        assert_eq!(u16::from_be_bytes([p[2], p[3]]) as usize, p.len());
        let mut zeroed = p.clone();
        zeroed[22..38].fill(0);
        assert_eq!(hmac_md5(b"s3cret", &[zeroed.as_slice()]), p[22..38]);
    }

    #[test]
    fn replies_are_verified() {
        let auth = [3u8; 16];
        let good = reply(ACCESS_ACCEPT, 1, &auth, b"s3cret", true);
        assert_eq!(
            verify_reply(&good, &auth, b"s3cret", true),
            Ok(ACCESS_ACCEPT)
        );
        assert_eq!(
            verify_reply(&good, &[4u8; 16], b"s3cret", true),
            Err(BadReply::ResponseAuthenticator)
        );
        assert_eq!(
            verify_reply(&good, &auth, b"other", true),
            Err(BadReply::ResponseAuthenticator)
        );
        let no_ma = reply(ACCESS_REJECT, 1, &auth, b"s3cret", false);
        assert_eq!(
            verify_reply(&no_ma, &auth, b"s3cret", true),
            Err(BadReply::NoMessageAuthenticator)
        );
        assert_eq!(
            verify_reply(&no_ma, &auth, b"s3cret", false),
            Ok(ACCESS_REJECT)
        );
        // A Message-Authenticator over the wrong bytes, with a Response Authenticator that
        // still fits: only the HMAC check catches it.
        let mut bad = good.clone();
        bad[30] ^= 1;
        let mut h = Md5::new();
        h.update(&bad[..4]);
        h.update(auth);
        h.update(&bad[20..]);
        h.update(b"s3cret");
        let ra = h.finalize();
        bad[4..20].copy_from_slice(&ra);
        assert_eq!(
            verify_reply(&bad, &auth, b"s3cret", true),
            Err(BadReply::MessageAuthenticator)
        );
        assert_eq!(
            verify_reply(&good[..10], &auth, b"s3cret", true),
            Err(BadReply::Length)
        );
    }
}
