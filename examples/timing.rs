//! Timing benchmark (issue 14, "equal time for every answer that must not tell things
//! apart"): does the answer time tell an unknown user, a wrong PIN, a wrong code, a locked or a
//! throttled account, an account without an active token (and a few uncounted kinds) apart?
//! The kinds are interleaved in random order so drift of the machine hits all alike; the
//! example prints the distribution of each, the differences of the medians to a wrong code, a
//! verdict against a bound, and the same as a markdown table for docs/security.md.
//!
//!   cargo build --release
//!   cargo run --release --example timing -- [--via engine|socket|radius]
//!       [--unknown-user reject|defer] [--samples N] [--pace-ms MS] [--bound-us US]
//!       [--warmup N] [--otpd-bin PATH]
//!   cargo run --release --example timing -- [SAMPLES [PACE_MS]]     (the older form: engine)
//!
//! `--via engine` calls the engine in this process on a real on-disk store. `--via socket` and
//! `--via radius` run the real daemon (`otpd serve`, found next to this example in
//! target/<profile>/, or at `--otpd-bin` / `OTPD_BIN`) in a private temp directory and time
//! each request on the client side, from sending it to reading its answer: over the Unix socket
//! (JSON lines, docs/protocol.md, one connection) or over RADIUS (PAP with
//! Message-Authenticator, one UDP socket on 127.0.0.1).
//!
//! The lockout is on (free_failures 3, delay 1h, max_failures 6, lock 1h; the per-source
//! limits off), so that locked and throttled accounts are real. A counted failure must not push
//! the account it is measured on into the throttle, or the sample would measure a throttled
//! answer: every kind that may count draws its user from a pool in which each name serves at
//! most free_failures - 1 samples (warm-up included), in random order. The locked account is
//! made by 6 failures before the run and the throttled one by 3 (with the throttle lifted for
//! those preparing logins only).
//!
//! Every answer is checked against the one the kind must get (reject, Access-Reject, or defer
//! where `unknown_user = "defer"` makes that the designed answer); a wrong answer stops the run.
//! After the run the accounts are read back: a pool account that reached the throttle, a
//! `locked` account that is not locked or a `throttled` one that is not throttled fails the run,
//! since some samples would then have timed another kind than their name says. The audit
//! reason of each kind's last sample is printed too. Each median difference comes with a 95 %
//! interval by resampling, as a yardstick for the noise of the run.

use clap::{Parser, ValueEnum};
use otpd::admin::{self, Admin};
use otpd::config::Config;
use otpd::engine::{CheckRequest, Engine};
use otpd::model::TokenState;
use otpd::store::Store;
use otpd::tokens::oath::{hotp, Algorithm};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::UdpSocket;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The lockout of the measured configuration. Pools give each name at most FREE_FAILURES - 1
/// counted failures, below the throttle (with one to spare, should an engine count an attempt
/// as it starts rather than when it fails).
const FREE_FAILURES: usize = 3;
const MAX_FAILURES: usize = 6;
const PIN: &str = "4711";
const WRONG_PIN: &str = "0815";
/// What sshd sends for logins it refuses itself; never counted, whoever the user is.
const FILLER: &str = "\x08\n\r\x7fINCORRECT";
const APP_PASSWORD_GUESS: &str = "abcdabcdabcdabcdabcd";
/// Codes of HOTP counters 0..=this are never used as "wrong" codes: the login window (at most
/// 100) starts at 0 for the fresh tokens here.
const HOTP_AVOID: u64 = 110;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Via {
    /// The engine in this process (no daemon, no front-end).
    Engine,
    /// The daemon's Unix socket (JSON lines).
    Socket,
    /// The daemon's RADIUS front-end (PAP with Message-Authenticator).
    Radius,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UnknownUser {
    Reject,
    Defer,
}

impl UnknownUser {
    fn as_str(self) -> &'static str {
        match self {
            UnknownUser::Reject => "reject",
            UnknownUser::Defer => "defer",
        }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "timing",
    about = "Times failed logins of every kind that must not be told apart (docs/security.md#timing)"
)]
pub struct Args {
    /// Where the logins go.
    #[arg(long, value_enum, default_value_t = Via::Engine)]
    pub via: Via,
    /// The daemon's `unknown_user` setting.
    #[arg(long, value_enum, default_value_t = UnknownUser::Reject)]
    pub unknown_user: UnknownUser,
    /// Measured logins of each kind [default: 300].
    #[arg(long, conflicts_with = "old_samples")]
    pub samples: Option<usize>,
    /// Milliseconds to wait before each login (0: back to back) [default: 0].
    #[arg(long, conflicts_with = "old_pace_ms")]
    pub pace_ms: Option<u64>,
    /// The verdict says whether every two kinds with the same answer are this close at the
    /// median (µs).
    #[arg(long, default_value_t = 50.0)]
    pub bound_us: f64,
    /// Unmeasured logins of each kind first (caches, prepared statements, page cache).
    #[arg(long, default_value_t = 30)]
    pub warmup: usize,
    /// The otpd binary for --via socket|radius [default: `otpd` next to this example's
    /// directory, i.e. target/<profile>/otpd].
    #[arg(long, env = "OTPD_BIN")]
    pub otpd_bin: Option<PathBuf>,
    /// The older form: SAMPLES (same as --samples).
    #[arg(value_name = "SAMPLES")]
    pub old_samples: Option<usize>,
    /// The older form: PACE_MS (same as --pace-ms).
    #[arg(value_name = "PACE_MS")]
    pub old_pace_ms: Option<u64>,
}

type Res<T> = Result<T, String>;

fn main() {
    let args = Args::parse();
    let stdout = std::io::stdout();
    if let Err(e) = run(&args, &mut stdout.lock()) {
        eprintln!("timing: error: {e}");
        std::process::exit(1);
    }
}

