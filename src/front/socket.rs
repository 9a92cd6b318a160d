//! The Unix socket front-end: wire protocol v1 (see `protocol.rs`, docs/protocol.md) for
//! `pam_otpd.so` and local callers.
//!
//! What keeps it safe to leave open to a mail server's processes: the file is mode 0660 with a
//! chosen group, and on top of that every peer's uid/gid (SO_PEERCRED, which the peer cannot
//! forge) must be on the allow-list; connections are bounded by a semaphore, lines by
//! [`protocol::MAX_LINE`], and idle or stalled peers by `idle_timeout`. When every slot is
//! taken, the connection that has waited longest for a request line is closed to make room
//! for the newcomer ([`Waiting`]): idle connections cannot starve a real login.

use super::protocol::{self, codes, ProtoError, Request};
use super::EngineHandle;
use super::FrontError;
use crate::config::SocketConfig;
use crate::engine::{messages, AccountVerdict, CheckRequest};
use crate::metrics::{self, Frontend};
use std::collections::HashMap;
use std::ffi::CString;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Notify, Semaphore};
use zeroize::Zeroizing;

/// The socket file's mode: owner and group read/write, nobody else.
const MODE: u32 = 0o660;
/// How long a peer on a stale-looking socket gets to accept before we call it alive.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a newcomer waits for the slot of the connection closed for it.
const EVICT_WAIT: Duration = Duration::from_millis(200);

/// The open connections that wait for a request line (idle between requests, or a line not
/// yet complete), by when their wait began. Full house: the one that waited longest is closed
/// for the newcomer. A connection whose request is being worked on is never closed. A peer
/// that opens connections and sends nothing only ever pushes out its own oldest ones; a real
/// client sends its line right after connecting, so it would take `max_connections` newer
/// connections in those microseconds to push it out.
#[derive(Default)]
struct Waiting {
    /// Tickets in order; 0 means "working, not evictable".
    next: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<ConnState>>>,
}

struct ConnState {
    /// Ticket taken when the current wait for a line began; 0 while a request is worked on.
    waiting_since: AtomicU64,
    evict: Notify,
}

/// Removes a connection from [`Waiting`] when it ends.
struct Registered {
    waiting: Arc<Waiting>,
    id: u64,
    state: Arc<ConnState>,
}

