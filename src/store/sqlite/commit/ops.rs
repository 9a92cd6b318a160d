//! The writes a login queues: their SQL and how one runs inside a batch's transaction.

use crate::model::AuditRecord;
use crate::store::{StoreError, StoreResult};
use rusqlite::{params, Connection, OptionalExtension};

pub(in crate::store) const SQL_ADVANCE: &str =
    "UPDATE tokens SET last_counter = ?2, drift = ?3, last_used_at = ?4,
         state = CASE WHEN ?5 THEN 'active' ELSE state END
     WHERE id = ?1 AND last_counter < ?2";
/// The same advance by a daemon that keeps the account cache: it counts `advances`, which
/// tells the `tokens_changed` trigger (schema step 13) that this process writes the counter
/// through into its own cache and nobody else needs to hear of it. Any other process's
/// advance (`otpd check`, `otpd token resync`) leaves `advances` alone and is announced.
pub(in crate::store) const SQL_ADVANCE_CACHED: &str =
    "UPDATE tokens SET last_counter = ?2, drift = ?3, last_used_at = ?4,
         state = CASE WHEN ?5 THEN 'active' ELSE state END, advances = advances + 1
     WHERE id = ?1 AND last_counter < ?2";
/// A lock that has ended is forgotten with the failures that made it, so the next guess
/// starts a fresh count (engine/gate.rs): one guess per lock duration cannot keep the
/// account locked for good.
pub(in crate::store) const SQL_FAILURE: &str = "UPDATE accounts SET
         failures = CASE WHEN locked_until <= ?2 THEN 1 ELSE failures + 1 END,
         last_failure = ?2,
         locked_until = CASE
             WHEN locked_until <= ?2 THEN CASE WHEN ?3 = 1 THEN ?4 END
             WHEN locked_until IS NOT NULL THEN locked_until
             WHEN ?3 > 0 AND failures + 1 >= ?3 THEN ?4
             END
     WHERE id = ?1 RETURNING failures";
pub(in crate::store) const SQL_UNLOCK: &str =
    "UPDATE accounts SET failures = 0, last_failure = NULL,
         locked_until = NULL, unlocks = unlocks + 1 WHERE id = ?1";
pub(in crate::store) const SQL_FAMILIAR: &str = "UPDATE accounts SET familiar = ?2 WHERE id = ?1";
pub(in crate::store) const SQL_CLEAR: &str =
    "UPDATE accounts SET failures = 0, last_failure = NULL, locked_until = NULL
     WHERE id = ?1 AND (failures != 0 OR locked_until IS NOT NULL)";
/// The time of the latest unknown-user failure and their count. The count makes every such
/// write change the page: a write of an unchanged value leaves nothing to flush, and the
/// commit then returned without an fsync, 130 µs sooner than a known account's failure count
/// (a timing signal: most commits carry nothing but the login's own write, since audit
/// records are held and committed together, writer.rs).
pub(in crate::store) const SQL_UNKNOWN: &str = "INSERT INTO meta (name, value)
     VALUES ('unknown_user_last_failure', ?1), ('unknown_user_failures', 1)
     ON CONFLICT (name) DO UPDATE SET value = CASE
         WHEN name = 'unknown_user_failures' THEN value + 1 ELSE excluded.value END";
/// The write of an answer that counts nothing, on an account row: the same kind of write
/// as a counted failure's, one `UPDATE … RETURNING` on `accounts`.
pub(in crate::store) const SQL_PROBE: &str =
    "UPDATE accounts SET probes = probes + 1 WHERE id = ?1 RETURNING probes";
pub(in crate::store) const SQL_TOUCH_APP_PASSWORD: &str =
    "UPDATE app_passwords SET last_used_at = ?2, last_used_from = ?3 WHERE id = ?1";
pub(in crate::store) const SQL_TOKEN_USED: &str = "UPDATE tokens SET last_used_at = ?2,
         state = CASE WHEN ?3 THEN 'active' ELSE state END
     WHERE id = ?1";
pub(in crate::store) const SQL_USE_BACKUP_CODE: &str = "UPDATE backup_codes SET used_at = ?3
     WHERE id = ?1 AND token_id = ?2 AND used_at IS NULL";
pub(in crate::store) const SQL_USE_EMAIL_CODE: &str = "UPDATE email_codes SET used_at = ?3
     WHERE id = ?1 AND token_id = ?2 AND used_at IS NULL AND expires_at > ?3";
pub(in crate::store) const SQL_AUDIT: &str =
    "INSERT INTO audit (ts_ms, user, service, rhost, client, verdict, reason, serial)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

/// One write.
#[derive(Debug)]
pub(in crate::store) enum Op {
    Advance {
        token_id: i64,
        counter: i64,
        drift: i64,
        now: i64,
        activate: bool,
    },
    Failure {
        account_id: i64,
        now: i64,
        lock_at: u32,
        lock_until: i64,
    },
    ClearFailures {
        account_id: i64,
    },
    Unlock {
        account_id: i64,
    },
    /// An answer that counted nothing: on `account_id`'s row when there is one, else the
    /// unknown-user upsert of `meta` (a database without accounts).
    Uncounted {
        account_id: Option<i64>,
        now: i64,
    },
    /// The account's familiar sources, most recently added first: bookkeeping, nobody waits for it.
    Familiar {
        account_id: i64,
        sources: String,
    },
    Audit(AuditRecord),
    /// When and from where an app password was last used: bookkeeping, nobody waits for it.
    TouchAppPassword {
        id: i64,
        now: i64,
        from: Option<String>,
    },
    /// A token used without a counter of ours (a validation server's YubiKey, mOTP).
    TokenUsed {
        token_id: i64,
        now: i64,
        activate: bool,
    },
    /// A backup code spent, if still unused: `Advanced(true)` for the one login that spends it.
    UseBackupCode {
        token_id: i64,
        code_id: i64,
        now: i64,
    },
    /// An e-mailed code spent, if still unused and unexpired; as `UseBackupCode`.
    UseEmailCode {
        token_id: i64,
        code_id: i64,
        now: i64,
        activate: bool,
    },
    /// A statement that fails, to test that a failed batch answers every waiter with an error.
    #[cfg(test)]
    Poison,
}

