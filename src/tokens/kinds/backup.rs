//! Printed one-use backup codes: one token per account holds the set (keyed hashes in
//! `backup_codes`); `otpd backup-codes new` makes it, not `token add`.

use crate::model::{Token, TokenKind};
use crate::store::StoreResult;
use crate::tokens::class::{Detail, Opt, Services, TokenClass};
use crate::tokens::{Claim, Miss};

impl TokenKind {
    #[allow(non_upper_case_globals)]
    pub const Backup: TokenKind = TokenKind::named("backup");
}

/// Digits of a printed backup code.
pub const BACKUP_CODE_LEN: usize = 8;

pub struct Backup;

impl TokenClass for Backup {
    fn kind(&self) -> TokenKind {
        TokenKind::Backup
    }
    fn about(&self) -> &'static str {
        "Printed one-use backup codes (made by otpd backup-codes new)"
    }
    fn serial_prefix(&self) -> &'static str {
        "BKUP"
    }
    fn code_len(&self, _token: &Token) -> usize {
        BACKUP_CODE_LEN
    }
    fn check_shape(&self, _token: &Token, code: &str) -> Result<(), String> {
        if code.len() == BACKUP_CODE_LEN && code.bytes().all(|b| b.is_ascii_digit()) {
            Ok(())
        } else {
            Err(format!("a backup code is {BACKUP_CODE_LEN} digits"))
        }
    }

    /// Compares the code with every unused backup code's keyed hash (all of them, whatever
    /// matched, in constant time each).
    fn check(
        &self,
        sv: &Services<'_>,
        token: &Token,
        _secret: &[u8],
        code: &str,
        _now: i64,
    ) -> Result<Claim, Miss> {
        if code.len() != BACKUP_CODE_LEN || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(None);
        }
        let codes = sv.store.backup_codes(token.id).map_err(|e| {
            tracing::error!(serial = %token.serial, "backup codes: {e}");
            Some(format!("backup codes not readable: {e}"))
        })?;
        let mut found = None;
        for c in &codes {
            if sv.keys.verify_hash(&c.salt, code.as_bytes(), &c.hash) && found.is_none() {
                found = Some(c.id);
            }
        }
        match (found, codes.is_empty()) {
            (Some(id), _) => Ok(Claim::BackupCode(id)),
            (None, true) => Err(Some("no backup code left".into())),
            (None, false) => Err(None),
        }
    }

    fn options(&self) -> Option<&'static [Opt]> {
        None
    }

    fn describe(&self, token: &Token) -> Vec<(&'static str, String)> {
        vec![(
            "codes",
            format!("see otpd backup-codes status {}", token.user),
        )]
    }

    fn detail(&self, sv: &Services<'_>, token: &Token) -> StoreResult<Detail> {
        let (left, total) = sv.store.backup_code_counts(token.id)?;
        Ok(Detail {
            text: format!("{left} of {total} codes left"),
            json: vec![("codes_left", left.into()), ("codes_total", total.into())],
        })
    }
}
