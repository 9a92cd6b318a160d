//! The HTTP front-end with ordinary clients (curl, Python's http.client) against the real
//! daemon: privacyIDEA's and LinOTP's validate dialects, the per-client settings, and the
//! bounds (oversized, malformed, slow and flooding clients) while a valid login gets through.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job

mod common;
mod products;

use common::http::{authentication, client, curl, get, http_env, post_form, post_json};
use common::{hotp_code, Env};
use serde_json::Value;

const PIN: &str = "1234";

fn alice(env: &Env, level: &str) -> String {
    env.enrol("alice", PIN, "hotp", level)
}

fn pin_code(counter: u64) -> String {
    format!("{PIN}{}", hotp_code(counter))
}

/// The answer without what changes from one request to the next.
fn shape(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("time");
    }
    v
}

#[test]
fn pin_and_code_accepted_replay_rejected_wrong_pin_and_unknown_user_alike() {
    let (env, port) = http_env("", &client("portal", ""), "");
    let serial = alice(&env, "everywhere");
    let _d = env.start();

    // Form, JSON body and query string: privacyIDEA reads all three.
    let a = post_form(
        port,
        "/validate/check",
        &[("user", "alice"), ("pass", &pin_code(0))],
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    assert_eq!(v["result"]["status"], true);
    assert_eq!(v["result"]["value"], true);
    assert_eq!(v["result"]["authentication"], "ACCEPT");
    assert_eq!(v["detail"]["serial"], serial.as_str());
    assert_eq!(v["detail"]["type"], "hotp");
    assert_eq!(v["jsonrpc"], "2.0");
    assert_eq!(v["id"], 2);
    assert!(v["time"].is_f64() && v["version"].is_string(), "{v}");

    let replay = post_form(
        port,
        "/validate/check",
        &[("user", "alice"), ("pass", &pin_code(0))],
    );
    assert_eq!(replay.status, 200);
    assert_eq!(authentication(&replay), "REJECT", "{}", replay.body);
    assert_eq!(replay.json()["result"]["value"], false);

    let body = serde_json::json!({"user": "alice", "pass": pin_code(1)}).to_string();
    let a = post_json(port, "/validate/check", &body);
    assert_eq!(authentication(&a), "ACCEPT", "{}", a.body);
    let a = get(
        port,
        "/validate/check",
        &[("user", "alice"), ("pass", &pin_code(2))],
    );
    assert_eq!(authentication(&a), "ACCEPT", "{}", a.body);

    // A wrong PIN and a name with no account: the same answer, the same status.
    let code = hotp_code(3);
    let wrong_pin = post_form(
        port,
        "/validate/check",
        &[("user", "alice"), ("pass", &format!("9999{code}"))],
    );
    let unknown = post_form(
        port,
        "/validate/check",
        &[("user", "nobody"), ("pass", &format!("{PIN}{code}"))],
    );
    assert_eq!(wrong_pin.status, 200);
    assert_eq!(unknown.status, 200);
    assert_eq!(shape(&wrong_pin.json()), shape(&unknown.json()));
    assert_eq!(authentication(&unknown), "REJECT");

    // Missing parameters: privacyIDEA's 905 with HTTP 400.
    let a = post_form(port, "/validate/check", &[("pass", "123")]);
    assert_eq!(a.status, 400);
    assert_eq!(a.json()["result"]["error"]["code"], 905);
    assert_eq!(a.json()["result"]["status"], false);
    let a = post_form(port, "/validate/check", &[("user", "alice")]);
    assert_eq!(a.status, 400);
    assert_eq!(a.json()["result"]["error"]["code"], 905);
}

#[test]
fn malformed_and_oversized_bodies_get_json_errors() {
    let (env, port) = http_env("max_body_bytes = 1024", &client("portal", ""), "");
    alice(&env, "everywhere");
    let _d = env.start();
    let a = post_json(port, "/validate/check", "{\"user\": \"alice\", \"pass\": ");
    assert_eq!(a.status, 400, "{}", a.body);
    let v = a.json();
    assert_eq!(v["result"]["error"]["code"], 905);
    assert!(!a.body.contains("1234"), "{}", a.body);
    let a = post_json(port, "/validate/check", "[1, 2]");
    assert_eq!(a.status, 400);
    let a = post_json(
        port,
        "/validate/check",
        "{\"user\": [\"alice\"], \"pass\": \"1\"}",
    );
    assert_eq!(a.status, 400);
    assert_eq!(a.json()["result"]["error"]["code"], 905);
    let big = format!(
        "{{\"user\": \"alice\", \"pass\": \"{}\"}}",
        "1".repeat(4000)
    );
    let a = post_json(port, "/validate/check", &big);
    assert_eq!(a.status, 413, "{}", a.body);
    assert_eq!(a.json()["result"]["status"], false);
    // A request head over max_header_bytes (16 KiB by default): 431 from hyper.
    let big_header = format!("X-Filler: {}", "x".repeat(20_000));
    let url = format!("http://127.0.0.1:{port}/validate/check");
    let a = curl(&["-H", &big_header, "-d", "user=alice", &url]);
    assert_eq!(a.status, 431, "{}", a.body);
    // Still serving: the next login goes through.
    let a = post_form(
        port,
        "/validate/check",
        &[("user", "alice"), ("pass", &pin_code(0))],
    );
    assert_eq!(authentication(&a), "ACCEPT", "{}", a.body);
    // An unknown path answers as privacyIDEA's does.
    let a = get(port, "/nothing/here", &[]);
    assert_eq!(a.status, 404);
    assert_eq!(a.json()["error"], "Not found");
}

#[test]
fn unknown_users_get_904_only_where_the_client_is_set_to_see_it() {
    let clients = format!(
        "{}[[http.clients]]\nname = \"sso\"\naddress = \"127.0.0.2\"\nservice = \"vpn\"\n\
         unknown_user_error = true\n",
        client("portal", "")
    );
    let (env, port) = http_env("", &clients, "");
    alice(&env, "everywhere");
    let _d = env.start();
    let url = format!("http://127.0.0.1:{port}/validate/check");
    let sso = curl(&[
        "--interface",
        "127.0.0.2",
        "-d",
        "user=nosuchuser",
        "-d",
        "pass=1234123456",
        &url,
    ]);
    assert_eq!(sso.status, 400, "{}", sso.body);
    let v = sso.json();
    assert_eq!(v["result"]["error"]["code"], 904);
    assert_eq!(v["result"]["status"], false);
    let portal = post_form(
        port,
        "/validate/check",
        &[("user", "nosuchuser"), ("pass", "1234123456")],
    );
    assert_eq!(portal.status, 200);
    assert_eq!(authentication(&portal), "REJECT");
    // A wrong PIN is no unknown user, for either client.
    let a = curl(&[
        "--interface",
        "127.0.0.2",
        "-d",
        "user=alice",
        "-d",
        "pass=9999123456",
        &url,
    ]);
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(authentication(&a), "REJECT");
}

#[test]
fn a_challenge_round_trip_by_transaction_id_and_by_state() {
    let (env, port) = http_env(
        "",
        &client("portal", ""),
        "[services.vpn]\nchallenge_on_pin_only = true\n",
    );
    let serial = alice(&env, "everywhere");
    let _d = env.start();
    let first = post_form(port, "/validate/check", &[("user", "alice"), ("pass", PIN)]);
    assert_eq!(first.status, 200, "{}", first.body);
    let v = first.json();
    assert_eq!(v["result"]["authentication"], "CHALLENGE");
    assert_eq!(v["result"]["value"], false);
    let tid = v["detail"]["transaction_id"]
        .as_str()
        .expect("transaction_id");
    assert_eq!(v["detail"]["transaction_ids"][0], tid);
    assert_eq!(v["detail"]["multi_challenge"][0]["transaction_id"], tid);
    assert_eq!(v["detail"]["client_mode"], "interactive");
    assert!(v["detail"]["messages"].is_array());
    let second = post_form(
        port,
        "/validate/check",
        &[
            ("user", "alice"),
            ("transaction_id", tid),
            ("pass", &hotp_code(0)),
        ],
    );
    let v = second.json();
    assert_eq!(v["result"]["authentication"], "ACCEPT", "{v}");
    assert_eq!(v["detail"]["serial"], serial.as_str());

    // The same with `state`, privacyIDEA's other name for it, in a JSON body.
    let first = post_form(port, "/validate/check", &[("user", "alice"), ("pass", PIN)]);
    let tid = first.json()["detail"]["transaction_id"]
        .as_str()
        .expect("transaction_id")
        .to_string();
    let body = serde_json::json!({"user": "alice", "state": tid, "pass": hotp_code(1)});
    let a = post_json(port, "/validate/check", &body.to_string());
    assert_eq!(authentication(&a), "ACCEPT", "{}", a.body);
    // A used or made-up transaction is a Reject.
    let a = post_form(
        port,
        "/validate/check",
        &[("user", "alice"), ("state", &tid), ("pass", &hotp_code(2))],
    );
    assert_eq!(authentication(&a), "REJECT", "{}", a.body);
    let a = get(
        port,
        "/validate/polltransaction",
        &[("transaction_id", &tid)],
    );
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["result"]["value"], false);
}

