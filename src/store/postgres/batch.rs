//! One batch of the logins' writes as one PostgreSQL transaction, sent in one go.
//!
//! The statements are prepared once per writer session and then pipelined: BEGIN, every
//! write and COMMIT leave in one flight and their answers come back in order, so a batch
//! costs one round trip plus the commit's wait for the synchronous standby, however many
//! logins it holds.
//!
//! Rows are locked in one global order, the same on every node: tokens (by id, one
//! `SELECT … ORDER BY id FOR NO KEY UPDATE`), then accounts (their writes sorted by id), then
//! codes (backup codes, then e-mailed codes, by id; their tokens are locked already), then
//! app passwords (by id). Two overlapping batches on two nodes thus wait for each other at
//! most, and never deadlock. The counter advances of a batch are one `UPDATE … FROM unnest`
//! per round (a token's second advance in the batch goes in the second round, so it sees the
//! first, as one after another in SQLite): under READ COMMITTED a batch that waited for
//! another's lock re-checks `last_counter < new` against the committed row and updates 0
//! rows for a code already used: a clean "lost", never an error.

use crate::store::sqlite::commit::{Answer, Op};
use crate::store::{StoreError, StoreResult};
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement};

/// First in every batch unless asynchronous replication is allowed: a server that stopped
/// naming a synchronous standby since the start (a reload, a failover to a primary without
/// one) would commit only locally; the batch fails instead and nothing of it is committed.
/// A function of the schema (step 4), not an anonymous `DO` block: that one was parsed anew
/// for every batch (about 2 % of the writer session's CPU in a profile).
pub(super) const SQL_SYNC_GUARD: &str = "SELECT otpd_require_sync()";
pub(super) const SQL_LOCK_TOKENS: &str =
    "SELECT id FROM tokens WHERE id = ANY($1::bigint[]) ORDER BY id FOR NO KEY UPDATE";
pub(super) const SQL_ADVANCE: &str = "UPDATE tokens t SET last_counter = v.counter,
         drift = v.drift, last_used_at = v.now,
         state = CASE WHEN v.activate THEN 'active' ELSE t.state END
     FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bool[])
         AS v(id, counter, drift, now, activate)
     WHERE t.id = v.id AND t.last_counter < v.counter
     RETURNING t.id";
/// Tells every node's account cache which accounts' counters this batch advanced (feed.rs),
/// in notifications of at most 300 accounts (a payload holds under 8000 bytes); the tokens'
/// trigger stays quiet about counters in the writer's session.
///
/// Sent right after the batch's transaction, in the same flight, as a statement of its own
/// outside any `BEGIN`: its own transaction, which `set_config(..., true)` lets commit without
/// waiting for the disk or the standby (nothing in it needs to survive a crash: the
/// listeners' sessions do not). The batch's logins are answered after both. Not inside the
/// batch: PostgreSQL serializes every transaction that notifies with one lock held until its
/// commit is done, the wait for the synchronous standby included, so two nodes' batches
/// could never commit at the same time. One statement, not `BEGIN`, `SET LOCAL`, the
/// notifications and `COMMIT`: each statement costs the server a round of its protocol
/// (a batch at window 8 was eleven statements, most of them this small).
/// A stale counter in another node's cache meanwhile cannot accept anything: the advance
/// itself only counts when `last_counter < new` in the database.
///
/// This form finds the accounts of the advanced tokens in the database, for tokens this node
/// does not hold in its cache; the accounts it knows are announced with [`SQL_NOTIFY`] and
/// payloads made here (the lookup was the third most expensive statement of a batch: 72 µs
/// at the mean, `bench/run.sh --store postgres --pg-stats`, 2026-12-06).
pub(super) const SQL_ANNOUNCE: &str = "SELECT set_config('synchronous_commit', 'off', true),
         pg_notify('otpd_cache', 'c ' || $2::text || ' ' || string_agg(a::text, ','))
     FROM (SELECT a, (row_number() OVER ()) / 300 AS chunk
           FROM (SELECT DISTINCT account_id AS a FROM tokens
                 WHERE id = ANY($1::bigint[])) d) e
     GROUP BY chunk";
