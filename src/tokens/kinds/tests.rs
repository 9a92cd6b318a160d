//! The registry: every kind once, names and serial prefixes unique, each kind's code length
//! and description as documented.

use super::*;
use crate::model::{Token, TokenState};
use crate::tokens::oath::Algorithm;
use std::collections::BTreeSet;

fn token(kind: TokenKind) -> Token {
    Token {
        id: 1,
        serial: "S".into(),
        user: "alice".into(),
        account_id: 1,
        kind,
        state: TokenState::Active,
        algorithm: Algorithm::Sha1,
        digits: 8,
        period: 30,
        sealed_secret: Vec::new(),
        last_counter: (5 << 8) | 3,
        drift: 2,
        label: String::new(),
        created_at: 0,
        last_used_at: None,
        public_id: Some("cbcdcecfcgch".into()),
        address: Some("alice@example.org".into()),
        opened: Default::default(),
    }
}

#[test]
fn every_kind_is_registered_once_under_a_unique_name_and_prefix() {
    let names: Vec<_> = classes().iter().map(|c| c.kind().as_str()).collect();
    let unique: BTreeSet<_> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "a name twice: {names:?}");
    // Every kind that has a constant in its file, and no other.
    let expected = [
        TokenKind::Totp,
        TokenKind::Hotp,
        TokenKind::Yubikey,
        TokenKind::YubikeyRemote,
        TokenKind::Motp,
        TokenKind::Email,
        TokenKind::Backup,
    ];
    assert_eq!(names.len(), expected.len(), "{names:?}");
    for k in expected {
        assert_eq!(
            classes().iter().filter(|c| c.kind() == k).count(),
            1,
            "{k} not registered exactly once"
        );
        assert_eq!(TokenKind::parse(k.as_str()), Some(k));
        assert_eq!(class(k).kind(), k);
    }
    assert_eq!(TokenKind::parse("sms"), None);
    let prefixes: Vec<_> = classes().iter().map(|c| c.serial_prefix()).collect();
    let unique: BTreeSet<_> = prefixes.iter().collect();
    assert_eq!(unique.len(), prefixes.len(), "{prefixes:?}");
    // A serial tells its kind: no prefix is another's start followed by hex digits.
    for a in &prefixes {
        for b in &prefixes {
            if a != b && b.starts_with(a) {
                assert!(
                    !b[a.len()..].bytes().all(|c| c.is_ascii_hexdigit()),
                    "{a} and {b}"
                );
            }
        }
    }
}

#[test]
fn names_are_what_the_database_and_the_cli_use() {
    let names: Vec<_> = classes().iter().map(|c| c.kind().as_str()).collect();
    assert_eq!(
        names,
        [
            "totp",
            "hotp",
            "yubikey",
            "yubikey-remote",
            "motp",
            "email",
            "backup"
        ]
    );
    for c in classes() {
        let n = c.kind().as_str();
        assert!(
            n.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
            "{n}: a subcommand name"
        );
        assert!(!c.about().is_empty());
    }
}

#[test]
fn code_lengths() {
    let t = |k| class(k).code_len(&token(k));
    // OATH and e-mail tokens: their own digits (8 here); the rest fixed by the kind.
    assert_eq!(t(TokenKind::Totp), 8);
    assert_eq!(t(TokenKind::Hotp), 8);
    assert_eq!(t(TokenKind::Email), 8);
    assert_eq!(t(TokenKind::Yubikey), 44);
    assert_eq!(t(TokenKind::YubikeyRemote), 44);
    assert_eq!(t(TokenKind::Motp), 6);
    assert_eq!(t(TokenKind::Backup), 8);
    for c in classes() {
        let tok = token(c.kind());
        let n = c.code_len(&tok);
        let good = match c.kind() {
            k if k == TokenKind::Yubikey || k == TokenKind::YubikeyRemote => {
                "cbcdcecfcgchthrvueejggieugrhkrjugcjghgngucgd".to_string()
            }
            k if k == TokenKind::Motp => "05aae5".to_string(),
            _ => "1".repeat(n),
        };
        assert_eq!(good.len(), n, "{}", c.kind());
        assert_eq!(c.check_shape(&tok, &good), Ok(()), "{}", c.kind());
        let short = &good[1..];
        let why = c.check_shape(&tok, short).expect_err("short code");
        assert!(why.contains(&n.to_string()), "{}: {why}", c.kind());
    }
}

