//! End to end with real Dovecot (Debian dovecot-imapd): a private Dovecot instance on
//! 127.0.0.1 with `passdb { driver = pam; args = %s }`, libpam pointed at our service files by
//! pam_wrapper (which Dovecot hands to its auth worker through `import_environment`), the real
//! `pam_otpd.so` asking the real otpd daemon, and `pam_matrix.so` as the normal password
//! store. The test logs in over IMAP from 127.0.0.1 (a mail client) and from 127.0.0.2 and
//! 127.0.0.3 (two webmail hosts, the `web` class's `rhosts`), as Dovecot sees them.
mod common;

use common::Env;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::FromRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DOVECOT: &str = "/usr/sbin/dovecot";
const MAIL_CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const WEBMAIL: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const OTHER_WEBMAIL: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

/// pam_wrapper (loaded into every Dovecot process) picks its runtime dir /tmp/pam.X racily at
/// process start: two instances starting together could share one. One Dovecot at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A private Dovecot, root-owned, everything under one temp dir; stopped by its pid.
struct Dovecot {
    _turn: std::sync::MutexGuard<'static, ()>,
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Dovecot {
    fn start(otpd_socket: &Path) -> Dovecot {
        assert!(
            Path::new(DOVECOT).is_file(),
            "{DOVECOT} is missing: install the Debian package dovecot-imapd"
        );
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        // Dovecot's unprivileged processes (login as dovenull, imap as uid 65534) must reach
        // their directories below this one.
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        for sub in ["run", "state", "pam.d"] {
            std::fs::create_dir(d.join(sub)).expect("mkdir");
        }
        for sub in ["mail", "home"] {
            std::fs::create_dir(d.join(sub)).expect("mkdir");
            std::fs::set_permissions(d.join(sub), std::fs::Permissions::from_mode(0o1777))
                .expect("chmod");
        }
        let module = common::pam_module_path();
        let matrix = common::pam_wrapper_module("pam_matrix.so");
        // The stack of conf/pam.d/dovecot, with test paths.
        std::fs::write(
            d.join("pam.d/imap"),
            format!(
                "auth     [success=done ignore=ignore default=die] {m} socket={s}\n\
                 auth     required {matrix} passdb={p}\n\
                 account  required {m} socket={s}\n\
                 account  required pam_permit.so\n",
                m = module.display(),
                s = otpd_socket.display(),
                matrix = matrix.display(),
                p = d.join("passdb").display()
            ),
        )
        .expect("pam service");
        // The normal passwords, as the mail system's own password store would hold them.
        std::fs::write(
            d.join("passdb"),
            "alice:normal-pw:imap\nbob:normal-pw:imap\ncarol:normal-pw:imap\n",
        )
        .expect("passdb");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let conf = format!(
            "base_dir = {d}/run\n\
             state_dir = {d}/state\n\
             instance_name = otpd-test-{port}\n\
             log_path = {d}/dovecot.log\n\
             protocols = imap\n\
             listen = 127.0.0.1\n\
             ssl = no\n\
             # 127.0.0.2 -> 127.0.0.1 is not \"secured\" in Dovecot's eyes; TLS is not the test.\n\
             disable_plaintext_auth = no\n\
             auth_mechanisms = plain login\n\
             auth_failure_delay = 0\n\
             auth_verbose = yes\n\
             # Dovecot's own auth cache stays off (the default): it would cache PIN+OTP.\n\
             auth_cache_size = 0\n\
             # The master passes only these variables to its children, the auth worker\n\
             # (which runs PAM) among them.\n\
             import_environment = TZ LD_PRELOAD PAM_WRAPPER PAM_WRAPPER_SERVICE_DIR\n\
             mail_location = maildir:{d}/mail/%u\n\
             passdb {{\n  driver = pam\n  args = %s\n}}\n\
             userdb {{\n  driver = static\n  args = uid=65534 gid=65534 home={d}/home/%u\n}}\n\
             # Dovecot delays every login from an address after failures from it (up to 15 s,\n\
             # kept in anvil); a test that fails on purpose would crawl. mode 0 on anvil's\n\
             # penalty socket switches the penalty off (the auth process logs that it cannot\n\
             # connect, and goes on).\n\
             service anvil {{\n  unix_listener anvil-auth-penalty {{\n    mode = 0\n  }}\n}}\n\
             service imap-login {{\n  inet_listener imap {{\n    address = 127.0.0.1\n    \
             port = {port}\n  }}\n  inet_listener imaps {{\n    port = 0\n  }}\n}}\n",
            d = d.display()
        );
        std::fs::write(d.join("dovecot.conf"), conf).expect("dovecot.conf");
        let child = Command::new(DOVECOT)
            .arg("-F")
            .arg("-c")
            .arg(d.join("dovecot.conf"))
            .env("LD_PRELOAD", common::pam_wrapper_lib())
            .env("PAM_WRAPPER", "1")
            .env("PAM_WRAPPER_SERVICE_DIR", d.join("pam.d"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dovecot");
        let mut dc = Dovecot {
            _turn: turn,
            child,
            port,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
                let mut greeting = String::new();
                s.set_read_timeout(Some(Duration::from_secs(5)))
                    .expect("timeout");
                let _ = BufReader::new(&s).read_line(&mut greeting);
                if greeting.starts_with("* OK") {
                    break;
                }
            }
            if let Ok(Some(st)) = dc.child.try_wait() {
                panic!("dovecot exited at start ({st}):\n{}", dc.log());
            }
            assert!(
                Instant::now() < deadline,
                "dovecot did not listen on 127.0.0.1:{port} within 15 s:\n{}",
                dc.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        dc
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// `a LOGIN user password` from `src`; the tagged answer line.
    fn login(&self, src: Ipv4Addr, user: &str, password: &str) -> String {
        let s = connect_from(src, self.port);
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let mut r = BufReader::new(s.try_clone().expect("clone"));
        let mut line = String::new();
        r.read_line(&mut line).expect("greeting");
        assert!(line.starts_with("* OK"), "greeting: {line}");
        (&s).write_all(format!("a LOGIN \"{user}\" \"{password}\"\r\n").as_bytes())
            .expect("send LOGIN");
        loop {
            line.clear();
            let n = r.read_line(&mut line).expect("answer");
            assert!(n > 0, "dovecot closed the connection:\n{}", self.log());
            if line.starts_with("a ") {
                break;
            }
        }
        let _ = (&s).write_all(b"b LOGOUT\r\n");
        line.trim_end().to_string()
    }

    #[track_caller]
    fn ok(&self, src: Ipv4Addr, user: &str, password: &str, why: &str) {
        let answer = self.login(src, user, password);
        assert!(
            answer.starts_with("a OK"),
            "{why}: {user} from {src}: {answer}\n--- dovecot.log:\n{}",
            self.log()
        );
    }

    #[track_caller]
    fn no(&self, src: Ipv4Addr, user: &str, password: &str, why: &str) {
        let answer = self.login(src, user, password);
        assert!(
            answer.starts_with("a NO"),
            "{why}: {user} from {src}: {answer}\n--- dovecot.log:\n{}",
            self.log()
        );
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: signalling our own child by its pid; the master stops its children.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        self.remove_pam_wrapper_leftovers();
    }
}

impl Dovecot {
    /// Every Dovecot process inherits pam_wrapper, which makes a /tmp/pam.X dir at start
    /// and, for processes that end on a signal, never removes it. There are only 62 such
    /// names for the whole machine; left behind, they would break every later pam_wrapper
    /// user. Ours are the ones whose copy of the service file names our temp dir, and whose
    /// process is gone.
    fn remove_pam_wrapper_leftovers(&self) {
        let ours = self.dir.path().display().to_string();
        let Ok(entries) = std::fs::read_dir("/tmp") else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            let is_pwrap = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.len() == 5 && n.starts_with("pam."));
            if !is_pwrap {
                continue;
            }
            let copy = std::fs::read_to_string(path.join("imap")).unwrap_or_default();
            if !copy.contains(&ours) {
                continue;
            }
            let pid: i32 = std::fs::read_to_string(path.join("pid"))
                .ok()
                .and_then(|p| p.trim().parse().ok())
                .unwrap_or(0);
            let deadline = Instant::now() + Duration::from_secs(3);
            // SAFETY: kill(pid, 0) only asks whether the process exists.
            while pid > 0 && unsafe { libc::kill(pid, 0) } == 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            // SAFETY: as above.
            if pid <= 0 || unsafe { libc::kill(pid, 0) } != 0 {
                let _ = std::fs::remove_dir_all(&path);
            }
        }
    }
}

/// A TCP connection to 127.0.0.1:port from the given source address (std cannot bind before
/// connecting).
fn connect_from(src: Ipv4Addr, port: u16) -> TcpStream {
    fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
        libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: a.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(a.ip().octets()),
            },
            sin_zero: [0; 8],
        }
    }
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor we own; the addresses are valid
    // sockaddr_in values of the given length.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let stream = TcpStream::from_raw_fd(fd);
        let local = sockaddr(SocketAddrV4::new(src, 0));
        let rc = libc::bind(fd, &local as *const _ as *const libc::sockaddr, len);
        assert_eq!(rc, 0, "bind {src}: {}", std::io::Error::last_os_error());
        let remote = sockaddr(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
        let rc = libc::connect(fd, &remote as *const _ as *const libc::sockaddr, len);
        assert_eq!(rc, 0, "connect: {}", std::io::Error::last_os_error());
        stream
    }
}

