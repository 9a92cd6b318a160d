//! `[store]`: which database holds the truth. SQLite (the default: one host, the file named
//! by the top-level `database` key) or PostgreSQL, shared by several otpd nodes.

use super::{invalid, ConfigError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub kind: StoreKind,
    /// PostgreSQL only: a libpq connection string, key=value (`host=db1,db2 port=5432
    /// dbname=otpd user=otpd target_session_attrs=read-write`) or a `postgresql://` URL.
    /// Never printed: it may hold a password.
    pub url: Option<String>,
    /// PostgreSQL only: PEM file of the CA(s) that signed the servers' certificates. Set, TLS
    /// is required (rustls, the server's name checked); unset, the url must not ask for TLS.
    pub ca_file: Option<PathBuf>,
    /// PostgreSQL only: connections for reads and admin writes (the writer has one more).
    pub connections: usize,
    #[serde(with = "super::duration")]
    pub connect_timeout: Duration,
    /// PostgreSQL only: the server's `statement_timeout` for otpd's sessions.
    #[serde(with = "super::duration")]
    pub statement_timeout: Duration,
    /// PostgreSQL only: run against a primary without a synchronous standby. A failover can
    /// then lose acknowledged counters, and a code already used becomes valid again.
    pub allow_async_replication: bool,
    /// This node's name in the audit; default: the host name.
    pub node_name: Option<String>,
    /// Accounts (with their tokens) the daemon keeps in memory, kept true by the database's
    /// change announcements (PostgreSQL: NOTIFY; SQLite: the `changes` table its triggers
    /// fill); 0 reads every login from the database. Unset: [`StoreConfig::cache_accounts`].
    pub cache_accounts: Option<usize>,
}

/// Without the url, which may hold a password.
impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("kind", &self.kind)
            .field("url", &self.url.as_ref().map(|_| "(set)"))
            .field("ca_file", &self.ca_file)
            .field("connections", &self.connections)
            .field("connect_timeout", &self.connect_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("allow_async_replication", &self.allow_async_replication)
            .field("node_name", &self.node_name)
            .field("cache_accounts", &self.cache_accounts)
            .finish()
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            kind: StoreKind::Sqlite,
            url: None,
            ca_file: None,
            connections: 8,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
            allow_async_replication: false,
            node_name: None,
            cache_accounts: None,
        }
    }
}

/// About 1 KiB each: ten million would be 10 GiB.
const MAX_CACHE_ACCOUNTS: usize = 10_000_000;
/// The default on SQLite: one host's daemon, whose whole memory (with 100,000 accounts in
/// the database) stays under 64 MiB with it (issue 19; docs/performance.md). On PostgreSQL a
/// miss is a round trip, so a node keeps more.
const SQLITE_CACHE_ACCOUNTS: usize = 16_384;
const POSTGRES_CACHE_ACCOUNTS: usize = 100_000;

/// Longest node name: it is written with every audit record.
const MAX_NODE_NAME: usize = 64;

impl StoreConfig {
    /// How many accounts the daemon's cache holds: as set, or the store's default.
    pub fn cache_accounts(&self) -> usize {
        self.cache_accounts.unwrap_or(match self.kind {
            StoreKind::Sqlite => SQLITE_CACHE_ACCOUNTS,
            StoreKind::Postgres => POSTGRES_CACHE_ACCOUNTS,
        })
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.cache_accounts() > MAX_CACHE_ACCOUNTS {
            return Err(invalid(
                "store.cache_accounts",
                format!("allowed: 0 (off) to {MAX_CACHE_ACCOUNTS}"),
            ));
        }
        if let Some(n) = &self.node_name {
            if n.is_empty()
                || n.len() > MAX_NODE_NAME
                || n.chars().any(|c| c.is_control() || c.is_whitespace())
            {
                return Err(invalid(
                    "store.node_name",
                    format!("1 to {MAX_NODE_NAME} characters, no spaces or control characters"),
                ));
            }
        }
        match self.kind {
            StoreKind::Sqlite => {
                for (key, set) in [
                    ("store.url", self.url.is_some()),
                    ("store.ca_file", self.ca_file.is_some()),
                ] {
                    if set {
                        return Err(invalid(
                            key,
                            "only for kind = \"postgres\"; SQLite uses the top-level `database` \
                             key",
                        ));
                    }
                }
                Ok(())
            }
            StoreKind::Postgres => self.validate_postgres(),
        }
    }

    fn validate_postgres(&self) -> Result<(), ConfigError> {
        let pg = self.postgres_config()?;
        if pg.get_hosts().is_empty() {
            return Err(invalid(
                "store.url",
                "names no host (host=... or postgresql://HOST/...)",
            ));
        }
        if pg.get_dbname().is_none() {
            return Err(invalid("store.url", "names no database (dbname=...)"));
        }
        let wants_tls = pg.get_ssl_mode() == tokio_postgres::config::SslMode::Require;
        if wants_tls && self.ca_file.is_none() {
            return Err(invalid(
                "store.url",
                "asks for TLS (sslmode=require) but store.ca_file is not set: name the PEM \
                 file of the CA that signed the servers' certificates",
            ));
        }
        if self.ca_file.is_some() && pg.get_ssl_mode() == tokio_postgres::config::SslMode::Disable {
            return Err(invalid(
                "store.ca_file",
                "is set but the url says sslmode=disable; remove one of them",
            ));
        }
        if !(1..=256).contains(&self.connections) {
            return Err(invalid("store.connections", "allowed: 1 to 256"));
        }
        if self.connect_timeout < Duration::from_millis(100)
            || self.connect_timeout > Duration::from_secs(300)
        {
            return Err(invalid("store.connect_timeout", "allowed: 100ms to 5m"));
        }
        if self.statement_timeout < Duration::from_millis(100)
            || self.statement_timeout > Duration::from_secs(3600)
        {
            return Err(invalid("store.statement_timeout", "allowed: 100ms to 1h"));
        }
        Ok(())
    }

