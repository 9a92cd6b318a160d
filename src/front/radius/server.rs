//! Sockets and work. Each listen address has a few worker threads that each receive a
//! datagram, validate it and send the answer themselves, at most `max_in_flight` validations
//! at once. What does not fit is dropped and counted rather than queued: a RADIUS client
//! retries, and a queue that grows under a flood only makes every answer late.
//!
//! Plain threads rather than tokio tasks: the engine and the store are synchronous, so a
//! task had to hand each login to the blocking pool and take it back, two thread switches
//! per login on top of the one the group commit needs. On the two-core benchmark machine
//! those switches cost more CPU than the validation itself (docs/performance.md). A thread
//! that waits for its commit holds no other request up: the other workers keep receiving.

use super::duplicates::{DuplicateCache, InProgress, Key, Seen};
use super::group::Handed;
use super::per_source::{PerSource, SourceSlot};
use super::receivers::Receivers;
use super::stats::{inc, DropLogs, LogPerInterval, Stats};
use super::waiting::{self, Taken};
use super::wire::MAX_PACKET_LEN;
use super::{answer, handle_datagram_bytes, Client, Clients, Pending, RequestInfo, Step};
use crate::config::Config;
use crate::daemon::EngineHandle;
use crate::engine::{CheckRequest, Checked, Decision, Responder};
use crate::metrics::phase::{self, Phase};
use crate::metrics::{self, Drop as MDrop, Frontend};
use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Answers kept for retransmissions at most; at 30 s that is over 2,000 logins a second.
/// (57,344, 7/8 of 65,536, did not halve the map's 11 MiB as hoped: with entries coming and
/// going the table grows to twice the slots anyway, docs/performance.md.)
const DUPLICATE_CACHE_MIN: usize = 65_536;
/// How long a stop waits for validations already running.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Worker threads per listen address at most. Each validates one login at a time and waits
/// for its durable commit (a fraction of a millisecond to a few), so 64 keep up with tens of
/// thousands of logins a second while the group commit gathers them into few fsyncs.
const MAX_WORKERS: usize = 64;
/// How often an idle worker looks up from its socket to see whether the server stops.
const STOP_POLL: Duration = Duration::from_millis(200);
/// How often a parked worker looks whether the server stops (a stop wakes them anyway).
const PARKED_POLL: Duration = Duration::from_secs(2);
/// Receiving threads per CPU by default (`Receivers`): on two cores, two receiving threads
/// did better than four or eight, and 65 did worst (docs/performance.md).
const RECEIVERS_PER_CPU: usize = 1;
/// Stack of a worker: the engine and SQLite need little; the default 2 MiB is address space
/// wasted 64 times over.
const WORKER_STACK: usize = 512 * 1024;
/// Datagrams a receiving thread takes at most from what is waiting, to decide after one pass
/// of the account cache's barrier; the last of them waits for the others' decisions (about
/// 10 to 40 µs each at high load) before its own.
const TOGETHER: usize = 16;

pub(super) struct Shared {
    pub(super) handle: Arc<EngineHandle>,
    /// The client table of the configuration generation it was built from: rebuilt when a
    /// reload brought new clients or secrets.
    clients: std::sync::RwLock<(u64, Arc<Clients>)>,
    cache: Arc<DuplicateCache>,
    /// Validations running now; never more than `max_in_flight`.
    in_flight: AtomicUsize,
    max_in_flight: usize,
    per_source: Arc<PerSource>,
    /// One set per listen address, in `listen` order.
    receivers: Vec<Arc<Receivers>>,
    stopping: AtomicBool,
    /// Datagrams taken together whose thread went to sleep before deciding them (group.rs).
    pub(super) handed: Handed,
    stats: Stats,
    log: DropLogs,
}

/// The running RADIUS front-end.
pub struct RadiusServer {
    workers: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
    local: Vec<SocketAddr>,
}