/// What a write reports back.
#[derive(Debug)]
pub(in crate::store) enum Answer {
    Done,
    Advanced(bool),
    Failures(u32),
}

impl Answer {
    /// Whether a conditional write (an advance, a spent code) won.
    pub(in crate::store) fn won(self) -> StoreResult<bool> {
        match self {
            Answer::Advanced(won) => Ok(won),
            other => Err(StoreError::Commit(format!("unexpected answer {other:?}"))),
        }
    }
}

/// Runs one write on `conn` (inside the caller's transaction, or on its own in autocommit
/// mode). `Ok(Err(_))` is this write's own answer (the account vanished); `Err(_)` is a
/// database error that must fail the whole batch.
pub(in crate::store) fn apply(conn: &Connection, op: &Op) -> rusqlite::Result<StoreResult<Answer>> {
    apply_with(conn, op, false)
}

/// [`apply`] by a process that keeps the account cache (`cached`): its advances are its own
/// to write through ([`SQL_ADVANCE_CACHED`]).
pub(in crate::store) fn apply_with(
    conn: &Connection,
    op: &Op,
    cached: bool,
) -> rusqlite::Result<StoreResult<Answer>> {
    Ok(Ok(match op {
        Op::Advance {
            token_id,
            counter,
            drift,
            now,
            activate,
        } => {
            let mut st = conn.prepare_cached(if cached {
                SQL_ADVANCE_CACHED
            } else {
                SQL_ADVANCE
            })?;
            Answer::Advanced(st.execute(params![token_id, counter, drift, now, activate])? == 1)
        }
        Op::Failure {
            account_id,
            now,
            lock_at,
            lock_until,
        } => {
            let mut st = conn.prepare_cached(SQL_FAILURE)?;
            let n: Option<u32> = st
                .query_row(params![account_id, now, lock_at, lock_until], |r| r.get(0))
                .optional()?;
            match n {
                Some(n) => Answer::Failures(n),
                // Deleted while its login was being checked: nothing to count.
                None => return Ok(Err(StoreError::NotFound(format!("account {account_id}")))),
            }
        }
        Op::ClearFailures { account_id } => {
            conn.prepare_cached(SQL_CLEAR)?.execute([account_id])?;
            Answer::Done
        }
        Op::Unlock { account_id } => {
            conn.prepare_cached(SQL_UNLOCK)?.execute([account_id])?;
            Answer::Done
        }
        Op::Familiar {
            account_id,
            sources,
        } => {
            conn.prepare_cached(SQL_FAMILIAR)?
                .execute(params![account_id, sources])?;
            Answer::Done
        }
        Op::Uncounted { account_id, now } => {
            let on_row = match account_id {
                Some(id) => conn
                    .prepare_cached(SQL_PROBE)?
                    .query_row([id], |r| r.get::<_, i64>(0))
                    .optional()?
                    .is_some(),
                None => false,
            };
            if !on_row {
                conn.prepare_cached(SQL_UNKNOWN)?
                    .execute(params![now.to_string().into_bytes()])?;
            }
            Answer::Done
        }
        Op::Audit(r) => {
            conn.prepare_cached(SQL_AUDIT)?.execute(params![
                r.ts_ms, r.user, r.service, r.rhost, r.client, r.verdict, r.reason, r.serial
            ])?;
            Answer::Done
        }
        Op::TouchAppPassword { id, now, from } => {
            conn.prepare_cached(SQL_TOUCH_APP_PASSWORD)?
                .execute(params![id, now, from])?;
            Answer::Done
        }
        Op::TokenUsed {
            token_id,
            now,
            activate,
        } => {
            let n = conn
                .prepare_cached(SQL_TOKEN_USED)?
                .execute(params![token_id, now, activate])?;
            if n == 0 {
                return Ok(Err(StoreError::NotFound(format!("token id {token_id}"))));
            }
            Answer::Done
        }
        Op::UseBackupCode {
            token_id,
            code_id,
            now,
        } => spend(conn, SQL_USE_BACKUP_CODE, *token_id, *code_id, *now, false)?,
        Op::UseEmailCode {
            token_id,
            code_id,
            now,
            activate,
        } => spend(
            conn,
            SQL_USE_EMAIL_CODE,
            *token_id,
            *code_id,
            *now,
            *activate,
        )?,
        #[cfg(test)]
        Op::Poison => {
            conn.execute("INSERT INTO no_such_table VALUES (1)", [])?;
            Answer::Done
        }
    }))
}

/// Spends a single-use code with `sql` (which changes it only while it is unused) and, for
/// the one login that spent it, records its token's use.
fn spend(
    conn: &Connection,
    sql: &str,
    token_id: i64,
    code_id: i64,
    now: i64,
    activate: bool,
) -> rusqlite::Result<Answer> {
    let won = conn
        .prepare_cached(sql)?
        .execute(params![code_id, token_id, now])?
        == 1;
    if won {
        conn.prepare_cached(SQL_TOKEN_USED)?
            .execute(params![token_id, now, activate])?;
    }
    Ok(Answer::Advanced(won))
}