/// The announcements whose payloads the writer made (`c ORIGIN ID,ID,...` each), in one
/// transaction of their own as [`SQL_ANNOUNCE`].
pub(super) const SQL_NOTIFY: &str = "SELECT set_config('synchronous_commit', 'off', true),
         pg_notify('otpd_cache', x) FROM unnest($1::text[]) AS x";
/// Accounts per announcement: a payload holds under 8000 bytes (SQL_ANNOUNCE's 300 too).
const ANNOUNCE_CHUNK: usize = 300;
pub(super) const SQL_TOKEN_USED: &str = "UPDATE tokens SET last_used_at = $2::bigint,
         state = CASE WHEN $3::bool THEN 'active' ELSE state END
     WHERE id = $1::bigint RETURNING id";
/// As SQLite's: a lock that has ended is forgotten with the failures that made it.
pub(super) const SQL_FAILURE: &str = "UPDATE accounts SET
         failures = CASE WHEN locked_until <= $2::bigint THEN 1 ELSE failures + 1 END,
         last_failure = $2::bigint,
         locked_until = CASE
             WHEN locked_until <= $2::bigint THEN CASE WHEN $3::bigint = 1 THEN $4::bigint END
             WHEN locked_until IS NOT NULL THEN locked_until
             WHEN $3::bigint > 0 AND failures + 1 >= $3::bigint THEN $4::bigint
             END
     WHERE id = $1::bigint RETURNING failures";
pub(super) const SQL_UNLOCK: &str = "UPDATE accounts SET failures = 0, last_failure = NULL,
         locked_until = NULL, unlocks = unlocks + 1 WHERE id = $1::bigint";
pub(super) const SQL_FAMILIAR: &str =
    "UPDATE accounts SET familiar = $2::text WHERE id = $1::bigint";
pub(super) const SQL_CLEAR: &str =
    "UPDATE accounts SET failures = 0, last_failure = NULL, locked_until = NULL
     WHERE id = $1::bigint AND (failures != 0 OR locked_until IS NOT NULL)";
/// An answer that counts nothing: one write to the account row (as a counted failure), or
/// where there is none (an unknown user, an account deleted meanwhile), to `meta`.
pub(super) const SQL_UNCOUNTED: &str = "WITH p AS (
         UPDATE accounts SET probes = probes + 1 WHERE id = $1::bigint RETURNING 1)
     INSERT INTO meta (name, value)
         SELECT 'unknown_user_last_failure', $2::bytea WHERE NOT EXISTS (SELECT 1 FROM p)
     ON CONFLICT (name) DO UPDATE SET value = excluded.value";
pub(super) const SQL_TOUCH_APP_PASSWORD: &str = "UPDATE app_passwords
     SET last_used_at = $2::bigint, last_used_from = $3::text WHERE id = $1::bigint";
/// A backup code spent if still unused, and its token's use recorded, in one statement.
pub(super) const SQL_USE_BACKUP_CODE: &str = "WITH s AS (
         UPDATE backup_codes SET used_at = $3::bigint
         WHERE id = $1::bigint AND token_id = $2::bigint AND used_at IS NULL
         RETURNING token_id),
     t AS (UPDATE tokens SET last_used_at = $3::bigint WHERE id IN (SELECT token_id FROM s))
     SELECT count(*) FROM s";
pub(super) const SQL_USE_EMAIL_CODE: &str = "WITH s AS (
         UPDATE email_codes SET used_at = $3::bigint
         WHERE id = $1::bigint AND token_id = $2::bigint AND used_at IS NULL
           AND expires_at > $3::bigint
         RETURNING token_id),
     t AS (UPDATE tokens SET last_used_at = $3::bigint,
               state = CASE WHEN $4::bool THEN 'active' ELSE state END
           WHERE id IN (SELECT token_id FROM s))
     SELECT count(*) FROM s";
pub(super) const SQL_AUDIT: &str = "INSERT INTO audit
         (ts_ms, \"user\", service, rhost, client, verdict, reason, serial, node)
     SELECT u.*, $9::text FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[],
         $5::text[], $6::text[], $7::text[], $8::text[]) AS u";

