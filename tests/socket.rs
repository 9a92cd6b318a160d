//! The Unix socket of the real daemon: wire protocol v1 (check, account, ping), the peer
//! allow-list (SO_PEERCRED, with a client under another uid), malformed requests, the line
//! limit, the idle timeout, the connection bound, and the socket file's life cycle.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job
mod common;

use common::{plain_log, socket_call, Env};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

struct Conn {
    reader: BufReader<UnixStream>,
}

impl Conn {
    fn open(path: &Path) -> Conn {
        let s = UnixStream::connect(path).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Conn {
            reader: BufReader::new(s),
        }
    }

    fn send(&mut self, line: &[u8]) {
        self.reader.get_mut().write_all(line).expect("write");
    }

    /// The next response line, or None when the daemon closed the connection.
    fn recv(&mut self) -> Option<Value> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => None,
            Ok(_) => Some(serde_json::from_str(&line).unwrap_or_else(|e| {
                panic!("response is not JSON ({e}): {line:?}");
            })),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => None,
            Err(e) => panic!("read: {e}"),
        }
    }

    fn call(&mut self, v: &Value) -> Value {
        self.send(format!("{v}\n").as_bytes());
        self.recv().expect("an answer")
    }
}

/// The daemon's log once it contains `needle` (the log is read by another thread, a moment
/// after the daemon wrote it); fails after 5 s.
fn log_with(d: &common::Daemon, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = plain_log(d);
        if log.contains(needle) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn check(user: &str, password: &str, service: &str, rhost: Option<&str>) -> Value {
    json!({"op":"check","user":user,"password":password,"service":service,"rhost":rhost,
           "client":"pam"})
}

#[test]
fn ping_check_and_account_answer_as_documented() {
    let env = Env::new("");
    env.enrol("alice", "1234", "hotp", "everywhere");
    env.enrol("bob", "1234", "hotp", "web-only");
    let d = env.start();
    let sock = env.socket_path();

    assert_eq!(
        socket_call(&sock, &json!({"op":"ping"})),
        json!({"pong":true,"version":1})
    );
    let code = common::hotp_code(0);
    let ok = socket_call(&sock, &check("alice", &format!("1234{code}"), "vpn", None));
    assert_eq!(ok["verdict"], "accept", "{ok}");
    assert_eq!(ok["message"], "Login accepted");
    assert!(
        ok.get("reason").is_none(),
        "the reason is not for the wire: {ok}"
    );
    let replay = socket_call(&sock, &check("alice", &format!("1234{code}"), "vpn", None));
    assert_eq!(replay["verdict"], "reject", "{replay}");
    // PAM service names map to classes; web-only switches IMAP off.
    let denied = socket_call(&sock, &check("bob", "normal-pw", "imap", Some("192.0.2.7")));
    assert_eq!(denied["verdict"], "deny", "{denied}");
    assert_eq!(
        socket_call(&sock, &check("nobody-here", "x", "imap", None))["verdict"],
        "defer"
    );
    let acct = |user: &str, service: &str| {
        socket_call(
            &sock,
            &json!({"op":"account","user":user,"service":service,"rhost":null}),
        )
    };
    assert_eq!(acct("alice", "sshd"), json!({"verdict":"allow"}));
    let deny = acct("bob", "sshd");
    assert_eq!(deny["verdict"], "deny");
    assert!(
        deny["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{deny}"
    );
    assert_eq!(acct("bob", "web"), json!({"verdict":"allow"}));
    assert_eq!(acct("nobody-here", "imap"), json!({"verdict":"ignore"}));

    // Several requests on one connection, answered in order.
    let mut c = Conn::open(&sock);
    for _ in 0..3 {
        assert_eq!(c.call(&json!({"op":"ping"}))["pong"], true);
    }
    drop(c);
    let audit = common::audit_settled(&env, &["audit", "--user", "alice", "--json"]);
    assert!(audit.contains("\"client\":\"pam\""), "{audit}");
    assert!(!audit.contains(&code), "no code in the audit: {audit}");
    d.stop();
}

#[test]
fn malformed_requests_get_error_answers_and_the_daemon_keeps_serving() {
    let env = Env::new("");
    let d = env.start();
    let sock = env.socket_path();
    let mut c = Conn::open(&sock);
    let cases: Vec<(&[u8], &str)> = vec![
        (b"this is not json\n", "bad_json"),
        (b"\xff\xfe{\n", "bad_json"),
        (b"{\"op\":\"check\",\n", "bad_json"),
        (b"\n", "bad_json"),
        (b"[\"op\",\"ping\"]\n", "bad_json"),
        (b"{\"user\":\"alice\"}\n", "missing_field"),
        (
            b"{\"op\":\"check\",\"user\":\"alice\",\"service\":\"imap\"}\n",
            "missing_field",
        ),
        (
            b"{\"op\":\"account\",\"user\":\"alice\"}\n",
            "missing_field",
        ),
        (
            b"{\"op\":\"check\",\"user\":42,\"password\":\"x\",\"service\":\"imap\"}\n",
            "bad_field",
        ),
        (b"{\"op\":\"shutdown\"}\n", "unknown_op"),
    ];
    for (line, code) in cases {
        c.send(line);
        let v = c.recv().unwrap_or_else(|| {
            panic!("no answer to {:?}", String::from_utf8_lossy(line));
        });
        assert_eq!(v["code"], code, "{:?}: {v}", String::from_utf8_lossy(line));
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
    }
    // The same connection still works after every one of them.
    assert_eq!(c.call(&json!({"op":"ping"}))["pong"], true);

    // A line over 64 KiB: an error answer, then the daemon closes.
    let mut big = format!(
        "{{\"op\":\"check\",\"user\":\"alice\",\"service\":\"imap\",\"password\":\"{}",
        "9".repeat(70 * 1024)
    )
    .into_bytes();
    big.extend_from_slice(b"\"}\n");
    c.send(&big);
    let v = c.recv().expect("an answer to the long line");
    assert_eq!(v["code"], "line_too_long", "{v}");
    assert!(c.recv().is_none(), "connection must be closed");
    // Exactly 64 KiB is within the limit (an answer, not a closed connection).
    let mut c = Conn::open(&sock);
    let pad = 64 * 1024 - r#"{"op":"ping","x":""}"#.len();
    c.send(format!("{{\"op\":\"ping\",\"x\":\"{}\"}}\n", "a".repeat(pad)).as_bytes());
    assert_eq!(c.recv().expect("answer")["pong"], true);

    assert_eq!(socket_call(&sock, &json!({"op":"ping"}))["pong"], true);
    let log = plain_log(&d);
    assert!(!log.contains("panicked"), "{log}");
    assert!(!log.contains("9999999999"), "no password in the log");
    d.stop();
}

/// A client run under uid/gid 65534 (nobody/nogroup) with `setpriv`.
fn ping_as_nobody(sock: &Path) -> String {
    common::require("setpriv", "util-linux");
    let py = "/usr/bin/python3";
    assert!(
        Path::new(py).is_file(),
        "{py} is missing: install the Debian package python3"
    );
    let script = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print("connect failed:", e.strerror)
    sys.exit(0)
try:
    s.sendall(b'{"op":"ping"}\n')
except OSError:
    pass  # a refused peer may find the connection closed already; the answer is still there
print(s.makefile().readline().strip())
"#;
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            py,
            "-c",
            script,
        ])
        .arg(sock)
        .output()
        .expect("run setpriv");
    assert!(
        out.status.success(),
        "setpriv client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// An Env whose `[socket]` table is `socket` (it then sets the path itself).
fn socket_env(socket: &str) -> Env {
    Env::with_tables("", &format!("[socket]\n{socket}\n"))
}

#[test]
fn peers_outside_the_allow_list_are_refused() {
    // Root is the only peer allowed by default; here nobody is on the list.
    let env = Env::new("");
    let sock = env.socket_path();
    std::fs::write(
        &env.config,
        std::fs::read_to_string(&env.config)
            .expect("config")
            .replace("[socket]\n", "[socket]\nallow_uids = []\n"),
    )
    .expect("config");
    let d = env.start();
    let mut c = Conn::open(&sock);
    let v = c.recv().expect("an error line");
    assert_eq!(v["code"], "forbidden", "{v}");
    assert!(c.recv().is_none(), "closed after the refusal");
    let log = log_with(&d, "refused peer");
    assert!(log.contains("uid=0"), "{log}");
    d.stop();
}

#[test]
fn socket_group_and_gid_allow_list_with_a_peer_under_another_uid() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Traversable for uid 65534, which must reach the socket file.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).expect("chmod");
    let sock = dir.path().join("otpd.sock");
    let base = format!("path = \"{}\"\ngroup = \"nogroup\"\n", sock.display());

    // nogroup may open the file (mode 0660, group nogroup) but is not on the allow-list.
    let env = socket_env(&base);
    let d = env.start();
    let meta = std::fs::metadata(&sock).expect("socket");
    assert_eq!(meta.mode() & 0o777, 0o660);
    assert_eq!(meta.gid(), 65534);
    let answer = ping_as_nobody(&sock);
    let v: Value = serde_json::from_str(&answer).unwrap_or_else(|_| panic!("{answer}"));
    assert_eq!(v["code"], "forbidden", "{v}");
    // Root still is.
    assert_eq!(socket_call(&sock, &json!({"op":"ping"}))["pong"], true);
    let log = log_with(&d, "uid=65534");
    assert!(
        log.contains("not in socket.allow_gids"),
        "start warns: {log}"
    );
    d.stop();

    // With the gid on the list the same peer is served.
    let env = socket_env(&format!("{base}allow_gids = [65534]\n"));
    let d = env.start();
    let answer = ping_as_nobody(&sock);
    assert_eq!(answer, r#"{"pong":true,"version":1}"#);
    d.stop();

    // Without the group the file is root's group only: the kernel refuses nobody already.
    let env = socket_env(&format!("path = \"{}\"\n", sock.display()));
    let d = env.start();
    assert!(
        ping_as_nobody(&sock).contains("Permission denied"),
        "mode 0660 root:root keeps others out"
    );
    d.stop();
}

#[test]
fn idle_and_stalled_connections_are_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("otpd.sock");
    let env = socket_env(&format!(
        "path = \"{}\"\nidle_timeout = \"1s\"\n",
        sock.display()
    ));
    let d = env.start();
    for partial in [&b""[..], b"{\"op\":\"pi"] {
        let mut c = Conn::open(&sock);
        c.send(partial);
        let start = Instant::now();
        let mut buf = [0u8; 16];
        let n = c.reader.get_mut().read(&mut buf).unwrap_or(0);
        let took = start.elapsed();
        assert_eq!(n, 0, "closed without an answer");
        assert!(
            took >= Duration::from_millis(500) && took < Duration::from_secs(8),
            "{took:?}"
        );
    }
    // A client that keeps asking is not idle.
    let mut c = Conn::open(&sock);
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(c.call(&json!({"op":"ping"}))["pong"], true);
    }
    d.stop();
}

