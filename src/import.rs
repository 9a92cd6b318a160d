//! `otpd user import FILE`: accounts with PIN, level and tokens from JSON lines, checked line
//! by line first, then stored in one transaction. Nothing is imported if any line is wrong.
//!
//! One account per line:
//! `{"user": "alice", "pin": "1234", "level": "everywhere",
//!   "tokens": [{"type": "hotp", "secret": "BASE32...", "digits": 6, "counter": 0}]}`

use crate::admin::{decode_base32, Admin, AdminError};
use crate::config::Requirement;
use crate::crypto;
use crate::model::{NewToken, TokenKind, TokenState};
use crate::store::{AdminStore, ImportAccount, ImportToken};
use crate::tokens::oath::Algorithm;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::io::BufRead;
use zeroize::Zeroizing;

/// Longest input line read; longer ones are refused rather than cut.
pub const MAX_LINE: usize = 64 * 1024;
/// Most line errors listed before giving up.
const MAX_ERRORS: usize = 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    user: String,
    #[serde(default, deserialize_with = "pin_field")]
    pin: Option<String>,
    #[serde(default)]
    level: Option<String>,
    #[serde(default)]
    tokens: Vec<LineToken>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LineToken {
    #[serde(rename = "type")]
    kind: String,
    #[serde(deserialize_with = "secret_field")]
    secret: String,
    #[serde(default = "six")]
    digits: u32,
    #[serde(default)]
    algorithm: Option<String>,
    #[serde(default)]
    period: Option<u32>,
    /// HOTP: the counter of the next code the token will show (as in an otpauth:// URI).
    #[serde(default)]
    counter: Option<i64>,
    #[serde(default)]
    label: String,
    #[serde(default)]
    serial: Option<String>,
    /// Imported tokens are active unless this says otherwise (the admin has the secret).
    #[serde(default = "yes")]
    active: bool,
}

/// The PIN and the token secret are read as JSON values and their type checked here: serde's
/// own message for a wrong type quotes the value (`invalid type: integer `4711``), and a PIN
/// or secret must never appear in an error.
fn pin_field<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => Ok(None),
        v => string_only(v, "pin").map(Some),
    }
}

fn secret_field<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    string_only(serde_json::Value::deserialize(d)?, "secret")
}

fn string_only<E: serde::de::Error>(v: serde_json::Value, field: &str) -> Result<String, E> {
    let kind = match v {
        serde_json::Value::String(s) => return Ok(s),
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    };
    Err(E::custom(format!("`{field}` must be a string, not {kind}")))
}

/// serde's message without the value it may quote: for a wrong type or value only what was
/// expected is kept (the field may be a PIN or secret typed into the wrong place).
fn json_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let msg = text
        .rsplit_once(" at line ")
        .map_or(text.as_str(), |(m, _)| m);
    let value_in_it = ["invalid type", "invalid value", "invalid length"]
        .iter()
        .any(|p| msg.starts_with(p));
    let shown = if value_in_it {
        match msg.split_once(", expected ") {
            Some((_, expected)) => format!("a value of the wrong type (expected {expected})"),
            None => "a value of the wrong type".to_string(),
        }
    } else {
        msg.to_string()
    };
    if e.column() > 0 {
        format!("{shown} at column {}", e.column())
    } else {
        shown
    }
}