/// The writer session's prepared statements.
pub(super) struct Statements<S = Statement> {
    begin: S,
    sync_guard: S,
    commit: S,
    lock_tokens: S,
    advance: S,
    announce: S,
    notify: S,
    token_used: S,
    failure: S,
    unlock: S,
    familiar: S,
    clear: S,
    uncounted: S,
    touch: S,
    use_backup: S,
    use_email: S,
    audit: S,
    #[cfg(test)]
    poison: S,
}

impl Statements<Statement> {
    pub(super) async fn prepare(c: &Client) -> Result<Statements, tokio_postgres::Error> {
        Ok(Statements {
            begin: c.prepare("BEGIN").await?,
            sync_guard: c.prepare(SQL_SYNC_GUARD).await?,
            commit: c.prepare("COMMIT").await?,
            lock_tokens: c.prepare(SQL_LOCK_TOKENS).await?,
            advance: c.prepare(SQL_ADVANCE).await?,
            announce: c.prepare(SQL_ANNOUNCE).await?,
            notify: c.prepare(SQL_NOTIFY).await?,
            token_used: c.prepare(SQL_TOKEN_USED).await?,
            failure: c.prepare(SQL_FAILURE).await?,
            unlock: c.prepare(SQL_UNLOCK).await?,
            familiar: c.prepare(SQL_FAMILIAR).await?,
            clear: c.prepare(SQL_CLEAR).await?,
            uncounted: c.prepare(SQL_UNCOUNTED).await?,
            touch: c.prepare(SQL_TOUCH_APP_PASSWORD).await?,
            use_backup: c.prepare(SQL_USE_BACKUP_CODE).await?,
            use_email: c.prepare(SQL_USE_EMAIL_CODE).await?,
            audit: c.prepare(SQL_AUDIT).await?,
            #[cfg(test)]
            // Fails when run with 0: a statement error in the middle of a batch.
            poison: c.prepare("SELECT 1 / $1::bigint").await?,
        })
    }
}

/// The statements by name, for tests of the plan.
#[cfg(test)]
pub(super) fn named() -> Statements<&'static str> {
    Statements {
        begin: "begin",
        sync_guard: "sync_guard",
        commit: "commit",
        lock_tokens: "lock_tokens",
        advance: "advance",
        announce: "announce",
        notify: "notify",
        token_used: "token_used",
        failure: "failure",
        unlock: "unlock",
        familiar: "familiar",
        clear: "clear",
        uncounted: "uncounted",
        touch: "touch",
        use_backup: "use_backup",
        use_email: "use_email",
        audit: "audit",
        poison: "poison",
    }
}

type Param = Box<dyn ToSql + Sync + Send>;
/// One advance of a round: (job, token id, counter, drift, now, activate).
type RoundItem = (usize, i64, i64, i64, i64, bool);

/// How a statement's rows answer the jobs of the batch.
enum Reads {
    Nothing,
    /// A round of advances: (job, token id); won when the token came back.
    Advanced(Vec<(usize, i64)>),
    /// One row back or `NotFound` (a token used, a failure counted).
    TokenUsed(usize),
    Failures(usize),
    /// `count(*)` of codes spent: won when 1.
    Spent(usize),
}

pub(super) struct Planned<'s, S> {
    pub(super) stmt: &'s S,
    pub(super) params: Vec<Param>,
    reads: Reads,
}

fn p<T: ToSql + Sync + Send + 'static>(v: T) -> Param {
    Box::new(v)
}

