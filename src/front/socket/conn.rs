//! One connection: request lines in (capped, wiped), answers out, each request to the engine.

use super::super::deferred;
use super::super::protocol::{self, codes, ProtoError, Request};
use super::waiting::Registered;
use crate::daemon::{EngineHandle, Housekeeping};
use crate::engine::{messages, AccountVerdict, CheckRequest};
use crate::metrics::{self, Frontend};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use zeroize::Zeroizing;

pub(super) enum Line {
    Full,
    Eof,
    TooLong,
}

/// Reads one line into `buf` (newline dropped), never holding more than MAX_LINE bytes. The
/// buffer may hold a password: it grows by copying into a fresh wiped buffer, so no partial
/// copy is left behind in freed memory.
pub(super) async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Zeroizing<Vec<u8>>,
) -> std::io::Result<Line> {
    loop {
        let avail = r.fill_buf().await?;
        if avail.is_empty() {
            return Ok(if buf.is_empty() {
                Line::Eof
            } else {
                Line::Full
            });
        }
        let (take, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(pos) => (pos, true),
            None => (avail.len(), false),
        };
        if buf.len() + take > protocol::MAX_LINE {
            return Ok(Line::TooLong);
        }
        push_wiped(buf, &avail[..take]);
        r.consume(take + usize::from(done));
        if done {
            return Ok(Line::Full);
        }
    }
}

fn push_wiped(buf: &mut Zeroizing<Vec<u8>>, data: &[u8]) {
    let need = buf.len() + data.len();
    if need > buf.capacity() {
        let mut bigger = Zeroizing::new(Vec::with_capacity(need.max(buf.capacity() * 2)));
        bigger.extend_from_slice(buf);
        *buf = bigger;
    }
    buf.extend_from_slice(data);
}

pub(super) async fn serve_conn(
    stream: UnixStream,
    engine: Arc<EngineHandle>,
    idle: Duration,
    reg: &Registered,
) {
    let (rd, mut wr) = stream.into_split();
    // Small: a PAM request is a few hundred bytes; longer lines accumulate in `line`.
    let mut rd = BufReader::with_capacity(4096, rd);
    loop {
        let mut line = Zeroizing::new(Vec::with_capacity(1024));
        let read = tokio::select! {
            r = tokio::time::timeout(idle, read_line(&mut rd, &mut line)) => r,
            // Closed to make room for a newcomer (max_connections): like an idle timeout.
            () = reg.state.evict.notified() => return,
        };
        reg.working();
        // From a whole line until its answer is written: a stop waits for it (daemon::serve).
        let working = engine.begin();
        let (answer, keep_open) = match read {
            // Idle (or a line that trickles in too slowly): close without an answer.
            Err(_) => return,
            Ok(Err(_)) | Ok(Ok(Line::Eof)) => return,
            Ok(Ok(Line::TooLong)) => (
                protocol::error_answer(&ProtoError::new(
                    codes::LINE_TOO_LONG,
                    format!(
                        "request line longer than {} bytes; closing",
                        protocol::MAX_LINE
                    ),
                )),
                false,
            ),
            Ok(Ok(Line::Full)) => (answer(&engine, &line).await, true),
        };
        drop(line);
        let written = tokio::time::timeout(idle, wr.write_all(&answer)).await;
        drop(working);
        match written {
            Ok(Ok(())) if keep_open => reg.waiting(),
            _ => return,
        }
    }
}

