//! examples/timing.rs with a handful of samples in every mode (the engine in process, the
//! real daemon over its Unix socket and over RADIUS) and both `unknown_user` settings, so the
//! timing benchmark cannot rot. The example's source is compiled into this test (`#[path]`):
//! `cargo test --test timing_example` does not build examples, and a stale example binary
//! would test old code. The daemon is the debug `otpd` this test is built with.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job
#[allow(dead_code)]
#[path = "../examples/timing.rs"]
mod timing;

use clap::Parser;

const KIND_NAMES: [&str; 9] = [
    "wrong code",
    "wrong PIN",
    "unknown user",
    "locked",
    "throttled",
    "no active token",
    "filler, known",
    "filler, unknown",
    "wrong app pw",
];

/// Runs the example with `argv` (after the program name) and returns what it printed.
fn run_argv(argv: &[&str]) -> Result<String, String> {
    let args = timing::Args::try_parse_from(std::iter::once("timing").chain(argv.iter().copied()))
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    timing::run(&args, &mut out)?;
    Ok(String::from_utf8(out).expect("utf-8"))
}

/// Five samples of each kind after two warm-up logins, against the debug daemon.
fn run(extra: &[&str]) -> Result<String, String> {
    let mut argv = vec![
        "--samples",
        "5",
        "--warmup",
        "2",
        "--otpd-bin",
        env!("CARGO_BIN_EXE_otpd"),
    ];
    argv.extend_from_slice(extra);
    run_argv(&argv)
}

/// Every kind has a line in the plain table and a row in the markdown table, with the answer
/// it must get, and the verdict line is there.
fn check(via: &str, unknown_user: &str) {
    let out = run(&["--via", via, "--unknown-user", unknown_user])
        .unwrap_or_else(|e| panic!("timing --via {via} --unknown-user {unknown_user}: {e}"));
    let (reject, unknown) = match (via, unknown_user) {
        ("radius", _) => ("Access-Reject", "Access-Reject"),
        (_, "defer") => ("reject", "defer"),
        _ => ("reject", "reject"),
    };
    for name in KIND_NAMES {
        let answer = if name.contains("unknown") {
            unknown
        } else {
            reject
        };
        let row = format!("| {name} | {answer} | ");
        assert!(out.contains(&row), "no row `{row}` in:\n{out}");
        assert!(
            out.lines()
                .any(|l| l.starts_with(name) && l.contains(answer)),
            "no plain line for `{name}` in:\n{out}"
        );
    }
    assert!(out.contains("verdict: "), "{out}");
    assert!(out.contains("accounts after the run: "), "{out}");
    // The locked and throttled kinds measured what their names say.
    let reason = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix("  ")?.strip_prefix(name))
            .unwrap_or_else(|| panic!("no audit reason for `{name}` in:\n{out}"))
            .to_string()
    };
    assert!(reason("locked").contains("locked"), "{out}");
    assert!(reason("throttled").contains("throttled"), "{out}");
    assert!(reason("wrong PIN").contains("wrong PIN"), "{out}");
}

#[test]
fn engine_in_process_both_unknown_user_settings() {
    check("engine", "reject");
    check("engine", "defer");
}

#[test]
fn daemon_over_the_unix_socket_both_unknown_user_settings() {
    check("socket", "reject");
    check("socket", "defer");
}

#[test]
fn daemon_over_radius_both_unknown_user_settings() {
    check("radius", "reject");
    check("radius", "defer");
}

#[test]
fn old_positional_form_and_bad_input() {
    let a = timing::Args::try_parse_from(["timing", "7", "3"]).expect("old form");
    assert_eq!((a.old_samples, a.old_pace_ms), (Some(7), Some(3)));
    assert_eq!(a.via, timing::Via::Engine);
    assert!(timing::Args::try_parse_from(["timing", "7", "--samples", "8"]).is_err());
    assert!(timing::Args::try_parse_from(["timing", "--via", "http"]).is_err());
    assert!(timing::Args::try_parse_from(["timing", "--samples", "x"]).is_err());
    let e = run_argv(&["--via", "socket", "--otpd-bin", "/nonexistent/otpd"]);
    let e = e.expect_err("a missing binary must be an error");
    assert!(e.contains("cargo build --release"), "{e}");
    let e = run_argv(&["--samples", "0"]).expect_err("0 samples");
    assert!(e.contains("--samples"), "{e}");
}
