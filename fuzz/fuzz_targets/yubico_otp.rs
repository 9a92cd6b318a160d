//! Any string as a Yubico OTP, and as modhex.
#![no_main]
use libfuzzer_sys::fuzz_target;
use otpd::tokens::yubico;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let _ = yubico::modhex_decode(&s);
    let _ = yubico::public_id(&s);
    let _ = yubico::decode(&s, "cbcdcecfcgch", &[0u8; 6], &[0u8; 16]);
});
