//! The administrator's writes and maintenance (`AdminStore`): transactions on the pool's
//! sessions, each durable (replicated) before it returns. Backup and restore belong to
//! PostgreSQL's own tools (`pg_dump`, `pg_basebackup`): asked here, the store says so.

use super::rows::{self, ACCOUNT_COLS, TOKEN_COLS};
use super::{one_row, PgStore};
use crate::model::{Account, NewToken, Token, TokenState};
use crate::store::admin::ImportAccount;
use crate::store::sqlite::commit::Op;
use crate::store::{AdminStore, ResealFn, StoreError, StoreResult};
use postgres::error::SqlState;
use std::collections::HashSet;
use std::path::Path;

const NO_COUNTER: i64 = -1;
/// Most conflicts an import lists before giving up.
const MAX_CONFLICTS: usize = 20;

fn unique_violation(e: &StoreError) -> Option<String> {
    match e {
        StoreError::Postgres(pe) if pe.code() == Some(&SqlState::UNIQUE_VIOLATION) => Some(
            pe.as_db_error()
                .and_then(|d| d.constraint())
                .unwrap_or("")
                .to_string(),
        ),
        _ => None,
    }
}

pub(crate) fn backup_refused() -> StoreError {
    StoreError::Refused(
        "the store is PostgreSQL ([store] kind = \"postgres\"): back it up with pg_dump \
         (a logical copy) or pg_basebackup (the whole cluster), and restore with pg_restore or \
         by starting from the base backup; see docs/operations.md. The key file is backed up \
         apart, as always"
            .into(),
    )
}

fn insert_token(
    tx: &mut postgres::Transaction<'_>,
    t: &NewToken,
    account_id: i64,
    last_counter: i64,
) -> StoreResult<i64> {
    let digits = i64::from(t.digits);
    let period = i64::from(t.period);
    let alg = t.algorithm.as_str().to_ascii_lowercase();
    let row = tx.query_one(
        "INSERT INTO tokens (serial, account_id, kind, state, algorithm, digits, period,
                             secret, label, created_at, public_id, address, last_counter)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
        &[
            &t.serial,
            &account_id,
            &t.kind.as_str(),
            &t.state.as_str(),
            &alg,
            &digits,
            &period,
            &t.sealed_secret,
            &t.label,
            &t.created_at,
            &t.public_id,
            &t.address,
            &last_counter,
        ],
    )?;
    Ok(row.try_get(0)?)
}

impl AdminStore for PgStore {
    fn create_account(
        &self,
        name: &str,
        level: &str,
        pin: Option<(&[u8], &[u8])>,
        now: i64,
    ) -> StoreResult<i64> {
        let mut c = self.pool.get()?;
        let (salt, hash) = match pin {
            Some((s, h)) => (Some(s), Some(h)),
            None => (None, None),
        };
        let skeleton = crate::confusable::skeleton(name);
        let res = c.transaction(|tx| {
            // Serialises account creation, so the look-alike check and the insert cannot be
            // split by another admin (on any node) adding a look-alike name.
            tx.execute("LOCK TABLE accounts IN SHARE ROW EXCLUSIVE MODE", &[])?;
            let row = tx.query_opt(
                "INSERT INTO accounts (name, level, pin_salt, pin_hash, created_at, skeleton)
                 SELECT $1, $2, $3, $4, $5, $6
                 WHERE NOT EXISTS (SELECT 1 FROM accounts WHERE skeleton = $6 AND name <> $1)
                 RETURNING id",
                &[&name, &level, &salt, &hash, &now, &skeleton],
            )?;
            if let Some(r) = row {
                return Ok(Ok(r.try_get::<_, i64>(0)?));
            }
            let existing: String = tx
                .query_one(
                    "SELECT name FROM accounts WHERE skeleton = $1 ORDER BY id LIMIT 1",
                    &[&skeleton],
                )?
                .try_get(0)?;
            Ok(Err(existing))
        });
        match res {
            Ok(Ok(id)) => Ok(id),
            Ok(Err(existing)) => Err(StoreError::LooksLike {
                name: name.to_string(),
                existing,
            }),
            Err(e) if unique_violation(&e).is_some() => {
                Err(StoreError::Exists(format!("user `{name}`")))
            }
            Err(e) => Err(e),
        }
    }

