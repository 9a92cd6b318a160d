//! The administrator's writes and maintenance (`AdminStore`): plain transactions on the
//! pool's connections, each durable before it returns.

use super::commit::Op;
use super::{account_from_row, one_row, token_from_row, SqliteStore, ACCOUNT_COLS, TOKEN_COLS};
use crate::model::{Account, NewToken, Token, TokenState};
use crate::store::admin::ImportAccount;
use crate::store::{AdminStore, ResealFn, StoreError, StoreResult};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

impl AdminStore for SqliteStore {
    fn create_account(
        &self,
        name: &str,
        level: &str,
        pin: Option<(&[u8], &[u8])>,
        now: i64,
    ) -> StoreResult<i64> {
        let conn = self.conn();
        let (salt, hash) = match pin {
            Some((s, h)) => (Some(s), Some(h)),
            None => (None, None),
        };
        let skeleton = crate::confusable::skeleton(name);
        // One statement: the look-alike check and the insert cannot be split by another
        // admin adding a look-alike name at the same moment.
        let res = conn.execute(
            "INSERT INTO accounts (name, level, pin_salt, pin_hash, created_at, skeleton)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6
             WHERE NOT EXISTS (SELECT 1 FROM accounts WHERE skeleton = ?6 AND name <> ?1)",
            params![name, level, salt, hash, now, skeleton],
        );
        match res {
            Ok(0) => {
                let same: Option<i64> = conn
                    .query_row("SELECT id FROM accounts WHERE name = ?1", [name], |r| {
                        r.get(0)
                    })
                    .optional()?;
                if same.is_some() {
                    return Err(StoreError::Exists(format!("user `{name}`")));
                }
                let existing: String = conn.query_row(
                    "SELECT name FROM accounts WHERE skeleton = ?1 ORDER BY id LIMIT 1",
                    [&skeleton],
                    |r| r.get(0),
                )?;
                Err(StoreError::LooksLike {
                    name: name.to_string(),
                    existing,
                })
            }
            Ok(_) => Ok(conn.last_insert_rowid()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(StoreError::Exists(format!("user `{name}`")))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn accounts(&self) -> StoreResult<Vec<Account>> {
        let conn = self.conn();
        let mut st = conn.prepare(&format!(
            "SELECT {ACCOUNT_COLS} FROM accounts a ORDER BY a.name"
        ))?;
        let rows = st.query_map([], account_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn set_level(&self, name: &str, level: &str) -> StoreResult<()> {
        let n = self.conn().execute(
            "UPDATE accounts SET level = ?2 WHERE name = ?1",
            params![name, level],
        )?;
        one_row(n, &format!("user `{name}`"))
    }

    fn set_pin(&self, name: &str, salt: &[u8], hash: &[u8]) -> StoreResult<()> {
        let n = self.conn().execute(
            "UPDATE accounts SET pin_salt = ?2, pin_hash = ?3 WHERE name = ?1",
            params![name, salt, hash],
        )?;
        one_row(n, &format!("user `{name}`"))
    }

    fn delete_account(&self, name: &str) -> StoreResult<()> {
        let n = self
            .conn()
            .execute("DELETE FROM accounts WHERE name = ?1", [name])?;
        one_row(n, &format!("user `{name}`"))
    }

    fn unlock_account(&self, account_id: i64) -> StoreResult<()> {
        self.write(Op::Unlock { account_id }).map(|_| ())
    }

    fn insert_token(&self, t: &NewToken) -> StoreResult<i64> {
        let conn = self.conn();
        let res = super::insert_token_row(&conn, t, t.account_id, super::NO_COUNTER);
        match res {
            Ok(id) => Ok(id),
            Err(rusqlite::Error::SqliteFailure(e, msg))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                if msg.is_some_and(|m| m.contains("public_id")) {
                    Err(StoreError::Exists(format!(
                        "a YubiKey with public id `{}`",
                        t.public_id.as_deref().unwrap_or("")
                    )))
                } else {
                    Err(StoreError::Exists(format!("token `{}`", t.serial)))
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    fn token(&self, serial: &str) -> StoreResult<Option<Token>> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(&format!(
            "SELECT {TOKEN_COLS} FROM tokens t JOIN accounts a ON a.id = t.account_id
             WHERE t.serial = ?1"
        ))?;
        Ok(st.query_row([serial], token_from_row).optional()?)
    }

    fn tokens(&self, account: Option<&str>) -> StoreResult<Vec<Token>> {
        let conn = self.conn();
        // `?1 IS NULL OR a.name = ?1` would scan every account (the plan cannot know ?1):
        // hundreds of microseconds per login with 10,000 accounts. And `a.name = ?1` in the
        // join marks the statement to be re-prepared whenever its bindings are cleared, which
        // rusqlite's statement cache does on every use: the id by subquery avoids both.
        let filter = if account.is_some() {
            "t.account_id = (SELECT id FROM accounts WHERE name = ?1)"
        } else {
            "?1 IS NULL"
        };
        let mut st = conn.prepare_cached(&format!(
            "SELECT {TOKEN_COLS} FROM tokens t JOIN accounts a ON a.id = t.account_id
             WHERE {filter} ORDER BY a.name, t.id"
        ))?;
        let rows = st.query_map([account], token_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn set_token_state(&self, serial: &str, state: TokenState) -> StoreResult<()> {
        let n = self.conn().execute(
            "UPDATE tokens SET state = ?2 WHERE serial = ?1",
            params![serial, state.as_str()],
        )?;
        one_row(n, &format!("token `{serial}`"))
    }

    fn set_token_label(&self, serial: &str, label: &str) -> StoreResult<()> {
        let n = self.conn().execute(
            "UPDATE tokens SET label = ?2 WHERE serial = ?1",
            params![serial, label],
        )?;
        one_row(n, &format!("token `{serial}`"))
    }

    fn api_keys(&self) -> Option<&dyn crate::store::ApiKeyStore> {
        Some(self)
    }

    fn delete_token(&self, serial: &str) -> StoreResult<()> {
        let n = self
            .conn()
            .execute("DELETE FROM tokens WHERE serial = ?1", [serial])?;
        one_row(n, &format!("token `{serial}`"))
    }

    fn meta(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        let conn = self.conn();
        Ok(conn
            .query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?)
    }

    fn init_meta(&self, name: &str, value: &[u8]) -> StoreResult<Vec<u8>> {
        let conn = self.conn();
        // One statement each: a second process writing the same name at the same time keeps
        // the first value, and both read back the same one.
        conn.execute(
            "INSERT INTO meta (name, value) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING",
            params![name, value],
        )?;
        Ok(
            conn.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
                r.get(0)
            })?,
        )
    }

    fn reseal_all(&self, reseal: &mut ResealFn<'_>, meta: &[(&str, &[u8])]) -> StoreResult<usize> {
        let mut conn = self.conn();
        // IMMEDIATE: take the write lock first, so no token is added between read and write.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let rows: Vec<(i64, String, Vec<u8>)> = {
            let mut st = tx.prepare("SELECT id, serial, secret FROM tokens")?;
            let it = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            it.collect::<Result<_, _>>()?
        };
        for (id, serial, blob) in &rows {
            let new = reseal(serial, blob).map_err(|msg| StoreError::Reseal {
                serial: serial.clone(),
                msg,
            })?;
            tx.execute(
                "UPDATE tokens SET secret = ?2 WHERE id = ?1",
                params![id, new],
            )?;
        }
        for (name, value) in meta {
            tx.execute(
                "INSERT INTO meta (name, value) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                params![name, value],
            )?;
        }
        tx.commit()?;
        Ok(rows.len())
    }

    fn insert_app_password(
        &self,
        account_id: i64,
        label: &str,
        services: &[String],
        salt: &[u8],
        hash: &[u8],
        now: i64,
    ) -> StoreResult<i64> {
        let conn = self.conn();
        let res = conn.execute(
            "INSERT INTO app_passwords (account_id, label, services, salt, hash, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![account_id, label, services.join(","), salt, hash, now],
        );
        match res {
            Ok(_) => Ok(conn.last_insert_rowid()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(StoreError::Exists(format!("app password `{label}`")))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn delete_app_password(&self, id: i64) -> StoreResult<()> {
        let n = self
            .conn()
            .execute("DELETE FROM app_passwords WHERE id = ?1", [id])?;
        one_row(n, &format!("app password {id}"))
    }

    fn replace_backup_codes(&self, token_id: i64, codes: &[(Vec<u8>, Vec<u8>)]) -> StoreResult<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute("DELETE FROM backup_codes WHERE token_id = ?1", [token_id])?;
        for (salt, hash) in codes {
            tx.execute(
                "INSERT INTO backup_codes (token_id, salt, hash) VALUES (?1, ?2, ?3)",
                params![token_id, salt, hash],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn serials(&self) -> StoreResult<HashSet<String>> {
        self.import_serials()
    }

    fn import_accounts(
        &self,
        accounts: &[ImportAccount],
    ) -> StoreResult<Result<(usize, usize), Vec<String>>> {
        self.import_all(accounts)
    }

    // Maintenance.

    /// A consistent copy of the live database into a new file, taken in one step of SQLite's
    /// online backup API: one read transaction, so writers (WAL) keep going meanwhile and the
    /// copy is a snapshot, not a mix of before and after.
    fn backup_to(&self, dest: &Path) -> StoreResult<()> {
        let conn = self.conn();
        let mut dst = Connection::open(dest).map_err(|e| StoreError::Open {
            path: dest.display().to_string(),
            msg: e.to_string(),
        })?;
        let _ = std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o600));
        copy_all(&conn, &mut dst)?;
        // A backup is one self-contained file: no WAL beside it.
        dst.pragma_update(None, "journal_mode", "DELETE")?;
        Ok(())
    }

    /// Replaces this database's content with `src`'s (restore), in one step.
    fn restore_from(&self, src: &Path) -> StoreResult<()> {
        let src = SqliteStore::open_existing_readonly(src)?;
        let from = src.conn();
        let mut to = self.conn();
        copy_all(&from, &mut to)
    }

    /// Makes every TOTP code up to `now` used: after a restore, codes used since the backup
    /// must not work again. Returns how many tokens moved.
    fn burn_totp_until(&self, now: i64) -> StoreResult<usize> {
        let conn = self.conn();
        let totp = conn.execute(
            "UPDATE tokens SET last_counter = MAX(last_counter, ?1 / period)
             WHERE kind = 'totp' AND period > 0",
            [now],
        )?;
        // mOTP codes are time-based too: 10-second steps.
        let motp = conn.execute(
            "UPDATE tokens SET last_counter = MAX(last_counter, ?1 / 10) WHERE kind = 'motp'",
            [now],
        )?;
        Ok(totp + motp)
    }

    /// Drops every e-mail code: after a restore, a code sent (and maybe used) since the
    /// backup must not work again. Returns how many were dropped.
    fn clear_email_codes(&self) -> StoreResult<usize> {
        Ok(self.conn().execute("DELETE FROM email_codes", [])?)
    }

    /// `PRAGMA user_version`, which the migrations set.
    fn schema_version(&self) -> StoreResult<i64> {
        Ok(self
            .conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    /// Groups of accounts whose names look alike (same `confusable::skeleton`), each sorted
    /// by age: possible only for accounts made before otpd refused look-alikes.
    fn look_alike_groups(&self) -> StoreResult<Vec<Vec<String>>> {
        let conn = self.conn();
        let mut st = conn.prepare(
            "SELECT a.skeleton, a.name FROM accounts a
             WHERE a.skeleton IN (SELECT skeleton FROM accounts
                                  GROUP BY skeleton HAVING count(*) > 1)
             ORDER BY a.skeleton, a.id",
        )?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for row in rows {
            let (skeleton, name) = row?;
            match groups.last_mut() {
                Some((s, names)) if *s == skeleton => names.push(name),
                _ => groups.push((skeleton, vec![name])),
            }
        }
        Ok(groups.into_iter().map(|(_, names)| names).collect())
    }

    fn integrity_check(&self) -> StoreResult<String> {
        Ok(self
            .conn()
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
    }
}

/// All pages in one backup step (-1): one read transaction on the source, hence a snapshot.
/// (rusqlite's run_to_completion refuses -1.) Busy or locked: wait and try again, bounded.
fn copy_all(from: &Connection, to: &mut Connection) -> StoreResult<()> {
    use rusqlite::backup::{Backup, StepResult};
    let b = Backup::new(from, to)?;
    for _ in 0..500 {
        match b.step(-1)? {
            StepResult::Done => return Ok(()),
            StepResult::More | StepResult::Busy | StepResult::Locked => {
                std::thread::sleep(Duration::from_millis(20))
            }
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    Err(StoreError::Open {
        path: "backup".into(),
        msg: "the database stayed busy for 10 s; try again".into(),
    })
}
