//! What one worker counted, merged into one result per window, and the daemon's CPU and
//! memory read from /proc.

use serde::Serialize;
use std::time::Duration;

#[derive(Default)]
pub struct Counts {
    pub sent: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub other: u64,
    pub lost: u64,
    pub retransmits: u64,
    /// Replies that failed a check (length, authenticators, unknown identifier).
    pub bad_replies: u64,
    /// Replies to a request already given up (after its retransmissions).
    pub late: u64,
    /// Replayed codes accepted because they are also the code of a counter just ahead (a
    /// 6-digit HOTP code repeats about once in a million counters): not a double accept.
    pub coincident: u64,
    /// Latencies in microseconds, first send to answer.
    pub latencies_us: Vec<u32>,
}

impl Counts {
    pub fn merge(&mut self, o: Counts) {
        self.sent += o.sent;
        self.accepted += o.accepted;
        self.rejected += o.rejected;
        self.other += o.other;
        self.lost += o.lost;
        self.retransmits += o.retransmits;
        self.bad_replies += o.bad_replies;
        self.late += o.late;
        self.coincident += o.coincident;
        self.latencies_us.extend(o.latencies_us);
    }
}

#[derive(Serialize, Default, Clone)]
pub struct Report {
    pub target: String,
    pub mode: String,
    pub window: usize,
    pub connections: usize,
    pub seconds: f64,
    pub sent: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub other: u64,
    pub lost: u64,
    pub retransmits: u64,
    pub bad_replies: u64,
    pub late: u64,
    pub requests_per_s: f64,
    pub accepts_per_s: f64,
    /// Mean latency: at window 1 a server's rate is its inverse.
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The daemon's CPU seconds (user + system) during the window, if `--pid` was given.
    pub daemon_cpu_s: Option<f64>,
    /// The daemon's CPU per request, in microseconds.
    pub daemon_cpu_us_per_req: Option<f64>,
    /// The daemon's peak resident memory so far (VmHWM), in KiB.
    pub daemon_peak_rss_kib: Option<u64>,
    /// This load generator's own CPU seconds during the window.
    pub generator_cpu_s: f64,
    /// What the daemon's metrics counted during the measured seconds (`--metrics`).
    pub daemon_metrics: Option<std::collections::BTreeMap<String, f64>>,
}

impl Report {
    pub fn new(target: &str, mode: &str, window: usize, connections: usize) -> Report {
        Report {
            target: target.into(),
            mode: mode.into(),
            window,
            connections,
            ..Report::default()
        }
    }

    pub fn fill(&mut self, mut c: Counts, took: Duration) {
        let secs = took.as_secs_f64().max(1e-9);
        self.seconds = secs;
        self.sent = c.sent;
        self.accepted = c.accepted;
        self.rejected = c.rejected;
        self.other = c.other;
        self.lost = c.lost;
        self.retransmits = c.retransmits;
        self.bad_replies = c.bad_replies;
        self.late = c.late;
        self.requests_per_s = (c.accepted + c.rejected + c.other) as f64 / secs;
        self.accepts_per_s = c.accepted as f64 / secs;
        c.latencies_us.sort_unstable();
        if !c.latencies_us.is_empty() {
            let sum: u64 = c.latencies_us.iter().map(|v| u64::from(*v)).sum();
            self.mean_ms = sum as f64 / c.latencies_us.len() as f64 / 1000.0;
        }
        let pct = |p: f64| -> f64 {
            if c.latencies_us.is_empty() {
                return 0.0;
            }
            let i = ((c.latencies_us.len() as f64 * p).ceil() as usize)
                .clamp(1, c.latencies_us.len())
                - 1;
            f64::from(c.latencies_us[i]) / 1000.0
        };
        self.p50_ms = pct(0.50);
        self.p90_ms = pct(0.90);
        self.p99_ms = pct(0.99);
        self.max_ms = pct(1.0);
    }

    pub fn header() -> String {
        format!(
            "{:<10} {:<6} {:>6} {:>9} {:>9} {:>7} {:>5} {:>7} {:>9} {:>7} {:>7} {:>7} {:>7} {:>8} {:>9}",
            "target", "mode", "window", "sent", "accepted", "rejected", "lost", "retrans",
            "accept/s", "p50ms", "p90ms", "p99ms", "maxms", "cpu_us/r", "peak_rss"
        )
    }

    pub fn line(&self) -> String {
        format!(
            "{:<10} {:<6} {:>6} {:>9} {:>9} {:>7} {:>5} {:>7} {:>9.0} {:>7.3} {:>7.3} {:>7.3} {:>7.2} {:>8} {:>9}",
            self.target,
            self.mode,
            self.window,
            self.sent,
            self.accepted,
            self.rejected + self.other,
            self.lost,
            self.retransmits,
            self.accepts_per_s,
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.max_ms,
            self.daemon_cpu_us_per_req
                .map(|v| format!("{v:.1}"))
                .unwrap_or_else(|| "-".into()),
            self.daemon_peak_rss_kib
                .map(|v| format!("{:.1}M", v as f64 / 1024.0))
                .unwrap_or_else(|| "-".into()),
        )
    }
}

/// CPU seconds (user + system) of a process so far, from /proc/PID/stat.
pub fn proc_cpu(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields start after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the man page (utime, stime) are 11 and 12 after the state field.
    let ut: f64 = f.get(11)?.parse().ok()?;
    let st: f64 = f.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((ut + st) / tck.max(1.0))
}

/// Peak resident set size (VmHWM) of a process, in KiB.
pub fn proc_peak_rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// This process's CPU seconds so far.
pub fn self_cpu() -> f64 {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct we pass; RUSAGE_SELF is always valid.
    let ru = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr());
        ru.assume_init()
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}
