//! The bodies of the fuzz targets, one function each. The targets in `fuzz_targets/` call
//! them under libFuzzer; `tests/fuzz_regressions.rs` includes this file and replays the seed
//! corpus and every saved crash through the very same functions, so what the fuzzer checks
//! and what `cargo test` checks cannot drift apart.
//!
//! Depends on `otpd` only (no libFuzzer), so it builds in both places.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use otpd::admin::{Admin, TokenOptions};
use otpd::config::Config;
use otpd::crypto::{Keys, MasterKey};
use otpd::engine::{CheckRequest, Decision, Engine};
use otpd::front::protocol::{self, Request};
use otpd::front::radius::{answer, handle_datagram_bytes, wire, Client, Step};
use otpd::model::{NewToken, TokenKind, TokenState};
use otpd::store::{AdminStore, SqliteStore};
use otpd::tokens::Options;
use otpd::tokens::{self, oath::Algorithm, yubico};
use std::sync::{Arc, OnceLock};

/// The secret the radius_packet seed corpus was made with (fuzz/corpus/radius_packet).
pub const RADIUS_SECRET: &[u8] = b"fuzz-secret-123";

/// The YubiKey of the engine_check account: private id, AES key, public id. The seed
/// `fuzz/corpus/engine_check/yubikey` is a valid OTP of it, made with Python's `yubiotp`.
pub const YK_PRIVATE_ID: &str = "010203040506";
pub const YK_AES_KEY: &str = "000102030405060708090a0b0c0d0e0f";
pub const YK_PUBLIC_ID: &str = "cbcdcecfcgch";
/// A second key, checked by a validation server that is not configured here: its code is
/// split and its public id compared, and the server call ends at once ("not configured"),
/// so the fuzzer never touches the network.
pub const YK_REMOTE_PUBLIC_ID: &str = "vvcbcdcecfcg";

/// The engine the engine_check target drives: account `alice` (PIN 1234, level everywhere)
/// with one active token of every kind, so every kind's PIN/code split is reached: TOTP (6
/// digits), HOTP (8 digits), YubiKey and YubiKey validated remotely (44 modhex), mOTP (6 hex),
/// backup codes (8 digits), e-mailed codes.
pub fn engine() -> &'static Engine {
    &world().0
}

/// The store under [`engine`], for what the engine does not show (its tokens, the failure
/// count it keeps clearing).
pub fn store() -> &'static dyn AdminStore {
    world().1.as_ref()
}

