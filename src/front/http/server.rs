//! The accept loop: connection bounds (all, per source), TLS, hyper's HTTP/1.1 on each
//! connection with a bounded head, and an idle watchdog, so no client can hold a slot by
//! sending slowly or not at all.

use super::reply;
use super::tls::TlsSource;
use super::Peer;
use crate::config::HttpConfig;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;

/// Connections turned away with an answer at once; beyond this they are closed unanswered,
/// so a flood of connections cannot make the refusals themselves a load.
const MAX_REFUSING: usize = 64;
/// How long a refused connection may take to receive its answer.
const REFUSE_LIMIT: Duration = Duration::from_secs(2);
/// A TLS handshake that takes longer is dropped.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(5);

/// What one listener shares with the others.
pub(super) struct Shared {
    pub(super) settings: HttpConfig,
    pub(super) connections: Arc<Semaphore>,
    pub(super) refusing: Arc<Semaphore>,
    pub(super) per_source: Mutex<HashMap<IpAddr, usize>>,
    pub(super) tls: Option<TlsSource>,
    pub(super) router: Router,
}

impl Shared {
    pub(super) fn new(settings: HttpConfig, tls: Option<TlsSource>, router: Router) -> Shared {
        Shared {
            connections: Arc::new(Semaphore::new(settings.max_connections)),
            refusing: Arc::new(Semaphore::new(MAX_REFUSING)),
            per_source: Mutex::new(HashMap::new()),
            settings,
            tls,
            router,
        }
    }

    fn take_source(self: &Arc<Self>, ip: IpAddr) -> Option<SourceSlot> {
        let mut map = self.per_source.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= self.settings.max_connections_per_source {
            return None;
        }
        *n += 1;
        Some(SourceSlot(self.clone(), ip))
    }
}

/// One connection's share of its source's connections, given back when it closes.
struct SourceSlot(Arc<Shared>, IpAddr);

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut map = self.0.per_source.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.1) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.1);
            }
        }
    }
}

/// Accepts until the task is aborted.
pub(super) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, tls: bool) {
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!("http: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let peer = Peer { addr, tls };
        let conn = shared.connections.clone().try_acquire_owned();
        let source = shared.take_source(addr.ip());
        match (conn, source) {
            (Ok(permit), Some(slot)) => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    serve(stream, peer, &shared, None).await;
                    drop((permit, slot));
                });
            }
            (conn, source) => {
                // 503 when the server is full, 429 when this source has its share.
                let full = conn.is_err();
                drop((conn, source));
                let Ok(r) = shared.refusing.clone().try_acquire_owned() else {
                    continue;
                };
                let shared = shared.clone();
                tokio::spawn(refuse(stream, peer, shared, full, r));
            }
        }
    }
}

async fn refuse(
    stream: TcpStream,
    peer: Peer,
    shared: Arc<Shared>,
    full: bool,
    _r: OwnedSemaphorePermit,
) {
    let _ = tokio::time::timeout(REFUSE_LIMIT, serve(stream, peer, &shared, Some(full))).await;
}

/// Serves one connection; `refusal` answers every request with 503 (`true`) or 429 and closes.
async fn serve(stream: TcpStream, peer: Peer, shared: &Arc<Shared>, refusal: Option<bool>) {
    let activity = Arc::new(Activity::default());
    let io = Watched {
        inner: stream,
        activity: activity.clone(),
    };
    match (&shared.tls, peer.tls) {
        (Some(tls), true) => {
            let acceptor = tls.acceptor();
            match tokio::time::timeout(HANDSHAKE_LIMIT, acceptor.accept(io)).await {
                Ok(Ok(s)) => run(s, peer, shared, refusal, activity).await,
                Ok(Err(e)) => tracing::debug!("http: TLS handshake with {} failed: {e}", peer.addr),
                Err(_) => tracing::debug!("http: TLS handshake with {} too slow", peer.addr),
            }
        }
        _ => run(io, peer, shared, refusal, activity).await,
    }
}

async fn run<S>(
    io: S,
    peer: Peer,
    shared: &Arc<Shared>,
    refusal: Option<bool>,
    activity: Arc<Activity>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let s = &shared.settings;
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(Some(s.header_timeout))
        .max_buf_size(s.max_header_bytes.max(8192))
        .keep_alive(refusal.is_none());
    let router = shared.router.clone();
    let working = activity.clone();
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let router = router.clone();
        let working = working.clone();
        async move {
            if let Some(full) = refusal {
                return Ok::<_, std::convert::Infallible>(reply::refused(full));
            }
            req.extensions_mut().insert(peer);
            working.requests.fetch_add(1, Ordering::AcqRel);
            let answer = router.oneshot(req.map(axum::body::Body::new)).await;
            working.requests.fetch_sub(1, Ordering::AcqRel);
            working.touch();
            answer
        }
    });
    let conn = b.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let idle = s.idle_timeout;
    let mut tick = tokio::time::interval(idle.min(Duration::from_secs(1)));
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!("http: connection from {} ended: {e}", peer.addr);
                }
                return;
            }
            _ = tick.tick() => {
                if activity.idle_for() > idle && activity.requests.load(Ordering::Acquire) == 0 {
                    // Kept alive and silent, or a head that never completes: the slot goes
                    // to someone else.
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(1), conn.as_mut()).await;
                    return;
                }
            }
        }
    }
}

/// When a connection last received bytes or finished an answer, and whether a request on it
/// is being worked on.
struct Activity {
    started: Instant,
    last_ms: AtomicU64,
    requests: AtomicUsize,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            started: Instant::now(),
            last_ms: AtomicU64::new(0),
            requests: AtomicUsize::new(0),
        }
    }
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Release);
    }
    fn idle_for(&self) -> Duration {
        let now = self.started.elapsed();
        now.saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Acquire)))
    }
}

/// The TCP stream with its reads noted in [`Activity`].
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Binds every configured address; an address that cannot be bound stops the start.
pub(super) async fn bind(addrs: &[SocketAddr]) -> Result<Vec<TcpListener>, String> {
    let mut out = Vec::new();
    for a in addrs {
        out.push(
            TcpListener::bind(a)
                .await
                .map_err(|e| format!("http: cannot listen on {a}: {e}"))?,
        );
    }
    Ok(out)
}
