use super::{fmt_time, print_json, CliError, Outcome};
use crate::admin::{group4, Admin};
use crate::model::{Token, TokenState};
use crate::qr;
use crate::tokens::{self, Services, Shown};
use clap::{Subcommand, ValueEnum};
use std::path::PathBuf;

mod add;
pub use add::{legacy_type_flag, AddArgs};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ImportFormat {
    /// The CSV log of the YubiKey Personalization Tool / ykpersonalize / ykman
    /// (`Yubico OTP,...` lines or `SERIAL,PUBLIC_ID,PRIVATE_ID,AES_KEY,...`).
    YubicoCsv,
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Enrol a token of one kind (`token add KIND USER ...`; the older `token add USER --type
    /// KIND ...` is read the same). OATH kinds print the secret, the otpauth:// URI and a QR
    /// code.
    Add(AddArgs),
    /// Import YubiKeys from the personalization tool's CSV log.
    Import {
        file: PathBuf,
        #[arg(long, value_enum)]
        format: ImportFormat,
        /// Every key in the file goes to this user.
        #[arg(long, conflicts_with = "users", required_unless_present = "users")]
        user: Option<String>,
        /// A CSV file of `PUBLIC_ID,USER` lines saying whose each key is.
        #[arg(long, value_name = "FILE")]
        users: Option<PathBuf>,
        /// Active at once, without a confirming OTP.
        #[arg(long)]
        active: bool,
        #[arg(long)]
        json: bool,
    },
    /// Activate a pending token with one correct code.
    Activate { serial: String, code: String },
    /// Send a fresh code to a pending e-mail token (the first was lost or ran out).
    SendCode { serial: String },
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
        TokenCmd::Add(add) => {
            let (t, shown) = a.enrol(&add.user, add.kind, &add.options, &add.label, add.active)?;
            print_enrolled(&t, shown, &add)?;
        }
        TokenCmd::Import {
            file,
            format: ImportFormat::YubicoCsv,
            user,
            users,
            active,
            json,
        } => {
            let text = read_text(&file)?;
            let map = match &users {
                Some(p) => Some(read_owner_map(p)?),
                None => None,
            };
            let owner = |public_id: &str| -> Option<String> {
                match &map {
                    Some(m) => m.get(public_id).cloned(),
                    None => user.clone(),
                }
            };
            let r = a.import_yubico_csv(&text, &owner, active)?;
            if json {
                print_json(&serde_json::json!({
                    "imported": r.imported,
                    "skipped": r.skipped.iter().map(|(line, why)| serde_json::json!({
                        "line": line, "reason": why
                    })).collect::<Vec<_>>(),
                }))?;
            } else {
                for t in &r.imported {
                    outln!(
                        "imported {} ({} {}) for {}, {}",
                        t.serial,
                        t.kind.as_str(),
                        t.public_id.as_deref().unwrap_or("-"),
                        t.user,
                        t.state.as_str()
                    );
                }
                for (line, why) in &r.skipped {
                    outln!("skipped line {line}: {why}");
                }
                outln!("{} imported, {} skipped", r.imported.len(), r.skipped.len());
            }
        }
        TokenCmd::Activate { serial, code } => {
            let t = a.activate(&serial, &code)?;
            outln!("token {} is active", t.serial);
        }
        TokenCmd::SendCode { serial } => {
            let t = a.token(&serial)?;
            if t.state != TokenState::Pending {
                return Err(CliError::Other(format!(
                    "token {serial} is {}; an active e-mail token gets its codes at login \
                     (the PIN alone asks for one)",
                    t.state.as_str()
                )));
            }
            let to = a.send_email_code(&serial)?;
            outln!("a new code was sent to {to}; the one before no longer works");
        }
        TokenCmd::Resync {
            serial,
            code1,
            code2,
        } => {
            let t = a.resync(&serial, &code1, &code2)?;
            outln!(
                "token {} resynchronised{}",
                t.serial,
                tokens::class(t.kind).resynced(&t)
            );
        }
        TokenCmd::List { user, json } => {
            let tokens = match &user {
                Some(u) => {
                    let acc = a.account(u)?;
                    a.store.tokens(Some(&acc.name))?
                }
                None => a.store.tokens(None)?,
            };
            // What each kind adds: a YubiKey's public id, the backup codes left.
            let ports = a.ports();
            let sv = Services {
                cfg: &a.cfg,
                store: a.store.as_ref(),
                admin: Some(a.store.as_ref()),
                keys: &a.keys,
                ports: &ports,
            };
            let mut details = Vec::with_capacity(tokens.len());
            for t in &tokens {
                details.push(tokens::class(t.kind).detail(&sv, t)?);
            }
            if json {
                let mut out = Vec::with_capacity(tokens.len());
                for (t, d) in tokens.iter().zip(&details) {
                    let mut v = token_json(t, false)?;
                    if let Some(obj) = v.as_object_mut() {
                        for (k, x) in &d.json {
                            obj.insert((*k).into(), x.clone());
                        }
                    }
                    out.push(v);
                }
                print_json(&out)?;
            } else {
                outln!(
                    "{:<16} {:<14} {:<20} {:<9} {:<20} {:<24} DETAIL",
                    "SERIAL",
                    "TYPE",
                    "USER",
                    "STATE",
                    "LAST USED",
                    "LABEL"
                );
                for (t, d) in tokens.iter().zip(&details) {
                    outln!(
                        "{:<16} {:<14} {:<20} {:<9} {:<20} {:<24} {}",
                        t.serial,
                        t.kind.as_str(),
                        t.user,
                        t.state.as_str(),
                        t.last_used_at
                            .map(fmt_time)
                            .unwrap_or_else(|| "never".into()),
                        t.label,
                        d.text
                    );
                }
            }
        }
        TokenCmd::Show { serial, json } => {
            let t = a.token(&serial)?;
            if json {
                // One token asked for by serial: the admin sees the whole address.
                print_json(&token_json(&t, true)?)?;
            } else {
                show(&t);
            }
        }
        TokenCmd::Disable { serial } => {
            a.set_token_state(&serial, TokenState::Disabled)?;
            outln!("token {serial} disabled");
        }
        TokenCmd::Enable { serial } => {
            a.set_token_state(&serial, TokenState::Active)?;
            outln!("token {serial} enabled");
        }
        TokenCmd::Delete { serial } => {
            a.delete_token(&serial)?;
            outln!("token {serial} deleted");
        }
    }
    Ok(Outcome::Ok)
}

