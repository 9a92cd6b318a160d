//! Counters and histograms for monitoring, rendered in Prometheus' text format.
//!
//! One process-wide set of atomics: every front-end and the store add to it without locks or
//! plumbing, and the `/metrics` endpoint and `otpd status` read it. Labels are closed enums,
//! so the number of series is fixed and an attacker cannot grow it.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::model::Verdict;

pub mod phase;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frontend {
    Radius,
    Socket,
    Http,
}

const FRONTENDS: [Frontend; 3] = [Frontend::Radius, Frontend::Socket, Frontend::Http];

impl Frontend {
    fn as_str(self) -> &'static str {
        match self {
            Frontend::Radius => "radius",
            Frontend::Socket => "socket",
            Frontend::Http => "http",
        }
    }
    fn idx(self) -> usize {
        self as usize
    }
}

const VERDICTS: [Verdict; 5] = [
    Verdict::Accept,
    Verdict::Reject,
    Verdict::Challenge,
    Verdict::Defer,
    Verdict::Deny,
];

fn verdict_idx(v: Verdict) -> usize {
    match v {
        Verdict::Accept => 0,
        Verdict::Reject => 1,
        Verdict::Challenge => 2,
        Verdict::Defer => 3,
        Verdict::Deny => 4,
    }
}

/// Why a RADIUS datagram got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// The source address is no configured client.
    UnknownClient,
    /// Not a well-formed RADIUS packet (length, attributes, code).
    Malformed,
    /// Message-Authenticator wrong, or missing where the client requires it.
    BadAuthenticator,
    /// More requests in flight than `radius.max_in_flight`.
    Overload,
    /// A retransmission of a request that is still being validated.
    InProgress,
}

const DROPS: [Drop; 5] = [
    Drop::UnknownClient,
    Drop::Malformed,
    Drop::BadAuthenticator,
    Drop::Overload,
    Drop::InProgress,
];

impl Drop {
    fn as_str(self) -> &'static str {
        match self {
            Drop::UnknownClient => "unknown_client",
            Drop::Malformed => "malformed",
            Drop::BadAuthenticator => "bad_authenticator",
            Drop::Overload => "overload",
            Drop::InProgress => "in_progress",
        }
    }
}

