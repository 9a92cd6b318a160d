//! `otpd store copy --from sqlite:PATH --to postgres:URL`: moving an installation to
//! PostgreSQL (the work is in store/copy/).

use super::{CliError, Outcome};
use crate::config::{Config, StoreConfig, StoreKind};
use crate::store::copy;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum StoreCmd {
    /// Copy the SQLite database into an empty PostgreSQL database (stop the daemon first).
    /// Accounts, tokens (still sealed), codes, app passwords and the audit travel; the key
    /// file does not: copy it to every node yourself.
    Copy {
        /// `sqlite:PATH` (the database file); `sqlite:` alone is this configuration's one.
        #[arg(long, value_name = "sqlite:PATH")]
        from: String,
        /// `postgres:URL` (libpq URL or key=value string); `postgres:` alone is this
        /// configuration's [store] url. TLS as [store] ca_file says.
        #[arg(long, value_name = "postgres:URL")]
        to: String,
    },
}

pub fn run(cfg: &Config, cmd: StoreCmd) -> Result<Outcome, CliError> {
    match cmd {
        StoreCmd::Copy { from, to } => copy_cmd(cfg, &from, &to),
    }
}

fn copy_cmd(cfg: &Config, from: &str, to: &str) -> Result<Outcome, CliError> {
    let from = match from.strip_prefix("sqlite:") {
        Some("") => cfg.database_path(),
        Some(path) => PathBuf::from(path),
        None => {
            return Err(CliError::Other(format!(
                "--from must be sqlite:PATH (the SQLite database file), not `{from}`"
            )))
        }
    };
    // The url may hold a password: it is never repeated in a message.
    let bare_url = to.starts_with("postgres://") || to.starts_with("postgresql://");
    let url = match if bare_url {
        Some(to)
    } else {
        to.strip_prefix("postgres:")
    } {
        Some("") => cfg.store.url.clone().ok_or_else(|| {
            CliError::Other(
                "--to postgres: names no url and the configuration has no [store] url".into(),
            )
        })?,
        Some(url) => url.to_string(),
        None => {
            return Err(CliError::Other(
                "--to must be postgres:URL (e.g. postgres:postgresql://otpd@db1/otpd)".into(),
            ))
        }
    };
    let target = StoreConfig {
        kind: StoreKind::Postgres,
        url: Some(url),
        ..cfg.store.clone()
    };
    let report = copy::copy(&from, &target).map_err(|e| CliError::Other(e.to_string()))?;
    outln!("copied {} into PostgreSQL:", from.display());
    for (table, rows) in &report.tables {
        outln!("  {table:<16} {rows:>10} rows");
    }
    for table in &report.skipped {
        outln!("  {table:<16} (empty, not in the PostgreSQL schema: skipped)");
    }
    outln!("counts checked: every table has as many rows in PostgreSQL as in the source.");
    outln!(
        "The key file is not in the database: copy {} to every node (key_file), or no token \
         and no PIN works there.",
        cfg.key_path().display()
    );
    Ok(Outcome::Ok)
}