/// The kinds of failed login, in the order they are printed; the first is the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    WrongCode,
    WrongPin,
    UnknownUser,
    Locked,
    Throttled,
    NoActiveToken,
    FillerKnown,
    FillerUnknown,
    WrongAppPassword,
}

const KINDS: [Kind; 9] = [
    Kind::WrongCode,
    Kind::WrongPin,
    Kind::UnknownUser,
    Kind::Locked,
    Kind::Throttled,
    Kind::NoActiveToken,
    Kind::FillerKnown,
    Kind::FillerUnknown,
    Kind::WrongAppPassword,
];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::WrongCode => "wrong code",
            Kind::WrongPin => "wrong PIN",
            Kind::UnknownUser => "unknown user",
            Kind::Locked => "locked",
            Kind::Throttled => "throttled",
            Kind::NoActiveToken => "no active token",
            Kind::FillerKnown => "filler, known",
            Kind::FillerUnknown => "filler, unknown",
            Kind::WrongAppPassword => "wrong app pw",
        }
    }

    /// Names of the kind's pool (each serves FREE_FAILURES - 1 samples), or its one account.
    fn pool_prefix(self) -> Option<&'static str> {
        match self {
            Kind::WrongCode => Some("code"),
            Kind::WrongPin => Some("pin"),
            Kind::UnknownUser => Some("nobody"),
            Kind::FillerKnown => Some("filler"),
            Kind::FillerUnknown => Some("ghost"),
            Kind::Locked | Kind::Throttled | Kind::NoActiveToken | Kind::WrongAppPassword => None,
        }
    }

    fn single_user(self) -> &'static str {
        match self {
            Kind::Locked => "locked",
            Kind::Throttled => "throttled",
            Kind::NoActiveToken => "notoken",
            Kind::WrongAppPassword => "apppw",
            _ => "",
        }
    }

    /// Whether the kind's names have no account.
    fn unknown(self) -> bool {
        matches!(self, Kind::UnknownUser | Kind::FillerUnknown)
    }

    /// The answer this kind must get.
    fn expected(self, via: Via, unknown_user: UnknownUser) -> &'static str {
        match via {
            // RADIUS has no password stack behind it: Defer is sent as Access-Reject.
            Via::Radius => "Access-Reject",
            _ if self.unknown() && unknown_user == UnknownUser::Defer => "defer",
            _ => "reject",
        }
    }
}

/// One login to send: its kind, user and password, made before the clock starts.
struct Login {
    kind: usize,
    user: String,
    password: String,
}

/// Everything the run needs to know about the accounts it made.
struct Plan {
    /// HOTP secrets of the accounts that have a token, to draw codes that are surely wrong.
    secrets: HashMap<String, Vec<u8>>,
    /// The import file's lines (JSON).
    import: String,
    warmup: Vec<Login>,
    measured: Vec<Login>,
}

