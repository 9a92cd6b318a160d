//! Every snippet in conf/ (other than Dovecot's, in tests/dovecot.rs) proven by its own
//! product, Debian 12's package, on a private configuration: the install steps as the docs
//! print them (run against copies of the stock configuration), then the product checks the
//! result and, where it can run on 127.0.0.1 without touching the system, a real login goes
//! through it to the real otpd.
//!
//! - sshd: `sshd -t` on a copy of /etc/ssh with the docs' drop-in; conf/pam.d/sshd with
//!   Debian's common-* files through pamtester (under pam_wrapper) at three levels.
//! - FreeRADIUS: `freeradius -XC` on a copy of /etc/freeradius/3.0 with conf/freeradius/
//!   proxy.conf, then a private FreeRADIUS whose stock default site proxies a radclient login
//!   to otpd.
//! - pam_radius_auth and OpenVPN: conf/openvpn/pam.d-openvpn and pam_radius_auth.conf to otpd
//!   with the client entry conf/openvpn/README.md gives, through pamtester and through a
//!   real OpenVPN server (auth-pam plugin, conf/openvpn/server.conf) and client.
//! - strongSwan: a private charon-systemd, `swanctl --load-all` with the shipped files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job
mod common;
mod products;

use common::Env;
use products::{docs_block, repo, run, run_block};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// pam_wrapper picks its runtime dir /tmp/pam.X racily at process start: one pam_wrapper
/// user of this test binary at a time.
static PAM_WRAPPER: Mutex<()> = Mutex::new(());
const HARNESS_BROKEN: &[&str] = &[
    "Failed to create pam_wrapper config dir",
    "Failed to copy config files",
    "Critical error - immediate abort",
];

fn otp(counter: u64) -> String {
    format!("1234{}", common::hotp_code(counter))
}

fn tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    // Products that drop privileges (freerad, postfix, dovecot's helpers) read below it.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

