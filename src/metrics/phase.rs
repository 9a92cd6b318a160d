//! Where a login's CPU goes: receive, decide, commit, send, measured on a sample of logins.
//!
//! The time is the thread's own CPU clock, so a thread that sleeps (in `recvfrom`, on the
//! queue) is not charged for the sleep, and a thread preempted by the load generator on a
//! busy machine is not charged for the other process either. That clock is a system call
//! (about 1 µs on the benchmark's VM, where the monotonic clock is a tenth of that), so only
//! one login in [`SAMPLE_EVERY`] per thread is timed: a few nanoseconds per login on
//! average, relaxed atomics, nothing allocated.

use std::cell::Cell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// One login (or commit, or answer) in this many is timed, per thread.
pub const SAMPLE_EVERY: u32 = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `recvfrom` to a parsed, authenticated request (the duplicate check included). Of
    /// datagrams decided together (RADIUS), the first carries the others' `recvfrom` and the
    /// account cache's barrier for all of them, which is a login's read otherwise (Decide).
    Receive,
    /// The engine's decision: the account's read, the gate, the code, the write queued (a
    /// write the login commits on its own thread is not counted here but as a commit).
    Decide,
    /// One commit of the store's writer, or of a login on its own thread (`BEGIN` to
    /// `COMMIT`, the fsync's system call included): per commit, not per login.
    Commit,
    /// Encoding, signing and sending the answer, on whichever thread sends it.
    Send,
}

pub(super) const PHASES: [Phase; 4] = [Phase::Receive, Phase::Decide, Phase::Commit, Phase::Send];

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Receive => "receive",
            Phase::Decide => "decide",
            Phase::Commit => "commit",
            Phase::Send => "send",
        }
    }
}

/// Sampled CPU per phase: the sum and the number of samples, so a mean per phase.
#[derive(Default)]
pub struct PhaseCpu {
    ns: [AtomicU64; 4],
    samples: [AtomicU64; 4],
}

impl PhaseCpu {
    pub fn add(&self, phase: Phase, ns: u64) {
        self.ns[phase as usize].fetch_add(ns, Relaxed);
        self.samples[phase as usize].fetch_add(1, Relaxed);
    }

    pub(super) fn render(&self, out: &mut String) {
        out.push_str(
            "# HELP otpd_login_cpu_seconds Thread CPU time of sampled logins by phase (commit: \
             per commit of the store's writer; one in 32 per thread is timed).\n\
             # TYPE otpd_login_cpu_seconds summary\n",
        );
        for p in PHASES {
            let i = p as usize;
            let sum = self.ns[i].load(Relaxed) as f64 / 1e9;
            let n = self.samples[i].load(Relaxed);
            let name = p.as_str();
            let _ = writeln!(out, "otpd_login_cpu_seconds_sum{{phase=\"{name}\"}} {sum}");
            let _ = writeln!(out, "otpd_login_cpu_seconds_count{{phase=\"{name}\"}} {n}");
        }
    }
}

/// This thread's CPU time in nanoseconds.
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we pass; CLOCK_THREAD_CPUTIME_ID always
    // exists on Linux. On failure the zero stays, and a sample of zero is harmless.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

thread_local! {
    /// One count per phase that starts a sample: the store's writer both commits and sends,
    /// in alternation at window 1, and one shared count would then time only one of the two.
    static TICKS: [Cell<u32>; 4] = const { [const { Cell::new(0) }; 4] };
    /// Whether the sample [`maybe_start`] last decided about on this thread is being timed.
    static OPEN: Cell<bool> = const { Cell::new(false) };
    /// CPU of work nested in another phase on this thread ([`nested`]): a login that commits
    /// on its own thread does so inside its decision, and the commit is not the decision's.
    static NESTED_NS: Cell<u64> = const { Cell::new(0) };
}

/// Where a timed sample stands: the thread's clock and the nested work charged so far.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    cpu: u64,
    nested: u64,
}

impl Mark {
    fn now() -> Mark {
        Mark {
            cpu: thread_cpu_ns(),
            nested: NESTED_NS.get(),
        }
    }
}

