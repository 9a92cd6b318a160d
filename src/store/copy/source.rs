//! The SQLite side of `otpd store copy`: every table of the database with its columns, rows
//! and AUTOINCREMENT high-water mark, parents before children, all read in one snapshot.

use super::{CopyError, Value};
use crate::store::sqlite::schema::MIGRATIONS;
use crate::store::SqliteStore;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What only the SQLite daemon's account cache uses (`sqlite/feed.rs`): its change rows and
/// the count of its own advances. PostgreSQL announces changes its own way, so these stay.
const CACHE_TABLES: [&str; 1] = ["changes"];
const CACHE_COLUMNS: [(&str, &str); 1] = [("tokens", "advances")];

/// One table of the source as the copy sees it.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    pub(crate) name: String,
    pub(crate) columns: Vec<String>,
    pub(crate) rows: i64,
    /// The highest id AUTOINCREMENT ever handed out (`sqlite_sequence`): ids of deleted rows
    /// above the current maximum must not come back in the target either.
    pub(crate) sequence: Option<i64>,
}

/// The source database, opened read-only with one read transaction for the whole copy: the
/// counts and the rows are of the same moment even if a daemon still writes to the file.
pub(crate) struct Source {
    conn: Connection,
    path: PathBuf,
}

impl Source {
    /// Opens an existing database. One from an older otpd is first brought to this build's
    /// schema (as every otpd command does when it opens it), because the target's schema is
    /// this build's; one from a newer otpd is refused.
    pub(crate) fn open(path: &Path) -> Result<Source, CopyError> {
        let bad = |msg: String| CopyError::Source {
            path: path.display().to_string(),
            msg,
        };
        if !path.is_file() {
            return Err(bad(
                "no such database file (name the SQLite database, e.g. sqlite:/var/lib/otpd/otpd.db)"
                    .into(),
            ));
        }
        let version = Self::read_only(path)?
            .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
            .map_err(|e| bad(format!("not an otpd database: {e}")))?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(bad(format!(
                "its schema version {version} is newer than this otpd knows ({known}); copy with \
                 the otpd that wrote it"
            )));
        }
        if version == 0 {
            return Err(bad("not an otpd database (schema version 0)".into()));
        }
        if version < known {
            // Migrates and closes again (its writer thread ends on drop).
            drop(SqliteStore::open(path)?);
        }
        let conn = Self::read_only(path)?;
        // One snapshot from the first read on (WAL): the transaction stays open until drop.
        conn.execute_batch("BEGIN DEFERRED")
            .map_err(|e| bad(e.to_string()))?;
        Ok(Source {
            conn,
            path: path.to_path_buf(),
        })
    }

    fn read_only(path: &Path) -> Result<Connection, CopyError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| CopyError::Source {
            path: path.display().to_string(),
            msg: e.to_string(),
        })?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| CopyError::Source {
                path: path.display().to_string(),
                msg: e.to_string(),
            })?;
        Ok(conn)
    }

    fn err(&self, e: rusqlite::Error) -> CopyError {
        CopyError::Source {
            path: self.path.display().to_string(),
            msg: e.to_string(),
        }
    }

    /// Every table but SQLite's own, parents before the tables whose foreign keys name them
    /// (so the target's foreign keys hold while rows arrive), ties in name order.
    pub(crate) fn tables(&self) -> Result<Vec<Table>, CopyError> {
        let names: Vec<String> = self
            .conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table' \
                 AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
            )
            .and_then(|mut st| {
                st.query_map([], |r| r.get::<_, String>(0))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(|e| self.err(e))?;
        let names: Vec<String> = names
            .into_iter()
            .filter(|n| !CACHE_TABLES.contains(&n.as_str()))
            .collect();
        let mut parents: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for name in &names {
            let p: Vec<String> = self
                .conn
                .prepare("SELECT \"table\" FROM pragma_foreign_key_list(?1)")
                .and_then(|mut st| {
                    st.query_map([name], |r| r.get::<_, String>(0))?
                        .collect::<Result<Vec<_>, _>>()
                })
                .map_err(|e| self.err(e))?;
            parents.insert(
                name.clone(),
                p.into_iter()
                    .filter(|t| t != name && names.contains(t))
                    .collect(),
            );
        }
        let mut order: Vec<String> = Vec::new();
        while order.len() < names.len() {
            let next = names.iter().find(|n| {
                !order.contains(n)
                    && parents
                        .get(*n)
                        .is_none_or(|ps| ps.iter().all(|p| order.contains(p)))
            });
            match next {
                Some(n) => order.push(n.clone()),
                None => {
                    return Err(CopyError::Source {
                        path: self.path.display().to_string(),
                        msg: "its tables' foreign keys form a cycle".into(),
                    })
                }
            }
        }
        let has_sequence = self
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_sequence'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(|e| self.err(e))?
            > 0;
        order
            .into_iter()
            .map(|name| {
                let columns: Vec<String> = self
                    .conn
                    .prepare("SELECT name FROM pragma_table_info(?1) ORDER BY cid")
                    .and_then(|mut st| {
                        st.query_map([&name], |r| r.get::<_, String>(0))?
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .map_err(|e| self.err(e))?
                    .into_iter()
                    .filter(|c| !CACHE_COLUMNS.contains(&(name.as_str(), c.as_str())))
                    .collect();
                let rows = self
                    .conn
                    .query_row(&format!("SELECT count(*) FROM {}", quote(&name)), [], |r| {
                        r.get::<_, i64>(0)
                    })
                    .map_err(|e| self.err(e))?;
                let sequence = if has_sequence {
                    self.conn
                        .query_row(
                            "SELECT seq FROM sqlite_sequence WHERE name = ?1",
                            [&name],
                            |r| r.get::<_, i64>(0),
                        )
                        .map(Some)
                        .or_else(|e| match e {
                            rusqlite::Error::QueryReturnedNoRows => Ok(None),
                            e => Err(self.err(e)),
                        })?
                } else {
                    None
                };
                Ok(Table {
                    name,
                    columns,
                    rows,
                    sequence,
                })
            })
            .collect()
    }

    /// Rows of `table` in which `column` is not NULL (a column the target has no place for
    /// may only be dropped when it holds nothing).
    pub(crate) fn non_null(&self, table: &str, column: &str) -> Result<i64, CopyError> {
        self.conn
            .query_row(
                &format!(
                    "SELECT count(*) FROM {} WHERE {} IS NOT NULL",
                    quote(table),
                    quote(column)
                ),
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    /// Hands every row of `table` (the named columns, in id order) to `each`.
    pub(crate) fn rows(
        &self,
        table: &str,
        columns: &[String],
        mut each: impl FnMut(Vec<Value>) -> Result<(), CopyError>,
    ) -> Result<(), CopyError> {
        let list: Vec<String> = columns.iter().map(|c| quote(c)).collect();
        let sql = format!(
            "SELECT {} FROM {} ORDER BY rowid",
            list.join(", "),
            quote(table)
        );
        let mut st = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let mut rows = st.query([]).map_err(|e| self.err(e))?;
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            let mut values = Vec::with_capacity(columns.len());
            for (i, column) in columns.iter().enumerate() {
                values.push(match row.get_ref(i).map_err(|e| self.err(e))? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(n) => Value::Int(n),
                    ValueRef::Real(f) => Value::Real(f),
                    ValueRef::Text(t) => match std::str::from_utf8(t) {
                        Ok(t) => Value::Text(t.to_string()),
                        Err(_) => {
                            return Err(CopyError::Source {
                                path: self.path.display().to_string(),
                                msg: format!("{table}.{column} holds text that is not UTF-8"),
                            })
                        }
                    },
                    ValueRef::Blob(b) => Value::Blob(b.to_vec()),
                });
            }
            each(values)?;
        }
        Ok(())
    }
}

/// An SQL identifier in double quotes (`user` is a keyword in PostgreSQL).
pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
