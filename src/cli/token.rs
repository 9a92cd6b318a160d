use super::{fmt_time, print_json, CliError, Outcome};
use crate::admin::{group4, Admin, TokenOptions, YubikeyOptions};
use crate::model::{Token, TokenKind, TokenState};
use crate::qr;
use crate::tokens::email;
use crate::tokens::oath::Algorithm;
use clap::{Subcommand, ValueEnum};
use std::path::PathBuf;
use zeroize::Zeroizing;

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum KindArg {
    Totp,
    Hotp,
    /// YubiKey in Yubico OTP mode, validated here (needs --public-id, --private-id, --aes-key).
    Yubikey,
    /// YubiKey checked by the validation server of [yubico] (needs --public-id).
    YubikeyRemote,
    /// Mobile-OTP app (needs --secret HEX and --mpin).
    Motp,
    /// Codes sent by e-mail at login (needs --address; [email] configured).
    Email,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ImportFormat {
    /// The CSV log of the YubiKey Personalization Tool / ykpersonalize / ykman
    /// (`Yubico OTP,...` lines or `SERIAL,PUBLIC_ID,PRIVATE_ID,AES_KEY,...`).
    YubicoCsv,
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
        /// Secret in base32 (hardware tokens); a random one is made otherwise. For mOTP: the
        /// app's init secret in hex.
        #[arg(long)]
        secret: Option<String>,
        /// mOTP: the app's own PIN (sealed with the secret).
        #[arg(long)]
        mpin: Option<String>,
        /// E-mail: where codes are sent. Without --active a first code goes there now.
        #[arg(long, value_name = "ADDRESS")]
        address: Option<String>,
        /// YubiKey: the public id, 12 modhex characters (the first 12 of every OTP).
        #[arg(long, value_name = "MODHEX")]
        public_id: Option<String>,
        /// YubiKey: the private id, 12 hex characters.
        #[arg(long, value_name = "HEX")]
        private_id: Option<String>,
        /// YubiKey: the AES key, 32 hex characters. Visible in `ps`: prefer `token import`.
        #[arg(long, value_name = "HEX")]
        aes_key: Option<String>,
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
    if let TokenCmd::Add {
        kind,
        address: Some(_),
        ..
    } = &cmd
    {
        if *kind != KindArg::Email {
            return Err(CliError::Other("--address is for --type email".into()));
        }
    }
    match cmd {
        TokenCmd::Add {
            user,
            kind: KindArg::Email,
            address,
            secret,
            mpin,
            public_id,
            private_id,
            aes_key,
            label,
            active,
            json,
            ..
        } => {
            if secret.is_some()
                || mpin.is_some()
                || public_id.is_some()
                || private_id.is_some()
                || aes_key.is_some()
            {
                return Err(CliError::Other(
                    "an e-mail token holds only --address; it has no secret".into(),
                ));
            }
            let address = address
                .ok_or_else(|| CliError::Other("--type email needs --address ADDRESS".into()))?;
            let (t, sent_to) = a.add_email(&user, &address, label, active)?;
            if json {
                let mut v = token_json(&t)?;
                if let (Some(to), Some(obj)) = (&sent_to, v.as_object_mut()) {
                    obj.insert("code_sent_to".into(), to.clone().into());
                }
                print_json(&v)?;
            } else {
                outln!("serial:  {}", t.serial);
                outln!("user:    {}", t.user);
                outln!("type:    {}", t.kind.as_str());
                outln!("state:   {}", t.state.as_str());
                outln!("address: {}", t.public_id.as_deref().unwrap_or("-"));
                if let Some(to) = sent_to {
                    outln!(
                        "A code was sent to {to}. Activate the token with it:\n  otpd token \
                         activate {} CODE\n(otpd token send-code {} sends a new one)",
                        t.serial,
                        t.serial
                    );
                }
            }
        }
        TokenCmd::Add {
            user,
            kind: KindArg::Yubikey,
            secret,
            public_id,
            private_id,
            aes_key,
            label,
            active,
            json,
            ..
        } => {
            if secret.is_some() {
                return Err(CliError::Other(
                    "--secret is for totp, hotp and motp tokens; a YubiKey takes --private-id \
                     and --aes-key"
                        .into(),
                ));
            }
            let missing = |what: &str| {
                CliError::Other(format!(
                    "--type yubikey needs {what} (see otpd token add --help)"
                ))
            };
            let t = a.add_yubikey(
                &user,
                YubikeyOptions {
                    public_id: public_id.ok_or_else(|| missing("--public-id"))?,
                    private_id: Zeroizing::new(private_id.ok_or_else(|| missing("--private-id"))?),
                    aes_key: Zeroizing::new(aes_key.ok_or_else(|| missing("--aes-key"))?),
                    label,
                    active,
                },
            )?;
            enrolled(&t, json)?;
        }
        TokenCmd::Add {
            user,
            kind: KindArg::Motp,
            secret,
            mpin,
            public_id,
            private_id,
            aes_key,
            label,
            active,
            json,
            ..
        } => {
            if public_id.is_some() || private_id.is_some() || aes_key.is_some() {
                return Err(CliError::Other(
                    "--public-id, --private-id and --aes-key are for YubiKeys".into(),
                ));
            }
            let (Some(secret), Some(mpin)) = (secret, mpin) else {
                return Err(CliError::Other(
                    "--type motp needs --secret HEX (the app's init secret) and --mpin PIN".into(),
                ));
            };
            let secret = Zeroizing::new(secret);
            let mpin = Zeroizing::new(mpin);
            let t = a.add_motp(&user, &secret, &mpin, label, active)?;
            enrolled(&t, json)?;
        }
        TokenCmd::Add {
            user,
            kind: KindArg::YubikeyRemote,
            secret,
            public_id,
            private_id,
            aes_key,
            label,
            active,
            json,
            ..
        } => {
            if secret.is_some() || private_id.is_some() || aes_key.is_some() {
                return Err(CliError::Other(
                    "a yubikey-remote token holds only --public-id; its secrets stay at the \
                     validation server"
                        .into(),
                ));
            }
            let public_id = public_id
                .ok_or_else(|| CliError::Other("--type yubikey-remote needs --public-id".into()))?;
            let t = a.add_yubikey_remote(&user, &public_id, label, active)?;
            enrolled(&t, json)?;
        }
        TokenCmd::Add {
            user,
            kind,
            secret,
            mpin,
            address: _,
            public_id,
            private_id,
            aes_key,
            digits,
            algorithm,
            period,
            label,
            active,
            qr,
            no_qr,
            json,
        } => {
            if public_id.is_some() || private_id.is_some() || aes_key.is_some() {
                return Err(CliError::Other(
                    "--public-id, --private-id and --aes-key are for --type yubikey".into(),
                ));
            }
            if mpin.is_some() {
                return Err(CliError::Other("--mpin is for --type motp".into()));
            }
            let e = a.add_token(
                &user,
                TokenOptions {
                    kind: match kind {
                        KindArg::Hotp => TokenKind::Hotp,
                        _ => TokenKind::Totp,
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
                outln!("serial:  {}", e.token.serial);
                outln!("user:    {}", e.token.user);
                outln!("state:   {}", e.token.state.as_str());
                outln!("uri:     {}", e.uri.as_str());
                outln!("secret:  {}", group4(&e.secret_b32));
                if let Some(p) = &qr {
                    outln!("qr code: {}", p.display());
                }
                if !no_qr {
                    outln!(
                        "{}",
                        qr::terminal(&e.uri).map_err(|err| CliError::Other(err.to_string()))?
                    );
                }
                if e.token.state == TokenState::Pending {
                    outln!(
                        "Scan the code, then activate the token with one code from the app:\n  otpd token activate {} CODE",
                        e.token.serial
                    );
                }
            }
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
            match t.kind {
                TokenKind::Totp => outln!(
                    "token {} resynchronised: device clock offset {} s",
                    t.serial,
                    t.drift * i64::from(t.period)
                ),
                _ => outln!(
                    "token {} resynchronised at counter {}",
                    t.serial,
                    t.last_counter
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
            // What each kind adds: a YubiKey's public id, the backup codes left.
            let mut details = Vec::with_capacity(tokens.len());
            for t in &tokens {
                details.push(match t.kind {
                    TokenKind::Backup => {
                        let (left, total) = a.store.backup_code_counts(t.id)?;
                        (format!("{left} of {total} codes left"), Some((left, total)))
                    }
                    TokenKind::Email => (
                        t.public_id.as_deref().map(email::mask).unwrap_or_default(),
                        None,
                    ),
                    _ => (t.public_id.clone().unwrap_or_default(), None),
                });
            }
            if json {
                let mut out = Vec::with_capacity(tokens.len());
                for (t, (_, counts)) in tokens.iter().zip(&details) {
                    let mut v = token_json(t)?;
                    if let (Some((left, total)), Some(obj)) = (counts, v.as_object_mut()) {
                        obj.insert("codes_left".into(), (*left).into());
                        obj.insert("codes_total".into(), (*total).into());
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
                for (t, (detail, _)) in tokens.iter().zip(&details) {
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
                        detail
                    );
                }
            }
        }
        TokenCmd::Show { serial, json } => {
            let t = a.token(&serial)?;
            if json {
                // One token asked for by serial: the admin sees the whole address.
                let mut v = token_json(&t)?;
                if let (TokenKind::Email, Some(obj)) = (t.kind, v.as_object_mut()) {
                    obj.insert("address".into(), t.public_id.clone().into());
                }
                print_json(&v)?;
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

/// A token as JSON. An e-mail token's address is shown masked, as `address`, not as
/// `public_id`: lists are read over shoulders and pasted into tickets.
fn token_json(t: &Token) -> Result<serde_json::Value, CliError> {
    let mut v = serde_json::to_value(t).map_err(|e| CliError::Other(e.to_string()))?;
    if let (TokenKind::Email, Some(obj)) = (t.kind, v.as_object_mut()) {
        obj.remove("public_id");
        obj.insert(
            "address".into(),
            t.public_id.as_deref().map(email::mask).into(),
        );
    }
    Ok(v)
}

/// Prints a token enrolled without a QR code (hardware keys, mOTP).
fn enrolled(t: &Token, json: bool) -> Result<(), CliError> {
    if json {
        return print_json(t);
    }
    outln!("serial:  {}", t.serial);
    outln!("user:    {}", t.user);
    outln!("type:    {}", t.kind.as_str());
    outln!("state:   {}", t.state.as_str());
    if let Some(p) = &t.public_id {
        outln!("public id: {p}");
    }
    if t.state == TokenState::Pending {
        outln!(
            "Activate the token with one code from it:\n  otpd token activate {} CODE",
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
    match t.kind {
        TokenKind::Totp => {
            outln!("algorithm:  {}", t.algorithm.as_str());
            outln!("digits:     {}", t.digits);
            outln!("period:     {} s", t.period);
            outln!("clock skew: {} s", t.drift * i64::from(t.period));
        }
        TokenKind::Hotp => {
            outln!("algorithm:  {}", t.algorithm.as_str());
            outln!("digits:     {}", t.digits);
            outln!("counter:    {}", t.last_counter);
        }
        TokenKind::Backup => {
            outln!("codes:      see otpd backup-codes status {}", t.user);
        }
        TokenKind::Motp => {
            outln!("step:       10 s");
            outln!("clock skew: {} s", t.drift * crate::tokens::motp::STEP_SECS);
        }
        TokenKind::YubikeyRemote => {
            outln!("public id:  {}", t.public_id.as_deref().unwrap_or("-"));
            outln!("checked by: the validation server ([yubico])");
        }
        TokenKind::Email => {
            outln!("address:    {}", t.public_id.as_deref().unwrap_or("-"));
            outln!("digits:     {}", t.digits);
        }
        TokenKind::Yubikey => {
            outln!("public id:  {}", t.public_id.as_deref().unwrap_or("-"));
            if t.last_counter >= 0 {
                outln!(
                    "counter:    use {}, session {}",
                    t.last_counter >> 8,
                    t.last_counter & 0xff
                );
            }
        }
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
