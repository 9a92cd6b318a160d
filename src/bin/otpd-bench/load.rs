//! The load: workers that keep a window of requests outstanding, over RADIUS (several UDP
//! sockets, each with its own window and identifiers) or the Unix socket (one request per
//! connection at a time: protocol v1 answers in order).

use crate::accounts::Accounts;
use crate::radius;
use crate::stats::Counts;
use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// PIN + a fresh HOTP code: every Accept needs a counter write.
    Otp,
    /// A fixed password per user (the FreeRADIUS users-file comparison).
    Static,
    /// Resend each account's last accepted code once: every answer must be Reject.
    Replay,
}

pub struct Shared {
    pub accounts: Accounts,
    /// Next HOTP counter per account.
    pub counters: Vec<AtomicU64>,
    /// Counter of the last accepted code per account (-1: none).
    pub last_accepted: Vec<AtomicI64>,
    pub service: String,
}

impl Shared {
    /// `start`: per account, the next counter and the last accepted one (from `--state`).
    pub fn new(accounts: Accounts, service: String, start: &[(u64, i64)]) -> Shared {
        let n = accounts.len();
        Shared {
            counters: (0..n)
                .map(|i| AtomicU64::new(start.get(i).map_or(0, |s| s.0)))
                .collect(),
            last_accepted: (0..n)
                .map(|i| AtomicI64::new(start.get(i).map_or(-1, |s| s.1)))
                .collect(),
            accounts,
            service,
        }
    }
}

pub enum Target {
    Radius {
        server: SocketAddr,
        secret: Vec<u8>,
        /// Refuse replies without Message-Authenticator.
        require_ma: bool,
    },
    Unix {
        path: PathBuf,
    },
    Http {
        addr: SocketAddr,
    },
}

pub struct Plan {
    pub mode: Mode,
    /// Requests sent before this are not counted (warm-up).
    pub measure_from: Instant,
    /// No new requests after this (timed modes).
    pub end: Instant,
    pub timeout: Duration,
    pub retries: u32,
    /// Stop sending after this many measured requests (0: only the clock stops).
    pub stop_after: u64,
    pub issued: AtomicU64,
    pub stopped: OnceLock<Instant>,
}

impl Plan {
    /// Whether new requests may still be sent.
    pub(crate) fn open(&self, now: Instant) -> bool {
        now < self.end && self.stopped.get().is_none()
    }

    /// Counts one measured request against `stop_after`.
    pub(crate) fn issue(&self) {
        if self.stop_after > 0 && self.issued.fetch_add(1, Relaxed) + 1 >= self.stop_after {
            let _ = self.stopped.set(Instant::now());
        }
    }

    /// When sending stopped: the clock's end or the moment the count was reached.
    pub fn stop_at(&self) -> Instant {
        self.stopped.get().copied().unwrap_or(self.end)
    }
}

/// otpd's default `[hotp] window`: a login may use any of the next this many counters.
pub(crate) const HOTP_WINDOW: u64 = 10;

impl Shared {
    /// Whether resending account `i`'s last accepted code tests single use: it had one, and
    /// that code is not also the code of one of the next [`HOTP_WINDOW`] counters, which the
    /// daemon may rightly accept (a chance of about 10 in a million per account).
    pub(crate) fn replay_tells(&self, i: usize) -> bool {
        let Ok(last) = u64::try_from(self.last_accepted[i].load(Relaxed)) else {
            return false;
        };
        let code = self.accounts.otp_password(i, last);
        (1..=HOTP_WINDOW).all(|k| self.accounts.otp_password(i, last + k) != code)
    }

    /// Accounts left out of the replay because their last code repeats within the window.
    pub(crate) fn replay_chance_repeats(&self) -> u64 {
        (0..self.accounts.len())
            .filter(|&i| self.last_accepted[i].load(Relaxed) >= 0 && !self.replay_tells(i))
            .count() as u64
    }
}

/// Which account a worker asks for next; never one with a request outstanding.
pub(crate) struct Picker {
    mine: Vec<usize>,
    busy: Vec<bool>,
    pos: usize,
    /// Replay: each account once, then done.
    once: bool,
}