impl Waiting {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ConnState>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ticket(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn register(self: &Arc<Self>) -> Registered {
        let id = self.ticket();
        let state = Arc::new(ConnState {
            waiting_since: AtomicU64::new(id),
            evict: Notify::new(),
        });
        self.lock().insert(id, state.clone());
        Registered {
            waiting: self.clone(),
            id,
            state,
        }
    }

    /// Tells the connection that has waited longest to close. False when none waits.
    fn evict_oldest(&self) -> bool {
        let m = self.lock();
        let oldest = m
            .values()
            .filter(|c| c.waiting_since.load(Ordering::Relaxed) != 0)
            .min_by_key(|c| c.waiting_since.load(Ordering::Relaxed));
        match oldest {
            Some(c) => {
                c.waiting_since.store(0, Ordering::Relaxed);
                // Stored if the connection is not parked on it right now: it closes at its
                // next wait.
                c.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

impl Registered {
    fn waiting(&self) {
        let t = self.waiting.ticket();
        self.state.waiting_since.store(t, Ordering::Relaxed);
    }

    fn working(&self) {
        self.state.waiting_since.store(0, Ordering::Relaxed);
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.waiting.lock().remove(&self.id);
    }
}

/// A bound listener, before it serves.
pub struct SocketFront {
    listener: UnixListener,
    path: PathBuf,
    /// (device, inode) of the file we created: on stop we remove it only if it is still ours,
    /// not a socket a newer daemon put there meanwhile.
    identity: (u64, u64),
    cfg: SocketConfig,
}

fn start_err(msg: impl Into<String>) -> FrontError {
    FrontError::Start(msg.into())
}

impl SocketFront {
    /// Creates the socket as `[socket]` says; `None` when `path` is empty (socket off).
    pub async fn bind(cfg: &SocketConfig) -> Result<Option<SocketFront>, FrontError> {
        if cfg.path.as_os_str().is_empty() {
            return Ok(None);
        }
        let path = cfg.path.clone();
        let gid = match &cfg.group {
            Some(name) => Some(group_id(name)?),
            None => None,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(dir)
                    .map_err(|e| {
                        start_err(format!(
                            "socket.path: cannot create directory {}: {e}; create it, point \
                             socket.path elsewhere, or set it to \"\" to switch the socket off",
                            dir.display()
                        ))
                    })?;
            }
        }
        clear_stale(&path).await?;
        let std_listener = bind_private(&path)?;
        std_listener
            .set_nonblocking(true)
            .map_err(|e| start_err(format!("socket {}: {e}", path.display())))?;
        let listener = UnixListener::from_std(std_listener)
            .map_err(|e| start_err(format!("socket {}: {e}", path.display())))?;
        let meta = std::fs::symlink_metadata(&path)
            .map_err(|e| start_err(format!("socket {}: {e}", path.display())))?;
        if let Some(gid) = gid {
            std::os::unix::fs::chown(&path, None, Some(gid)).map_err(|e| {
                let _ = std::fs::remove_file(&path);
                start_err(format!(
                    "socket.group: cannot give {} to group {gid}: {e} (the daemon must run as \
                     root or be a member of that group)",
                    path.display()
                ))
            })?;
            if !cfg.allow_gids.contains(&gid) {
                tracing::warn!(
                    "socket.group gid {gid} may connect to {} but is not in socket.allow_gids: \
                     its members are refused",
                    path.display()
                );
            }
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(MODE))
            .map_err(|e| start_err(format!("socket {}: chmod: {e}", path.display())))?;
        Ok(Some(SocketFront {
            listener,
            path,
            identity: (meta.dev(), meta.ino()),
            cfg: cfg.clone(),
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts until the task is dropped. Returns what `remove` needs afterwards.
    pub fn spawn(self, engine: Arc<EngineHandle>) -> (tokio::task::JoinHandle<()>, SocketFile) {
        let file = SocketFile {
            path: self.path.clone(),
            identity: self.identity,
        };
        tracing::info!(
            path = %self.path.display(),
            max_connections = self.cfg.max_connections,
            "socket listening"
        );
        (tokio::spawn(self.accept_loop(engine)), file)
    }

    async fn accept_loop(self, engine: Arc<EngineHandle>) {
        let slots = Arc::new(Semaphore::new(self.cfg.max_connections));
        let cfg = Arc::new(self.cfg);
        let refused = Arc::new(Throttle::default());
        let busy = Arc::new(Throttle::default());
        let evicted = Arc::new(Throttle::default());
        let waiting = Arc::new(Waiting::default());
        loop {
            let stream = match self.listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning on the error.
                    tracing::warn!("socket accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let cred = match stream.peer_cred() {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("socket: cannot read peer credentials: {e}; closing");
                    continue;
                }
            };
            let (uid, gid, pid) = (cred.uid(), cred.gid(), cred.pid().unwrap_or(0));
            if !cfg.allow_uids.contains(&uid) && !cfg.allow_gids.contains(&gid) {
                if let Some(n) = refused.tick() {
                    tracing::warn!(
                        uid,
                        gid,
                        pid,
                        refused_so_far = n,
                        "socket: refused peer not in socket.allow_uids/allow_gids"
                    );
                }
                metrics::get().socket_refused();
                refuse(
                    &stream,
                    codes::FORBIDDEN,
                    &format!("uid {uid} gid {gid} is not allowed to use this socket"),
                );
                continue;
            }
            let permit = match slots.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                // Full house: close the connection that waited longest for a request and
                // take its slot.
                Err(_) if waiting.evict_oldest() => {
                    if let Some(n) = evicted.tick() {
                        tracing::warn!(
                            uid,
                            pid,
                            max_connections = cfg.max_connections,
                            evicted_so_far = n,
                            "socket: max_connections reached; closed the connection that \
                             waited longest for a request to make room"
                        );
                    }
                    tokio::time::timeout(EVICT_WAIT, slots.clone().acquire_owned())
                        .await
                        .ok()
                        .and_then(Result::ok)
                }
                Err(_) => None,
            };
            let Some(permit) = permit else {
                if let Some(n) = busy.tick() {
                    tracing::warn!(
                        uid,
                        pid,
                        max_connections = cfg.max_connections,
                        refused_so_far = n,
                        "socket: connection refused, socket.max_connections reached"
                    );
                }
                metrics::get().socket_refused();
                refuse(&stream, codes::BUSY, "too many connections; try again");
                continue;
            };
            let engine = engine.clone();
            let idle = cfg.idle_timeout;
            let reg = waiting.register();
            tokio::spawn(async move {
                serve_conn(stream, engine, idle, &reg).await;
                drop(reg);
                drop(permit);
            });
        }
    }
}

/// The socket file as created, for removal on a clean stop.
pub struct SocketFile {
    path: PathBuf,
    identity: (u64, u64),
}

impl SocketFile {
    pub fn remove(&self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if (m.dev(), m.ino()) == self.identity => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    tracing::warn!("socket {}: not removed: {e}", self.path.display());
                }
            }
            // Gone already, or another daemon's socket now: not ours to remove.
            _ => {}
        }
    }
}

/// Answers a refused peer with one error line, without waiting: a fresh socket's send buffer
/// is empty, so a short line always fits, and a peer that does not read cannot stall accept.
fn refuse(stream: &UnixStream, code: &'static str, msg: &str) {
    let _ = stream.try_write(&protocol::error_answer(&ProtoError::new(code, msg)));
}

/// Logs the first ten events, then every hundredth: a local peer that hammers the socket must
/// not be able to flood the log.
#[derive(Default)]
struct Throttle(AtomicU64);

impl Throttle {
    fn tick(&self) -> Option<u64> {
        let n = self.0.fetch_add(1, Ordering::Relaxed) + 1;
        (n <= 10 || n % 100 == 0).then_some(n)
    }
}

/// Binds with a umask that leaves no window in which the file is wider than 0660. The umask
/// is process-wide, but at this point nothing else in the daemon creates files.
fn bind_private(path: &Path) -> Result<std::os::unix::net::UnixListener, FrontError> {
    // SAFETY: umask(2) has no memory effects; the old mask is restored right after bind.
    let old = unsafe { libc::umask(0o117) };
    let res = std::os::unix::net::UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    res.map_err(|e| {
        start_err(format!(
            "socket.path: cannot listen on {}: {e}",
            path.display()
        ))
    })
}

/// A socket file left by a daemon that did not stop cleanly is removed; one that something
/// still accepts on, or a file that is not a socket, is left alone and start fails.
async fn clear_stale(path: &Path) -> Result<(), FrontError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(start_err(format!("socket {}: {e}", path.display()))),
    };
    if !meta.file_type().is_socket() {
        return Err(start_err(format!(
            "socket.path {} exists and is not a socket; not touching it",
            path.display()
        )));
    }
    match tokio::time::timeout(PROBE_TIMEOUT, UnixStream::connect(path)).await {
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            tracing::info!("removing stale socket {}", path.display());
            std::fs::remove_file(path)
                .map_err(|e| start_err(format!("stale socket {}: {e}", path.display())))
        }
        Ok(Ok(_)) | Err(_) => Err(start_err(format!(
            "another process is listening on {} (is otpd already running?)",
            path.display()
        ))),
        Ok(Err(e)) => Err(start_err(format!(
            "socket {} exists and cannot be probed: {e}",
            path.display()
        ))),
    }
}

