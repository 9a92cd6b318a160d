//! The PostgreSQL side of `otpd store copy`: the target's columns and their types, the check
//! that the target is empty, the rows streamed in with `COPY ... FROM STDIN BINARY`, and the
//! identity sequences moved past the copied ids.

use super::source::quote;
use super::{CopyError, Value};
use crate::config::StoreConfig;
use crate::store::postgres::connect::PgSettings;
use crate::store::postgres::pool::PgPool;
use crate::store::postgres::schema;
use crate::store::StoreError;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};
use postgres::Transaction;

/// Connects as the nodes do (url, TLS, session settings), brings the schema up to date (an
/// empty database gets it here), and runs `work` in one transaction that commits only when
/// it succeeds, and counts only when the synchronous standby has it too (where there is one).
pub(crate) fn in_transaction<T>(
    to: &StoreConfig,
    work: impl FnOnce(&mut Transaction<'_>) -> Result<T, CopyError>,
) -> Result<T, CopyError> {
    let pool = PgPool::new(PgSettings::from_config(to)?);
    let mut conn = pool.get()?;
    schema::migrate(&mut conn)?;
    // The store's transaction (with its check of the commit's replication) speaks
    // StoreError: the copy's own error waits here and comes out as it was.
    let mut failed: Option<CopyError> = None;
    let done = conn.transaction(|tx| {
        work(tx).map_err(|e| {
            failed = Some(e);
            StoreError::Refused("the copy failed".into())
        })
    });
    match (done, failed) {
        (Ok(v), _) => Ok(v),
        (Err(_), Some(e)) => Err(e),
        (Err(e), None) => Err(CopyError::Store(e)),
    }
}

/// A column of a target table.
#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub(crate) name: String,
    pub(crate) ty: Type,
}

fn db(what: &str, e: postgres::Error) -> CopyError {
    CopyError::Target(format!("{what}: {}", describe(&e)))
}

/// The server's own message where there is one (the client's Display says only "db error").
pub(crate) fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => match d.detail() {
            Some(detail) => format!("{} ({detail})", d.message()),
            None => d.message().to_string(),
        },
        None => e.to_string(),
    }
}

/// The columns of `table` in the target's current schema, in their order; `None` when the
/// table does not exist there.
pub(crate) fn columns(
    tx: &mut Transaction<'_>,
    table: &str,
) -> Result<Option<Vec<Column>>, CopyError> {
    let rows = tx
        .query(
            "SELECT a.attname::text, a.atttypid
               FROM pg_attribute a
              WHERE a.attrelid = to_regclass(current_schema() || '.' || quote_ident($1))
                AND a.attnum > 0 AND NOT a.attisdropped
              ORDER BY a.attnum",
            &[&table],
        )
        .map_err(|e| db(&format!("reading the columns of {table}"), e))?;
    if rows.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let name: String = r.get(0);
        let oid: u32 = r.get(1);
        let ty = Type::from_oid(oid).ok_or_else(|| {
            CopyError::Target(format!("{table}.{name} has a type this copy does not know"))
        })?;
        out.push(Column { name, ty });
    }
    Ok(Some(out))
}

/// Locks the tables against writers (a node started too early) until the copy commits, and
/// fails naming the first one that holds a row: the copy never mixes with existing data.
pub(crate) fn lock_and_check_empty(
    tx: &mut Transaction<'_>,
    tables: &[String],
) -> Result<(), CopyError> {
    if tables.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = tables.iter().map(|t| quote(t)).collect();
    tx.batch_execute(&format!("LOCK TABLE {} IN EXCLUSIVE MODE", list.join(", ")))
        .map_err(|e| db("locking the target's tables", e))?;
    for t in tables {
        let n: i64 = tx
            .query_one(&format!("SELECT count(*) FROM {}", quote(t)), &[])
            .map_err(|e| db(&format!("counting {t}"), e))?
            .get(0);
        if n > 0 {
            return Err(CopyError::NotEmpty {
                table: t.clone(),
                rows: n,
            });
        }
    }
    Ok(())
}

/// Streams rows into `table` (the given columns): returns the rows written.
pub(crate) fn copy_in(
    tx: &mut Transaction<'_>,
    table: &str,
    columns: &[Column],
    fill: impl FnOnce(&mut dyn FnMut(Vec<Value>) -> Result<(), CopyError>) -> Result<(), CopyError>,
) -> Result<u64, CopyError> {
    let list: Vec<String> = columns.iter().map(|c| quote(&c.name)).collect();
    let sink = tx
        .copy_in(&format!(
            "COPY {} ({}) FROM STDIN BINARY",
            quote(table),
            list.join(", ")
        ))
        .map_err(|e| db(&format!("copying into {table}"), e))?;
    let types: Vec<Type> = columns.iter().map(|c| c.ty.clone()).collect();
    let mut writer = BinaryCopyInWriter::new(sink, &types);
    fill(&mut |values: Vec<Value>| {
        let params: Vec<Param> = values
            .into_iter()
            .zip(columns)
            .map(|(v, c)| convert(v, &c.ty, table, &c.name))
            .collect::<Result<_, _>>()?;
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref()).collect();
        writer
            .write(&refs)
            .map_err(|e| db(&format!("copying into {table}"), e))
    })?;
    writer
        .finish()
        .map_err(|e| db(&format!("copying into {table}"), e))
}