    fn accounts(&self) -> StoreResult<Vec<Account>> {
        let mut c = self.pool.get()?;
        c.query(
            &format!("SELECT {ACCOUNT_COLS} FROM accounts a ORDER BY a.name"),
            &[],
        )?
        .iter()
        .map(rows::account)
        .collect()
    }

    fn set_level(&self, name: &str, level: &str) -> StoreResult<()> {
        let n = self.pool.get()?.execute(
            "UPDATE accounts SET level = $2 WHERE name = $1",
            &[&name, &level],
        )?;
        one_row(n, &format!("user `{name}`"))
    }

    fn set_pin(&self, name: &str, salt: &[u8], hash: &[u8]) -> StoreResult<()> {
        let n = self.pool.get()?.execute(
            "UPDATE accounts SET pin_salt = $2, pin_hash = $3 WHERE name = $1",
            &[&name, &salt, &hash],
        )?;
        one_row(n, &format!("user `{name}`"))
    }

    fn delete_account(&self, name: &str) -> StoreResult<()> {
        let n = self
            .pool
            .get()?
            .execute("DELETE FROM accounts WHERE name = $1", &[&name])?;
        one_row(n, &format!("user `{name}`"))
    }

    fn unlock_account(&self, account_id: i64) -> StoreResult<()> {
        self.write(Op::Unlock { account_id }).map(|_| ())
    }

    fn insert_token(&self, t: &NewToken) -> StoreResult<i64> {
        let mut c = self.pool.get()?;
        match c.transaction(|tx| insert_token(tx, t, t.account_id, NO_COUNTER)) {
            Ok(id) => Ok(id),
            Err(e) => match unique_violation(&e) {
                Some(constraint) if constraint.contains("public_id") => {
                    Err(StoreError::Exists(format!(
                        "a YubiKey with public id `{}`",
                        t.public_id.as_deref().unwrap_or("")
                    )))
                }
                Some(_) => Err(StoreError::Exists(format!("token `{}`", t.serial))),
                None => Err(e),
            },
        }
    }

    fn token(&self, serial: &str) -> StoreResult<Option<Token>> {
        let mut c = self.pool.get()?;
        c.query_opt(
            &format!(
                "SELECT {TOKEN_COLS} FROM tokens t JOIN accounts a ON a.id = t.account_id
                 WHERE t.serial = $1"
            ),
            &[&serial],
        )?
        .map(|r| rows::token(&r))
        .transpose()
    }

    fn tokens(&self, account: Option<&str>) -> StoreResult<Vec<Token>> {
        let mut c = self.pool.get()?;
        c.query(
            &format!(
                "SELECT {TOKEN_COLS} FROM tokens t JOIN accounts a ON a.id = t.account_id
                 WHERE $1::text IS NULL OR a.name = $1 ORDER BY a.name, t.id"
            ),
            &[&account],
        )?
        .iter()
        .map(rows::token)
        .collect()
    }

    fn set_token_state(&self, serial: &str, state: TokenState) -> StoreResult<()> {
        let n = self.pool.get()?.execute(
            "UPDATE tokens SET state = $2 WHERE serial = $1",
            &[&serial, &state.as_str()],
        )?;
        one_row(n, &format!("token `{serial}`"))
    }

    fn delete_token(&self, serial: &str) -> StoreResult<()> {
        let n = self
            .pool
            .get()?
            .execute("DELETE FROM tokens WHERE serial = $1", &[&serial])?;
        one_row(n, &format!("token `{serial}`"))
    }

    fn serials(&self) -> StoreResult<HashSet<String>> {
        let mut c = self.pool.get()?;
        c.query("SELECT serial FROM tokens", &[])?
            .iter()
            .map(|r| Ok(r.try_get::<_, String>(0)?))
            .collect()
    }