async fn answer(handle: &Arc<EngineHandle>, line: &[u8]) -> Vec<u8> {
    let started = std::time::Instant::now();
    let req = match protocol::parse(line) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(code = e.code, "socket: bad request: {}", e.message);
            return protocol::error_answer(&e);
        }
    };
    // The engine as configured now: a reload between two lines of one connection applies.
    let engine = handle.current();
    match req {
        Request::Ping => protocol::ping_answer(),
        Request::Status => match tokio::task::spawn_blocking({
            let handle = handle.clone();
            move || status(handle.housekeeping())
        })
        .await
        {
            Ok(s) => protocol::status_answer(&s),
            Err(e) => internal(&e),
        },
        Request::Check {
            user,
            password,
            service,
            rhost,
            client,
            state,
            deadline_ms,
        } => {
            let req = CheckRequest {
                user,
                password,
                service,
                rhost,
                client: Some(client.unwrap_or_else(|| "socket".into())),
                state,
                defer_is_reject: false,
                device: Default::default(),
                code_only: false,
            };
            // Checked right before the engine: a wait for the thread (and a stopped or
            // stalled daemon) counts against the caller's deadline. Decided on this worker
            // thread; a login that waits for its commit holds no thread (front/deferred.rs).
            let gave_up =
                move |engine: &crate::engine::Engine, req: &CheckRequest| match deadline_ms {
                    Some(deadline) if now_unix_ms() >= deadline => {
                        Some(engine.reject_unevaluated(req, GAVE_UP))
                    }
                    _ => None,
                };
            let run = where_to_run(&engine);
            let checked = deferred::check(engine, req, gave_up, run);
            match checked.await {
                Ok(d) => {
                    metrics::get().request(Frontend::Socket, d.verdict, started.elapsed());
                    protocol::check_answer(&d)
                }
                Err(e) => internal(&e),
            }
        }
        Request::Account {
            user,
            service,
            rhost,
        } => {
            let run = where_to_run(&engine);
            let res = deferred::call(run, move || {
                let (v, reason) = engine.account_check(&user, &service, rhost.as_deref());
                if v == AccountVerdict::Deny {
                    // As `&str`: quoted and escaped in the text log, like the audit line.
                    tracing::info!(
                        user = user.as_str(),
                        service = service.as_str(),
                        rhost = rhost.as_deref().unwrap_or("-"),
                        reason = reason.as_str(),
                        "account phase: deny"
                    );
                }
                v
            })
            .await;
            match res {
                Ok(AccountVerdict::Deny) => {
                    protocol::account_answer(AccountVerdict::Deny, messages::DENY)
                }
                Ok(v) => protocol::account_answer(v, ""),
                Err(e) => internal(&e),
            }
        }
    }
}

/// On this worker for SQLite, whose sleeps are all marked (blocking.rs). PostgreSQL's
/// synchronous client runs a runtime of its own for every call, a dropped session's
/// included, and must never be reached from a worker outside a marked sleep; its logins
/// wait for the network anyway, so the pool's hand-over costs them little.
fn where_to_run(engine: &crate::engine::Engine) -> deferred::Run {
    match engine.config().store.kind {
        crate::config::StoreKind::Sqlite => deferred::Run::Here,
        crate::config::StoreKind::Postgres => deferred::Run::Pool,
    }
}

/// The audit reason of a request dropped because its caller had stopped waiting.
pub const GAVE_UP: &str = "caller gave up (deadline passed) before evaluation";

fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Asks the database for its counts: a daemon whose database does not answer says so.
fn status(db: &dyn Housekeeping) -> protocol::StatusAnswer {
    let counts = db.counts();
    let m = metrics::get();
    let (store, accounts, tokens) = match counts {
        Ok((a, t)) => (
            "ok".to_string(),
            Some(usize::try_from(a).unwrap_or(usize::MAX)),
            Some(usize::try_from(t).unwrap_or(usize::MAX)),
        ),
        Err(e) => (format!("error: {e}"), None, None),
    };
    protocol::StatusAnswer {
        version: env!("CARGO_PKG_VERSION").to_string(),
        protocol: protocol::VERSION,
        uptime_s: m.uptime().as_secs(),
        store,
        accounts,
        tokens,
        requests: m
            .totals_by_verdict()
            .into_iter()
            .map(|(v, n)| (v.to_string(), n))
            .collect(),
    }
}

fn internal(e: &dyn std::fmt::Display) -> Vec<u8> {
    tracing::error!("socket: engine task failed: {e}");
    protocol::error_answer(&ProtoError::new(codes::INTERNAL, "internal error"))
}
