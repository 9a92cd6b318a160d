//! The login's reads and writes (`LoginStore`): reads from the pool, writes through the
//! group committer (`commit/`).

use super::commit::{self, Answer, Op};
use super::feed::Feed;
use super::{
    account_from_row, token_from_row_at, SqliteStore, ACCOUNT_COLS, ACCOUNT_NCOLS,
    ACCOUNT_WITH_TOKENS_SQL,
};
use crate::model::{Account, AppPassword, AuditRecord, BackupCode, EmailCode, Token};
use crate::store::{Advance, CommitMode, Found, LoginStore, StoreError, StoreResult};
use rusqlite::{params, OptionalExtension};
use std::sync::Arc;

impl LoginStore for SqliteStore {
    fn devices(&self) -> Option<&dyn crate::store::DeviceStore> {
        Some(self)
    }

    fn account(&self, name: &str) -> StoreResult<Option<Account>> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(&format!(
            "SELECT {ACCOUNT_COLS} FROM accounts a WHERE a.name = ?1"
        ))?;
        Ok(st.query_row([name], account_from_row).optional()?)
    }

    fn account_with_tokens(&self, name: &str) -> StoreResult<Option<Found>> {
        match &self.feed {
            Some(f) => f.cache.get_or_read(
                name,
                || self.feed_barrier(f),
                || self.read_account_with_tokens(name),
            ),
            None => self.read_account_with_tokens(name),
        }
    }

    fn for_received(&self, run: &mut dyn FnMut()) {
        match &self.feed {
            Some(f) => f.cache.for_received(|| self.feed_barrier(f), run),
            None => run(),
        }
    }

    fn record_failure(
        &self,
        account_id: i64,
        now: i64,
        lock_at: u32,
        lock_until: i64,
    ) -> StoreResult<u32> {
        // One statement on the single writer: read-increment-write cannot interleave.
        match self.write(Op::Failure {
            account_id,
            now,
            lock_at,
            lock_until,
        })? {
            Answer::Failures(n) => Ok(n),
            other => Err(StoreError::Commit(format!("unexpected answer {other:?}"))),
        }
    }

    fn clear_failures(&self, account_id: i64) -> StoreResult<()> {
        self.write(Op::ClearFailures { account_id }).map(|_| ())
    }

    fn set_familiar_sources(&self, account_id: i64, sources: &[String]) -> StoreResult<()> {
        self.write_later(Op::Familiar {
            account_id,
            sources: sources.join("\n"),
        })
    }

    fn record_uncounted(&self, account_id: Option<i64>, now: i64) -> StoreResult<()> {
        self.write(Op::Uncounted { account_id, now }).map(|_| ())
    }

    fn advance_counter(
        &self,
        token_id: i64,
        counter: i64,
        drift: i64,
        now: i64,
        activate: bool,
        mode: CommitMode,
    ) -> StoreResult<Advance> {
        let op = Op::Advance {
            token_id,
            counter,
            drift,
            now,
            activate,
        };
        // Deferred: queued for the writer, whose commit resolves the ticket. Otherwise
        // returns once the batch holding this update is committed with synchronous=FULL.
        match (&self.committer, mode) {
            (Some(c), CommitMode::Defer) => Ok(Advance::Pending(c.write_deferred(op)?)),
            _ => Ok(Advance::Durable(self.write_won(op)?)),
        }
    }

    fn mark_token_used(&self, token_id: i64, now: i64, activate: bool) -> StoreResult<()> {
        self.write(Op::TokenUsed {
            token_id,
            now,
            activate,
        })
        .map(|_| ())
    }

    fn backup_codes(&self, token_id: i64) -> StoreResult<Vec<BackupCode>> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(
            // `(SELECT ?1)`: see app_passwords().
            "SELECT id, salt, hash FROM backup_codes
             WHERE token_id = (SELECT ?1) AND used_at IS NULL ORDER BY id",
        )?;
        let rows = st.query_map([token_id], |r| {
            Ok(BackupCode {
                id: r.get(0)?,
                salt: r.get(1)?,
                hash: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn use_backup_code(&self, token_id: i64, code_id: i64, now: i64) -> StoreResult<bool> {
        // Durable before the answer, as a counter advance.
        self.write_won(Op::UseBackupCode {
            token_id,
            code_id,
            now,
        })
    }

    fn backup_code_counts(&self, token_id: i64) -> StoreResult<(u32, u32)> {
        Ok(self.conn().query_row(
            "SELECT COUNT(*) FILTER (WHERE used_at IS NULL), COUNT(*)
             FROM backup_codes WHERE token_id = ?1",
            [token_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?)
    }

    fn take_email_send(
        &self,
        account_id: i64,
        now: i64,
        since: i64,
        max: u32,
    ) -> StoreResult<bool> {
        let mut conn = self.conn();
        // IMMEDIATE: count and insert under one write lock, so parallel logins cannot all
        // see room for one more.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute(
            "DELETE FROM email_sends WHERE account_id = ?1 AND sent_at < ?2",
            params![account_id, since],
        )?;
        let n: u32 = tx.query_row(
            "SELECT COUNT(*) FROM email_sends WHERE account_id = ?1",
            [account_id],
            |r| r.get(0),
        )?;
        if n >= max {
            tx.commit()?;
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO email_sends (account_id, sent_at) VALUES (?1, ?2)",
            params![account_id, now],
        )?;
        tx.commit()?;
        Ok(true)
    }

    fn replace_email_code(
        &self,
        token_id: i64,
        salt: &[u8],
        hash: &[u8],
        now: i64,
        expires_at: i64,
    ) -> StoreResult<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Delete and insert rather than update: the new row gets a new id, so a claim on the
        // old code can never redeem the new one.
        tx.execute("DELETE FROM email_codes WHERE token_id = ?1", [token_id])?;
        tx.execute(
            "INSERT INTO email_codes (token_id, salt, hash, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![token_id, salt, hash, now, expires_at],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn email_code(&self, token_id: i64) -> StoreResult<Option<EmailCode>> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(
            "SELECT id, salt, hash, expires_at, used_at IS NOT NULL FROM email_codes
             WHERE token_id = ?1",
        )?;
        Ok(st
            .query_row([token_id], |r| {
                Ok(EmailCode {
                    id: r.get(0)?,
                    salt: r.get(1)?,
                    hash: r.get(2)?,
                    expires_at: r.get(3)?,
                    used: r.get(4)?,
                })
            })
            .optional()?)
    }

    fn use_email_code(
        &self,
        token_id: i64,
        code_id: i64,
        now: i64,
        activate: bool,
    ) -> StoreResult<bool> {
        self.write_won(Op::UseEmailCode {
            token_id,
            code_id,
            now,
            activate,
        })
    }

    fn app_passwords(&self, account_id: i64) -> StoreResult<Vec<AppPassword>> {
        let conn = self.conn();
        // `(SELECT ?1)`, not `?1`: compared directly with a column of a non-unique index, a
        // parameter marks the statement to be prepared again whenever it is bound anew
        // (SQLite's STAT4 planning in the bundled build), about 100 µs per login; that made a
        // wrong app password's answer slower than other failed logins' (docs/security.md).
        let mut st = conn.prepare_cached(
            "SELECT id, account_id, label, services, salt, hash, created_at, last_used_at,
                    last_used_from
             FROM app_passwords WHERE account_id = (SELECT ?1) ORDER BY id",
        )?;
        let rows = st.query_map([account_id], |r| {
            let services: String = r.get(3)?;
            Ok(AppPassword {
                id: r.get(0)?,
                account_id: r.get(1)?,
                label: r.get(2)?,
                services: services
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
                salt: r.get(4)?,
                hash: r.get(5)?,
                created_at: r.get(6)?,
                last_used_at: r.get(7)?,
                last_used_from: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn touch_app_password(&self, id: i64, now: i64, from: Option<&str>) -> StoreResult<()> {
        // With the group commit, not a write of its own: every IMAP login with an app password
        // otherwise waited for the write lock and paid an fsync for a timestamp.
        self.write_later(Op::TouchAppPassword {
            id,
            now,
            from: from.map(str::to_string),
        })
    }

    fn append_audit(&self, r: AuditRecord) -> StoreResult<()> {
        // Queued, not waited for: committed in order with the writes around it, at the
        // latest with the next batch. A crash can lose the last batch's records (commit.rs).
        match &self.committer {
            Some(c) => c.write_later(Op::Audit(r)),
            None => commit::apply(&self.conn(), &Op::Audit(r))?.map(|_| ()),
        }
    }
}

impl SqliteStore {
    /// The account cache's barrier, read on the writer's connection when that is idle.
    fn feed_barrier(&self, f: &Feed) -> bool {
        f.barrier(|| self.committer.as_ref().and_then(|c| c.idle_conn()))
    }

    /// One statement, so one read transaction: its file locks and the page reads after the
    /// last commit are paid once per login instead of twice (docs/performance.md). The name
    /// is compared with `(SELECT ?1)`: with `a.name = ?1` in a join SQLite re-prepares the
    /// statement at every use (2.5 times slower, measured).
    fn read_account_with_tokens(&self, name: &str) -> StoreResult<Option<Found>> {
        // The idle writer's connection when it is lent: its page cache is current.
        let conn = match self.committer.as_ref().and_then(|c| c.idle_conn()) {
            Some(c) => c,
            None => self.conn(),
        };
        let mut st = conn.prepare_cached(&ACCOUNT_WITH_TOKENS_SQL)?;
        let mut rows = st.query([name])?;
        let mut found: Option<(Account, Vec<Token>)> = None;
        while let Some(r) = rows.next()? {
            let (_, tokens) = match &mut found {
                Some(f) => f,
                None => found.insert((account_from_row(r)?, Vec::new())),
            };
            // An account without tokens comes as one row with NULL token columns.
            if r.get::<_, Option<i64>>(ACCOUNT_NCOLS)?.is_some() {
                tokens.push(token_from_row_at(r, ACCOUNT_NCOLS)?);
            }
        }
        Ok(found.map(Arc::new))
    }
}
