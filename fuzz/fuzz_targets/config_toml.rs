//! Any text as a configuration file: an error or a valid config, never a panic.
//! The body is in fuzz/src/lib.rs, shared with tests/fuzz_regressions.rs.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| otpd_fuzz::config_toml(data));