/// `pamtester [-I rhost=..] SERVICE USER OPS...` under pam_wrapper with `services` as the
/// PAM directory; the password on standard input. (success, output).
fn pamtester(services: &Path, args: &[&str], stdin: &str) -> (bool, String) {
    common::require("pamtester", "pamtester");
    let _turn = PAM_WRAPPER.lock().unwrap_or_else(|p| p.into_inner());
    let mut last = (false, String::new());
    for _ in 0..3 {
        let mut child = Command::new("pamtester")
            .args(args)
            .env("LD_PRELOAD", common::pam_wrapper_lib())
            .env("PAM_WRAPPER", "1")
            .env("PAM_WRAPPER_SERVICE_DIR", services)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pamtester");
        if let Some(mut input) = child.stdin.take() {
            let _ = input.write_all(stdin.as_bytes());
        }
        let out = child.wait_with_output().expect("pamtester");
        last = (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        );
        if !HARNESS_BROKEN.iter().any(|s| last.1.contains(s)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    last
}

/// The non-comment, non-empty lines of a PAM file, trailing comments and spacing removed.
fn pam_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
        .filter(|l| !l.is_empty())
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

// ---------------------------------------------------------------------------------------
// sshd

#[test]
fn sshd_snippet_passes_sshd_t_and_its_pam_stack_works_with_debians_common_files() {
    products::require_file("/usr/sbin/sshd", "openssh-server");
    common::require("pamtester", "pamtester");
    let dir = tempdir();
    let d = dir.path();
    let etc_ssh = d.join("etc-ssh");
    let pam_dir = d.join("pam.d");
    std::fs::create_dir(&pam_dir).expect("mkdir");
    let (ok, out) = run(Command::new("cp").arg("-a").arg("/etc/ssh").arg(&etc_ssh));
    assert!(ok, "copy /etc/ssh: {out}");
    // The copy's Include must read the copy's drop-ins; sshd also wants its privilege
    // separation directory, which Debian's unit creates at start.
    let main = std::fs::read_to_string(etc_ssh.join("sshd_config")).expect("sshd_config");
    assert!(
        main.contains("Include /etc/ssh/sshd_config.d/*.conf"),
        "Debian's sshd_config includes sshd_config.d first: the docs rely on it"
    );
    std::fs::write(
        etc_ssh.join("sshd_config"),
        main.replace("/etc/ssh/", &format!("{}/", etc_ssh.display())),
    )
    .expect("sshd_config");
    std::fs::create_dir_all("/run/sshd").expect("/run/sshd");
    // Test-only settings, in a drop-in that sorts first: a private port, key and pid file.
    let (ok, out) = run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(d.join("hostkey")));
    assert!(ok, "ssh-keygen: {out}");
    std::fs::write(
        etc_ssh.join("sshd_config.d/00-test.conf"),
        format!(
            "Port {}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\n",
            common::free_tcp_port(),
            d.join("hostkey").display(),
            d.join("sshd.pid").display()
        ),
    )
    .expect("test drop-in");

    let sshd = format!("/usr/sbin/sshd -f {}/sshd_config", etc_ssh.display());
    run_block(
        &docs_block("docs/mail.md", "sshd-install"),
        &[
            ("/etc/pam.d", pam_dir.display().to_string()),
            ("/etc/ssh", etc_ssh.display().to_string()),
            ("sshd -t", format!("{sshd} -t")),
        ],
    );
    let (ok, effective) = run(Command::new("/usr/sbin/sshd")
        .arg("-T")
        .arg("-f")
        .arg(etc_ssh.join("sshd_config")));
    assert!(ok, "sshd -T: {effective}");
    assert!(effective.contains("\nusepam yes"), "{effective}");
    assert!(
        effective.contains("\nkbdinteractiveauthentication yes"),
        "the drop-in must win over Debian's `no`: {effective}"
    );

    // The installed file is Debian's with `@include common-auth` replaced by otpd and
    // pam_unix, and otpd's account line added: every other line of Debian's is kept.
    let installed = std::fs::read_to_string(pam_dir.join("sshd")).expect("installed");
    let shipped = std::fs::read_to_string(repo().join("conf/pam.d/sshd")).expect("shipped");
    assert_eq!(installed, shipped);
    let debian = pam_lines(&std::fs::read_to_string("/etc/pam.d/sshd").expect("Debian's"));
    let ours = pam_lines(&installed);
    let kept: Vec<&String> = debian
        .iter()
        .filter(|l| l.as_str() != "@include common-auth")
        .collect();
    let ours_without_otpd: Vec<&String> = ours
        .iter()
        .filter(|l| !l.contains("pam_otpd.so") && !l.starts_with("auth "))
        .collect();
    assert_eq!(ours_without_otpd, kept, "Debian's lines, in Debian's order");
    assert!(
        !ours.iter().any(|l| l == "@include common-auth"),
        "{ours:?}"
    );
    assert!(ours.contains(&"account required pam_nologin.so".to_string()));

    // Debian's common files next to it, as @include finds them; the test's paths in ours.
    for f in [
        "common-account",
        "common-session",
        "common-password",
        "common-auth",
    ] {
        std::fs::copy(Path::new("/etc/pam.d").join(f), pam_dir.join(f)).expect("copy common");
    }
    // "nobody" is a system user whose shadow entry pam_unix's account check accepts; its
    // normal password lives in pam_matrix's file, which stands in for pam_unix in `auth`.
    let env = Env::new("");
    env.enrol("nobody", "1234", "hotp", "everywhere");
    let module = common::pam_module_path();
    let matrix = common::pam_wrapper_module("pam_matrix.so");
    std::fs::write(d.join("passdb"), "nobody:normal-pw:sshd\n").expect("passdb");
    let mut pam = String::new();
    for line in installed.lines() {
        let line = if line.starts_with('#') {
            line.to_string()
        } else if line.contains("pam_otpd.so") {
            line.replace(
                "pam_otpd.so",
                &format!(
                    "{} socket={}",
                    module.display(),
                    env.socket_path().display()
                ),
            )
        } else if line.starts_with("auth") && line.contains("pam_unix.so") {
            line.replace(
                "pam_unix.so",
                &format!("{} passdb={}", matrix.display(), d.join("passdb").display()),
            )
        } else {
            line.to_string()
        };
        pam.push_str(&line);
        pam.push('\n');
    }
    std::fs::write(pam_dir.join("sshd"), pam).expect("PAM file");
    let otpd = env.start();
    // The password twice: pam_matrix, unlike pam_unix with try_first_pass, prompts again
    // instead of reusing what pam_otpd read.
    let ssh = |ops: &[&str], password: &str| {
        let mut args = vec!["-I", "rhost=127.0.0.1", "sshd", "nobody"];
        args.extend_from_slice(ops);
        pamtester(&pam_dir, &args, &format!("{password}\n{password}\n"))
    };

    // everywhere: PIN+OTP, then account management through otpd, nologin and common-account.
    let (ok, out) = ssh(&["authenticate", "acct_mgmt"], &otp(0));
    assert!(ok, "everywhere, PIN+OTP: {out}");
    let (ok, out) = ssh(&["authenticate"], "normal-pw");
    assert!(
        !ok && out.contains("Authentication failure"),
        "everywhere, password: {out}"
    );
    // off: otpd defers and the normal password decides.
    env.ok(&["user", "set", "nobody", "--level", "off"], None);
    let (ok, out) = ssh(&["authenticate", "acct_mgmt"], "normal-pw");
    assert!(ok, "off, password: {out}");
    let (ok, out) = ssh(&["authenticate"], "wrong-pw");
    assert!(!ok, "off, wrong password: {out}");
    // web-only: SSH is switched off, key logins too (they run only the account phase).
    env.ok(&["user", "set", "nobody", "--level", "web-only"], None);
    let (ok, out) = ssh(&["acct_mgmt"], "");
    assert!(
        !ok && out.contains("Permission denied"),
        "web-only, key login: {out}"
    );
    let (ok, out) = ssh(&["authenticate"], "normal-pw");
    assert!(!ok, "web-only, password: {out}");

    otpd.stop();
    let audit = common::audit_of(&env, "nobody");
    assert!(
        audit.iter().all(|r| r["service"] == "ssh"),
        "service=ssh names the class: {audit:?}"
    );
}

// ---------------------------------------------------------------------------------------
// FreeRADIUS

/// The otpd client entry a doc gives (a ```toml block), with the test's address and secret.
fn client_entry(file: &str, marker: &str, address: &str, secret: &str) -> String {
    let block = docs_block(file, marker);
    let mut out = String::new();
    for line in block.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        match key {
            "address" => out.push_str(&format!("address = \"{address}\"\n")),
            "secret" => out.push_str(&format!("secret = \"{secret}\"\n")),
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// An otpd with RADIUS on 127.0.0.1:free port and `clients` as its client table.
fn radius_env(clients: &str) -> (Env, u16) {
    let port = common::free_udp_port();
    let env = Env::with_tables(
        "",
        &format!("[radius]\nlisten = [\"127.0.0.1:{port}\"]\n{clients}"),
    );
    (env, port)
}

#[test]
fn freeradius_proxies_a_login_through_the_stock_default_site_to_otpd() {
    products::require_file("/usr/sbin/freeradius", "freeradius");
    common::require("radclient", "freeradius-utils");
    let secret = "proxy-to-otpd-secret-0123";
    let clients = client_entry(
        "docs/radius.md",
        "freeradius-otpd-client",
        "127.0.0.1",
        secret,
    );
    assert!(
        clients.contains("require_message_authenticator = true"),
        "{clients}"
    );
    let (env, otpd_port) = radius_env(&clients);
    env.enrol("alice", "1234", "hotp", "everywhere");

    let dir = tempdir();
    let raddb = dir.path().join("raddb");
    let (ok, out) = run(Command::new("cp")
        .arg("-a")
        .arg("/etc/freeradius/3.0")
        .arg(&raddb));
    assert!(ok, "copy /etc/freeradius/3.0: {out}");
    let printed = run_block(
        &docs_block("docs/radius.md", "freeradius-install"),
        &[
            ("/etc/freeradius/3.0", raddb.display().to_string()),
            (
                "freeradius -XC",
                format!("freeradius -XC -d {}", raddb.display()),
            ),
        ],
    );
    assert!(
        printed.contains("Configuration appears to be OK"),
        "{printed}"
    );
    // The edits the docs ask for: otpd's address, port and secret.
    let installed = raddb.join("otpd-proxy.conf");
    let text = std::fs::read_to_string(&installed).expect("installed snippet");
    let shipped =
        std::fs::read_to_string(repo().join("conf/freeradius/proxy.conf")).expect("shipped");
    assert_eq!(text, shipped);
    let edited = text
        .replace("ipaddr = 192.0.2.5", "ipaddr = 127.0.0.1")
        .replace("port = 1812", &format!("port = {otpd_port}"))
        .replace("\"a-long-random-shared-secret\"", &format!("\"{secret}\""));
    assert_ne!(edited, text);
    std::fs::write(&installed, edited).expect("edit");
    let (ok, out) = run(Command::new("freeradius").arg("-XC").arg("-d").arg(&raddb));
    assert!(
        ok && out.contains("Configuration appears to be OK"),
        "{out}"
    );

    let otpd = env.start();
    // A private FreeRADIUS: the stock sites' listen sections moved to 127.0.0.1 and free
    // ports (the command line's -i/-p would bypass the default site), nothing else changed.
    let ports: Vec<u16> = (0..5).map(|_| common::free_udp_port()).collect();
    let port = ports[0];
    let site = raddb.join("sites-available/default");
    let mut text = std::fs::read_to_string(&site)
        .expect("default site")
        .replace("ipaddr = *", "ipaddr = 127.0.0.1")
        .replace("ipv6addr = ::", "ipaddr = 127.0.0.1 #");
    for p in &ports[..4] {
        text = text.replacen("port = 0\n", &format!("port = {p}\n"), 1);
    }
    assert!(
        !text.contains("port = 0\n"),
        "four listen sections in the stock site"
    );
    std::fs::write(&site, text).expect("default site");
    let inner = raddb.join("sites-available/inner-tunnel");
    let text = std::fs::read_to_string(&inner).expect("inner-tunnel");
    assert!(
        text.contains("port = 18120"),
        "the stock inner-tunnel listener"
    );
    std::fs::write(
        &inner,
        text.replace("port = 18120", &format!("port = {}", ports[4])),
    )
    .expect("inner-tunnel");
    let log_path = dir.path().join("radiusd.log");
    let log_file = std::fs::File::create(&log_path).expect("log");
    let fr = products::Running(
        Command::new("freeradius")
            .args(["-X", "-d"])
            .arg(&raddb)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file)
            .spawn()
            .expect("start freeradius"),
    );
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    products::wait_for(20, "freeradius did not become ready", log, || {
        log().contains("Ready to process requests")
    });
    // The stock clients.conf knows 127.0.0.1 with secret "testing123".
    let login = |user: &str, password: &str| {
        common::radclient(
            port,
            "auth",
            "testing123",
            &format!("User-Name = \"{user}\", User-Password = \"{password}\"\n"),
            5,
        )
    };
    let (_, out) = login("alice@otp.example.org", &otp(0));
    assert!(
        out.contains("Received Access-Accept"),
        "PIN+OTP through the proxy: {out}\n--- radiusd:\n{}",
        log()
    );
    let (_, out) = login("alice@otp.example.org", &otp(0));
    assert!(
        out.contains("Received Access-Reject"),
        "the used code again: {out}"
    );
    // The realm without a dot is what the stock filter_username refuses.
    let (_, out) = login("alice@otp", &otp(1));
    assert!(out.contains("Received Access-Reject"), "{out}");
    assert!(
        log().contains("Realm does not have at least one dot separator"),
        "{}",
        log()
    );
    drop(fr);

    // The snippet's commented DEFAULT realm, uncommented as it says: names without a realm
    // go to otpd too.
    let text = std::fs::read_to_string(&installed).expect("installed");
    let commented = "#realm DEFAULT {\n#\tauth_pool = otpd_pool\n#\tnostrip\n#}";
    assert!(text.contains(commented), "{text}");
    let uncommented = text.replace(commented, &commented.replace('#', ""));
    std::fs::write(&installed, uncommented).expect("DEFAULT realm");
    let log_file = std::fs::File::create(&log_path).expect("log");
    let fr = products::Running(
        Command::new("freeradius")
            .args(["-X", "-d"])
            .arg(&raddb)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file)
            .spawn()
            .expect("start freeradius"),
    );
    products::wait_for(20, "freeradius did not become ready", log, || {
        log().contains("Ready to process requests")
    });
    let (_, out) = login("alice", &otp(1));
    assert!(
        out.contains("Received Access-Accept"),
        "a name without a realm, DEFAULT realm: {out}\n--- radiusd:\n{}",
        log()
    );
    // Another realm is kept in the name: otpd knows no "alice@elsewhere.org".
    let (_, out) = login("alice@elsewhere.org", &otp(2));
    assert!(out.contains("Received Access-Reject"), "{out}");
    drop(fr);
    otpd.stop();
    let audit = common::audit_of(&env, "alice");
    assert_eq!(
        audit.len(),
        3,
        "three of alice's logins reached otpd: {audit:?}"
    );
    let other = common::audit_of(&env, "alice@elsewhere.org");
    assert_eq!(
        other.len(),
        1,
        "the other realm's name, as typed: {other:?}"
    );
    assert_eq!(audit[0]["verdict"], "accept", "{audit:?}");
    assert_eq!(audit[0]["client"], "freeradius-proxy", "{audit:?}");
    assert_eq!(audit[2]["verdict"], "accept", "{audit:?}");
}

// ---------------------------------------------------------------------------------------
// pam_radius_auth and OpenVPN

/// conf/openvpn's PAM file and pam_radius_auth.conf installed as its README says into `d`,
/// then pointed at otpd (the edit the README asks for). Returns the PAM directory.
fn install_openvpn_pam(d: &Path, otpd_port: u16, secret: &str) -> PathBuf {
    let pam_dir = d.join("pam.d");
    std::fs::create_dir_all(&pam_dir).expect("mkdir");
    let conf = d.join("pam_radius_auth.conf");
    run_block(
        &docs_block("conf/openvpn/README.md", "openvpn-install"),
        &[
            ("/etc/pam.d", pam_dir.display().to_string()),
            ("/etc/pam_radius_auth.conf", conf.display().to_string()),
        ],
    );
    let installed = std::fs::read_to_string(&conf).expect("installed conf");
    std::fs::write(
        &conf,
        installed.replace(
            "192.0.2.5:1812   a-long-random-shared-secret",
            &format!("127.0.0.1:{otpd_port}   {secret}"),
        ),
    )
    .expect("edit conf");
    let pam = std::fs::read_to_string(pam_dir.join("openvpn")).expect("installed PAM file");
    assert_eq!(
        pam,
        std::fs::read_to_string(repo().join("conf/openvpn/pam.d-openvpn")).expect("shipped")
    );
    // The module by its installed path (pam_wrapper's libpam looks in its own directory).
    std::fs::write(
        pam_dir.join("openvpn"),
        pam.replace("/etc/pam_radius_auth.conf", &conf.display().to_string())
            .replace(
                "pam_radius_auth.so",
                "/lib/x86_64-linux-gnu/security/pam_radius_auth.so",
            ),
    )
    .expect("PAM file");
    pam_dir
}

#[test]
fn pam_radius_auth_logs_in_to_otpd_with_the_documented_client_entry() {
    products::require_file(
        "/lib/x86_64-linux-gnu/security/pam_radius_auth.so",
        "libpam-radius-auth",
    );
    let secret = "openvpn-gw-to-otpd-secret";
    let clients = client_entry(
        "conf/openvpn/README.md",
        "pam-radius-otpd-client",
        "127.0.0.1",
        secret,
    );
    assert!(
        clients.contains("require_message_authenticator = false"),
        "{clients}"
    );
    let (env, otpd_port) = radius_env(&clients);
    env.enrol("alice", "1234", "hotp", "everywhere");
    let dir = tempdir();
    let pam_dir = install_openvpn_pam(dir.path(), otpd_port, secret);
    let otpd = env.start();

    let auth = |password: &str| {
        pamtester(
            &pam_dir,
            &["openvpn", "alice", "authenticate", "acct_mgmt"],
            &format!("{password}\n"),
        )
    };
    let (ok, out) = auth(&otp(0));
    assert!(
        ok,
        "PIN+OTP through pam_radius_auth: {out}\n{}",
        otpd.log_text()
    );
    let start = Instant::now();
    let (ok, out) = auth(&otp(0));
    assert!(
        !ok && out.contains("Authentication failure"),
        "used code: {out}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "an answer, not a timeout"
    );
    let (ok, _) = auth("1234000000");
    assert!(!ok, "wrong code");
    otpd.stop();

    // Why the entry says false: pam_radius_auth 2.0.0 sends no Message-Authenticator, and
    // otpd drops its requests when the client requires one (the login times out).
    let strict = clients.replace(
        "require_message_authenticator = false",
        "require_message_authenticator = true",
    );
    let config = std::fs::read_to_string(&env.config).expect("config");
    std::fs::write(&env.config, config.replace(&clients, &strict)).expect("config");
    let otpd = env.start();
    let (ok, out) = auth(&otp(1));
    assert!(!ok, "with require_message_authenticator = true: {out}");
    let log = otpd.log_text();
    assert!(
        log.contains("dropped: no Message-Authenticator, and this client must send one"),
        "otpd's log: {log}"
    );
    otpd.stop();
    let audit = common::audit_of(&env, "alice");
    assert_eq!(
        audit.len(),
        3,
        "the strict client's request was dropped: {audit:?}"
    );
}

#[test]
fn openvpn_auth_pam_plugin_with_the_shipped_server_conf_logs_a_client_in_through_otpd() {
    products::require_file("/usr/sbin/openvpn", "openvpn");
    products::require_file(
        "/lib/x86_64-linux-gnu/security/pam_radius_auth.so",
        "libpam-radius-auth",
    );
    products::require_file("/dev/net/tun", "a tun device (the kernel's tun module)");
    common::require("openssl", "openssl");
    let secret = "openvpn-gw-to-otpd-secret";
    let clients = client_entry(
        "conf/openvpn/README.md",
        "pam-radius-otpd-client",
        "127.0.0.1",
        secret,
    );
    let (env, otpd_port) = radius_env(&clients);
    env.enrol("alice", "1234", "hotp", "everywhere");
    let dir = tempdir();
    let d = dir.path();
    let pam_dir = install_openvpn_pam(d, otpd_port, secret);

    // A throwaway CA and server certificate.
    let sh = format!(
        "cd {d} && openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem \
         -subj /CN=otpd-test-ca -days 2 && \
         openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=server && \
         openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
         -out server.pem -days 2",
        d = d.display()
    );
    let (ok, out) = run(Command::new("sh").arg("-c").arg(&sh));
    assert!(ok, "certificates: {out}");

    // The server: the test's transport (UDP on 127.0.0.1, a tun device that gets no address
    // or route: ifconfig-noexec, route-noexec) followed by the shipped lines unchanged.
    let port = common::free_udp_port();
    let shipped =
        std::fs::read_to_string(repo().join("conf/openvpn/server.conf")).expect("shipped");
    let server = format!(
        "mode server\ntls-server\nproto udp4\nlocal 127.0.0.1\nport {port}\n\
         dev tun\ntopology subnet\nifconfig 10.201.0.1 255.255.255.0\nifconfig-noexec\n\
         route-noexec\nifconfig-pool 10.201.0.2 10.201.0.200 255.255.255.0\n\
         ca {d}/ca.pem\ncert {d}/server.pem\nkey {d}/server.key\ndh none\n\
         verify-client-cert none\nverb 3\n{shipped}",
        d = d.display()
    );
    std::fs::write(d.join("server.conf"), server).expect("server.conf");
    let otpd = env.start();
    let _turn = PAM_WRAPPER.lock().unwrap_or_else(|p| p.into_inner());
    let server_log = d.join("server.log");
    let server = Command::new("openvpn")
        .arg("--config")
        .arg(d.join("server.conf"))
        .arg("--log")
        .arg(&server_log)
        .env("LD_PRELOAD", common::pam_wrapper_lib())
        .env("PAM_WRAPPER", "1")
        .env("PAM_WRAPPER_SERVICE_DIR", &pam_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start openvpn");
    let server = products::Running(server);
    let slog = || std::fs::read_to_string(&server_log).unwrap_or_default();
    products::wait_for(20, "the OpenVPN server did not start", slog, || {
        slog().contains("Initialization Sequence Completed")
    });
    assert!(
        slog().contains("PLUGIN AUTH-PAM: BACKGROUND: initialization succeeded"),
        "{}",
        slog()
    );

    // A client on --dev null, which configures nothing (ifconfig-noexec, route-noexec) and
    // stays connected until stopped. `wait_for` is the server log line to wait for.
    let client = |user: &str, password: &str, n: u32, extra: &str, wait_for: &str| -> String {
        let up = d.join(format!("up{n}"));
        std::fs::write(&up, format!("{user}\n{password}\n")).expect("credentials");
        std::fs::set_permissions(&up, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let conf = d.join(format!("client{n}.conf"));
        std::fs::write(
            &conf,
            format!(
                "client\ndev null\nifconfig-noexec\nroute-noexec\nproto udp4\n\
                 remote 127.0.0.1 {port}\nca {ca}\nauth-user-pass {up}\n\
                 verify-x509-name server name\nconnect-retry-max 1\nhand-window 15\nverb 3\n\
                 {extra}",
                ca = d.join("ca.pem").display(),
                up = up.display()
            ),
        )
        .expect("client.conf");
        let mut c = products::Running(
            Command::new("openvpn")
                .arg("--config")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("openvpn client"),
        );
        let deadline = Instant::now() + Duration::from_secs(25);
        while Instant::now() < deadline && !slog().contains(wait_for) {
            if let Ok(Some(_)) = c.0.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        products::stop_child(&mut c.0);
        let mut out = String::new();
        if let Some(mut stdout) = c.0.stdout.take() {
            let _ = std::io::Read::read_to_string(&mut stdout, &mut out);
        }
        out
    };
    // PIN+OTP logs in. A TLS renegotiation (after 6 s here, hourly by default) is
    // authenticated with the token auth-gen-token handed out, not with the spent code: otpd
    // is not asked again (the audit below has one record for it).
    let out = client(
        "alice",
        &otp(0),
        1,
        "reneg-sec 6\n",
        "auth-token authentication succeeded",
    );
    assert!(
        slog().contains("TLS: Username/Password authentication succeeded for username 'alice'"),
        "PIN+OTP: client:\n{out}\n--- server:\n{}",
        slog()
    );
    assert!(
        slog().contains("TLS: Username/auth-token authentication succeeded for username 'alice'"),
        "renegotiation with the auth token: client:\n{out}\n--- server:\n{}",
        slog()
    );
    let out = client("alice", &otp(0), 2, "", "verification failed");
    assert!(
        slog().contains("TLS Auth Error: Auth Username/Password verification failed for peer"),
        "the used code again: client:\n{out}\n--- server:\n{}",
        slog()
    );
    drop(server);
    drop(_turn);
    otpd.stop();
    let audit = common::audit_of(&env, "alice");
    assert_eq!(audit.len(), 2, "{audit:?}");
    assert_eq!(audit[0]["verdict"], "accept", "{audit:?}");
    assert_eq!(audit[0]["client"], "openvpn-gw", "{audit:?}");
    assert_eq!(audit[1]["verdict"], "reject", "{audit:?}");
}

// ---------------------------------------------------------------------------------------
// strongSwan

/// A private charon-systemd: its own strongswan.conf (plugin settings from `plugin_dir`,
/// the directory the docs install into), vici socket and IKE ports, log in a file. Stopped
/// by its pid.
struct Charon {
    child: Child,
    vici: PathBuf,
    log: PathBuf,
}

impl Charon {
    fn start(d: &Path, plugin_dir: &Path) -> Charon {
        products::require_file("/usr/sbin/charon-systemd", "charon-systemd");
        let vici = d.join("charon.vici");
        let log = d.join("charon.log");
        let conf = d.join("strongswan.conf");
        // Only the plugins the snippets need (and what IKE needs), not Debian's whole list:
        // Debian enables forecast, farp, dhcp ..., which act on the host's network.
        std::fs::write(
            &conf,
            format!(
                "charon-systemd {{\n  load_modular = yes\n  port = {p}\n  port_nat_t = {q}\n  \
                 install_routes = no\n  install_virtual_ip = no\n  \
                 filelog {{\n    log {{\n      path = {log}\n      default = 1\n      cfg = 2\n    \
                 }}\n  }}\n  plugins {{\n    include {plugins}/*.conf\n    \
                 vici {{\n      load = yes\n      socket = unix://{vici}\n    }}\n  }}\n}}\n",
                p = common::free_udp_port(),
                q = common::free_udp_port(),
                log = log.display(),
                plugins = plugin_dir.display(),
                vici = vici.display()
            ),
        )
        .expect("strongswan.conf");
        let child = Command::new("/usr/sbin/charon-systemd")
            .env("STRONGSWAN_CONF", &conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start charon-systemd");
        let mut c = Charon { child, vici, log };
        let vici = c.vici.clone();
        let logp = c.log.clone();
        products::wait_for(
            20,
            "charon did not open its vici socket",
            || std::fs::read_to_string(&logp).unwrap_or_default(),
            || vici.exists(),
        );
        if let Ok(Some(st)) = c.child.try_wait() {
            panic!("charon exited ({st}):\n{}", c.log());
        }
        c
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn swanctl(&self, swanctl_dir: &Path, args: &[&str]) -> (bool, String) {
        run(Command::new("swanctl")
            .args(args)
            .arg("--uri")
            .arg(format!("unix://{}", self.vici.display()))
            .env("SWANCTL_DIR", swanctl_dir))
    }
}

impl Drop for Charon {
    fn drop(&mut self) {
        products::stop_child(&mut self.child);
    }
}

/// The IKE-level line of `swanctl --list-conns` for one connection.
fn conn_line<'a>(list: &'a str, name: &str) -> &'a str {
    list.lines()
        .find(|l| l.starts_with(&format!("{name}:")))
        .unwrap_or_else(|| panic!("{name} not loaded:\n{list}"))
}

#[test]
fn strongswan_loads_the_shipped_plugin_and_swanctl_files_into_a_private_charon() {
    products::require_file("/usr/sbin/swanctl", "strongswan-swanctl");
    products::require_file(
        "/usr/lib/ipsec/plugins/libstrongswan-eap-radius.so",
        "libcharon-extra-plugins",
    );
    common::require("openssl", "openssl");
    let dir = tempdir();
    let d = dir.path();
    // Private copies of the two directories the docs install into, emptied of Debian's
    // files (the test loads only the plugins it needs: see Charon::start).
    let plugin_dir = d.join("strongswan.d/charon");
    let swanctl_dir = d.join("swanctl");
    for sub in ["conf.d", "x509", "private"] {
        std::fs::create_dir_all(swanctl_dir.join(sub)).expect("mkdir");
    }
    std::fs::create_dir_all(&plugin_dir).expect("mkdir");
    std::fs::write(swanctl_dir.join("swanctl.conf"), "include conf.d/*.conf\n")
        .expect("swanctl.conf");
    // What IKE with certificates needs, besides the snippets' plugins.
    let base = [
        "random",
        "nonce",
        "x509",
        "pubkey",
        "pkcs1",
        "pkcs8",
        "pem",
        "gmp",
        "md5",
        "sha1",
        "sha2",
        "hmac",
        "aes",
        "kdf",
        "kernel-netlink",
        "socket-default",
        "attr",
        "eap-identity",
    ];
    for p in base {
        std::fs::write(
            plugin_dir.join(format!("{p}.conf")),
            format!("{p} {{\n  load = yes\n}}\n"),
        )
        .expect("plugin conf");
    }
    let sh = format!(
        "cd {s} && openssl req -x509 -newkey rsa:2048 -nodes -keyout private/gateway.key \
         -out x509/gateway.pem -subj /CN=vpn.example.org -addext subjectAltName=DNS:vpn.example.org \
         -days 2",
        s = swanctl_dir.display()
    );
    let (ok, out) = run(Command::new("sh").arg("-c").arg(&sh));
    assert!(ok, "certificate: {out}");

    let block = docs_block("conf/strongswan/README.md", "strongswan-install");
    let (install, load): (Vec<&str>, Vec<&str>) =
        block.lines().partition(|l| !l.starts_with("swanctl"));
    run_block(
        &install.join("\n"),
        &[
            ("/etc/strongswan.d/charon", plugin_dir.display().to_string()),
            ("/etc/swanctl", swanctl_dir.display().to_string()),
        ],
    );
    // charon reads the plugin files at start (the docs' restart), then the docs' swanctl.
    let charon = Charon::start(d, &plugin_dir);
    assert_eq!(load, vec!["swanctl --load-all"], "{block}");
    let (ok, out) = charon.swanctl(&swanctl_dir, &["--load-all"]);
    assert!(
        ok,
        "swanctl --load-all: {out}\n--- charon:\n{}",
        charon.log()
    );
    assert!(out.contains("successfully loaded 2 connections"), "{out}");
    assert!(out.contains("successfully loaded 2 pools"), "{out}");
    let log = charon.log();
    assert!(
        log.contains("loaded 1 RADIUS server configuration"),
        "{log}"
    );
    for plugin in ["eap-radius", "eap-gtc", "xauth-pam"] {
        assert!(
            log.lines()
                .any(|l| l.contains("loaded plugins:") && l.contains(plugin)),
            "{plugin}: {log}"
        );
    }
    let (ok, list) = charon.swanctl(&swanctl_dir, &["--list-conns"]);
    assert!(ok, "{list}");
    // IKEv1: neither reauthentication nor rekeying (which is reauthentication in IKEv1) of
    // the IKE SA; IKEv2: rekeying without reauthentication.
    let v1 = conn_line(&list, "xauth-otp");
    assert!(
        v1.contains("IKEv1") && v1.contains("no reauthentication"),
        "{v1}"
    );
    assert!(!v1.contains("rekeying every"), "{v1}");
    let v2 = conn_line(&list, "ikev2-otp");
    assert!(v2.contains("no reauthentication"), "{v2}");
    assert!(list.contains("remote XAuth authentication"), "{list}");
    assert!(list.contains("remote EAP_GTC authentication"), "{list}");

    // Each swanctl file alone: the EAP-GTC one defines the pool it uses.
    std::fs::remove_file(swanctl_dir.join("conf.d/otpd-xauth.conf")).expect("rm");
    let (ok, out) = charon.swanctl(&swanctl_dir, &["--load-all"]);
    assert!(
        ok && out.contains("successfully loaded 1 connections"),
        "{out}"
    );
    let (_, pools) = charon.swanctl(&swanctl_dir, &["--list-pools"]);
    assert!(pools.contains("otpd-eap-gtc-pool"), "{pools}");
    for file in ["swanctl-xauth.conf", "swanctl-eap-gtc.conf"] {
        let text =
            std::fs::read_to_string(repo().join("conf/strongswan").join(file)).expect("read");
        for line in text
            .lines()
            .filter(|l| l.trim_start().starts_with("pools ="))
        {
            let pool = line.split('=').nth(1).unwrap_or("").trim();
            assert!(
                text.contains(&format!("    {pool} {{")),
                "{file} uses pool {pool} without defining it"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// conf/pam.d/dovecot under another PAM service name

/// `service=mail` in conf/pam.d/dovecot: installed under a PAM service name that otpd's
/// `pam_services` do not list (Dovecot's `args = NAME`), logins still count as `mail`, in
/// `auth` and `account` alike. (tests/dovecot.rs drives the file through Dovecot itself.)
#[test]
fn dovecot_pam_file_names_its_class_under_any_service_name() {
    common::require("pamtester", "pamtester");
    let env = Env::new("");
    env.enrol("erin", "1234", "hotp", "off");
    env.enrol("bob", "1234", "hotp", "web-only");
    let dir = tempdir();
    let d = dir.path();
    let pam_dir = d.join("pam.d");
    std::fs::create_dir(&pam_dir).expect("mkdir");
    std::fs::write(
        d.join("passdb"),
        "erin:normal-pw:mailstore\nbob:normal-pw:mailstore\n",
    )
    .expect("passdb");
    let shipped = std::fs::read_to_string(repo().join("conf/pam.d/dovecot")).expect("shipped");
    let module = common::pam_module_path();
    let matrix = common::pam_wrapper_module("pam_matrix.so");
    let mut pam = String::new();
    for line in shipped.lines() {
        let line = if line.starts_with('#') {
            line.to_string()
        } else if line.contains("pam_otpd.so") {
            line.replace(
                "pam_otpd.so",
                &format!(
                    "{} socket={}",
                    module.display(),
                    env.socket_path().display()
                ),
            )
        } else if line.starts_with("auth") {
            line.replace(
                "pam_unix.so",
                &format!("{} passdb={}", matrix.display(), d.join("passdb").display()),
            )
        } else {
            line.replace("pam_unix.so", "pam_permit.so")
        };
        pam.push_str(&line);
        pam.push('\n');
    }
    std::fs::write(pam_dir.join("mailstore"), pam).expect("PAM file");
    let otpd = env.start();
    // Twice: pam_matrix prompts again where pam_unix would reuse the typed password.
    let (ok, out) = pamtester(
        &pam_dir,
        &[
            "-I",
            "rhost=198.51.100.7",
            "mailstore",
            "erin",
            "authenticate",
            "acct_mgmt",
        ],
        "normal-pw\nnormal-pw\n",
    );
    assert!(ok, "level off, normal password: {out}");
    let (ok, out) = pamtester(
        &pam_dir,
        &[
            "-I",
            "rhost=198.51.100.7",
            "mailstore",
            "bob",
            "authenticate",
        ],
        "normal-pw\nnormal-pw\n",
    );
    assert!(!ok, "web-only, mail client: {out}");
    let (ok, out) = pamtester(&pam_dir, &["mailstore", "bob", "acct_mgmt"], "");
    assert!(
        !ok && out.contains("Permission denied"),
        "web-only, account: {out}"
    );
    otpd.stop();
    let audit = common::audit_of(&env, "erin");
    assert!(
        !audit.is_empty() && audit.iter().all(|r| r["service"] == "mail"),
        "{audit:?}"
    );
}
