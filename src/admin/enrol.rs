//! Enrolment: the admin's side of `otpd token add KIND` (the kind checks its options and
//! says what to store; here the account, the duplicate checks, the serial, sealing and the
//! insert), and the import of the YubiKey personalization tool's log.

use super::tokens::new_serial;
use super::{invalid, Admin, AdminError};
use crate::model::{Account, NewToken, Token, TokenKind, TokenState};
use crate::tokens::kinds::yubikey::{self as yubikey_kind, check_public_id, decode_hex};
use crate::tokens::{self, EnrolError, Enrolment, Options, Ports, Services, Shown};
use std::collections::BTreeMap;
use zeroize::Zeroizing;

/// What `otpd token import` (YubiKey personalization CSV) did.
pub struct YubikeyImportReport {
    pub imported: Vec<Token>,
    /// Lines left out on purpose (other modes of the tool), with line number and why.
    pub skipped: Vec<(usize, String)>,
}

impl From<EnrolError> for AdminError {
    fn from(e: EnrolError) -> AdminError {
        match e {
            EnrolError::Invalid(m) => AdminError::Invalid(m),
            EnrolError::Refused(m) => AdminError::Refused(m),
        }
    }
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
    tokens::class(token.kind)
        .check_shape(token, code)
        .map_err(AdminError::Invalid)
}

impl Admin {
    /// The ports the kinds use here: the admin's mailer and validator.
    pub fn ports(&self) -> Ports {
        Ports {
            mailer: self.mailer.clone(),
            validator: self.validator.clone(),
        }
    }

    /// Enrols a token of `kind` from its options (`otpd token add KIND`). Pending unless
    /// `active`; what the admin is shown once comes with it. If the kind's step after the
    /// insert fails (an e-mail token's first code not sent), nothing is stored.
    pub fn enrol(
        &self,
        raw_user: &str,
        kind: TokenKind,
        o: &Options,
        label: &str,
        active: bool,
    ) -> Result<(Token, Shown), AdminError> {
        let account = self.account(raw_user)?;
        let class = tokens::class(kind);
        if class.options().is_none() {
            return Err(invalid(format!(
                "a {kind} token is not enrolled with otpd token add; see otpd token add --help"
            )));
        }
        let ports = self.ports();
        let sv = Services {
            cfg: &self.cfg,
            store: self.store.as_ref(),
            admin: Some(self.store.as_ref()),
            keys: &self.keys,
            ports: &ports,
        };
        let e = class.enrol(&sv, o, label, active)?;
        check_label(&e.label)?;
        let token = self.insert_new(&account, kind, &e, active)?;
        match class.after_enrol(&sv, &token, &e.secret, active, self.now()) {
            Ok(shown) => Ok((token, shown)),
            Err(err) => {
                let _ = self.store.delete_token(&token.serial);
                Err(AdminError::Refused(format!("{err}; nothing was stored")))
            }
        }
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

    /// Stores what a kind's enrolment asked for, under a new serial, its secret sealed.
    pub(super) fn insert_new(
        &self,
        account: &Account,
        kind: TokenKind,
        e: &Enrolment,
        active: bool,
    ) -> Result<Token, AdminError> {
        self.refuse_taken_secret(&account.name, &e.secret)?;
        let serial = new_serial(kind)?;
        let sealed = self.keys.seal(serial.as_bytes(), &e.secret)?;
        self.store.insert_token(&NewToken {
            serial: serial.clone(),
            account_id: account.id,
            kind,
            state: if active {
                TokenState::Active
            } else {
                TokenState::Pending
            },
            algorithm: e.algorithm,
            digits: e.digits,
            period: e.period,
            sealed_secret: sealed,
            label: e.label.clone(),
            created_at: self.now(),
            public_id: e.public_id.clone(),
            address: e.address.clone(),
        })?;
        if active {
            self.end_devices(account.id, "an active token was added");
        }
        self.token(&serial)
    }

    /// Enrols an e-mail token (see the e-mail kind): the token and, when pending, the masked
    /// address its first code went to.
    pub fn add_email(
        &self,
        raw_user: &str,
        address: &str,
        label: String,
        active: bool,
    ) -> Result<(Token, Option<String>), AdminError> {
        let mut o = Options::default();
        o.set("address", address);
        let (t, shown) = self.enrol(raw_user, TokenKind::Email, &o, &label, active)?;
        Ok((
            t,
            match shown {
                Shown::CodeSentTo(to) => Some(to),
                _ => None,
            },
        ))
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
        let ports = self.ports();
        let sv = Services {
            cfg: &self.cfg,
            store: self.store.as_ref(),
            admin: Some(self.store.as_ref()),
            keys: &self.keys,
            ports: &ports,
        };
        Ok(tokens::kinds::email::send_code(&sv, &token, self.now())?)
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
    ) -> Result<YubikeyImportReport, AdminError> {
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
            if let Some(t) = self.public_id_owner(&public_id)? {
                return Err(at(format!(
                    "the YubiKey {public_id} is already token {} of `{}`",
                    t.serial, t.user
                )));
            }
            let Some(raw_user) = owner(&public_id) else {
                return Err(at(format!("no user given for the YubiKey {public_id}")));
            };
            let user = self.account(&raw_user).map_err(|e| at(e.to_string()))?.name;
            let secret = crate::tokens::yubico::pack_secret(&private_id, &key);
            self.refuse_taken_secret(&user, &secret)
                .map_err(|e| at(e.to_string()))?;
            if let Some(prev) = rows.iter().find(|r: &&Row| {
                r.user == user
                    && crate::crypto::ct_eq(
                        &crate::tokens::yubico::pack_secret(&r.private_id, &r.key),
                        &secret,
                    )
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
            let account = self.account(&r.user)?;
            let e = yubikey_kind::enrolment(
                &r.public_id,
                &r.private_id,
                &r.key,
                &format!("YubiKey {} ({})", r.public_id, r.label),
            );
            let t = self
                .insert_new(&account, TokenKind::Yubikey, &e, active)
                .map_err(|e| {
                    invalid(format!(
                        "line {}: {e}; the lines before it were imported",
                        r.line
                    ))
                })?;
            imported.push(t);
        }
        Ok(YubikeyImportReport { imported, skipped })
    }

    fn public_id_owner(&self, public_id: &str) -> Result<Option<Token>, AdminError> {
        Ok(self
            .store
            .tokens(None)?
            .into_iter()
            .find(|t| t.public_id.as_deref() == Some(public_id)))
    }
}
