//! The Debian package (issue 15): `cargo deb` builds it from this checkout, lintian finds
//! nothing it does not explain, `dpkg -i` installs it on this machine the way an admin would,
//! the maintainer scripts make the otpd user, the directories and the key with the right
//! owners and modes (without systemd as PID 1), `otpd config check` and `otpd init` work as
//! the package intends, a reinstall never replaces the key, systemd accepts the installed
//! unit, and `dpkg --purge` takes it away again.
//!
//! It changes the machine (a package, a system user, /etc/otpd, /var/lib/otpd), so it needs
//! root (CI is root), refuses to run where otpd is already installed, and cleans up what it
//! made, also when it fails half-way.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job
mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const CONF: &str = "/etc/otpd/otpd.toml";
const KEY: &str = "/etc/otpd/keys/otpd.key";
const DB: &str = "/var/lib/otpd/otpd.db";
const UNIT: &str = "/usr/lib/systemd/system/otpd.service";

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[track_caller]
fn ok(cmd: &str, args: &[&str]) -> String {
    let o = run(cmd, args);
    assert!(
        o.status.success(),
        "{cmd} {args:?}: {}\n{}",
        o.status,
        text(&o)
    );
    text(&o)
}

/// dpkg with the others on this machine in mind: another apt/dpkg run holds the lock for a
/// while; wait for it (bounded) instead of failing.
#[track_caller]
fn dpkg(args: &[&str]) -> String {
    dpkg_with_path(args, None)
}

#[track_caller]
fn dpkg_with_path(args: &[&str], path: Option<&Path>) -> String {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let mut c = Command::new("dpkg");
        c.args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null());
        if let Some(p) = path {
            c.env("PATH", p);
        }
        let o = c.output().expect("dpkg");
        let out = text(&o);
        if o.status.success() {
            return out;
        }
        let locked = out.contains("lock") && out.contains("held by");
        assert!(
            locked && Instant::now() < deadline,
            "dpkg {args:?}: {}\n{out}",
            o.status
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// The otpd binary as installed, as the otpd user (what the service and postinst do).
fn as_otpd(args: &[&str]) -> Output {
    let mut all = vec!["-u", "otpd", "--", "/usr/sbin/otpd", "--config", CONF];
    all.extend_from_slice(args);
    run("runuser", &all)
}

fn id_of(db: &str, name: &str) -> u32 {
    let line = ok("getent", &[db, name]);
    line.split(':')
        .nth(2)
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("getent {db} {name}: {line}"))
}

#[track_caller]
fn owner_mode(path: &str, uid: u32, gid: u32, mode: u32) {
    let m = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(
        (m.uid(), m.gid(), m.permissions().mode() & 0o7777),
        (uid, gid, mode),
        "{path}: uid, gid, mode (want {uid} {gid} {mode:o})"
    );
}

/// Purges the package and removes what it leaves by design (key, database, user) when the
/// test ends, passed or not: none of it was there before.
struct Cleanup {
    user_existed: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = run("dpkg", &["--purge", "otpd"]);
        let _ = std::fs::remove_dir_all("/etc/otpd");
        let _ = std::fs::remove_dir_all("/var/lib/otpd");
        if !self.user_existed {
            let _ = run("userdel", &["otpd"]);
            let _ = run("groupdel", &["otpd"]);
        }
    }
}