pub fn run(args: &Args, out: &mut dyn Write) -> Res<()> {
    let samples = args.samples.or(args.old_samples).unwrap_or(300);
    let pace_ms = args.pace_ms.or(args.old_pace_ms).unwrap_or(0);
    if samples == 0 {
        return Err("--samples must be at least 1".into());
    }
    if !(args.bound_us.is_finite() && args.bound_us >= 0.0) {
        return Err("--bound-us must be a number of microseconds, 0 or more".into());
    }
    let bin = match args.via {
        Via::Engine => None,
        Via::Socket | Via::Radius => Some(otpd_binary(args.otpd_bin.as_deref())?),
    };
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let plan = plan(samples, args.warmup)?;
    let secret = random_hex(16)?;
    let port = match args.via {
        Via::Radius => free_udp_port()?,
        _ => 0,
    };
    let config = dir.path().join("otpd.toml");
    let text = config_text(dir.path(), args.via, args.unknown_user, port, &secret);
    std::fs::write(&config, &text).map_err(|e| format!("{}: {e}", config.display()))?;
    let import = dir.path().join("accounts.jsonl");
    std::fs::write(&import, &plan.import).map_err(|e| format!("{}: {e}", import.display()))?;

    let n = KINDS.len();
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut answers: Vec<HashMap<String, usize>> = vec![HashMap::new(); n];
    let mut last_user: Vec<String> = vec![String::new(); n];
    let mut reasons: Vec<String> = vec![String::new(); n];
    let states: String;
    let expected: Vec<&str> = KINDS
        .iter()
        .map(|k| k.expected(args.via, args.unknown_user))
        .collect();

    let mut measure = |client: &mut dyn Client| -> Res<()> {
        for l in &plan.warmup {
            let (_, answer) = client.login(&l.user, &l.password)?;
            if answer != expected[l.kind] {
                return Err(wrong_answer(KINDS[l.kind], &answer, expected[l.kind]));
            }
        }
        for l in &plan.measured {
            if pace_ms > 0 {
                std::thread::sleep(Duration::from_millis(pace_ms));
            }
            let (us, answer) = client.login(&l.user, &l.password)?;
            if answer != expected[l.kind] {
                return Err(wrong_answer(KINDS[l.kind], &answer, expected[l.kind]));
            }
            times[l.kind].push(us);
            *answers[l.kind].entry(answer).or_default() += 1;
            last_user[l.kind] = l.user.clone();
        }
        Ok(())
    };

    match args.via {
        Via::Engine => {
            let cfg =
                Arc::new(Config::from_toml_str(&text).map_err(|e| format!("configuration: {e}"))?);
            let (engine, store) = prepare_in_process(&cfg, &import, &plan)?;
            let mut client = EngineClient {
                engine,
                reasons: HashMap::new(),
            };
            measure(&mut client)?;
            for (i, u) in last_user.iter().enumerate() {
                reasons[i] = client.reasons.get(u).cloned().unwrap_or_default();
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_err(|e| format!("clock: {e}"))?
                .as_secs() as i64;
            let accounts = store
                .accounts()
                .map_err(|e| format!("reading the accounts: {e}"))?
                .into_iter()
                .map(|a| AccountState {
                    locked: a.locked_until.is_some_and(|t| t > now),
                    name: a.name,
                    failures: a.failures,
                })
                .collect();
            states = check_states(accounts)?;
        }
        Via::Socket | Via::Radius => {
            let bin = bin.clone().ok_or("no otpd binary")?;
            let cli = Cli {
                bin: bin.clone(),
                config: config.clone(),
            };
            prepare_with_cli(&cli, &import, &plan)?;
            let daemon = Daemon::start(&cli, dir.path())?;
            let result = match args.via {
                Via::Socket => SocketClient::connect(&dir.path().join("otpd.sock"))
                    .and_then(|mut c| measure(&mut c)),
                _ => {
                    RadiusClient::connect(port, secret.as_bytes()).and_then(|mut c| measure(&mut c))
                }
            };
            let stopped = daemon.stop();
            let log = || log_tail(&dir.path().join("otpd.log"));
            result.map_err(|e| format!("{e}\nthe daemon's log ends:\n{}", log()))?;
            stopped.map_err(|e| format!("{e}\nthe daemon's log ends:\n{}", log()))?;
            for (i, u) in last_user.iter().enumerate() {
                reasons[i] = cli.last_reason(u).unwrap_or_else(|e| format!("({e})"));
            }
            states = check_states(cli.accounts()?)?;
        }
    }

    report(
        out,
        args,
        samples,
        pace_ms,
        &mut times,
        &answers,
        &expected,
        &reasons,
        &states,
        bin.as_deref(),
    )
    .map_err(|e| format!("writing the report: {e}"))
}

fn wrong_answer(kind: Kind, got: &str, want: &str) -> String {
    format!(
        "a `{}` login got the answer `{got}`, not `{want}`: the run measures nothing useful",
        kind.name()
    )
}

/// The accounts, the import file and the logins in random order.
fn plan(samples: usize, warmup: usize) -> Res<Plan> {
    let per_name = FREE_FAILURES - 1;
    let names_per_pool = (samples + warmup).div_ceil(per_name);
    let mut secrets = HashMap::new();
    let mut import = String::new();
    let mut account = |user: &str, level: &str| -> Res<()> {
        let key = random_bytes(20)?;
        let line = serde_json::json!({
            "user": user,
            "pin": PIN,
            "level": level,
            "tokens": [{
                "type": "hotp",
                "secret": data_encoding::BASE32_NOPAD.encode(&key),
                "serial": format!("{user}-1"),
            }],
        });
        import.push_str(&format!("{line}\n"));
        secrets.insert(user.to_string(), key);
        Ok(())
    };
    // Each pool name appears `per_name` times among its kind's slots; slots are shuffled and
    // handed out in order, warm-up first.
    let mut slots: Vec<Vec<String>> = Vec::new();
    for k in KINDS {
        let mut s = Vec::new();
        match k.pool_prefix() {
            Some(prefix) => {
                for i in 0..names_per_pool {
                    let user = format!("{prefix}-{i:05}");
                    if !k.unknown() {
                        account(&user, "everywhere")?;
                    }
                    s.extend(std::iter::repeat_n(user, per_name));
                }
            }
            None => {
                let user = k.single_user();
                let level = match k {
                    Kind::WrongAppPassword => "app-only",
                    _ => "everywhere",
                };
                account(user, level)?;
                s.extend(std::iter::repeat_n(user.to_string(), samples + warmup));
            }
        }
        shuffle(&mut s)?;
        slots.push(s);
    }
    let mut make = |count: usize| -> Res<Vec<Login>> {
        let mut order: Vec<usize> = (0..count * KINDS.len()).map(|i| i % KINDS.len()).collect();
        shuffle(&mut order)?;
        let mut v = Vec::with_capacity(order.len());
        for kind in order {
            let user = slots[kind].pop().ok_or("a pool ran out of names")?;
            let password = password_for(KINDS[kind], &user, &secrets)?;
            v.push(Login {
                kind,
                user,
                password,
            });
        }
        Ok(v)
    };
    let warmup = make(warmup)?;
    let measured = make(samples)?;
    Ok(Plan {
        secrets,
        import,
        warmup,
        measured,
    })
}

fn password_for(kind: Kind, user: &str, secrets: &HashMap<String, Vec<u8>>) -> Res<String> {
    Ok(match kind {
        Kind::FillerKnown | Kind::FillerUnknown => FILLER.to_string(),
        Kind::WrongAppPassword => APP_PASSWORD_GUESS.to_string(),
        Kind::WrongPin => format!("{WRONG_PIN}{}", wrong_code(secrets.get(user))?),
        _ => format!("{PIN}{}", wrong_code(secrets.get(user))?),
    })
}

/// A random six-digit code that is none of the token's first codes, so that a login with the
/// right PIN can only fail (or be refused unseen).
fn wrong_code(secret: Option<&Vec<u8>>) -> Res<String> {
    let avoid: HashSet<String> = match secret {
        Some(key) => (0..=HOTP_AVOID)
            .map(|c| hotp(Algorithm::Sha1, key, c, 6))
            .collect(),
        None => HashSet::new(),
    };
    loop {
        let code = format!("{:06}", random_below(1_000_000)?);
        if !avoid.contains(&code) {
            return Ok(code);
        }
    }
}

fn config_text(dir: &Path, via: Via, unknown_user: UnknownUser, port: u16, secret: &str) -> String {
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let radius = match via {
        Via::Radius => format!(
            "[radius]\nlisten = [\"127.0.0.1:{port}\"]\n\
             [[radius.clients]]\nname = \"timing\"\naddress = \"127.0.0.1\"\n\
             secret = \"{secret}\"\nservice = \"vpn\"\nrequire_message_authenticator = true\n"
        ),
        _ => "[radius]\nlisten = []\n".to_string(),
    };
    format!(
        "data_dir = \"{data}\"\nunknown_user = \"{unknown}\"\n\
         [lockout]\nfree_failures = {FREE_FAILURES}\ndelay = \"1h\"\nmax_delay = \"1h\"\n\
         max_failures = {MAX_FAILURES}\nlock_duration = \"1h\"\n\
         per_source_max_failures = 0\nsource_max_failures = 0\n\
         [socket]\npath = \"{sock}\"\nallow_uids = [{uid}]\n\
         {radius}\
         [levels.app-only]\n\"*\" = \"app-password\"\n",
        data = dir.join("data").display(),
        unknown = unknown_user.as_str(),
        sock = dir.join("otpd.sock").display(),
    )
}

/// Lifts the throttle for the logins that prepare the locked and throttled accounts: the
/// failures must count, not be refused unseen after the third.
const PREPARE_FREE_FAILURES: u32 = 1000;

/// The logins that make the locked and the throttled account, each with the right PIN and a
/// wrong code.
fn preparing_logins(plan: &Plan) -> Res<Vec<(String, String)>> {
    let mut v = Vec::new();
    for (user, failures) in [("locked", MAX_FAILURES), ("throttled", FREE_FAILURES)] {
        for _ in 0..failures {
            v.push((
                user.to_string(),
                format!("{PIN}{}", wrong_code(plan.secrets.get(user))?),
            ));
        }
    }
    Ok(v)
}

fn prepare_in_process(
    cfg: &Arc<Config>,
    import: &Path,
    plan: &Plan,
) -> Res<(Engine, Arc<dyn Store>)> {
    admin::init(cfg).map_err(|e| format!("init: {e}"))?;
    let (store, keys) = admin::open(cfg).map_err(|e| format!("open: {e}"))?;
    let a = Admin::new(cfg.clone(), store.clone(), keys.clone());
    let sqlite = otpd::store::SqliteStore::open(&cfg.database_path())
        .map_err(|e| format!("open the store: {e}"))?;
    let f = std::fs::File::open(import).map_err(|e| format!("{}: {e}", import.display()))?;
    otpd::import::import(&a, &sqlite, BufReader::new(f)).map_err(|e| format!("import: {e}"))?;
    drop(sqlite);
    a.set_token_state("notoken-1", TokenState::Disabled)
        .map_err(|e| format!("disable notoken-1: {e}"))?;
    a.add_app_password("apppw", "laptop", &[])
        .map_err(|e| format!("app password: {e}"))?;
    let mut unthrottled = (**cfg).clone();
    unthrottled.lockout.free_failures = PREPARE_FREE_FAILURES;
    let prep = Engine::new(Arc::new(unthrottled), store.clone(), keys.clone());
    for (user, password) in preparing_logins(plan)? {
        let d = prep.check(&request(&user, &password));
        if d.verdict.as_str() != "reject" {
            return Err(format!("preparing `{user}`: got {}", d.verdict.as_str()));
        }
    }
    Ok((Engine::new(cfg.clone(), store.clone(), keys), store))
}

fn prepare_with_cli(cli: &Cli, import: &Path, plan: &Plan) -> Res<()> {
    cli.ok(&["init"], None, &[])?;
    cli.ok(&["user", "import", &import.to_string_lossy()], None, &[])?;
    cli.ok(&["token", "disable", "notoken-1"], None, &[])?;
    cli.ok(
        &["app-password", "add", "apppw", "--label", "laptop"],
        None,
        &[],
    )?;
    let free = PREPARE_FREE_FAILURES.to_string();
    let env = [("OTPD__LOCKOUT__FREE_FAILURES", free.as_str())];
    for (user, password) in preparing_logins(plan)? {
        // `otpd check` exits 1 for anything but Accept: read its answer instead.
        let out = cli.run(
            &["check", &user, "--service", "vpn", "--json"],
            Some(&format!("{password}\n")),
            &env,
        )?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
            format!(
                "preparing `{user}`: `otpd check` printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })?;
        if v["verdict"] != "reject" {
            return Err(format!("preparing `{user}`: got {}", v["verdict"]));
        }
    }
    Ok(())
}

/// A login as a local caller sends it (no source address). The rest stays at its default so
/// that fields the engine's request gains later do not break the benchmark; today every field
/// is named, hence the allow.
#[allow(clippy::needless_update)]
fn request(user: &str, password: &str) -> CheckRequest {
    CheckRequest {
        user: user.into(),
        password: password.to_string().into(),
        service: "vpn".into(),
        rhost: None,
        client: Some("timing".into()),
        state: None,
        ..CheckRequest::default()
    }
}

/// Where to find the daemon: the flag or OTPD_BIN, else `otpd` one directory above this
/// example's own (target/release/examples/timing -> target/release/otpd).
fn otpd_binary(given: Option<&Path>) -> Res<PathBuf> {
    let path = match given {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()
            .ok()
            .and_then(|e| Some(e.parent()?.parent()?.join("otpd")))
            .ok_or("cannot tell where this example runs from; give --otpd-bin")?,
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "no otpd binary at {}: build it with `cargo build --release` (or give its path \
             with --otpd-bin or OTPD_BIN)",
            path.display()
        ))
    }
}

