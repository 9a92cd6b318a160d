//! Helpers of the hardening tests (flood, bad_input, brute_force, disk): RADIUS packets built
//! here after RFC 2865 / 3579 (independently of otpd's code), a NAS socket bound to a chosen
//! loopback address, socket-protocol calls with a deadline, and the daemon's log.
#![allow(dead_code)]

pub mod bursts;

use crate::common::{self, Daemon, Env};
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

pub const SECRET: &str = "hardening-radius-secret";

pub fn attr(t: u8, v: &[u8]) -> Vec<u8> {
    assert!(v.len() <= 253);
    let mut a = vec![t, (v.len() + 2) as u8];
    a.extend_from_slice(v);
    a
}

pub fn hmac_md5(key: &[u8], msg: &[u8]) -> [u8; 16] {
    let mut m = Hmac::<Md5>::new_from_slice(key).expect("key");
    m.update(msg);
    m.finalize().into_bytes().into()
}

/// RFC 2865 §5.2 User-Password hiding; the password is padded with NULs to whole 16-byte
/// blocks (at least one).
pub fn hide_password(password: &[u8], auth: &[u8; 16]) -> Vec<u8> {
    let mut p = password.to_vec();
    p.resize(p.len().div_ceil(16).max(1) * 16, 0);
    let mut prev = auth.to_vec();
    let mut out = Vec::new();
    for block in p.chunks(16) {
        let b = Md5::digest([SECRET.as_bytes(), &prev[..]].concat());
        let c: Vec<u8> = block.iter().zip(b.iter()).map(|(x, y)| x ^ y).collect();
        out.extend_from_slice(&c);
        prev = c;
    }
    out
}

pub fn random_auth() -> [u8; 16] {
    let mut a = [0u8; 16];
    getrandom::getrandom(&mut a).expect("random");
    a
}

pub struct Request {
    pub bytes: Vec<u8>,
    pub auth: [u8; 16],
}

/// An Access-Request with a correct Message-Authenticator first; user and password as raw
/// bytes (so tests can send what no UTF-8 string holds).
pub fn access_request(id: u8, user: &[u8], password: &[u8], more: &[Vec<u8>]) -> Request {
    let auth = random_auth();
    let mut body = attr(80, &[0; 16]);
    body.extend(attr(1, user));
    body.extend(attr(2, &hide_password(password, &auth)));
    for a in more {
        body.extend_from_slice(a);
    }
    let mut p = vec![1u8, id];
    p.extend_from_slice(&((20 + body.len()) as u16).to_be_bytes());
    p.extend_from_slice(&auth);
    p.extend(body);
    let m = hmac_md5(SECRET.as_bytes(), &p);
    p[22..38].copy_from_slice(&m);
    Request { bytes: p, auth }
}

/// A RADIUS client socket bound to `local` (any 127.0.0.0/8 address works on Linux).
pub struct Nas {
    pub sock: UdpSocket,
    pub server: SocketAddr,
}

impl Nas {
    pub fn new(port: u16) -> Nas {
        Nas::bound("127.0.0.1:0", port)
    }

