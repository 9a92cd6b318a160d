//! Enrolment of the token kinds that are not OATH: YubiKeys (one by one or from the
//! personalization tool's log).

use super::{invalid, new_serial, Admin, AdminError};
use crate::model::{Account, NewToken, Token, TokenKind, TokenState};
use crate::tokens::{self, email, motp, oath::Algorithm, yubico};
use std::collections::BTreeMap;
use zeroize::Zeroizing;

/// A YubiKey programmed for Yubico OTP, as the personalization tool shows it.
pub struct YubikeyOptions {
    /// Modhex, 12 characters.
    pub public_id: String,
    /// Hex, 12 characters (6 bytes).
    pub private_id: Zeroizing<String>,
    /// Hex, 32 characters (AES-128).
    pub aes_key: Zeroizing<String>,
    pub label: String,
    pub active: bool,
}

/// What `otpd token import` did.
pub struct ImportReport {
    pub imported: Vec<Token>,
    /// Lines left out on purpose (other modes of the tool), with line number and why.
    pub skipped: Vec<(usize, String)>,
}

/// Hex as tools print it: any case, spaces allowed.
fn decode_hex<const N: usize>(what: &str, s: &str) -> Result<Zeroizing<[u8; N]>, AdminError> {
    let clean: Zeroizing<String> = Zeroizing::new(
        s.chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| c.to_ascii_lowercase())
            .collect(),
    );
    let bytes = Zeroizing::new(
        data_encoding::HEXLOWER_PERMISSIVE
            .decode(clean.as_bytes())
            .map_err(|_| invalid(format!("{what} is not hex (0-9, a-f)")))?,
    );
    if bytes.len() != N {
        return Err(invalid(format!(
            "{what} must be {} hex characters ({N} bytes), not {}",
            2 * N,
            clean.len()
        )));
    }
    let mut out = Zeroizing::new([0u8; N]);
    out.copy_from_slice(&bytes);
    Ok(out)
}

fn check_public_id(s: &str) -> Result<String, AdminError> {
    let p = s.trim().to_ascii_lowercase();
    if !yubico::is_public_id(&p) {
        return Err(invalid(format!(
            "public id `{}` must be 12 modhex characters (c b d e f g h i j k l n r t u v); \
             otpd validates 44-character OTPs",
            s.trim()
        )));
    }
    Ok(p)
}

fn check_label(label: &str) -> Result<(), AdminError> {
    if label.chars().count() > 64 || label.chars().any(char::is_control) {
        return Err(invalid("--label: at most 64 printable characters"));
    }
    Ok(())
}

/// Checks the shape of a code typed for `token` (activation), so a typo gets a clear message
/// rather than "does not match".
pub(super) fn check_code_shape(token: &Token, code: &str) -> Result<(), AdminError> {
    let ok = match token.kind {
        TokenKind::Totp | TokenKind::Hotp => {
            code.len() == token.digits as usize && code.bytes().all(|b| b.is_ascii_digit())
        }
        TokenKind::Yubikey | TokenKind::YubikeyRemote => {
            code.len() == yubico::OTP_LEN && yubico::modhex_decode(code).is_some()
        }
        TokenKind::Motp => {
            code.len() == motp::CODE_LEN && code.bytes().all(|b| b.is_ascii_hexdigit())
        }
        TokenKind::Backup => {
            code.len() == tokens::BACKUP_CODE_LEN && code.bytes().all(|b| b.is_ascii_digit())
        }
        TokenKind::Email => {
            code.len() == token.digits as usize && code.bytes().all(|b| b.is_ascii_digit())
        }
    };
    if ok {
        return Ok(());
    }
    Err(invalid(match token.kind {
        TokenKind::Totp | TokenKind::Hotp => {
            format!("a code for this token is {} digits", token.digits)
        }
        TokenKind::Yubikey | TokenKind::YubikeyRemote => format!(
            "a code for this token is a {}-character Yubico OTP (touch the key)",
            yubico::OTP_LEN
        ),
        TokenKind::Motp => format!("an mOTP code is {} hex digits", motp::CODE_LEN),
        TokenKind::Backup => format!("a backup code is {} digits", tokens::BACKUP_CODE_LEN),
        TokenKind::Email => format!(
            "a code sent to this token is {} digits (see the e-mail)",
            token.digits
        ),
    }))
}

impl Admin {
    fn public_id_taken(&self, public_id: &str) -> Result<Option<Token>, AdminError> {
        Ok(self.store.tokens(None)?.into_iter().find(|t| {
            matches!(t.kind, TokenKind::Yubikey | TokenKind::YubikeyRemote)
                && t.public_id.as_deref() == Some(public_id)
        }))
    }

