//! The login's reads and writes (`LoginStore`): reads from the pool, the logins' writes
//! through the writer (`writer.rs`), the e-mail send limit and code replacement as
//! transactions of their own.

use super::rows::{self, ACCOUNT_COLS, ACCOUNT_NCOLS, TOKEN_COLS};
use super::shared::PgShared;
use super::PgStore;
use crate::model::{Account, AppPassword, AuditRecord, BackupCode, EmailCode};
use crate::store::sqlite::commit::{Answer, Op};
use crate::store::{
    Advance, CommitMode, Found, LoginStore, SharedStateStore, StoreError, StoreResult,
};
use std::sync::{Arc, LazyLock};

static ACCOUNT_SQL: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {ACCOUNT_COLS} FROM accounts a WHERE a.name = $1"));
/// What every login reads: the account and its tokens in one statement.
static ACCOUNT_WITH_TOKENS_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {ACCOUNT_COLS}, {TOKEN_COLS} FROM accounts a
         LEFT JOIN tokens t ON t.account_id = a.id
         WHERE a.name = $1 ORDER BY t.id"
    )
});

impl PgStore {
    /// The account and its tokens from the database itself.
    fn read_account_with_tokens(&self, name: &str) -> StoreResult<Option<Found>> {
        let mut c = self.pool.get()?;
        let found = c.query(&ACCOUNT_WITH_TOKENS_SQL, &[&name])?;
        let Some(first) = found.first() else {
            return Ok(None);
        };
        let account = rows::account(first)?;
        let mut tokens = Vec::new();
        for r in &found {
            // An account without tokens comes as one row with NULL token columns.
            if r.try_get::<_, Option<i64>>(ACCOUNT_NCOLS)?.is_some() {
                tokens.push(rows::token_at(r, ACCOUNT_NCOLS)?);
            }
        }
        Ok(Some(Arc::new((account, tokens))))
    }
}

impl LoginStore for PgStore {
    fn account(&self, name: &str) -> StoreResult<Option<Account>> {
        let mut c = self.pool.get()?;
        c.query_opt(&ACCOUNT_SQL, &[&name])?
            .map(|r| rows::account(&r))
            .transpose()
    }

    fn account_with_tokens(&self, name: &str) -> StoreResult<Option<Found>> {
        let Some((cache, feed)) = &self.cached else {
            return self.read_account_with_tokens(name);
        };
        cache.get_or_read(
            name,
            || feed.barrier(),
            || self.read_account_with_tokens(name),
        )
    }

