//! The command line: `serve` and the admin commands. Parsing here, work in `admin`/`engine`.

/// `println!` for the admin commands' output, through [`out`]: a reader that is gone ends
/// the command normally instead of panicking.
macro_rules! outln {
    () => {
        $crate::cli::out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` through [`out`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::out(format_args!($($arg)*))
    };
}

mod api_key;
mod app_password;
mod audit;
mod backup_codes;
mod check;
mod device;
mod input;
mod serve;
mod status;
mod store;
mod token;
mod user;

use crate::admin::{self, Admin, AdminError};
use crate::config::{Config, ConfigError};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Writes admin output to standard output. A closed pipe (`otpd audit | head -1`) is the
/// reader saying it has seen enough: the command ends with exit code 0 and no message, as
/// `cat` and `grep` do. The commands print their results after the store work they do, so
/// leaving here cuts only the report short. Any other write error ends with a message.
pub(crate) fn out(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    if let Err(e) = std::io::stdout().lock().write_fmt(args) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("otpd: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "otpd",
    version,
    about = "OTP validation server: RADIUS, Unix socket and PAM"
)]
pub struct Cli {
    /// Configuration file (TOML). Without one, built-in defaults apply.
    #[arg(long, global = true, env = "OTPD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The command line of this process. `token add USER --type KIND ...` (the spelling from
    /// before kinds were subcommands) is read as `token add KIND USER ...`.
    pub fn from_env() -> Cli {
        Cli::parse_from(token::legacy_type_flag(std::env::args_os().collect()))
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create the key file and the database (never overwrites a key).
    Init,
    /// Run the daemon.
    Serve,
    /// Check a configuration file without starting.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Manage accounts.
    #[command(subcommand)]
    User(user::UserCmd),
    /// Manage tokens.
    #[command(subcommand)]
    Token(token::TokenCmd),
    /// Printed one-use backup codes (a new set replaces the old one).
    #[command(subcommand)]
    BackupCodes(backup_codes::BackupCodesCmd),
    /// Manage app-specific passwords (mail clients once the level asks for them).
    #[command(subcommand)]
    AppPassword(app_password::AppPasswordCmd),
    /// Keys for the management API over HTTP (shown once, stored as keyed hashes).
    #[command(subcommand)]
    ApiKey(api_key::ApiKeyCmd),
    /// A user's trusted devices ("trust this browser"): list, revoke.
    #[command(subcommand)]
    Device(device::DeviceCmd),
    /// Ask the running daemon how it is (over its socket): version, uptime, store, counts.
    Status(status::StatusArgs),
    /// Check a login (PIN + code) as a front-end would; exits 0 only on Accept.
    Check(check::CheckArgs),
    /// Show the audit trail.
    Audit(audit::AuditArgs),
    /// Manage the key file.
    #[command(subcommand)]
    Key(KeyCmd),
    /// Take a consistent copy of the database while the daemon serves.
    Backup {
        /// The new backup file (never overwritten).
        file: PathBuf,
    },
    /// Move the data to another store (`store copy` from SQLite to PostgreSQL).
    #[command(subcommand)]
    Store(store::StoreCmd),
    /// Replace the database with a backup (stop the daemon first).
    Restore {
        file: PathBuf,
        /// Confirm: the live database is replaced.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    /// Create a new key and re-seal every secret under it, while the daemon keeps serving.
    Rotate,
}

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Validate the configuration and print a summary; exit 1 on any error.
    Check,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error("{0}")]
    Other(String),
}

impl From<crate::store::StoreError> for CliError {
    fn from(e: crate::store::StoreError) -> Self {
        CliError::Admin(AdminError::Store(e))
    }
}

/// What a command produced: success, or a non-accept verdict of `check` (exit 1 but no error).
pub enum Outcome {
    Ok,
    Fail,
}

pub fn run(cli: Cli) -> ExitCode {
    let is_serve = matches!(cli.command, Command::Serve);
    let mut cfg = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("otpd: {e}");
            return ExitCode::from(2);
        }
    };
    if !is_serve {
        // A one-shot command reads an account once or not at all: a cache would only cost it
        // one more PostgreSQL session (the change feed) and a thread.
        cfg.store.cache_accounts = Some(0);
    }
    crate::logging::init(&cfg.log, is_serve);
    let res = match cli.command {
        Command::Init => init(&cfg),
        Command::Serve => serve::run(cfg, cli.config.as_deref()),
        Command::Config(ConfigCmd::Check) => config_check(&cfg, cli.config.as_deref()),
        Command::User(c) => with_admin(&cfg, |a| user::run(a, c)),
        Command::Token(c) => with_admin(&cfg, |a| token::run(a, c)),
        Command::BackupCodes(c) => with_admin(&cfg, |a| backup_codes::run(a, c)),
        Command::AppPassword(c) => with_admin(&cfg, |a| app_password::run(a, c)),
        Command::ApiKey(c) => with_admin(&cfg, |a| api_key::run(a, c)),
        Command::Device(c) => with_admin(&cfg, |a| device::run(a, c)),
        Command::Check(c) => with_admin(&cfg, |a| check::run(a, c)),
        Command::Status(a) => status::run(&cfg, a),
        Command::Audit(c) => with_admin(&cfg, |a| audit::run(a, c)),
        Command::Key(KeyCmd::Rotate) => key_rotate(&cfg),
        Command::Backup { file } => backup(&cfg, &file),
        Command::Restore { file, yes } => restore(&cfg, &file, yes),
        Command::Store(c) => store::run(&cfg, c),
    };
    match res {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Fail) => ExitCode::from(1),
        Err(e) => {
            eprintln!("otpd: error: {e}");
            ExitCode::from(1)
        }
    }
}

fn with_admin(
    cfg: &Config,
    f: impl FnOnce(&Admin) -> Result<Outcome, CliError>,
) -> Result<Outcome, CliError> {
    let (store, keys) = admin::open(cfg)?;
    let a = Admin::new(Arc::new(cfg.clone()), store, keys);
    f(&a)
}

fn init(cfg: &Config) -> Result<Outcome, CliError> {
    let r = admin::init(cfg)?;
    let key = cfg.key_path();
    let db = cfg.database_path();
    outln!(
        "key file: {} ({})",
        key.display(),
        if r.created_key {
            "created, mode 0600"
        } else {
            "exists, kept"
        }
    );
    if cfg.store.kind == crate::config::StoreKind::Postgres {
        outln!("database: PostgreSQL ([store] url), schema up to date");
    } else {
        outln!(
            "database: {} ({})",
            db.display(),
            if r.created_db {
                "created"
            } else {
                "exists, schema up to date"
            }
        );
    }
    if r.created_key {
        outln!("Back up the key file now, apart from the database: without it no token works.");
    }
    Ok(Outcome::Ok)
}

fn key_rotate(cfg: &Config) -> Result<Outcome, CliError> {
    let r = admin::rotate_key(cfg)?;
    if r.resumed {
        outln!("finished an interrupted rotation");
    }
    outln!(
        "key rotated: {} secrets re-sealed under the new key in {}; the old key is gone",
        r.resealed,
        cfg.key_path().display()
    );
    outln!(
        "Back up the new key file now. Database backups taken before this rotation open only \
         with the key file of their time."
    );
    Ok(Outcome::Ok)
}

fn backup(cfg: &Config, file: &std::path::Path) -> Result<Outcome, CliError> {
    let r = admin::backup(cfg, file)?;
    outln!(
        "backup written to {} ({} bytes, {} tokens, integrity ok)",
        file.display(),
        r.bytes,
        r.tokens
    );
    outln!(
        "It holds sealed secrets only: keep the key file ({}) backed up separately; the backup \
         is useless without it, and the key alone reveals nothing.",
        cfg.key_path().display()
    );
    Ok(Outcome::Ok)
}

fn restore(cfg: &Config, file: &std::path::Path, yes: bool) -> Result<Outcome, CliError> {
    if cfg.store.kind == crate::config::StoreKind::Postgres {
        // Says to use pg_restore / pg_basebackup instead, before asking for --yes.
        admin::restore(cfg, file)?;
    }
    if !yes {
        return Err(CliError::Other(format!(
            "restore replaces the live database {} with {}: every account, token and audit \
             record since the backup is lost, and the daemon must be stopped first. Run again \
             with --yes to go ahead.",
            cfg.database_path().display(),
            file.display()
        )));
    }
    let r = admin::restore(cfg, file)?;
    outln!(
        "restored {} tokens from {}; TOTP codes up to now were marked used on {} tokens",
        r.tokens,
        file.display(),
        r.totp_burned
    );
    outln!(
        "warning: local YubiKey counters, mOTP and HOTP counters and backup codes are as old as \
         the backup: a YubiKey OTP, HOTP code or backup code used since then could work once \
         more (TOTP and mOTP codes up to now were marked used; e-mailed codes were dropped)"
    );
    if r.devices_ended > 0 {
        outln!(
            "{} trusted device(s) ended: a device revoked since the backup must not work \
             again; users trust their browsers again with PIN+code",
            r.devices_ended
        );
    }
    if !r.hotp.is_empty() {
        outln!(
            "warning: HOTP counters are as in the backup: codes used since then on these tokens \
             could work once more; resync them if in doubt: {}",
            r.hotp.join(", ")
        );
    }
    for group in &r.look_alikes {
        // Kept as they were (logins find names exactly), but an admin should know.
        println!(
            "warning: these accounts look alike (case, width or look-alike letters), which \
             makes logs and audit easy to misread: {}",
            group
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(Outcome::Ok)
}

fn config_check(cfg: &Config, path: Option<&std::path::Path>) -> Result<Outcome, CliError> {
    match path {
        Some(p) => outln!("configuration {} is valid", p.display()),
        None => outln!("built-in defaults (no configuration file) are valid"),
    }
    outln!("  data_dir:  {}", cfg.data_dir.display());
    match cfg.store.kind {
        crate::config::StoreKind::Sqlite => {
            outln!("  database:  {}", cfg.database_path().display())
        }
        // The url is not printed: it may hold a password.
        crate::config::StoreKind::Postgres => {
            outln!("  database:  PostgreSQL, node name {}", cfg.store.node())
        }
    }
    outln!("  key file:  {}", cfg.key_path().display());
    outln!("  classes:   {}", cfg.class_names().join(", "));
    outln!("  levels:    {}", cfg.level_names().join(", "));
    outln!(
        "  radius:    {} listen address(es), {} client(s)",
        cfg.radius.listen.len(),
        cfg.radius.clients.len()
    );
    if cfg.email.is_configured() {
        outln!(
            "  e-mail:    configured: relay {}:{} ({}), from {}, codes of {} digits valid {}, \
             at most {} per account and hour",
            cfg.email.host,
            cfg.email.port(),
            cfg.email.tls.as_str(),
            cfg.email.from,
            cfg.email.digits,
            humantime::format_duration(cfg.email.validity),
            cfg.email.max_per_hour
        );
    } else {
        outln!("  e-mail:    not configured (no [email] host): e-mail tokens cannot log in");
    }
    Ok(Outcome::Ok)
}

/// RFC 3339 UTC, seconds.
pub(crate) fn fmt_time(unix: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

pub(crate) fn print_json(v: &impl serde::Serialize) -> Result<(), CliError> {
    let s = serde_json::to_string_pretty(v).map_err(|e| CliError::Other(e.to_string()))?;
    outln!("{s}");
    Ok(())
}