#[test]
fn radiuscheck_says_204_or_400_with_an_empty_body() {
    let (env, port) = http_env("", &client("radius", ""), "");
    alice(&env, "everywhere");
    let _d = env.start();
    let ok = post_form(
        port,
        "/validate/radiuscheck",
        &[("user", "alice"), ("pass", &pin_code(0))],
    );
    assert_eq!((ok.status, ok.body.as_str()), (204, ""));
    let replay = post_form(
        port,
        "/validate/radiuscheck",
        &[("user", "alice"), ("pass", &pin_code(0))],
    );
    assert_eq!((replay.status, replay.body.as_str()), (400, ""));
    let unknown = post_form(
        port,
        "/validate/radiuscheck",
        &[("user", "x"), ("pass", "1")],
    );
    assert_eq!((unknown.status, unknown.body.as_str()), (400, ""));
}

#[test]
fn linotp_simplecheck_samlcheck_and_check() {
    let clients = format!(
        "{}[[http.clients]]\nname = \"old\"\naddress = \"127.0.0.2\"\nservice = \"vpn\"\n\
         dialect = \"linotp\"\n",
        client("portal", "")
    );
    let (env, port) = http_env(
        "",
        &clients,
        "[services.vpn]\nchallenge_on_pin_only = true\n",
    );
    alice(&env, "everywhere");
    let _d = env.start();
    let a = post_form(
        port,
        "/validate/simplecheck",
        &[("user", "alice"), ("pass", &pin_code(0))],
    );
    assert_eq!((a.status, a.body.as_str()), (200, ":-)"));
    let a = post_form(
        port,
        "/validate/simplecheck",
        &[("user", "alice"), ("pass", &pin_code(0))],
    );
    assert_eq!(a.body, ":-(");
    let a = post_form(
        port,
        "/validate/simplecheck",
        &[("user", "alice"), ("pass", PIN)],
    );
    let parts: Vec<&str> = a.body.splitn(3, ' ').collect();
    assert_eq!(parts[0], ":-(", "{}", a.body);
    assert_eq!(parts[1].len(), 32, "{}", a.body);
    assert!(!parts[2].is_empty(), "{}", a.body);
    let a = post_form(
        port,
        "/linotp/validate/simplecheck",
        &[
            ("user", "alice"),
            ("state", parts[1]),
            ("pass", &hotp_code(1)),
        ],
    );
    assert_eq!(a.body, ":-)");

    let a = post_form(
        port,
        "/linotp/validate/check",
        &[("user", "alice"), ("pass", &pin_code(2))],
    );
    let v = a.json();
    assert_eq!(
        (v["result"]["status"].clone(), v["result"]["value"].clone()),
        (Value::Bool(true), Value::Bool(true))
    );
    assert!(v["result"].get("authentication").is_none(), "{v}");
    // The LinOTP client gets LinOTP's shape on the shared path.
    let url = format!("http://127.0.0.1:{port}/validate/check");
    let pass = format!("pass={}", pin_code(3));
    let a = curl(&[
        "--interface",
        "127.0.0.2",
        "-d",
        "user=alice",
        "-d",
        &pass,
        &url,
    ]);
    let v = a.json();
    assert_eq!(v["result"]["value"], true, "{v}");
    assert!(v["result"].get("authentication").is_none(), "{v}");
    let url = format!("http://127.0.0.1:{port}/validate/samlcheck");
    let pass = format!("pass={}", pin_code(4));
    let a = curl(&[
        "--interface",
        "127.0.0.2",
        "-d",
        "user=alice",
        "-d",
        &pass,
        &url,
    ]);
    let v = a.json();
    assert_eq!(v["result"]["value"]["auth"], true, "{v}");
    assert!(v["result"]["value"]["attributes"].is_object());
    // privacyIDEA 3.14 has no samlcheck any more: 404 for its clients.
    let a = post_form(
        port,
        "/validate/samlcheck",
        &[("user", "alice"), ("pass", &pin_code(5))],
    );
    assert_eq!(a.status, 404);
}

