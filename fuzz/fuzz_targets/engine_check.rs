//! The request path up to the engine's decision, over an account with a token of every kind
//! (every kind's PIN/code split). Input: user, password, service, rhost separated by NUL bytes.
//! The body is in fuzz/src/lib.rs, shared with tests/fuzz_regressions.rs.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| otpd_fuzz::engine_check(data));
