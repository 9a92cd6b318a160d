//! Disk safety (issue 7, item 5) against the real daemon: a full disk and a database that
//! turns read-only give Reject with a clear reason in the log, never an Accept whose code was
//! not durably used, the daemon keeps running, and logins work again once the disk is back.
//!
//! The database lives on a small tmpfs the test mounts (root needed: the test FAILS when not
//! root, it does not skip), unmounted at the end, also when the test fails. Read-only while
//! running cannot be made from outside for files the daemon holds open (the kernel refuses
//! `remount,ro` while there are writers), so it is injected: a tiny LD_PRELOAD shim, built
//! here with cc, makes every write and sync of a file under the database directory fail with
//! EROFS while a flag file exists, as the kernel does after it remounted a file system
//! read-only on I/O errors (ext4 `errors=remount-ro`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job
mod common;
mod harden;

use common::{hotp_code, require, Daemon, Env};
use harden::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn need_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "tests/disk.rs needs root (it mounts a tmpfs for the database); run the tests as root"
    );
}

/// A tmpfs mounted on a fresh directory; unmounted when dropped (also after a failed
/// assertion, during unwinding).
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        need_root();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        std::fs::create_dir(&path).expect("mkdir");
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&path)
            .status()
            .expect("run mount");
        assert!(st.success(), "mount -t tmpfs on {} failed", path.display());
        Tmpfs { path, _dir: dir }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a daemon still holding files there (a failed test) does not keep it mounted.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Fills the file system of `dir` to the last byte; returns the filler file.
fn fill(dir: &Path) -> PathBuf {
    let p = dir.join("filler");
    let mut f = std::fs::File::create(&p).expect("filler");
    for chunk in [1 << 20, 1 << 12, 1] {
        let buf = vec![0xa5u8; chunk];
        while f.write_all(&buf).is_ok() {}
    }
    let _ = f.sync_all();
    p
}

fn check(env: &Env, password: &str) -> serde_json::Value {
    socket_call_within(
        &env.socket_path(),
        &check_req("alice", password, "vpn", Some("192.0.2.7")),
        Duration::from_secs(15),
    )
    .expect("an answer (the daemon must keep answering)")
}

