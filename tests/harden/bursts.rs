//! Requests that arrive together: the RADIUS front-end decides the datagrams waiting on its
//! socket after one pass of the account cache's barrier (src/front/radius/waiting.rs). The
//! attack is the stale cache's: a change made elsewhere, then at once a burst in which the
//! victim's request sits among others, so that it is decided in a group whose barrier must
//! still have begun after the change.

use super::{access_request, response_ok, Nas, Request, ACCESS_ACCEPT, ACCESS_REJECT};
use crate::common::{hotp_code, Env};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Requests in one burst: as many as the front-end takes together at most.
pub const BURST: usize = 16;

/// `[radius]` on `port` with the client `nas` (127.0.0.1, class vpn), for `Env::with_tables`.
pub fn radius_tables(port: u16) -> String {
    format!(
        "[radius]\nlisten = [\"127.0.0.1:{port}\"]\n\
         [[radius.clients]]\nname = \"nas\"\naddress = \"127.0.0.1\"\n\
         secret = \"{}\"\nservice = \"vpn\"\n",
        super::SECRET
    )
}

/// Sends every request at once from one socket, then collects the answers (matched by
/// identifier and Response Authenticator) within 10 s: each answer's code, `None` if none came.
pub fn burst(nas: &Nas, reqs: &[Request]) -> Vec<Option<u8>> {
    for r in reqs {
        nas.send(&r.bytes);
    }
    let by_id: HashMap<u8, usize> = reqs
        .iter()
        .enumerate()
        .map(|(i, r)| (r.bytes[1], i))
        .collect();
    let mut codes = vec![None; reqs.len()];
    let deadline = Instant::now() + Duration::from_secs(10);
    while codes.iter().any(Option::is_none) {
        let Some(a) = nas.recv(deadline.saturating_duration_since(Instant::now())) else {
            break;
        };
        if let Some(&i) = a.get(1).and_then(|id| by_id.get(id)) {
            if a.len() >= 20 && response_ok(&a, &reqs[i]) {
                codes[i] = Some(a[0]);
            }
        }
    }
    codes
}

/// ann's token disabled 20 times by `admin` (the CLI of another process, or of another node),
/// each time followed at once by a burst to the daemon on RADIUS `port` of ann's next code
/// among the codes of 15 other users whose accounts it holds too; ann's must be refused every
/// time and accepted once the token is enabled again. ann and the others are enrolled
/// through `admin`. Returns how many bursts were sent.
pub fn disabled_token_in_bursts(port: u16, admin: &Env) -> usize {
    let serial = admin.enrol("ann", "1234", "hotp", "everywhere");
    let others: Vec<String> = (0..BURST - 1).map(|i| format!("load{i:02}")).collect();
    for u in &others {
        admin.enrol(u, "1234", "hotp", "everywhere");
    }
    let nas = Nas::new(port);
    let mut id = 0u8;
    let mut next_id = || {
        id = id.wrapping_add(1);
        id
    };
    let (mut ann, mut load) = (0u64, 0u64);
    let mut bursts = 0;
    // A burst of everyone, ann's code at `at`: the verdicts, ann's first.
    let mut send =
        |ann_code: &str, load_counter: u64, at: usize| -> (Option<u8>, Vec<Option<u8>>) {
            let pw = format!("1234{}", hotp_code(load_counter));
            let mut reqs: Vec<Request> = others
                .iter()
                .map(|u| access_request(next_id(), u.as_bytes(), pw.as_bytes(), &[]))
                .collect();
            let at = at.min(reqs.len());
            let ann_pw = format!("1234{ann_code}");
            reqs.insert(
                at,
                access_request(next_id(), b"ann", ann_pw.as_bytes(), &[]),
            );
            let mut codes = burst(&nas, &reqs);
            bursts += 1;
            let ann_verdict = codes.remove(at);
            (ann_verdict, codes)
        };
    // Twice before the attack, so that `login` holds every account (a first read may be
    // evicted by the enrolment's own change, announced after it).
    for _ in 0..2 {
        let (a, rest) = send(&hotp_code(ann), load, 0);
        assert_eq!(a, Some(ACCESS_ACCEPT), "ann before the attack");
        assert!(
            rest.iter().all(|c| *c == Some(ACCESS_ACCEPT)),
            "the others before: {rest:?}"
        );
        ann += 1;
        load += 1;
    }
    for round in 0..20 {
        let at = round % BURST;
        admin.ok(&["token", "disable", &serial], None);
        let (a, rest) = send(&hotp_code(ann), load, at);
        assert_eq!(
            a,
            Some(ACCESS_REJECT),
            "round {round}: ann's disabled token at {at}"
        );
        assert!(
            rest.iter().all(|c| *c == Some(ACCESS_ACCEPT)),
            "round {round}: {rest:?}"
        );
        load += 1;
        admin.ok(&["token", "enable", &serial], None);
        // The refused code was not spent: enabled again, it is accepted at once.
        let (a, rest) = send(&hotp_code(ann), load, BURST - 1 - at);
        assert_eq!(a, Some(ACCESS_ACCEPT), "round {round}: ann enabled again");
        assert!(
            rest.iter().all(|c| *c == Some(ACCESS_ACCEPT)),
            "round {round}: {rest:?}"
        );
        ann += 1;
        load += 1;
    }
    bursts
}