#[test]
fn descriptions() {
    let d = |k| class(k).describe(&token(k));
    assert_eq!(
        d(TokenKind::Totp),
        [
            ("algorithm", "SHA1".to_string()),
            ("digits", "8".into()),
            ("period", "30 s".into()),
            ("clock skew", "60 s".into())
        ]
    );
    assert_eq!(
        d(TokenKind::Hotp),
        [
            ("algorithm", "SHA1".to_string()),
            ("digits", "8".into()),
            ("counter", "1283".into())
        ]
    );
    assert_eq!(
        d(TokenKind::Yubikey),
        [
            ("public id", "cbcdcecfcgch".to_string()),
            ("counter", "use 5, session 3".into())
        ]
    );
    assert_eq!(
        d(TokenKind::YubikeyRemote),
        [
            ("public id", "cbcdcecfcgch".to_string()),
            ("checked by", "the validation server ([yubico])".into())
        ]
    );
    assert_eq!(
        d(TokenKind::Motp),
        [("step", "10 s".to_string()), ("clock skew", "20 s".into())]
    );
    assert_eq!(
        d(TokenKind::Email),
        [
            ("address", "alice@example.org".to_string()),
            ("digits", "8".into())
        ]
    );
    assert_eq!(
        d(TokenKind::Backup),
        [("codes", "see otpd backup-codes status alice".to_string())]
    );
    assert_eq!(
        class(TokenKind::Totp).resynced(&token(TokenKind::Totp)),
        ": device clock offset 60 s"
    );
    assert_eq!(
        class(TokenKind::Hotp).resynced(&token(TokenKind::Hotp)),
        " at counter 1283"
    );
    // The address is masked in lists, whole only where one token is asked for.
    let e = token(TokenKind::Email);
    assert_eq!(
        class(TokenKind::Email).json_fields(&e, false),
        [("address", serde_json::json!("a***@example.org"))]
    );
    assert_eq!(
        class(TokenKind::Email).json_fields(&e, true),
        [("address", serde_json::json!("alice@example.org"))]
    );
}

#[test]
fn only_backup_codes_are_enrolled_elsewhere() {
    for c in classes() {
        assert_eq!(
            c.options().is_none(),
            c.kind() == TokenKind::Backup,
            "{}",
            c.kind()
        );
        for o in c.options().unwrap_or(&[]) {
            assert!(
                !["label", "active", "json", "qr", "no-qr", "type"].contains(&o.name),
                "{}: --{} is common to all kinds",
                c.kind(),
                o.name
            );
        }
    }
}

/// A validation server that answers as told and records what it was asked.
struct Recorder {
    accept: bool,
    asked: std::sync::Mutex<Vec<String>>,
}

impl crate::tokens::ports::Validator for Recorder {
    fn verify(
        &self,
        _cfg: &crate::config::YubicoConfig,
        otp: &str,
    ) -> Result<(), crate::tokens::remote::RemoteError> {
        self.asked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(otp.to_string());
        if self.accept {
            Ok(())
        } else {
            Err(crate::tokens::remote::RemoteError::Refused {
                url: "test".into(),
                status: "REPLAYED_OTP",
                msg: "replayed".into(),
            })
        }
    }
}

