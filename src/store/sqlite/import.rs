//! Bulk import of accounts with their tokens in one transaction (`otpd user import`): either
//! every line goes in or none does, and 100,000 accounts take seconds, not one fsync each.

use super::SqliteStore;
use crate::store::admin::ImportAccount;
use crate::store::{StoreError, StoreResult};
use rusqlite::{params, OptionalExtension, TransactionBehavior};
use std::collections::HashSet;

/// Most conflicts listed before giving up.
const MAX_CONFLICTS: usize = 20;

impl SqliteStore {
    /// Serials already in use, so new ones can be drawn around them.
    pub(super) fn import_serials(&self) -> StoreResult<HashSet<String>> {
        let conn = self.conn();
        let mut st = conn.prepare("SELECT serial FROM tokens")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Stores every account and token in one transaction. `Ok(Err(lines))`: some accounts or
    /// serials exist already (one message per line, naming it); nothing was stored.
    /// `Ok(Ok((accounts, tokens)))`: all were stored, durable.
    pub(super) fn import_all(
        &self,
        accounts: &[ImportAccount],
    ) -> StoreResult<Result<(usize, usize), Vec<String>>> {
        let mut conn = self.conn();
        // IMMEDIATE: take the write lock first, so the existence checks below still hold when
        // the rows go in.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut conflicts = Vec::new();
        {
            let mut user_exists = tx.prepare("SELECT 1 FROM accounts WHERE name = ?1")?;
            let mut looks_like =
                tx.prepare("SELECT name FROM accounts WHERE skeleton = ?1 ORDER BY id LIMIT 1")?;
            let mut serial_exists = tx.prepare("SELECT 1 FROM tokens WHERE serial = ?1")?;
            for a in accounts {
                if user_exists
                    .query_row([&a.name], |_| Ok(()))
                    .optional()?
                    .is_some()
                {
                    conflicts.push(format!("line {}: user `{}` already exists", a.line, a.name));
                } else if let Some(existing) = looks_like
                    .query_row([&a.skeleton], |r| r.get::<_, String>(0))
                    .optional()?
                {
                    conflicts.push(format!(
                        "line {}: user `{}` looks like the existing user `{existing}` (case, \
                         width or look-alike characters)",
                        a.line, a.name
                    ));
                }
                for t in &a.tokens {
                    if serial_exists
                        .query_row([&t.token.serial], |_| Ok(()))
                        .optional()?
                        .is_some()
                    {
                        conflicts.push(format!(
                            "line {}: token serial `{}` already exists",
                            a.line, t.token.serial
                        ));
                    }
                }
                if conflicts.len() >= MAX_CONFLICTS {
                    break;
                }
            }
        }
        if !conflicts.is_empty() {
            // Dropping the transaction rolls it back; nothing was written anyway.
            return Ok(Err(conflicts));
        }
        let mut tokens = 0;
        {
            let mut ins_account = tx.prepare(
                "INSERT INTO accounts (name, level, pin_salt, pin_hash, created_at, skeleton)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for a in accounts {
                let (salt, hash) = match &a.pin {
                    Some((s, h)) => (Some(s), Some(h)),
                    None => (None, None),
                };
                ins_account
                    .execute(params![
                        a.name,
                        a.level,
                        salt,
                        hash,
                        a.created_at,
                        a.skeleton
                    ])
                    .map_err(|e| at_line(a.line, e))?;
                let id = tx.last_insert_rowid();
                for t in &a.tokens {
                    super::insert_token_row(&tx, &t.token, id, t.last_counter)
                        .map_err(|e| at_line(a.line, e))?;
                    tokens += 1;
                }
            }
        }
        tx.commit()?;
        Ok(Ok((accounts.len(), tokens)))
    }
}

fn at_line(line: usize, e: rusqlite::Error) -> StoreError {
    StoreError::Commit(format!("line {line}: {e}; nothing was imported"))
}
