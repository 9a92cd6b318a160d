//! otpd-bench: the load generator of bench/run.sh (docs/performance.md).
//!
//! `otpd-bench accounts` writes the accounts (otpd import lines or a FreeRADIUS users file),
//! derived from a seed; `otpd-bench run` drives a server with them over RADIUS or the Unix
//! socket at one or more windows and reports throughput, latency and every answer that was
//! not what it should be.
#![deny(clippy::unwrap_used)]

mod accounts;
mod http_load;
mod load;
mod radius;
mod scrape;
mod stats;
mod unix_load;

use accounts::Accounts;
use clap::{Parser, Subcommand, ValueEnum};
use load::{Mode, Plan, Shared, Target};
use stats::{Counts, Report};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "otpd-bench",
    about = "Load generator for otpd (and FreeRADIUS)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
struct AccountArgs {
    /// How many accounts.
    #[arg(long, default_value_t = 10_000)]
    accounts: usize,
    /// Secrets, PINs and static passwords derive from this.
    #[arg(long, default_value = "otpd-bench")]
    seed: String,
    /// User names are PREFIX000000, PREFIX000001, ...
    #[arg(long, default_value = "bench")]
    prefix: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// `otpd user import` lines: PIN, level, one HOTP token at counter 0.
    Otpd,
    /// A FreeRADIUS `users` file with static Cleartext-Passwords.
    Freeradius,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write the accounts to standard output.
    Accounts {
        #[command(flatten)]
        a: AccountArgs,
        #[arg(long, value_enum)]
        format: Format,
        /// Level of the otpd accounts.
        #[arg(long, default_value = "everywhere")]
        level: String,
    },
    /// Drive a server and report.
    Run(Box<RunArgs>),
}

#[derive(clap::Args)]
struct RunArgs {
    #[command(flatten)]
    a: AccountArgs,
    /// RADIUS server address (PAP with Message-Authenticator).
    #[arg(long, conflicts_with_all = ["socket", "http"], required_unless_present_any = ["socket", "http"])]
    radius: Option<SocketAddr>,
    /// RADIUS shared secret.
    #[arg(long, default_value = "bench-secret-0123456789")]
    secret: String,
    /// Accept RADIUS replies without Message-Authenticator (servers before BlastRADIUS fixes).
    #[arg(long)]
    allow_missing_message_authenticator: bool,
    /// otpd's Unix socket (protocol v1, JSON lines).
    #[arg(long, conflicts_with = "http")]
    socket: Option<PathBuf>,
    /// otpd's HTTP front-end (plain HTTP, kept-alive connections, privacyIDEA's
    /// /validate/check).
    #[arg(long)]
    http: Option<SocketAddr>,
    /// Send each user's static password instead of PIN + a fresh HOTP code.
    #[arg(long = "static")]
    static_passwords: bool,
    /// Requests outstanding in total, one run per value.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32,128")]
    windows: Vec<usize>,
    /// Seconds of measured load per window.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of unmeasured load before each window's measurement.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Stop after this many requests per window instead (smoke runs); 0 = no limit.
    #[arg(long, default_value_t = 0)]
    requests: u64,
    /// UDP sockets (RADIUS) or threads (Unix socket) at most; the window is spread over them.
    #[arg(long, default_value_t = 4)]
    sockets: usize,
    /// Per-request timeout before a retransmission, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    timeout_ms: u64,
    /// Retransmissions before a request counts as lost (RADIUS).
    #[arg(long, default_value_t = 2)]
    retries: u32,
    /// Service class (otpd socket) for the logins.
    #[arg(long, default_value = "vpn")]
    service: String,
    /// The server's pid: its CPU time and peak memory are reported per window.
    #[arg(long)]
    pid: Option<u32>,
    /// otpd's metrics endpoint (`[metrics] listen`): its counters are read before and after
    /// each window's measured seconds, and their differences reported (commits, batch sizes,
    /// CPU per phase).
    #[arg(long)]
    metrics: Option<SocketAddr>,
    /// Name of the target in the report.
    #[arg(long, default_value = "otpd")]
    label: String,
    /// Skip the final replay of every account's last accepted code.
    #[arg(long)]
    no_replay_check: bool,
    /// File with each account's next HOTP counter and last accepted one, read at start and
    /// written at the end, so runs against the same store can follow each other (and the
    /// last one's replay check covers the codes of the runs before it).
    #[arg(long)]
    state: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Accounts { a, format, level } => {
            let acc = Accounts::new(&a.seed, &a.prefix, a.accounts);
            let out = std::io::stdout();
            let mut out = std::io::BufWriter::new(out.lock());
            let r = match format {
                Format::Otpd => acc.write_otpd(&mut out, &level),
                Format::Freeradius => acc.write_freeradius(&mut out),
            };
            match r.and_then(|_| out.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("otpd-bench: writing the accounts: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Cmd::Run(args) => match run(*args) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("otpd-bench: {e}");
                ExitCode::from(2)
            }
        },
    }
}

