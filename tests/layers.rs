//! The layer rules of docs/architecture.md, read off the source tree: a change that breaks one
//! fails here, with the file and line, before it becomes the way things are done.
//!
//! - front-ends (src/front/) import neither the store nor token internals: they translate
//!   bytes into a `CheckRequest` and a `Decision` back, nothing else;
//! - the engine (src/engine/) reaches the store only through the store traits: nothing
//!   SQLite-specific, no commit machinery;
//! - the protocol crate (proto/) depends on nothing of otpd, and the PAM module on nothing of
//!   otpd but the protocol crate;
//! - no source file outside tests is longer than 600 lines.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Unit-test files and `#[cfg(test)]` modules may reach anything.
fn is_test_file(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name == "tests.rs" || name.ends_with("_tests.rs") || name == "testkit.rs"
}

/// Lines of `p` before its `#[cfg(test)]` module, with their numbers; comments dropped.
fn code_lines(p: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(p).expect("read");
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]") {
            break;
        }
        if t.starts_with("//") {
            continue;
        }
        out.push((i + 1, line.to_string()));
    }
    out
}

fn violations(dir: &str, forbidden: &[&str]) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(&root().join(dir), &mut files);
    let mut bad = Vec::new();
    for f in files.iter().filter(|f| !is_test_file(f)) {
        for (n, line) in code_lines(f) {
            for word in forbidden {
                if line.contains(word) {
                    bad.push(format!("{}:{n}: `{word}` in {}", f.display(), line.trim()));
                }
            }
        }
    }
    bad
}

#[test]
fn front_ends_import_neither_the_store_nor_token_internals() {
    let bad = violations(
        "src/front",
        &["crate::store", "crate::tokens", "rusqlite", "SqliteStore"],
    );
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn the_engine_reaches_the_store_through_its_traits_only() {
    let bad = violations(
        "src/engine",
        &[
            "store::commit",
            "store::sqlite",
            "SqliteStore",
            "rusqlite",
            "crate::front",
        ],
    );
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn the_protocol_crate_depends_on_nothing_of_otpd() {
    let manifest = std::fs::read_to_string(root().join("proto/Cargo.toml")).expect("manifest");
    let deps: Vec<&str> = manifest
        .split("[dependencies]")
        .nth(1)
        .expect("a [dependencies] table")
        .lines()
        .take_while(|l| !l.starts_with('['))
        .filter_map(|l| l.split('=').next())
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(deps, ["serde", "serde_json", "zeroize"], "{manifest}");
    let bad = violations("proto/src", &["otpd::", "otpd_proto::"]);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    let pam = std::fs::read_to_string(root().join("pam_module/Cargo.toml")).expect("manifest");
    let pam_deps = pam.split("[dependencies]").nth(1).unwrap_or("");
    let pam_deps = pam_deps.split("\n[").next().unwrap_or("");
    assert!(
        !pam_deps
            .lines()
            .any(|l| l.trim_start().starts_with("otpd ") || l.trim_start().starts_with("otpd=")),
        "the PAM module links no daemon code: {pam_deps}"
    );
}

#[test]
fn no_source_file_outside_tests_is_over_600_lines() {
    let mut files = Vec::new();
    for dir in ["src", "proto/src", "pam_module/src"] {
        rust_files(&root().join(dir), &mut files);
    }
    let long: Vec<String> = files
        .iter()
        .filter(|f| !is_test_file(f))
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).ok()?.lines().count();
            (n > 600).then(|| format!("{}: {n} lines", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "split these:\n{}", long.join("\n"));
}
