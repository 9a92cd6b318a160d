//! Attributes read from requests and written into answers, through the `radius` crate's
//! codec and dictionaries (RFC 2865, 2869, 3162). What the crate leaves out is added here:
//! Proxy-State copied back, Message-Authenticator as the first attribute of every answer.

use super::wire::{Checked, Dropped};
use crate::engine::messages;
use ::radius::core::avp::AVP;
use ::radius::core::code::Code;
use ::radius::core::packet::Packet;
use ::radius::core::{rfc2865, rfc2869};
use zeroize::Zeroizing;

/// Microsoft's vendor id; MS-CHAP-Response (1), MS-CHAP-Challenge (11) and
/// MS-CHAP2-Response (25) mean an MS-CHAP login (RFC 2548).
const VENDOR_MICROSOFT: u32 = 311;
const MS_CHAP_TYPES: [u8; 3] = [1, 11, 25];
/// Longest source address (Calling-Station-Id) passed on to the audit.
const MAX_RHOST_LEN: usize = 64;
/// What a client sees when it does not send PAP.
pub const PAP_REQUIRED: &str = "PAP required";

/// What every answer needs from its request.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    pub identifier: u8,
    pub authenticator: [u8; 16],
    /// Copied back in order (RFC 2865 §5.33); FreeRADIUS proxies match answers by it.
    pub proxy_state: Vec<Vec<u8>>,
}

/// A PAP login, ready for the engine.
pub struct Login {
    pub user: String,
    pub password: Zeroizing<String>,
    pub state: Option<String>,
    pub rhost: Option<String>,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("user", &self.user)
            .field("state", &self.state.is_some())
            .field("rhost", &self.rhost)
            .finish_non_exhaustive()
    }
}

/// A well-formed Access-Request that otpd cannot check: answered with Access-Reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unusable {
    /// CHAP, MS-CHAP or EAP: the daemon needs the typed password, so PAP.
    NotPap(&'static str),
    NoPassword,
    NoUser,
    NotUtf8(&'static str),
}

impl Unusable {
    pub fn message(self) -> &'static str {
        match self {
            Unusable::NotPap(_) | Unusable::NoPassword => PAP_REQUIRED,
            Unusable::NoUser | Unusable::NotUtf8(_) => messages::REJECT,
        }
    }

    pub fn reason(self) -> String {
        match self {
            Unusable::NotPap(what) => format!("{what} login; otpd needs PAP (User-Password)"),
            Unusable::NoPassword => "no User-Password; otpd needs PAP".into(),
            Unusable::NoUser => "no User-Name".into(),
            Unusable::NotUtf8(what) => format!("{what} is not UTF-8"),
        }
    }
}

fn decode(checked: &Checked<'_>, secret: &[u8]) -> Result<Packet, Dropped> {
    Packet::decode(checked.packet, secret).map_err(|_| Dropped::Codec)
}

fn info(checked: &Checked<'_>, p: &Packet) -> RequestInfo {
    RequestInfo {
        identifier: checked.identifier,
        authenticator: checked.authenticator,
        proxy_state: p
            .lookup_all(rfc2865::PROXY_STATE_TYPE)
            .into_iter()
            .map(AVP::encode_bytes)
            .collect(),
    }
}

/// A Status-Server request: only what the answer needs.
pub fn read_status_server(checked: &Checked<'_>, secret: &[u8]) -> Result<RequestInfo, Dropped> {
    let p = decode(checked, secret)?;
    Ok(info(checked, &p))
}

/// An Access-Request: the answer's needs, and the login or why there is none.
pub fn read_access_request(
    checked: &Checked<'_>,
    secret: &[u8],
    source_attribute: u8,
) -> Result<(RequestInfo, Result<Login, Unusable>), Dropped> {
    let p = decode(checked, secret)?;
    let info = info(checked, &p);
    let login = read_login(&p, source_attribute)?;
    Ok((info, login))
}

fn not_pap(p: &Packet) -> Option<&'static str> {
    if p.lookup(rfc2869::EAP_MESSAGE_TYPE).is_some() {
        return Some("EAP");
    }
    if p.lookup(rfc2865::CHAP_PASSWORD_TYPE).is_some() {
        return Some("CHAP");
    }
    let ms_chap = p
        .lookup_all(rfc2865::VENDOR_SPECIFIC_TYPE)
        .into_iter()
        .map(AVP::encode_bytes)
        .any(|v| {
            v.len() >= 6
                && u32::from_be_bytes([v[0], v[1], v[2], v[3]]) == VENDOR_MICROSOFT
                && MS_CHAP_TYPES.contains(&v[4])
        });
    ms_chap.then_some("MS-CHAP")
}

