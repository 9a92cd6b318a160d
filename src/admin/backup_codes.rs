//! Printed backup codes: a set of one-use codes per account, kept as keyed hashes behind one
//! token of kind `backup`, so logins, the audit and `token list` treat them like any token.

use super::{Admin, AdminError};
use crate::crypto;
use crate::model::{Token, TokenKind, TokenState};
use crate::tokens::BACKUP_CODE_LEN;
use zeroize::Zeroizing;

/// Codes in one set.
pub const SET_SIZE: usize = 10;

/// A new set, shown once.
pub struct BackupCodes {
    pub token: Token,
    pub codes: Vec<Zeroizing<String>>,
}

pub struct BackupStatus {
    pub token: Token,
    pub left: u32,
    pub total: u32,
}

/// A uniformly random code of `BACKUP_CODE_LEN` digits (rejection sampling: no modulo bias).
fn random_code() -> Result<Zeroizing<String>, AdminError> {
    let modulus: u32 = 10u32.pow(BACKUP_CODE_LEN as u32);
    let limit = u32::MAX - u32::MAX % modulus;
    loop {
        let mut b = [0u8; 4];
        crypto::fill_random(&mut b)?;
        let n = u32::from_le_bytes(b);
        if n < limit {
            return Ok(Zeroizing::new(format!(
                "{:0width$}",
                n % modulus,
                width = BACKUP_CODE_LEN
            )));
        }
    }
}

impl Admin {
    /// Unix seconds by the admin's clock.
    pub fn now_secs(&self) -> i64 {
        self.now()
    }

    fn backup_token(&self, user: &str) -> Result<Option<Token>, AdminError> {
        Ok(self
            .store
            .tokens(Some(user))?
            .into_iter()
            .find(|t| t.kind == TokenKind::Backup))
    }

    /// Makes a new set of backup codes for the account; the old set stops working. The codes
    /// are returned once and stored only as keyed hashes.
    pub fn generate_backup_codes(&self, raw_user: &str) -> Result<BackupCodes, AdminError> {
        let account = self.account(raw_user)?;
        let token = match self.backup_token(&account.name)? {
            Some(t) => t,
            None => self.insert_new(
                &account,
                TokenKind::Backup,
                &crate::tokens::Enrolment::plain(
                    Zeroizing::new(Vec::new()),
                    BACKUP_CODE_LEN,
                    "backup codes".into(),
                ),
                true,
            )?,
        };
        let mut codes = Vec::with_capacity(SET_SIZE);
        let mut rows = Vec::with_capacity(SET_SIZE);
        while codes.len() < SET_SIZE {
            let code = random_code()?;
            // Two equal codes in one set would be one code: draw again.
            if codes
                .iter()
                .any(|c: &Zeroizing<String>| c.as_str() == code.as_str())
            {
                continue;
            }
            let salt = crypto::random_vec(crypto::SALT_LEN)?;
            let hash = self.keys.keyed_hash(&salt, code.as_bytes()).to_vec();
            rows.push((salt, hash));
            codes.push(code);
        }
        self.store.replace_backup_codes(token.id, &rows)?;
        if token.state == TokenState::Disabled {
            // A new set is the admin's decision to let the codes work again.
            self.store
                .set_token_state(&token.serial, TokenState::Active)?;
        }
        Ok(BackupCodes {
            token: self.token(&token.serial)?,
            codes,
        })
    }

    /// How many backup codes the account has left; `None` if it never had a set.
    pub fn backup_status(&self, raw_user: &str) -> Result<Option<BackupStatus>, AdminError> {
        let account = self.account(raw_user)?;
        let Some(token) = self.backup_token(&account.name)? else {
            return Ok(None);
        };
        let (left, total) = self.store.backup_code_counts(token.id)?;
        Ok(Some(BackupStatus { token, left, total }))
    }
}
