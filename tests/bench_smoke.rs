//! A few hundred requests of the load generator (bench/run.sh's otpd-bench) against the real
//! daemon over RADIUS, the Unix socket and HTTP, so the benchmark cannot rot unnoticed. The
//! benchmark itself is too slow for the test suite.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job
mod common;
use common::{Daemon, Env};
use std::process::Command;

const BENCH: &str = env!("CARGO_BIN_EXE_otpd-bench");
const SECRET: &str = "smoke-secret-0123456789";
const ACCOUNTS: &str = "300";

fn bench(args: &[&str]) -> std::process::Output {
    Command::new(BENCH)
        .args(args)
        .output()
        .expect("run otpd-bench")
}

fn rig() -> (Env, Daemon, u16, u16) {
    let port = common::free_udp_port();
    let http = common::free_tcp_port();
    let tables = format!(
        "[socket]\npath = \"SOCK\"\nallow_uids = [{uid}]\n\
         [radius]\nlisten = [\"127.0.0.1:{port}\"]\n\
         [[radius.clients]]\nname = \"bench\"\naddress = \"127.0.0.1\"\nsecret = \"{SECRET}\"\n\
         service = \"vpn\"\n\
         [http]\nlisten_plain = [\"127.0.0.1:{http}\"]\n\
         [[http.clients]]\nname = \"bench\"\naddress = \"127.0.0.1\"\nservice = \"vpn\"\n",
        // SAFETY: getuid has no preconditions.
        uid = unsafe { libc::getuid() }
    );
    let env = Env::with_tables("", &tables);
    // The socket path can only be known once the temp dir exists.
    let text = std::fs::read_to_string(&env.config).expect("config");
    std::fs::write(
        &env.config,
        text.replace("SOCK", env.socket_path().to_str().expect("path")),
    )
    .expect("config");
    let out = bench(&["accounts", "--accounts", ACCOUNTS, "--format", "otpd"]);
    assert!(out.status.success());
    let file = env.path().join("accounts.jsonl");
    std::fs::write(&file, &out.stdout).expect("write");
    env.ok(&["user", "import", file.to_str().expect("path")], None);
    let daemon = env.start();
    (env, daemon, port, http)
}

fn check(out: std::process::Output, want_accepts: u64) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "otpd-bench failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["ok"], true, "{v}");
    let accepted: u64 = v["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["accepted"].as_u64().expect("accepted"))
        .sum();
    assert!(accepted >= want_accepts, "{accepted} accepts: {v}");
    for r in v["runs"].as_array().expect("runs") {
        assert_eq!(r["lost"], 0, "{r}");
        assert_eq!(r["rejected"], 0, "{r}");
        assert_eq!(r["bad_replies"], 0, "{r}");
    }
    v
}

#[test]
fn load_generator_drives_radius_and_the_socket() {
    let (env, daemon, port, http) = rig();
    let addr = format!("127.0.0.1:{port}");
    let pid = daemon.pid().to_string();
    let state = env.path().join("counters");
    let state = state.to_str().expect("path");
    let common_args = [
        "run",
        "--accounts",
        ACCOUNTS,
        "--secret",
        SECRET,
        "--requests",
        "200",
        "--windows",
        "1,8",
        "--pid",
        &pid,
        "--state",
        state,
        "--json",
    ];
    // RADIUS: every answer's authenticators checked, every code fresh, all accepted, and the
    // replay of each account's last accepted code rejected.
    let mut args = common_args.to_vec();
    args.extend(["--radius", &addr]);
    let v = check(bench(&args), 400);
    assert_eq!(v["replay"]["double_accepted"], 0, "{v}");
    assert!(
        v["replay"]["replayed"].as_u64().expect("replayed") > 0,
        "{v}"
    );
    assert!(v["runs"][0]["daemon_cpu_s"].is_number(), "{v}");
    // The Unix socket, continuing each account's counter from the state file.
    let sock = env.socket_path();
    let mut args = common_args.to_vec();
    args.extend([
        "--socket",
        sock.to_str().expect("path"),
        "--no-replay-check",
    ]);
    check(bench(&args), 400);
    // HTTP (/validate/check, kept alive), continuing the counters again.
    let http = format!("127.0.0.1:{http}");
    let mut args = common_args.to_vec();
    args.extend(["--http", &http]);
    let v = check(bench(&args), 400);
    assert_eq!(v["replay"]["double_accepted"], 0, "{v}");
    // A wrong shared secret: no answer passes the checks, and the run says so.
    let out = bench(&[
        "run",
        "--accounts",
        ACCOUNTS,
        "--secret",
        "not-the-secret-at-all",
        "--requests",
        "3",
        "--windows",
        "1",
        "--timeout-ms",
        "200",
        "--retries",
        "0",
        "--radius",
        &addr,
        "--no-replay-check",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "must fail without valid answers"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("NOT OK"));
    assert!(daemon.stop().success());
}