    fn for_received(&self, run: &mut dyn FnMut()) {
        match &self.cached {
            Some((cache, feed)) => cache.for_received(|| feed.barrier(), run),
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
        // One conditional statement in the writer's transaction: failures from every node
        // add up on the row.
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
        self.committer.write_later(Op::Familiar {
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
        match mode {
            CommitMode::Defer => Ok(Advance::Pending(self.committer.write_deferred(op)?)),
            CommitMode::Wait => Ok(Advance::Durable(self.write_won(op)?)),
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
        let mut c = self.pool.get()?;
        let found = c.query(
            "SELECT id, salt, hash FROM backup_codes
             WHERE token_id = $1 AND used_at IS NULL ORDER BY id",
            &[&token_id],
        )?;
        found
            .iter()
            .map(|r| {
                Ok(BackupCode {
                    id: r.try_get(0)?,
                    salt: r.try_get(1)?,
                    hash: r.try_get(2)?,
                })
            })
            .collect()
    }

    fn use_backup_code(&self, token_id: i64, code_id: i64, now: i64) -> StoreResult<bool> {
        self.write_won(Op::UseBackupCode {
            token_id,
            code_id,
            now,
        })
    }

    fn backup_code_counts(&self, token_id: i64) -> StoreResult<(u32, u32)> {
        let mut c = self.pool.get()?;
        let r = c.query_opt(
            "SELECT count(*) FILTER (WHERE used_at IS NULL), count(*)
             FROM backup_codes WHERE token_id = $1",
            &[&token_id],
        )?;
        let (unused, all) = match r {
            Some(r) => (r.try_get::<_, i64>(0)?, r.try_get::<_, i64>(1)?),
            None => (0, 0),
        };
        Ok((
            u32::try_from(unused).unwrap_or(u32::MAX),
            u32::try_from(all).unwrap_or(u32::MAX),
        ))
    }

    fn take_email_send(
        &self,
        account_id: i64,
        now: i64,
        since: i64,
        max: u32,
    ) -> StoreResult<bool> {
        let mut c = self.pool.get()?;
        let max = i64::from(max);
        c.transaction(|tx| {
            // The account row locked first: parallel logins on any node count one after the
            // other, so they cannot all see room for one more.
            let locked = tx.query_opt(
                "SELECT 1 FROM accounts WHERE id = $1 FOR NO KEY UPDATE",
                &[&account_id],
            )?;
            if locked.is_none() {
                return Ok(false);
            }
            tx.execute(
                "DELETE FROM email_sends WHERE account_id = $1 AND sent_at < $2",
                &[&account_id, &since],
            )?;
            let n: i64 = tx
                .query_one(
                    "SELECT count(*) FROM email_sends WHERE account_id = $1",
                    &[&account_id],
                )?
                .try_get(0)?;
            if n >= max {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO email_sends (account_id, sent_at) VALUES ($1, $2)",
                &[&account_id, &now],
            )?;
            Ok(true)
        })
    }

    fn replace_email_code(
        &self,
        token_id: i64,
        salt: &[u8],
        hash: &[u8],
        now: i64,
        expires_at: i64,
    ) -> StoreResult<()> {
        let mut c = self.pool.get()?;
        c.transaction(|tx| {
            // Delete and insert: the new row gets a new id, so a claim on the old code can
            // never redeem the new one.
            tx.execute("DELETE FROM email_codes WHERE token_id = $1", &[&token_id])?;
            tx.execute(
                "INSERT INTO email_codes (token_id, salt, hash, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5)",
                &[&token_id, &salt, &hash, &now, &expires_at],
            )?;
            Ok(())
        })
    }

    fn email_code(&self, token_id: i64) -> StoreResult<Option<EmailCode>> {
        let mut c = self.pool.get()?;
        c.query_opt(
            "SELECT id, salt, hash, expires_at, used_at IS NOT NULL FROM email_codes
             WHERE token_id = $1",
            &[&token_id],
        )?
        .map(|r| {
            Ok(EmailCode {
                id: r.try_get(0)?,
                salt: r.try_get(1)?,
                hash: r.try_get(2)?,
                expires_at: r.try_get(3)?,
                used: r.try_get(4)?,
            })
        })
        .transpose()
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
        let mut c = self.pool.get()?;
        c.query(
            "SELECT id, account_id, label, services, salt, hash, created_at, last_used_at,
                    last_used_from
             FROM app_passwords WHERE account_id = $1 ORDER BY id",
            &[&account_id],
        )?
        .iter()
        .map(rows::app_password)
        .collect()
    }

    fn touch_app_password(&self, id: i64, now: i64, from: Option<&str>) -> StoreResult<()> {
        self.committer.write_later(Op::TouchAppPassword {
            id,
            now,
            from: from.map(str::to_string),
        })
    }

    fn devices(&self) -> Option<&dyn crate::store::DeviceStore> {
        Some(self)
    }

    /// The States, the re-login cache and the failure counters every node must see, in
    /// UNLOGGED tables on this store's pool.
    fn shared_state(&self) -> Option<Arc<dyn SharedStateStore>> {
        Some(Arc::new(PgShared::new(self.pool().clone())))
    }

    fn append_audit(&self, r: AuditRecord) -> StoreResult<()> {
        self.committer.write_later(Op::Audit(r))
    }
}
