//! How otpd connects to PostgreSQL: the parsed url, TLS through rustls on ring, the session
//! settings every connection gets, and the watch on notices that tells a commit whose wait
//! for the synchronous standby was cancelled (it comes back as success, with a WARNING).

use crate::config::StoreConfig;
use crate::store::{StoreError, StoreResult};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::config::SslMode;
use tokio_postgres::error::DbError;
use tokio_postgres_rustls::MakeRustlsConnect;

/// What every connection of this store is opened with.
#[derive(Clone)]
pub(crate) struct PgSettings {
    pub(crate) config: tokio_postgres::Config,
    tls: Option<MakeRustlsConnect>,
    pub(crate) statement_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) node: String,
    pub(crate) allow_async_replication: bool,
    pub(crate) connections: usize,
}

/// Counts the notices saying a commit's wait for the synchronous standby was cancelled: such
/// a commit is only local, and a failover would lose it.
#[derive(Clone, Default)]
pub(crate) struct NoticeWatch(Arc<AtomicU64>);

impl NoticeWatch {
    pub(crate) fn count(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    pub(crate) fn see(&self, notice: &DbError) {
        if is_sync_wait_cancelled(notice) {
            self.0.fetch_add(1, Ordering::SeqCst);
            tracing::error!(
                "PostgreSQL: {} ({}); the commit counts as failed",
                notice.message(),
                notice.detail().unwrap_or("")
            );
        }
    }
}

/// The server's WARNING "canceling wait for synchronous replication ..." (after
/// pg_cancel_backend, or a statement cancelled by its client). It carries the generic warning
/// code 01000, so the English text is checked too; a generic WARNING during a commit is taken
/// as the same: failing a batch is safe, accepting a local-only commit is not.
fn is_sync_wait_cancelled(n: &DbError) -> bool {
    let warning = n.severity() == "WARNING"
        || n.parsed_severity()
            .is_some_and(|s| matches!(s, tokio_postgres::error::Severity::Warning));
    warning
        && (n.message().contains("synchronous replication")
            || n.code() == &tokio_postgres::error::SqlState::WARNING)
}

/// An idle session is probed after this long without traffic...
const KEEPALIVE_IDLE: Duration = Duration::from_secs(15);
/// ...then this often...
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// ...and given up after this many unanswered probes (about 30 s in all).
const KEEPALIVE_RETRIES: u32 = 3;

impl PgSettings {
    pub(crate) fn from_config(c: &StoreConfig) -> StoreResult<PgSettings> {
        let mut config = c
            .postgres_config()
            .map_err(|e| StoreError::Refused(e.to_string()))?;
        config.connect_timeout(c.connect_timeout);
        // A network that drops packets silently (a partition, a dead switch) sends no reset:
        // without these a read on an established session waits for TCP's retransmission
        // limit, about 15 minutes on Linux, holding its login and its thread. Data left
        // unacknowledged for as long as a statement may run means the session is gone; an
        // idle session is probed, so a dead one is dropped before a login picks it. What the
        // url sets itself (`tcp_user_timeout`, `keepalives_*`) stays.
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(c.statement_timeout);
        }
        if config.get_keepalives_interval().is_none() && config.get_keepalives_retries().is_none() {
            config.keepalives_idle(config.get_keepalives_idle().min(KEEPALIVE_IDLE));
            config.keepalives_interval(KEEPALIVE_INTERVAL);
            config.keepalives_retries(KEEPALIVE_RETRIES);
        }
        if config.get_application_name().is_none() {
            config.application_name(format!("otpd@{}", c.node()));
        }
        let tls = match &c.ca_file {
            Some(path) => {
                // A CA named means TLS is required: a server that offers none is refused.
                config.ssl_mode(SslMode::Require);
                Some(rustls_connector(path)?)
            }
            None => None,
        };
        Ok(PgSettings {
            config,
            tls,
            statement_timeout: c.statement_timeout,
            connect_timeout: c.connect_timeout,
            node: c.node(),
            allow_async_replication: c.allow_async_replication,
            connections: c.connections,
        })
    }

