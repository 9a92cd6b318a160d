//! The writer thread of the PostgreSQL store: the same bounded FIFO and waiting rules as
//! SQLite's group commit (`sqlite/commit/`), with an asynchronous session (tokio-postgres on
//! a runtime of this thread alone) so that each batch is pipelined (`batch.rs`).
//!
//! A batch counts as committed only when every statement and the COMMIT succeeded and no
//! notice said that the commit's wait for the synchronous standby was cancelled; otherwise
//! every waiter hears an error and the engine answers Reject. A broken session is dropped
//! and the next batch connects again (with `target_session_attrs=read-write`, to whichever
//! host is the primary now).

use super::batch::{self, Statements};
use super::connect::{NoticeWatch, PgSettings};
use crate::store::cache::AccountCache;
use crate::store::sqlite::commit::answerer::Answerer;
use crate::store::sqlite::commit::queue::{Job, Queue, IS_WRITER};
use crate::store::sqlite::commit::{Answer, Committer, Op, AUDIT_LINGER, MAX_BATCH};
use crate::store::{StoreError, StoreResult};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The writer's session.
struct Session {
    client: tokio_postgres::Client,
    watch: NoticeWatch,
    statements: Statements,
}

/// How often a batch that hit a deadlock or serialization failure (possible only against
/// other writers than otpd's batches, e.g. an admin's delete) is run again.
const RETRIES: usize = 3;

/// What the writer tells the account cache: its origin in the announcements, and the cache
/// its won advances are written through to.
pub(super) struct CacheLink {
    pub(super) origin: String,
    pub(super) cache: Option<Arc<AccountCache>>,
}

/// Starts the writer thread; the committer it returns queues and waits as SQLite's does.
pub(super) fn start(settings: PgSettings, link: CacheLink) -> StoreResult<Committer> {
    let queue = Arc::new(Queue::new(MAX_BATCH));
    let q = queue.clone();
    let thread = std::thread::Builder::new()
        .name("otpd-pg-commit".into())
        .spawn(move || writer(settings, &link, &q))
        .map_err(|e| StoreError::Commit(format!("cannot start the writer thread: {e}")))?;
    Ok(Committer::from_parts(queue, thread))
}

fn writer(settings: PgSettings, link: &CacheLink, queue: &Queue) {
    IS_WRITER.with(|w| w.set(true));
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("the PostgreSQL writer cannot start its runtime: {e}");
            queue.close();
            return;
        }
    };
    let answerer = Answerer::start("otpd-pg-answers");
    let mut session: Option<Session> = None;
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while queue.take(&mut batch, MAX_BATCH) {
        if batch.iter().all(|j| j.reply.is_none()) {
            // Only audit records: wait briefly for a login's write to share their commit.
            queue.take_within(&mut batch, MAX_BATCH, AUDIT_LINGER);
        }
        let m = crate::metrics::get();
        let started = Instant::now();
        let cpu = crate::metrics::phase::maybe_start(crate::metrics::phase::Phase::Commit);
        let result = rt.block_on(commit(&settings, link, &mut session, &batch));
        m.store_commit.observe_duration(started.elapsed());
        crate::metrics::phase::lap(cpu, crate::metrics::phase::Phase::Commit);
        m.store_batch.observe(batch.len() as f64);
        answer(&answerer, &mut batch, result);
    }
}

fn answer(
    answerer: &Answerer,
    batch: &mut Vec<Job>,
    result: StoreResult<Vec<StoreResult<Answer>>>,
) {
    match result {
        Ok(answers) => answerer.answer(batch.drain(..).zip(answers)),
        Err(e) => {
            let lost = batch.iter().filter(|j| j.reply.is_none()).count();
            tracing::error!(
                "store commit of {} writes failed: {e}; {lost} audit records lost",
                batch.len()
            );
            let msg = e.to_string();
            answerer.answer(
                batch
                    .drain(..)
                    .map(|job| (job, Err(StoreError::Commit(msg.clone())))),
            );
        }
    }
}

async fn connect(settings: &PgSettings) -> StoreResult<Session> {
    let (client, watch) = tokio::time::timeout(
        settings.connect_timeout + Duration::from_secs(1),
        settings.connect_async(),
    )
    .await
    .map_err(|_| StoreError::Commit("connecting to PostgreSQL timed out".into()))??;
    // Counter advances of this session are announced by the batch itself (batch.rs), with
    // the origin that lets this node skip its own; the trigger stays quiet about them.
    // Generic plans: the batch's statements take arrays, whose length only a custom plan
    // sees, so PostgreSQL kept planning them anew for every batch (a fifth of this
    // session's CPU at window 8, docs/performance.md); the generic plans are the same index
    // scans.
    client
        .batch_execute("SET otpd.writer = 'on'; SET plan_cache_mode = force_generic_plan")
        .await?;
    let statements = Statements::prepare(&client).await?;
    Ok(Session {
        client,
        watch,
        statements,
    })
}

async fn commit(
    settings: &PgSettings,
    link: &CacheLink,
    session: &mut Option<Session>,
    batch: &[Job],
) -> StoreResult<Vec<StoreResult<Answer>>> {
    let ops: Vec<&Op> = batch.iter().map(|j| &j.op).collect();
    let mut attempt = 0;
    loop {
        attempt += 1;
        if session.as_ref().is_none_or(|s| s.client.is_closed()) {
            *session = Some(connect(settings).await?);
        }
        let Some(s) = session.as_ref() else {
            return Err(StoreError::Commit("no PostgreSQL session".into()));
        };
        let before = s.watch.count();
        let account_of = |token| link.cache.as_ref().and_then(|c| c.account_of_token(token));
        let run = batch::run(
            &s.client,
            &s.statements,
            &ops,
            &settings.node,
            &link.origin,
            !settings.allow_async_replication,
            &account_of,
        );
        // PostgreSQL's statement_timeout does not end a commit's wait for a synchronous
        // standby that is gone: without a limit of our own the batch's logins would never be
        // answered and every later login would queue behind them. The commit may have been
        // made locally: its codes stay spent, and none of them is accepted.
        let Ok(result) = tokio::time::timeout(settings.statement_timeout, run).await else {
            settings.cancel(&s.client).await;
            *session = None;
            return Err(StoreError::Commit(format!(
                "no answer from PostgreSQL within statement_timeout ({} ms); is the synchronous \
                 standby down? the batch counts as failed",
                settings.statement_timeout.as_millis()
            )));
        };
        match result {
            Ok(answers) => {
                if s.watch.count() != before {
                    return Err(super::pool::sync_wait_cancelled());
                }
                if let Some(cache) = &link.cache {
                    crate::store::cache::write_through(cache, ops.iter().copied(), &answers);
                }
                return Ok(answers);
            }
            Err(e) => {
                if s.client.is_closed() {
                    *session = None;
                } else {
                    // The failed statement aborted the transaction and COMMIT ended it; make
                    // sure the session is idle for the next batch all the same.
                    let _ = s.client.batch_execute("ROLLBACK").await;
                }
                let retry = matches!(
                    e.code(),
                    Some(c) if *c == tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED
                        || *c == tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE
                );
                if retry && attempt <= RETRIES {
                    tracing::warn!("store commit hit {e}; running the batch again");
                    continue;
                }
                return Err(e.into());
            }
        }
    }
}