#[test]
fn no_second_factor_and_pin_none_are_per_client_and_the_gate_still_counts() {
    let clients = format!(
        "{}{}{}",
        client("portal", ""),
        "[[http.clients]]\nname = \"plugin\"\naddress = \"127.0.0.2\"\nservice = \"vpn\"\n\
         no_second_factor = \"accept\"\n",
        "[[http.clients]]\nname = \"sso\"\naddress = \"127.0.0.3\"\nservice = \"vpn\"\n\
         pin = \"none\"\n",
    );
    let (env, port) = http_env(
        "",
        &clients,
        "[lockout]\nfree_failures = 3\nmax_failures = 3\nper_source_max_failures = 0\n",
    );
    // web-otp: the vpn class asks no second factor (Defer).
    env.enrol("carol", PIN, "totp", "web-otp");
    alice(&env, "everywhere");
    let _d = env.start();
    let url = format!("http://127.0.0.1:{port}/validate/check");
    let portal = post_form(
        port,
        "/validate/check",
        &[("user", "carol"), ("pass", "whatever")],
    );
    assert_eq!(authentication(&portal), "REJECT", "{}", portal.body);
    let plugin = curl(&[
        "--interface",
        "127.0.0.2",
        "-d",
        "user=carol",
        "-d",
        "pass=x",
        &url,
    ]);
    let v = plugin.json();
    assert_eq!(v["result"]["authentication"], "ACCEPT", "{v}");
    let msg = v["detail"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("no second factor"), "{msg}");
    // Never for a name without an account (that would be passOnNoUser).
    let a = curl(&[
        "--interface",
        "127.0.0.2",
        "-d",
        "user=ghost",
        "-d",
        "pass=x",
        &url,
    ]);
    assert_eq!(authentication(&a), "REJECT", "{}", a.body);

    // pin = "none": the code alone; PIN and code is wrong there.
    let code_alone = format!("pass={}", hotp_code(0));
    let a = curl(&[
        "--interface",
        "127.0.0.3",
        "-d",
        "user=alice",
        "-d",
        &code_alone,
        &url,
    ]);
    assert_eq!(authentication(&a), "ACCEPT", "{}", a.body);
    let with_pin = format!("pass={}", pin_code(1));
    let a = curl(&[
        "--interface",
        "127.0.0.3",
        "-d",
        "user=alice",
        "-d",
        &with_pin,
        &url,
    ]);
    assert_eq!(authentication(&a), "REJECT", "{}", a.body);
    // The gate counts code-only guesses: after the lock the right code is refused too.
    for guess in ["000000", "111111", "222222"] {
        let p = format!("pass={guess}");
        let a = curl(&[
            "--interface",
            "127.0.0.3",
            "-d",
            "user=alice",
            "-d",
            &p,
            &url,
        ]);
        assert_eq!(authentication(&a), "REJECT", "{}", a.body);
    }
    let right = format!("pass={}", hotp_code(2));
    let a = curl(&[
        "--interface",
        "127.0.0.3",
        "-d",
        "user=alice",
        "-d",
        &right,
        &url,
    ]);
    assert_eq!(authentication(&a), "REJECT", "{}", a.body);
}