fn six() -> u32 {
    6
}
fn yes() -> bool {
    true
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{}{}\nnothing was imported", .0.join("\n"), more(.1))]
    Lines(Vec<String>, usize),
    #[error("reading the input: {0}")]
    Read(String),
    #[error(transparent)]
    Admin(#[from] AdminError),
}

fn more(n: &usize) -> String {
    if *n > 0 {
        format!("\n... and {n} more errors")
    } else {
        String::new()
    }
}

impl From<crate::store::StoreError> for ImportError {
    fn from(e: crate::store::StoreError) -> Self {
        ImportError::Admin(AdminError::Store(e))
    }
}

/// What `otpd user import` imported.
pub struct UserImportReport {
    pub accounts: usize,
    pub tokens: usize,
}

/// Reads every line, checks it, and stores all accounts in one transaction of `store`.
pub fn import(
    admin: &Admin,
    store: &dyn AdminStore,
    input: impl BufRead,
) -> Result<UserImportReport, ImportError> {
    let now = admin.clock.now_ms().div_euclid(1000);
    let mut serials = store.serials()?;
    let mut users = HashSet::new();
    let mut skeletons = HashMap::new();
    let mut accounts = Vec::new();
    let mut errors = Vec::new();
    let mut extra = 0;
    let mut reader = input;
    let mut no = 0;
    loop {
        let mut line = Zeroizing::new(Vec::new());
        let n = std::io::Read::take(&mut reader, MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| ImportError::Read(e.to_string()))?;
        if n == 0 {
            break;
        }
        no += 1;
        let res = if line.len() > MAX_LINE {
            // Skip the rest of the overlong line so the next one is counted right.
            if line.last() != Some(&b'\n') {
                let mut rest = Vec::new();
                let _ = reader.read_until(b'\n', &mut rest);
            }
            Err(format!("longer than {MAX_LINE} bytes"))
        } else if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        } else {
            parse_line(admin, &line, now, &mut users, &mut skeletons, &mut serials).map(|mut a| {
                a.line = no;
                a
            })
        };
        match res {
            Ok(a) => accounts.push(a),
            Err(msg) if errors.len() < MAX_ERRORS => errors.push(format!("line {no}: {msg}")),
            Err(_) => extra += 1,
        }
    }
    if !errors.is_empty() {
        return Err(ImportError::Lines(errors, extra));
    }
    if accounts.is_empty() {
        return Err(ImportError::Lines(
            vec!["no accounts in the input (one JSON object per line)".into()],
            0,
        ));
    }
    match store.import_accounts(&accounts)? {
        Ok((accounts, tokens)) => Ok(UserImportReport { accounts, tokens }),
        Err(conflicts) => Err(ImportError::Lines(conflicts, 0)),
    }
}

fn parse_line(
    admin: &Admin,
    raw: &[u8],
    now: i64,
    users: &mut HashSet<String>,
    skeletons: &mut HashMap<String, String>,
    serials: &mut HashSet<String>,
) -> Result<ImportAccount, String> {
    // Every input line is one JSON text: serde's "line 1" would only confuse.
    let line: Line = serde_json::from_slice(raw)
        .map_err(|e| format!("not a valid account: {}", json_error(&e)))?;
    let pin = line.pin.map(Zeroizing::new);
    let name = admin.user_name(&line.user).map_err(|e| e.to_string())?;
    if !users.insert(name.clone()) {
        return Err(format!("user `{name}` appears twice in the input"));
    }
    let skeleton = crate::confusable::skeleton(&name);
    if let Some(earlier) = skeletons.insert(skeleton.clone(), name.clone()) {
        return Err(format!(
            "user `{name}` looks like user `{earlier}` earlier in the input (case, width or \
             look-alike characters)"
        ));
    }
    let who = format!("user `{name}`");
    let level = line.level.unwrap_or_else(|| "off".to_string());
    if !admin.cfg.levels.contains_key(&level) {
        return Err(format!(
            "{who}: unknown level `{level}`; allowed: {}",
            admin.cfg.level_names().join(", ")
        ));
    }
    let pin = match &pin {
        Some(p) => {
            admin.check_pin(p).map_err(|e| {
                format!(
                    "{who}: {}",
                    e.to_string()
                        .replace(" (nothing was changed)", "")
                        .replace("; nothing was changed", "")
                )
            })?;
            let salt = crypto::random_vec(crypto::SALT_LEN).map_err(|e| e.to_string())?;
            let hash = admin.keys.keyed_hash(&salt, p.as_bytes()).to_vec();
            Some((salt, hash))
        }
        None => None,
    };
    let mut tokens: Vec<ImportToken> = Vec::with_capacity(line.tokens.len());
    let mut secrets: Vec<Zeroizing<Vec<u8>>> = Vec::with_capacity(line.tokens.len());
    for (i, t) in line.tokens.into_iter().enumerate() {
        let at = format!("{who}: tokens[{i}]");
        let (token, secret) =
            parse_token(admin, t, now, serials).map_err(|e| format!("{at}: {e}"))?;
        // Two tokens of one account with one secret would accept each code twice.
        if let Some(j) = secrets.iter().position(|s| crypto::ct_eq(s, &secret)) {
            return Err(format!(
                "{at}: the same secret as tokens[{j}] (serial {}): two tokens with one secret \
                 would accept each code twice",
                tokens[j].token.serial
            ));
        }
        secrets.push(secret);
        tokens.push(token);
    }
    let needs_otp = admin
        .cfg
        .levels
        .get(&level)
        .is_some_and(|row| row.values().any(|r| *r == Requirement::Otp));
    if needs_otp {
        if !tokens.iter().any(|t| t.token.state == TokenState::Active) {
            return Err(format!(
                "{who}: level `{level}` needs a one-time code, but no active token is given"
            ));
        }
        if pin.is_none() {
            return Err(format!(
                "{who}: level `{level}` needs a PIN, but none is given"
            ));
        }
    }
    Ok(ImportAccount {
        line: 0,
        name,
        skeleton,
        level,
        pin,
        created_at: now,
        tokens,
    })
}

