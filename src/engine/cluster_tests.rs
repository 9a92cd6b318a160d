//! Two engines on one store and one shared state: two nodes of a cluster as the engine sees
//! them (each with its own gate and memory). What one node began or counted, the other must
//! see. With a shared state per engine (each process's own memory, as before the state was
//! shared) the State, re-login, source and familiar-source tests fail; with the gate taking a
//! quiet row in place of its memory only (as before), the split-failure lock test fails.

use super::testkit::{self, oath_token, TestClock, SECRET};
use super::*;
use crate::admin::Admin;
use crate::model::TokenKind;
use crate::tokens::oath::{hotp, Algorithm};

struct Nodes {
    a: Engine,
    b: Engine,
    admin: Admin,
    clock: Arc<TestClock>,
}

impl Nodes {
    fn new(toml: &str) -> Nodes {
        let cfg = Arc::new(Config::from_toml_str(toml).expect("config"));
        let p = testkit::parts(cfg.clone());
        let shared: Arc<dyn SharedStateStore> = Arc::new(MemoryShared::new());
        let b = Engine::with_clock(cfg, p.store.clone(), p.keys.clone(), p.clock.clone())
            .with_shared(shared.clone());
        let n = Nodes {
            a: p.engine.with_shared(shared),
            b,
            admin: p.admin,
            clock: p.clock,
        };
        n.admin.add_user("alice", Some("1234"), None).expect("user");
        n.admin
            .add_token("alice", oath_token(TokenKind::Hotp, true))
            .expect("token");
        n.admin
            .set_user("alice", None, Some("everywhere"))
            .expect("level");
        n
    }
}

fn req(service: &str, rhost: Option<&str>, password: &str, state: Option<&str>) -> CheckRequest {
    CheckRequest {
        user: "alice".into(),
        password: password.to_string().into(),
        service: service.into(),
        rhost: rhost.map(str::to_string),
        client: Some("nas".into()),
        state: state.map(str::to_string),
        defer_is_reject: false,
    }
}

fn code(counter: u64) -> String {
    hotp(Algorithm::Sha1, SECRET, counter, 6)
}

const TWO_STEP: &str = "[services.vpn]\nchallenge_on_pin_only = true\n";

#[test]
fn a_two_step_login_begun_on_one_node_ends_on_the_other() {
    let n = Nodes::new(TWO_STEP);
    let d = n.a.check(&req("vpn", None, "1234", None));
    assert_eq!(d.verdict, Verdict::Challenge, "{d:?}");
    let state = d.state.expect("state");
    let d = n.b.check(&req("vpn", None, &code(0), Some(&state)));
    assert_eq!(d.verdict, Verdict::Accept, "{d:?}");
    // Spent: on either node, with the next valid code.
    for node in [&n.a, &n.b] {
        let d = node.check(&req("vpn", None, &code(1), Some(&state)));
        assert_eq!(d.verdict, Verdict::Reject, "{d:?}");
        assert!(d.reason.contains("unknown or already used"), "{d:?}");
    }
}

#[test]
fn a_state_sent_to_both_nodes_at_once_is_used_once() {
    let n = Nodes::new(TWO_STEP);
    for round in 0..20u64 {
        let d = n.a.check(&req("vpn", None, "1234", None));
        let state = d.state.expect("state");
        // Two codes that are both valid, so only the State decides.
        let (ca, cb) = (code(2 * round), code(2 * round + 1));
        let (da, db) = std::thread::scope(|s| {
            let ta = s.spawn(|| n.a.check(&req("vpn", None, &ca, Some(&state))));
            let tb = s.spawn(|| n.b.check(&req("vpn", None, &cb, Some(&state))));
            (ta.join().expect("a"), tb.join().expect("b"))
        });
        let accepts = [&da, &db]
            .iter()
            .filter(|d| d.verdict == Verdict::Accept)
            .count();
        assert_eq!(accepts, 1, "round {round}: {da:?} {db:?}");
    }
}

#[test]
fn failures_split_over_two_nodes_lock_the_account_at_the_total() {
    // No delay before the lock and no source limits: only the account's count decides.
    let n =
        Nodes::new("[lockout]\nfree_failures = 4\nmax_failures = 4\nper_source_max_failures = 0\n");
    for (i, node) in [&n.a, &n.b, &n.a, &n.b].into_iter().enumerate() {
        let d = node.check(&req("ssh", None, "1234000000", None));
        assert_eq!(d.verdict, Verdict::Reject, "{d:?}");
        assert!(
            d.reason.contains(&format!("{} failures", i + 1)),
            "{i}: {d:?}"
        );
    }
    // Locked on both nodes, for the right code too.
    for node in [&n.a, &n.b] {
        let d = node.check(&req("ssh", None, &format!("1234{}", code(0)), None));
        assert_eq!(d.verdict, Verdict::Reject, "{d:?}");
        assert!(d.reason.contains("locked"), "{d:?}");
    }
    let row = n
        .admin
        .store
        .account("alice")
        .expect("read")
        .expect("alice");
    assert_eq!(row.failures, 4);
    assert!(row.locked_until.is_some());
}