#[test]
fn triggerchallenge_needs_a_service_account_and_the_answer_is_the_code() {
    let sink = common::SmtpSink::start("ok");
    // The relay's keys as an [email] table (http_env's tables come after the top level).
    let email = format!("[email]\n{}", sink.config("").replace("email.", ""));
    let (env, port) = http_env(
        "service_accounts = [{ name = \"sso\", secret = \"0123456789abcdef-sso\" }]",
        &client("portal", ""),
        &email,
    );
    alice(&env, "everywhere");
    env.ok(&["user", "add", "dave", "--pin-stdin"], Some("1234\n"));
    env.ok(
        &[
            "token",
            "add",
            "dave",
            "--type",
            "email",
            "--address",
            "dave@example.org",
            "--active",
        ],
        None,
    );
    env.ok(&["user", "set", "dave", "--level", "everywhere"], None);
    let _d = env.start();
    let a = post_form(port, "/validate/triggerchallenge", &[("user", "alice")]);
    assert_eq!(a.status, 401, "{}", a.body);
    assert_eq!(a.json()["result"]["error"]["code"], 4033);
    let a = post_form(port, "/auth", &[("username", "sso"), ("password", "wrong")]);
    assert_eq!(a.status, 401);
    assert_eq!(a.json()["result"]["error"]["code"], 4031);
    let a = post_form(
        port,
        "/auth",
        &[("username", "sso"), ("password", "0123456789abcdef-sso")],
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let token = a.json()["result"]["value"]["token"]
        .as_str()
        .expect("token")
        .to_string();
    let url = format!("http://127.0.0.1:{port}/validate/triggerchallenge");
    let auth = format!("Authorization: {token}");
    let a = curl(&["-H", &auth, "-d", "user=alice", &url]);
    let v = a.json();
    assert_eq!(v["result"]["authentication"], "CHALLENGE", "{v}");
    assert_eq!(v["result"]["value"], 1);
    let tid = v["detail"]["transaction_id"].as_str().expect("tid");
    let a = post_form(
        port,
        "/validate/check",
        &[
            ("user", "alice"),
            ("transaction_id", tid),
            ("pass", &hotp_code(0)),
        ],
    );
    assert_eq!(authentication(&a), "ACCEPT", "{}", a.body);

    // An e-mail token: the trigger sends the code, the user answers with it alone.
    let a = curl(&["-H", &auth, "-d", "user=dave", &url]);
    let v = a.json();
    assert_eq!(v["result"]["authentication"], "CHALLENGE", "{v}");
    assert_eq!(v["detail"]["type"], "email", "{v}");
    let tid = v["detail"]["transaction_id"].as_str().expect("tid");
    let code = sink.code(1);
    let a = post_form(
        port,
        "/validate/check",
        &[("user", "dave"), ("transaction_id", tid), ("pass", &code)],
    );
    assert_eq!(authentication(&a), "ACCEPT", "{}", a.body);
}

/// Slow heads and bodies, a connection flood and a request flood from 127.0.0.1 get errors
/// or are closed, none hangs, and a login from 127.0.0.2 goes through meanwhile.
#[test]
fn slow_clients_and_floods_get_errors_while_a_valid_login_gets_through() {
    let (env, port) = http_env(
        "max_connections_per_source = 8\nmax_in_flight_per_source = 4\n\
         header_timeout = \"1s\"\nrequest_timeout = \"2s\"\nidle_timeout = \"2s\"",
        &client("portal", ""),
        "",
    );
    alice(&env, "everywhere");
    let _d = env.start();
    let out = common::python(ATTACK, &[&port.to_string(), &pin_code(0)]);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    eprintln!("attack: {v}");
    // The valid login from another address while the flood ran.
    assert_eq!(v["login"], 200, "{v}");
    assert_eq!(v["login_auth"], "ACCEPT", "{v}");
    assert!(v["login_secs"].as_f64().unwrap() < 3.0, "{v}");
    // Connections past the per-source share: 429 with a JSON error.
    assert!(v["refused_429"].as_u64().unwrap() >= 1, "{v}");
    assert_eq!(v["refused_json"], true, "{v}");
    // A request past the in-flight share: 429.
    assert_eq!(v["inflight_status"], 429, "{v}");
    // Slow heads are closed within the header timeout plus slack.
    assert!(v["slowloris_closed_secs"].as_f64().unwrap() < 6.0, "{v}");
    // A body that trickles: 408 with a JSON error.
    assert_eq!(v["slow_body_status"], 408, "{v}");
    assert_eq!(v["hung"], 0, "{v}");
}

/// A portal that keeps exactly its share of requests in flight (`max_in_flight_per_source`)
/// on kept-alive connections and sends the next the moment an answer arrives, as a
/// connection pool of that size does: none of its requests may be refused for load. The
/// share's turn goes back when the handler returns, before hyper writes the answer; a turn
/// still held when the answer arrives would refuse the next request with 429.
#[test]
fn a_portal_that_keeps_exactly_its_share_in_flight_is_never_refused() {
    const SHARE: usize = 4;
    const PER_ACCOUNT: u64 = 250;
    let (env, port) = http_env(
        &format!("max_in_flight_per_source = {SHARE}\nmax_connections_per_source = {SHARE}"),
        &client("portal", ""),
        "",
    );
    for i in 0..SHARE {
        env.enrol(&format!("share{i}"), PIN, "hotp", "everywhere");
    }
    let _d = env.start();
    let codes: Vec<String> = (0..PER_ACCOUNT).map(pin_code).collect();
    let out = common::python(
        KEEP_SHARE,
        &[&port.to_string(), &SHARE.to_string(), &codes.join(",")],
    );
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    eprintln!("{v}");
    let all = SHARE as u64 * PER_ACCOUNT;
    assert_eq!(v["statuses"], serde_json::json!({ "200": all }), "{v}");
    assert_eq!(v["accepted"], all, "{v}");
}

/// SHARE threads, each with one kept-alive connection and one account, each sending the
/// account's codes one after another.
const KEEP_SHARE: &str = r#"
import http.client, json, sys, threading, urllib.parse
port, share, codes = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].split(",")
lock = threading.Lock()
res = {"statuses": {}, "accepted": 0, "refused": []}
def run(i):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for n, code in enumerate(codes):
        body = urllib.parse.urlencode({"user": "share%d" % i, "pass": code})
        c.request("POST", "/validate/check", body,
                  {"Content-Type": "application/x-www-form-urlencoded"})
        r = c.getresponse()
        data = r.read()
        with lock:
            k = str(r.status)
            res["statuses"][k] = res["statuses"].get(k, 0) + 1
            if r.status == 200 and json.loads(data)["result"]["authentication"] == "ACCEPT":
                res["accepted"] += 1
            elif len(res["refused"]) < 5:
                res["refused"].append([i, n, r.status, data.decode(errors="replace")[:200]])
