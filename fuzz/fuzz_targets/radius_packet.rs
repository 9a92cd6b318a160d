//! Any datagram as a RADIUS request: our length checks, the Message-Authenticator check, the
//! `radius` crate's decoding, PAP decoding, and every kind of answer built from what got
//! through. The client is tried without and with a required Message-Authenticator, so most
//! inputs reach the codec. Every answer must itself be a well-formed packet.
#![no_main]
use libfuzzer_sys::fuzz_target;
use otpd::engine::Decision;
use otpd::front::radius::{answer, handle_datagram_bytes, wire, Client, Step};

/// The secret the seed corpus was made with (fuzz/corpus/radius_packet).
const SECRET: &[u8] = b"fuzz-secret-123";

fuzz_target!(|data: &[u8]| {
    for require in [false, true] {
        let client = Client::new(
            "fuzz",
            "127.0.0.1/32".parse().expect("net"),
            SECRET,
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
});
