//! TCP (RFC 3261 §18.3): messages framed by Content-Length ([`crate::sip::frame_len`]), one task
//! per connection, each closed after `tcp_idle_timeout_seconds` without a byte. A stream that
//! cannot be framed any more gets the error's answer when it can be addressed, then is closed.
//!
//! TLS listeners (`tls:`, RFC 3261 §26.2.1) are the same: the same slots and limits, judged at
//! `accept` before any handshake, then the TLS handshake in the connection's own task (bounded
//! by [`crate::tls::HANDSHAKE_TIMEOUT`], so garbage or a stalled client only ever costs its own
//! slot), then the same framing over the decrypted stream.
//!
//! Connection slots are judged at `accept`, before a connection holds anything, so that no
//! one outside `[sip].trusted_peers` can lock the trusted proxies out by opening idle
//! connections:
//! - a **trusted** peer (the live set: a reload may change it) takes one of
//!   `tcp_max_connections` slots, and at most `tcp_max_connections_per_peer` of them per
//!   source address, so one misbehaving proxy cannot take them all either;
//! - an **untrusted** peer never takes one of those. With `untrusted = "drop"` its
//!   connection is closed at once. With `"reject"` it may hold one of a few
//!   ([`UNTRUSTED_SLOTS`]) connections of its own, for [`UNTRUSTED_IDLE`] at most, which
//!   answers its first request `403 untrusted_peer` (DESIGN §2 step 1, so a misconfigured
//!   proxy learns why) and closes; when those are in use it is closed at once, without a 403:
//!   a connection that has sent nothing has no request to answer.
//!
//! Every connection closed at `accept` is counted (`tollgate_tcp_refused_total{reason}`) and
//! logged at most once a second, with the counts since the last line. All of this happens once
//! per connection, never per message.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use super::{stopped, Shutdown};
use crate::config::Untrusted;
use crate::metrics::{RefusedLabels, TCP_REFUSED_REASONS};
use crate::server::{ReplyTo, Server};
use crate::sip::{frame_len, Transport};
use crate::tls::Tls;

/// Responses held for one connection by the ledger at most: as many as the ledger's default
/// queue holds, so a busy pipelining proxy never loses one (over TCP a dropped answer is not
/// retransmitted; the client's transaction would time out). tokio allocates the channel as it
/// fills, not up front.
const HELD: usize = 65_536;

/// How long shutdown waits for open connections to finish what they hold.
const DRAIN: Duration = Duration::from_secs(5);

/// Connections kept, apart from the trusted peers' slots, to answer untrusted peers
/// `403 untrusted_peer` with `untrusted = "reject"`.
pub const UNTRUSTED_SLOTS: usize = 16;

/// How long such a connection waits for its request.
pub const UNTRUSTED_IDLE: Duration = Duration::from_secs(2);

/// Connection limits (`[sip].tcp_*`). A reload may change them ([`Server::tcp_limits`]): each
/// connection is judged by the limits in effect when it is accepted and keeps the idle
/// timeout it was given; lowering a limit closes nothing, it refuses new connections until
/// enough have ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections of trusted peers at most, per listener.
    pub max_connections: usize,
    /// Connections from one source address at most, per listener.
    pub per_peer: usize,
    pub idle: Duration,
}

impl Limits {
    /// The limits `[sip]` sets.
    pub fn of(sip: &crate::config::SipTable) -> Limits {
        Limits {
            max_connections: sip.tcp_max_connections,
            per_peer: sip.tcp_max_connections_per_peer,
            idle: Duration::from_secs(sip.tcp_idle_timeout_seconds.max(1)),
        }
    }
}

/// Connections open on a listener, of a kind (trusted, untrusted); a [`Held`] per connection.
#[derive(Default)]
struct Open(AtomicUsize);

impl Open {
    /// One more connection, unless `max` are open already.
    fn take(self: &Arc<Self>, max: usize) -> Option<Held> {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Held(Arc::clone(self)))
    }
}