#[derive(serde::Serialize)]
struct Replay {
    replayed: u64,
    double_accepted: u64,
    /// Accepted as the code of a later counter that happens to be the same (see Counts).
    coincident: u64,
    lost: u64,
    /// Accounts not replayed: their last code is also one of their next codes in otpd's HOTP
    /// window, so an Accept would be a fresh code, not a second use.
    skipped_repeating: u64,
}

#[derive(serde::Serialize)]
struct Summary {
    accounts: usize,
    runs: Vec<Report>,
    replay: Option<Replay>,
    ok: bool,
}

fn run(args: RunArgs) -> Result<bool, String> {
    let target = match (&args.radius, &args.socket, &args.http) {
        (Some(server), None, None) => Target::Radius {
            server: *server,
            secret: args.secret.clone().into_bytes(),
            require_ma: !args.allow_missing_message_authenticator,
        },
        (None, Some(path), None) => Target::Unix { path: path.clone() },
        (None, None, Some(addr)) => Target::Http { addr: *addr },
        _ => return Err("give one of --radius ADDR, --socket PATH, --http ADDR".into()),
    };
    if args.windows.iter().any(|w| *w == 0 || *w > 4096) {
        return Err("--windows: each window must be 1 to 4096".into());
    }
    if args.sockets == 0 {
        return Err("--sockets must be at least 1".into());
    }
    let max_window = args.windows.iter().copied().max().unwrap_or(1);
    if args.a.accounts < 2 * max_window {
        return Err(format!(
            "{} accounts are too few for window {max_window}: give at least twice the window, \
             so no account ever has two requests outstanding",
            args.a.accounts
        ));
    }
    let start = match &args.state {
        Some(p) if p.exists() => read_state(p)?,
        _ => Vec::new(),
    };
    let accounts = Accounts::new(&args.a.seed, &args.a.prefix, args.a.accounts);
    let sh = Shared::new(accounts, args.service.clone(), &start);
    let mode = if args.static_passwords {
        Mode::Static
    } else {
        Mode::Otp
    };
    let mode_name = if args.static_passwords {
        "static"
    } else {
        "hotp"
    };
    let mut runs = Vec::new();
    let mut ok = true;
    for &window in &args.windows {
        let (c, took, conns, cpu, gen, daemon) = drive(&sh, &target, &args, mode, window)?;
        let mut r = Report::new(&args.label, mode_name, window, conns);
        let answered = c.accepted + c.rejected + c.other;
        ok &= c.lost == 0 && c.bad_replies == 0 && c.rejected == 0 && c.other == 0;
        r.fill(c, took);
        r.generator_cpu_s = gen;
        r.daemon_metrics = daemon;
        if let Some(cpu) = cpu {
            r.daemon_cpu_s = Some(cpu);
            if answered > 0 {
                r.daemon_cpu_us_per_req = Some(cpu * 1e6 / answered as f64);
            }
        }
        r.daemon_peak_rss_kib = args.pid.and_then(stats::proc_peak_rss_kib);
        if !args.json {
            if runs.is_empty() {
                println!("{}", Report::header());
            }
            println!("{}", r.line());
        }
        runs.push(r);
    }
    let replay = if mode == Mode::Otp && !args.no_replay_check {
        let plan_window = max_window.min(32);
        let (c, ..) = drive(&sh, &target, &args, Mode::Replay, plan_window)?;
        let r = Replay {
            replayed: c.accepted + c.rejected + c.other + c.lost,
            double_accepted: c.accepted - c.coincident,
            coincident: c.coincident,
            lost: c.lost,
            skipped_repeating: sh.replay_chance_repeats(),
        };
        ok &= r.double_accepted == 0;
        if !args.json {
            println!(
                "replay check: {} accounts' last accepted codes sent again: {} accepted (must be 0), \
                 {} accepted as the same code of a counter just ahead, {} lost; {} not sent (their \
                 code repeats within the next {} counters)",
                r.replayed,
                r.double_accepted,
                r.coincident,
                r.lost,
                r.skipped_repeating,
                load::HOTP_WINDOW
            );
        }
        Some(r)
    } else {
        None
    };
    if let Some(p) = &args.state {
        write_state(p, &sh)?;
    }
    if args.json {
        let s = Summary {
            accounts: args.a.accounts,
            runs,
            replay,
            ok,
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&s).map_err(|e| e.to_string())?
        );
    } else if !ok {
        println!("NOT OK: some requests were lost, rejected, badly answered or accepted twice");
    }
    Ok(ok)
}