/// A group name (or a number) to a gid.
fn group_id(name: &str) -> Result<u32, FrontError> {
    let bad = |why: String| start_err(format!("socket.group `{name}`: {why}"));
    let cname = CString::new(name).map_err(|_| bad("contains a NUL byte".into()))?;
    let mut buf: Vec<libc::c_char> = vec![0; 4096];
    loop {
        // SAFETY: all-zero is a valid `group`; getgrnam_r writes into grp and buf, whose
        // lengths we pass, and sets `result` to null or to &grp.
        let (rc, found, gid) = unsafe {
            let mut grp: libc::group = std::mem::zeroed();
            let mut result: *mut libc::group = std::ptr::null_mut();
            let rc = libc::getgrnam_r(
                cname.as_ptr(),
                &mut grp,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            );
            (rc, !result.is_null(), grp.gr_gid)
        };
        if rc == libc::ERANGE && buf.len() < (1 << 20) {
            let n = buf.len() * 2;
            buf.resize(n, 0);
            continue;
        }
        if rc != 0 {
            return Err(bad(format!(
                "group lookup failed: {}",
                std::io::Error::from_raw_os_error(rc)
            )));
        }
        if found {
            return Ok(gid);
        }
        return name
            .parse::<u32>()
            .map_err(|_| bad("no such group (see /etc/group)".into()));
    }
}

enum Line {
    Full,
    Eof,
    TooLong,
}

