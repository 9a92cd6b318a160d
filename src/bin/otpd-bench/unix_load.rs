//! The load over the Unix socket: connections with one request outstanding each (protocol
//! v1 answers in order).

use crate::load::{record, Mode, Pick, Picker, Plan, Shared};
use crate::radius;
use crate::stats::Counts;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

struct Conn {
    stream: Option<UnixStream>,
    buf: Vec<u8>,
    pending: Option<(Pick, Instant, bool)>,
}

fn connect(path: &std::path::Path) -> Option<UnixStream> {
    let s = UnixStream::connect(path).ok()?;
    s.set_nonblocking(true).ok()?;
    Some(s)
}

#[derive(serde::Serialize)]
struct CheckLine<'a> {
    op: &'static str,
    user: &'a str,
    password: &'a str,
    service: &'a str,
    client: &'static str,
}

#[derive(serde::Deserialize)]
struct Answer {
    verdict: Option<String>,
}

/// `conns` connections to the Unix socket, one request outstanding on each.
pub fn unix_worker(
    sh: &Shared,
    plan: &Plan,
    path: &std::path::Path,
    conns: usize,
    worker: usize,
    workers: usize,
) -> std::io::Result<Counts> {
    let mut c = Counts::default();
    let mut picker = Picker::new(sh, plan.mode, worker, workers);
    let mut cs: Vec<Conn> = (0..conns.max(1))
        .map(|_| Conn {
            stream: connect(path),
            buf: Vec::with_capacity(512),
            pending: None,
        })
        .collect();
    if cs.iter().all(|c| c.stream.is_none()) {
        return Err(std::io::Error::other(format!(
            "cannot connect to {}",
            path.display()
        )));
    }
    let drain_after = plan.timeout + Duration::from_millis(200);
    let mut line = Vec::with_capacity(256);
    let mut rbuf = [0u8; 4096];
    // epoll, not poll over every connection: at window 128 a poll of all of them per answer
    // cost the generator more CPU per request than the RADIUS generator spends, and on a
    // shared machine that CPU is taken from the daemon under test.
    let ep = Epoll::new()?;
    for (i, k) in cs.iter().enumerate() {
        if let Some(s) = &k.stream {
            ep.add(s.as_raw_fd(), i)?;
        }
    }
    let mut ready: Vec<usize> = Vec::with_capacity(cs.len());
    let mut next_timeout_scan = Instant::now();
    loop {
        let now = Instant::now();
        let sending = if plan.mode == Mode::Replay {
            !picker.done()
        } else {
            plan.open(now)
        };
        let outstanding = cs.iter().filter(|k| k.pending.is_some()).count();
        if !sending
            && (outstanding == 0
                || (plan.mode != Mode::Replay && now > plan.stop_at() + drain_after))
        {
            break;
        }
        for (i, k) in cs.iter_mut().enumerate() {
            if !sending || k.pending.is_some() {
                continue;
            }
            if k.stream.is_none() {
                k.stream = connect(path);
                if let Some(s) = &k.stream {
                    if ep.add(s.as_raw_fd(), i).is_err() {
                        k.stream = None;
                    }
                }
            }
            let Some(stream) = k.stream.as_mut() else {
                continue;
            };
            let Some(pick) = picker.next(sh, plan.mode) else {
                break;
            };
            line.clear();
            let req = CheckLine {
                op: "check",
                user: &sh.accounts.users[pick.account],
                password: &pick.password,
                service: &sh.service,
                client: "otpd-bench",
            };
            if serde_json::to_writer(&mut line, &req).is_err() {
                picker.release(pick.local);
                continue;
            }
            line.push(b'\n');
            let t = Instant::now();
            let counted = t >= plan.measure_from;
            if counted {
                c.sent += 1;
                plan.issue();
            }
            if write_all_nb(stream, &line).is_err() {
                if counted {
                    c.lost += 1;
                }
                picker.release(pick.local);
                k.stream = None;
                continue;
            }
            k.buf.clear();
            k.pending = Some((pick, t, counted));
        }
        ep.wait(&mut ready, 5);
        let now = Instant::now();
        if now >= next_timeout_scan {
            next_timeout_scan = now + Duration::from_millis(10);
            for k in cs.iter_mut() {
                if let Some((_, t, _)) = &k.pending {
                    if now - *t > plan.timeout {
                        // No answer in time: give up on it and on this connection, whose
                        // next line would be that late answer.
                        if let Some((pick, _, counted)) = k.pending.take() {
                            if counted {
                                c.lost += 1;
                            }
                            picker.release(pick.local);
                        }
                        k.stream = None;
                    }
                }
            }
        }
        for &i in &ready {
            let Some(k) = cs.get_mut(i) else {
                continue;
            };
            let Some(stream) = k.stream.as_mut() else {
                continue;
            };
            // One read: an answer is one short line, and what is left is reported again.
            let closed = match stream.read(&mut rbuf) {
                Ok(0) => true,
                Ok(n) => {
                    k.buf.extend_from_slice(&rbuf[..n]);
                    false
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
                Err(_) => true,
            };
            if let Some(nl) = k.buf.iter().position(|b| *b == b'\n') {
                let verdict = serde_json::from_slice::<Answer>(&k.buf[..nl])
                    .ok()
                    .and_then(|a| a.verdict);
                k.buf.drain(..=nl);
                if let Some((pick, t, counted)) = k.pending.take() {
                    let code = match verdict.as_deref() {
                        Some("accept") => radius::ACCESS_ACCEPT,
                        Some("reject") => radius::ACCESS_REJECT,
                        None => {
                            c.bad_replies += 1;
                            0
                        }
                        Some(_) => 0,
                    };
                    if counted {
                        record(&mut c, sh, plan.mode, &pick, code, now - t);
                    } else if code == radius::ACCESS_ACCEPT && plan.mode == Mode::Otp {
                        sh.last_accepted[pick.account].store(pick.counter as i64, Relaxed);
                    }
                    picker.release(pick.local);
                } else {
                    c.late += 1;
                }
            }
            if closed {
                if let Some((pick, _, counted)) = k.pending.take() {
                    if counted {
                        c.lost += 1;
                    }
                    picker.release(pick.local);
                }
                k.stream = None;
                if sending {
                    // The daemon went away or refused us: do not spin on reconnects.
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }
    for k in cs {
        if let Some((_, _, true)) = k.pending {
            c.lost += 1;
        }
    }
    Ok(c)
}

fn write_all_nb(s: &mut UnixStream, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        match s.write(data) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let mut p = [libc::pollfd {
                    fd: s.as_raw_fd(),
                    events: libc::POLLOUT,
                    revents: 0,
                }];
                // SAFETY: p is a valid pollfd array for the duration of the call.
                unsafe {
                    libc::poll(p.as_mut_ptr(), 1, 1000);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A level-triggered epoll set whose events carry the connection's index. A closed stream
/// leaves the set by itself (no other copy of its descriptor is open).
struct Epoll(std::os::fd::OwnedFd);

impl Epoll {
    fn new() -> std::io::Result<Epoll> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain syscall; the descriptor is owned from here on.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor nobody else owns.
        Ok(Epoll(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }))
    }

    fn add(&self, fd: i32, index: usize) -> std::io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: index as u64,
        };
        // SAFETY: ev lives for the call; both descriptors are open.
        let r = unsafe { libc::epoll_ctl(self.0.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// The indices of connections with something to read, waiting up to `ms`.
    fn wait(&self, ready: &mut Vec<usize>, ms: i32) {
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 256];
        // SAFETY: evs is a valid buffer of its length for the call.
        let n =
            unsafe { libc::epoll_wait(self.0.as_raw_fd(), evs.as_mut_ptr(), evs.len() as i32, ms) };
        ready.clear();
        for e in evs.iter().take(usize::try_from(n).unwrap_or(0)) {
            ready.push(e.u64 as usize);
        }
    }
}