    fn import_accounts(
        &self,
        accounts: &[ImportAccount],
    ) -> StoreResult<Result<(usize, usize), Vec<String>>> {
        let mut c = self.pool.get()?;
        c.transaction(|tx| {
            tx.execute("LOCK TABLE accounts IN SHARE ROW EXCLUSIVE MODE", &[])?;
            let mut conflicts = Vec::new();
            for a in accounts {
                if tx
                    .query_opt("SELECT 1 FROM accounts WHERE name = $1", &[&a.name])?
                    .is_some()
                {
                    conflicts.push(format!("line {}: user `{}` already exists", a.line, a.name));
                } else if let Some(r) = tx.query_opt(
                    "SELECT name FROM accounts WHERE skeleton = $1 ORDER BY id LIMIT 1",
                    &[&a.skeleton],
                )? {
                    let existing: String = r.try_get(0)?;
                    conflicts.push(format!(
                        "line {}: user `{}` looks like the existing user `{existing}` (case, \
                         width or look-alike characters)",
                        a.line, a.name
                    ));
                }
                for t in &a.tokens {
                    if tx
                        .query_opt("SELECT 1 FROM tokens WHERE serial = $1", &[&t.token.serial])?
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
            if !conflicts.is_empty() {
                return Ok(Err(conflicts));
            }
            let mut tokens = 0;
            for a in accounts {
                let (salt, hash) = match &a.pin {
                    Some((s, h)) => (Some(s), Some(h)),
                    None => (None, None),
                };
                let id: i64 = tx
                    .query_one(
                        "INSERT INTO accounts (name, level, pin_salt, pin_hash, created_at,
                                               skeleton)
                         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                        &[&a.name, &a.level, &salt, &hash, &a.created_at, &a.skeleton],
                    )
                    .map_err(|e| at_line(a.line, e.into()))?
                    .try_get(0)?;
                for t in &a.tokens {
                    insert_token(tx, &t.token, id, t.last_counter)
                        .map_err(|e| at_line(a.line, e))?;
                    tokens += 1;
                }
            }
            Ok(Ok((accounts.len(), tokens)))
        })
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
        let mut c = self.pool.get()?;
        let services = services.join(",");
        let res = c.transaction(|tx| {
            Ok(tx
                .query_one(
                    "INSERT INTO app_passwords (account_id, label, services, salt, hash,
                                                created_at)
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                    &[&account_id, &label, &services, &salt, &hash, &now],
                )?
                .try_get::<_, i64>(0)?)
        });
        match res {
            Err(e) if unique_violation(&e).is_some() => {
                Err(StoreError::Exists(format!("app password `{label}`")))
            }
            other => other,
        }
    }

    fn delete_app_password(&self, id: i64) -> StoreResult<()> {
        let n = self
            .pool
            .get()?
            .execute("DELETE FROM app_passwords WHERE id = $1", &[&id])?;
        one_row(n, &format!("app password {id}"))
    }

    fn replace_backup_codes(&self, token_id: i64, codes: &[(Vec<u8>, Vec<u8>)]) -> StoreResult<()> {
        let mut c = self.pool.get()?;
        c.transaction(|tx| {
            tx.execute("DELETE FROM backup_codes WHERE token_id = $1", &[&token_id])?;
            for (salt, hash) in codes {
                tx.execute(
                    "INSERT INTO backup_codes (token_id, salt, hash) VALUES ($1, $2, $3)",
                    &[&token_id, salt, hash],
                )?;
            }
            Ok(())
        })
    }

    fn meta(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        let mut c = self.pool.get()?;
        c.query_opt("SELECT value FROM meta WHERE name = $1", &[&name])?
            .map(|r| Ok(r.try_get::<_, Vec<u8>>(0)?))
            .transpose()
    }