/// Reads one line into `buf` (newline dropped), never holding more than MAX_LINE bytes. The
/// buffer may hold a password: it grows by copying into a fresh wiped buffer, so no partial
/// copy is left behind in freed memory.
async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Zeroizing<Vec<u8>>,
) -> std::io::Result<Line> {
    loop {
        let avail = r.fill_buf().await?;
        if avail.is_empty() {
            return Ok(if buf.is_empty() {
                Line::Eof
            } else {
                Line::Full
            });
        }
        let (take, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(pos) => (pos, true),
            None => (avail.len(), false),
        };
        if buf.len() + take > protocol::MAX_LINE {
            return Ok(Line::TooLong);
        }
        push_wiped(buf, &avail[..take]);
        r.consume(take + usize::from(done));
        if done {
            return Ok(Line::Full);
        }
    }
}

fn push_wiped(buf: &mut Zeroizing<Vec<u8>>, data: &[u8]) {
    let need = buf.len() + data.len();
    if need > buf.capacity() {
        let mut bigger = Zeroizing::new(Vec::with_capacity(need.max(buf.capacity() * 2)));
        bigger.extend_from_slice(buf);
        *buf = bigger;
    }
    buf.extend_from_slice(data);
}

async fn serve_conn(
    stream: UnixStream,
    engine: Arc<EngineHandle>,
    idle: Duration,
    reg: &Registered,
) {
    let (rd, mut wr) = stream.into_split();
    // Small: a PAM request is a few hundred bytes; longer lines accumulate in `line`.
    let mut rd = BufReader::with_capacity(4096, rd);
    loop {
        let mut line = Zeroizing::new(Vec::with_capacity(1024));
        let read = tokio::select! {
            r = tokio::time::timeout(idle, read_line(&mut rd, &mut line)) => r,
            // Closed to make room for a newcomer (max_connections): like an idle timeout.
            () = reg.state.evict.notified() => return,
        };
        reg.working();
        // From a whole line until its answer is written: a stop waits for it (front::serve).
        let working = engine.begin();
        let (answer, keep_open) = match read {
            // Idle (or a line that trickles in too slowly): close without an answer.
            Err(_) => return,
            Ok(Err(_)) | Ok(Ok(Line::Eof)) => return,
            Ok(Ok(Line::TooLong)) => (
                protocol::error_answer(&ProtoError::new(
                    codes::LINE_TOO_LONG,
                    format!(
                        "request line longer than {} bytes; closing",
                        protocol::MAX_LINE
                    ),
                )),
                false,
            ),
            Ok(Ok(Line::Full)) => (answer(&engine, &line).await, true),
        };
        drop(line);
        let written = tokio::time::timeout(idle, wr.write_all(&answer)).await;
        drop(working);
        match written {
            Ok(Ok(())) if keep_open => reg.waiting(),
            _ => return,
        }
    }
}

async fn answer(handle: &Arc<EngineHandle>, line: &[u8]) -> Vec<u8> {
    let started = std::time::Instant::now();
    let req = match protocol::parse(line) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(code = e.code, "socket: bad request: {}", e.message);
            return protocol::error_answer(&e);
        }
    };
    // The engine as configured now: a reload between two lines of one connection applies.
    let engine = handle.current();
    match req {
        Request::Ping => protocol::ping_answer(),
        Request::Status => match tokio::task::spawn_blocking({
            let handle = handle.clone();
            move || status(handle.housekeeping())
        })
        .await
        {
            Ok(s) => protocol::status_answer(&s),
            Err(e) => internal(e),
        },
        Request::Check {
            user,
            password,
            service,
            rhost,
            client,
            state,
            deadline_ms,
        } => {
            let req = CheckRequest {
                user,
                password,
                service,
                rhost,
                client: Some(client.unwrap_or_else(|| "socket".into())),
                state,
                defer_is_reject: false,
            };
            // Checked on the blocking thread, right before the engine: the wait for that
            // thread (and a stopped or stalled daemon) counts against the caller's deadline.
            let checked = tokio::task::spawn_blocking(move || match deadline_ms {
                Some(deadline) if now_unix_ms() >= deadline => {
                    engine.reject_unevaluated(&req, GAVE_UP)
                }
                _ => engine.check(&req),
            });
            match checked.await {
                Ok(d) => {
                    metrics::get().request(Frontend::Socket, d.verdict, started.elapsed());
                    protocol::check_answer(&d)
                }
                Err(e) => internal(e),
            }
        }
        Request::Account {
            user,
            service,
            rhost,
        } => {
            let res = tokio::task::spawn_blocking(move || {
                let (v, reason) = engine.account_check(&user, &service, rhost.as_deref());
                if v == AccountVerdict::Deny {
                    // As `&str`: quoted and escaped in the text log, like the audit line.
                    tracing::info!(
                        user = user.as_str(),
                        service = service.as_str(),
                        rhost = rhost.as_deref().unwrap_or("-"),
                        reason = reason.as_str(),
                        "account phase: deny"
                    );
                }
                v
            })
            .await;
            match res {
                Ok(AccountVerdict::Deny) => {
                    protocol::account_answer(AccountVerdict::Deny, messages::DENY)
                }
                Ok(v) => protocol::account_answer(v, ""),
                Err(e) => internal(e),
            }
        }
    }
}