/// A cumulative histogram with fixed bucket bounds.
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    /// Sum of observations in micro-units (µs for seconds, or the value × 1e6), so the sum
    /// stays an integer atomic.
    sum_micro: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micro: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.sum_micro.fetch_add((v.max(0.0) * 1e6) as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    pub fn observe_duration(&self, d: Duration) {
        self.observe(d.as_secs_f64());
    }

    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cum = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (b, n) in self.bounds.iter().zip(&self.buckets) {
            cum += n.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cum}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_micro.load(Relaxed) as f64 / 1e6;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

const LATENCY_BOUNDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
const BATCH_BOUNDS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

pub struct Metrics {
    started: Instant,
    requests: Vec<AtomicU64>,
    latency: Vec<Histogram>,
    radius_dropped: Vec<AtomicU64>,
    radius_duplicates: AtomicU64,
    radius_status_server: AtomicU64,
    relogin_hits: AtomicU64,
    account_cache_hits: AtomicU64,
    account_cache_misses: AtomicU64,
    lockouts: AtomicU64,
    socket_refused: AtomicU64,
    reloads: AtomicU64,
    reload_failures: AtomicU64,
    pub store_commit: Histogram,
    pub store_batch: Histogram,
    pub phase_cpu: phase::PhaseCpu,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// The process-wide metrics.
pub fn get() -> &'static Metrics {
    METRICS.get_or_init(|| Metrics {
        started: Instant::now(),
        requests: (0..FRONTENDS.len() * VERDICTS.len())
            .map(|_| AtomicU64::new(0))
            .collect(),
        latency: FRONTENDS
            .iter()
            .map(|_| Histogram::new(LATENCY_BOUNDS))
            .collect(),
        radius_dropped: DROPS.iter().map(|_| AtomicU64::new(0)).collect(),
        radius_duplicates: AtomicU64::new(0),
        radius_status_server: AtomicU64::new(0),
        relogin_hits: AtomicU64::new(0),
        account_cache_hits: AtomicU64::new(0),
        account_cache_misses: AtomicU64::new(0),
        lockouts: AtomicU64::new(0),
        socket_refused: AtomicU64::new(0),
        reloads: AtomicU64::new(0),
        reload_failures: AtomicU64::new(0),
        store_commit: Histogram::new(LATENCY_BOUNDS),
        store_batch: Histogram::new(BATCH_BOUNDS),
        phase_cpu: phase::PhaseCpu::default(),
    })
}

impl Metrics {
    /// One answered login: its verdict and how long the front-end took from bytes in to
    /// bytes out.
    pub fn request(&self, fe: Frontend, verdict: Verdict, took: Duration) {
        self.requests[fe.idx() * VERDICTS.len() + verdict_idx(verdict)].fetch_add(1, Relaxed);
        self.latency[fe.idx()].observe_duration(took);
    }

    pub fn radius_dropped(&self, why: Drop) {
        self.radius_dropped[why as usize].fetch_add(1, Relaxed);
    }

    pub fn radius_duplicate(&self) {
        self.radius_duplicates.fetch_add(1, Relaxed);
    }

    pub fn radius_status_server(&self) {
        self.radius_status_server.fetch_add(1, Relaxed);
    }

    pub fn relogin_hit(&self) {
        self.relogin_hits.fetch_add(1, Relaxed);
    }

    /// A login's account found in the account cache (`hit`) or read from the database
    /// while the cache is on.
    pub fn account_cache(&self, hit: bool) {
        if hit {
            self.account_cache_hits.fetch_add(1, Relaxed);
        } else {
            self.account_cache_misses.fetch_add(1, Relaxed);
        }
    }

    pub fn lockout(&self) {
        self.lockouts.fetch_add(1, Relaxed);
    }

    pub fn socket_refused(&self) {
        self.socket_refused.fetch_add(1, Relaxed);
    }

    pub fn reload(&self, ok: bool) {
        if ok {
            self.reloads.fetch_add(1, Relaxed);
        } else {
            self.reload_failures.fetch_add(1, Relaxed);
        }
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Logins answered since start, by verdict, over all front-ends.
    pub fn totals_by_verdict(&self) -> Vec<(&'static str, u64)> {
        VERDICTS
            .iter()
            .map(|v| {
                let n = FRONTENDS
                    .iter()
                    .map(|fe| {
                        self.requests[fe.idx() * VERDICTS.len() + verdict_idx(*v)].load(Relaxed)
                    })
                    .sum();
                (v.as_str(), n)
            })
            .collect()
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut o = String::with_capacity(8192);
        let _ = writeln!(
            o,
            "# HELP otpd_build_info Version of the running otpd.\n# TYPE otpd_build_info gauge\n\
             otpd_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        let _ = writeln!(
            o,
            "# HELP otpd_uptime_seconds Seconds since the daemon started.\n\
             # TYPE otpd_uptime_seconds gauge\notpd_uptime_seconds {}",
            self.uptime().as_secs()
        );
        o.push_str(
            "# HELP otpd_requests_total Logins answered, by front-end and verdict.\n\
             # TYPE otpd_requests_total counter\n",
        );
        for fe in FRONTENDS {
            for v in VERDICTS {
                let n = self.requests[fe.idx() * VERDICTS.len() + verdict_idx(v)].load(Relaxed);
                let _ = writeln!(
                    o,
                    "otpd_requests_total{{frontend=\"{}\",verdict=\"{}\"}} {n}",
                    fe.as_str(),
                    v.as_str()
                );
            }
        }
        o.push_str(
            "# HELP otpd_request_duration_seconds Time from request in to answer out.\n\
             # TYPE otpd_request_duration_seconds histogram\n",
        );
        for fe in FRONTENDS {
            self.latency[fe.idx()].render(
                &mut o,
                "otpd_request_duration_seconds",
                &format!("frontend=\"{}\"", fe.as_str()),
            );
        }
        o.push_str(
            "# HELP otpd_radius_dropped_total RADIUS datagrams dropped without an answer.\n\
             # TYPE otpd_radius_dropped_total counter\n",
        );
        for d in DROPS {
            let _ = writeln!(
                o,
                "otpd_radius_dropped_total{{reason=\"{}\"}} {}",
                d.as_str(),
                self.radius_dropped[d as usize].load(Relaxed)
            );
        }
        let simple: [(&str, &str, &AtomicU64); 9] = [
            (
                "otpd_radius_duplicates_total",
                "RADIUS retransmissions answered from the duplicate cache.",
                &self.radius_duplicates,
            ),
            (
                "otpd_radius_status_server_total",
                "RADIUS Status-Server requests answered.",
                &self.radius_status_server,
            ),
            (
                "otpd_relogin_cache_hits_total",
                "Logins accepted from the re-login cache.",
                &self.relogin_hits,
            ),
            (
                "otpd_account_cache_hits_total",
                "Logins whose account and tokens came from the account cache.",
                &self.account_cache_hits,
            ),
            (
                "otpd_account_cache_misses_total",
                "Logins that read their account from the database while the cache was on.",
                &self.account_cache_misses,
            ),
            (
                "otpd_lockouts_total",
                "Accounts locked after too many failures.",
                &self.lockouts,
            ),
            (
                "otpd_socket_refused_total",
                "Unix socket connections refused (peer not allowed, too many connections).",
                &self.socket_refused,
            ),
            (
                "otpd_reloads_total",
                "Configuration reloads that took effect.",
                &self.reloads,
            ),
            (
                "otpd_reload_failures_total",
                "Configuration reloads refused (the old configuration stayed).",
                &self.reload_failures,
            ),
        ];
        for (name, help, v) in simple {
            let _ = writeln!(
                o,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Relaxed)
            );
        }
        o.push_str(
            "# HELP otpd_store_commit_duration_seconds Time of one durable store commit.\n\
             # TYPE otpd_store_commit_duration_seconds histogram\n",
        );
        self.store_commit
            .render(&mut o, "otpd_store_commit_duration_seconds", "");
        o.push_str(
            "# HELP otpd_store_commit_batch_size Writes made durable by one commit.\n\
             # TYPE otpd_store_commit_batch_size histogram\n",
        );
        self.store_batch
            .render(&mut o, "otpd_store_commit_batch_size", "");
        self.phase_cpu.render(&mut o);
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_counts_overflow() {
        let h = Histogram::new(&[1.0, 2.0]);
        h.observe(0.5);
        h.observe(1.5);
        h.observe(3.0);
        let mut s = String::new();
        h.render(&mut s, "x", "");
        assert!(s.contains("x_bucket{le=\"1\"} 1\n"), "{s}");
        assert!(s.contains("x_bucket{le=\"2\"} 2\n"), "{s}");
        assert!(s.contains("x_bucket{le=\"+Inf\"} 3\n"), "{s}");
        assert!(s.contains("x_sum 5\n"), "{s}");
        assert!(s.contains("x_count 3\n"), "{s}");
    }

    #[test]
    fn render_has_every_family_once() {
        let m = get();
        m.request(
            Frontend::Radius,
            Verdict::Accept,
            Duration::from_micros(300),
        );
        m.radius_dropped(Drop::Malformed);
        let text = m.render();
        for family in [
            "otpd_requests_total",
            "otpd_request_duration_seconds",
            "otpd_radius_dropped_total",
            "otpd_radius_duplicates_total",
            "otpd_relogin_cache_hits_total",
            "otpd_account_cache_hits_total",
            "otpd_account_cache_misses_total",
            "otpd_lockouts_total",
            "otpd_store_commit_duration_seconds",
            "otpd_store_commit_batch_size",
            "otpd_login_cpu_seconds",
        ] {
            assert_eq!(
                text.matches(&format!("# TYPE {family} ")).count(),
                1,
                "{family}"
            );
        }
        assert!(text.contains("otpd_requests_total{frontend=\"radius\",verdict=\"accept\"}"));
    }
}
