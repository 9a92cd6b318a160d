//! Shared by the tests that prove the shipped snippets (conf/) with the products themselves:
//! the install steps as docs/ print them, run against private copies of Debian's stock
//! configuration, and processes started and stopped by pid.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The repository root (where `conf/` and `docs/` are).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The fenced block (```sh, ```toml ...) that follows the marker `<!-- test: NAME -->` in a
/// file of the repository (`docs/mail.md`, `conf/openvpn/README.md`): the commands or the
/// configuration an admin is told to use, which a test runs or loads with its own paths.
pub fn docs_block(file: &str, name: &str) -> String {
    let path = repo().join(file);
    let text = std::fs::read_to_string(&path).expect("read doc");
    let marker = format!("<!-- test: {name} -->");
    let at = text
        .find(&marker)
        .unwrap_or_else(|| panic!("{} has no {marker}", path.display()));
    let rest = &text[at + marker.len()..];
    let fence = rest.find("```").expect("a fenced block after the marker");
    let open = fence + rest[fence..].find('\n').expect("the fence's line") + 1;
    let close = rest[open..].find("```").expect("the block's end");
    rest[open..open + close].to_string()
}

/// Runs a docs block with bash (-e, in the repository root) after replacing the system paths
/// it names by the test's; returns standard output. A failing command fails the test.
pub fn run_block(block: &str, replace: &[(&str, String)]) -> String {
    let mut script = block.to_string();
    for (from, to) in replace {
        script = script.replace(from, to);
    }
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(repo())
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "the docs' commands failed:\n{script}\n--- stdout:\n{}\n--- stderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command, returns (success, stdout + stderr).
pub fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Fails (never skips) when a file from a Debian package is missing.
pub fn require_file(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: install the Debian package {package} (tests/run.sh does this)"
    );
}

/// SIGTERM to a process we started, by its pid; SIGKILL if it is still there after 10 s.
pub fn stop_child(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Waits until `ready` holds (at most `secs`), failing with `what` and a log otherwise.
pub fn wait_for(secs: u64, what: &str, log: impl Fn() -> String, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "{what} within {secs} s:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A process a test started, stopped by its pid (stop_child) when dropped: also when the test
/// fails half-way.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        stop_child(&mut self.0);
    }
}

pub mod postgres;
