//! The request path up to the engine's decision: user name normalisation, service class,
//! the PIN/code split over tokens of several code lengths, lockout bookkeeping. Input:
//! user, password and service separated by NUL bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use otpd::admin::{Admin, TokenOptions};
use otpd::config::Config;
use otpd::crypto::{Keys, MasterKey};
use otpd::engine::{CheckRequest, Engine};
use otpd::model::TokenKind;
use otpd::store::{SqliteStore, Store};
use otpd::tokens::oath::Algorithm;
use std::sync::{Arc, OnceLock};

fn engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| {
        let cfg = Arc::new(Config::default().finish().expect("config"));
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().expect("store"));
        let keys = Arc::new(Keys::new(&MasterKey::from_bytes([1u8; 32])));
        let admin = Admin::new(cfg.clone(), store.clone(), keys.clone());
        admin.add_user("alice", Some("1234"), None).expect("user");
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
        admin.set_user("alice", None, Some("everywhere")).expect("level");
        Engine::new(cfg, store, keys)
    })
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == 0);
    let user = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let password = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let service = String::from_utf8_lossy(parts.next().unwrap_or(b"vpn")).into_owned();
    let e = engine();
    let _ = e.check(&CheckRequest {
        user: user.clone(),
        password: password.into(),
        service: service.clone(),
        ..CheckRequest::default()
    });
    let _ = e.account_check(&user, &service, None);
    // Keep the account usable so the fuzzer keeps reaching the code checks.
    if let Ok(Some(a)) = e.store().account("alice") {
        let _ = e.store().clear_failures(a.id);
    }
});