fn read_login(p: &Packet, source_attribute: u8) -> Result<Result<Login, Unusable>, Dropped> {
    if let Some(what) = not_pap(p) {
        return Ok(Err(Unusable::NotPap(what)));
    }
    let Some(raw) = p.lookup(rfc2865::USER_PASSWORD_TYPE) else {
        return Ok(Err(Unusable::NoPassword));
    };
    // RFC 2865 §5.2: 16 to 128 bytes, a whole number of 16-byte blocks.
    let n = raw.encode_bytes().len();
    if !(16..=128).contains(&n) || n % 16 != 0 {
        return Err(Dropped::BadUserPassword);
    }
    let password = match rfc2865::lookup_user_password(p) {
        Some(Ok(pw)) => Zeroizing::new(pw),
        _ => return Err(Dropped::BadUserPassword),
    };
    let Ok(password) = std::str::from_utf8(&password) else {
        return Ok(Err(Unusable::NotUtf8("User-Password")));
    };
    let password = Zeroizing::new(password.to_string());
    let user = match rfc2865::lookup_user_name(p) {
        None => return Ok(Err(Unusable::NoUser)),
        Some(Err(_)) => return Ok(Err(Unusable::NotUtf8("User-Name"))),
        Some(Ok(u)) => u,
    };
    let state = rfc2865::lookup_state(p).map(|s| {
        // A State that is not UTF-8 was not issued by otpd (its States are hex); keep it
        // recognisably foreign so it finds nothing.
        String::from_utf8(s)
            .unwrap_or_else(|e| format!("invalid:{}", data_encoding::HEXLOWER.encode(e.as_bytes())))
    });
    Ok(Ok(Login {
        user,
        password,
        state,
        rhost: rhost(p, source_attribute),
    }))
}

/// Where the user is: the client's source attribute, Calling-Station-Id unless configured
/// otherwise (a VPN client's address, a Wi-Fi station's MAC, any station id, compared as
/// given). Never the NAS's own address: guesses through one NAS would then block every user
/// behind it. Without one, the login has no source and only the account's own limits apply.
/// Bounded and printable, because it goes into logs.
fn rhost(p: &Packet, attribute: u8) -> Option<String> {
    if attribute == 0 {
        return None;
    }
    let raw = p.lookup(attribute)?.encode_bytes();
    let text = match (attribute, raw.len()) {
        (rfc2865::FRAMED_IP_ADDRESS_TYPE, 4) => {
            std::net::Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]).to_string()
        }
        _ => match std::str::from_utf8(&raw) {
            Ok(s) => s.to_string(),
            Err(_) => data_encoding::HEXLOWER.encode(&raw),
        },
    };
    let clean: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_RHOST_LEN)
        .collect();
    let clean = clean.trim();
    (!clean.is_empty()).then(|| clean.to_string())
}

/// Longest prefix of `s` that fits in one attribute, cut at a character boundary.
fn fit_attribute(s: &str) -> &str {
    let mut end = s.len().min(253);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Encodes and signs an answer: Message-Authenticator first (BlastRADIUS), then
/// Reply-Message, State and the request's Proxy-State attributes.
pub fn encode_answer(
    code: Code,
    req: &RequestInfo,
    secret: &super::message_authenticator::Secret,
    reply_message: Option<&str>,
    state: Option<&[u8]>,
) -> Result<Vec<u8>, Dropped> {
    let mut p = Packet::new_with_identifier(code, secret.as_slice(), req.identifier);
    p.add(AVP::from_bytes(
        rfc2869::MESSAGE_AUTHENTICATOR_TYPE,
        &[0u8; 16],
    ));
    if let Some(m) = reply_message {
        rfc2865::add_reply_message(&mut p, fit_attribute(m));
    }
    if let Some(s) = state {
        rfc2865::add_state(&mut p, s);
    }
    for ps in &req.proxy_state {
        p.add(AVP::from_bytes(rfc2865::PROXY_STATE_TYPE, ps));
    }
    let mut bytes = p.encode().map_err(|_| Dropped::Encode)?;
    if !super::message_authenticator::sign_response(&mut bytes, &req.authenticator, secret) {
        return Err(Dropped::Encode);
    }
    Ok(bytes)
}