/// Binds every `[radius] listen` address; `None` when the list is empty (RADIUS off). A
/// bind failure is an error, so the daemon does not report ready without its port.
pub async fn start(
    cfg: &Config,
    handle: Arc<EngineHandle>,
) -> Result<Option<RadiusServer>, String> {
    let r = &cfg.radius;
    if r.listen.is_empty() {
        return Ok(None);
    }
    // What can really run at once is bounded by the worker threads too; the per-source
    // share is taken of that, so one flooding source still leaves the others threads.
    let workers = r.max_in_flight.min(MAX_WORKERS);
    let per_source = match r.max_in_flight_per_source {
        0 => (workers / 4).max(1),
        // A share as large as the threads is no limit on them: the spare thread may validate
        // too. Above that it bounds the source's logins waiting for their commit (those hold
        // no thread, engine/mod.rs `check_deferrable`).
        n if n >= workers => n.max(workers + 1),
        n => n,
    };
    let clients = Clients::from_config(&r.clients);
    if clients.is_empty() {
        tracing::warn!("RADIUS listens but [[radius.clients]] is empty: every packet is dropped");
    }
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    // One more worker than validations may run, so that with every slot taken one worker
    // still receives, and drops what does not fit instead of leaving it to queue.
    let per_socket = workers + 1;
    let receiving = match r.receive_threads {
        0 => cpus * RECEIVERS_PER_CPU,
        n => n,
    };
    let receivers: Vec<Arc<Receivers>> = r
        .listen
        .iter()
        .map(|_| Arc::new(Receivers::new(receiving.min(per_socket))))
        .collect();
    let shared = Arc::new(Shared {
        clients: std::sync::RwLock::new((handle.generation(), Arc::new(clients))),
        handle,
        cache: Arc::new(DuplicateCache::new(
            r.duplicate_window,
            DUPLICATE_CACHE_MIN.max(8 * r.max_in_flight),
        )),
        in_flight: AtomicUsize::new(0),
        max_in_flight: r.max_in_flight,
        per_source: Arc::new(PerSource {
            max: u32::try_from(per_source).unwrap_or(u32::MAX),
            counts: Mutex::new(HashMap::new()),
        }),
        receivers,
        stopping: AtomicBool::new(false),
        handed: Handed::default(),
        stats: Stats::default(),
        log: DropLogs {
            unknown_source: LogPerInterval::new(),
            dropped: LogPerInterval::new(),
            overload: LogPerInterval::new(),
            overload_source: LogPerInterval::new(),
            not_pap: LogPerInterval::new(),
            io: LogPerInterval::new(),
        },
    });
    let mut workers = Vec::new();
    let mut local = Vec::new();
    for (n, addr) in r.listen.iter().enumerate() {
        let sock = UdpSocket::bind(addr)
            .map_err(|e| format!("cannot listen for RADIUS on {addr}: {e}"))?;
        sock.set_read_timeout(Some(STOP_POLL))
            .map_err(|e| format!("RADIUS socket {addr}: {e}"))?;
        if r.receive_buffer > 0 {
            waiting::receive_buffer(&sock, *addr, r.receive_buffer)?;
        }
        let bound = sock.local_addr().unwrap_or(*addr);
        tracing::info!(
            "RADIUS listening on {bound} ({per_socket} threads, {} receiving at a time)",
            shared.receivers[n].target()
        );
        local.push(bound);
        let sock = Arc::new(sock);
        for i in 0..per_socket {
            let (sock, shared) = (sock.clone(), shared.clone());
            let w = std::thread::Builder::new()
                .name(format!("otpd-radius-{i}"))
                .stack_size(WORKER_STACK)
                .spawn(move || worker(&sock, &shared, n))
                .map_err(|e| format!("cannot start a RADIUS worker thread: {e}"))?;
            workers.push(w);
        }
    }
    Ok(Some(RadiusServer {
        workers,
        shared,
        local,
    }))
}

impl RadiusServer {
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local
    }

    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// Stops receiving, lets running validations finish and send their answers (bounded
    /// wait), then logs the counters.
    pub async fn stop(self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        for r in &self.shared.receivers {
            r.wake_all();
        }
        let workers = self.workers;
        let joined = tokio::time::timeout(
            DRAIN_TIMEOUT,
            tokio::task::spawn_blocking(move || {
                for w in workers {
                    let _ = w.join();
                }
            }),
        )
        .await;
        if joined.is_err() {
            tracing::warn!(
                "RADIUS: validations still running after {DRAIN_TIMEOUT:?}; stopping anyway"
            );
        }
        tracing::info!("RADIUS stopped: {}", self.shared.stats.summary());
    }
}

/// One worker of the listen address `n`: while it holds a receiving role, receive, check,
/// validate, answer; parked otherwise; until the server stops.
fn worker(sock: &Arc<UdpSocket>, shared: &Arc<Shared>, n: usize) {
    let receivers = shared.receivers[n].clone();
    crate::blocking::set_lender(Some(receivers.clone()));
    // One byte more than a RADIUS packet may have, so an oversized datagram is seen as such
    // instead of being cut to a plausible length.
    let mut buf = vec![0u8; MAX_PACKET_LEN + 1];
    let mut taken = Taken::default();
    while receivers.take(&shared.stopping, PARKED_POLL) {
        receive(sock, shared, &receivers, &mut buf, &mut taken);
    }
}

/// One datagram received: its bytes, sender, arrival and the CPU sample begun for it.
pub(super) type Datagram<'a> = (&'a [u8], SocketAddr, Instant, Option<phase::Mark>);