fn otp(counter: u64) -> String {
    format!("1234{}", common::hotp_code(counter))
}

fn otpd_env() -> Env {
    Env::with_tables(
        "",
        "[services.web]\npam_services = [\"roundcube\"]\nrhosts = [\"127.0.0.2/31\"]\n\
         relogin_cache = true\n",
    )
}

fn audit(env: &Env) -> String {
    env.ok(&["audit", "--json", "--limit", "0"], None)
}

#[test]
fn levels_over_imap_through_dovecot_pam_and_otpd() {
    let env = otpd_env();
    env.enrol("alice", "1234", "hotp", "web-otp");
    env.enrol("bob", "1234", "hotp", "web-only");
    env.enrol("carol", "1234", "hotp", "app-passwords");
    let out = env.ok(
        &[
            "app-password",
            "add",
            "carol",
            "--label",
            "Thunderbird laptop",
            "--json",
        ],
        None,
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let app_pw = v["password"].as_str().expect("password").to_string();
    let otpd = env.start();
    let dc = Dovecot::start(&env.socket_path());

    // web-otp: PIN+OTP from the webmail, the normal password from a mail client.
    dc.ok(WEBMAIL, "alice", &otp(0), "web-otp, webmail, PIN+OTP");
    dc.ok(
        MAIL_CLIENT,
        "alice",
        "normal-pw",
        "web-otp, mail client, password",
    );
    dc.no(WEBMAIL, "alice", "normal-pw", "web-otp, webmail, password");
    dc.no(
        MAIL_CLIENT,
        "alice",
        "wrong-pw",
        "web-otp, mail client, wrong",
    );

    // web-only: the mail client is switched off, even with the right password.
    dc.no(MAIL_CLIENT, "bob", "normal-pw", "web-only, mail client");
    dc.ok(WEBMAIL, "bob", &otp(0), "web-only, webmail, PIN+OTP");

    // app-passwords: not the normal password for IMAP; the app password works, typed as
    // shown or without its dashes.
    dc.no(
        MAIL_CLIENT,
        "carol",
        "normal-pw",
        "app-passwords, normal password",
    );
    dc.ok(MAIL_CLIENT, "carol", &app_pw, "app-passwords, app password");
    dc.ok(
        MAIL_CLIENT,
        "carol",
        &app_pw.replace('-', ""),
        "app-passwords, app password without dashes",
    );
    dc.ok(WEBMAIL, "carol", &otp(0), "app-passwords, webmail, PIN+OTP");

    drop(dc);
    otpd.stop();
    let a = audit(&env);
    assert!(a.contains("\"service\":\"web\""), "{a}");
    assert!(a.contains("app password \\\"Thunderbird laptop\\\""), "{a}");
    assert!(a.contains("is switched off"), "{a}");
    for secret in [&app_pw, "normal-pw", &otp(0)] {
        assert!(!a.contains(secret), "{secret} in the audit: {a}");
    }
    let list = env.ok(&["app-password", "list", "carol"], None);
    assert!(list.contains("127.0.0.1"), "last used from: {list}");
}

#[test]
fn webmail_relogin_cache_through_dovecot() {
    let env = otpd_env();
    env.enrol("alice", "1234", "hotp", "web-otp");
    let otpd = env.start();
    let dc = Dovecot::start(&env.socket_path());

    let pw = otp(0);
    dc.ok(WEBMAIL, "alice", &pw, "first webmail login");
    // Roundcube logs in again on every page view with what the user typed.
    for i in 0..3 {
        dc.ok(WEBMAIL, "alice", &pw, &format!("page view {i}"));
    }
    // The same PIN+OTP from another webmail host, and from a mail client: refused.
    dc.no(
        OTHER_WEBMAIL,
        "alice",
        &pw,
        "same code, another webmail host",
    );
    dc.no(MAIL_CLIENT, "alice", &pw, "same code, mail client");
    // The first host still has it.
    dc.ok(WEBMAIL, "alice", &pw, "page view after the refusals");

    drop(dc);
    otpd.stop();
    let a = audit(&env);
    assert_eq!(a.matches("re-login cache").count(), 4, "{a}");
}

#[test]
fn daemon_down_fails_closed_through_dovecot() {
    let env = otpd_env();
    env.enrol("alice", "1234", "hotp", "web-otp");
    let otpd = env.start();
    let dc = Dovecot::start(&env.socket_path());
    dc.ok(MAIL_CLIENT, "alice", "normal-pw", "daemon up");
    otpd.stop();
    // on_unavailable=fail (the default): even the normal password is refused while otpd is
    // down, and Dovecot answers as for a wrong password.
    let start = Instant::now();
    dc.no(MAIL_CLIENT, "alice", "normal-pw", "daemon down");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(
        dc.log().contains("otpd unreachable"),
        "the module's syslog line:\n{}",
        dc.log()
    );
}