/// The batch's statements in the global lock order, BEGIN first and COMMIT last, then the
/// announcement of its advances in a transaction of its own. `account_of`: a token's
/// account, when this node's cache knows it.
pub(super) fn plan<'s, S>(
    st: &'s Statements<S>,
    ops: &[&Op],
    node: &str,
    origin: &str,
    guard: bool,
    account_of: &dyn Fn(i64) -> Option<i64>,
) -> Vec<Planned<'s, S>> {
    let simple = |stmt: &'s S, params| Planned {
        stmt,
        params,
        reads: Reads::Nothing,
    };
    let mut out = vec![simple(&st.begin, vec![])];
    if guard {
        out.push(simple(&st.sync_guard, vec![]));
    }
    // Tokens: locked first, all at once, in id order.
    let mut token_ids: Vec<i64> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Advance { token_id, .. }
            | Op::TokenUsed { token_id, .. }
            | Op::UseBackupCode { token_id, .. }
            | Op::UseEmailCode { token_id, .. } => Some(*token_id),
            _ => None,
        })
        .collect();
    token_ids.sort_unstable();
    token_ids.dedup();
    if !token_ids.is_empty() {
        out.push(simple(&st.lock_tokens, vec![p(token_ids)]));
    }
    // Advances: one statement per round; a token's n-th advance of the batch in round n.
    let mut rounds: Vec<Vec<RoundItem>> = Vec::new();
    let mut seen: std::collections::HashMap<i64, usize> = std::collections::HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        if let Op::Advance {
            token_id,
            counter,
            drift,
            now,
            activate,
        } = op
        {
            let n = seen.entry(*token_id).or_insert(0);
            if rounds.len() <= *n {
                rounds.push(Vec::new());
            }
            rounds[*n].push((i, *token_id, *counter, *drift, *now, *activate));
            *n += 1;
        }
    }
    let advanced: Vec<i64> = rounds
        .first()
        .map(|r| r.iter().map(|x| x.1).collect())
        .unwrap_or_default();
    for round in rounds {
        let ids: Vec<i64> = round.iter().map(|r| r.1).collect();
        let counters: Vec<i64> = round.iter().map(|r| r.2).collect();
        let drifts: Vec<i64> = round.iter().map(|r| r.3).collect();
        let nows: Vec<i64> = round.iter().map(|r| r.4).collect();
        let activates: Vec<bool> = round.iter().map(|r| r.5).collect();
        out.push(Planned {
            stmt: &st.advance,
            params: vec![p(ids), p(counters), p(drifts), p(nows), p(activates)],
            reads: Reads::Advanced(round.iter().map(|r| (r.0, r.1)).collect()),
        });
    }
    let mut token_used: Vec<(i64, usize)> = Vec::new();
    let mut accounts: Vec<((u8, i64), usize)> = Vec::new();
    let mut backup: Vec<(i64, usize)> = Vec::new();
    let mut email: Vec<(i64, usize)> = Vec::new();
    let mut touches: Vec<(i64, usize)> = Vec::new();
    let mut audits: Vec<usize> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        match op {
            Op::Advance { .. } => {}
            Op::TokenUsed { token_id, .. } => token_used.push((*token_id, i)),
            Op::Failure { account_id, .. }
            | Op::ClearFailures { account_id }
            | Op::Unlock { account_id }
            | Op::Familiar { account_id, .. } => accounts.push(((0, *account_id), i)),
            Op::Uncounted { account_id, .. } => match account_id {
                Some(id) => accounts.push(((0, *id), i)),
                // Without an account row: `meta`, after every account.
                None => accounts.push(((1, 0), i)),
            },
            Op::UseBackupCode { code_id, .. } => backup.push((*code_id, i)),
            Op::UseEmailCode { code_id, .. } => email.push((*code_id, i)),
            Op::TouchAppPassword { id, .. } => touches.push((*id, i)),
            Op::Audit(_) => audits.push(i),
            #[cfg(test)]
            Op::Poison => out.push(simple(&st.poison, vec![p(0i64)])),
        }
    }
    // Stable sorts: two writes to one row keep the order they were made in.
    token_used.sort_by_key(|x| x.0);
    accounts.sort_by_key(|x| x.0);
    backup.sort_by_key(|x| x.0);
    email.sort_by_key(|x| x.0);
    touches.sort_by_key(|x| x.0);
    let order = token_used
        .iter()
        .chain(&accounts_as_plain(&accounts))
        .chain(&backup)
        .chain(&email)
        .chain(&touches)
        .map(|x| x.1)
        .collect::<Vec<_>>();
    for i in order {
        out.push(one(st, ops[i], i));
    }
    if !audits.is_empty() {
        out.push(audit(st, ops, &audits, node));
    }
    out.push(simple(&st.commit, vec![]));
    if !advanced.is_empty() {
        let (mut known, mut unknown) = (Vec::new(), Vec::new());
        for token in advanced {
            match account_of(token) {
                Some(a) => known.push(a),
                None => unknown.push(token),
            }
        }
        known.sort_unstable();
        known.dedup();
        if !known.is_empty() {
            let payloads: Vec<String> = known
                .chunks(ANNOUNCE_CHUNK)
                .map(|chunk| {
                    let ids: Vec<String> = chunk.iter().map(i64::to_string).collect();
                    format!("c {origin} {}", ids.join(","))
                })
                .collect();
            out.push(simple(&st.notify, vec![p(payloads)]));
        }
        if !unknown.is_empty() {
            out.push(simple(
                &st.announce,
                vec![p(unknown), p(origin.to_string())],
            ));
        }
    }
    out
}