#[test]
fn connections_are_bounded() {
    let env = Env::new("");
    let sock = env.socket_path();
    std::fs::write(
        &env.config,
        std::fs::read_to_string(&env.config)
            .expect("config")
            .replace("[socket]\n", "[socket]\nmax_connections = 2\n"),
    )
    .expect("config");
    let d = env.start();
    let mut a = Conn::open(&sock);
    assert_eq!(a.call(&json!({"op":"ping"}))["pong"], true);
    std::thread::sleep(Duration::from_millis(50));
    let mut b = Conn::open(&sock);
    assert_eq!(b.call(&json!({"op":"ping"}))["pong"], true);
    // Both slots are taken by connections that wait for their next request. A third one is
    // served, and the one that has waited longest (a) is closed to make room: never more than
    // max_connections open, and idle connections cannot lock a newcomer out.
    let mut c = Conn::open(&sock);
    assert_eq!(c.call(&json!({"op":"ping"}))["pong"], true);
    assert!(
        a.recv().is_none(),
        "the longest-waiting connection was closed"
    );
    assert_eq!(b.call(&json!({"op":"ping"}))["pong"], true);
    // c now waited longest: the next newcomer closes it, and b stays.
    let mut e = Conn::open(&sock);
    assert_eq!(e.call(&json!({"op":"ping"}))["pong"], true);
    assert!(c.recv().is_none(), "c was closed for e");
    assert_eq!(b.call(&json!({"op":"ping"}))["pong"], true);
    log_with(&d, "max_connections reached");
    d.stop();
}

