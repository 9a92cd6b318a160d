//! The batch plan, without a server: what a batch sends, in which order. The store against a
//! real PostgreSQL is tested by tests/postgres_nodes.rs.

use super::batch::{named, plan};
use crate::model::AuditRecord;
use crate::store::sqlite::commit::Op;

fn advance(token_id: i64, counter: i64) -> Op {
    Op::Advance {
        token_id,
        counter,
        drift: 0,
        now: 1,
        activate: false,
    }
}

/// (statement, its parameters as text) of a batch of `ops`.
fn shape(ops: &[Op]) -> Vec<(String, String)> {
    let st = named();
    let refs: Vec<&Op> = ops.iter().collect();
    plan(&st, &refs, "n1", "o1", true, &|_| None)
        .iter()
        .map(|p| (p.stmt.to_string(), format!("{:?}", p.params)))
        .collect()
}

#[test]
fn a_batch_locks_tokens_then_accounts_then_codes_each_by_id() {
    let ops = vec![
        Op::Audit(AuditRecord {
            ts_ms: 1,
            user: "u".into(),
            service: "vpn".into(),
            rhost: None,
            client: None,
            verdict: "accept".into(),
            reason: "ok".into(),
            serial: None,
        }),
        Op::UseEmailCode {
            token_id: 9,
            code_id: 70,
            now: 1,
            activate: false,
        },
        advance(30, 5),
        Op::Failure {
            account_id: 8,
            now: 1,
            lock_at: 0,
            lock_until: 0,
        },
        Op::UseBackupCode {
            token_id: 4,
            code_id: 60,
            now: 1,
        },
        advance(10, 7),
        Op::ClearFailures { account_id: 3 },
        Op::Uncounted {
            account_id: None,
            now: 1,
        },
        Op::Failure {
            account_id: 3,
            now: 1,
            lock_at: 0,
            lock_until: 0,
        },
        Op::UseBackupCode {
            token_id: 4,
            code_id: 50,
            now: 1,
        },
    ];
    let got = shape(&ops);
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "begin",
            "sync_guard",
            "lock_tokens",
            "advance",
            "clear",
            "failure",
            "failure",
            "uncounted",
            "use_backup",
            "use_backup",
            "use_email",
            "audit",
            "commit",
            "announce"
        ]
    );
    // Every token any write of the batch touches, locked at once in id order.
    assert_eq!(got[2].1, "[[4, 9, 10, 30]]");
    // Accounts by id, two writes to one account in the order they were made.
    assert_eq!(got[4].1, "[3]");
    assert!(got[5].1.starts_with("[3, "), "{}", got[5].1);
    assert!(got[6].1.starts_with("[8, "), "{}", got[6].1);
    // Backup codes by id (50 before 60), then e-mailed codes.
    assert!(got[8].1.starts_with("[50, 4"), "{}", got[8].1);
    assert!(got[9].1.starts_with("[60, 4"), "{}", got[9].1);
    // The audit carries the node's name.
    assert!(got[11].1.ends_with("\"n1\"]"), "{}", got[11].1);
    // The advanced tokens announced with this process's origin, after the batch's commit,
    // in a statement of its own: its own transaction, which does not wait for the standby.
    assert!(got[13].1.ends_with(", \"o1\"]"), "{}", got[13].1);
}

/// Advanced tokens whose accounts the cache knows are announced with a payload made here,
/// each account once; only the others make the database look their accounts up.
#[test]
fn accounts_the_cache_knows_are_announced_without_a_lookup() {
    let st = named();
    let ops = [advance(1, 5), advance(2, 5), advance(3, 5), advance(4, 5)];
    let refs: Vec<&Op> = ops.iter().collect();
    let known = |t: i64| match t {
        1 | 3 => Some(70),
        2 => Some(42),
        _ => None,
    };
    let got: Vec<(String, String)> = plan(&st, &refs, "n1", "o1", true, &known)
        .iter()
        .map(|p| (p.stmt.to_string(), format!("{:?}", p.params)))
        .collect();
    let tail: Vec<&(String, String)> = got.iter().skip_while(|(n, _)| n != "commit").collect();
    assert_eq!(tail.len(), 3, "{got:?}");
    assert_eq!(tail[1].0, "notify");
    assert_eq!(tail[1].1, "[[\"c o1 42,70\"]]");
    // What the other nodes' feeds read back.
    assert_eq!(
        super::feed::Announcement::parse("c o1 42,70"),
        Some(super::feed::Announcement::Counters {
            origin: "o1",
            accounts: vec![42, 70]
        })
    );
    assert_eq!(tail[2].0, "announce");
    assert_eq!(tail[2].1, "[[4], \"o1\"]");
}

/// Of two advances of one token in a batch, the second goes into a statement of its own
/// after the first, so it sees the first's counter as SQLite's one-after-another does.
#[test]
fn a_tokens_second_advance_in_a_batch_comes_in_a_later_round() {
    let got = shape(&[advance(1, 5), advance(2, 5), advance(1, 5), advance(1, 6)]);
    let rounds: Vec<&str> = got
        .iter()
        .filter(|(n, _)| n == "advance")
        .map(|(_, p)| p.as_str())
        .collect();
    assert_eq!(rounds.len(), 3, "{got:?}");
    assert!(rounds[0].starts_with("[[1, 2], [5, 5]"), "{}", rounds[0]);
    assert!(rounds[1].starts_with("[[1], [5]"), "{}", rounds[1]);
    assert!(rounds[2].starts_with("[[1], [6]"), "{}", rounds[2]);
}
