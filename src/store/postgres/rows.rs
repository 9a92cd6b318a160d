//! Rows into the model's types. Every integer column is BIGINT; the model's narrower fields
//! are checked on the way in, so a bad value is an error, never a silent wrap.

use crate::model::{Account, AppPassword, AuditRecord, Token, TokenKind, TokenState};
use crate::store::{StoreError, StoreResult};
use crate::tokens::oath::Algorithm;
use postgres::Row;

/// Of `accounts a`, in the order `account` reads them.
pub(super) const ACCOUNT_COLS: &str = "a.id, a.name, a.level, a.pin_salt, a.pin_hash, \
    a.failures, a.last_failure, a.locked_until, a.created_at, a.familiar, a.unlocks";
/// How many columns `ACCOUNT_COLS` has: where a joined token row starts.
pub(super) const ACCOUNT_NCOLS: usize = 11;

pub(super) const TOKEN_COLS: &str = "t.id, t.serial, a.name, t.account_id, t.kind, t.state, \
    t.algorithm, t.digits, t.period, t.secret, t.last_counter, t.drift, t.label, t.created_at, \
    t.last_used_at, t.public_id, t.address";

pub(super) const AUDIT_COLS: &str =
    "ts_ms, \"user\", service, rhost, client, verdict, reason, serial";

fn narrow<T: TryFrom<i64>>(v: i64, what: &str) -> StoreResult<T> {
    T::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} {v} out of range")))
}

pub(super) fn account(r: &Row) -> StoreResult<Account> {
    let pin_hash: Option<Vec<u8>> = r.try_get(4)?;
    let familiar: String = r.try_get(9)?;
    Ok(Account {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        level: r.try_get(2)?,
        pin_salt: r.try_get(3)?,
        has_pin: pin_hash.is_some(),
        pin_hash,
        failures: narrow(r.try_get(5)?, "failures")?,
        last_failure: r.try_get(6)?,
        locked_until: r.try_get(7)?,
        created_at: r.try_get(8)?,
        familiar_sources: familiar
            .split('\n')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        unlocks: r.try_get(10)?,
    })
}

pub(super) fn token(r: &Row) -> StoreResult<Token> {
    token_at(r, 0)
}

/// A token whose `TOKEN_COLS` start at column `at`.
pub(super) fn token_at(r: &Row, at: usize) -> StoreResult<Token> {
    let kind: String = r.try_get(at + 4)?;
    let state: String = r.try_get(at + 5)?;
    let alg: String = r.try_get(at + 6)?;
    let unknown = |what: &str, v: &str| StoreError::Corrupt(format!("unknown {what} `{v}`"));
    Ok(Token {
        id: r.try_get(at)?,
        serial: r.try_get(at + 1)?,
        user: r.try_get(at + 2)?,
        account_id: r.try_get(at + 3)?,
        kind: TokenKind::parse(&kind).ok_or_else(|| unknown("token type", &kind))?,
        state: TokenState::parse(&state).ok_or_else(|| unknown("token state", &state))?,
        algorithm: Algorithm::parse(&alg).ok_or_else(|| unknown("algorithm", &alg))?,
        digits: narrow(r.try_get(at + 7)?, "digits")?,
        period: narrow(r.try_get(at + 8)?, "period")?,
        sealed_secret: r.try_get(at + 9)?,
        last_counter: r.try_get(at + 10)?,
        drift: r.try_get(at + 11)?,
        label: r.try_get(at + 12)?,
        created_at: r.try_get(at + 13)?,
        last_used_at: r.try_get(at + 14)?,
        public_id: r.try_get(at + 15)?,
        address: r.try_get(at + 16)?,
        opened: Default::default(),
    })
}

pub(super) fn audit(r: &Row) -> StoreResult<AuditRecord> {
    Ok(AuditRecord {
        ts_ms: r.try_get(0)?,
        user: r.try_get(1)?,
        service: r.try_get(2)?,
        rhost: r.try_get(3)?,
        client: r.try_get(4)?,
        verdict: r.try_get(5)?,
        reason: r.try_get(6)?,
        serial: r.try_get(7)?,
    })
}

pub(super) fn app_password(r: &Row) -> StoreResult<AppPassword> {
    let services: String = r.try_get(3)?;
    Ok(AppPassword {
        id: r.try_get(0)?,
        account_id: r.try_get(1)?,
        label: r.try_get(2)?,
        services: services
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        salt: r.try_get(4)?,
        hash: r.try_get(5)?,
        created_at: r.try_get(6)?,
        last_used_at: r.try_get(7)?,
        last_used_from: r.try_get(8)?,
    })
}
