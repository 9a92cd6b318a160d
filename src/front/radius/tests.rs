//! The pure path, with packets built by hand after RFC 2865 and RFC 3579.

use super::*;
use crate::engine::Decision;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};

const SECRET: &[u8] = b"sharedsecret123";
const AUTH: [u8; 16] = *b"request-auth-16b";

fn client(require_ma: bool) -> Client {
    Client::new(
        "nas",
        "127.0.0.1/32".parse().expect("net"),
        SECRET,
        "vpn",
        require_ma,
    )
}

/// RFC 2865 §5.2 written out: pad to 16, XOR with MD5(secret | previous block).
fn pap(password: &[u8], secret: &[u8], auth: &[u8; 16]) -> Vec<u8> {
    let mut p = password.to_vec();
    let padded = p.len().div_ceil(16).max(1) * 16;
    p.resize(padded, 0);
    let mut prev = auth.to_vec();
    let mut out = Vec::new();
    for block in p.chunks(16) {
        let b = Md5::digest([secret, &prev[..]].concat());
        let c: Vec<u8> = block.iter().zip(b.iter()).map(|(x, y)| x ^ y).collect();
        out.extend_from_slice(&c);
        prev = c;
    }
    out
}

fn attr(t: u8, v: &[u8]) -> Vec<u8> {
    let mut a = vec![t, (v.len() + 2) as u8];
    a.extend_from_slice(v);
    a
}

/// A request with the given attributes; with `ma`, a correct Message-Authenticator first.
fn request(code: u8, id: u8, attrs: &[Vec<u8>], ma: bool) -> Vec<u8> {
    let mut body = Vec::new();
    if ma {
        body.extend(attr(80, &[0; 16]));
    }
    for a in attrs {
        body.extend_from_slice(a);
    }
    let mut p = vec![code, id];
    p.extend_from_slice(&((20 + body.len()) as u16).to_be_bytes());
    p.extend_from_slice(&AUTH);
    p.extend(body);
    if ma {
        let mut mac = Hmac::<Md5>::new_from_slice(SECRET).expect("key");
        mac.update(&p);
        let v = mac.finalize().into_bytes();
        p[22..38].copy_from_slice(&v);
    }
    p
}

fn login(user: &str, password: &str, more: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut a = vec![
        attr(1, user.as_bytes()),
        attr(2, &pap(password.as_bytes(), SECRET, &AUTH)),
    ];
    a.extend_from_slice(more);
    a
}

/// Checks an answer the way a NAS does and returns its attributes.
fn verified(answer: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let c = wire::check(answer).expect("answer is well-formed");
    assert_eq!(
        c.message_authenticator,
        Some(20),
        "Message-Authenticator first"
    );
    let mut z = answer.to_vec();
    z[4..20].copy_from_slice(&AUTH);
    let ra = Md5::digest([&z[..], SECRET].concat());
    assert_eq!(&answer[4..20], ra.as_slice(), "Response Authenticator");
    z[22..38].fill(0);
    let mut mac = Hmac::<Md5>::new_from_slice(SECRET).expect("key");
    mac.update(&z);
    assert_eq!(
        &answer[22..38],
        mac.finalize().into_bytes().as_slice(),
        "Message-Authenticator"
    );
    let mut attrs = Vec::new();
    let mut i = 20;
    while i < answer.len() {
        let l = answer[i + 1] as usize;
        attrs.push((answer[i], answer[i + 2..i + l].to_vec()));
        i += l;
    }
    attrs
}

fn find(attrs: &[(u8, Vec<u8>)], t: u8) -> Vec<Vec<u8>> {
    attrs
        .iter()
        .filter(|(k, _)| *k == t)
        .map(|(_, v)| v.clone())
        .collect()
}

#[test]
fn pap_login_is_decoded() {
    let pw = "1234".to_string() + &"9".repeat(40);
    let p = request(
        1,
        9,
        &login("alice", &pw, &[attr(31, b"192.0.2.7"), attr(24, b"abcd")]),
        true,
    );
    let Ok(Step::Check(p)) = handle_datagram_bytes(&p, &client(true)) else {
        panic!("expected a login");
    };
    assert_eq!(p.login.user, "alice");
    assert_eq!(p.login.password.as_str(), pw);
    assert_eq!(p.login.rhost.as_deref(), Some("192.0.2.7"));
    assert_eq!(p.login.state.as_deref(), Some("abcd"));
    assert_eq!(p.info.identifier, 9);
}

#[test]
fn the_nas_address_is_never_the_users_source() {
    // NAS-IP-Address alone (issue 14): no source, so guesses through this NAS cannot block
    // the other users behind it.
    let p = request(1, 1, &login("a", "b", &[attr(4, &[10, 0, 0, 1])]), true);
    let Ok(Step::Check(p)) = handle_datagram_bytes(&p, &client(true)) else {
        panic!("expected a login");
    };
    assert_eq!(p.login.rhost, None);
}