    /// The account's token that already holds `secret`, if any. Two tokens of one account
    /// with one secret show the same codes, and each keeps its own counter: a code would be
    /// accepted once per token. Secrets are sealed per token, so every one is opened here;
    /// an admin path, where that cost is fine. Kinds without a secret of their own (e-mail,
    /// validation server, backup codes) seal nothing and are never alike.
    pub(super) fn secret_taken(
        &self,
        account: &str,
        secret: &[u8],
    ) -> Result<Option<Token>, AdminError> {
        if secret.is_empty() {
            return Ok(None);
        }
        for t in self.store.tokens(Some(account))? {
            let theirs = self.keys.open(t.serial.as_bytes(), &t.sealed_secret)?;
            if crate::crypto::ct_eq(&theirs, secret) {
                return Ok(Some(t));
            }
        }
        Ok(None)
    }

    /// [`Admin::secret_taken`] as the refusal an admin reads.
    pub(super) fn refuse_taken_secret(
        &self,
        account: &str,
        secret: &[u8],
    ) -> Result<(), AdminError> {
        match self.secret_taken(account, secret)? {
            Some(t) => Err(AdminError::Refused(format!(
                "token {} of `{account}` already has this secret: two tokens with one secret \
                 would accept each code twice; nothing was stored (delete {} first to \
                 replace it)",
                t.serial, t.serial
            ))),
            None => Ok(()),
        }
    }

    pub(super) fn insert_new(
        &self,
        account: &Account,
        kind: TokenKind,
        secret: &[u8],
        label: String,
        active: bool,
        public_id: Option<String>,
    ) -> Result<Token, AdminError> {
        self.refuse_taken_secret(&account.name, secret)?;
        let digits = match kind {
            TokenKind::Email => self.cfg.email.digits,
            _ => tokens::fixed_code_len(kind).unwrap_or(0) as u32,
        };
        let serial = new_serial(kind)?;
        let sealed = self.keys.seal(serial.as_bytes(), secret)?;
        self.store.insert_token(&NewToken {
            serial: serial.clone(),
            account_id: account.id,
            kind,
            state: if active {
                TokenState::Active
            } else {
                TokenState::Pending
            },
            // Not OATH: the algorithm column is unused, digits is the code's length.
            algorithm: Algorithm::Sha1,
            digits,
            period: 0,
            sealed_secret: sealed,
            label,
            created_at: self.now(),
            public_id,
        })?;
        self.token(&serial)
    }

    /// Enrols a YubiKey in Yubico OTP mode, validated here. The private id and AES key are
    /// sealed like every secret; the public id is kept in clear (every OTP shows it).
    pub fn add_yubikey(&self, raw_user: &str, o: YubikeyOptions) -> Result<Token, AdminError> {
        let account = self.account(raw_user)?;
        let public_id = check_public_id(&o.public_id)?;
        let private_id = decode_hex::<6>("--private-id", &o.private_id)?;
        let key = decode_hex::<16>("--aes-key", &o.aes_key)?;
        check_label(&o.label)?;
        if let Some(t) = self.public_id_taken(&public_id)? {
            return Err(AdminError::Refused(format!(
                "the YubiKey {public_id} is already token {} of `{}`; delete that first",
                t.serial, t.user
            )));
        }
        let secret = yubico::pack_secret(&private_id, &key);
        let label = if o.label.is_empty() {
            format!("YubiKey {public_id}")
        } else {
            o.label
        };
        self.insert_new(
            &account,
            TokenKind::Yubikey,
            &secret,
            label,
            o.active,
            Some(public_id),
        )
    }