/// The audit reason of a request dropped because its caller had stopped waiting.
pub const GAVE_UP: &str = "caller gave up (deadline passed) before evaluation";

fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Asks the database for its counts: a daemon whose database does not answer says so.
fn status(db: &dyn super::Housekeeping) -> protocol::StatusAnswer {
    let counts = db.counts();
    let m = metrics::get();
    let (store, accounts, tokens) = match counts {
        Ok((a, t)) => (
            "ok".to_string(),
            Some(usize::try_from(a).unwrap_or(usize::MAX)),
            Some(usize::try_from(t).unwrap_or(usize::MAX)),
        ),
        Err(e) => (format!("error: {e}"), None, None),
    };
    protocol::StatusAnswer {
        version: env!("CARGO_PKG_VERSION").to_string(),
        protocol: protocol::VERSION,
        uptime_s: m.uptime().as_secs(),
        store,
        accounts,
        tokens,
        requests: m
            .totals_by_verdict()
            .into_iter()
            .map(|(v, n)| (v.to_string(), n))
            .collect(),
    }
}

fn internal(e: tokio::task::JoinError) -> Vec<u8> {
    tracing::error!("socket: engine task failed: {e}");
    protocol::error_answer(&ProtoError::new(codes::INTERNAL, "internal error"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_capped_and_split() {
        let data = b"{\"op\":\"ping\"}\nsecond".to_vec();
        let mut r = BufReader::with_capacity(4, &data[..]);
        let mut line = Zeroizing::new(Vec::new());
        assert!(matches!(
            read_line(&mut r, &mut line).await.expect("read"),
            Line::Full
        ));
        assert_eq!(&line[..], b"{\"op\":\"ping\"}");
        let mut line = Zeroizing::new(Vec::new());
        assert!(matches!(
            read_line(&mut r, &mut line).await.expect("read"),
            Line::Full
        ));
        assert_eq!(&line[..], b"second");
        let mut line = Zeroizing::new(Vec::new());
        assert!(matches!(
            read_line(&mut r, &mut line).await.expect("read"),
            Line::Eof
        ));

        let mut exact = vec![b'a'; protocol::MAX_LINE];
        exact.push(b'\n');
        let mut r = BufReader::new(&exact[..]);
        let mut line = Zeroizing::new(Vec::new());
        assert!(matches!(
            read_line(&mut r, &mut line).await.expect("read"),
            Line::Full
        ));
        assert_eq!(line.len(), protocol::MAX_LINE);

        let over = vec![b'a'; protocol::MAX_LINE + 1];
        let mut r = BufReader::new(&over[..]);
        let mut line = Zeroizing::new(Vec::new());
        assert!(matches!(
            read_line(&mut r, &mut line).await.expect("read"),
            Line::TooLong
        ));
        assert!(line.len() <= protocol::MAX_LINE);
    }

    #[test]
    fn groups_resolve_or_fail_clearly() {
        assert_eq!(group_id("root").expect("root"), 0);
        assert_eq!(group_id("4242").expect("numeric"), 4242);
        let e = group_id("no-such-group-otpd").expect_err("unknown");
        assert!(e.to_string().contains("no such group"), "{e}");
    }

    #[test]
    fn throttle_logs_first_ten_then_every_hundredth() {
        let t = Throttle::default();
        let logged: Vec<u64> = (0..300).filter_map(|_| t.tick()).collect();
        assert_eq!(logged.len(), 13);
        assert_eq!(logged[10], 100);
    }
}
