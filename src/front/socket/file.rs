//! The socket file: created private (umask, mode, group), a stale one cleared, and removed on
//! a clean stop only while it is still ours.

use super::{start_err, FrontError};
use std::ffi::CString;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::UnixStream;

/// How long a peer on a stale-looking socket gets to accept before we call it alive.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The socket file as created, for removal on a clean stop.
pub struct SocketFile {
    pub(super) path: PathBuf,
    pub(super) identity: (u64, u64),
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

/// Binds with a umask that leaves no window in which the file is wider than 0660. The umask
/// is process-wide, but at this point nothing else in the daemon creates files.
pub(super) fn bind_private(path: &Path) -> Result<std::os::unix::net::UnixListener, FrontError> {
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
pub(super) async fn clear_stale(path: &Path) -> Result<(), FrontError> {
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
pub(super) fn group_id(name: &str) -> Result<u32, FrontError> {
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
