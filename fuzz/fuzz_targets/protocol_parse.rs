//! Any bytes as a request line of the Unix socket protocol (front::protocol::parse).
//! The body is in fuzz/src/lib.rs, shared with tests/fuzz_regressions.rs.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| otpd_fuzz::protocol_parse(data));
