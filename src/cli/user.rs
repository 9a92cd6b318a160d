use super::input::read_secret;
use super::{fmt_time, print_json, CliError, Outcome};
use crate::admin::Admin;
use crate::model::{Account, Token};
use clap::{Args, Subcommand};
use zeroize::Zeroizing;

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Create an account (level `off` unless --level says otherwise).
    Add {
        user: String,
        #[command(flatten)]
        pin: PinArgs,
        /// Security level: off, web-otp, web-only, app-passwords, everywhere (or one from config).
        #[arg(long)]
        level: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Change an account's PIN or level.
    Set {
        user: String,
        #[command(flatten)]
        pin: PinArgs,
        #[arg(long)]
        level: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show one account and its tokens.
    Show {
        user: String,
        #[arg(long)]
        json: bool,
    },
    /// List accounts.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Delete an account and its tokens (the audit keeps its history).
    Delete { user: String },
    /// Clear failed-login counters and a lock at once.
    Unlock { user: String },
    /// Create many accounts with their tokens from JSON lines (one account per line), all in
    /// one transaction: if any line is wrong, nothing is imported.
    Import {
        /// The file to read; `-` reads standard input.
        file: std::path::PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct PinArgs {
    /// Read the PIN from standard input (one line).
    #[arg(long, conflicts_with = "pin")]
    pin_stdin: bool,
    /// The PIN on the command line (visible to other local users in `ps`; prefer --pin-stdin).
    #[arg(long)]
    pin: Option<String>,
}

impl PinArgs {
    fn read(&self) -> Result<Option<Zeroizing<String>>, CliError> {
        if self.pin_stdin {
            return read_secret("PIN: ").map(Some);
        }
        Ok(self.pin.clone().map(Zeroizing::new))
    }
}

#[derive(serde::Serialize)]
struct AccountView<'a> {
    #[serde(flatten)]
    account: &'a Account,
    locked: bool,
    tokens: Vec<&'a Token>,
}

pub fn run(a: &Admin, cmd: UserCmd) -> Result<Outcome, CliError> {
    match cmd {
        UserCmd::Add {
            user,
            pin,
            level,
            json,
        } => {
            let pin = pin.read()?;
            let acct = a.add_user(&user, pin.as_deref().map(|s| s.as_str()), level.as_deref())?;
            show(a, &acct, json, "created")?;
        }
        UserCmd::Set {
            user,
            pin,
            level,
            json,
        } => {
            let pin = pin.read()?;
            if pin.is_none() && level.is_none() {
                return Err(CliError::Other(
                    "nothing to change: give --level and/or --pin-stdin".into(),
                ));
            }
            let acct = a.set_user(&user, pin.as_deref().map(|s| s.as_str()), level.as_deref())?;
            show(a, &acct, json, "updated")?;
        }
        UserCmd::Show { user, json } => {
            let acct = a.account(&user)?;
            show(a, &acct, json, "")?;
        }
        UserCmd::List { json } => {
            let accounts = a.store.accounts()?;
            let tokens = a.store.tokens(None)?;
            if json {
                let views: Vec<_> = accounts.iter().map(|acc| view(a, acc, &tokens)).collect();
                print_json(&views)?;
            } else {
                outln!(
                    "{:<32} {:<14} {:<4} {:<7} {:>6}",
                    "USER",
                    "LEVEL",
                    "PIN",
                    "LOCKED",
                    "TOKENS"
                );
                for acc in &accounts {
                    let v = view(a, acc, &tokens);
                    outln!(
                        "{:<32} {:<14} {:<4} {:<7} {:>6}",
                        acc.name,
                        acc.level,
                        if acc.has_pin { "yes" } else { "no" },
                        if v.locked { "yes" } else { "no" },
                        v.tokens.len()
                    );
                }
            }
        }
        UserCmd::Delete { user } => {
            a.delete_user(&user)?;
            outln!("user {user} deleted");
        }
        UserCmd::Unlock { user } => {
            a.unlock(&user)?;
            outln!("user {user} unlocked");
        }
        UserCmd::Import { file, json } => return import(a, &file, json),
    }
    Ok(Outcome::Ok)
}

fn view<'a>(a: &Admin, acc: &'a Account, tokens: &'a [Token]) -> AccountView<'a> {
    let now = a.clock.now_ms() / 1000;
    AccountView {
        account: acc,
        locked: acc.locked_until.is_some_and(|t| t > now),
        tokens: tokens.iter().filter(|t| t.account_id == acc.id).collect(),
    }
}

fn show(a: &Admin, acc: &Account, json: bool, what: &str) -> Result<(), CliError> {
    let tokens = a.store.tokens(Some(&acc.name))?;
    let v = view(a, acc, &tokens);
    if json {
        return print_json(&v);
    }
    if !what.is_empty() {
        outln!("user {} {what}", acc.name);
    }
    outln!("user:      {}", acc.name);
    outln!("level:     {}", acc.level);
    outln!("pin:       {}", if acc.has_pin { "set" } else { "not set" });
    outln!("failures:  {}", acc.failures);
    match acc.locked_until {
        Some(t) if v.locked => outln!("locked:    until {}", fmt_time(t)),
        _ => outln!("locked:    no"),
    }
    outln!("created:   {}", fmt_time(acc.created_at));
    if v.tokens.is_empty() {
        outln!("tokens:    none");
    }
    for t in &v.tokens {
        outln!(
            "token:     {} ({}, {}{})",
            t.serial,
            t.kind.as_str(),
            t.state.as_str(),
            if t.label.is_empty() {
                String::new()
            } else {
                format!(", {}", t.label)
            }
        );
    }
    Ok(())
}

fn import(a: &Admin, file: &std::path::Path, json: bool) -> Result<Outcome, CliError> {
    let store = crate::store::SqliteStore::open(&a.cfg.database_path())?;
    let started = std::time::Instant::now();
    let fail = |e: crate::import::ImportError| CliError::Other(format!("{}: {e}", file.display()));
    let r = if file.as_os_str() == "-" {
        crate::import::import(a, &store, std::io::stdin().lock()).map_err(fail)?
    } else {
        let f = std::fs::File::open(file)
            .map_err(|e| CliError::Other(format!("{}: {e}", file.display())))?;
        crate::import::import(a, &store, std::io::BufReader::new(f)).map_err(fail)?
    };
    if json {
        print_json(&serde_json::json!({
            "accounts": r.accounts,
            "tokens": r.tokens,
            "seconds": started.elapsed().as_secs_f64(),
        }))?;
    } else {
        outln!(
            "imported {} accounts with {} tokens from {} in {:.1} s",
            r.accounts,
            r.tokens,
            file.display(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(Outcome::Ok)
}
