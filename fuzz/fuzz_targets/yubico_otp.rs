//! Any string as a Yubico OTP, and as modhex.
//! The body is in fuzz/src/lib.rs, shared with tests/fuzz_regressions.rs.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| otpd_fuzz::yubico_otp(data));