/// A connection's place in [`Open`], given back when the connection ends.
struct Held(Arc<Open>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why a connection is closed at `accept`: an index into [`TCP_REFUSED_REASONS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    Untrusted = 0,
    PerPeer = 1,
    Full = 2,
}

/// Refusals since the last log line, logged at most once a second.
struct Refusals {
    since_log: [u64; 3],
    last_peer: Option<SocketAddr>,
    logged: Option<Instant>,
}

impl Refusals {
    fn new() -> Refusals {
        Refusals {
            since_log: [0; 3],
            last_peer: None,
            logged: None,
        }
    }

    fn refuse(&mut self, server: &Server, why: Refusal, peer: SocketAddr) {
        let reason = TCP_REFUSED_REASONS[why as usize];
        server
            .metrics
            .tcp_refused
            .get_or_create(&RefusedLabels { reason })
            .inc();
        self.since_log[why as usize] += 1;
        self.last_peer = Some(peer);
        if self
            .logged
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            self.log();
        }
    }

    /// Logs what was refused since the last line, if anything.
    fn log(&mut self) {
        let [untrusted, per_peer_limit, connection_limit] = self.since_log;
        if untrusted + per_peer_limit + connection_limit == 0 {
            return;
        }
        tracing::warn!(
            last_peer = ?self.last_peer,
            untrusted,
            per_peer_limit,
            connection_limit,
            "tcp connections refused at accept (counts since the last such line)"
        );
        self.since_log = [0; 3];
        self.logged = Some(Instant::now());
    }
}

/// Open connections per source address (IPv4-mapped IPv6 counted as IPv4).
#[derive(Default)]
struct PerPeer(Mutex<HashMap<IpAddr, usize>>);

impl PerPeer {
    /// One more connection from `ip`, unless it holds `max` already.
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<PeerSlot> {
        let ip = ip.to_canonical();
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = map.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            peers: Arc::clone(self),
            ip,
        })
    }
}

/// A connection's place in [`PerPeer`], given back when the connection ends.
struct PeerSlot {
    peers: Arc<PerPeer>,
    ip: IpAddr,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut map = self
            .peers
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// What a connection holds while it lives.
struct Slot {
    _open: Held,
    _peer: Option<PeerSlot>,
}

/// Accepts connections until shutdown, then drains them (at most [`DRAIN`]); with `tls`, each
/// connection is a TLS one, with the certificate in effect when it is accepted.
pub async fn serve(
    server: Arc<Server>,
    listener: TcpListener,
    tls: Option<Arc<Tls>>,
    shutdown: Shutdown,
) {
    let slots = Arc::new(Open::default());
    let untrusted_slots = Arc::new(Open::default());
    let per_peer = Arc::new(PerPeer::default());
    let mut refusals = Refusals::new();
    let mut flush = tokio::time::interval(Duration::from_secs(1));
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut conns = JoinSet::new();
    let mut stop = shutdown.clone();
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "tcp accept");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = flush.tick() => {
                // Refusals counted since the last line, once the second has passed.
                if refusals.logged.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    refusals.log();
                }
                continue;
            }
            () = stopped(&mut stop) => break,
        };
        // Reap finished connections so the set stays small.
        while conns.try_join_next().is_some() {}
        let (trusted, untrusted) = server.peer_policy(peer.ip());
        let limits = server.tcp_limits();
        let admitted = if trusted {
            match per_peer.take(peer.ip(), limits.per_peer) {
                None => Err(Refusal::PerPeer),
                Some(p) => match slots.take(limits.max_connections) {
                    Some(open) => Ok((
                        Slot {
                            _open: open,
                            _peer: Some(p),
                        },
                        limits.idle,
                        false,
                    )),
                    None => Err(Refusal::Full),
                },
            }
        } else if untrusted == Untrusted::Reject {
            match untrusted_slots.take(UNTRUSTED_SLOTS) {
                Some(open) => Ok((
                    Slot {
                        _open: open,
                        _peer: None,
                    },
                    UNTRUSTED_IDLE.min(limits.idle),
                    true,
                )),
                None => Err(Refusal::Untrusted),
            }
        } else {
            Err(Refusal::Untrusted)
        };
        match admitted {
            Ok((slot, idle, one_answer)) => {
                let _ = stream.set_nodelay(true);
                let server = Arc::clone(&server);
                let shutdown = shutdown.clone();
                match &tls {
                    None => {
                        conns.spawn(connection(
                            server, stream, peer, idle, one_answer, shutdown, slot,
                        ));
                    }
                    Some(tls) => {
                        let acceptor = tls.acceptor();
                        let failures = crate::tls::Failures {
                            counters: server.metrics.tls_handshake_failures.clone(),
                            listener: "sip",
                        };
                        conns.spawn(async move {
                            let Some(stream) =
                                crate::tls::handshake(acceptor, stream, peer, idle, &failures)
                                    .await
                            else {
                                return;
                            };
                            connection(server, stream, peer, idle, one_answer, shutdown, slot)
                                .await;
                        });
                    }
                }
            }
            // Dropping the stream closes it.
            Err(why) => refusals.refuse(&server, why, peer),
        }
    }
    refusals.log();
    drop(listener);
    let _ = tokio::time::timeout(DRAIN, async { while conns.join_next().await.is_some() {} }).await;
}

/// Writes `bytes` and flushes them: over TLS a write may leave records buffered in the session
/// when the socket is full, and nothing else would push them out before the next answer.
async fn send<S: AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}

/// Serves one connection until EOF, an error, `idle` without a byte, or shutdown; with
/// `one_answer` (an untrusted peer's), until its first answer is written. `S` is a TCP stream
/// or a TLS stream over one: the framing is the same (RFC 3261 §18.3).
async fn connection<S: AsyncRead + AsyncWrite + Unpin>(
    server: Arc<Server>,
    mut stream: S,
    peer: SocketAddr,
    idle: Duration,
    one_answer: bool,
    mut shutdown: Shutdown,
    _slot: Slot,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut out = Vec::with_capacity(1024);
    // Responses the ledger held until their batch committed come back through here, so this
    // task stays the connection's only writer.
    let (held_tx, mut held) = tokio::sync::mpsc::channel::<Vec<u8>>(HELD);
    let reply = ReplyTo::Tcp(held_tx);
    loop {
        // Every complete message already buffered.
        loop {
            match frame_len(&buf) {
                Ok(Some(n)) => {
                    let now = match buf.get(..n) {
                        Some(frame) => {
                            server.handle(frame, peer, Transport::Tcp, &reply, None, &mut out)
                        }
                        None => return,
                    };
                    if now && send(&mut stream, &out).await.is_err() {
                        return;
                    }
                    if now && one_answer {
                        let _ = stream.shutdown().await;
                        return;
                    }
                    buf.drain(..n);
                }
                Ok(None) => break,
                Err(_) => {
                    if server.unframeable(&buf, peer, &mut out) {
                        let _ = send(&mut stream, &out).await;
                    }
                    return;
                }
            }
        }
        let read = tokio::select! {
            r = tokio::time::timeout(idle, stream.read_buf(&mut buf)) => r,
            Some(bytes) = held.recv() => {
                if send(&mut stream, &bytes).await.is_err() {
                    return;
                }
                continue;
            }
            () = stopped(&mut shutdown) => {
                // Answers still held by the ledger get a moment to arrive.
                while let Ok(Some(bytes)) =
                    tokio::time::timeout(Duration::from_millis(500), held.recv()).await
                {
                    if send(&mut stream, &bytes).await.is_err() {
                        return;
                    }
                }
                return;
            }
        };
        match read {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => {}
            Err(_) => {
                tracing::debug!(%peer, "tcp idle timeout");
                return;
            }
        }
    }
}
