use super::{fmt_time, print_json, CliError, Outcome};
use crate::admin::{group4, Admin, TokenOptions};
use crate::model::{Token, TokenKind, TokenState};
use crate::qr;
use crate::tokens::oath::Algorithm;
use clap::{Subcommand, ValueEnum};
use std::path::PathBuf;
use zeroize::Zeroizing;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum KindArg {
    Totp,
    Hotp,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum AlgArg {
    Sha1,
    Sha256,
    Sha512,
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Enrol a token: prints the serial, the otpauth:// URI, the secret and a QR code.
    Add {
        user: String,
        #[arg(long = "type", value_enum)]
        kind: KindArg,
        /// Secret in base32 (hardware tokens); a random one is made otherwise.
        #[arg(long)]
        secret: Option<String>,
        #[arg(long, default_value_t = 6)]
        digits: u32,
        #[arg(long, value_enum, default_value = "sha1")]
        algorithm: AlgArg,
        /// TOTP period in seconds (30 or 60).
        #[arg(long, default_value_t = 30)]
        period: u32,
        #[arg(long, default_value = "")]
        label: String,
        /// Active at once, without a confirming code (admin imports).
        #[arg(long)]
        active: bool,
        /// Also write the QR code to FILE.svg or FILE.png.
        #[arg(long, value_name = "FILE")]
        qr: Option<PathBuf>,
        /// Do not draw the QR code in the terminal.
        #[arg(long)]
        no_qr: bool,
        #[arg(long)]
        json: bool,
    },
    /// Activate a pending token with one correct code.
    Activate { serial: String, code: String },
    /// Find two consecutive codes in a wide window and continue from there.
    Resync {
        serial: String,
        code1: String,
        code2: String,
    },
    /// List tokens, of one user or of all.
    List {
        user: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show one token.
    Show {
        serial: String,
        #[arg(long)]
        json: bool,
    },
    /// Disable a token (matches nothing until enabled).
    Disable { serial: String },
    /// Enable a disabled token.
    Enable { serial: String },
    /// Delete a token.
    Delete { serial: String },
}

pub fn run(a: &Admin, cmd: TokenCmd) -> Result<Outcome, CliError> {
    match cmd {
        TokenCmd::Add {
            user,
            kind,
            secret,
            digits,
            algorithm,
            period,
            label,
            active,
            qr,
            no_qr,
            json,
        } => {
            let e = a.add_token(
                &user,
                TokenOptions {
                    kind: match kind {
                        KindArg::Totp => TokenKind::Totp,
                        KindArg::Hotp => TokenKind::Hotp,
                    },
                    secret_b32: secret.map(Zeroizing::new),
                    digits,
                    algorithm: match algorithm {
                        AlgArg::Sha1 => Algorithm::Sha1,
                        AlgArg::Sha256 => Algorithm::Sha256,
                        AlgArg::Sha512 => Algorithm::Sha512,
                    },
                    period,
                    label,
                    active,
                },
            )?;
            if let Some(path) = &qr {
                qr::write_file(&e.uri, path).map_err(|err| CliError::Other(err.to_string()))?;
            }
            if json {
                print_json(&serde_json::json!({
                    "serial": e.token.serial,
                    "user": e.token.user,
                    "type": e.token.kind,
                    "state": e.token.state,
                    "algorithm": e.token.algorithm,
                    "digits": e.token.digits,
                    "period": e.token.period,
                    "secret": e.secret_b32.as_str(),
                    "uri": e.uri.as_str(),
                }))?;
            } else {
                println!("serial:  {}", e.token.serial);
                println!("user:    {}", e.token.user);
                println!("state:   {}", e.token.state.as_str());
                println!("uri:     {}", e.uri.as_str());
                println!("secret:  {}", group4(&e.secret_b32));
                if let Some(p) = &qr {
                    println!("qr code: {}", p.display());
                }
                if !no_qr {
                    println!(
                        "{}",
                        qr::terminal(&e.uri).map_err(|err| CliError::Other(err.to_string()))?
                    );
                }
                if e.token.state == TokenState::Pending {
                    println!(
                        "Scan the code, then activate the token with one code from the app:\n  otpd token activate {} CODE",
                        e.token.serial
                    );
                }
            }
        }
        TokenCmd::Activate { serial, code } => {
            let t = a.activate(&serial, &code)?;
            println!("token {} is active", t.serial);
        }
        TokenCmd::Resync {
            serial,
            code1,
            code2,
        } => {
            let t = a.resync(&serial, &code1, &code2)?;
            match t.kind {
                TokenKind::Totp => println!(
                    "token {} resynchronised: device clock offset {} s",
                    t.serial,
                    t.drift * i64::from(t.period)
                ),
                TokenKind::Hotp => println!(
                    "token {} resynchronised at counter {}",
                    t.serial, t.last_counter
                ),
            }
        }
        TokenCmd::List { user, json } => {
            let tokens = match &user {
                Some(u) => {
                    let acc = a.account(u)?;
                    a.store.tokens(Some(&acc.name))?
                }
                None => a.store.tokens(None)?,
            };
            if json {
                print_json(&tokens)?;
            } else {
                println!(
                    "{:<14} {:<5} {:<24} {:<9} {:<20} {:<20}",
                    "SERIAL", "TYPE", "USER", "STATE", "LAST USED", "LABEL"
                );
                for t in &tokens {
                    println!(
                        "{:<14} {:<5} {:<24} {:<9} {:<20} {:<20}",
                        t.serial,
                        t.kind.as_str(),
                        t.user,
                        t.state.as_str(),
                        t.last_used_at
                            .map(fmt_time)
                            .unwrap_or_else(|| "never".into()),
                        t.label
                    );
                }
            }
        }
        TokenCmd::Show { serial, json } => {
            let t = a.token(&serial)?;
            if json {
                print_json(&t)?;
            } else {
                show(&t);
            }
        }
        TokenCmd::Disable { serial } => {
            a.set_token_state(&serial, TokenState::Disabled)?;
            println!("token {serial} disabled");
        }
        TokenCmd::Enable { serial } => {
            a.set_token_state(&serial, TokenState::Active)?;
            println!("token {serial} enabled");
        }
        TokenCmd::Delete { serial } => {
            a.delete_token(&serial)?;
            println!("token {serial} deleted");
        }
    }
    Ok(Outcome::Ok)
}

fn show(t: &Token) {
    println!("serial:     {}", t.serial);
    println!("user:       {}", t.user);
    println!("type:       {}", t.kind.as_str());
    println!("state:      {}", t.state.as_str());
    println!("algorithm:  {}", t.algorithm.as_str());
    println!("digits:     {}", t.digits);
    if t.kind == TokenKind::Totp {
        println!("period:     {} s", t.period);
        println!("clock skew: {} s", t.drift * i64::from(t.period));
    } else {
        println!("counter:    {}", t.last_counter);
    }
    println!("label:      {}", t.label);
    println!("created:    {}", fmt_time(t.created_at));
    println!(
        "last used:  {}",
        t.last_used_at
            .map(fmt_time)
            .unwrap_or_else(|| "never".into())
    );
}
