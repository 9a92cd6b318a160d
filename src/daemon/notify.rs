//! systemd's readiness protocol (sd_notify): a datagram to `$NOTIFY_SOCKET`. A dozen lines of
//! our own instead of a crate: the protocol is one `sendto`.

use std::os::unix::net::UnixDatagram;

/// Sends `state` (e.g. "READY=1") to systemd; a no-op outside systemd.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let res = UnixDatagram::unbound().and_then(|sock| {
        let bytes = path.as_encoded_bytes();
        if let Some(name) = bytes.strip_prefix(b"@") {
            // Abstract socket namespace (Linux).
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(state.as_bytes(), &addr)
        } else {
            sock.send_to(state.as_bytes(), &path)
        }
    });
    if let Err(e) = res {
        tracing::warn!("sd_notify {state}: {e}");
    }
}

/// The watchdog interval systemd asked for (`WatchdogSec=`), if it asked this process.
pub fn watchdog_interval() -> Option<std::time::Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| std::time::Duration::from_micros(usec))
}
