//! The first look at a datagram: header and attribute lengths, checked by us before any byte
//! reaches the codec. What passes here is a well-formed RADIUS packet as far as lengths go;
//! its meaning is the codec's and the handler's business.

/// Largest RADIUS packet (RFC 2865 §3).
pub const MAX_PACKET_LEN: usize = 4096;
pub const HEADER_LEN: usize = 20;
pub const MESSAGE_AUTHENTICATOR: u8 = 80;
/// Type, length and the 16-byte HMAC-MD5.
pub const MESSAGE_AUTHENTICATOR_LEN: usize = 18;

pub const ACCESS_REQUEST: u8 = 1;
pub const STATUS_SERVER: u8 = 12;

/// Why a datagram got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Dropped {
    #[error("shorter than a RADIUS header")]
    TooShort,
    #[error("longer than 4096 bytes")]
    TooLong,
    #[error("length field disagrees with the datagram")]
    BadLength,
    #[error("attribute length overflows the packet or is below 2")]
    BadAttribute,
    #[error("Message-Authenticator is not 18 bytes long or appears twice")]
    BadMessageAuthenticatorLength,
    #[error("User-Password is not 16 to 128 bytes in steps of 16")]
    BadUserPassword,
    #[error("packet code {0} is not Access-Request or Status-Server")]
    UnknownCode(u8),
    #[error("no Message-Authenticator, and this client must send one")]
    NoMessageAuthenticator,
    #[error("wrong Message-Authenticator (wrong shared secret or a forged packet)")]
    BadMessageAuthenticator,
    #[error("the codec refused the packet")]
    Codec,
    #[error("the answer does not fit in a RADIUS packet")]
    Encode,
}

impl Dropped {
    /// Malformed on the wire, as opposed to well-formed but not acceptable.
    pub fn is_malformed(self) -> bool {
        matches!(
            self,
            Dropped::TooShort
                | Dropped::TooLong
                | Dropped::BadLength
                | Dropped::BadAttribute
                | Dropped::BadMessageAuthenticatorLength
                | Dropped::BadUserPassword
                | Dropped::Codec
        )
    }
}

/// A datagram whose lengths are consistent.
#[derive(Debug, Clone)]
pub struct Checked<'a> {
    /// The packet without any padding after its Length.
    pub packet: &'a [u8],
    pub code: u8,
    pub identifier: u8,
    pub authenticator: [u8; 16],
    /// Offset of the Message-Authenticator attribute, if there is one.
    pub message_authenticator: Option<usize>,
}

/// Checks the header and walks every attribute. Bytes after `Length` are padding and ignored
/// (RFC 2865 §3); a datagram shorter than `Length` is dropped.
pub fn check(datagram: &[u8]) -> Result<Checked<'_>, Dropped> {
    if datagram.len() > MAX_PACKET_LEN {
        return Err(Dropped::TooLong);
    }
    let Some(header) = datagram.get(..HEADER_LEN) else {
        return Err(Dropped::TooShort);
    };
    let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if !(HEADER_LEN..=MAX_PACKET_LEN).contains(&len) || len > datagram.len() {
        return Err(Dropped::BadLength);
    }
    let packet = &datagram[..len];
    let mut authenticator = [0u8; 16];
    authenticator.copy_from_slice(&header[4..HEADER_LEN]);
    let mut message_authenticator = None;
    let mut i = HEADER_LEN;
    while i < len {
        let (Some(&typ), Some(&alen)) = (packet.get(i), packet.get(i + 1)) else {
            return Err(Dropped::BadAttribute);
        };
        let alen = usize::from(alen);
        if alen < 2 || i + alen > len {
            return Err(Dropped::BadAttribute);
        }
        if typ == MESSAGE_AUTHENTICATOR {
            if alen != MESSAGE_AUTHENTICATOR_LEN || message_authenticator.is_some() {
                return Err(Dropped::BadMessageAuthenticatorLength);
            }
            message_authenticator = Some(i);
        }
        i += alen;
    }
    Ok(Checked {
        packet,
        code: header[0],
        identifier: header[1],
        authenticator,
        message_authenticator,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(attrs: &[u8]) -> Vec<u8> {
        let len = (HEADER_LEN + attrs.len()) as u16;
        let mut p = vec![ACCESS_REQUEST, 7];
        p.extend_from_slice(&len.to_be_bytes());
        p.extend_from_slice(&[0xab; 16]);
        p.extend_from_slice(attrs);
        p
    }

    #[test]
    fn good_packet_with_padding() {
        let mut p = packet(&[1, 7, b'a', b'l', b'i', b'c', b'e']);
        p.extend_from_slice(&[0, 0, 0]);
        let c = check(&p).expect("valid");
        assert_eq!(c.packet.len(), 27);
        assert_eq!(c.identifier, 7);
        assert_eq!(c.message_authenticator, None);
    }

    #[test]
    fn lengths() {
        assert_eq!(check(&[1u8; 19]).err(), Some(Dropped::TooShort));
        assert_eq!(check(&vec![0u8; 4097]).err(), Some(Dropped::TooLong));
        let mut p = packet(&[]);
        p[3] = 19;
        assert_eq!(check(&p).err(), Some(Dropped::BadLength));
        let mut p = packet(&[1, 3, b'x']);
        p[3] = 40; // claims more than arrived
        assert_eq!(check(&p).err(), Some(Dropped::BadLength));
        assert_eq!(
            check(&packet(&[1, 9, b'x'])).err(),
            Some(Dropped::BadAttribute)
        );
        assert_eq!(check(&packet(&[1, 0])).err(), Some(Dropped::BadAttribute));
        assert_eq!(check(&packet(&[1, 1])).err(), Some(Dropped::BadAttribute));
        assert_eq!(check(&packet(&[1])).err(), Some(Dropped::BadAttribute));
    }

    #[test]
    fn message_authenticator_shape() {
        let mut ma = vec![MESSAGE_AUTHENTICATOR, 18];
        ma.extend_from_slice(&[0; 16]);
        assert_eq!(
            check(&packet(&ma)).expect("ok").message_authenticator,
            Some(20)
        );
        let twice = [ma.clone(), ma].concat();
        assert_eq!(
            check(&packet(&twice)).err(),
            Some(Dropped::BadMessageAuthenticatorLength)
        );
        assert_eq!(
            check(&packet(&[MESSAGE_AUTHENTICATOR, 4, 0, 0])).err(),
            Some(Dropped::BadMessageAuthenticatorLength)
        );
    }
}