pub(crate) struct Pick {
    pub(crate) local: usize,
    pub(crate) account: usize,
    pub(crate) counter: u64,
    pub(crate) password: String,
}

impl Picker {
    pub(crate) fn new(sh: &Shared, mode: Mode, worker: usize, workers: usize) -> Picker {
        let mine: Vec<usize> = (worker..sh.accounts.len())
            .step_by(workers)
            .filter(|&i| mode != Mode::Replay || sh.replay_tells(i))
            .collect();
        Picker {
            busy: vec![false; mine.len()],
            mine,
            pos: 0,
            once: mode == Mode::Replay,
        }
    }

    pub(crate) fn next(&mut self, sh: &Shared, mode: Mode) -> Option<Pick> {
        if self.mine.is_empty() || (self.once && self.pos >= self.mine.len()) {
            return None;
        }
        for _ in 0..self.mine.len() {
            let local = self.pos % self.mine.len();
            self.pos += 1;
            if self.busy[local] {
                continue;
            }
            self.busy[local] = true;
            let account = self.mine[local];
            let (counter, password) = match mode {
                Mode::Otp => {
                    let c = sh.counters[account].fetch_add(1, Relaxed);
                    (c, sh.accounts.otp_password(account, c))
                }
                Mode::Static => (0, sh.accounts.statics[account].clone()),
                Mode::Replay => {
                    let c = sh.last_accepted[account].load(Relaxed) as u64;
                    (c, sh.accounts.otp_password(account, c))
                }
            };
            return Some(Pick {
                local,
                account,
                counter,
                password,
            });
        }
        None
    }

    pub(crate) fn done(&self) -> bool {
        self.once && self.pos >= self.mine.len()
    }

    pub(crate) fn release(&mut self, local: usize) {
        self.busy[local] = false;
    }
}

/// A tiny xorshift generator for Request Authenticators: unpredictability does not matter
/// in a benchmark, a syscall per request would.
pub(crate) struct Rng(u64);
impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub(crate) fn auth(&mut self) -> [u8; 16] {
        let mut a = [0u8; 16];
        a[..8].copy_from_slice(&self.next().to_le_bytes());
        a[8..].copy_from_slice(&self.next().to_le_bytes());
        a
    }
}

pub(crate) fn poll_in(fds: &mut [libc::pollfd], ms: i32) {
    // SAFETY: fds is a valid slice of pollfd for the duration of the call.
    unsafe {
        libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms);
    }
}

pub(crate) struct Slot {
    pick: Pick,
    auth: [u8; 16],
    packet: Vec<u8>,
    first_sent: Instant,
    last_sent: Instant,
    tries: u32,
    counted: bool,
}

pub(crate) fn record(
    c: &mut Counts,
    sh: &Shared,
    mode: Mode,
    pick: &Pick,
    code: u8,
    took: Duration,
) {
    match code {
        radius::ACCESS_ACCEPT => {
            c.accepted += 1;
            if mode == Mode::Otp {
                sh.last_accepted[pick.account].store(pick.counter as i64, Relaxed);
            }
            if mode == Mode::Replay && sh.accounts.repeats_ahead(pick.account, pick.counter) {
                c.coincident += 1;
            }
        }
        radius::ACCESS_REJECT => c.rejected += 1,
        _ => c.other += 1,
    }
    c.latencies_us
        .push(took.as_micros().min(u128::from(u32::MAX)) as u32);
}

