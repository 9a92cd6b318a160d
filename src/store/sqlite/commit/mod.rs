//! Group commit: one writer thread turns many small writes into one durable transaction.
//!
//! Every login that changes the database (a counter advance, a spent backup or e-mailed code,
//! a token's or app password's last use, an audit record, a failure count) used to commit on
//! its own, and each commit with `synchronous=FULL` costs one fsync:
//! a few thousand commits per second at most, whatever the CPU. The writer thread takes
//! everything queued (up to [`MAX_BATCH`]), runs it in one `BEGIN IMMEDIATE … COMMIT`, pays
//! one fsync, and only then answers each waiter. While it waits for the disk, the next batch
//! queues up, so the batch grows with the load and the fsync rate stays bounded.
//!
//! What this keeps:
//! - `advance_counter`, `use_backup_code` and `use_email_code` return only after the commit
//!   that holds their update is durable: an Accept never leaves before its code is used on
//!   disk. An advance asked for with `CommitMode::Defer` returns a ticket at once instead,
//!   and its answer (run on the writer thread, see [`crate::store::Completion`]) leaves only
//!   once the ticket resolves, after the commit.
//! - When logins come one by one (the writer asleep after a batch of one login, nothing but
//!   audit records queued), a login's write is committed on the login's own thread, on the
//!   writer's connection (`Committer::commit_here`): the same transaction and fsync, without
//!   waking the writer. A write queued after that check waits for the connection.
//! - All writes go through one FIFO queue and one connection, in order, except audit
//!   records: the writer holds them back up to 5 ms (or 256 records) and commits them
//!   together, so the commits of the counter updates in between carry no audit pages. An
//!   audit record queued after a counter update is still committed with it or after it,
//!   never before.
//! - The statements are the same conditional writes as before and run one after another in
//!   the transaction: of two advances to the same counter in one batch, the second sees the
//!   first and changes nothing (`false`, "code already used").
//! - A batch whose statements or commit fail is rolled back as a whole and every waiter in it
//!   gets the error: the engine answers Reject, never Accept. Its audit records are kept for
//!   the next commit when the disk failed (full, read-only, I/O error, locked), up to 4,096.
//!
//! What a crash can lose: audit records are queued without waiting and held, so a crash
//! (SIGKILL, power cut) can lose the audit records of about the last 7 ms (held up to 5 ms,
//! then up to 2 ms waiting for a counter update to share their commit, then the commit).
//! A clean stop commits them. Never a counter: no Accept left for a counter update that was
//! not durable.

pub(in crate::store) mod answerer;
mod ops;
pub(in crate::store) mod queue;
#[cfg(test)]
mod tests;
mod writer;

#[cfg(test)]
pub(in crate::store) use ops::apply_with;
pub(in crate::store) use ops::{apply, Answer, Op};
pub(in crate::store) use writer::{Committer, AUDIT_LINGER};

/// Most writes in one transaction. Large enough that one fsync serves every request a busy
/// front-end can have in flight; small enough that one batch's latency stays short.
pub const MAX_BATCH: usize = 512;
/// Writes waiting for the writer thread at most. When full, callers block (back-pressure on
/// the front-ends' bounded worker pools) instead of growing memory.
pub const QUEUE_BOUND: usize = 4096;
/// WAL pages after which the writer checkpoints (SQLite's automatic checkpoint, in the commit
/// that crosses it). Each checkpoint stalls one batch while it copies the pages to the
/// database and fsyncs it; its cost grows with the distinct pages, which a busy store keeps
/// rewriting, not with the WAL's length. SQLite's default of 1,000 made a checkpoint every
/// ~70 commits and the window-8 p99 1.3-1.6 ms; 4,000 (16 MiB of WAL) made it 0.7-0.9 ms
/// in the same runs (docs/performance.md).
pub const WAL_CHECKPOINT_PAGES: u32 = 4000;

// ---- deferred answers ----------------------------------------------------------------------
//
// A login's thread normally sleeps until the batch holding its counter advance is committed,
// and the writer wakes it: two thread switches per login, about a quarter of the daemon's CPU
// under load (docs/performance.md). A front-end that can send its answer from any thread
// (RADIUS) asks for `CommitMode::Defer`: the advance is queued with a `Resolver`, the caller
// gets the `Ticket` and decides as if the advance won, and leaves on the ticket what to do
// once the commit is durable (a `Completion`, run by the writer after the commit). The
// conditional update stays the arbiter: when it did not win (another login used the code
// first), the completion is told so and answers Reject. Nothing leaves before the commit.
