//! `otpd store copy`: moves an installation from its SQLite file to PostgreSQL, once, before
//! the nodes start on PostgreSQL.
//!
//! What travels is every table of the SQLite database, row for row and column for column:
//! accounts (with failure counts and locks), tokens (secrets still sealed: the key file is
//! not in the database and travels on its own), backup codes, e-mailed codes and their send
//! times, app passwords, trusted devices and API keys (keyed hashes only: the hash key
//! travels in the meta values and the key file), the meta values (the sealed hash key and the key check, without
//! which no PIN would verify) and the audit. The copy works on the tables as they are rather
//! than through the store traits, so it needs nothing from the stores but their schemas:
//!
//! - `source.rs` reads the SQLite tables (one snapshot, parents before children);
//! - `target.rs` writes into PostgreSQL (`COPY ... BINARY`, types checked per column).
//!
//! All of it is one PostgreSQL transaction: the target is locked and must be empty, the
//! counts of every table must agree between the source's snapshot, the rows written and the
//! target, and only then is it committed; any failure leaves the target as it was.

mod source;
mod target;

use crate::config::StoreConfig;
use crate::store::StoreError;
use std::path::Path;

/// One value of a source row, as SQLite stores it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("source {path}: {msg}")]
    Source { path: String, msg: String },
    #[error("target: {0}")]
    Target(String),
    #[error(
        "the target database is not empty ({table} holds {rows} rows; an otpd node or \
         `otpd init` may have written to it): `otpd store copy` only writes into an empty \
         database, so that nothing is mixed or overwritten. Copy into a new database \
         (createdb), or drop this one's otpd tables if you mean to start over"
    )]
    NotEmpty { table: String, rows: i64 },
    #[error("{column}: {msg}; nothing was copied")]
    Misfit { column: String, msg: String },
    #[error(
        "table {table} holds {rows} rows but the target has no such table: this otpd's \
         PostgreSQL schema does not know it, nothing was copied"
    )]
    NoTable { table: String, rows: i64 },
    #[error(
        "column {column} holds values in {rows} rows but the target has no such column: this \
         otpd's PostgreSQL schema does not know it, nothing was copied"
    )]
    NoColumn { column: String, rows: i64 },
    #[error(
        "{table}: {source_rows} rows in the source, {written} written, {target_rows} in the \
         target; nothing was committed"
    )]
    Count {
        table: String,
        source_rows: i64,
        written: u64,
        target_rows: i64,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What was copied: each table with its rows (equal in source and target), in copy order.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub tables: Vec<(String, i64)>,
    /// Empty source tables the target has no place for (nothing lost).
    pub skipped: Vec<String>,
}

/// Copies the SQLite database at `from` into the PostgreSQL database `to` describes (its url
/// and TLS settings), creating the schema there first if it has none.
pub fn copy(from: &Path, to: &StoreConfig) -> Result<Report, CopyError> {
    let source = source::Source::open(from)?;
    let tables = source.tables()?;
    target::in_transaction(to, |tx| copy_tables(&source, &tables, tx))
}

fn copy_tables(
    source: &source::Source,
    tables: &[source::Table],
    tx: &mut postgres::Transaction<'_>,
) -> Result<Report, CopyError> {
    let mut report = Report::default();
    let mut plan = Vec::new();
    for t in tables {
        let Some(have) = target::columns(tx, &t.name)? else {
            if t.rows > 0 {
                return Err(CopyError::NoTable {
                    table: t.name.clone(),
                    rows: t.rows,
                });
            }
            report.skipped.push(t.name.clone());
            continue;
        };
        let mut columns = Vec::new();
        for c in &t.columns {
            match have.iter().find(|h| &h.name == c) {
                Some(h) => columns.push(h.clone()),
                None => {
                    let rows = source.non_null(&t.name, c)?;
                    if rows > 0 {
                        return Err(CopyError::NoColumn {
                            column: format!("{}.{c}", t.name),
                            rows,
                        });
                    }
                }
            }
        }
        plan.push((t, columns));
    }
    let names: Vec<String> = plan.iter().map(|(t, _)| t.name.clone()).collect();
    target::lock_and_check_empty(tx, &names)?;
    for (t, columns) in &plan {
        let list: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
        let written = target::copy_in(tx, &t.name, columns, |each| {
            source.rows(&t.name, &list, each)
        })?;
        let now = target::count(tx, &t.name)?;
        if written != t.rows as u64 || now != t.rows {
            return Err(CopyError::Count {
                table: t.name.clone(),
                source_rows: t.rows,
                written,
                target_rows: now,
            });
        }
        if list.iter().any(|c| c == "id") {
            target::advance_sequence(tx, &t.name, "id", t.sequence)?;
        }
        report.tables.push((t.name.clone(), t.rows));
    }
    Ok(report)
}