fn world() -> &'static (Engine, Arc<dyn AdminStore>) {
    static E: OnceLock<(Engine, Arc<dyn AdminStore>)> = OnceLock::new();
    E.get_or_init(|| {
        // Lockout off: with it, the gate refuses alice unseen after three wrong inputs, and
        // every later input would stop there instead of reaching the token code.
        let mut cfg = Config::default();
        cfg.lockout.free_failures = u32::MAX;
        cfg.lockout.max_failures = 0;
        cfg.lockout.per_source_max_failures = 0;
        cfg.lockout.source_max_failures = 0;
        let cfg = Arc::new(cfg.finish().expect("config"));
        let store: Arc<dyn AdminStore> = Arc::new(SqliteStore::open_in_memory().expect("store"));
        let keys = Arc::new(Keys::new(&MasterKey::from_bytes([1u8; 32])));
        let admin = Admin::new(cfg.clone(), store.clone(), keys.clone());
        let acct = admin.add_user("alice", Some("1234"), None).expect("user");
        for (kind, digits) in [(TokenKind::Totp, 6), (TokenKind::Hotp, 8)] {
            admin
                .add_token(
                    "alice",
                    TokenOptions {
                        kind,
                        secret_b32: None,
                        digits,
                        algorithm: Algorithm::Sha1,
                        period: 30,
                        label: String::new(),
                        active: true,
                    },
                )
                .expect("token");
        }
        let mut yk = Options::default();
        yk.set("public-id", YK_PUBLIC_ID)
            .set("private-id", YK_PRIVATE_ID)
            .set("aes-key", YK_AES_KEY);
        admin
            .enrol("alice", TokenKind::Yubikey, &yk, "", true)
            .expect("yubikey");
        let mut motp = Options::default();
        motp.set("secret", "0123456789abcdef").set("mpin", "5555");
        admin
            .enrol("alice", TokenKind::Motp, &motp, "", true)
            .expect("motp");
        admin.generate_backup_codes("alice").expect("backup codes");
        // Active at once, so nothing is sent; [email] is not configured, so a PIN alone
        // never tries to send a code either: the fuzzer stays off the network.
        admin
            .add_email("alice", "alice@example.org", String::new(), true)
            .expect("e-mail token");
        // Admin refuses a remote YubiKey without a validation server; the store does not.
        let serial = "UBRMFUZZ0001";
        store
            .insert_token(&NewToken {
                serial: serial.into(),
                account_id: acct.id,
                kind: TokenKind::YubikeyRemote,
                state: TokenState::Active,
                algorithm: Algorithm::Sha1,
                digits: yubico::OTP_LEN as u32,
                period: 0,
                sealed_secret: keys.seal(serial.as_bytes(), &[]).expect("seal"),
                label: String::new(),
                created_at: 0,
                public_id: Some(YK_REMOTE_PUBLIC_ID.into()),
                address: None,
            })
            .expect("remote yubikey");
        admin
            .set_user("alice", None, Some("everywhere"))
            .expect("level");
        let kinds: Vec<TokenKind> = store
            .tokens(Some("alice"))
            .expect("tokens")
            .iter()
            .filter(|t| t.state == TokenState::Active)
            .map(|t| t.kind)
            .collect();
        for k in otpd::tokens::classes().iter().map(|c| c.kind()) {
            assert!(kinds.contains(&k), "engine_check has no active {k:?} token");
        }
        (Engine::new(cfg, store.clone(), keys), store)
    })
}

/// engine_check: user, password, service and (optional) rhost separated by NUL bytes, through
/// the engine's whole request path, then the same user through the account phase. Also the
/// split itself for every token of the account, which must cut at a character boundary and
/// leave exactly the kind's code length.
pub fn engine_check(data: &[u8]) {
    let mut parts = data.splitn(4, |b| *b == 0);
    let user = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let password = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let service = String::from_utf8_lossy(parts.next().unwrap_or(b"vpn")).into_owned();
    let rhost = parts
        .next()
        .map(|r| String::from_utf8_lossy(r).into_owned());
    let e = engine();
    if let Ok(toks) = store().tokens(Some("alice")) {
        for t in &toks {
            if let Some((pin, code)) = tokens::split(&password, t) {
                assert_eq!(code.len(), tokens::code_len(t), "{:?}", t.kind);
                assert_eq!(pin.len() + code.len(), password.len());
            }
        }
    }
    let d = e.check(&CheckRequest {
        user: user.clone(),
        password: password.into(),
        service: service.clone(),
        rhost: rhost.clone(),
        ..CheckRequest::default()
    });
    // Whatever the input, the answer is one of the fixed messages: nothing of the input
    // (a password, a code) is echoed to the user.
    assert!(
        [
            otpd::engine::messages::ACCEPT,
            otpd::engine::messages::REJECT,
            otpd::engine::messages::DEFER,
            otpd::engine::messages::DENY,
            otpd::engine::CODE_PROMPT,
        ]
        .contains(&d.message.as_str()),
        "unexpected message {:?}",
        d.message
    );
    let _ = e.account_check(&user, &service, rhost.as_deref());
    // Keep the account usable so the fuzzer keeps reaching the code checks.
    if let Ok(Some(a)) = store().account("alice") {
        let _ = store().clear_failures(a.id);
    }
}