#[test]
fn the_source_is_the_attribute_the_client_names() {
    // A MAC address as Calling-Station-Id is a source as given.
    let attrs = [attr(31, b"00-11-22-33-44-55"), attr(8, &[198, 51, 100, 9])];
    let p = request(1, 1, &login("a", "b", &attrs), true);
    let Ok(Step::Check(d)) = handle_datagram_bytes(&p, &client(true)) else {
        panic!("expected a login");
    };
    assert_eq!(d.login.rhost.as_deref(), Some("00-11-22-33-44-55"));
    let mut framed = client(true);
    framed.source_attribute = 8;
    let Ok(Step::Check(d)) = handle_datagram_bytes(&p, &framed) else {
        panic!("expected a login");
    };
    assert_eq!(d.login.rhost.as_deref(), Some("198.51.100.9"));
    framed.source_attribute = 0;
    let Ok(Step::Check(d)) = handle_datagram_bytes(&p, &framed) else {
        panic!("expected a login");
    };
    assert_eq!(d.login.rhost, None);
}

#[test]
fn message_authenticator_rules() {
    let no_ma = request(1, 1, &login("a", "b", &[]), false);
    assert_eq!(
        handle_datagram_bytes(&no_ma, &client(true)).err(),
        Some(Dropped::NoMessageAuthenticator)
    );
    assert!(matches!(
        handle_datagram_bytes(&no_ma, &client(false)),
        Ok(Step::Check(_))
    ));
    let mut bad = request(1, 1, &login("a", "b", &[]), true);
    bad[30] ^= 1;
    assert_eq!(
        handle_datagram_bytes(&bad, &client(false)).err(),
        Some(Dropped::BadMessageAuthenticator),
        "verified whenever present"
    );
}

#[test]
fn status_server_needs_and_gets_message_authenticator() {
    let s = request(12, 3, &[], false);
    assert_eq!(
        handle_datagram_bytes(&s, &client(false)).err(),
        Some(Dropped::NoMessageAuthenticator)
    );
    let s = request(12, 3, &[attr(33, b"proxy-1")], true);
    let Ok(Step::Status(a)) = handle_datagram_bytes(&s, &client(true)) else {
        panic!("expected a status answer");
    };
    assert_eq!(a[0], 2, "Access-Accept");
    assert_eq!(a[1], 3);
    let attrs = verified(&a);
    assert_eq!(find(&attrs, 33), vec![b"proxy-1".to_vec()]);
}

#[test]
fn chap_eap_mschap_get_pap_required() {
    let mschap = {
        let mut v = 311u32.to_be_bytes().to_vec();
        v.extend_from_slice(&[11, 18]);
        v.extend_from_slice(&[0; 16]);
        attr(26, &v)
    };
    for (what, a) in [
        ("CHAP", attr(3, &[0; 17])),
        ("EAP", attr(79, &[2, 0, 0, 5, 1])),
        ("MS-CHAP", mschap),
    ] {
        let p = request(1, 1, &[attr(1, b"alice"), a], true);
        let Ok(Step::Refused { answer, why }) = handle_datagram_bytes(&p, &client(true)) else {
            panic!("{what}: expected a refusal");
        };
        assert_eq!(why, Unusable::NotPap(what));
        assert_eq!(answer[0], 3, "Access-Reject");
        let attrs = verified(&answer);
        assert_eq!(find(&attrs, 18), vec![b"PAP required".to_vec()]);
    }
}

#[test]
fn malformed_and_foreign_codes_are_dropped() {
    let good = request(1, 1, &login("a", "b", &[]), true);
    let mut truncated = good.clone();
    truncated.truncate(good.len() - 1);
    assert_eq!(
        handle_datagram_bytes(&truncated, &client(true)).err(),
        Some(Dropped::BadLength)
    );
    let mut acct = good.clone();
    acct[0] = 4;
    assert_eq!(
        handle_datagram_bytes(&acct, &client(true)).err(),
        Some(Dropped::UnknownCode(4))
    );
    // User-Password of 17 bytes: not a whole number of blocks.
    let odd = request(1, 1, &[attr(1, b"a"), attr(2, &[7; 17])], true);
    assert_eq!(
        handle_datagram_bytes(&odd, &client(true)).err(),
        Some(Dropped::BadUserPassword)
    );
}

#[test]
fn answers_carry_proxy_state_and_state() {
    let p = request(
        1,
        77,
        &login("a", "1234", &[attr(33, b"ps-1"), attr(33, b"ps-2")]),
        true,
    );
    let Ok(Step::Check(p)) = handle_datagram_bytes(&p, &client(true)) else {
        panic!("expected a login");
    };
    let d = Decision::challenge("a".into(), "Enter your code", "00ff".into(), "test");
    let a = answer(&p.info, &d, &client(true)).expect("answer");
    assert_eq!(a[0], 11, "Access-Challenge");
    assert_eq!(a[1], 77);
    let attrs = verified(&a);
    assert_eq!(find(&attrs, 24), vec![b"00ff".to_vec()]);
    assert_eq!(find(&attrs, 18), vec![b"Enter your code".to_vec()]);
    assert_eq!(find(&attrs, 33), vec![b"ps-1".to_vec(), b"ps-2".to_vec()]);

    let d = Decision::defer("a".into(), "level off");
    let a = answer(&p.info, &d, &client(true)).expect("answer");
    assert_eq!(a[0], 3, "Defer is an Access-Reject on RADIUS");
    let attrs = verified(&a);
    assert_eq!(find(&attrs, 18), vec![b"Login failed".to_vec()]);
}
