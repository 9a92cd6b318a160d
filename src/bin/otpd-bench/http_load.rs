//! The load over HTTP: kept-alive connections to `/validate/check` (privacyIDEA's dialect),
//! one request outstanding on each, every request a fresh PIN + HOTP code.

use crate::load::{poll_in, record, Mode, Pick, Picker, Plan, Shared};
use crate::radius;
use crate::stats::Counts;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

struct Conn {
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    pending: Option<(Pick, Instant, bool)>,
}

fn connect(addr: SocketAddr) -> Option<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_nodelay(true).ok()?;
    s.set_nonblocking(true).ok()?;
    Some(s)
}

/// One complete answer at the front of `buf`: (status, body length, head length).
fn complete(buf: &[u8]) -> Option<(u16, usize, usize)> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    (buf.len() >= head_end + len).then_some((status, len, head_end))
}

/// `result.authentication` of a privacyIDEA answer.
fn authentication(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v["result"]["authentication"].as_str().map(str::to_string)
}

/// `conns` kept-alive connections to the HTTP front-end, one request outstanding on each.
pub fn http_worker(
    sh: &Shared,
    plan: &Plan,
    addr: SocketAddr,
    conns: usize,
    worker: usize,
    workers: usize,
) -> std::io::Result<Counts> {
    let mut c = Counts::default();
    let mut picker = Picker::new(sh, plan.mode, worker, workers);
    let mut cs: Vec<Conn> = (0..conns.max(1))
        .map(|_| Conn {
            stream: connect(addr),
            buf: Vec::with_capacity(512),
            pending: None,
        })
        .collect();
    if cs.iter().all(|c| c.stream.is_none()) {
        return Err(std::io::Error::other(format!("cannot connect to {addr}")));
    }
    let drain_after = plan.timeout + Duration::from_millis(200);
    let mut line = Vec::with_capacity(256);
    let mut rbuf = [0u8; 4096];
    let mut pfds: Vec<libc::pollfd> = Vec::with_capacity(cs.len());
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
        for k in cs.iter_mut() {
            if !sending || k.pending.is_some() {
                continue;
            }
            if k.stream.is_none() {
                k.stream = connect(addr);
            }
            let Some(stream) = k.stream.as_mut() else {
                continue;
            };
            let Some(pick) = picker.next(sh, plan.mode) else {
                break;
            };
            line.clear();
            let body = form_urlencoded::Serializer::new(String::new())
                .append_pair("user", &sh.accounts.users[pick.account])
                .append_pair("pass", &pick.password)
                .finish();
            line.extend_from_slice(
                format!(
                    "POST /validate/check HTTP/1.1\r\nHost: otpd\r\n\
                     Content-Type: application/x-www-form-urlencoded\r\n\
                     Content-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
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
        pfds.clear();
        for k in &cs {
            pfds.push(libc::pollfd {
                fd: k.stream.as_ref().map_or(-1, |s| s.as_raw_fd()),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        poll_in(&mut pfds, 5);
        let now = Instant::now();
        for (k, p) in cs.iter_mut().zip(&pfds) {
            if p.revents == 0 {
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
                continue;
            }
            let Some(stream) = k.stream.as_mut() else {
                continue;
            };
            let closed = loop {
                match stream.read(&mut rbuf) {
                    Ok(0) => break true,
                    Ok(n) => k.buf.extend_from_slice(&rbuf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
                    Err(_) => break true,
                }
            };
            if let Some((status, len, head)) = complete(&k.buf) {
                let verdict = match status {
                    200 => authentication(&k.buf[head..head + len]),
                    _ => None,
                };
                k.buf.drain(..head + len);
                if let Some((pick, t, counted)) = k.pending.take() {
                    let code = match verdict.as_deref() {
                        Some("ACCEPT") => radius::ACCESS_ACCEPT,
                        Some("REJECT") => radius::ACCESS_REJECT,
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

fn write_all_nb(s: &mut TcpStream, mut data: &[u8]) -> std::io::Result<()> {
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
