//! End to end with real Dovecot (Debian dovecot-imapd): a private Dovecot instance on
//! 127.0.0.1 with `passdb { driver = pam; args = %s }`, libpam pointed at our service files by
//! pam_wrapper (which Dovecot hands to its auth worker through `import_environment`), the real
//! `pam_otpd.so` asking the real otpd daemon, and `pam_matrix.so` as the normal password
//! store. The test logs in over IMAP from 127.0.0.1 (a mail client) and from 127.0.0.2 and
//! 127.0.0.3 (two webmail hosts, the `web` class's `rhosts`), as Dovecot sees them.
//!
//! Two kinds of instance: a hand-made dovecot.conf (the engine's behaviour through Dovecot),
//! and Debian's stock /etc/dovecot, copied, with conf/dovecot/90-auth-otpd.conf and
//! conf/pam.d/dovecot installed by the commands docs/mail.md prints (the shipped snippet
//! proven by Dovecot 2.3), next to a private Postfix whose SMTP AUTH goes through it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job
mod common;
mod products;

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
        Dovecot::start_with(otpd_socket, "0", "%s")
    }

    /// The hand-made configuration with Dovecot's auth cache size and the PAM passdb's args.
    fn start_with(otpd_socket: &Path, auth_cache_size: &str, passdb_args: &str) -> Dovecot {
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
             # Dovecot's own auth cache stays off (the default) unless a test says otherwise.\n\
             auth_cache_size = {auth_cache_size}\n\
             # The master passes only these variables to its children, the auth worker\n\
             # (which runs PAM) among them.\n\
             import_environment = TZ LD_PRELOAD PAM_WRAPPER PAM_WRAPPER_SERVICE_DIR\n\
             mail_location = maildir:{d}/mail/%u\n\
             passdb {{\n  driver = pam\n  args = {passdb_args}\n}}\n\
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
        let conf = d.join("dovecot.conf");
        let pam_dir = d.join("pam.d");
        Dovecot::launch(turn, dir, &conf, &pam_dir, port)
    }

    /// Starts `dovecot -F -c conf` with libpam reading `pam_dir`, and waits for the greeting.
    fn launch(
        turn: std::sync::MutexGuard<'static, ()>,
        dir: tempfile::TempDir,
        conf: &Path,
        pam_dir: &Path,
        port: u16,
    ) -> Dovecot {
        let child = Command::new(DOVECOT)
            .arg("-F")
            .arg("-c")
            .arg(conf)
            .env("LD_PRELOAD", common::pam_wrapper_lib())
            .env("PAM_WRAPPER", "1")
            .env("PAM_WRAPPER_SERVICE_DIR", pam_dir)
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

    /// Debian's stock /etc/dovecot, copied, with conf/dovecot/90-auth-otpd.conf and
    /// conf/pam.d/dovecot installed by the commands docs/mail.md prints (run on the copy). The
    /// test adds only what a private instance needs, in `local.conf` (which the stock
    /// dovecot.conf includes last): its directories, port and log, a static userdb for users
    /// that are not in /etc/passwd, plaintext logins without TLS, pam_wrapper's variables,
    /// and the Postfix auth socket moved into `postfix_queue` (when given) instead of
    /// /var/spool/postfix. In the installed PAM file only the module paths change: the built
    /// pam_otpd.so with the test's socket, and pam_matrix.so (a password file) for pam_unix.so.
    fn start_stock(otpd_socket: &Path, postfix_queue: Option<&Path>) -> Dovecot {
        assert!(
            Path::new(DOVECOT).is_file(),
            "{DOVECOT} is missing: install the Debian package dovecot-imapd"
        );
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        for sub in ["run", "state", "pam.d"] {
            std::fs::create_dir(d.join(sub)).expect("mkdir");
        }
        for sub in ["mail", "home"] {
            std::fs::create_dir(d.join(sub)).expect("mkdir");
            std::fs::set_permissions(d.join(sub), std::fs::Permissions::from_mode(0o1777))
                .expect("chmod");
        }
        let etc = d.join("etc-dovecot");
        let (ok, out) = products::run(Command::new("cp").arg("-a").arg("/etc/dovecot").arg(&etc));
        assert!(ok, "copy /etc/dovecot: {out}");
        let conf = etc.join("dovecot.conf");
        let block = products::docs_block("docs/mail.md", "dovecot-2.3-install");
        let printed = products::run_block(
            &block,
            &[
                ("/etc/dovecot", etc.display().to_string()),
                ("/etc/pam.d", d.join("pam.d").display().to_string()),
                ("doveconf ", format!("doveconf -c {} ", conf.display())),
            ],
        );
        assert_eq!(
            printed.trim(),
            "1",
            "the docs' check counts the passdbs: exactly one must be left"
        );

        let pam_file = d.join("pam.d/dovecot");
        let installed = std::fs::read_to_string(&pam_file).expect("installed PAM file");
        let shipped =
            std::fs::read_to_string(products::repo().join("conf/pam.d/dovecot")).expect("shipped");
        assert_eq!(
            installed, shipped,
            "docs/mail.md installs conf/pam.d/dovecot as it is"
        );
        let module = common::pam_module_path();
        let matrix = common::pam_wrapper_module("pam_matrix.so");
        let passdb = d.join("passdb");
        let mut pam = String::new();
        for line in installed.lines() {
            let line = if line.starts_with('#') {
                line.to_string()
            } else if line.contains("pam_otpd.so") {
                line.replace(
                    "pam_otpd.so",
                    &format!("{} socket={}", module.display(), otpd_socket.display()),
                )
            } else if line.starts_with("auth") && line.contains("pam_unix.so") {
                line.replace(
                    "pam_unix.so",
                    &format!("{} passdb={}", matrix.display(), passdb.display()),
                )
            } else if line.starts_with("account") && line.contains("pam_unix.so") {
                line.replace("pam_unix.so", "pam_permit.so")
            } else {
                line.to_string()
            };
            pam.push_str(&line);
            pam.push('\n');
        }
        std::fs::write(&pam_file, pam).expect("PAM file");
        let users = ["alice", "bob", "carol", "dave", "erin"];
        let lines: String = users
            .iter()
            .map(|u| format!("{u}:normal-pw:dovecot\n"))
            .collect();
        std::fs::write(&passdb, lines).expect("passdb");

        let port = common::free_tcp_port();
        let postfix = match postfix_queue {
            // The snippet's listener stays in the config, switched off (mode 0: Dovecot
            // creates no socket), and the same listener is made in the private queue.
            Some(q) => format!(
                "service auth {{\n  unix_listener /var/spool/postfix/private/auth {{\n    \
                 mode = 0\n  }}\n  unix_listener {q}/private/auth {{\n    mode = 0660\n    \
                 user = postfix\n    group = postfix\n  }}\n}}\n",
                q = q.display()
            ),
            None => "service auth {\n  unix_listener /var/spool/postfix/private/auth {\n    \
                     mode = 0\n  }\n}\n"
                .to_string(),
        };
        let local = format!(
            "base_dir = {d}/run\n\
             state_dir = {d}/state\n\
             instance_name = otpd-stock-{port}\n\
             log_path = {d}/dovecot.log\n\
             listen = 127.0.0.1\n\
             disable_plaintext_auth = no\n\
             auth_failure_delay = 0\n\
             auth_verbose = yes\n\
             import_environment = TZ LD_PRELOAD PAM_WRAPPER PAM_WRAPPER_SERVICE_DIR\n\
             mail_location = maildir:{d}/mail/%u\n\
             userdb {{\n  driver = static\n  args = uid=65534 gid=65534 home={d}/home/%u\n}}\n\
             service anvil {{\n  unix_listener anvil-auth-penalty {{\n    mode = 0\n  }}\n}}\n\
             service imap-login {{\n  inet_listener imap {{\n    address = 127.0.0.1\n    \
             port = {port}\n  }}\n  inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
             {postfix}",
            d = d.display()
        );
        std::fs::write(etc.join("local.conf"), local).expect("local.conf");
        let pam_dir = d.join("pam.d");
        Dovecot::launch(turn, dir, &conf, &pam_dir, port)
    }

    /// `doveconf -n` of the running configuration.
    fn doveconf(&self) -> String {
        let conf = self.dir.path().join("etc-dovecot/dovecot.conf");
        let (ok, out) = products::run(Command::new("doveconf").arg("-c").arg(conf).arg("-n"));
        assert!(ok, "doveconf -n: {out}");
        out
    }

    /// A login with Python's imaplib from `src`: `how` is "LOGIN" (the IMAP command) or a SASL
    /// mechanism for AUTHENTICATE ("PLAIN", "LOGIN-SASL"). Returns "OK ..." or "NO ...", then
    /// the capabilities the server announced before the login.
    fn imaplib(&self, src: Ipv4Addr, how: &str, user: &str, password: &str) -> String {
        common::require("python3", "python3");
        common::python(
            r#"
import imaplib, socket, sys
port, src, how, user, pw = sys.argv[1:]
class Client(imaplib.IMAP4):
    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout, source_address=(src, 0))
c = Client("127.0.0.1", int(port), timeout=20)
caps = " ".join(c.capabilities)
try:
    if how == "LOGIN":
        c.login(user, pw)
    elif how == "PLAIN":
        c.authenticate("PLAIN", lambda _: ("\0" + user + "\0" + pw).encode())
    else:
        answers = iter([user, pw])
        c.authenticate("LOGIN", lambda _: next(answers).encode())
    print("OK", "|", caps)
    c.logout()
except imaplib.IMAP4.error as e:
    print("NO", e, "|", caps)
"#,
            &[
                &self.port.to_string(),
                &src.to_string(),
                how,
                user,
                password,
            ],
        )
    }

    #[track_caller]
    fn imap_ok(&self, src: Ipv4Addr, how: &str, user: &str, password: &str, why: &str) {
        let answer = self.imaplib(src, how, user, password);
        assert!(
            answer.starts_with("OK"),
            "{why}: {user} from {src} ({how}): {answer}\n--- dovecot.log:\n{}",
            self.log()
        );
    }

    #[track_caller]
    fn imap_no(&self, src: Ipv4Addr, how: &str, user: &str, password: &str, why: &str) {
        let answer = self.imaplib(src, how, user, password);
        assert!(
            answer.starts_with("NO"),
            "{why}: {user} from {src} ({how}): {answer}\n--- dovecot.log:\n{}",
            self.log()
        );
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
        // One wait for all: the master's children (log, anvil, auth ...) end a moment after
        // it, later under load.
        let deadline = Instant::now() + Duration::from_secs(10);
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
            // The service file is `imap` for the hand-made config, `dovecot` for the stock one.
            let copy = ["imap", "dovecot"]
                .iter()
                .map(|f| std::fs::read_to_string(path.join(f)).unwrap_or_default())
                .collect::<String>();
            if !copy.contains(&ours) {
                continue;
            }
            let pid: i32 = std::fs::read_to_string(path.join("pid"))
                .ok()
                .and_then(|p| p.trim().parse().ok())
                .unwrap_or(0);
            while pid > 0 && running(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if pid <= 0 || !running(pid) {
                let _ = std::fs::remove_dir_all(&path);
            }
        }
    }
}

