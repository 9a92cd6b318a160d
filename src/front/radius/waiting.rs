//! Datagrams waiting on a socket: how many the kernel may hold for it, and those already
//! there, taken without sleeping. A receiving thread that finds several decides them together
//! after one pass of the account cache's barrier (`Engine::for_received`): on PostgreSQL that
//! barrier is a round trip to the server, and waiting for it once per login cost more CPU
//! than the login's own work (docs/performance.md).
//!
//! The standard library's `UdpSocket` has no receive that never sleeps on a socket the other
//! threads use blocking; `recvfrom` with `MSG_DONTWAIT` is that, for this one call.

use super::wire::MAX_PACKET_LEN;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::time::Instant;

/// Datagrams taken from what was waiting, their bytes one after another in one buffer: a
/// thread keeps room for one more datagram than it took, not a 4 KiB buffer per datagram.
#[derive(Default)]
pub struct Taken {
    bytes: Vec<u8>,
    items: Vec<Item>,
}

/// One datagram taken: where its bytes are, who sent it, when.
struct Item {
    at: Range<usize>,
    src: SocketAddr,
    received: Instant,
}

impl Taken {
    /// Takes up to `max` datagrams of those waiting on `sock` now, without sleeping.
    pub fn take(&mut self, sock: &UdpSocket, max: usize) {
        self.bytes.clear();
        self.items.clear();
        while self.items.len() < max {
            let start = self.bytes.len();
            // One byte more than a RADIUS packet may have, as for the first datagram.
            self.bytes.resize(start + MAX_PACKET_LEN + 1, 0);
            let Some((n, src)) = try_recv_from(sock, &mut self.bytes[start..]) else {
                self.bytes.truncate(start);
                return;
            };
            self.bytes.truncate(start + n);
            self.items.push(Item {
                at: start..start + n,
                src,
                received: Instant::now(),
            });
        }
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// The `i`th datagram taken: its bytes, sender and arrival.
    pub fn get(&self, i: usize) -> Option<(&[u8], SocketAddr, Instant)> {
        let it = self.items.get(i)?;
        Some((self.bytes.get(it.at.clone())?, it.src, it.received))
    }
}

/// One datagram into `buf` if one is waiting now. `None` when none is, and on an error: the
/// thread's next blocking receive meets the error again and reports it.
fn try_recv_from(sock: &UdpSocket, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
    // SAFETY: an all-zero sockaddr_storage is a valid value (plain integers and arrays).
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `buf` and `addr` are valid for writes of the lengths passed, and the kernel
    // writes no more than those; the descriptor is the socket's, open while `sock` lives.
    let n = unsafe {
        libc::recvfrom(
            sock.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
            (&mut addr as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    let n = usize::try_from(n).ok()?;
    Some((n, socket_addr(&addr, len)?))
}

/// The sender's address as `UdpSocket::recv_from` gives it.
fn socket_addr(a: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match i32::from(a.ss_family) {
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the kernel wrote a sockaddr_in (family and length checked), and
            // sockaddr_storage is large and aligned enough for one.
            let sin = unsafe { &*(a as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for a sockaddr_in6.
            let sin6 =
                unsafe { &*(a as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Asks the kernel to queue up to `bytes` of datagrams for `sock` while every receiving
/// thread is busy: with the default (about 256 small requests) a burst after a NAS restart,
/// or a flood during one slow flush, made the kernel drop real logins before otpd saw them
/// (tests/flood.rs). The kernel caps the size at `net.core.rmem_max` without an error, so
/// what it granted is read back and a shortfall is logged.
pub fn receive_buffer(sock: &UdpSocket, addr: SocketAddr, bytes: usize) -> Result<(), String> {
    let fd = sock.as_raw_fd();
    // A kernel whose default is already larger keeps it: the setting never shrinks the queue.
    if granted_receive_buffer(fd).is_some_and(|now| now >= bytes) {
        return Ok(());
    }
    let asked = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `fd` is this open socket's descriptor; the option value is a c_int of `len` bytes.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&asked as *const libc::c_int).cast(),
            len,
        )
    };
    if rc != 0 {
        return Err(format!(
            "RADIUS socket {addr}: cannot set radius.receive_buffer: {}",
            std::io::Error::last_os_error()
        ));
    }
    let granted = granted_receive_buffer(fd).unwrap_or(bytes);
    if granted < bytes {
        tracing::warn!(
            "RADIUS {addr}: the kernel granted a receive buffer of {granted} bytes, not the \
             {bytes} of radius.receive_buffer; raise net.core.rmem_max (sysctl) to at least \
             {bytes}, or bursts of logins may be dropped before otpd sees them"
        );
    }
    Ok(())
}

/// The receive buffer the kernel grants the socket `fd`, in the bytes one asks for (it reports
/// twice that: its own bookkeeping counts against the buffer).
fn granted_receive_buffer(fd: std::os::fd::RawFd) -> Option<usize> {
    let mut granted: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `fd` is an open socket; the kernel writes at most `len` bytes into `granted`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&mut granted as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (rc == 0).then(|| usize::try_from(granted).unwrap_or(0) / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_waiting_is_none_and_a_waiting_datagram_comes_with_its_sender() {
        for local in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(rx) = UdpSocket::bind(local) else {
                // A machine without IPv6 on loopback: the IPv4 round still ran.
                assert_ne!(local, "127.0.0.1:0", "IPv4 loopback must bind");
                continue;
            };
            let tx = UdpSocket::bind(local).expect("bind sender");
            let mut buf = [0u8; 64];
            assert_eq!(
                try_recv_from(&rx, &mut buf),
                None,
                "{local}: nothing sent yet"
            );
            tx.send_to(b"first", rx.local_addr().expect("addr"))
                .expect("send");
            tx.send_to(b"second", rx.local_addr().expect("addr"))
                .expect("send");
            let mut got = Vec::new();
            for _ in 0..1000 {
                if let Some((n, src)) = try_recv_from(&rx, &mut buf) {
                    got.push((buf[..n].to_vec(), src));
                    if got.len() == 2 {
                        break;
                    }
                } else {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
            let sender = tx.local_addr().expect("addr");
            assert_eq!(
                got,
                vec![(b"first".to_vec(), sender), (b"second".to_vec(), sender)],
                "{local}"
            );
            assert_eq!(try_recv_from(&rx, &mut buf), None, "{local}: all taken");
        }
    }

    #[test]
    fn taken_datagrams_keep_their_bytes_and_senders_up_to_the_limit() {
        let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let tx = UdpSocket::bind("127.0.0.1:0").expect("bind sender");
        let to = rx.local_addr().expect("addr");
        let sent: [&[u8]; 3] = [b"a", &[7u8; MAX_PACKET_LEN], b"ccc"];
        for d in sent {
            tx.send_to(d, to).expect("send");
        }
        let mut t = Taken::default();
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        let mut got: Vec<(Vec<u8>, SocketAddr)> = Vec::new();
        while got.len() < 3 && Instant::now() < deadline {
            t.take(&rx, 2);
            assert!(t.len() <= 2, "never more than asked for");
            got.extend(
                (0..t.len())
                    .filter_map(|i| t.get(i))
                    .map(|(b, src, _)| (b.to_vec(), src)),
            );
        }
        let from = tx.local_addr().expect("addr");
        let want: Vec<(Vec<u8>, SocketAddr)> = sent.iter().map(|d| (d.to_vec(), from)).collect();
        assert_eq!(got, want);
        t.take(&rx, 2);
        assert!(t.is_empty(), "nothing left");
    }
}