/// Logs in with HOTP codes from `next` on until `stop(verdict)` or `max` attempts; every
/// Accept uses its code up (checked: the same code again is rejected). Returns the verdicts
/// and the next unused counter.
fn logins(env: &Env, next: &mut u64, max: usize, stop: impl Fn(&str) -> bool) -> Vec<String> {
    let mut verdicts = Vec::new();
    for _ in 0..max {
        let pw = format!("1234{}", hotp_code(*next));
        let v = check(env, &pw)["verdict"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if v == "accept" {
            *next += 1;
            let again = check(env, &pw);
            assert_eq!(again["verdict"], "reject", "an accepted code works once");
        }
        verdicts.push(v.clone());
        if stop(&v) {
            break;
        }
    }
    verdicts
}

fn env_on(mnt: &Tmpfs, extra_top: &str) -> Env {
    let db = mnt.path.join("otpd.db");
    Env::with_tables(
        &format!("database = \"{}\"\n{extra_top}", db.display()),
        // No lockout: the store errors are what this test is about.
        "[lockout]\nfree_failures = 1000000\nmax_failures = 0\n",
    )
}

fn assert_alive(d: &Daemon) {
    assert!(d.child_alive(), "daemon still running:\n{}", plain_log(d));
}

#[test]
fn full_disk_rejects_with_a_reason_and_recovers_when_space_is_back() {
    let mnt = Tmpfs::mount("4m");
    let env = env_on(&mnt, "");
    env.enrol("alice", "1234", "hotp", "everywhere");
    let d = env.start();
    let mut next = 0;
    assert_eq!(logins(&env, &mut next, 1, |_| true), ["accept"]);

    let filler = fill(&mnt.path);
    // The WAL may still have room for a few commits; then every write fails.
    let verdicts = logins(&env, &mut next, 200, |v| v != "accept");
    eprintln!("full disk: {verdicts:?}");
    assert_eq!(
        verdicts.last().map(String::as_str),
        Some("reject"),
        "{verdicts:?}"
    );
    // More tries on the full disk: all rejected, none accepted.
    let more = logins(&env, &mut next, 5, |_| false);
    assert!(more.iter().all(|v| v == "reject"), "{more:?}");
    // The login's log line (target otpd::audit) says why; the audit table cannot take it
    // while the disk is full.
    let log = log_with(
        &d,
        "verdict=reject reason=\"store error: database commit: database or disk is full\"",
    );
    assert!(log.contains("store commit of"), "{log}");
    assert_alive(&d);

    // Space is back: logins work again (the next one, or one after the store recovered).
    std::fs::remove_file(&filler).expect("rm filler");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut after = Vec::new();
    while after.last().map(String::as_str) != Some("accept") {
        assert!(Instant::now() < deadline, "never recovered: {after:?}");
        after.extend(logins(&env, &mut next, 1, |_| true));
    }
    eprintln!("space back: {after:?}");
    assert_alive(&d);
    assert!(d.stop().success());
    // The database is sound, and the audit holds the accepted logins.
    let out = env.ok(
        &["backup", &env.path().join("check.db").display().to_string()],
        None,
    );
    assert!(out.contains("integrity ok"), "{out}");
    let accepted = audit_all(&env, Some("alice"))
        .iter()
        .filter(|r| r["verdict"] == "accept")
        .count() as u64;
    assert_eq!(accepted, next, "one audit record per accepted code");
}

/// Builds the EROFS shim: while `$OTPD_TEST_RO_FLAG` exists, write, pwrite, fsync,
/// fdatasync and ftruncate on files under `$OTPD_TEST_RO_DIR` fail with EROFS.
fn build_ro_shim(dir: &Path) -> PathBuf {
    require("cc", "gcc");
    let src = dir.join("ro_shim.c");
    std::fs::write(
        &src,
        r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

static int read_only(int fd) {
    const char *dir = getenv("OTPD_TEST_RO_DIR"), *flag = getenv("OTPD_TEST_RO_FLAG");
    if (!dir || !flag || access(flag, F_OK) != 0) return 0;
    char link[64], target[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n <= 0) return 0;
    target[n] = 0;
    return strncmp(target, dir, strlen(dir)) == 0;
}

#define REAL(name) static __typeof__(name) *real; if (!real) real = dlsym(RTLD_NEXT, #name)
ssize_t write(int fd, const void *b, size_t n) { REAL(write); if (read_only(fd)) { errno = EROFS; return -1; } return real(fd, b, n); }
ssize_t pwrite(int fd, const void *b, size_t n, off_t o) { REAL(pwrite); if (read_only(fd)) { errno = EROFS; return -1; } return real(fd, b, n, o); }
ssize_t pwrite64(int fd, const void *b, size_t n, off_t o) { REAL(pwrite64); if (read_only(fd)) { errno = EROFS; return -1; } return real(fd, b, n, o); }
int fsync(int fd) { REAL(fsync); if (read_only(fd)) { errno = EROFS; return -1; } return real(fd); }
int fdatasync(int fd) { REAL(fdatasync); if (read_only(fd)) { errno = EROFS; return -1; } return real(fd); }
int ftruncate(int fd, off_t l) { REAL(ftruncate); if (read_only(fd)) { errno = EROFS; return -1; } return real(fd, l); }
int ftruncate64(int fd, off_t l) { REAL(ftruncate64); if (read_only(fd)) { errno = EROFS; return -1; } return real(fd, l); }
"#,
    )
    .expect("write shim source");
    let so = dir.join("ro_shim.so");
    let out = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&so)
        .arg(&src)
        .arg("-ldl")
        .output()
        .expect("run cc");
    assert!(
        out.status.success(),
        "cc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    so
}

#[test]
fn read_only_database_rejects_with_a_reason_and_recovers() {
    let mnt = Tmpfs::mount("16m");
    let env = env_on(&mnt, "");
    env.enrol("alice", "1234", "hotp", "everywhere");
    let shim = build_ro_shim(env.path());
    let flag = env.path().join("read-only-now");
    let mut cmd = env.cmd(&["serve"]);
    cmd.env("RUST_LOG", "")
        .env("LD_PRELOAD", &shim)
        .env("OTPD_TEST_RO_DIR", &mnt.path)
        .env("OTPD_TEST_RO_FLAG", &flag);
    let d = start_with(cmd);
    let mut next = 0;
    assert_eq!(logins(&env, &mut next, 1, |_| true), ["accept"]);

    std::fs::write(&flag, "").expect("flag");
    let verdicts = logins(&env, &mut next, 10, |_| false);
    eprintln!("read-only: {verdicts:?}");
    assert!(verdicts.iter().all(|v| v == "reject"), "{verdicts:?}");
    // SQLite reports EROFS on a write as an I/O error.
    log_with(
        &d,
        "verdict=reject reason=\"store error: database commit: disk I/O error\"",
    );
    assert_alive(&d);

    std::fs::remove_file(&flag).expect("rm flag");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut after = Vec::new();
    while after.last().map(String::as_str) != Some("accept") {
        assert!(Instant::now() < deadline, "never recovered: {after:?}");
        after.extend(logins(&env, &mut next, 1, |_| true));
    }
    eprintln!("writable again: {after:?}");
    assert_alive(&d);
    assert!(d.stop().success());
    let out = env.ok(
        &["backup", &env.path().join("check.db").display().to_string()],
        None,
    );
    assert!(out.contains("integrity ok"), "{out}");
}

/// Like `Daemon::start`, for a command with a changed environment.
fn start_with(mut c: Command) -> Daemon {
    use std::io::BufRead;
    use std::sync::{Arc, Mutex};
    c.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().expect("spawn otpd serve");
    let stderr = child.stderr.take().expect("stderr");
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let log2 = log.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("otpd ready") {
                let _ = tx.send(());
            }
            log2.lock().expect("log").push(line);
        }
    });
    let d = Daemon { child, log };
    assert!(
        rx.recv_timeout(Duration::from_secs(20)).is_ok(),
        "daemon did not become ready:\n{}",
        d.log_text()
    );
    d
}