/// What the run needs to know of an account afterwards.
struct AccountState {
    name: String,
    failures: u32,
    locked: bool,
}

/// Checks that the run timed what its kinds say, from the accounts' state afterwards, without
/// relying on the engine's wording: no pool account reached the throttle (so none of its
/// samples was refused unseen), the locked account is still locked and the throttled one is
/// throttled, not locked. Returns a summary.
fn check_states(accounts: Vec<AccountState>) -> Res<String> {
    let pools: Vec<&str> = KINDS
        .iter()
        .filter(|k| !k.unknown())
        .filter_map(|k| k.pool_prefix())
        .collect();
    let in_pool = |name: &str| {
        pools
            .iter()
            .any(|p| name.strip_prefix(p).is_some_and(|r| r.starts_with('-')))
    };
    let mut most = 0;
    let mut pooled = 0;
    for a in accounts.iter().filter(|a| in_pool(&a.name)) {
        pooled += 1;
        most = most.max(a.failures);
        if a.failures as usize >= FREE_FAILURES || a.locked {
            return Err(format!(
                "pool account `{}` has {} failures{} after the run: some of its samples may \
                 have timed a throttled answer, not the kind they stand for",
                a.name,
                a.failures,
                if a.locked { " and is locked" } else { "" }
            ));
        }
    }
    let find = |name: &str| {
        accounts
            .iter()
            .find(|a| a.name == name)
            .ok_or(format!("no account `{name}` after the run"))
    };
    let locked = find("locked")?;
    if !locked.locked {
        return Err(format!(
            "the `locked` account is not locked after the run ({} failures): its samples did \
             not time a lock",
            locked.failures
        ));
    }
    let throttled = find("throttled")?;
    if throttled.locked || (throttled.failures as usize) < FREE_FAILURES {
        return Err(format!(
            "the `throttled` account has {} failures{} after the run: its samples did not all \
             time the throttle",
            throttled.failures,
            if throttled.locked {
                " and is locked"
            } else {
                ""
            }
        ));
    }
    Ok(format!(
        "{pooled} pool accounts with at most {most} failures each (the throttle starts at \
         {FREE_FAILURES}); `locked` locked with {} failures; `throttled` not locked, {} failures",
        locked.failures, throttled.failures
    ))
}

