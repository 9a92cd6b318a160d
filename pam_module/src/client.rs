//! One bounded request/response exchange over the daemon's Unix socket.

use std::fmt;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// The protocol's limit for one response line, newline excluded.
pub const MAX_RESPONSE: usize = 64 * 1024;

#[derive(Debug)]
pub enum ExchangeError {
    Connect(io::Error),
    Timeout(&'static str),
    Io(&'static str, io::Error),
    TooLong,
    Closed,
}

impl fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExchangeError::Connect(e) => write!(f, "cannot connect: {}", describe(e)),
            ExchangeError::Timeout(stage) => write!(f, "no answer in time ({stage})"),
            ExchangeError::Io(stage, e) => write!(f, "{stage} failed: {}", describe(e)),
            ExchangeError::TooLong => {
                write!(f, "response line longer than {MAX_RESPONSE} bytes")
            }
            ExchangeError::Closed => write!(f, "connection closed before a full response"),
        }
    }
}

/// Short lower-case reasons for the syslog line; the raw io::Error text adds "(os error N)".
fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such socket".to_string(),
        io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        io::ErrorKind::ConnectionReset => "connection reset".to_string(),
        io::ErrorKind::BrokenPipe => "connection closed by otpd".to_string(),
        _ => e.to_string(),
    }
}

/// Sends one request line and returns the response line without its newline. The whole
/// exchange (connect, write, read) shares one deadline, `budget` from now.
pub fn exchange(
    socket: &Path,
    request: &[u8],
    budget: Duration,
) -> Result<Zeroizing<Vec<u8>>, ExchangeError> {
    let deadline = Instant::now() + budget;
    let stream = connect(socket, budget)?;
    send_all(&stream, request, deadline)?;
    read_line(&stream, deadline)
}

fn remaining(deadline: Instant, stage: &'static str) -> Result<Duration, ExchangeError> {
    let left = deadline.saturating_duration_since(Instant::now());
    // A zero timeout means "block forever" to setsockopt, so an exhausted budget must stop
    // here rather than be passed on.
    if left.is_zero() {
        Err(ExchangeError::Timeout(stage))
    } else {
        Ok(left)
    }
}

/// std's UnixStream::connect blocks without bound when the listener's backlog is full (a
/// stuck daemon), so the socket is made by hand with SO_SNDTIMEO, which Linux applies to
/// AF_UNIX connect as well.
fn connect(path: &Path, budget: Duration) -> Result<UnixStream, ExchangeError> {
    // SAFETY: plain socket(2); the result is checked before it is wrapped in an OwnedFd.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(ExchangeError::Connect(io::Error::last_os_error()));
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let stream = UnixStream::from(fd);
    stream
        .set_write_timeout(Some(budget))
        .map_err(ExchangeError::Connect)?;

    // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    // One byte stays zero as the terminator; a longer path would silently name another file.
    if bytes.is_empty() || bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(ExchangeError::Connect(io::Error::new(
            io::ErrorKind::InvalidInput,
            "socket path empty, too long or containing NUL",
        )));
    }
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    loop {
        // SAFETY: addr is a valid sockaddr_un and len does not exceed its size.
        let rc = unsafe {
            libc::connect(
                stream.as_raw_fd(),
                &addr as *const libc::sockaddr_un as *const libc::sockaddr,
                len as libc::socklen_t,
            )
        };
        if rc == 0 {
            return Ok(stream);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            // Backlog still full when SO_SNDTIMEO ran out.
            Some(libc::EAGAIN) | Some(libc::EINPROGRESS) => {
                return Err(ExchangeError::Timeout("connect"))
            }
            _ => return Err(ExchangeError::Connect(err)),
        }
    }
}