/// Receives and handles datagrams until this thread is one receiver too many or the server
/// stops.
fn receive(
    sock: &Arc<UdpSocket>,
    shared: &Arc<Shared>,
    receivers: &Receivers,
    buf: &mut [u8],
    taken: &mut Taken,
) {
    while !shared.stopping.load(Ordering::Relaxed) {
        if receivers.retire_if_over() {
            return;
        }
        if shared.decide_handed(sock) {
            continue;
        }
        // One datagram in `phase::SAMPLE_EVERY` is timed from before `recvfrom`: the thread's
        // CPU clock does not count the sleep in it, only the system call and the wake-up.
        let cpu = phase::maybe_start(Phase::Receive);
        match sock.recv_from(buf) {
            Ok((n, src)) => {
                let first = (&buf[..n], src, Instant::now(), cpu);
                taken.take(sock, TOGETHER - 1);
                shared.on_received(sock, first, taken);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                if let Some(held) = shared.log.io.allow() {
                    tracing::warn!("RADIUS receive error: {e} ({held} more not logged)");
                }
                // Never spin on a socket error that repeats.
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// A validation slot, given back when dropped. It owns its way back, so a login whose answer
/// the store's writer sends keeps its slot until then.
struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Shared {
    /// The clients as configured now.
    fn clients(&self) -> Arc<Clients> {
        let generation = self.handle.generation();
        {
            let g = self.clients.read().unwrap_or_else(|p| p.into_inner());
            if g.0 == generation {
                return g.1.clone();
            }
        }
        let fresh = Arc::new(Clients::from_config(
            &self.handle.current().config().radius.clients,
        ));
        *self.clients.write().unwrap_or_else(|p| p.into_inner()) = (generation, fresh.clone());
        fresh
    }

    fn slot(self: &Arc<Self>) -> Option<Slot> {
        let mut n = self.in_flight.load(Ordering::Acquire);
        loop {
            if n >= self.max_in_flight {
                return None;
            }
            match self.in_flight.compare_exchange_weak(
                n,
                n + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(Slot(self.clone())),
                Err(now) => n = now,
            }
        }
    }

    pub(super) fn on_datagram(
        self: &Arc<Self>,
        sock: &Arc<UdpSocket>,
        data: &[u8],
        src: SocketAddr,
        received: Instant,
        cpu: Option<phase::Mark>,
    ) {
        inc(&self.stats.received);
        let Some(client) = self.clients().find(src.ip()).cloned() else {
            inc(&self.stats.unknown_source);
            metrics::get().radius_dropped(MDrop::UnknownClient);
            if let Some(held) = self.log.unknown_source.allow() {
                tracing::warn!(
                    "RADIUS packet from {src}, which is not a configured client: dropped \
                     ({held} more such drops not logged; add it to [[radius.clients]] if it \
                     is yours)"
                );
            }
            return;
        };
        let step = match handle_datagram_bytes(data, &client) {
            Ok(s) => s,
            Err(d) => {
                self.stats.count_drop(d);
                if let Some(held) = self.log.dropped.allow() {
                    tracing::warn!(
                        client = %client.name,
                        "RADIUS packet from {src} dropped: {d} ({held} more drops not logged)"
                    );
                }
                return;
            }
        };
        match step {
            Step::Status(bytes) => {
                metrics::get().radius_status_server();
                self.send(sock, &bytes, src)
            }
            Step::Refused { answer, why } => {
                inc(&self.stats.not_pap);
                if let Some(held) = self.log.not_pap.allow() {
                    tracing::info!(
                        client = %client.name,
                        "RADIUS Access-Request from {src} rejected: {} ({held} more not logged)",
                        why.reason()
                    );
                }
                self.send(sock, &answer, src);
            }
            Step::Check(p) => self.check(sock, client, *p, src, (received, cpu)),
        }
    }

    fn check(
        self: &Arc<Self>,
        sock: &Arc<UdpSocket>,
        client: Arc<Client>,
        p: Pending,
        src: SocketAddr,
        (received, cpu): (Instant, Option<phase::Mark>),
    ) {
        let key = Key {
            src,
            identifier: p.info.identifier,
            authenticator: p.info.authenticator,
        };
        match self.cache.begin(key, Instant::now()) {
            Seen::Answered(bytes) => {
                inc(&self.stats.duplicates_answered);
                metrics::get().radius_duplicate();
                self.send(sock, &bytes, src);
            }
            Seen::InProgress => {
                inc(&self.stats.duplicates_in_progress);
                metrics::get().radius_dropped(MDrop::InProgress);
            }
            Seen::New => {
                let guard = InProgress::new(self.cache.clone(), key);
                // The source's share first: a flood from one address is dropped here and
                // leaves the other clients their slots.
                let Some(source_slot) = self.per_source.try_take(src.ip()) else {
                    inc(&self.stats.overload);
                    inc(&self.stats.overload_source);
                    metrics::get().radius_dropped(MDrop::Overload);
                    if let Some(held) = self.log.overload_source.allow() {
                        tracing::warn!(
                            client = %client.name,
                            "RADIUS: {} validations in flight from {}, request from {src} \
                             dropped (radius.max_in_flight_per_source; {held} more not logged)",
                            self.per_source.max,
                            src.ip()
                        );
                    }
                    return;
                };
                let Some(slot) = self.slot() else {
                    inc(&self.stats.overload);
                    metrics::get().radius_dropped(MDrop::Overload);
                    if let Some(held) = self.log.overload.allow() {
                        tracing::warn!(
                            "RADIUS: {} validations in flight, request from {src} dropped \
                             ({held} more not logged)",
                            self.max_in_flight
                        );
                    }
                    return;
                };
                // Until the answer is sent: a stop waits for it (daemon::serve).
                let working = self.handle.begin_owned();
                let Pending { info, login } = p;
                let req = CheckRequest {
                    user: login.user,
                    password: login.password,
                    service: client.service.clone(),
                    rhost: login.rhost,
                    client: Some(client.name.clone()),
                    state: login.state,
                    // Defer and Deny are Access-Reject here.
                    defer_is_reject: true,
                    device: Default::default(),
                    code_only: false,
                };
                let engine = self.handle.current();
                let cpu = phase::lap(cpu, Phase::Receive);
                let checked = engine.check_deferrable(&req);
                let cpu = phase::lap(cpu, Phase::Decide);
                match checked {
                    Checked::Done(d) => {
                        let slots = (slot, source_slot);
                        self.reply(sock, &info, &d, &client, src, guard, received, slots);
                        phase::lap(cpu, Phase::Send);
                        drop(working);
                    }
                    // The commit of its counter advance is still to come: the store's writer
                    // sends the answer once it is durable, and this thread receives the next
                    // request meanwhile. What bounds the work in flight (the slots, the stop's
                    // wait, the duplicate entry) goes along until then.
                    Checked::Pending(login) => {
                        login.then(
                            engine,
                            req,
                            Reply {
                                shared: self.clone(),
                                sock: sock.clone(),
                                info,
                                client,
                                src,
                                guard,
                                received,
                                held: (slot, source_slot, working),
                            },
                        );
                    }
                }
            }
        }
    }

    /// Encodes and sends the answer to a decided login, and keeps it for retransmissions.
    /// The login's slots go back before the answer leaves: a client that sends its next
    /// request on this answer must find them free (tests/flood.rs).
    #[allow(clippy::too_many_arguments)]
    fn reply(
        &self,
        sock: &UdpSocket,
        info: &RequestInfo,
        d: &Decision,
        client: &Client,
        src: SocketAddr,
        guard: InProgress,
        received: Instant,
        slots: (Slot, SourceSlot),
    ) {
        match answer(info, d, client) {
            Ok(bytes) => {
                let bytes: Arc<[u8]> = bytes.into();
                guard.finish(bytes.clone());
                drop(slots);
                self.send(sock, &bytes, src);
                metrics::get().request(Frontend::Radius, d.verdict, received.elapsed());
            }
            Err(e) => {
                inc(&self.stats.failed);
                tracing::error!(client = %client.name, "RADIUS: no answer to {src}: {e}");
            }
        }
    }

    fn send(&self, sock: &UdpSocket, bytes: &[u8], dst: SocketAddr) {
        match sock.send_to(bytes, dst) {
            Ok(_) => inc(&self.stats.answered),
            Err(e) => {
                inc(&self.stats.failed);
                if let Some(held) = self.log.io.allow() {
                    tracing::warn!(
                        "RADIUS: answer to {dst} not sent: {e} ({held} more not logged)"
                    );
                }
            }
        }
    }
}

/// A deferred login's way back to its client: run by the store's writer once the counter
/// advance is durable. What bounds the work in flight (the slots, the stop's wait, the
/// duplicate entry) is held until the answer is made; the stop's wait until it has left.
struct Reply {
    shared: Arc<Shared>,
    sock: Arc<UdpSocket>,
    info: RequestInfo,
    client: Arc<Client>,
    src: SocketAddr,
    guard: InProgress,
    received: Instant,
    held: (Slot, SourceSlot, crate::daemon::reload::InFlightOwned),
}

impl Responder for Reply {
    fn respond(self, d: &Decision) {
        let Reply {
            shared,
            sock,
            info,
            client,
            src,
            guard,
            received,
            held,
        } = self;
        // Timed on the writer's own sample of answers: this runs there, once per login of a
        // commit.
        let cpu = phase::maybe_start(Phase::Send);
        let (slot, source_slot, working) = held;
        let slots = (slot, source_slot);
        shared.reply(&sock, &info, d, &client, src, guard, received, slots);
        phase::lap(cpu, Phase::Send);
        // The stop waits for the send.
        drop(working);
    }
}