/// Whether a process still runs. A zombie does not: a Dovecot child that outlives the master
/// is reparented to PID 1, which in a container may never reap it.
fn running(pid: i32) -> bool {
    // SAFETY: kill(pid, 0) only asks whether the process exists.
    let exists = unsafe { libc::kill(pid, 0) } == 0;
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()
                .map(|rest| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false);
    exists && !zombie
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
    common::audit_settled(env, &["audit", "--json", "--limit", "0"])
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

/// A private Postfix (Debian postfix 3.7): `postfix -c DIR start-fg`, its queue, data and log
/// under one temp dir, a submission listener on 127.0.0.1:free port with SASL through
/// Dovecot (`smtpd_sasl_type = dovecot`, `smtpd_sasl_path = private/auth` as docs/mail.md
/// says). Stopped by the master's pid.
struct Postfix {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Postfix {
    fn start() -> Postfix {
        products::require_file("/usr/sbin/postfix", "postfix");
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().to_path_buf();
        let d = d.as_path();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        for sub in ["conf", "spool", "data"] {
            std::fs::create_dir(d.join(sub)).expect("mkdir");
        }
        let (ok, out) = products::run(Command::new("chown").arg("postfix").arg(d.join("data")));
        assert!(ok, "chown postfix: {out}");
        let port = common::free_tcp_port();
        let main = format!(
            "compatibility_level = 3.6\n\
             queue_directory = {d}/spool\n\
             data_directory = {d}/data\n\
             maillog_file_prefixes = {d}\n\
             maillog_file = {d}/postfix.log\n\
             myhostname = otpd-test.localdomain\n\
             inet_interfaces = 127.0.0.1\n\
             inet_protocols = ipv4\n\
             alias_maps =\n\
             alias_database =\n\
             smtpd_tls_security_level = none\n\
             # What docs/mail.md sets, but smtpd_tls_auth_only (the test speaks no TLS):\n\
             smtpd_sasl_type = dovecot\n\
             smtpd_sasl_path = private/auth\n\
             smtpd_sasl_auth_enable = yes\n",
            d = d.display()
        );
        std::fs::write(d.join("conf/main.cf"), main).expect("main.cf");
        // The submission service as Debian's master.cf has it commented out, on a test port
        // and without chroot (the private queue has no chroot files).
        let master = format!(
            "127.0.0.1:{port} inet n - n - - smtpd\n  \
             -o syslog_name=postfix/submission\n  \
             -o smtpd_sasl_auth_enable=yes\n  \
             -o smtpd_client_restrictions=permit_sasl_authenticated,reject\n\
             cleanup unix n - n - 0 cleanup\n\
             qmgr unix n - n 300 1 qmgr\n\
             rewrite unix - - n - - trivial-rewrite\n\
             bounce unix - - n - 0 bounce\n\
             defer unix - - n - 0 bounce\n\
             trace unix - - n - 0 bounce\n\
             proxymap unix - - n - - proxymap\n\
             anvil unix - - n - 1 anvil\n\
             postlog unix-dgram n - n - 1 postlogd\n"
        );
        std::fs::write(d.join("conf/master.cf"), master).expect("master.cf");
        let child = Command::new("postfix")
            .arg("-c")
            .arg(d.join("conf"))
            .arg("start-fg")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start postfix");
        let mut pf = Postfix { child, port, dir };
        let log = || std::fs::read_to_string(d.join("postfix.log")).unwrap_or_default();
        let pid_file = d.join("spool/pid/master.pid");
        let private = d.join("spool/private");
        // Not by connecting: an smtpd started before Dovecot's auth socket exists exits
        // ("no SASL authentication mechanisms"), and the master then holds the service back
        // for a minute. The master logs its start once it listens.
        products::wait_for(20, "postfix did not start", log, || {
            pid_file.is_file() && private.is_dir() && log().contains("daemon started")
        });
        if let Ok(Some(st)) = pf.child.try_wait() {
            panic!("postfix exited at start ({st}):\n{}", pf.log());
        }
        pf
    }

    fn queue(&self) -> std::path::PathBuf {
        self.dir.path().join("spool")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postfix.log")).unwrap_or_default()
    }

    /// SMTP AUTH with Python's smtplib from 127.0.0.1: the reply code and the mechanisms the
    /// server announced.
    fn auth(&self, user: &str, password: &str) -> String {
        common::python(
            r#"
import smtplib, sys
port, user, pw = sys.argv[1:]
s = smtplib.SMTP("127.0.0.1", int(port), timeout=20)
s.ehlo("client.example")
mechs = s.esmtp_features.get("auth", "")
try:
    code, _ = s.login(user, pw)
except smtplib.SMTPAuthenticationError as e:
    code = e.smtp_code
print(code, "|", mechs)
s.quit()
"#,
            &[&self.port.to_string(), user, password],
        )
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        // postfix start-fg runs postfix-script, which waits for the master: SIGTERM to the
        // master (its pid file) stops every Postfix process and then the script.
        let pid: i32 = std::fs::read_to_string(self.dir.path().join("spool/pid/master.pid"))
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or(0);
        if pid > 0 {
            // SAFETY: the master of the instance this test started, by its pid.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        products::stop_child(&mut self.child);
    }
}

/// The number of audit records of one user, once the audit has settled.
fn audit_count(env: &Env, user: &str) -> usize {
    common::audit_settled(env, &["audit", "--user", user, "--json", "--limit", "0"])
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

#[test]
fn stock_debian_dovecot_with_the_shipped_snippet_at_every_level_over_imap_and_smtp() {
    let env = otpd_env();
    env.enrol("erin", "1234", "hotp", "off");
    env.enrol("alice", "1234", "hotp", "web-otp");
    env.enrol("bob", "1234", "hotp", "web-only");
    env.enrol("carol", "1234", "hotp", "app-passwords");
    env.enrol("dave", "1234", "hotp", "everywhere");
    let out = env.ok(
        &[
            "app-password",
            "add",
            "carol",
            "--label",
            "laptop",
            "--json",
        ],
        None,
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let app_pw = v["password"].as_str().expect("password").to_string();
    let otpd = env.start();
    let pf = Postfix::start();
    let dc = Dovecot::start_stock(&env.socket_path(), Some(&pf.queue()));

    // The snippet sorts after Debian's 10-auth.conf: LOGIN survives, and one passdb is left.
    let conf = dc.doveconf();
    assert!(conf.contains("auth_mechanisms = plain login"), "{conf}");
    assert_eq!(conf.matches("passdb {").count(), 1, "{conf}");
    let caps = dc.imaplib(MAIL_CLIENT, "LOGIN", "erin", "normal-pw");
    assert!(
        caps.contains("AUTH=PLAIN") && caps.contains("AUTH=LOGIN"),
        "{caps}"
    );
    assert!(caps.starts_with("OK"), "off, mail client, password: {caps}");

    // off: the normal password everywhere, a wrong one refused.
    dc.imap_no(
        MAIL_CLIENT,
        "LOGIN",
        "erin",
        "wrong-pw",
        "off, wrong password",
    );
    dc.imap_ok(
        WEBMAIL,
        "PLAIN",
        "erin",
        "normal-pw",
        "off, webmail, password",
    );
    // web-otp: PIN+OTP in the webmail (SASL LOGIN), the password in a mail client.
    dc.imap_ok(
        WEBMAIL,
        "LOGIN-SASL",
        "alice",
        &otp(0),
        "web-otp, webmail, PIN+OTP",
    );
    dc.imap_no(
        WEBMAIL,
        "LOGIN",
        "alice",
        "normal-pw",
        "web-otp, webmail, password",
    );
    dc.imap_ok(
        MAIL_CLIENT,
        "PLAIN",
        "alice",
        "normal-pw",
        "web-otp, client, password",
    );
    // web-only: the normal password must not log in to IMAP (a second passdb would let it).
    dc.imap_no(
        MAIL_CLIENT,
        "LOGIN",
        "bob",
        "normal-pw",
        "web-only, client, password",
    );
    dc.imap_ok(
        WEBMAIL,
        "LOGIN",
        "bob",
        &otp(0),
        "web-only, webmail, PIN+OTP",
    );
    // app-passwords: only the app password from a mail client.
    dc.imap_no(
        MAIL_CLIENT,
        "LOGIN",
        "carol",
        "normal-pw",
        "app-passwords, password",
    );
    dc.imap_ok(
        MAIL_CLIENT,
        "LOGIN",
        "carol",
        &app_pw,
        "app-passwords, app password",
    );
    dc.imap_ok(
        WEBMAIL,
        "LOGIN",
        "carol",
        &otp(0),
        "app-passwords, webmail, PIN+OTP",
    );
    // everywhere: PIN+OTP from the mail client too, the password refused.
    dc.imap_no(
        MAIL_CLIENT,
        "LOGIN",
        "dave",
        "normal-pw",
        "everywhere, password",
    );
    dc.imap_ok(MAIL_CLIENT, "LOGIN", "dave", &otp(0), "everywhere, PIN+OTP");

    // One refused login asks otpd once: a second passdb would have asked again.
    let before = audit_count(&env, "dave");
    dc.imap_no(
        MAIL_CLIENT,
        "LOGIN",
        "dave",
        "1234000000",
        "everywhere, wrong code",
    );
    assert_eq!(
        audit_count(&env, "dave"),
        before + 1,
        "{:?}",
        common::audit_of(&env, "dave")
    );

    // SMTP AUTH through Postfix and Dovecot's auth socket: the `mail` column.
    let smtp = |user: &str, pw: &str| {
        let a = pf.auth(user, pw);
        assert!(
            a.contains("PLAIN") && a.contains("LOGIN"),
            "{a}\n{}",
            pf.log()
        );
        a
    };
    let ok = |a: String, why: &str| {
        assert!(
            a.starts_with("235"),
            "{why}: {a}\n{}\n{}",
            pf.log(),
            dc.log()
        )
    };
    let no = |a: String, why: &str| {
        assert!(
            a.starts_with("535"),
            "{why}: {a}\n{}\n{}",
            pf.log(),
            dc.log()
        )
    };
    ok(smtp("erin", "normal-pw"), "SMTP, off, password");
    ok(smtp("alice", "normal-pw"), "SMTP, web-otp, password");
    no(smtp("bob", "normal-pw"), "SMTP, web-only, password");
    no(smtp("carol", "normal-pw"), "SMTP, app-passwords, password");
    ok(smtp("carol", &app_pw), "SMTP, app-passwords, app password");
    no(smtp("dave", "normal-pw"), "SMTP, everywhere, password");
    ok(smtp("dave", &otp(1)), "SMTP, everywhere, PIN+OTP");
    no(
        smtp("dave", &otp(1)),
        "SMTP, everywhere, the used code again",
    );

    // Postfix first: its smtpd processes stay connected to Dovecot's auth process, which
    // (and the stats process it talks to) would otherwise outlive the master.
    drop(pf);
    drop(dc);
    otpd.stop();
    let a = audit(&env);
    assert!(a.contains("\"service\":\"mail\""), "{a}");
    assert!(a.contains("\"service\":\"web\""), "{a}");
}

/// Dovecot 2.4 is not installable on Debian 12, so its variant cannot be checked by
/// `doveconf`. What can be checked without it: no 2.3-only syntax is left, it says what the
/// tested 2.3 file says in 2.4's words, it leaves `dovecot_config_version` to dovecot.conf
/// (2.4 wants that setting first), and its braces balance.
#[test]
fn dovecot_2_4_variant_has_no_2_3_syntax_and_says_what_the_2_3_file_says() {
    let read = |p: &str| std::fs::read_to_string(products::repo().join(p)).expect("read");
    let v23 = read("conf/dovecot/90-auth-otpd.conf");
    let v24 = read("conf/dovecot/2.4/90-auth-otpd.conf");
    let settings = |text: &str| -> Vec<String> {
        text.lines()
            .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    };
    let s24 = settings(&v24);
    let s23 = settings(&v23);
    for gone in [
        "driver =",
        "args =",
        "disable_plaintext_auth",
        "dovecot_config_version",
    ] {
        assert!(
            !s24.iter().any(|l| l.starts_with(gone)),
            "{gone} in the 2.4 file"
        );
    }
    for line in [
        "auth_mechanisms = plain login",
        "auth_allow_cleartext = no",
        "passdb pam {",
        "service_name = dovecot",
        "userdb passwd {",
        "auth_cache_size = 0",
        "unix_listener /var/spool/postfix/private/auth {",
    ] {
        assert!(
            s24.iter().any(|l| l == line),
            "{line:?} missing in the 2.4 file"
        );
    }
    for shared in [
        "auth_mechanisms = plain login",
        "auth_cache_size = 0",
        "unix_listener /var/spool/postfix/private/auth {",
        "mode = 0660",
        "user = postfix",
        "group = postfix",
    ] {
        assert!(
            s23.iter().any(|l| l == shared),
            "{shared:?} missing in the 2.3 file"
        );
    }
    let opened = s24.iter().filter(|l| l.ends_with('{')).count();
    let closed = s24.iter().filter(|l| *l == "}").count();
    assert_eq!(opened, closed, "braces of the 2.4 file");
}

/// The rule docs/mail.md states for Dovecot 2.3's auth cache: it caches PAM logins only when
/// the passdb's args carry `cache_key=`, and then a used code logs in again without reaching
/// otpd. With the cache on and no cache key, otpd still sees (and refuses) the replay.
#[test]
fn dovecot_caches_pam_logins_only_with_cache_key_and_then_replays_a_used_code() {
    let env = otpd_env();
    env.enrol("dave", "1234", "hotp", "everywhere");
    let otpd = env.start();
    {
        let dc = Dovecot::start_with(&env.socket_path(), "1M", "%s");
        dc.ok(
            MAIL_CLIENT,
            "dave",
            &otp(0),
            "PIN+OTP, cache on, no cache_key",
        );
        dc.no(MAIL_CLIENT, "dave", &otp(0), "the used code, no cache_key");
    }
    assert_eq!(audit_count(&env, "dave"), 2, "both logins reached otpd");
    {
        let dc = Dovecot::start_with(&env.socket_path(), "1M", "cache_key=%u%w %s");
        dc.ok(MAIL_CLIENT, "dave", &otp(1), "PIN+OTP, cache_key");
        dc.ok(
            OTHER_WEBMAIL,
            "dave",
            &otp(1),
            "the used code again, from another address: Dovecot's cache answers",
        );
    }
    assert_eq!(
        audit_count(&env, "dave"),
        3,
        "the replay never reached otpd: {:?}",
        common::audit_of(&env, "dave")
    );
    otpd.stop();
}
