//! What happened to datagrams: counters for the stop summary and the metrics, and the
//! rate-limited log lines that go with them.

use super::wire::Dropped;
use crate::metrics::{self, Drop as MDrop};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One log line per kind of trouble per this interval; the rest are counted.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Counters of what happened to datagrams; logged when the server stops and with every
/// rate-limited line.
#[derive(Default)]
pub struct Stats {
    pub received: AtomicU64,
    pub answered: AtomicU64,
    pub unknown_source: AtomicU64,
    pub malformed: AtomicU64,
    pub unknown_code: AtomicU64,
    pub no_message_authenticator: AtomicU64,
    pub bad_message_authenticator: AtomicU64,
    pub duplicates_answered: AtomicU64,
    pub duplicates_in_progress: AtomicU64,
    pub overload: AtomicU64,
    /// Of `overload`: dropped because their source address had its share in flight.
    pub overload_source: AtomicU64,
    pub not_pap: AtomicU64,
    pub failed: AtomicU64,
}

pub(super) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Stats {
    pub fn summary(&self) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "received {}, answered {}, unknown source {}, malformed {}, unknown code {}, \
             no Message-Authenticator {}, bad Message-Authenticator {}, duplicates answered \
             from cache {}, duplicates dropped while in progress {}, dropped for load {}, \
             of them over one source's share {}, refused as not PAP {}, failed {}",
            g(&self.received),
            g(&self.answered),
            g(&self.unknown_source),
            g(&self.malformed),
            g(&self.unknown_code),
            g(&self.no_message_authenticator),
            g(&self.bad_message_authenticator),
            g(&self.duplicates_answered),
            g(&self.duplicates_in_progress),
            g(&self.overload),
            g(&self.overload_source),
            g(&self.not_pap),
            g(&self.failed),
        )
    }

    pub(super) fn count_drop(&self, d: Dropped) {
        let m = metrics::get();
        match d {
            Dropped::UnknownCode(_) => {
                inc(&self.unknown_code);
                m.radius_dropped(MDrop::Malformed);
            }
            Dropped::NoMessageAuthenticator => {
                inc(&self.no_message_authenticator);
                m.radius_dropped(MDrop::BadAuthenticator);
            }
            Dropped::BadMessageAuthenticator => {
                inc(&self.bad_message_authenticator);
                m.radius_dropped(MDrop::BadAuthenticator);
            }
            Dropped::Encode => inc(&self.failed),
            _ => {
                inc(&self.malformed);
                m.radius_dropped(MDrop::Malformed);
            }
        }
    }
}

/// At most one log line per interval (`LOG_EVERY`), whatever the count; says how many were
/// held back.
pub(super) struct LogPerInterval {
    last: Mutex<(Option<Instant>, u64)>,
}

impl LogPerInterval {
    pub(super) fn new() -> LogPerInterval {
        LogPerInterval {
            last: Mutex::new((None, 0)),
        }
    }

    /// `Some(held back since the last line)` when a line may be written now.
    pub(super) fn allow(&self) -> Option<u64> {
        let mut g = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match g.0 {
            Some(t) if now.saturating_duration_since(t) < LOG_EVERY => {
                g.1 += 1;
                None
            }
            _ => {
                let held = g.1;
                *g = (Some(now), 0);
                Some(held)
            }
        }
    }
}

/// One [`LogPerInterval`] per kind of trouble, so a flood of one kind does not hide another.
pub(super) struct DropLogs {
    pub(super) unknown_source: LogPerInterval,
    pub(super) dropped: LogPerInterval,
    pub(super) overload: LogPerInterval,
    pub(super) overload_source: LogPerInterval,
    pub(super) not_pap: LogPerInterval,
    pub(super) io: LogPerInterval,
}
