//! Every saved fuzz crash (fuzz/regressions/TARGET/*) and every seed of the corpus
//! (fuzz/corpus/TARGET/*) replayed through the very functions the fuzz targets call
//! (fuzz/src/lib.rs, included here), on the normal toolchain: a crash found once stays a
//! test, and the targets' bodies cannot rot between fuzz runs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job
#[path = "../fuzz/src/lib.rs"]
mod bodies;

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Regular files of `dir`, sorted; none when it does not exist.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    v.sort();
    v
}

/// Runs `f` on each input; collects the files that panicked, with the message.
fn replay(f: fn(&[u8]), files: &[PathBuf]) -> Vec<String> {
    let mut failed = Vec::new();
    for p in files {
        let data = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        if let Err(e) = std::panic::catch_unwind(|| f(&data)) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failed.push(format!("{}: {msg}", p.display()));
        }
    }
    failed
}

#[test]
fn every_fuzz_target_is_replayed_here() {
    // A target added to fuzz/Cargo.toml without a body in fuzz/src/lib.rs would escape
    // the replay: fail instead.
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).expect("fuzz/Cargo.toml");
    let declared: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.trim().strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .filter(|n| *n != "otpd-fuzz" && *n != "otpd_fuzz")
        .collect();
    assert!(!declared.is_empty());
    for name in &declared {
        assert!(
            bodies::TARGETS.iter().any(|(t, _)| t == name),
            "fuzz target {name} has no body in fuzz/src/lib.rs TARGETS"
        );
    }
    assert_eq!(declared.len(), bodies::TARGETS.len(), "{declared:?}");
}

#[test]
fn corpus_seeds_and_saved_crashes_replay_without_a_panic() {
    let mut failed = Vec::new();
    let mut counts = Vec::new();
    for (name, f) in bodies::TARGETS {
        let seeds = inputs(&root().join("corpus").join(name));
        assert!(
            !seeds.is_empty(),
            "fuzz/corpus/{name}/ holds no seed: every target needs a seed corpus"
        );
        let crashes = inputs(&root().join("regressions").join(name));
        counts.push(format!(
            "{name}: {} seeds, {} crashes",
            seeds.len(),
            crashes.len()
        ));
        failed.extend(replay(*f, &seeds));
        failed.extend(replay(*f, &crashes));
    }
    eprintln!("{}", counts.join("; "));
    assert!(failed.is_empty(), "panicked:\n{}", failed.join("\n"));
}

#[test]
fn engine_check_account_has_every_token_kind() {
    // engine() asserts that every TokenKind has an active token, so every kind's PIN/code
    // split is on the fuzzer's path; the seeds then reach each split with a well-formed code.
    let e = bodies::engine();
    let toks = e.store().tokens(Some("alice")).expect("tokens");
    for seed in [
        "yubikey",
        "yubikey_remote",
        "motp",
        "backup",
        "email",
        "pin_code",
    ] {
        let data = std::fs::read(root().join("corpus/engine_check").join(seed)).expect(seed);
        let pw = data.split(|b| *b == 0).nth(1).expect("password");
        let pw = std::str::from_utf8(pw).expect("utf8");
        let splits = toks
            .iter()
            .filter(|t| otpd::tokens::split(pw, t).is_some_and(|(pin, _)| pin == "1234"))
            .count();
        assert!(
            splits > 0,
            "seed {seed} reaches no token's split with PIN 1234"
        );
    }
}

#[test]
fn the_valid_yubikey_seed_is_accepted_once() {
    // The seed is a real OTP of the fuzz account's key: the fuzzer starts from an input that
    // goes all the way to the counter write.
    let e = bodies::engine();
    let data = std::fs::read(root().join("corpus/engine_check/yubikey")).expect("seed");
    let parts: Vec<&[u8]> = data.split(|b| *b == 0).collect();
    let req = |pw: &str| otpd::engine::CheckRequest {
        user: "alice".into(),
        password: pw.to_string().into(),
        service: "vpn".into(),
        ..Default::default()
    };
    let pw = std::str::from_utf8(parts[1]).expect("utf8");
    let first = e.check(&req(pw));
    // Another test may have replayed the seed first in this process (shared engine).
    let second = e.check(&req(pw));
    assert_eq!(
        second.verdict,
        otpd::engine::Verdict::Reject,
        "used once only"
    );
    assert!(
        first.verdict == otpd::engine::Verdict::Accept || first.reason.contains("already used"),
        "{:?} {}",
        first.verdict,
        first.reason
    );
}