    fn init_meta(&self, name: &str, value: &[u8]) -> StoreResult<Vec<u8>> {
        let mut c = self.pool.get()?;
        // Two nodes starting at once with the same name: the first value stays, both read it.
        c.execute(
            "INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            &[&name, &value],
        )?;
        let r = c.query_opt("SELECT value FROM meta WHERE name = $1", &[&name])?;
        match r {
            Some(r) => Ok(r.try_get(0)?),
            None => Err(StoreError::NotFound(format!("meta value `{name}`"))),
        }
    }

    fn reseal_all(&self, reseal: &mut ResealFn<'_>, meta: &[(&str, &[u8])]) -> StoreResult<usize> {
        let mut c = self.pool.get()?;
        c.transaction(|tx| {
            // No token added or changed between read and write, on any node.
            tx.execute("LOCK TABLE tokens IN SHARE ROW EXCLUSIVE MODE", &[])?;
            let found = tx.query("SELECT id, serial, secret FROM tokens", &[])?;
            for r in &found {
                let id: i64 = r.try_get(0)?;
                let serial: String = r.try_get(1)?;
                let blob: Vec<u8> = r.try_get(2)?;
                let new = reseal(&serial, &blob).map_err(|msg| StoreError::Reseal {
                    serial: serial.clone(),
                    msg,
                })?;
                tx.execute("UPDATE tokens SET secret = $2 WHERE id = $1", &[&id, &new])?;
            }
            for (name, value) in meta {
                tx.execute(
                    "INSERT INTO meta (name, value) VALUES ($1, $2)
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    &[name, value],
                )?;
            }
            Ok(found.len())
        })
    }

    fn backup_to(&self, _dest: &Path) -> StoreResult<()> {
        Err(backup_refused())
    }

    fn restore_from(&self, _src: &Path) -> StoreResult<()> {
        Err(backup_refused())
    }

    fn schema_version(&self) -> StoreResult<i64> {
        super::schema::version(&mut *self.pool.get()?)
    }

    /// PostgreSQL checks its pages itself (checksums, amcheck); what otpd can check is that
    /// the schema is the one it knows.
    fn integrity_check(&self) -> StoreResult<String> {
        let v = self.schema_version()?;
        let known = super::schema::MIGRATIONS.len() as i64;
        if v == known {
            Ok("ok".into())
        } else {
            Ok(format!("schema version {v}, this otpd knows {known}"))
        }
    }

    fn burn_totp_until(&self, now: i64) -> StoreResult<usize> {
        let mut c = self.pool.get()?;
        c.transaction(|tx| {
            let totp = tx.execute(
                "UPDATE tokens SET last_counter = GREATEST(last_counter, $1 / period)
                 WHERE kind = 'totp' AND period > 0",
                &[&now],
            )?;
            let motp = tx.execute(
                "UPDATE tokens SET last_counter = GREATEST(last_counter, $1 / 10)
                 WHERE kind = 'motp'",
                &[&now],
            )?;
            Ok(usize::try_from(totp + motp).unwrap_or(usize::MAX))
        })
    }

    fn clear_email_codes(&self) -> StoreResult<usize> {
        let n = self.pool.get()?.execute("DELETE FROM email_codes", &[])?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn look_alike_groups(&self) -> StoreResult<Vec<Vec<String>>> {
        let mut c = self.pool.get()?;
        let found = c.query(
            "SELECT a.skeleton, a.name FROM accounts a
             WHERE a.skeleton IN (SELECT skeleton FROM accounts
                                  GROUP BY skeleton HAVING count(*) > 1)
             ORDER BY a.skeleton, a.id",
            &[],
        )?;
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for r in &found {
            let skeleton: String = r.try_get(0)?;
            let name: String = r.try_get(1)?;
            match groups.last_mut() {
                Some((s, names)) if *s == skeleton => names.push(name),
                _ => groups.push((skeleton, vec![name])),
            }
        }
        Ok(groups.into_iter().map(|(_, names)| names).collect())
    }
}

fn at_line(line: usize, e: StoreError) -> StoreError {
    StoreError::Commit(format!("line {line}: {e}; nothing was imported"))
}