/// radius_packet: any datagram as a RADIUS request: our length checks, the
/// Message-Authenticator check, the `radius` crate's decoding, PAP decoding, and every kind of
/// answer built from what got through. The client is tried without and with a required
/// Message-Authenticator, so most inputs reach the codec. Every answer must itself be a
/// well-formed packet.
pub fn radius_packet(data: &[u8]) {
    for require in [false, true] {
        let client = Client::new(
            "fuzz",
            "127.0.0.1/32".parse().expect("net"),
            RADIUS_SECRET,
            "vpn",
            require,
        );
        match handle_datagram_bytes(data, &client) {
            Ok(Step::Check(p)) => {
                let user = p.login.user.clone();
                for d in [
                    Decision::accept(user.clone(), "SERIAL".into()),
                    Decision::reject(user.clone(), "fuzz"),
                    Decision::defer(user.clone(), "fuzz"),
                    Decision::deny(user.clone(), "fuzz"),
                    Decision::challenge(
                        user.clone(),
                        "Enter your one-time code",
                        "ab".repeat(16),
                        "fuzz",
                    ),
                ] {
                    // Too many Proxy-State attributes may not fit: an error, never a panic.
                    if let Ok(a) = answer(&p.info, &d, &client) {
                        assert!(wire::check(&a).is_ok(), "answer is malformed");
                    }
                }
            }
            Ok(Step::Status(a)) | Ok(Step::Refused { answer: a, .. }) => {
                assert!(wire::check(&a).is_ok(), "answer is malformed");
            }
            Err(_) => {}
        }
    }
}

/// protocol_parse: any bytes as one request line of the socket protocol. Either a request or
/// an error with a documented code; every answer built from it is one JSON line.
pub fn protocol_parse(data: &[u8]) {
    let one_line = |out: &[u8]| {
        assert_eq!(out.last(), Some(&b'\n'), "answer ends with a newline");
        assert!(
            !out[..out.len() - 1].contains(&b'\n'),
            "answer is a single line"
        );
        serde_json::from_slice::<serde_json::Value>(out).expect("answer is JSON");
    };
    match protocol::parse(data) {
        Ok(Request::Check {
            user,
            password,
            service,
            rhost,
            client,
            state,
            // Any u64 is a valid deadline; a wrong type is a bad_field error below.
            deadline_ms: _,
        }) => {
            // Bounds the parser promises (docs/protocol.md); user and password are the
            // engine's to bound.
            assert!(service.len() <= 256);
            assert!(rhost.as_ref().is_none_or(|r| r.len() <= 256));
            assert!(client.as_ref().is_none_or(|c| c.len() <= 256));
            assert!(state.as_ref().is_none_or(|s| s.len() <= 1024));
            let d = Decision::reject(user, "fuzz");
            let out = protocol::check_answer(&d);
            one_line(&out);
            // The password never comes back on the wire.
            if password.len() >= 8 {
                assert!(!String::from_utf8_lossy(&out).contains(password.as_str()));
            }
        }
        Ok(Request::Account { service, .. }) => assert!(service.len() <= 256),
        Ok(Request::Ping) => one_line(&protocol::ping_answer()),
        Ok(Request::Status) => {}
        Err(e) => {
            assert!(
                [
                    protocol::codes::BAD_JSON,
                    protocol::codes::MISSING_FIELD,
                    protocol::codes::BAD_FIELD,
                    protocol::codes::UNKNOWN_OP,
                ]
                .contains(&e.code),
                "undocumented error code {}",
                e.code
            );
            one_line(&protocol::error_answer(&e));
        }
    }
}

/// yubico_otp: any string as a Yubico OTP, and as modhex.
pub fn yubico_otp(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    let _ = yubico::modhex_decode(&s);
    let _ = yubico::public_id(&s);
    let _ = yubico::decode(&s, "cbcdcecfcgch", &[0u8; 6], &[0u8; 16]);
}

/// config_toml: any text as a configuration file: an error or a valid config, never a panic.
pub fn config_toml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Config::from_toml_str(text);
    }
}

/// A target's body.
pub type Body = fn(&[u8]);

/// Every target by name, for the regression replay.
pub const TARGETS: &[(&str, Body)] = &[
    ("config_toml", config_toml),
    ("engine_check", engine_check),
    ("protocol_parse", protocol_parse),
    ("radius_packet", radius_packet),
    ("yubico_otp", yubico_otp),
];
