//! `otpd status`: asks the running daemon over its Unix socket how it is.

use super::{print_json, CliError, Outcome};
use crate::config::Config;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// The daemon's socket (default: socket.path of the configuration).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Print the daemon's answer as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Longest answer we read: a status line is a few hundred bytes.
const MAX_ANSWER: u64 = 64 * 1024;

pub fn run(cfg: &Config, a: StatusArgs) -> Result<Outcome, CliError> {
    let path = a.socket.unwrap_or_else(|| {
        // The quick start's fallback (serve without a configuration file, not as root).
        let quick = cfg.data_dir.join("otpd.sock");
        if !cfg.socket.path.exists() && quick.exists() {
            quick
        } else {
            cfg.socket.path.clone()
        }
    });
    let unreachable = |e: std::io::Error| {
        CliError::Other(format!(
            "the daemon does not answer on {}: {e} (is it running? is this its socket.path? \
             only socket.allow_uids/allow_gids may ask)",
            path.display()
        ))
    };
    let mut s = UnixStream::connect(&path).map_err(unreachable)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .and_then(|_| s.set_write_timeout(Some(Duration::from_secs(5))))
        .and_then(|_| s.write_all(&otpd_proto::client::encode_status()))
        .map_err(unreachable)?;
    let mut line = String::new();
    BufReader::new(std::io::Read::take(&mut s, MAX_ANSWER))
        .read_line(&mut line)
        .map_err(unreachable)?;
    let answer = otpd_proto::client::parse_status(line.as_bytes()).map_err(|e| {
        CliError::Other(match e {
            otpd_proto::client::ResponseError::Daemon(why) => {
                format!("the daemon refused: {why}")
            }
            otpd_proto::client::ResponseError::Garbage(_) => format!(
                "unexpected answer from {}: {:.200}",
                path.display(),
                line.trim()
            ),
        })
    })?;
    if a.json {
        print_json(&answer)?;
    } else {
        outln!("otpd {} (protocol {})", answer.version, answer.protocol);
        outln!(
            "  uptime:   {}",
            humantime::format_duration(Duration::from_secs(answer.uptime_s))
        );
        outln!("  store:    {}", answer.store);
        if let (Some(acc), Some(tok)) = (answer.accounts, answer.tokens) {
            outln!("  accounts: {acc}");
            outln!("  tokens:   {tok}");
        }
        let req: Vec<String> = answer
            .requests
            .iter()
            .map(|(v, n)| format!("{v} {n}"))
            .collect();
        outln!("  logins:   {}", req.join(", "));
    }
    Ok(if answer.store == "ok" {
        Outcome::Ok
    } else {
        Outcome::Fail
    })
}