/// The last lines of the daemon's log, for an error message (the temp dir goes with the run).
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// `otpd --config CONFIG ...`.
struct Cli {
    bin: PathBuf,
    config: PathBuf,
}

impl Cli {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--config").arg(&self.config).args(args);
        // The run's configuration is the file alone: an OTPD__ variable left in the shell
        // would change what is measured without showing in the output.
        c.env_remove("OTPD_CONFIG");
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("OTPD__") {
                c.env_remove(key);
            }
        }
        c
    }

    fn run(
        &self,
        args: &[&str],
        stdin: Option<&str>,
        env: &[(&str, &str)],
    ) -> Res<std::process::Output> {
        let mut c = self.command(args);
        c.envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.bin.display()))?;
        if let Some(mut w) = child.stdin.take() {
            if let Some(s) = stdin {
                w.write_all(s.as_bytes())
                    .map_err(|e| format!("otpd {}: {e}", args[0]))?;
            }
        }
        child
            .wait_with_output()
            .map_err(|e| format!("otpd {}: {e}", args[0]))
    }

    fn ok(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Res<String> {
        let out = self.run(args, stdin, env)?;
        if !out.status.success() {
            return Err(format!(
                "`otpd {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Every account's failure count and lock.
    fn accounts(&self) -> Res<Vec<AccountState>> {
        let out = self.ok(&["user", "list", "--json"], None, &[])?;
        let v: serde_json::Value =
            serde_json::from_str(&out).map_err(|e| format!("user list is not JSON: {e}"))?;
        let list = v.as_array().ok_or("user list is not a JSON list")?;
        list.iter()
            .map(|a| {
                Ok(AccountState {
                    name: a["name"].as_str().ok_or("user list: no name")?.to_string(),
                    failures: a["failures"].as_u64().ok_or("user list: no failures")? as u32,
                    locked: a["locked"].as_bool().ok_or("user list: no locked")?,
                })
            })
            .collect()
    }

    /// The reason of the user's newest audit record.
    fn last_reason(&self, user: &str) -> Res<String> {
        let out = self.ok(
            &["audit", "--user", user, "--limit", "1", "--json"],
            None,
            &[],
        )?;
        let line = out.lines().next().ok_or("no audit record")?;
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("audit is not JSON: {e}"))?;
        Ok(v["reason"].as_str().unwrap_or("").to_string())
    }
}

/// `otpd serve`, ended by its pid.
struct Daemon {
    child: Child,
}

impl Daemon {
    fn start(cli: &Cli, dir: &Path) -> Res<Daemon> {
        let log_path = dir.join("otpd.log");
        let log = std::fs::File::create(&log_path).map_err(|e| format!("daemon log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| format!("daemon log: {e}"))?;
        let child = cli
            .command(&["serve"])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("cannot start {} serve: {e}", cli.bin.display()))?;
        let mut d = Daemon { child };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            if text.contains("otpd ready") {
                return Ok(d);
            }
            if let Ok(Some(st)) = d.child.try_wait() {
                return Err(format!(
                    "`otpd serve` exited ({st}) before it was ready:\n{text}"
                ));
            }
            if Instant::now() > deadline {
                return Err(format!("`otpd serve` was not ready within 30 s:\n{text}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within 10 s.
    fn stop(mut self) -> Res<()> {
        // SAFETY: signalling our own child by its pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.child.try_wait() {
                Ok(Some(st)) if st.success() => return Ok(()),
                Ok(Some(st)) => return Err(format!("`otpd serve` ended with {st}")),
                _ if Instant::now() > deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return Err("`otpd serve` did not stop within 10 s of SIGTERM".into());
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends one login and returns the time from sending it to having its answer (µs) and the
/// answer.
trait Client {
    fn login(&mut self, user: &str, password: &str) -> Res<(f64, String)>;
}

struct EngineClient {
    engine: Engine,
    /// The reason of each user's latest decision.
    reasons: HashMap<String, String>,
}

impl Client for EngineClient {
    fn login(&mut self, user: &str, password: &str) -> Res<(f64, String)> {
        let req = request(user, password);
        let t = Instant::now();
        let d = self.engine.check(&req);
        let us = t.elapsed().as_secs_f64() * 1e6;
        self.reasons.insert(user.to_string(), d.reason.clone());
        Ok((us, d.verdict.as_str().to_string()))
    }
}

/// One connection to the daemon's socket, as a local caller that sends request after
/// request would keep it.
struct SocketClient {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
    line: String,
}

impl SocketClient {
    fn connect(path: &Path) -> Res<SocketClient> {
        let stream =
            UnixStream::connect(path).map_err(|e| format!("connect to {}: {e}", path.display()))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| format!("socket: {e}"))?;
        let reader = BufReader::new(stream.try_clone().map_err(|e| format!("socket: {e}"))?);
        Ok(SocketClient {
            stream,
            reader,
            line: String::new(),
        })
    }
}

impl Client for SocketClient {
    fn login(&mut self, user: &str, password: &str) -> Res<(f64, String)> {
        let req = serde_json::json!({
            "op": "check", "user": user, "password": password, "service": "vpn",
            "client": "timing",
        });
        let bytes = format!("{req}\n").into_bytes();
        self.line.clear();
        let t = Instant::now();
        self.stream
            .write_all(&bytes)
            .map_err(|e| format!("socket write: {e}"))?;
        let n = self
            .reader
            .read_line(&mut self.line)
            .map_err(|e| format!("socket read: {e}"))?;
        let us = t.elapsed().as_secs_f64() * 1e6;
        if n == 0 {
            return Err("the daemon closed the socket".into());
        }
        let v: serde_json::Value = serde_json::from_str(&self.line)
            .map_err(|e| format!("socket answer is not JSON ({e})"))?;
        match v["verdict"].as_str() {
            Some(verdict) => Ok((us, verdict.to_string())),
            None => Err(format!(
                "socket answer without a verdict: {}",
                self.line.trim()
            )),
        }
    }
}

/// A NAS on 127.0.0.1: one UDP socket, requests one at a time.
struct RadiusClient {
    socket: UdpSocket,
    secret: Vec<u8>,
    id: u8,
    packet: Vec<u8>,
}

impl RadiusClient {
    fn connect(port: u16, secret: &[u8]) -> Res<RadiusClient> {
        let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("udp: {e}"))?;
        socket
            .connect(("127.0.0.1", port))
            .map_err(|e| format!("udp: {e}"))?;
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| format!("udp: {e}"))?;
        Ok(RadiusClient {
            socket,
            secret: secret.to_vec(),
            id: 0,
            packet: Vec::new(),
        })
    }
}

impl Client for RadiusClient {
    fn login(&mut self, user: &str, password: &str) -> Res<(f64, String)> {
        self.id = self.id.wrapping_add(1);
        let mut auth = [0u8; 16];
        getrandom::getrandom(&mut auth).map_err(|e| format!("randomness: {e}"))?;
        radius::access_request(
            &mut self.packet,
            self.id,
            &auth,
            user,
            password.as_bytes(),
            &self.secret,
        )?;
        let mut buf = [0u8; 4096];
        let t = Instant::now();
        self.socket
            .send(&self.packet)
            .map_err(|e| format!("radius send: {e}"))?;
        // A late answer to an earlier request cannot come (each waited for its own), but skip
        // anything that is not ours rather than mistake it for the answer.
        let (n, us) = loop {
            let n = self.socket.recv(&mut buf).map_err(|e| {
                format!("no RADIUS answer within 5 s ({e}); is the daemon's RADIUS listening?")
            })?;
            if n >= 2 && buf[1] == self.id {
                break (n, t.elapsed().as_secs_f64() * 1e6);
            }
        };
        let code = radius::verify_reply(&buf[..n], &auth, &self.secret)?;
        Ok((us, radius::code_name(code)))
    }
}

/// The client side of RADIUS PAP, from RFC 2865 and RFC 3579: an Access-Request with
/// Message-Authenticator, and the checks of the answer.
mod radius {
    use super::Res;
    use hmac::{Hmac, Mac};
    use md5::{Digest, Md5};

    const ACCESS_REQUEST: u8 = 1;
    const USER_NAME: u8 = 1;
    const USER_PASSWORD: u8 = 2;
    const NAS_IDENTIFIER: u8 = 32;
    const MESSAGE_AUTHENTICATOR: u8 = 80;
    const HEADER: usize = 20;

    pub fn code_name(code: u8) -> String {
        match code {
            2 => "Access-Accept".into(),
            3 => "Access-Reject".into(),
            11 => "Access-Challenge".into(),
            c => format!("code {c}"),
        }
    }

    pub fn access_request(
        out: &mut Vec<u8>,
        id: u8,
        authenticator: &[u8; 16],
        user: &str,
        password: &[u8],
        secret: &[u8],
    ) -> Res<()> {
        if user.len() > 253 || password.len() > 128 {
            return Err("user name or password too long for RADIUS".into());
        }
        out.clear();
        out.extend_from_slice(&[ACCESS_REQUEST, id, 0, 0]);
        out.extend_from_slice(authenticator);
        // Message-Authenticator first, as the BlastRADIUS advice has it.
        let ma_at = out.len() + 2;
        out.extend_from_slice(&[MESSAGE_AUTHENTICATOR, 18]);
        out.extend_from_slice(&[0u8; 16]);
        out.extend_from_slice(&[USER_NAME, (user.len() + 2) as u8]);
        out.extend_from_slice(user.as_bytes());
        let hidden = hide_password(password, secret, authenticator);
        out.extend_from_slice(&[USER_PASSWORD, (hidden.len() + 2) as u8]);
        out.extend_from_slice(&hidden);
        let nas = b"timing";
        out.extend_from_slice(&[NAS_IDENTIFIER, (nas.len() + 2) as u8]);
        out.extend_from_slice(nas);
        let len = out.len() as u16;
        out[2..4].copy_from_slice(&len.to_be_bytes());
        let mac = hmac_md5(secret, &[out.as_slice()])?;
        out[ma_at..ma_at + 16].copy_from_slice(&mac);
        Ok(())
    }

    /// RFC 2865 §5.2: padded to a multiple of 16, each block XORed with MD5(secret + the
    /// previous cipher block), the first with the Request Authenticator.
    fn hide_password(password: &[u8], secret: &[u8], authenticator: &[u8; 16]) -> Vec<u8> {
        let blocks = password.len().div_ceil(16).max(1);
        let mut out = vec![0u8; blocks * 16];
        out[..password.len()].copy_from_slice(password);
        let mut prev: [u8; 16] = *authenticator;
        for b in 0..blocks {
            let mut h = Md5::new();
            h.update(secret);
            h.update(prev);
            let key = h.finalize();
            for (i, k) in key.iter().enumerate() {
                out[b * 16 + i] ^= k;
            }
            prev.copy_from_slice(&out[b * 16..b * 16 + 16]);
        }
        out
    }

    fn hmac_md5(secret: &[u8], parts: &[&[u8]]) -> Res<[u8; 16]> {
        let mut m =
            <Hmac<Md5> as Mac>::new_from_slice(secret).map_err(|e| format!("HMAC-MD5 key: {e}"))?;
        for p in parts {
            m.update(p);
        }
        Ok(m.finalize().into_bytes().into())
    }

    /// Checks length, Response Authenticator and Message-Authenticator (which the answer
    /// must carry); returns the code.
    pub fn verify_reply(reply: &[u8], request_auth: &[u8; 16], secret: &[u8]) -> Res<u8> {
        let bad = |what: &str| Err(format!("bad RADIUS answer: {what}"));
        if reply.len() < HEADER {
            return bad("shorter than a header");
        }
        let len = u16::from_be_bytes([reply[2], reply[3]]) as usize;
        if len < HEADER || len > reply.len() {
            return bad("length field");
        }
        let reply = &reply[..len];
        let mut h = Md5::new();
        h.update(&reply[..4]);
        h.update(request_auth);
        h.update(&reply[HEADER..]);
        h.update(secret);
        if h.finalize().as_slice() != &reply[4..HEADER] {
            return bad("Response Authenticator (wrong secret?)");
        }
        let mut at = HEADER;
        let mut ma = None;
        while at + 2 <= len {
            let (t, l) = (reply[at], reply[at + 1] as usize);
            if l < 2 || at + l > len {
                return bad("attribute length");
            }
            if t == MESSAGE_AUTHENTICATOR && l == 18 {
                ma = Some(at + 2);
            }
            at += l;
        }
        let Some(v) = ma else {
            return bad("no Message-Authenticator");
        };
        let mac = hmac_md5(
            secret,
            &[
                &reply[..4],
                request_auth,
                &reply[HEADER..v],
                &[0u8; 16],
                &reply[v + 16..],
            ],
        )?;
        if mac.as_slice() != &reply[v..v + 16] {
            return bad("Message-Authenticator does not verify");
        }
        Ok(reply[0])
    }
}

#[allow(clippy::too_many_arguments)]
fn report(
    out: &mut dyn Write,
    args: &Args,
    samples: usize,
    pace_ms: u64,
    times: &mut [Vec<f64>],
    answers: &[HashMap<String, usize>],
    expected: &[&str],
    reasons: &[String],
    states: &str,
    bin: Option<&Path>,
) -> std::io::Result<()> {
    let via = match args.via {
        Via::Engine => "engine (in process)",
        Via::Socket => "socket (otpd serve, Unix socket, one connection)",
        Via::Radius => "radius (otpd serve, RADIUS PAP + Message-Authenticator on 127.0.0.1)",
    };
    writeln!(
        out,
        "answer time of a failed login, µs, via {via}; unknown_user = {}; {samples} samples of \
         each kind after {} warm-up, interleaved at random, {pace_ms} ms apart",
        args.unknown_user.as_str(),
        args.warmup
    )?;
    if let Some(b) = bin {
        writeln!(out, "daemon: {}", b.display())?;
    }
    if samples < 300 {
        writeln!(
            out,
            "(fewer than 300 samples per kind: a smoke run, not figures for docs/security.md)"
        )?;
    }
    let mut q = Vec::new();
    for t in times.iter_mut() {
        t.sort_by(f64::total_cmp);
        let at = |p: f64| t[((t.len() as f64 - 1.0) * p) as usize];
        q.push([at(0.1), at(0.5), at(0.9), at(0.99)]);
    }
    let base = q[0][1];
    let diff = |i: usize| {
        let d = q[i][1] - base;
        format!("{d:+.1} µs ({:+.1} %)", d / base * 100.0)
    };
    let mut rng = XorShift::new().map_err(std::io::Error::other)?;
    let ci: Vec<(f64, f64)> = times
        .iter()
        .map(|t| median_diff_interval(t, &times[0], &mut rng))
        .collect();
    let interval = |i: usize| format!("{:+.1} to {:+.1} µs", ci[i].0, ci[i].1);
    let answer = |i: usize| {
        let mut a: Vec<String> = answers[i]
            .iter()
            .map(|(k, n)| {
                if *n == times[i].len() {
                    k.clone()
                } else {
                    format!("{k} ×{n}")
                }
            })
            .collect();
        a.sort();
        a.join(", ")
    };
    writeln!(
        out,
        "{:<16} {:<14} {:>9} {:>9} {:>9} {:>9}  median − wrong code [95 % interval]",
        "kind", "answer", "p10", "median", "p90", "p99"
    )?;
    for (i, k) in KINDS.iter().enumerate() {
        writeln!(
            out,
            "{:<16} {:<14} {:>9.1} {:>9.1} {:>9.1} {:>9.1}  {}",
            k.name(),
            answer(i),
            q[i][0],
            q[i][1],
            q[i][2],
            q[i][3],
            if i == 0 {
                "(reference)".into()
            } else {
                format!("{} [{}]", diff(i), interval(i))
            }
        )?;
    }
    // Kinds whose answer differs from a wrong code's tell themselves apart by the answer (by
    // design: `defer` hands an unknown user to the password stack); their time is shown but
    // not judged.
    let same: Vec<usize> = (0..KINDS.len())
        .filter(|&i| expected[i] == expected[0])
        .collect();
    let mut worst = (0, 0, 0.0f64);
    for &a in &same {
        for &b in &same {
            let d = q[a][1] - q[b][1];
            if d > worst.2 {
                worst = (a, b, d);
            }
        }
    }
    let over: Vec<String> = same
        .iter()
        .filter(|&&i| (q[i][1] - base).abs() > args.bound_us)
        .map(|&i| format!("{} {}", KINDS[i].name(), diff(i)))
        .collect();
    let within = worst.2 <= args.bound_us;
    writeln!(
        out,
        "verdict: {} the medians of the {} kinds with the same answer are {} within {} µs of \
         each other (largest gap: {} − {} = {:.1} µs){}",
        if within { "OK," } else { "NOT OK," },
        same.len(),
        if within { "all" } else { "not all" },
        args.bound_us,
        KINDS[worst.0].name(),
        KINDS[worst.1].name(),
        worst.2,
        if over.is_empty() {
            String::new()
        } else {
            format!("; off the wrong code by more: {}", over.join(", "))
        }
    )?;
    let apart: Vec<String> = (0..KINDS.len())
        .filter(|i| !same.contains(i))
        .map(|i| format!("{} ({})", KINDS[i].name(), expected[i]))
        .collect();
    if !apart.is_empty() {
        writeln!(
            out,
            "not judged, their answer differs by design: {}",
            apart.join(", ")
        )?;
    }
    let beyond: Vec<&str> = (1..KINDS.len())
        .filter(|&i| ci[i].0 > 0.0 || ci[i].1 < 0.0)
        .map(|i| KINDS[i].name())
        .collect();
    writeln!(
        out,
        "differences to a wrong code beyond chance (95 % interval without 0, by resampling): {}",
        if beyond.is_empty() {
            "none".to_string()
        } else {
            beyond.join(", ")
        }
    )?;
    writeln!(out, "audit reason of each kind's last sample:")?;
    for (i, k) in KINDS.iter().enumerate() {
        writeln!(out, "  {:<16} {}", k.name(), reasons[i])?;
    }
    writeln!(out, "accounts after the run: {states}")?;
    writeln!(out)?;
    writeln!(
        out,
        "| kind ({}, unknown_user = {}) | answer | p10 | median | p90 | p99 | median − wrong code | 95 % interval |",
        match args.via {
            Via::Engine => "engine",
            Via::Socket => "socket",
            Via::Radius => "RADIUS",
        },
        args.unknown_user.as_str()
    )?;
    writeln!(out, "|---|---|---|---|---|---|---|---|")?;
    for (i, k) in KINDS.iter().enumerate() {
        writeln!(
            out,
            "| {} | {} | {:.1} µs | {:.1} µs | {:.1} µs | {:.1} µs | {} | {} |",
            k.name(),
            answer(i),
            q[i][0],
            q[i][1],
            q[i][2],
            q[i][3],
            if i == 0 {
                "(reference)".into()
            } else if same.contains(&i) {
                diff(i)
            } else {
                format!("{} (answer differs)", diff(i))
            },
            if i == 0 { String::new() } else { interval(i) }
        )?;
    }
    Ok(())
}

/// A 95 % interval of median(a) − median(b), by resampling each with replacement: how far
/// the difference of two medians moves by chance on this machine, to read a difference
/// against (the p10 to p90 of one kind spans far more than the differences looked for).
fn median_diff_interval(a: &[f64], b: &[f64], rng: &mut XorShift) -> (f64, f64) {
    const ROUNDS: usize = 1000;
    let mut diffs = Vec::with_capacity(ROUNDS);
    let mut sa = vec![0.0; a.len()];
    let mut sb = vec![0.0; b.len()];
    for _ in 0..ROUNDS {
        for x in sa.iter_mut() {
            *x = a[rng.below(a.len())];
        }
        for x in sb.iter_mut() {
            *x = b[rng.below(b.len())];
        }
        diffs.push(median(&mut sa) - median(&mut sb));
    }
    diffs.sort_by(f64::total_cmp);
    (diffs[ROUNDS / 40], diffs[ROUNDS - 1 - ROUNDS / 40])
}

/// The median as the tables take it: the sample at (n - 1) / 2 in sorted order.
fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let m = (v.len() - 1) / 2;
    *v.select_nth_unstable_by(m, f64::total_cmp).1
}

/// xorshift64*: fast draws for resampling, seeded from the OS (a syscall per draw would take
/// longer than the run).
struct XorShift(u64);

impl XorShift {
    fn new() -> Res<XorShift> {
        let b = random_bytes(8)?;
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&b);
        Ok(XorShift(u64::from_le_bytes(seed) | 1))
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1) as u64) as usize
    }
}

/// A free UDP port on 127.0.0.1 (bound, then released for the daemon).
fn free_udp_port() -> Res<u16> {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free UDP port: {e}"))
}

fn random_bytes(n: usize) -> Res<Vec<u8>> {
    let mut v = vec![0u8; n];
    getrandom::getrandom(&mut v).map_err(|e| format!("randomness: {e}"))?;
    Ok(v)
}

fn random_hex(n: usize) -> Res<String> {
    Ok(random_bytes(n)?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn random_below(n: u32) -> Res<u32> {
    otpd::crypto::random_below(n).map_err(|e| format!("randomness: {e}"))
}

/// Fisher-Yates with the OS's randomness; the order only has to be unpredictable to the
/// machine's periodic noise, not to an attacker.
fn shuffle<T>(v: &mut [T]) -> Res<()> {
    for i in (1..v.len()).rev() {
        let j = random_below(i as u32 + 1)? as usize;
        v.swap(i, j);
    }
    Ok(())
}