#[test]
fn socket_file_life_cycle() {
    let env = Env::new("");
    let sock = env.socket_path();
    // A stale socket file (its daemon died) is replaced.
    drop(std::os::unix::net::UnixListener::bind(&sock).expect("stale"));
    assert!(sock.exists());
    let d = env.start();
    assert_eq!(socket_call(&sock, &json!({"op":"ping"}))["pong"], true);
    // A second daemon on the same socket refuses to start and leaves the first one alone.
    let out = env.run(&["serve"], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already running"), "{err}");
    assert_eq!(socket_call(&sock, &json!({"op":"ping"}))["pong"], true);
    // A clean stop removes the file.
    assert!(d.stop().success());
    assert!(!sock.exists(), "socket file left behind");

    // A file that is not a socket is never removed.
    std::fs::write(&sock, "precious").expect("write");
    let out = env.run(&["serve"], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&sock).expect("kept"), "precious");
    std::fs::remove_file(&sock).expect("rm");

    // A group that does not exist is named.
    let env = socket_env(&format!(
        "path = \"{}\"\ngroup = \"no-such-group-otpd\"\n",
        sock.display()
    ));
    let out = env.run(&["serve"], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("socket.group `no-such-group-otpd`: no such group"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    // An empty path switches the socket off.
    let env = socket_env("path = \"\"");
    let d = env.start();
    log_with(&d, "socket switched off");
    d.stop();
}

#[test]
fn relogin_cache_and_app_passwords_over_the_socket() {
    let env = Env::with_tables(
        "",
        "[services.web]\npam_services = [\"roundcube\"]\nrhosts = [\"192.0.2.10/31\"]\nrelogin_cache = true\n",
    );
    env.enrol("alice", "1234", "hotp", "web-otp");
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
    let app: Value = serde_json::from_str(&out).expect("json");
    let app_pw = app["password"].as_str().expect("password").to_string();
    let d = env.start();
    let sock = env.socket_path();
    let pw = format!("1234{}", common::hotp_code(0));
    for _ in 0..3 {
        let v = socket_call(&sock, &check("alice", &pw, "imap", Some("192.0.2.10")));
        assert_eq!(v["verdict"], "accept", "{v}");
    }
    let v = socket_call(&sock, &check("alice", &pw, "imap", Some("192.0.2.11")));
    assert_eq!(v["verdict"], "reject", "another webmail address: {v}");

    let v = socket_call(
        &sock,
        &check("carol", "normal-pw", "imap", Some("198.51.100.7")),
    );
    assert_eq!(v["verdict"], "reject", "{v}");
    let v = socket_call(
        &sock,
        &check("carol", &app_pw, "imap", Some("198.51.100.7")),
    );
    assert_eq!(v["verdict"], "accept", "{v}");
    d.stop();

    let audit = env.ok(&["audit", "--json"], None);
    assert_eq!(audit.matches("re-login cache").count(), 2, "{audit}");
    assert!(
        audit.contains("app password \\\"Thunderbird laptop\\\""),
        "{audit}"
    );
    assert!(!audit.contains(&app_pw), "{audit}");
    let list = env.ok(&["app-password", "list", "carol"], None);
    assert!(list.contains("198.51.100.7"), "{list}");
    assert!(!list.contains(&app_pw), "{list}");
}

/// `deadline_ms` (docs/protocol.md): a check that arrives after its caller's deadline is
/// dropped unevaluated (reject, audit reason, code unspent, no failure counted); one with a
/// deadline ahead, and one without (older clients), are evaluated as always.
#[test]
fn a_check_past_its_deadline_is_not_evaluated() {
    let env = Env::new("");
    env.enrol("alice", "1234", "hotp", "everywhere");
    let d = env.start();
    let sock = env.socket_path();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let code = format!("1234{}", common::hotp_code(0));
    let mut late = check("alice", &code, "vpn", Some("198.51.100.7"));
    late["deadline_ms"] = json!(now_ms - 1);
    assert_eq!(socket_call(&sock, &late)["verdict"], "reject");
    let audit = common::audit_settled(&env, &["audit", "--user", "alice", "--json"]);
    assert!(
        audit.contains("caller gave up (deadline passed) before evaluation"),
        "{audit}"
    );
    let show = env.ok(&["user", "show", "alice"], None);
    assert!(show.contains("failures:  0"), "no failure counted: {show}");

    let mut in_time = check("alice", &code, "vpn", Some("198.51.100.7"));
    in_time["deadline_ms"] = json!(now_ms + 60_000);
    assert_eq!(socket_call(&sock, &in_time)["verdict"], "accept");
    let next = format!("1234{}", common::hotp_code(1));
    assert_eq!(
        socket_call(&sock, &check("alice", &next, "vpn", Some("198.51.100.7")))["verdict"],
        "accept",
        "a request without deadline_ms is evaluated"
    );
    d.stop();
}

/// More logins in flight at once than tokio's blocking pool has threads (512 by default; the
/// daemon sets no other limit), each on its own connection, sent before any answer is read:
/// every one is answered exactly once, each account's code is accepted once, and the copy of
/// a code sent twice at once is accepted at most once.
#[test]
fn many_logins_in_flight_at_once_are_all_answered_and_none_double_accepted() {
    const USERS: usize = 600;
    const TWICE: usize = 100;
    let env = Env::new("");
    std::fs::write(
        &env.config,
        std::fs::read_to_string(&env.config)
            .expect("config")
            .replace("[socket]\n", "[socket]\nmax_connections = 1024\n"),
    )
    .expect("config");
    let lines: String = (0..USERS)
        .map(|i| {
            format!(
                "{}\n",
                json!({"user": format!("u{i}"), "pin": "1234", "level": "everywhere",
                       "tokens": [{"type": "hotp", "secret": common::SECRET_B32, "counter": 0}]})
            )
        })
        .collect();
    let file = env.path().join("accounts.jsonl");
    std::fs::write(&file, lines).expect("accounts");
    env.ok(&["user", "import", file.to_str().expect("path")], None);
    let d = env.start();
    let sock = env.socket_path();
    let pw = format!("1234{}", common::hotp_code(0));
    let users: Vec<usize> = (0..USERS).chain(0..TWICE).collect();
    let mut conns: Vec<Conn> = users.iter().map(|_| Conn::open(&sock)).collect();
    for (c, u) in conns.iter_mut().zip(&users) {
        c.send(format!("{}\n", check(&format!("u{u}"), &pw, "vpn", None)).as_bytes());
    }
    let mut accepted = vec![0usize; USERS];
    for (c, u) in conns.iter_mut().zip(&users) {
        let v = c.recv().unwrap_or_else(|| panic!("no answer for u{u}"));
        match v["verdict"].as_str() {
            Some("accept") => accepted[*u] += 1,
            Some("reject") => {}
            _ => panic!("u{u}: unexpected answer {v}"),
        }
    }
    for (u, n) in accepted.iter().enumerate() {
        assert_eq!(*n, 1, "u{u} accepted {n} times");
    }
    // Nothing answered twice: each connection is silent after its one answer.
    for c in &mut conns {
        c.reader
            .get_mut()
            .set_read_timeout(Some(Duration::from_millis(1)))
            .expect("timeout");
        let mut extra = String::new();
        assert!(
            !matches!(c.reader.read_line(&mut extra), Ok(n) if n > 0),
            "a second answer: {extra}"
        );
    }
    d.stop();
}