threads = [threading.Thread(target=run, args=(i,)) for i in range(share)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(res))
"#;

const ATTACK: &str = r#"
import json, socket, sys, threading, time, http.client
port = int(sys.argv[1]); good = sys.argv[2]
res = {"hung": 0}
def conn(src="127.0.0.1"):
    s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(src, 0))
    return s
def read_all(s, limit=10):
    s.settimeout(limit); data = b""
    try:
        while True:
            b = s.recv(4096)
            if not b: break
            data += b
            if b"\r\n\r\n" in data:
                head, _, body = data.partition(b"\r\n\r\n")
                n = [l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
                if n and len(body) >= int(n[0].split(b":")[1]): break
    except socket.timeout:
        res["hung"] += 1
    return data
# 4 slow bodies take this source's requests in flight.
slow = []
for i in range(4):
    s = conn()
    s.sendall(b"POST /validate/check HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nuser=alice")
    slow.append(s)
time.sleep(0.3)
# 3 slowloris heads: connections held by a head that never ends.
loris = []
for i in range(3):
    s = conn(); s.sendall(b"POST /validate/check HTTP/1.1\r\nHost: x\r\n"); loris.append(s)
# One more request from this source: no room in flight.
s = conn(); s.sendall(b"GET /validate/check?user=nobody&pass=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
d = read_all(s); res["inflight_status"] = int(d.split(b" ")[1]) if d else 0
# A flood of connections past the per-source share.
refused = 0; refused_json = True
flood = []
for i in range(20):
    try:
        f = conn(); f.sendall(b"GET /validate/check?user=nobody&pass=1 HTTP/1.1\r\nHost: x\r\n\r\n"); flood.append(f)
    except OSError:
        pass
def answer(f):
    global refused, refused_json
    d = read_all(f, 5)
    if d.startswith(b"HTTP/1.1 429"):
        refused += 1
        refused_json = refused_json and json.loads(d.partition(b"\r\n\r\n")[2])["result"]["status"] is False
ths = [threading.Thread(target=answer, args=(f,)) for f in flood]
for t in ths: t.start()
# Meanwhile, a real login from another address.
t0 = time.time()
c = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=("127.0.0.2", 0))
c.request("POST", "/validate/check", body="user=alice&pass=" + good, headers={"Content-Type": "application/x-www-form-urlencoded"})
r = c.getresponse(); body = json.loads(r.read())
res["login"] = r.status; res["login_auth"] = body["result"].get("authentication"); res["login_secs"] = time.time() - t0
for t in ths: t.join(12)
res["refused_429"] = refused; res["refused_json"] = refused_json
# The slowloris heads are closed by the server.
t0 = time.time()
for s in loris:
    s.settimeout(10)
    try:
        while s.recv(4096): pass
    except (socket.timeout, ConnectionResetError):
        pass
res["slowloris_closed_secs"] = time.time() - t0
# The slow bodies: one byte now and then, until the request time runs out.
t0 = time.time(); d = b""
s = slow[0]
try:
    while time.time() - t0 < 8 and not d:
        s.sendall(b"x"); s.settimeout(0.5)
        try: d = s.recv(4096)
        except socket.timeout: pass
except (BrokenPipeError, ConnectionResetError):
    pass
d += read_all(s, 3) if d and b"\r\n\r\n" not in d else b""
res["slow_body_status"] = int(d.split(b" ")[1]) if d else 0
print(json.dumps(res))
"#;

/// A self-signed certificate for 127.0.0.1 (openssl), written as `name`.pem and -key.pem.
fn certificate(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    common::require("openssl", "openssl");
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}-key.pem"));
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", &format!("/CN={name}")])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// docs/http.md's configuration as printed, with this machine's addresses and files: HTTPS
/// with a certificate that a reload (SIGHUP) replaces, plain HTTP behind a trusted proxy
/// whose X-Forwarded-For picks the client entry.
#[test]
fn the_documented_configuration_serves_https_reloads_its_certificate_and_trusts_its_proxy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert_a, key_a) = certificate(dir.path(), "first");
    let (cert_b, key_b) = certificate(dir.path(), "second");
    let live_cert = dir.path().join("fullchain.pem");
    let live_key = dir.path().join("privkey.pem");
    std::fs::copy(&cert_a, &live_cert).expect("cert");
    std::fs::copy(&key_a, &live_key).expect("key");
    let (tls, plain) = (common::free_tcp_port(), common::free_tcp_port());
    let block = products::docs_block("docs/http.md", "http-config");
    let text = block
        .replace("192.0.2.5:8443", &format!("127.0.0.1:{tls}"))
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{plain}"))
        .replace(
            "/etc/otpd/tls/fullchain.pem",
            &live_cert.display().to_string(),
        )
        .replace("/etc/otpd/tls/privkey.pem", &live_key.display().to_string())
        .replace("192.0.2.20", "127.0.0.2");
    assert_ne!(text, block);
    let env = Env::with_tables("", &text);
    alice(&env, "everywhere");
    let d = env.start();
    let https = format!("https://127.0.0.1:{tls}/validate/check");
    let pass = format!("pass={}", pin_code(0));
    let ca_a = cert_a.display().to_string();
    let a = curl(&["--cacert", &ca_a, "-d", "user=alice", "-d", &pass, &https]);
    assert_eq!(authentication(&a), "ACCEPT", "{}", a.body);

    std::fs::copy(&cert_b, &live_cert).expect("cert");
    std::fs::copy(&key_b, &live_key).expect("key");
    // SAFETY: signalling the daemon this test started, by its pid.
    unsafe { libc::kill(d.pid() as i32, libc::SIGHUP) };
    let ca_b = cert_b.display().to_string();
    let pass = format!("pass={}", pin_code(1));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let a = loop {
        let a = curl(&["--cacert", &ca_b, "-d", "user=alice", "-d", &pass, &https]);
        if a.status != 0 || std::time::Instant::now() > deadline {
            break a;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(authentication(&a), "ACCEPT", "{}\n{}", a.body, d.log_text());
    let old = curl(&["--cacert", &ca_a, "-d", "user=alice", &https]);
    assert_eq!(old.status, 0, "the old certificate is gone: {}", old.body);

    // From the trusted proxy, X-Forwarded-For names the client: sso sees error 904.
    let url = format!("http://127.0.0.1:{plain}/validate/check");
    let sso = curl(&[
        "-H",
        "X-Forwarded-For: 127.0.0.2",
        "-d",
        "user=ghost",
        "-d",
        "pass=1",
        &url,
    ]);
    assert_eq!(sso.status, 400, "{}", sso.body);
    assert_eq!(sso.json()["result"]["error"]["code"], 904);
    let direct = curl(&["-d", "user=ghost", "-d", "pass=1", &url]);
    assert_eq!(authentication(&direct), "REJECT", "{}", direct.body);
    // Not from a trusted proxy: the header counts for nothing.
    let other = curl(&[
        "--interface",
        "127.0.0.3",
        "-H",
        "X-Forwarded-For: 127.0.0.2",
        "-d",
        "user=ghost",
        "-d",
        "pass=1",
        &url,
    ]);
    assert_eq!(authentication(&other), "REJECT", "{}", other.body);
}

/// The limits of the whole server: 503 with a JSON error, for connections and for requests
/// in flight, from any source.
#[test]
fn a_full_server_answers_503_at_once() {
    let (env, port) = http_env(
        "max_connections = 3\nmax_connections_per_source = 3\nmax_in_flight = 1\n\
         max_in_flight_per_source = 1\nrequest_timeout = \"3s\"",
        &client("portal", ""),
        "",
    );
    alice(&env, "everywhere");
    let _d = env.start();
    let out = common::python(FULL, &[&port.to_string()]);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    // A trickling body holds the one request in flight: another source gets 503.
    assert_eq!(v["in_flight"], 503, "{v}");
    // Three connections open: the fourth, from yet another address, gets 503 and is closed.
    assert_eq!(v["connections"], 503, "{v}");
    assert_eq!(v["json"], true, "{v}");
    assert!(v["secs"].as_f64().unwrap() < 2.0, "{v}");
}

const FULL: &str = r#"
import json, socket, sys, time
port = int(sys.argv[1]); res = {"json": True}
def conn(src):
    return socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(src, 0))
def status(s, req):
    s.sendall(req); d = b""
    while b"\r\n\r\n" not in d:
        b = s.recv(4096)
        if not b: break
        d += b
    head, _, body = d.partition(b"\r\n\r\n")
    n = [l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
    while n and len(body) < int(n[0].split(b":")[1]):
        body += s.recv(4096)
    if body:
        res["json"] = res["json"] and json.loads(body)["result"]["status"] is False
    return int(d.split(b" ")[1]) if d else 0
t0 = time.time()
slow = conn("127.0.0.1")
slow.sendall(b"POST /validate/check HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 50\r\n\r\nuser=")
time.sleep(0.3)
other = conn("127.0.0.2")
res["in_flight"] = status(other, b"GET /validate/check?user=nobody&pass=1 HTTP/1.1\r\nHost: x\r\n\r\n")
third = conn("127.0.0.3")
time.sleep(0.2)
fourth = conn("127.0.0.4")
res["connections"] = status(fourth, b"GET /validate/check?user=nobody&pass=1 HTTP/1.1\r\nHost: x\r\n\r\n")
res["secs"] = time.time() - t0
print(json.dumps(res))
"#;