fn tick(first: Phase) -> bool {
    TICKS.with(|t| {
        let t = &t[first as usize];
        let n = t.get().wrapping_add(1);
        t.set(n);
        n % SAMPLE_EVERY == 0
    })
}

/// The thread's CPU clock now for one call in [`SAMPLE_EVERY`] per `first` phase on this
/// thread, else `None`.
pub fn maybe_start(first: Phase) -> Option<Mark> {
    let timed = tick(first);
    OPEN.set(timed);
    timed.then(Mark::now)
}

/// Charges the CPU since `since` (from [`maybe_start`] or an earlier `lap`) to `phase`,
/// less what work nested in it charged elsewhere, and returns the mark now, for the next
/// phase.
pub fn lap(since: Option<Mark>, phase: Phase) -> Option<Mark> {
    since.map(|m| {
        let now = Mark::now();
        super::get().phase_cpu.add(phase, own_ns(m, now));
        now
    })
}

/// The CPU between two marks that nested work did not charge elsewhere.
fn own_ns(since: Mark, now: Mark) -> u64 {
    now.cpu
        .saturating_sub(since.cpu)
        .saturating_sub(now.nested.wrapping_sub(since.nested))
}

/// Runs `f`, work of `phase` that may run inside another phase's sample on this thread (a
/// commit inside a login's decision). Sampled on its own like any `phase`; and while this
/// thread's sample is open, timed anyway so that the open phase is not charged for it.
pub fn nested<R>(phase: Phase, f: impl FnOnce() -> R) -> R {
    let own = tick(phase);
    if !own && !OPEN.get() {
        return f();
    }
    let t0 = thread_cpu_ns();
    let r = f();
    let ns = thread_cpu_ns().saturating_sub(t0);
    NESTED_NS.set(NESTED_NS.get().wrapping_add(ns));
    if own {
        super::get().phase_cpu.add(phase, ns);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spin() {
        let mut x = 0u64;
        for i in 0..200_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
    }

    #[test]
    fn work_nested_in_an_open_sample_is_timed_and_not_charged_to_it() {
        let since = loop {
            if let Some(m) = maybe_start(Phase::Receive) {
                break m;
            }
        };
        nested(Phase::Commit, spin);
        let now = Mark::now();
        let nested_ns = now.nested - since.nested;
        assert!(nested_ns > 0, "nested work in an open sample is timed");
        assert_eq!(
            own_ns(since, now),
            (now.cpu - since.cpu).saturating_sub(nested_ns),
            "the open phase is charged without it"
        );
        // No sample open and not its own turn: not timed at all (the common case).
        while maybe_start(Phase::Receive).is_some() {}
        let before = NESTED_NS.get();
        let untimed = (0..SAMPLE_EVERY - 1)
            .filter(|_| {
                let n = NESTED_NS.get();
                nested(Phase::Decide, || ());
                NESTED_NS.get() == n
            })
            .count();
        assert!(untimed as u32 >= SAMPLE_EVERY - 2, "{untimed}");
        assert!(NESTED_NS.get() >= before);
    }

    #[test]
    fn one_call_in_sample_every_is_timed_and_laps_add_up() {
        let (mut commits, mut sends) = (0, 0);
        for _ in 0..SAMPLE_EVERY * 4 {
            commits += u32::from(maybe_start(Phase::Commit).is_some());
            sends += u32::from(maybe_start(Phase::Send).is_some());
        }
        assert_eq!(
            (commits, sends),
            (4, 4),
            "alternating phases are each sampled"
        );
        let p = PhaseCpu::default();
        p.add(Phase::Decide, 1500);
        p.add(Phase::Decide, 500);
        let mut s = String::new();
        p.render(&mut s);
        assert!(
            s.contains("otpd_login_cpu_seconds_sum{phase=\"decide\"} 0.000002\n"),
            "{s}"
        );
        assert!(
            s.contains("otpd_login_cpu_seconds_count{phase=\"decide\"} 2\n"),
            "{s}"
        );
        let t0 = thread_cpu_ns();
        let mut x = 0u64;
        for i in 0..200_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(
            thread_cpu_ns() > t0,
            "the thread's clock moves with its work"
        );
    }
}