/// Reads a whole input file, bounded: an import is never larger than a few megabytes.
fn read_text(path: &std::path::Path) -> Result<String, CliError> {
    const MAX: u64 = 16 << 20;
    let meta =
        std::fs::metadata(path).map_err(|e| CliError::Other(format!("{}: {e}", path.display())))?;
    if meta.len() > MAX {
        return Err(CliError::Other(format!(
            "{}: larger than 16 MiB; not an import file",
            path.display()
        )));
    }
    let bytes =
        std::fs::read(path).map_err(|e| CliError::Other(format!("{}: {e}", path.display())))?;
    String::from_utf8(bytes)
        .map_err(|_| CliError::Other(format!("{}: not UTF-8 text", path.display())))
}

/// `PUBLIC_ID,USER` lines (blank lines and `#` comments allowed).
fn read_owner_map(
    path: &std::path::Path,
) -> Result<std::collections::BTreeMap<String, String>, CliError> {
    let text = read_text(path)?;
    let mut map = std::collections::BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((pid, user)) = line.split_once(',') else {
            return Err(CliError::Other(format!(
                "{} line {}: expected PUBLIC_ID,USER",
                path.display(),
                i + 1
            )));
        };
        map.insert(pid.trim().to_ascii_lowercase(), user.trim().to_string());
    }
    Ok(map)
}

