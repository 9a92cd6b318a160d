//! Timing benchmark (issue: hardening): does the answer time tell an unknown user, a wrong PIN,
//! an account without an active token and a wrong code apart? Runs the real engine on a real
//! on-disk store, with the kinds of failed login interleaved in random order so drift of the
//! machine hits all alike, and prints the distribution of each and the differences of the
//! medians.
//!
//!   cargo run --release --example timing [-- SAMPLES [PACE_MS]]
//!
//! Lockout and per-source limits are off here: with them on, guessing is refused unseen after
//! a few failures, which is faster for every kind alike and would hide the comparison.
use otpd::admin::{self, Admin, TokenOptions};
use otpd::config::{Config, UnknownUser};
use otpd::engine::{CheckRequest, Engine};
use otpd::model::{TokenKind, TokenState};
use otpd::tokens::oath::Algorithm;
use std::sync::Arc;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let samples = arg(1, "SAMPLES", 3000)? as usize;
    // Milliseconds between logins: a prober that waits longer than the audit's 2 ms linger
    // gets each login committed in a batch of its own (0: back to back).
    let pace_ms = arg(2, "PACE_MS", 0)?;
    let dir = tempfile::tempdir()?;
    let mut cfg = Config {
        data_dir: dir.path().to_path_buf(),
        unknown_user: UnknownUser::Reject,
        ..Config::default()
    };
    cfg.lockout.free_failures = u32::MAX;
    cfg.lockout.max_failures = 0;
    cfg.lockout.per_source_max_failures = 0;
    cfg.lockout.source_max_failures = 0;
    let cfg = Arc::new(cfg.finish()?);
    admin::init(&cfg)?;
    let (store, keys) = admin::open(&cfg)?;
    let a = Admin::new(cfg.clone(), store.clone(), keys.clone());
    // Alice: PIN + TOTP everywhere. Bob: the same, but his only token is switched off, so his
    // logins find no active token. Carol: her level asks mail clients for an app password,
    // and she has one.
    let mut serials = Vec::new();
    for (user, level) in [
        ("alice", "everywhere"),
        ("bob", "everywhere"),
        ("carol", "app-passwords"),
    ] {
        a.add_user(user, Some("1234"), None)?;
        let enrolled = a.add_token(
            user,
            TokenOptions {
                kind: TokenKind::Totp,
                secret_b32: Some("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ".to_string().into()),
                digits: 6,
                algorithm: Algorithm::Sha1,
                period: 30,
                label: String::new(),
                active: true,
            },
        )?;
        a.set_user(user, None, Some(level))?;
        serials.push(enrolled.token.serial);
    }
    a.set_token_state(&serials[1], TokenState::Disabled)?;
    a.add_app_password("carol", "laptop", &[])?;
    let engine = Engine::new(cfg.clone(), store, keys);

    // "\x08\n\r\x7fINCORRECT" is what sshd sends for logins it refuses itself; it is not
    // counted, whoever the user is.
    let kinds: [(&str, &str, &str, &str); 7] = [
        ("unknown user", "mallory", "1234000000", "vpn"),
        ("wrong PIN", "alice", "9999000000", "vpn"),
        ("no active token", "bob", "1234000000", "vpn"),
        ("filler, unknown", "mallory", "\x08\n\r\x7fINCORRECT", "vpn"),
        ("filler, known", "alice", "\x08\n\r\x7fINCORRECT", "vpn"),
        ("wrong app pw", "carol", "abcdabcdabcdabcdabcd", "mail"),
        ("wrong code", "alice", "1234000000", "vpn"),
    ];
    let n = kinds.len();
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut order: Vec<usize> = (0..samples * n).map(|i| i % n).collect();
    shuffle(&mut order);
    // Warm-up: caches, prepared statements, page cache.
    for k in kinds.iter().cycle().take(300) {
        check(&engine, k.1, k.2, k.3);
    }
    for &i in &order {
        let (_, user, pw, service) = kinds[i];
        if pace_ms > 0 {
            std::thread::sleep(std::time::Duration::from_millis(pace_ms));
        }
        let t = Instant::now();
        let verdict = check(&engine, user, pw, service);
        times[i].push(t.elapsed().as_secs_f64() * 1e6);
        assert_eq!(verdict, "reject", "{} must be rejected", kinds[i].0);
    }
    println!(
        "answer time of a failed login, µs ({samples} samples each, interleaved, {pace_ms} ms apart)"
    );
    println!(
        "{:<16} {:>9} {:>9} {:>9} {:>9}",
        "kind", "p10", "median", "p90", "p99"
    );
    let mut medians = Vec::new();
    for (i, t) in times.iter_mut().enumerate() {
        t.sort_by(f64::total_cmp);
        let q = |p: f64| t[((t.len() as f64 - 1.0) * p) as usize];
        medians.push(q(0.5));
        println!(
            "{:<16} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            kinds[i].0,
            q(0.1),
            q(0.5),
            q(0.9),
            q(0.99)
        );
    }
    let base = medians[n - 1];
    for (i, m) in medians.iter().enumerate().take(n - 1) {
        println!(
            "median {} - median wrong code: {:+.1} µs ({:+.1} %)",
            kinds[i].0,
            m - base,
            (m - base) / base * 100.0
        );
    }
    Ok(())
}

/// The `n`th argument as a whole number, `default` when it is missing.
fn arg(n: usize, name: &str, default: u64) -> Result<u64, String> {
    match std::env::args().nth(n) {
        None => Ok(default),
        Some(s) => s.parse().map_err(|_| {
            format!("{name} must be a whole number, not `{s}` (usage: timing [SAMPLES [PACE_MS]])")
        }),
    }
}

fn check(engine: &Engine, user: &str, password: &str, service: &str) -> &'static str {
    engine
        .check(&CheckRequest {
            user: user.into(),
            password: password.to_string().into(),
            service: service.into(),
            rhost: Some("192.0.2.1".into()),
            client: Some("timing".into()),
            state: None,
            defer_is_reject: false,
        })
        .verdict
        .as_str()
}

/// Fisher-Yates with the OS's randomness; the order only has to be unpredictable to the
/// machine's periodic noise, not to an attacker.
fn shuffle(v: &mut [usize]) {
    for i in (1..v.len()).rev() {
        let j = otpd::crypto::random_below(i as u32 + 1).unwrap_or(0) as usize;
        v.swap(i, j);
    }
}