fn parse_token(
    admin: &Admin,
    t: LineToken,
    now: i64,
    serials: &mut HashSet<String>,
) -> Result<(ImportToken, Zeroizing<Vec<u8>>), String> {
    let secret_b32 = Zeroizing::new(t.secret);
    // YubiKeys, mOTP and backup codes have their own enrolment (`otpd token import` reads
    // the YubiKey personalization CSV); this import carries OATH secrets only.
    let kind = match TokenKind::parse(&t.kind) {
        Some(k @ (TokenKind::Hotp | TokenKind::Totp)) => k,
        _ => {
            return Err(format!(
                "type `{}`: allowed are hotp and totp (YubiKeys: otpd token import)",
                t.kind
            ))
        }
    };
    if !matches!(t.digits, 6 | 8) {
        return Err(format!("digits must be 6 or 8, not {}", t.digits));
    }
    let algorithm = match &t.algorithm {
        None => Algorithm::Sha1,
        Some(a) => Algorithm::parse(a)
            .ok_or_else(|| format!("algorithm `{a}`: allowed are sha1, sha256, sha512"))?,
    };
    let period = match (kind, t.period) {
        (TokenKind::Totp, None) => 30,
        (TokenKind::Totp, Some(p @ (30 | 60))) => p,
        (TokenKind::Totp, Some(p)) => return Err(format!("period must be 30 or 60, not {p}")),
        (_, Some(_)) => return Err("period is for totp tokens only".into()),
        (_, None) => 0,
    };
    let last_counter = match (kind, t.counter) {
        (TokenKind::Hotp, Some(c)) if (0..i64::MAX).contains(&c) => c - 1,
        (TokenKind::Hotp, Some(c)) => return Err(format!("counter must be 0 or more, not {c}")),
        (_, Some(_)) => return Err("counter is for hotp tokens only".into()),
        (_, None) => -1,
    };
    if t.label.chars().count() > 64 || t.label.chars().any(char::is_control) {
        return Err("label: at most 64 printable characters".into());
    }
    let secret =
        decode_base32(&secret_b32).map_err(|e| e.to_string().replacen("--secret", "secret", 1))?;
    let serial = match t.serial {
        Some(s) => {
            let ok = !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !ok {
                return Err(format!(
                    "serial `{s}`: 1 to 64 ASCII letters, digits, `-`, `_` or `.`"
                ));
            }
            if !serials.insert(s.clone()) {
                return Err(format!(
                    "serial `{s}` is already in use (in the database or the input)"
                ));
            }
            s
        }
        None => loop {
            // Four random bytes, as `otpd token add` draws them; redrawn on a clash, which
            // among 100,000 tokens happens about once.
            let r = crypto::random_vec(4).map_err(|e| e.to_string())?;
            let s = format!(
                "{}{}",
                kind.as_str().to_ascii_uppercase(),
                data_encoding::HEXUPPER.encode(&r)
            );
            if serials.insert(s.clone()) {
                break s;
            }
        },
    };
    let sealed = admin
        .keys
        .seal(serial.as_bytes(), &secret)
        .map_err(|e| e.to_string())?;
    let token = ImportToken {
        token: NewToken {
            serial,
            account_id: 0,
            kind,
            state: if t.active {
                TokenState::Active
            } else {
                TokenState::Pending
            },
            algorithm,
            digits: t.digits,
            period,
            sealed_secret: sealed,
            label: t.label,
            created_at: now,
            public_id: None,
            address: None,
        },
        last_counter,
    };
    Ok((token, secret))
}