/// send(2) with MSG_NOSIGNAL: the host process (sshd, dovecot) may not ignore SIGPIPE, and
/// a daemon that closes early must cost a failed login, not a killed host.
fn send_all(stream: &UnixStream, mut data: &[u8], deadline: Instant) -> Result<(), ExchangeError> {
    while !data.is_empty() {
        stream
            .set_write_timeout(Some(remaining(deadline, "write")?))
            .map_err(|e| ExchangeError::Io("write", e))?;
        // SAFETY: data is a valid slice for the given length.
        let n = unsafe {
            libc::send(
                stream.as_raw_fd(),
                data.as_ptr().cast(),
                data.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                    return Err(ExchangeError::Timeout("write"))
                }
                _ => return Err(ExchangeError::Io("write", err)),
            }
        }
        data = &data[n as usize..];
    }
    Ok(())
}

fn read_line(
    mut stream: &UnixStream,
    deadline: Instant,
) -> Result<Zeroizing<Vec<u8>>, ExchangeError> {
    // Reserved once at the maximum so the buffer (which may hold a challenge state) is never
    // reallocated and copied; Zeroizing wipes it on every return path.
    let mut buf = Zeroizing::new(vec![0u8; MAX_RESPONSE + 1]);
    let mut len = 0;
    loop {
        if len == buf.len() {
            return Err(ExchangeError::TooLong);
        }
        stream
            .set_read_timeout(Some(remaining(deadline, "read")?))
            .map_err(|e| ExchangeError::Io("read", e))?;
        match stream.read(&mut buf[len..]) {
            Ok(0) => return Err(ExchangeError::Closed),
            Ok(n) => {
                let start = len;
                len += n;
                if let Some(pos) = buf[start..len].iter().position(|&b| b == b'\n') {
                    let end = start + pos;
                    if end > MAX_RESPONSE {
                        return Err(ExchangeError::TooLong);
                    }
                    // Anything after the newline would answer a request we never sent.
                    buf.truncate(end);
                    return Ok(buf);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut =>
            {
                return Err(ExchangeError::Timeout("read"))
            }
            Err(e) => return Err(ExchangeError::Io("read", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixListener;
    use std::thread;

    /// Test servers read the request before answering: a server that closes before the
    /// client wrote would make the client's send fail with EPIPE, a different test.
    fn read_request(s: &UnixStream) {
        let mut line = String::new();
        BufReader::new(s)
            .read_line(&mut line)
            .expect("read request");
    }

    fn listener() -> (tempfile::TempDir, std::path::PathBuf, UnixListener) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("otpd.sock");
        let l = UnixListener::bind(&path).expect("bind");
        (dir, path, l)
    }

    #[test]
    fn round_trip_strips_newline() {
        let (_d, path, l) = listener();
        let t = thread::spawn(move || {
            let (s, _) = l.accept().expect("accept");
            let mut r = BufReader::new(&s);
            let mut line = String::new();
            r.read_line(&mut line).expect("read");
            assert_eq!(line, "{\"op\":\"ping\"}\n");
            (&s).write_all(b"{\"pong\":true}\n").expect("write");
        });
        let got = exchange(&path, b"{\"op\":\"ping\"}\n", Duration::from_secs(2)).expect("ok");
        assert_eq!(&got[..], b"{\"pong\":true}");
        t.join().expect("server");
    }

    #[test]
    fn response_split_over_several_writes() {
        let (_d, path, l) = listener();
        let t = thread::spawn(move || {
            let (mut s, _) = l.accept().expect("accept");
            read_request(&s);
            for part in [&b"{\"verdict\""[..], b":\"accept\"", b"}\n"] {
                s.write_all(part).expect("write");
                thread::sleep(Duration::from_millis(20));
            }
        });
        let got = exchange(&path, b"x\n", Duration::from_secs(2)).expect("ok");
        assert_eq!(&got[..], b"{\"verdict\":\"accept\"}");
        t.join().expect("server");
    }

    #[test]
    fn missing_socket_is_a_connect_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = exchange(&dir.path().join("none"), b"x\n", Duration::from_secs(1))
            .expect_err("must fail");
        assert!(matches!(err, ExchangeError::Connect(_)), "{err:?}");
        assert_eq!(err.to_string(), "cannot connect: no such socket");
    }

    #[test]
    fn silent_server_times_out_within_budget() {
        let (_d, path, l) = listener();
        let t = thread::spawn(move || {
            let (s, _) = l.accept().expect("accept");
            thread::sleep(Duration::from_millis(1500));
            drop(s);
        });
        let start = Instant::now();
        let err = exchange(&path, b"x\n", Duration::from_millis(300)).expect_err("must fail");
        let took = start.elapsed();
        assert!(matches!(err, ExchangeError::Timeout("read")), "{err:?}");
        assert!(
            took >= Duration::from_millis(290) && took < Duration::from_millis(900),
            "{took:?}"
        );
        t.join().expect("server");
    }

    #[test]
    fn full_backlog_connect_is_bounded() {
        // A listener with backlog 0 that never accepts: Linux queues one connection, the
        // next connect would block forever without SO_SNDTIMEO.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("stuck.sock");
        let l = UnixListener::bind(&path).expect("bind");
        // SAFETY: listen(2) on a valid listening socket just shrinks the backlog.
        assert_eq!(unsafe { libc::listen(l.as_raw_fd(), 0) }, 0);
        let mut held = Vec::new();
        let start = Instant::now();
        let mut timed_out = false;
        for _ in 0..8 {
            match connect(&path, Duration::from_millis(200)) {
                Ok(s) => held.push(s),
                Err(ExchangeError::Timeout("connect")) => {
                    timed_out = true;
                    break;
                }
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        assert!(timed_out, "backlog never filled up");
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn overlong_response_is_refused() {
        let (_d, path, l) = listener();
        let t = thread::spawn(move || {
            let (mut s, _) = l.accept().expect("accept");
            read_request(&s);
            let big = vec![b'a'; MAX_RESPONSE + 10];
            let _ = s.write_all(&big);
        });
        let err = exchange(&path, b"x\n", Duration::from_secs(2)).expect_err("must fail");
        assert!(matches!(err, ExchangeError::TooLong), "{err:?}");
        t.join().expect("server");
    }

    #[test]
    fn exactly_max_response_is_accepted() {
        let (_d, path, l) = listener();
        let t = thread::spawn(move || {
            let (mut s, _) = l.accept().expect("accept");
            read_request(&s);
            let mut big = vec![b'a'; MAX_RESPONSE];
            big.push(b'\n');
            s.write_all(&big).expect("write");
        });
        let got = exchange(&path, b"x\n", Duration::from_secs(2)).expect("ok");
        assert_eq!(got.len(), MAX_RESPONSE);
        t.join().expect("server");
    }

    #[test]
    fn write_to_closed_peer_raises_no_sigpipe() {
        // The test harness ignores SIGPIPE, which would hide the bug. Blocking it in this
        // thread instead makes Linux keep a raised SIGPIPE pending, where we can see it.
        // SAFETY: signal-mask calls on this thread only, with valid sigset_t values.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGPIPE);
            let mut old: libc::sigset_t = std::mem::zeroed();
            assert_eq!(libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old), 0);

            let (_d, path, l) = listener();
            let t = thread::spawn(move || {
                let (s, _) = l.accept().expect("accept");
                drop(s);
            });
            let stream = connect(&path, Duration::from_secs(1)).expect("connect");
            t.join().expect("server");
            let err = send_all(&stream, b"x\n", Instant::now() + Duration::from_secs(1))
                .expect_err("peer is gone");
            assert!(matches!(err, ExchangeError::Io("write", _)), "{err:?}");

            let mut pending: libc::sigset_t = std::mem::zeroed();
            libc::sigpending(&mut pending);
            let raised = libc::sigismember(&pending, libc::SIGPIPE) == 1;
            if raised {
                let zero = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                libc::sigtimedwait(&set, std::ptr::null_mut(), &zero);
            }
            libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            assert!(!raised, "send raised SIGPIPE");
        }
    }
}