    pub fn bound(local: &str, port: u16) -> Nas {
        let sock = UdpSocket::bind(local).expect("bind NAS socket");
        Nas {
            sock,
            server: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    pub fn send(&self, bytes: &[u8]) {
        self.sock.send_to(bytes, self.server).expect("send");
    }

    /// The next datagram from the server within `wait`; `None` only once `wait` has passed.
    /// A receive that ends early without a datagram waits on for the rest: one with a
    /// timeout is not restarted after a signal, nor after the process was stopped and
    /// continued (signal(7)), and a burst that took that EINTR for silence counted answers
    /// still on their way as never sent. Any other error fails the test with its cause.
    pub fn recv(&self, wait: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + wait;
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.sock.set_read_timeout(Some(left)).expect("timeout");
            match self.sock.recv_from(&mut buf) {
                Ok((n, from)) if from == self.server => return Some(buf[..n].to_vec()),
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => panic!("NAS socket: receive failed: {e}"),
            }
        }
    }

    /// Sends `bytes` and returns the next datagram from the server within 5 s.
    pub fn exchange(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        self.send(bytes);
        self.recv(Duration::from_secs(5))
    }

    /// The answer to `req` (matched by identifier and a valid Response Authenticator) within
    /// `wait`, and how long it took.
    pub fn ask(&self, req: &Request, wait: Duration) -> Option<(Vec<u8>, Duration)> {
        let start = Instant::now();
        self.send(&req.bytes);
        self.answer_to(req, wait).map(|a| (a, start.elapsed()))
    }

    /// The answer to `req`, sent earlier, within `wait`; other datagrams are skipped.
    pub fn answer_to(&self, req: &Request, wait: Duration) -> Option<Vec<u8>> {
        let start = Instant::now();
        while let Some(a) = self.recv(wait.saturating_sub(start.elapsed())) {
            if a.len() >= 20 && a[1] == req.bytes[1] && response_ok(&a, req) {
                return Some(a);
            }
        }
        None
    }
}

/// RFC 2865 §3 Response Authenticator of an answer to `req`.
pub fn response_ok(answer: &[u8], req: &Request) -> bool {
    let mut z = answer.to_vec();
    z[4..20].copy_from_slice(&req.auth);
    Md5::digest([&z[..], SECRET.as_bytes()].concat()).as_slice() == &answer[4..20]
}

pub const ACCESS_ACCEPT: u8 = 2;
pub const ACCESS_REJECT: u8 = 3;

/// A daemon with RADIUS on a free port, clients `nas` (127.0.0.1) and `other` (127.0.0.2),
/// both in class vpn, and `extra_tables` (services, lockout...) and `radius_extra` keys.
pub fn radius_env(top_level: &str, extra_tables: &str, radius_extra: &str) -> (Env, u16) {
    let port = common::free_udp_port();
    let tables = format!(
        "{extra_tables}\n\
         [radius]\n\
         listen = [\"127.0.0.1:{port}\"]\n\
         {radius_extra}\n\
         [[radius.clients]]\n\
         name = \"nas\"\n\
         address = \"127.0.0.1\"\n\
         secret = \"{SECRET}\"\n\
         service = \"vpn\"\n\
         [[radius.clients]]\n\
         name = \"other\"\n\
         address = \"127.0.0.2\"\n\
         secret = \"{SECRET}\"\n\
         service = \"vpn\"\n"
    );
    (Env::with_tables(top_level, &tables), port)
}

/// One socket-protocol request with a deadline; `None` if no answer came in time.
pub fn socket_call_within(path: &Path, request: &Value, wait: Duration) -> Option<Value> {
    let s = UnixStream::connect(path).ok()?;
    s.set_read_timeout(Some(wait)).ok()?;
    s.set_write_timeout(Some(wait)).ok()?;
    (&s).write_all(format!("{request}\n").as_bytes()).ok()?;
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).ok()?;
    serde_json::from_str(&line).ok()
}

pub fn check_req(user: &str, password: &str, service: &str, rhost: Option<&str>) -> Value {
    serde_json::json!({"op":"check","user":user,"password":password,"service":service,
                       "rhost":rhost,"client":"pam"})
}

pub use crate::common::plain_log;

/// The log once it contains `needle`; fails after 5 s.
pub fn log_with(d: &Daemon, needle: &str) -> String {
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

/// All audit records (newest last), optionally of one user.
pub fn audit_all(env: &Env, user: Option<&str>) -> Vec<Value> {
    let mut args = vec!["audit", "--json", "--limit", "0"];
    if let Some(u) = user {
        args.extend(["--user", u]);
    }
    let mut v: Vec<Value> = env
        .ok(&args, None)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("audit json"))
        .collect();
    v.sort_by_key(|r| r["ts_ms"].as_i64().unwrap_or(0));
    v
}

/// Waits until the audit holds at least `n` records (of `user`), then a moment more so that
/// an unwanted extra record lands too (audit records are committed in groups).
pub fn audit_settled(env: &Env, user: Option<&str>, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while audit_all(env, user).len() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(30));
    }
    std::thread::sleep(Duration::from_millis(200));
    audit_all(env, user)
}

/// Raises this process's open-file limit (the test opens thousands of connections).
pub fn raise_nofile(want: u64) {
    // SAFETY: getrlimit/setrlimit on our own process with a valid struct.
    unsafe {
        let mut rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl), 0);
        if rl.rlim_cur >= want {
            return;
        }
        rl.rlim_cur = want.min(rl.rlim_max.max(want));
        rl.rlim_max = rl.rlim_max.max(rl.rlim_cur);
        assert_eq!(
            libc::setrlimit(libc::RLIMIT_NOFILE, &rl),
            0,
            "setrlimit(RLIMIT_NOFILE, {want}): {}",
            std::io::Error::last_os_error()
        );
    }
}