    /// Enrols an mOTP token: the secret as the app shows it (hex) and the app's own mPIN,
    /// sealed together. The account PIN is still typed in front of every code.
    pub fn add_motp(
        &self,
        raw_user: &str,
        secret: &str,
        mpin: &str,
        label: String,
        active: bool,
    ) -> Result<Token, AdminError> {
        let account = self.account(raw_user)?;
        // The app hashes the secret as text: keep it as typed, in the lower case apps show.
        let secret: Zeroizing<String> = Zeroizing::new(secret.trim().to_ascii_lowercase());
        if !(16..=64).contains(&secret.len()) || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid(
                "--secret for mOTP is the app's init secret: 16 to 64 hex characters",
            ));
        }
        if !(4..=16).contains(&mpin.len()) || !mpin.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(invalid(
                "--mpin is the mOTP app's own PIN: 4 to 16 ASCII letters or digits",
            ));
        }
        check_label(&label)?;
        let blob =
            motp::pack_secret(&secret, mpin).ok_or_else(|| invalid("--secret is too long"))?;
        self.insert_new(&account, TokenKind::Motp, &blob, label, active, None)
    }

    /// Enrols a YubiKey whose OTPs a validation server checks (`[yubico]`). Only the public
    /// id is kept: the key's secrets live at the server.
    pub fn add_yubikey_remote(
        &self,
        raw_user: &str,
        public_id: &str,
        label: String,
        active: bool,
    ) -> Result<Token, AdminError> {
        let account = self.account(raw_user)?;
        let public_id = check_public_id(public_id)?;
        check_label(&label)?;
        if !self.cfg.yubico.is_configured() {
            return Err(AdminError::Refused(
                "a yubikey-remote token needs a validation server: set [yubico] client_id and \
                 api_key first (see docs/tokens.md)"
                    .into(),
            ));
        }
        if let Some(t) = self.public_id_taken(&public_id)? {
            return Err(AdminError::Refused(format!(
                "the YubiKey {public_id} is already token {} of `{}`; delete that first",
                t.serial, t.user
            )));
        }
        let label = if label.is_empty() {
            format!("YubiKey {public_id} (validation server)")
        } else {
            label
        };
        // Nothing secret to keep; an empty sealed blob keeps every row alike for rotation,
        // backup checks and the engine.
        self.insert_new(
            &account,
            TokenKind::YubikeyRemote,
            &[],
            label,
            active,
            Some(public_id),
        )
    }

    /// Enrols an e-mail token: codes go to `address` on request. Active at once with
    /// `active` (the admin vouches for the address); otherwise a first code is sent now and
    /// the token becomes active when it is typed back (`otpd token activate SERIAL CODE`),
    /// which proves the address reaches the user. If that first code cannot be sent, nothing
    /// is stored.
    pub fn add_email(
        &self,
        raw_user: &str,
        address: &str,
        label: String,
        active: bool,
    ) -> Result<(Token, Option<String>), AdminError> {
        let account = self.account(raw_user)?;
        let address =
            email::check_address(address).map_err(|e| invalid(format!("--address: {e}")))?;
        check_label(&label)?;
        if !active && !self.cfg.email.is_configured() {
            return Err(AdminError::Refused(
                "a pending e-mail token is activated with a code sent to it, but [email] is \
                 not configured (email.host, email.from); configure it, or enrol with --active"
                    .into(),
            ));
        }
        let label = if label.is_empty() {
            format!("e-mail {}", email::mask(&address))
        } else {
            label
        };
        let token = self.insert_new(
            &account,
            TokenKind::Email,
            &[],
            label,
            active,
            Some(address),
        )?;
        if active {
            return Ok((token, None));
        }
        match self.send_email_code(&token.serial) {
            Ok(masked) => Ok((token, Some(masked))),
            Err(e) => {
                let _ = self.store.delete_token(&token.serial);
                Err(AdminError::Refused(format!("{e}; nothing was stored")))
            }
        }
    }

    /// Sends a fresh code to an e-mail token's address (it replaces the one sent before;
    /// the account's hourly limit counts it). For activating a pending token whose first code
    /// was lost or ran out; an active token gets its codes at login.
    pub fn send_email_code(&self, serial: &str) -> Result<String, AdminError> {
        let token = self.token(serial)?;
        if token.kind != TokenKind::Email {
            return Err(invalid(format!(
                "token {serial} is a {} token; only e-mail tokens are sent codes",
                token.kind.as_str()
            )));
        }
        email::issue(
            &self.cfg.email,
            self.store.as_ref(),
            &self.keys,
            self.mailer.as_ref(),
            &token,
            &token.user,
            self.now(),
        )
        .map_err(|e| AdminError::Refused(e.to_string()))
    }

    /// Imports the Yubico OTP configurations from the CSV log that the YubiKey Personalization
    /// Tool (and ykpersonalize / ykman) write, in either of its two layouts:
    ///
    /// - traditional: `Yubico OTP,DATE,SLOT,PUBLIC_ID,PRIVATE_ID,AES_KEY,...`
    /// - Yubico format: `SERIAL,PUBLIC_ID,PRIVATE_ID,AES_KEY,ACCESS_CODE,DATE,`
    ///
    /// OATH-HOTP and static password lines are skipped and reported. `owner` names the user
    /// for a public id. Everything is checked before anything is stored: a bad line means
    /// nothing was imported.
    pub fn import_yubico_csv(
        &self,
        text: &str,
        owner: &dyn Fn(&str) -> Option<String>,
        active: bool,
    ) -> Result<ImportReport, AdminError> {
        struct Row {
            line: usize,
            user: String,
            public_id: String,
            private_id: Zeroizing<[u8; 6]>,
            key: Zeroizing<[u8; 16]>,
            label: String,
        }
        let mut rows = Vec::new();
        let mut skipped = Vec::new();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let cells: Vec<&str> = line.split(',').map(str::trim).collect();
            let first = cells[0];
            let at = |msg: String| invalid(format!("line {n}: {msg}; nothing was imported"));
            let (public_id, private_id, key, label) = if first.eq_ignore_ascii_case("yubico otp") {
                if cells.len() < 6 {
                    return Err(at("a `Yubico OTP` line needs at least 6 fields".into()));
                }
                (cells[3], cells[4], cells[5], format!("slot {}", cells[2]))
            } else if first.eq_ignore_ascii_case("oath-hotp")
                || first.eq_ignore_ascii_case("static password")
                || first.eq_ignore_ascii_case("challenge-response")
            {
                skipped.push((n, format!("{first} configuration, not Yubico OTP")));
                continue;
            } else if !first.is_empty() && first.bytes().all(|b| b.is_ascii_digit()) {
                if cells.len() < 4 {
                    return Err(at("a line in Yubico format needs at least 4 fields".into()));
                }
                match cells[2] {
                    "0" => {
                        skipped.push((n, "OATH-HOTP configuration, not Yubico OTP".into()));
                        continue;
                    }
                    "" => {
                        skipped.push((n, "static password configuration, not Yubico OTP".into()));
                        continue;
                    }
                    _ => {}
                }
                (cells[1], cells[2], cells[3], format!("serial {first}"))
            } else {
                return Err(at(
                    "not a line of the personalization tool's log (expected `Yubico OTP,...` \
                     or `SERIAL,PUBLIC_ID,PRIVATE_ID,AES_KEY,...`)"
                        .into(),
                ));
            };
            let public_id = check_public_id(public_id).map_err(|e| at(e.to_string()))?;
            let private_id =
                decode_hex::<6>("private id", private_id).map_err(|e| at(e.to_string()))?;
            let key = decode_hex::<16>("AES key", key).map_err(|e| at(e.to_string()))?;
            if let Some(prev) = seen.insert(public_id.clone(), n) {
                return Err(at(format!(
                    "public id {public_id} was already on line {prev} (a key programmed twice?)"
                )));
            }
            if let Some(t) = self.public_id_taken(&public_id)? {
                return Err(at(format!(
                    "the YubiKey {public_id} is already token {} of `{}`",
                    t.serial, t.user
                )));
            }
            let Some(raw_user) = owner(&public_id) else {
                return Err(at(format!("no user given for the YubiKey {public_id}")));
            };
            let user = self.account(&raw_user).map_err(|e| at(e.to_string()))?.name;
            let secret = yubico::pack_secret(&private_id, &key);
            self.refuse_taken_secret(&user, &secret)
                .map_err(|e| at(e.to_string()))?;
            if let Some(prev) = rows.iter().find(|r: &&Row| {
                r.user == user
                    && crate::crypto::ct_eq(&yubico::pack_secret(&r.private_id, &r.key), &secret)
            }) {
                return Err(at(format!(
                    "the same private id and AES key as line {} for `{user}`: two tokens with \
                     one secret would accept each code twice",
                    prev.line
                )));
            }
            rows.push(Row {
                line: n,
                user,
                public_id,
                private_id,
                key,
                label,
            });
        }
        if rows.is_empty() {
            return Err(invalid(
                "the file holds no Yubico OTP configuration; nothing was imported",
            ));
        }
        let mut imported = Vec::new();
        for r in rows {
            let secret = yubico::pack_secret(&r.private_id, &r.key);
            let account = self.account(&r.user)?;
            let t = self
                .insert_new(
                    &account,
                    TokenKind::Yubikey,
                    &secret,
                    format!("YubiKey {} ({})", r.public_id, r.label),
                    active,
                    Some(r.public_id),
                )
                .map_err(|e| {
                    invalid(format!(
                        "line {}: {e}; the lines before it were imported",
                        r.line
                    ))
                })?;
            imported.push(t);
        }
        Ok(ImportReport { imported, skipped })
    }
}