#[test]
fn the_validation_server_is_a_port() {
    use crate::config::Config;
    use crate::crypto::{Keys, MasterKey};
    use crate::model::NewToken;
    use crate::store::{AdminStore, CommitMode, SqliteStore};
    use crate::tokens::{Claim, Matcher, Ports, Redeemed};
    use std::sync::Arc;

    let cfg = Config::default().finish().expect("config");
    let store = SqliteStore::open_in_memory().expect("store");
    let keys = Keys::new(&MasterKey::from_bytes([3u8; 32]));
    let account = store
        .create_account("alice", "everywhere", None, 1)
        .expect("account");
    store
        .insert_token(&NewToken {
            serial: "YKR1".into(),
            account_id: account,
            kind: TokenKind::YubikeyRemote,
            state: TokenState::Active,
            algorithm: Algorithm::Sha1,
            digits: 44,
            period: 0,
            sealed_secret: keys.seal(b"YKR1", &[]).expect("seal"),
            label: String::new(),
            created_at: 1,
            public_id: Some("cbcdcecfcgch".into()),
            address: None,
        })
        .expect("token");
    let t = store.token("YKR1").expect("read").expect("token");
    let otp = "cbcdcecfcgchthrvueejggieugrhkrjugcjghgngucgd";
    for accept in [true, false] {
        let rec = Arc::new(Recorder {
            accept,
            asked: Default::default(),
        });
        let ports = Ports {
            validator: rec.clone(),
            ..Ports::real()
        };
        let m = Matcher::new(&cfg, &store, &keys, &ports);
        // Another key's OTP never leaves: the server would call it good.
        let foreign = format!("cbcdcecfcgcj{}", &otp[12..]);
        assert_eq!(
            m.check(&t, &foreign, 1),
            Err(Some("OTP is for another YubiKey (public id)".into()))
        );
        let got = m.check(&t, &otp.to_uppercase(), 1);
        assert_eq!(
            *rec.asked.lock().unwrap_or_else(|p| p.into_inner()),
            [otp.to_string()],
            "asked once, in lower case"
        );
        if accept {
            assert_eq!(got, Ok(Claim::Remote));
            assert_eq!(
                m.redeem(&t, &Claim::Remote, 2, false, CommitMode::Wait)
                    .expect("redeem"),
                Redeemed::Won("ok: validation server accepted the OTP".into())
            );
        } else {
            let why = got.expect_err("refused").unwrap_or_default();
            assert!(why.contains("REPLAYED_OTP"), "{why}");
        }
    }
}

/// A row's secret is opened once and kept with the row: the account cache hands the same
/// rows to every login. A row read again (after any change, the cache re-reads it) starts
/// without it, and the kept secret is never printed.
#[test]
fn a_secret_is_opened_once_per_row_and_never_printed() {
    use crate::config::Config;
    use crate::crypto::{Keys, MasterKey};
    use crate::store::SqliteStore;
    use crate::tokens::{oath, Matcher, Ports};

    let cfg = Config::default().finish().expect("config");
    let store = SqliteStore::open_in_memory().expect("store");
    let keys = Keys::new(&MasterKey::from_bytes([4u8; 32]));
    let secret = b"12345678901234567890";
    let mut t = token(TokenKind::Hotp);
    t.digits = 6;
    t.last_counter = -1;
    t.sealed_secret = keys.seal(b"S", secret).expect("seal");
    let ports = Ports::real();
    let m = Matcher::new(&cfg, &store, &keys, &ports);
    let code = |c: u64| oath::hotp(Algorithm::Sha1, secret, c, 6);
    assert!(t.opened.get().is_none());
    assert!(
        m.check(&t, &code(0), 1).is_ok(),
        "RFC 4226 secret, counter 0"
    );
    assert_eq!(t.opened.get(), Some(&secret[..]), "kept with the row");
    assert!(!format!("{t:?}").contains("1234567890"), "{t:?}");
    // Kept: the sealed bytes are not looked at again.
    let mut kept = t.clone();
    kept.sealed_secret = b"not a sealed secret".to_vec();
    assert!(m.check(&kept, &code(1), 1).is_ok());
    // A row read again comes without it and opens what it holds.
    let mut fresh = kept.clone();
    fresh.opened = Default::default();
    assert!(
        m.check(&fresh, &code(1), 1).is_err(),
        "its sealed bytes open to nothing"
    );
}
