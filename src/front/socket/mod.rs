//! The Unix socket front-end: wire protocol v1 (see `protocol.rs`, docs/protocol.md) for
//! `pam_otpd.so` and local callers.
//!
//! What keeps it safe to leave open to a mail server's processes: the file is mode 0660 with a
//! chosen group, and on top of that every peer's uid/gid (SO_PEERCRED, which the peer cannot
//! forge) must be on the allow-list; connections are bounded by a semaphore, lines by
//! [`protocol::MAX_LINE`], and idle or stalled peers by `idle_timeout`. When every slot is
//! taken, the connection that has waited longest for a request line is closed to make room
//! for the newcomer ([`Waiting`]): idle connections cannot starve a real login.

mod conn;
mod file;
#[cfg(test)]
mod tests;
mod waiting;

pub use conn::GAVE_UP;
pub use file::SocketFile;

use super::protocol::{self, codes, ProtoError};
use super::FrontError;
use crate::config::SocketConfig;
use crate::daemon::EngineHandle;
use crate::metrics;
use conn::serve_conn;
use file::{bind_private, clear_stale, group_id};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use waiting::Waiting;

/// The socket file's mode: owner and group read/write, nobody else.
const MODE: u32 = 0o660;
/// How long a newcomer waits for the slot of the connection closed for it.
const EVICT_WAIT: Duration = Duration::from_millis(200);

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
        let refused = Arc::new(LogSampler::default());
        let busy = Arc::new(LogSampler::default());
        let evicted = Arc::new(LogSampler::default());
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

/// Answers a refused peer with one error line, without waiting: a fresh socket's send buffer
/// is empty, so a short line always fits, and a peer that does not read cannot stall accept.
fn refuse(stream: &UnixStream, code: &'static str, msg: &str) {
    let _ = stream.try_write(&protocol::error_answer(&ProtoError::new(code, msg)));
}

/// Samples a stream of like events for the log by count: the first ten, then every hundredth
/// (unlike RADIUS's `LogPerInterval`, which goes by time): a local peer that hammers the
/// socket must not be able to flood the log.
#[derive(Default)]
pub(super) struct LogSampler(AtomicU64);

impl LogSampler {
    pub(super) fn tick(&self) -> Option<u64> {
        let n = self.0.fetch_add(1, Ordering::Relaxed) + 1;
        (n <= 10 || n % 100 == 0).then_some(n)
    }
}