#[test]
fn failures_from_a_familiar_source_add_up_over_two_nodes() {
    let n =
        Nodes::new("[lockout]\nfree_failures = 4\nmax_failures = 4\nper_source_max_failures = 0\n");
    let home = Some("198.51.100.7");
    let d =
        n.a.check(&req("ssh", home, &format!("1234{}", code(0)), None));
    assert_eq!(d.verdict, Verdict::Accept, "{d:?}");
    // The familiar source is a queued write; it lands with the next durable one.
    let mut familiar = false;
    for _ in 0..100 {
        let row = n
            .admin
            .store
            .account("alice")
            .expect("read")
            .expect("alice");
        familiar = row.familiar_sources.iter().any(|s| s == "198.51.100.7");
        if familiar {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(familiar, "the source became familiar");
    n.clock.advance(10);
    for (i, node) in [&n.a, &n.b, &n.a, &n.b].into_iter().enumerate() {
        let d = node.check(&req("ssh", home, "1234000000", None));
        assert!(
            d.reason
                .contains(&format!("{} failures in a row from familiar", i + 1)),
            "{i}: {d:?}"
        );
    }
    for node in [&n.a, &n.b] {
        let d = node.check(&req("ssh", home, &format!("1234{}", code(1)), None));
        assert_eq!(d.verdict, Verdict::Reject, "{d:?}");
        assert!(d.reason.contains("locked"), "{d:?}");
    }
    // Elsewhere the user still gets in (the unfamiliar bucket is clean).
    let d = n.b.check(&req(
        "ssh",
        Some("203.0.113.9"),
        &format!("1234{}", code(1)),
        None,
    ));
    assert_eq!(d.verdict, Verdict::Accept, "{d:?}");
    // That success from elsewhere cleared both buckets on B; lock the familiar one again.
    n.clock.advance(10);
    for node in [&n.a, &n.b, &n.a, &n.b] {
        node.check(&req("ssh", home, "1234000000", None));
    }
    let d =
        n.a.check(&req("ssh", home, &format!("1234{}", code(2)), None));
    assert!(d.reason.contains("locked"), "{d:?}");
    // The admin's unlock ends the familiar lock on every node, also on one that never saw
    // the account before (no memory of its own to reset).
    n.admin.unlock("alice").expect("unlock");
    let fresh = Engine::with_clock(
        Arc::new(n.a.config().clone()),
        n.admin.store.clone(),
        n.admin.keys.clone(),
        n.clock.clone(),
    )
    .with_shared(n.a.shared.clone());
    n.clock.advance(10);
    let d = fresh.check(&req("ssh", home, &format!("1234{}", code(2)), None));
    assert_eq!(d.verdict, Verdict::Accept, "{d:?}");
}

#[test]
fn a_source_is_blocked_by_failures_on_both_nodes() {
    let n = Nodes::new(
        "[lockout]\nfree_failures = 10\nmax_failures = 20\nper_source_max_failures = 3\n",
    );
    let from = Some("203.0.113.66");
    for node in [&n.a, &n.b, &n.a] {
        let d = node.check(&req("ssh", from, "1234000000", None));
        assert_eq!(d.verdict, Verdict::Reject, "{d:?}");
    }
    let d =
        n.b.check(&req("ssh", from, &format!("1234{}", code(0)), None));
    assert_eq!(d.verdict, Verdict::Reject, "{d:?}");
    assert!(d.reason.contains("source address blocked"), "{d:?}");
}

#[test]
fn the_relogin_cache_hits_on_the_other_node() {
    let n = Nodes::new("[services.web]\nrelogin_cache = true\n");
    let pw = format!("1234{}", code(0));
    let webmail = Some("192.0.2.10");
    let d = n.a.check(&req("web", webmail, &pw, None));
    assert_eq!(d.verdict, Verdict::Accept, "{d:?}");
    let d = n.b.check(&req("web", webmail, &pw, None));
    assert_eq!(d.verdict, Verdict::Accept, "{d:?}");
    assert!(d.reason.contains("re-login cache"), "{d:?}");
}