fn accounts_as_plain(a: &[((u8, i64), usize)]) -> Vec<(i64, usize)> {
    a.iter().map(|((_, id), i)| (*id, *i)).collect()
}

/// The statement of one write that is not an advance or an audit record.
fn one<'s, S>(st: &'s Statements<S>, op: &Op, i: usize) -> Planned<'s, S> {
    let (stmt, params, reads) = match op {
        Op::TokenUsed {
            token_id,
            now,
            activate,
        } => (
            &st.token_used,
            vec![p(*token_id), p(*now), p(*activate)],
            Reads::TokenUsed(i),
        ),
        Op::Failure {
            account_id,
            now,
            lock_at,
            lock_until,
        } => (
            &st.failure,
            vec![
                p(*account_id),
                p(*now),
                p(i64::from(*lock_at)),
                p(*lock_until),
            ],
            Reads::Failures(i),
        ),
        Op::ClearFailures { account_id } => (&st.clear, vec![p(*account_id)], Reads::Nothing),
        Op::Unlock { account_id } => (&st.unlock, vec![p(*account_id)], Reads::Nothing),
        Op::Familiar {
            account_id,
            sources,
        } => (
            &st.familiar,
            vec![p(*account_id), p(sources.clone())],
            Reads::Nothing,
        ),
        Op::Uncounted { account_id, now } => (
            &st.uncounted,
            vec![p(*account_id), p(now.to_string().into_bytes())],
            Reads::Nothing,
        ),
        Op::UseBackupCode {
            token_id,
            code_id,
            now,
        } => (
            &st.use_backup,
            vec![p(*code_id), p(*token_id), p(*now)],
            Reads::Spent(i),
        ),
        Op::UseEmailCode {
            token_id,
            code_id,
            now,
            activate,
        } => (
            &st.use_email,
            vec![p(*code_id), p(*token_id), p(*now), p(*activate)],
            Reads::Spent(i),
        ),
        Op::TouchAppPassword { id, now, from } => (
            &st.touch,
            vec![p(*id), p(*now), p(from.clone())],
            Reads::Nothing,
        ),
        // Planned elsewhere; never routed here.
        Op::Advance { .. } | Op::Audit(_) => (&st.begin, vec![], Reads::Nothing),
        #[cfg(test)]
        Op::Poison => (&st.poison, vec![], Reads::Nothing),
    };
    Planned {
        stmt,
        params,
        reads,
    }
}

fn audit<'s, S>(st: &'s Statements<S>, ops: &[&Op], which: &[usize], node: &str) -> Planned<'s, S> {
    let recs: Vec<_> = which
        .iter()
        .filter_map(|&i| match ops[i] {
            Op::Audit(r) => Some(r),
            _ => None,
        })
        .collect();
    let col = |f: &dyn Fn(&crate::model::AuditRecord) -> String| -> Param {
        p(recs.iter().map(|r| f(r)).collect::<Vec<String>>())
    };
    let opt = |f: &dyn Fn(&crate::model::AuditRecord) -> Option<String>| -> Param {
        p(recs.iter().map(|r| f(r)).collect::<Vec<Option<String>>>())
    };
    Planned {
        stmt: &st.audit,
        params: vec![
            p(recs.iter().map(|r| r.ts_ms).collect::<Vec<i64>>()),
            col(&|r| r.user.clone()),
            col(&|r| r.service.clone()),
            opt(&|r| r.rhost.clone()),
            opt(&|r| r.client.clone()),
            col(&|r| r.verdict.clone()),
            col(&|r| r.reason.clone()),
            opt(&|r| r.serial.clone()),
            p(node.to_string()),
        ],
        reads: Reads::Nothing,
    }
}

type RowsFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<Row>, tokio_postgres::Error>> + 'a>>;

/// Runs the batch's transaction: every statement sent before the first answer is awaited.
/// `Ok(answers)` (one per op) only when every statement, COMMIT included, succeeded.
pub(super) async fn run(
    client: &Client,
    st: &Statements,
    ops: &[&Op],
    node: &str,
    origin: &str,
    guard: bool,
    account_of: &dyn Fn(i64) -> Option<i64>,
) -> Result<Vec<StoreResult<Answer>>, tokio_postgres::Error> {
    let planned = plan(st, ops, node, origin, guard, account_of);
    let refs: Vec<Vec<&(dyn ToSql + Sync)>> = planned
        .iter()
        .map(|pl| {
            pl.params
                .iter()
                .map(|b| b.as_ref() as &(dyn ToSql + Sync))
                .collect()
        })
        .collect();
    let mut futs: Vec<RowsFuture<'_>> = planned
        .iter()
        .zip(&refs)
        .map(|(pl, r)| Box::pin(client.query(pl.stmt, r)) as RowsFuture<'_>)
        .collect();
    let mut done: Vec<Option<Result<Vec<Row>, tokio_postgres::Error>>> =
        futs.iter().map(|_| None).collect();
    // Polled once each, in order: that is when tokio-postgres sends a request, so the server
    // gets them in this order, all before the first answer comes back.
    std::future::poll_fn(|cx| {
        for (f, d) in futs.iter_mut().zip(done.iter_mut()) {
            if let Poll::Ready(r) = f.as_mut().poll(cx) {
                *d = Some(r);
            }
        }
        Poll::Ready(())
    })
    .await;
    let mut results = Vec::with_capacity(futs.len());
    for (f, d) in futs.into_iter().zip(done) {
        results.push(match d {
            Some(r) => r,
            None => f.await,
        });
    }
    // The batch is everything up to its COMMIT: the first error there is the cause, the
    // statements after it failed only because the transaction was aborted (and its COMMIT
    // answered ROLLBACK). The announcement after it cannot undo the batch: its error is only
    // logged (another node may then use a counter it holds for a moment longer, which the
    // database's `last_counter < new` refuses anyway).
    let batch_len = planned
        .iter()
        .position(|pl| std::ptr::eq(pl.stmt, &st.commit))
        .map_or(planned.len(), |i| i + 1);
    let mut rows_of = Vec::with_capacity(batch_len);
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(rows) if i < batch_len => rows_of.push(rows),
            Err(e) if i < batch_len => return Err(e),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!("PostgreSQL: announcing a batch's advances to the caches: {e}");
                break;
            }
        }
    }
    let mut answers: Vec<StoreResult<Answer>> = ops.iter().map(|_| Ok(Answer::Done)).collect();
    for (pl, rows) in planned.iter().zip(rows_of) {
        match &pl.reads {
            Reads::Nothing => {}
            Reads::Advanced(jobs) => {
                let won: std::collections::HashSet<i64> =
                    rows.iter().filter_map(|r| r.try_get(0).ok()).collect();
                for (i, token) in jobs {
                    answers[*i] = Ok(Answer::Advanced(won.contains(token)));
                }
            }
            Reads::TokenUsed(i) => {
                if rows.is_empty() {
                    answers[*i] = Err(StoreError::NotFound(format!("token of write {i}")));
                }
            }
            Reads::Failures(i) => {
                answers[*i] = match rows.first().map(|r| r.try_get::<_, i64>(0)) {
                    Some(Ok(n)) => Ok(Answer::Failures(u32::try_from(n).unwrap_or(u32::MAX))),
                    Some(Err(e)) => Err(e.into()),
                    // Deleted while its login was being checked: nothing to count.
                    None => Err(StoreError::NotFound("account".into())),
                }
            }
            Reads::Spent(i) => {
                let n: i64 = match rows.first().map(|r| r.try_get(0)) {
                    Some(Ok(n)) => n,
                    Some(Err(e)) => return Err(e),
                    None => 0,
                };
                answers[*i] = Ok(Answer::Advanced(n == 1));
            }
        }
    }
    Ok(answers)
}