    /// SQL run first on every session: the statement timeout, and commits that wait for the
    /// synchronous standby (unless the server already asks for more, `remote_apply`).
    pub(crate) fn session_sql(&self) -> String {
        format!(
            "SET statement_timeout = {ms};
             SET lock_timeout = {ms};
             SET default_transaction_isolation = 'read committed';
             DO $$ BEGIN
               IF current_setting('synchronous_commit') NOT IN ('on', 'remote_apply') THEN
                 SET synchronous_commit = on;
               END IF;
             END $$;",
            ms = self.statement_timeout.as_millis()
        )
    }

    /// Asks the server to cancel what `client`'s session is running: a commit that waits for
    /// a synchronous standby ends (locally committed, with the WARNING) and lets go of its
    /// row locks, which other nodes' batches would otherwise wait for.
    pub(crate) async fn cancel(&self, client: &tokio_postgres::Client) {
        let token = client.cancel_token();
        let sent = tokio::time::timeout(self.connect_timeout, async {
            match &self.tls {
                Some(tls) => token.cancel_query(tls.clone()).await,
                None => token.cancel_query(tokio_postgres::NoTls).await,
            }
        })
        .await;
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("PostgreSQL: cancelling a late commit failed: {e}"),
            Err(_) => tracing::warn!("PostgreSQL: cancelling a late commit timed out"),
        }
    }

    /// A synchronous connection (for the pool) and its notice watch.
    pub(crate) fn connect_sync(&self) -> StoreResult<(postgres::Client, NoticeWatch)> {
        let watch = NoticeWatch::default();
        let w = watch.clone();
        let mut config = postgres::Config::from(self.config.clone());
        config.notice_callback(move |n| w.see(&n));
        let mut client = match &self.tls {
            Some(tls) => config.connect(tls.clone()),
            None => config.connect(tokio_postgres::NoTls),
        }
        .map_err(|e| connect_error(&self.config, e))?;
        client.batch_execute(&self.session_sql())?;
        Ok((client, watch))
    }

    /// An asynchronous connection (for the writer), driven by a task on the current runtime
    /// that counts the notices it sees.
    pub(crate) async fn connect_async(&self) -> StoreResult<(tokio_postgres::Client, NoticeWatch)> {
        let watch = NoticeWatch::default();
        let client = match &self.tls {
            Some(tls) => {
                let (client, conn) = self
                    .config
                    .connect(tls.clone())
                    .await
                    .map_err(|e| connect_error(&self.config, e))?;
                tokio::spawn(drive(conn, watch.clone()));
                client
            }
            None => {
                let (client, conn) = self
                    .config
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map_err(|e| connect_error(&self.config, e))?;
                tokio::spawn(drive(conn, watch.clone()));
                client
            }
        };
        client.batch_execute(&self.session_sql()).await?;
        Ok((client, watch))
    }
}

/// Reads the connection's messages: answers go to their requests, notices to the watch. A
/// notice is seen here before the answer after it reaches its request, so a commit's
/// cancelled-wait WARNING is counted before the commit returns.
async fn drive<S, T>(mut conn: tokio_postgres::Connection<S, T>, watch: NoticeWatch)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
            Some(Ok(tokio_postgres::AsyncMessage::Notice(n))) => watch.see(&n),
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                tracing::warn!("PostgreSQL connection of the writer ended: {e}");
                return;
            }
            None => return,
        }
    }
}

/// Names the hosts tried, never the url (it may hold a password).
fn connect_error(c: &tokio_postgres::Config, e: tokio_postgres::Error) -> StoreError {
    let hosts: Vec<String> = c
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(n) => n.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .collect();
    // tokio-postgres says "error performing TLS handshake"; the cause (rustls' "invalid
    // peer certificate: UnknownIssuer") is in its sources.
    let mut msg = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        msg.push_str(": ");
        msg.push_str(&c.to_string());
        cause = c.source();
    }
    StoreError::Open {
        path: format!("PostgreSQL at {}", hosts.join(",")),
        msg,
    }
}

fn rustls_connector(path: &std::path::Path) -> StoreResult<MakeRustlsConnect> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let bad = |msg: String| StoreError::Open {
        path: path.display().to_string(),
        msg,
    };
    let mut roots = rustls::RootCertStore::empty();
    let certs =
        CertificateDer::pem_file_iter(path).map_err(|e| bad(format!("store.ca_file: {e}")))?;
    for cert in certs {
        let cert = cert.map_err(|e| bad(format!("store.ca_file: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("store.ca_file: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bad("store.ca_file holds no certificate".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(tls))
}