/// Rows in `table` now (inside the copy's transaction).
pub(crate) fn count(tx: &mut Transaction<'_>, table: &str) -> Result<i64, CopyError> {
    Ok(tx
        .query_one(&format!("SELECT count(*) FROM {}", quote(table)), &[])
        .map_err(|e| db(&format!("counting {table}"), e))?
        .get(0))
}

/// Moves the identity (or serial) sequence of `table.column`, if it has one, to the larger of
/// the highest copied id and the source's AUTOINCREMENT mark, so that new rows get new ids
/// and an id once handed out never comes back.
pub(crate) fn advance_sequence(
    tx: &mut Transaction<'_>,
    table: &str,
    column: &str,
    at_least: Option<i64>,
) -> Result<(), CopyError> {
    let seq: Option<String> = tx
        .query_one(
            "SELECT pg_get_serial_sequence(quote_ident($1), $2)",
            &[&table, &column],
        )
        .map_err(|e| db(&format!("the sequence of {table}.{column}"), e))?
        .get(0);
    let Some(seq) = seq else {
        return Ok(());
    };
    let max: Option<i64> = tx
        .query_one(
            &format!(
                "SELECT max({})::bigint FROM {}",
                quote(column),
                quote(table)
            ),
            &[],
        )
        .map_err(|e| db(&format!("the highest {table}.{column}"), e))?
        .get(0);
    let top = max.into_iter().chain(at_least).max();
    if let Some(top) = top.filter(|t| *t >= 1) {
        tx.execute(
            "SELECT setval(CAST($1::text AS regclass), $2, true)",
            &[&seq, &top],
        )
        .map_err(|e| db(&format!("moving the sequence of {table}.{column}"), e))?;
    }
    Ok(())
}

/// One value in the type of its target column. SQLite stores loosely (an integer column may
/// hold any integer; a flag is 0 or 1); what does not fit is an error naming the column.
type Param = Box<dyn ToSql + Sync>;

fn convert(v: Value, ty: &Type, table: &str, column: &str) -> Result<Param, CopyError> {
    let misfit = |what: &str| CopyError::Misfit {
        column: format!("{table}.{column}"),
        msg: format!("{what} does not fit the target's type {ty}"),
    };
    Ok(match (v, ty) {
        // A NULL of the column's own type: binary COPY checks each value's type.
        (Value::Null, t) if *t == Type::INT8 => Box::new(None::<i64>),
        (Value::Null, t) if *t == Type::INT4 => Box::new(None::<i32>),
        (Value::Null, t) if *t == Type::INT2 => Box::new(None::<i16>),
        (Value::Null, t) if *t == Type::BOOL => Box::new(None::<bool>),
        (Value::Null, t) if *t == Type::FLOAT8 => Box::new(None::<f64>),
        (Value::Null, t) if *t == Type::TEXT || *t == Type::VARCHAR => Box::new(None::<String>),
        (Value::Null, t) if *t == Type::BYTEA => Box::new(None::<Vec<u8>>),
        (Value::Int(n), t) if *t == Type::INT8 => Box::new(n),
        (Value::Int(n), t) if *t == Type::INT4 => {
            Box::new(i32::try_from(n).map_err(|_| misfit("an integer out of range"))?)
        }
        (Value::Int(n), t) if *t == Type::INT2 => {
            Box::new(i16::try_from(n).map_err(|_| misfit("an integer out of range"))?)
        }
        (Value::Int(n), t) if *t == Type::BOOL => match n {
            0 => Box::new(false),
            1 => Box::new(true),
            _ => return Err(misfit("an integer other than 0 or 1")),
        },
        (Value::Int(n), t) if *t == Type::FLOAT8 => Box::new(n as f64),
        (Value::Real(f), t) if *t == Type::FLOAT8 => Box::new(f),
        (Value::Text(s), t) if *t == Type::TEXT || *t == Type::VARCHAR => Box::new(s),
        (Value::Blob(b), t) if *t == Type::BYTEA => Box::new(b),
        // A value written as text into a blob column: its bytes.
        (Value::Text(s), t) if *t == Type::BYTEA => Box::new(s.into_bytes()),
        (Value::Null, _) => return Err(misfit("NULL")),
        (Value::Int(_), _) => return Err(misfit("an integer")),
        (Value::Real(_), _) => return Err(misfit("a real number")),
        (Value::Text(_), _) => return Err(misfit("text")),
        (Value::Blob(_), _) => return Err(misfit("a blob")),
    })
}