type Metrics = std::collections::BTreeMap<String, f64>;
type Driven = (Counts, Duration, usize, Option<f64>, f64, Option<Metrics>);

/// The daemon's metrics now, if asked for; a failed read is an error, not a gap in the report.
fn read_metrics(args: &RunArgs) -> Result<Option<Metrics>, String> {
    args.metrics.map(scrape::scrape).transpose()
}

/// One window: workers in threads, warm-up, measurement, drain; merged counts.
fn drive(
    sh: &Shared,
    target: &Target,
    args: &RunArgs,
    mode: Mode,
    window: usize,
) -> Result<Driven, String> {
    let workers = window.min(args.sockets);
    let now = Instant::now();
    let timed = mode != Mode::Replay;
    let warmup = if timed && args.requests == 0 {
        Duration::from_secs_f64(args.warmup.max(0.0))
    } else {
        Duration::ZERO
    };
    let measure = if args.requests > 0 {
        // A smoke run: long enough for the requested count at any sane speed, cut short by
        // the count below.
        Duration::from_secs(60)
    } else {
        Duration::from_secs_f64(args.duration.max(0.1))
    };
    let plan = Plan {
        mode,
        measure_from: now + warmup,
        end: now + warmup + measure,
        timeout: Duration::from_millis(args.timeout_ms.max(1)),
        retries: args.retries,
        stop_after: if timed { args.requests } else { 0 },
        issued: Default::default(),
        stopped: Default::default(),
    };
    let cpu0 = args.pid.and_then(stats::proc_cpu);
    let gen0 = stats::self_cpu();
    // The daemon's CPU and metrics are sampled once warm-up is over.
    let mut cpu_start = cpu0;
    let mut metrics_start = if timed && warmup.is_zero() {
        read_metrics(args)
    } else {
        Ok(None)
    };
    let results: Vec<std::io::Result<Counts>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let share = window / workers + usize::from(w < window % workers);
                let plan = &plan;
                s.spawn(move || match target {
                    Target::Radius {
                        server,
                        secret,
                        require_ma,
                    } => load::radius_worker(
                        sh,
                        plan,
                        *server,
                        secret,
                        *require_ma,
                        share,
                        w,
                        workers,
                    ),
                    Target::Unix { path } => {
                        unix_load::unix_worker(sh, plan, path, share, w, workers)
                    }
                    Target::Http { addr } => {
                        http_load::http_worker(sh, plan, *addr, share, w, workers)
                    }
                })
            })
            .collect();
        if !warmup.is_zero() {
            std::thread::sleep(warmup);
            cpu_start = args.pid.and_then(stats::proc_cpu);
            metrics_start = read_metrics(args);
        }
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("worker panicked")))
            })
            .collect()
    });
    let took = if timed {
        plan.end
            .min(plan.stop_at())
            .saturating_duration_since(plan.measure_from)
    } else {
        now.elapsed()
    };
    let cpu = match (cpu_start, args.pid.and_then(stats::proc_cpu)) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let daemon = match (metrics_start?, read_metrics(args)?) {
        (Some(a), Some(b)) => Some(scrape::delta(&a, &b)),
        _ => None,
    };
    let mut total = Counts::default();
    for r in results {
        total.merge(r.map_err(|e| format!("load worker: {e}"))?);
    }
    Ok((total, took, workers, cpu, stats::self_cpu() - gen0, daemon))
}

/// One line per account: the next counter and the counter of the last accepted code (-1:
/// none), so that a later run can also check the replay of codes an earlier run sent. A line
/// of the next counter alone (the older form) has no last accepted code.
fn read_state(p: &std::path::Path) -> Result<Vec<(u64, i64)>, String> {
    let s = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
    s.lines()
        .enumerate()
        .map(|(i, l)| {
            let bad = |e: &dyn std::fmt::Display| format!("{} line {}: {e}", p.display(), i + 1);
            let mut cells = l.split_whitespace();
            let next = cells
                .next()
                .ok_or_else(|| bad(&"empty"))?
                .parse::<u64>()
                .map_err(|e| bad(&e))?;
            let last = match cells.next() {
                Some(c) => c.parse::<i64>().map_err(|e| bad(&e))?,
                None => -1,
            };
            Ok((next, last))
        })
        .collect()
}

fn write_state(p: &std::path::Path, sh: &Shared) -> Result<(), String> {
    use std::sync::atomic::Ordering::Relaxed;
    let mut out = String::with_capacity(sh.counters.len() * 8);
    for (c, last) in sh.counters.iter().zip(&sh.last_accepted) {
        out.push_str(&format!("{} {}\n", c.load(Relaxed), last.load(Relaxed)));
    }
    std::fs::write(p, out).map_err(|e| format!("{}: {e}", p.display()))
}
