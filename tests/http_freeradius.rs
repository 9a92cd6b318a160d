//! FreeRADIUS (Debian's freeradius + freeradius-rest) in front of otpd's
//! `/validate/radiuscheck`, as a privacyIDEA setup has it, with the shipped
//! conf/freeradius/rest-otpd and site-otpd-rest on a private configuration; and one code
//! single-use across every front-end at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job
mod common;
mod products;

use common::http::client;
use common::{free_tcp_port, free_udp_port, hotp_code, Env};
use products::{repo, run, Running};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

fn otp(counter: u64) -> String {
    format!("1234{}", hotp_code(counter))
}

#[test]
fn freeradius_rlm_rest_logs_in_through_radiuscheck() {
    products::require_file("/usr/sbin/freeradius", "freeradius");
    products::require_file("/usr/lib/freeradius/rlm_rest.so", "freeradius-rest");
    common::require("radclient", "freeradius-utils");
    let http = free_tcp_port();
    let env = Env::with_tables(
        "",
        &format!(
            "[http]\nlisten_plain = [\"127.0.0.1:{http}\"]\n{}",
            client("freeradius", "")
        ),
    );
    env.enrol("alice", "1234", "hotp", "everywhere");
    let _otpd = env.start();

    let dir = tempfile::tempdir().expect("tempdir");
    // freerad reads below it after dropping privileges.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let raddb = dir.path().join("raddb");
    let (ok, out) = run(Command::new("cp")
        .arg("-a")
        .arg("/etc/freeradius/3.0")
        .arg(&raddb));
    assert!(ok, "copy /etc/freeradius/3.0: {out}");
    // Only our site: the stock ones would take the standard ports.
    for e in std::fs::read_dir(raddb.join("sites-enabled"))
        .expect("sites-enabled")
        .flatten()
    {
        std::fs::remove_file(e.path()).expect("remove stock site");
    }
    // EAP needs the stock sites' Auth-Type EAP; this server does PAP only.
    std::fs::remove_file(raddb.join("mods-enabled/eap")).expect("remove eap");
    let port = free_udp_port();
    let site =
        std::fs::read_to_string(repo().join("conf/freeradius/site-otpd-rest")).expect("site");
    let edited = site.replace("port = 1812", &format!("port = {port}"));
    assert_ne!(site, edited);
    std::fs::write(raddb.join("sites-enabled/otpd"), edited).expect("site");
    let module = std::fs::read_to_string(repo().join("conf/freeradius/rest-otpd")).expect("module");
    let edited = module.replace("http://127.0.0.1:8080", &format!("http://127.0.0.1:{http}"));
    assert_ne!(module, edited);
    std::fs::write(raddb.join("mods-enabled/otpd"), edited).expect("module");
    let (ok, out) = run(Command::new("freeradius").arg("-XC").arg("-d").arg(&raddb));
    assert!(
        ok && out.contains("Configuration appears to be OK"),
        "{out}"
    );

    let log_path = dir.path().join("radiusd.log");
    let log_file = std::fs::File::create(&log_path).expect("log");
    let _fr = Running(
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
    let login = |password: &str| {
        common::radclient(
            port,
            "auth",
            "testing123",
            &format!("User-Name = \"alice\", User-Password = \"{password}\"\n"),
            10,
        )
        .1
    };
    let out = login(&otp(0));
    assert!(
        out.contains("Received Access-Accept"),
        "{out}\n--- radiusd:\n{}",
        log()
    );
    let out = login(&otp(0));
    assert!(
        out.contains("Received Access-Reject"),
        "the used code again: {out}"
    );
    let out = login(&format!("9999{}", hotp_code(1)));
    assert!(out.contains("Received Access-Reject"), "a wrong PIN: {out}");
    let out = login(&otp(1));
    assert!(
        out.contains("Received Access-Accept"),
        "{out}\n--- radiusd:\n{}",
        log()
    );
}

/// The same valid code sent at the same instant over HTTP, RADIUS and the socket: exactly
/// one Accept, in each of 50 rounds.
#[test]
fn one_code_is_single_use_across_every_front_end_at_once() {
    let http = free_tcp_port();
    let radius = free_udp_port();
    let secret = "race-test-shared-secret";
    let env = Env::with_tables(
        "",
        &format!(
            "[radius]\nlisten = [\"127.0.0.1:{radius}\"]\n\
             [[radius.clients]]\nname = \"nas\"\naddress = \"127.0.0.1\"\nsecret = \"{secret}\"\n\
             service = \"vpn\"\n\
             [http]\nlisten_plain = [\"127.0.0.1:{http}\"]\n{}",
            client("portal", "")
        ),
    );
    env.enrol("alice", "1234", "hotp", "everywhere");
    let _otpd = env.start();
    let codes: Vec<String> = (0..50).map(otp).collect();
    let out = common::python(
        RACE,
        &[
            &http.to_string(),
            &radius.to_string(),
            secret,
            &env.socket_path().display().to_string(),
            &codes.join(","),
        ],
    );
    let rounds: Vec<serde_json::Value> =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(rounds.len(), 50);
    for (i, r) in rounds.iter().enumerate() {
        let accepts = ["http", "radius", "socket"]
            .iter()
            .filter(|k| r[**k] == "accept")
            .count();
        assert_eq!(accepts, 1, "round {i}: {r}");
    }
}

/// Per round, three threads wait on a barrier and send the same PIN+code: HTTP
/// (http.client, kept alive), RADIUS (a PAP Access-Request with Message-Authenticator, RFC
/// 2865/3579), and the Unix socket (one JSON line). Prints each round's verdicts.
const RACE: &str = r#"
import hashlib, hmac, http.client, json, os, socket, struct, sys, threading
hport, rport, secret, sock_path, codes = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].encode(), sys.argv[4], sys.argv[5].split(",")
h = http.client.HTTPConnection("127.0.0.1", hport, timeout=10)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(10)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.connect(sock_path); s.settimeout(10)
sf = s.makefile("rb")
def attr(t, v): return bytes([t, len(v) + 2]) + v
def radius(ident, password):
    auth = os.urandom(16); pw = password.encode(); pw += b"\0" * (-len(pw) % 16)
    hidden = b""; last = auth
    for i in range(0, len(pw), 16):
        b = hashlib.md5(secret + last).digest()
        c = bytes(x ^ y for x, y in zip(pw[i:i+16], b)); hidden += c; last = c
    attrs = attr(80, b"\0" * 16) + attr(1, b"alice") + attr(2, hidden)
    pkt = bytearray(struct.pack("!BBH", 1, ident, 20 + len(attrs)) + auth + attrs)
    pkt[22:38] = hmac.new(secret, bytes(pkt), hashlib.md5).digest()
    u.sendto(bytes(pkt), ("127.0.0.1", rport))
    data = u.recv(4096)
    return {2: "accept", 3: "reject", 11: "challenge"}.get(data[0], "code %d" % data[0])
def via_http(pw):
    h.request("POST", "/validate/check", body="user=alice&pass=" + pw, headers={"Content-Type": "application/x-www-form-urlencoded"})
    v = json.loads(h.getresponse().read())
    return v["result"].get("authentication", "error").lower()
def via_socket(pw):
    s.sendall((json.dumps({"op": "check", "user": "alice", "password": pw, "service": "vpn", "rhost": None, "client": "pam"}) + "\n").encode())
    return json.loads(sf.readline())["verdict"]
rounds = []
for n, pw in enumerate(codes):
    res = {}; bar = threading.Barrier(3)
    def go(name, f):
        bar.wait(); res[name] = f(pw)
    ts = [threading.Thread(target=go, args=a) for a in (("http", via_http), ("radius", lambda p: radius(n % 256, p)), ("socket", via_socket))]
    for t in ts: t.start()
    for t in ts: t.join(15)
    rounds.append(res)
print(json.dumps(rounds))
"#;