    /// The url parsed. The parser's own message is kept out: it can quote the text, which may
    /// hold a password.
    pub fn postgres_config(&self) -> Result<tokio_postgres::Config, ConfigError> {
        let url = self.url.as_deref().unwrap_or("");
        if url.trim().is_empty() {
            return Err(invalid(
                "store.url",
                "needed for kind = \"postgres\": a libpq connection string such as \
                 \"host=db1,db2 dbname=otpd user=otpd target_session_attrs=read-write\"",
            ));
        }
        tokio_postgres::Config::from_str(url).map_err(|_| {
            invalid(
                "store.url",
                "not a libpq connection string (key=value pairs such as `host=db1,db2 \
                 dbname=otpd user=otpd`, or postgresql://USER@HOST1,HOST2/DBNAME?...)",
            )
        })
    }

    /// The configured node name, else the host name, else "otpd".
    pub fn node(&self) -> String {
        if let Some(n) = &self.node_name {
            return n.clone();
        }
        let mut buf = [0u8; 256];
        // SAFETY: the buffer is valid for its length; gethostname writes at most that much.
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        if rc == 0 {
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            let name = String::from_utf8_lossy(&buf[..end]).into_owned();
            if !name.is_empty() {
                return name.chars().take(MAX_NODE_NAME).collect();
            }
        }
        "otpd".into()
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn err(text: &str) -> String {
        match Config::from_toml_str(text) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn sqlite_is_the_default_and_postgres_needs_a_valid_url() {
        let c = Config::from_toml_str("").expect("defaults");
        assert_eq!(c.store.kind, super::StoreKind::Sqlite);
        let e = err("[store]\nkind = \"postgres\"\n");
        assert!(e.contains("store.url") && e.contains("needed"), "{e}");
        let e = err("[store]\nkind = \"postgres\"\nurl = \"host=db password=s3cret x\"\n");
        assert!(e.contains("store.url") && !e.contains("s3cret"), "{e}");
        let c = Config::from_toml_str(
            "[store]\nkind = \"postgres\"\nurl = \"host=db dbname=otpd password=s3cret\"\n",
        )
        .expect("valid");
        assert!(!format!("{c:?}").contains("s3cret"));
        let e = err("[store]\nkind = \"postgres\"\nurl = \"host=db\"\n");
        assert!(e.contains("no database"), "{e}");
        let e = err("[store]\nkind = \"mysql\"\n");
        assert!(e.contains("mysql"), "{e}");
        let e = err("[store]\nurl = \"host=db dbname=otpd\"\n");
        assert!(e.contains("only for kind"), "{e}");
        let e =
            err("[store]\nkind = \"postgres\"\nurl = \"host=db dbname=otpd sslmode=require\"\n");
        assert!(e.contains("ca_file"), "{e}");
        let e =
            err("[store]\nkind = \"postgres\"\nurl = \"host=db dbname=otpd\"\nconnections = 0\n");
        assert!(e.contains("store.connections"), "{e}");
        let e = err("[store]\nnode_name = \"a b\"\n");
        assert!(e.contains("store.node_name"), "{e}");
        let c = Config::from_toml_str(
            "[store]\nkind = \"postgres\"\nurl = \"host=db1,db2 port=5432,5433 dbname=otpd \
             target_session_attrs=read-write\"\nnode_name = \"n1\"\n",
        )
        .expect("valid");
        assert_eq!(c.store.node(), "n1");
        assert_eq!(c.store.postgres_config().expect("url").get_hosts().len(), 2);
    }

    #[test]
    fn the_account_cache_defaults_by_store_and_is_bounded_on_both() {
        let c = Config::from_toml_str("").expect("defaults");
        assert_eq!(c.store.cache_accounts(), 16_384);
        let c = Config::from_toml_str("[store]\ncache_accounts = 0\n").expect("off");
        assert_eq!(c.store.cache_accounts(), 0);
        let pg = "[store]\nkind = \"postgres\"\nurl = \"host=db dbname=otpd\"\n";
        let c = Config::from_toml_str(pg).expect("postgres");
        assert_eq!(c.store.cache_accounts(), 100_000);
        for text in [
            "[store]\ncache_accounts = 10000001\n".to_string(),
            format!("{pg}cache_accounts = 10000001\n"),
        ] {
            assert!(err(&text).contains("store.cache_accounts"), "{text}");
        }
        assert!(err("[store]\ncache_accounts = -1\n").contains("cache_accounts"));
    }
}