/// One UDP socket with up to `window` requests outstanding.
#[allow(clippy::too_many_arguments)]
pub fn radius_worker(
    sh: &Shared,
    plan: &Plan,
    server: SocketAddr,
    secret: &[u8],
    require_ma: bool,
    window: usize,
    worker: usize,
    workers: usize,
) -> std::io::Result<Counts> {
    let sock = UdpSocket::bind(if server.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    })?;
    sock.connect(server)?;
    sock.set_nonblocking(true)?;
    let mut c = Counts::default();
    let mut picker = Picker::new(sh, plan.mode, worker, workers);
    let mut slots: Vec<Option<Slot>> = (0..256).map(|_| None).collect();
    // Authenticators of requests given up, so a late answer is told from a forged one.
    let mut retired: Vec<Option<[u8; 16]>> = vec![None; 256];
    let mut free: VecDeque<u8> = (0..=255u8).collect();
    let mut outstanding = 0usize;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((worker as u64 + 1) << 32) ^ plan_seed(plan));
    let mut buf = vec![0u8; 4096];
    let mut last_sweep = Instant::now();
    let drain_after = plan.timeout * (plan.retries + 1) + Duration::from_millis(200);
    let window = window.clamp(1, 255);
    loop {
        let now = Instant::now();
        let sending = if plan.mode == Mode::Replay {
            !picker.done()
        } else {
            plan.open(now)
        };
        if sending {
            while outstanding < window {
                let Some(pick) = picker.next(sh, plan.mode) else {
                    break;
                };
                let Some(id) = free.pop_front() else {
                    picker.release(pick.local);
                    break;
                };
                let auth = rng.auth();
                let mut packet = Vec::with_capacity(96);
                radius::access_request(
                    &mut packet,
                    id,
                    &auth,
                    &sh.accounts.users[pick.account],
                    pick.password.as_bytes(),
                    secret,
                );
                let t = Instant::now();
                if let Err(e) = sock.send(&packet) {
                    if e.kind() != std::io::ErrorKind::WouldBlock {
                        // ECONNREFUSED from an earlier ICMP error: the request is still
                        // tracked and times out like a lost one.
                    }
                }
                let counted = t >= plan.measure_from;
                if counted {
                    c.sent += 1;
                    plan.issue();
                }
                retired[id as usize] = None;
                slots[id as usize] = Some(Slot {
                    pick,
                    auth,
                    packet,
                    first_sent: t,
                    last_sent: t,
                    tries: 0,
                    counted,
                });
                outstanding += 1;
            }
        } else if outstanding == 0
            || (plan.mode != Mode::Replay && now > plan.stop_at() + drain_after)
        {
            break;
        }
        let mut pfd = [libc::pollfd {
            fd: sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        poll_in(&mut pfd, 5);
        loop {
            let n = match sock.recv(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => break,
            };
            let now = Instant::now();
            if n < 20 {
                c.bad_replies += 1;
                continue;
            }
            let id = buf[1] as usize;
            let verdict = match &slots[id] {
                Some(s) => radius::verify_reply(&buf[..n], &s.auth, secret, require_ma),
                None => Err(radius::BadReply::Code(0)),
            };
            match verdict {
                Ok(code) => {
                    if let Some(s) = slots[id].take() {
                        if s.counted {
                            record(&mut c, sh, plan.mode, &s.pick, code, now - s.first_sent);
                        } else if code == radius::ACCESS_ACCEPT && plan.mode == Mode::Otp {
                            sh.last_accepted[s.pick.account].store(s.pick.counter as i64, Relaxed);
                        }
                        picker.release(s.pick.local);
                        free.push_back(id as u8);
                        outstanding -= 1;
                    }
                }
                Err(_) => {
                    let late = retired[id]
                        .as_ref()
                        .is_some_and(|a| radius::verify_reply(&buf[..n], a, secret, false).is_ok());
                    if late {
                        c.late += 1;
                    } else {
                        c.bad_replies += 1;
                    }
                }
            }
        }
        let now = Instant::now();
        if now - last_sweep >= Duration::from_millis(5) {
            last_sweep = now;
            for (id, slot) in slots.iter_mut().enumerate() {
                let Some(s) = slot else { continue };
                if now - s.last_sent < plan.timeout {
                    continue;
                }
                if s.tries < plan.retries {
                    let _ = sock.send(&s.packet);
                    s.tries += 1;
                    s.last_sent = now;
                    if s.counted {
                        c.retransmits += 1;
                    }
                } else if let Some(s) = slot.take() {
                    if s.counted {
                        c.lost += 1;
                    }
                    retired[id] = Some(s.auth);
                    picker.release(s.pick.local);
                    free.push_back(id as u8);
                    outstanding -= 1;
                }
            }
        }
    }
    for s in slots.into_iter().flatten() {
        if s.counted {
            c.lost += 1;
        }
    }
    Ok(c)
}

pub(crate) fn plan_seed(_plan: &Plan) -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    // xorshift must not start at zero.
    (t ^ 0x5851_f42d_4c95_7f2d) | 1
}