#[test]
fn debian_package_installs_sets_up_and_purges() {
    // SAFETY: geteuid(2) has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test installs a Debian package and needs root (CI runs as root)"
    );
    common::require("dpkg", "dpkg");
    common::require("lintian", "lintian");
    common::require("runuser", "util-linux");
    common::require("systemd-analyze", "systemd");
    let cargo_deb = run(env!("CARGO"), &["deb", "--version"]);
    assert!(
        cargo_deb.status.success(),
        "cargo-deb is missing: `cargo install cargo-deb --locked` (tests/run.sh does this)"
    );
    let status = run("dpkg-query", &["-W", "-f=${Status}", "otpd"]);
    assert!(
        !String::from_utf8_lossy(&status.stdout).contains("installed"),
        "an otpd package is installed on this machine; this test installs and purges its \
         own, remove that first: {}",
        text(&status)
    );
    for p in ["/etc/otpd", "/var/lib/otpd"] {
        assert!(
            !Path::new(p).exists(),
            "{p} exists; this test would take it over: move it away first"
        );
    }
    let user_existed = run("getent", &["passwd", "otpd"]).status.success();

    // Build, as the README says, from this checkout.
    let out = tempfile::tempdir().expect("tempdir");
    let deb = out.path().join("otpd.deb");
    let started = Instant::now();
    let built = Command::new(env!("CARGO"))
        .args(["deb", "--output"])
        .arg(&deb)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo deb");
    assert!(built.status.success(), "cargo deb: {}", text(&built));
    println!("cargo deb took {:?}", started.elapsed());
    let deb = deb.to_str().expect("utf-8 path");

    // lintian: errors and warnings fail; the overrides in debian/ say why each one is there.
    let lint = run(
        "lintian",
        &["--fail-on", "error,warning", "--display-info", deb],
    );
    println!("lintian:\n{}", text(&lint));
    assert!(lint.status.success(), "lintian: {}", text(&lint));

    let contents = ok("dpkg-deb", &["--contents", deb]);
    for path in [
        "./usr/sbin/otpd",
        "./usr/lib/x86_64-linux-gnu/security/pam_otpd.so",
        "./etc/otpd/otpd.toml",
        "./usr/lib/systemd/system/otpd.service",
        "./usr/lib/sysusers.d/otpd.conf",
        "./usr/lib/tmpfiles.d/otpd.conf",
        "./usr/share/doc/otpd/README.md",
        "./usr/share/doc/otpd/docs/operations.md",
        "./usr/share/doc/otpd/examples/otpd.toml",
        "./usr/share/doc/otpd/examples/pam.d/sshd",
        "./usr/share/doc/otpd/examples/dovecot/90-auth-otpd.conf",
        "./usr/share/doc/otpd/examples/dovecot/2.4/90-auth-otpd.conf",
    ] {
        assert!(
            contents.lines().any(|l| l.ends_with(path)),
            "{path} not in the package:\n{contents}"
        );
    }
    let conffiles = ok("dpkg-deb", &["--info", deb, "conffiles"]);
    assert_eq!(conffiles.trim(), CONF, "conffiles");

    let _cleanup = Cleanup { user_existed };
    dpkg(&["-i", deb]);

    let (uid, gid) = made_by_postinst();
    let key = std::fs::read(KEY).expect("key");
    // Not enabled (nor started) before the admin has edited the configuration.
    assert!(
        !Path::new("/etc/systemd/system/multi-user.target.wants/otpd.service").exists(),
        "a first install must not enable otpd.service"
    );

    // `otpd config check` (what ExecStartPre runs) and `otpd init` as the service user.
    let check = as_otpd(&["config", "check"]);
    assert!(check.status.success(), "config check: {}", text(&check));
    ok("/usr/sbin/otpd", &["--config", CONF, "config", "check"]);
    let init = as_otpd(&["init"]);
    assert!(init.status.success(), "init as otpd: {}", text(&init));
    assert!(text(&init).contains("exists, kept"), "{}", text(&init));

    // The admin works as root; the service must still read everything afterwards.
    let add = Command::new("/usr/sbin/otpd")
        .args(["--config", CONF, "user", "add", "alice", "--pin-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(b"1234\n")?;
            c.wait_with_output()
        })
        .expect("user add");
    assert!(add.status.success(), "user add as root: {}", text(&add));
    let list = as_otpd(&["user", "list"]);
    assert!(
        list.status.success() && text(&list).contains("alice"),
        "user list as otpd after root wrote: {}",
        text(&list)
    );
    // A rotation run as root keeps the key the service's.
    ok("/usr/sbin/otpd", &["--config", CONF, "key", "rotate"]);
    owner_mode(KEY, uid, gid, 0o600);
    let list = as_otpd(&["user", "list"]);
    assert!(list.status.success(), "after rotate: {}", text(&list));
    let key = {
        let rotated = std::fs::read(KEY).expect("key");
        assert_ne!(rotated, key, "rotate made a new key");
        rotated
    };

    // Installing again (an upgrade, or a reinstall) never replaces the key.
    dpkg(&["-i", deb]);
    assert_eq!(
        std::fs::read(KEY).expect("key"),
        key,
        "reinstall replaced the key"
    );
    owner_mode(KEY, uid, gid, 0o600);

    // systemd on the installed unit.
    let verify = run("systemd-analyze", &["verify", UNIT]);
    assert!(
        verify.status.success() && !text(&verify).contains("otpd.service:"),
        "systemd-analyze verify {UNIT}: {}",
        text(&verify)
    );
    let security = ok(
        "systemd-analyze",
        &["security", "--offline=true", "--no-pager", UNIT],
    );
    let level: f64 = security
        .lines()
        .find_map(|l| l.split("Overall exposure level for otpd.service:").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {security}"));
    println!("systemd-analyze security exposure (installed unit): {level}");
    assert!(level <= 2.0, "exposure {level} > 2.0");

    // Purge: the package's files and the configuration go; the key and the database stay
    // (documented in debian/postrm and docs/operations.md).
    dpkg(&["--purge", "otpd"]);
    for gone in ["/usr/sbin/otpd", CONF, UNIT] {
        assert!(!Path::new(gone).exists(), "{gone} left after purge");
    }
    assert!(Path::new(KEY).exists(), "purge must keep the key");
    assert!(Path::new(DB).exists(), "purge must keep the database");

    // A host without systemd's tools (a minimal container): postinst falls back to adduser
    // and install -d. dpkg gets a PATH that has everything but systemd-sysusers and
    // systemd-tmpfiles, and passes it on to the maintainer scripts.
    std::fs::remove_dir_all("/etc/otpd").expect("remove /etc/otpd");
    std::fs::remove_dir_all("/var/lib/otpd").expect("remove /var/lib/otpd");
    if !user_existed {
        ok("userdel", &["otpd"]);
        let _ = run("groupdel", &["otpd"]);
    }
    let bin = out.path().join("bin-without-systemd");
    std::fs::create_dir(&bin).expect("bin dir");
    for dir in [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            if name == "systemd-sysusers" || name == "systemd-tmpfiles" {
                continue;
            }
            // The first directory in PATH order wins, as it would in the shell.
            let _ = std::os::unix::fs::symlink(e.path(), bin.join(&name));
        }
    }
    let installed = dpkg_with_path(&["-i", deb], Some(&bin));
    println!("dpkg -i without systemd tools:\n{installed}");
    made_by_postinst();
    let check = as_otpd(&["config", "check"]);
    assert!(check.status.success(), "config check: {}", text(&check));
    dpkg(&["--purge", "otpd"]);
}

/// What postinst must have made, whichever way it made it; the otpd uid and gid.
fn made_by_postinst() -> (u32, u32) {
    let uid = id_of("passwd", "otpd");
    let gid = id_of("group", "otpd");
    let user = ok("getent", &["passwd", "otpd"]);
    assert!(
        user.trim_end()
            .ends_with(":/var/lib/otpd:/usr/sbin/nologin"),
        "otpd user: home /var/lib/otpd, no login shell: {user}"
    );
    owner_mode("/usr/sbin/otpd", 0, 0, 0o755);
    owner_mode("/etc/otpd", 0, gid, 0o750);
    owner_mode(CONF, 0, gid, 0o640);
    owner_mode("/etc/otpd/keys", uid, gid, 0o700);
    owner_mode(KEY, uid, gid, 0o600);
    owner_mode("/var/lib/otpd", uid, gid, 0o700);
    // The database's own mode follows the umask; /var/lib/otpd (0700) is what keeps it private.
    let db = std::fs::metadata(DB).expect("database");
    assert_eq!((db.uid(), db.gid()), (uid, gid), "{DB} owner");
    (uid, gid)
}