/// A token as JSON, with what its kind adds (an e-mail token's address, masked unless
/// `full`: lists are read over shoulders and pasted into tickets).
fn token_json(t: &Token, full: bool) -> Result<serde_json::Value, CliError> {
    let mut v = serde_json::to_value(t).map_err(|e| CliError::Other(e.to_string()))?;
    if let Some(obj) = v.as_object_mut() {
        for (k, x) in tokens::class(t.kind).json_fields(t, full) {
            obj.insert(k.into(), x);
        }
    }
    Ok(v)
}

/// Prints what the admin needs once after `token add`: the secret, URI and QR code of an
/// app's token, or where its first code went, or how to activate it.
fn print_enrolled(t: &Token, shown: Shown, add: &AddArgs) -> Result<(), CliError> {
    let sent_to = match shown {
        Shown::Secret { b32, uri } => return print_secret(t, &b32, &uri, add),
        Shown::CodeSentTo(to) => Some(to),
        Shown::Nothing => None,
    };
    if add.json {
        let mut v = token_json(t, false)?;
        if let (Some(to), Some(obj)) = (&sent_to, v.as_object_mut()) {
            obj.insert("code_sent_to".into(), to.clone().into());
        }
        return print_json(&v);
    }
    outln!("serial:  {}", t.serial);
    outln!("user:    {}", t.user);
    outln!("type:    {}", t.kind.as_str());
    outln!("state:   {}", t.state.as_str());
    if let Some(p) = &t.address {
        outln!("address: {p}");
    }
    if let Some(p) = &t.public_id {
        outln!("public id: {p}");
    }
    if let Some(to) = sent_to {
        outln!(
            "A code was sent to {to}. Activate the token with it:\n  otpd token \
             activate {} CODE\n(otpd token send-code {} sends a new one)",
            t.serial,
            t.serial
        );
    } else if t.state == TokenState::Pending {
        outln!(
            "Activate the token with one code from it:\n  otpd token activate {} CODE",
            t.serial
        );
    }
    Ok(())
}

fn print_secret(t: &Token, b32: &str, uri: &str, add: &AddArgs) -> Result<(), CliError> {
    if let Some(path) = &add.qr {
        qr::write_file(uri, path).map_err(|err| CliError::Other(err.to_string()))?;
    }
    if add.json {
        return print_json(&serde_json::json!({
            "serial": t.serial,
            "user": t.user,
            "type": t.kind,
            "state": t.state,
            "algorithm": t.algorithm,
            "digits": t.digits,
            "period": t.period,
            "secret": b32,
            "uri": uri,
        }));
    }
    outln!("serial:  {}", t.serial);
    outln!("user:    {}", t.user);
    outln!("state:   {}", t.state.as_str());
    outln!("uri:     {uri}");
    outln!("secret:  {}", group4(b32));
    if let Some(p) = &add.qr {
        outln!("qr code: {}", p.display());
    }
    if !add.no_qr {
        outln!(
            "{}",
            qr::terminal(uri).map_err(|err| CliError::Other(err.to_string()))?
        );
    }
    if t.state == TokenState::Pending {
        outln!(
            "Scan the code, then activate the token with one code from the app:\n  otpd token activate {} CODE",
            t.serial
        );
    }
    Ok(())
}

fn show(t: &Token) {
    outln!("serial:     {}", t.serial);
    outln!("user:       {}", t.user);
    outln!("type:       {}", t.kind.as_str());
    outln!("state:      {}", t.state.as_str());
    for (what, value) in tokens::class(t.kind).describe(t) {
        outln!("{:<12}{value}", format!("{what}:"));
    }
    outln!("label:      {}", t.label);
    outln!("created:    {}", fmt_time(t.created_at));
    outln!(
        "last used:  {}",
        t.last_used_at
            .map(fmt_time)
            .unwrap_or_else(|| "never".into())
    );
}
