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

/// One receiving RADIUS thread: a login's phases are timed on one in 32 per thread, and 200
/// logins over as many threads as a large machine has CPUs could leave a window unsampled.
fn rig() -> (Env, Daemon, u16, u16, u16) {
    let port = common::free_udp_port();
    let http = common::free_tcp_port();
    let metrics = common::free_tcp_port();
    let tables = format!(
        "[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\
         [socket]\npath = \"SOCK\"\nallow_uids = [{uid}]\n\
         [radius]\nlisten = [\"127.0.0.1:{port}\"]\n\
         receive_threads = 1\n\
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
    (env, daemon, port, http, metrics)
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
    let (env, daemon, port, http, metrics) = rig();
    let addr = format!("127.0.0.1:{port}");
    let metrics = format!("127.0.0.1:{metrics}");
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
    args.extend(["--radius", &addr, "--metrics", &metrics]);
    let v = check(bench(&args), 400);
    assert_eq!(v["replay"]["double_accepted"], 0, "{v}");
    assert!(
        v["replay"]["replayed"].as_u64().expect("replayed") > 0,
        "{v}"
    );
    assert!(v["runs"][0]["daemon_cpu_s"].is_number(), "{v}");
    let radius = v;
    // The Unix socket, continuing each account's counter from the state file.
    let sock = env.socket_path();
    let mut args = common_args.to_vec();
    args.extend([
        "--socket",
        sock.to_str().expect("path"),
        "--no-replay-check",
    ]);
    let socket = check(bench(&args), 400);
    // HTTP (/validate/check, kept alive), continuing the counters again.
    let http = format!("127.0.0.1:{http}");
    let mut args = common_args.to_vec();
    args.extend(["--http", &http]);
    let v = check(bench(&args), 400);
    assert_eq!(v["replay"]["double_accepted"], 0, "{v}");
    summary_prints_the_bound_and_the_time_split(&env, &radius, &socket, &v);
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

/// bench/summary.py (the printed summary of bench/run.sh) on this run: the durable bound at
/// window 1 and, per window, where otpd's time went, all filled from the daemon's metrics.
/// FreeRADIUS is not part of the test suite, so the RADIUS run itself stands in as the
/// reference server whose mean round trip the bound adds to the flush. The socket's and
/// HTTP's runs fill the table of the other front-ends, each set against the RADIUS run.
fn summary_prints_the_bound_and_the_time_split(
    env: &Env,
    run: &serde_json::Value,
    socket: &serde_json::Value,
    http: &serde_json::Value,
) {
    common::require("python3", "python3");
    for r in run["runs"].as_array().expect("runs") {
        let m = &r["daemon_metrics"];
        assert!(m.is_object(), "no metrics of the window: {r}");
        for phase in ["receive", "decide", "commit", "send"] {
            let n = m[format!("otpd_login_cpu_seconds_count{{phase=\"{phase}\"}}")]
                .as_f64()
                .unwrap_or(0.0);
            assert!(n >= 1.0, "no sample of {phase} in 200 logins: {m}");
        }
        assert!(
            m["otpd_store_commit_batch_size_count"]
                .as_f64()
                .expect("commits")
                >= 1.0
        );
    }
    let work = env.path().join("summary");
    std::fs::create_dir_all(&work).expect("dir");
    let text = serde_json::to_string(run).expect("json");
    std::fs::write(work.join("otpd-1.json"), &text).expect("write");
    std::fs::write(work.join("fr-1.json"), &text).expect("write");
    for (name, v) in [("socket-1.json", socket), ("http-1.json", http)] {
        let text = serde_json::to_string(v).expect("json");
        std::fs::write(work.join(name), text).expect("write");
    }
    // The flush probe's figure, measured here like bench/run.sh does (fewer times).
    let probe = work.join("probe");
    let f = std::fs::File::create(&probe).expect("probe");
    let mut took = Vec::new();
    for _ in 0..20 {
        use std::io::Write as _;
        let t = std::time::Instant::now();
        (&f).write_all(&[0x5a; 4096]).expect("write");
        f.sync_data().expect("fdatasync");
        took.push(t.elapsed().as_secs_f64() * 1e6);
    }
    took.sort_by(f64::total_cmp);
    // As written to disk.json and read back by the summary.
    let p50: f64 = format!("{:.1}", took[took.len() / 2])
        .parse()
        .expect("number");
    std::fs::write(
        work.join("disk.json"),
        format!(
            "{{\"p50_us\": {p50:.1}, \"p99_us\": {:.1}}}",
            took[took.len() - 1]
        ),
    )
    .expect("write");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/summary.py");
    let out = Command::new("python3")
        .args([
            script,
            "--work",
            work.to_str().expect("path"),
            "--rounds",
            "1",
            "--socket",
            "1",
            "--http",
            "1",
        ])
        .output()
        .expect("python3 (Debian package python3) runs bench/summary.py");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mean = run["runs"][0]["mean_ms"].as_f64().expect("mean_ms");
    let bound = 1e3 / (mean + p50 / 1e3);
    let line = text
        .lines()
        .find(|l| l.starts_with("durable bound at window 1: 1 / (FreeRADIUS mean"))
        .unwrap_or_else(|| panic!("no durable bound line:\n{text}"));
    assert!(
        line.contains(&format!("= {} logins/s", group(bound.round() as u64))),
        "the bound is 1 / (mean {mean} ms + flush {p50} us): {line}"
    );
    assert!(line.contains(" of it (target 0.80)"), "{line}");
    let split = text
        .lines()
        .skip_while(|l| !l.starts_with("where otpd's time goes"))
        .collect::<Vec<_>>();
    assert!(split.len() > 3, "no time split:\n{text}");
    assert!(
        split[1].contains("flush/login") && split[1].contains("decide"),
        "{text}"
    );
    for (row, window) in split[2..4].iter().zip(["1", "8"]) {
        let cells: Vec<&str> = row.split_whitespace().filter(|c| *c != "|").collect();
        assert_eq!(cells[0], window, "{text}");
        assert_eq!(cells.len(), 11, "{row}");
        for c in &cells[1..] {
            assert!(c.parse::<f64>().is_ok(), "every cell filled: {row}");
        }
    }
    // The other front-ends, one row per window: accepts/s, p50, p99, CPU and the ratio to
    // RADIUS's accepts/s, for the socket and for HTTP.
    let fronts = text
        .lines()
        .skip_while(|l| !l.starts_with("the same otpd over its Unix socket and over HTTP"))
        .collect::<Vec<_>>();
    assert!(
        fronts.len() > 3,
        "no table of the other front-ends:\n{text}"
    );
    let radius_rate = |i: usize| run["runs"][i]["accepts_per_s"].as_f64().expect("rate");
    for (i, (row, window)) in fronts[2..4].iter().zip(["1", "8"]).enumerate() {
        let cells: Vec<&str> = row.split_whitespace().filter(|c| *c != "|").collect();
        assert_eq!(cells[0], window, "{text}");
        assert_eq!(cells.len(), 11, "{row}");
        for (at, v) in [(1, socket), (6, http)] {
            let rate = v["runs"][i]["accepts_per_s"].as_f64().expect("rate");
            assert_eq!(cells[at], format!("{rate:.0}"), "{row}");
            assert_eq!(
                cells[at + 4],
                format!("{:.2}", rate / radius_rate(i)),
                "{row}"
            );
        }
    }
    // As many accepts as the runs counted (HTTP's generator may finish one request more).
    let accepted = |v: &serde_json::Value| -> u64 {
        v["runs"]
            .as_array()
            .expect("runs")
            .iter()
            .map(|r| r["accepted"].as_u64().expect("accepted"))
            .sum()
    };
    for (name, v) in [("the socket", socket), ("HTTP", http)] {
        let line = format!(
            "otpd over {name}: {} accepted, 0 rejected, 0 lost",
            accepted(v)
        );
        assert!(text.contains(&line), "no {line:?} in:\n{text}");
    }
    for needle in [
        "socket within 10 % of RADIUS at every window (least ",
        "HTTP p99 <= 5 ms at window 8 (",
        "window 8 p99 <= 1 ms (",
    ] {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }
    assert!(text.contains("targets met: "), "{text}");
    assert!(text.contains("targets not met: "), "{text}");
    assert!(text.contains("verdict: OK"), "{text}");
}

/// 12345 as "12,345", as Python's `,` format prints it.
fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}
