//! UDP (RFC 3261 §18.2.1) on dedicated OS threads. Each listen address gets one socket per
//! core, bound with `SO_REUSEPORT` (DESIGN §7) so the kernel spreads datagrams over them, and
//! each socket gets one thread ([`serve`]) that blocks in `recvmmsg` for up to [`BATCH`]
//! datagrams, hands each to [`Server::handle`], and sends the answers that are ready with one
//! `sendmmsg`, each to the source address of its request (DESIGN §2 step 8).
//!
//! Why not a tokio task per socket: readiness-based I/O costs a `recvfrom` and a `sendto` per
//! datagram, plus `epoll_wait` and futex park/unpark between the reactor and its workers. A
//! thread blocked in `recvmmsg` is woken directly by the kernel and pays one system call per
//! batch in each direction. Measured on 2 shared cores with `tollgate-load` (100k users, ledger
//! off): daemon CPU per INVITE→answer→ACK went from 19–24 µs to 16–17 µs at 20k calls/s
//! (~15 datagrams per `recvmmsg`), from 22–23.5 µs to 19–20 µs with sipp at 4,000 calls/s, and
//! the closed loop at 2,000 calls outstanding from ~40k to 67–90k calls/s (with
//! [`RECV_BUFFER`]). What remains is per datagram, not per system call: the kernel's UDP work
//! (on loopback it includes delivering our answers into the client's socket) and
//! [`Server::handle`] itself.
//!
//! With the durable ledger a worker may also commit its own calls (DESIGN §6): it owns a
//! [`Collector`] that holds its calls' writes while it handles a batch; then it sends the
//! answers that are ready, commits the batch's reservations ([`Server::commit`], shared with the
//! other worker: see `ledger::combine`), and the 302s leave from there; then it may sleep
//! before receiving again. When it does that, and
//! when it hands the writes to the ledger's writer thread instead, is [`Pace`]'s to decide.
//!
//! The sockets are blocking, with a receive timeout ([`RECV_TIMEOUT`]) so that an idle worker
//! still looks at the shutdown flag that often. The worker's own sends pass `MSG_DONTWAIT`: a
//! full send buffer drops the answer (the client retransmits and the transaction cache answers
//! again) rather than stall the receive loop. A 302 may also leave from the ledger's writer
//! thread, through [`ReplyTo::Udp`], a `dup` of the same socket (so from the address the proxy
//! sent to); [`SEND_TIMEOUT`] bounds how long such a send can block.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tollgate_udp::{Inbox, Outbox, To};

use super::pace::Pace;
use super::Shutdown;
use crate::server::{Collector, ReplyTo, Server};
use crate::sip::Transport;
use crate::sip::MAX_MESSAGE_LEN;

/// Datagrams received (and answers sent) per system call at most, and what a worker lingers
/// for. Under load the kernel queue holds many; 64 (about 32 calls, an INVITE and an ACK each:
/// the ledger's [`ENOUGH_TO_COMMIT`](crate::ledger::linger::ENOUGH_TO_COMMIT)) amortises the
/// system calls and the commit well while keeping a batch's first answer from waiting long for
/// the last one's decision (64 × 1–2 µs).
pub const BATCH: usize = 64;

/// How long an idle worker blocks before it checks for shutdown.
pub const RECV_TIMEOUT: Duration = Duration::from_millis(100);

/// How long a blocking send (the ledger writer's, through [`ReplyTo::Udp`]) may wait for room
/// in the socket's send buffer before the answer is dropped.
pub const SEND_TIMEOUT: Duration = Duration::from_millis(5);

/// `SO_RCVBUF` asked for each socket. With the default (~208 KiB, ~90 queued INVITEs) a burst —
/// or a proxy with 2,000 calls outstanding — overflows the queue while a batch is handled, and
/// every dropped INVITE comes back as a retransmission 500 ms later: measured at 2,000 calls
/// outstanding, 35k calls/s with 12k retransmissions and timeouts, against 63–75k calls/s with
/// none at 4 MiB. The kernel caps it at `net.core.rmem_max` (raise that to get it all).
pub const RECV_BUFFER: usize = 4 << 20;

/// The share of the receive buffer (as the kernel accounts it: `SO_RCVBUF` as read back, the
/// point where it starts dropping) past which a worker sheds: new INVITEs get
/// `503 overloaded` with `Retry-After` instead of a decision (DESIGN §2 "Overload", issue "The
/// daemon" item 5). Half: the queue still absorbs bursts (a worker descheduled for a few ms on
/// a busy machine), and sheds well before the kernel would drop. A proxy told to retry later
/// backs off; a datagram dropped by a full queue only comes back as a retransmission, adding
/// to the load. The queue is measured with `SO_MEMINFO`, which counts each datagram's whole
/// buffer (a 700-byte INVITE takes ~2 KiB on loopback).
pub const SHED_SHARE: usize = 2;

/// Bytes per receive slot: more than any UDP payload (65,507 bytes over IPv4, 65,527 over IPv6
/// without jumbograms), so no datagram is ever cut; and one more than the largest message we
/// accept, should a larger one ever arrive, so that it shows up as too large rather than cut to
/// a size that parses. Only the pages a datagram fills are touched.
const SLOT: usize = MAX_MESSAGE_LEN + 1;

/// Binds `count` sockets to `addr` with `SO_REUSEPORT` (port 0: the first socket's port).
/// Each comes with a `dup` of itself for the ledger's writer thread, which sends the 302s it
/// committed from the same socket (so from the address the proxy sent to).
pub fn bind(addr: SocketAddr, count: usize) -> io::Result<Vec<(UdpSocket, Arc<UdpSocket>)>> {
    let mut sockets = Vec::with_capacity(count);
    let mut at = addr;
    for _ in 0..count.max(1) {
        let socket = tollgate_udp::bind_reuse_port(at, RECV_BUFFER)?;
        socket.set_read_timeout(Some(RECV_TIMEOUT))?;
        socket.set_write_timeout(Some(SEND_TIMEOUT))?;
        at = socket.local_addr()?;
        let sender = Arc::new(socket.try_clone()?);
        sockets.push((socket, sender));
        if !cfg!(unix) {
            break;
        }
    }
    Ok(sockets)
}

/// Receives, handles and answers datagrams on `socket` until `shutdown`; blocks: run it on a
/// thread of its own. `sender` is the `dup` of `socket` from [`bind`].
pub fn serve(server: Arc<Server>, socket: UdpSocket, sender: Arc<UdpSocket>, shutdown: Shutdown) {
    let mut inbox = Inbox::new(BATCH, SLOT);
    let mut outbox = Outbox::new(BATCH);
    // One answer buffer per slot, reused: `handle` clears it and writes the answer.
    let mut outs: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(1024)).collect();
    let mut ready = [false; BATCH];
    // One `ReplyTo` for the worker; only its destination changes per datagram.
    let mut reply = ReplyTo::Udp {
        socket: sender,
        to: SocketAddr::from(([0, 0, 0, 0], 0)),
    };
    // Where shedding starts: half of what the kernel gives the queue before it drops.
    let shed_at = socket2::SockRef::from(&socket)
        .recv_buffer_size()
        .map_or(RECV_BUFFER, |b| b)
        / SHED_SHARE;
    // With the durable ledger, who commits this worker's calls and how long it pauses between
    // receives (`pace`).
    let mut pace = Pace::new(&server, Instant::now());
    // This worker's calls' writes while it commits them itself.
    let mut collector = Collector::default();
    let mut pause = Duration::ZERO;
    while !stopping(&shutdown) {
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
        let got = inbox.recv(&socket, pause.is_zero());
        pause = Duration::ZERO;
        let n = match got {
            Ok(n) => n,
            Err(e) => {
                match e.kind() {
                    // The receive timeout, or a signal: look at the shutdown flag again.
                    io::ErrorKind::WouldBlock
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::Interrupted => {}
                    // e.g. ECONNREFUSED from an ICMP error of an earlier send: not fatal.
                    io::ErrorKind::ConnectionRefused => {
                        tracing::debug!(error = %e, "udp receive");
                    }
                    // Not expected (ENOMEM, ...): keep serving, without spinning on it.
                    _ => {
                        tracing::warn!(error = %e, "udp receive");
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
                continue;
            }
        };
        // Only a full batch can mean a queue building up: then ask how deep it is.
        let shed = n == BATCH && tollgate_udp::queued_bytes(&socket).is_some_and(|b| b > shed_at);
        if shed {
            server.shedding();
        }
        let mut here = pace.commits_here().then_some(&mut collector);
        for (i, (ready, out)) in ready.iter_mut().zip(outs.iter_mut()).enumerate().take(n) {
            *ready = false;
            let (Some(datagram), Some(source)) = (inbox.get(i), inbox.source(i)) else {
                continue;
            };
            if let ReplyTo::Udp { to, .. } = &mut reply {
                *to = source;
            }
            let here = here.as_deref_mut();
            *ready = if shed {
                server.handle_overloaded(datagram, source, Transport::Udp, &reply, here, out)
            } else {
                server.handle(datagram, source, Transport::Udp, &reply, here, out)
            };
        }
        // The answers that are ready, each to the source of its request, in one `sendmmsg`
        // that never blocks: what does not fit in the send buffer is dropped (and counted by
        // the kernel), as a lost datagram would be.
        let mut batch = outbox.batch();
        for (i, (out, &ready)) in outs.iter().zip(&ready).enumerate().take(n) {
            if ready {
                batch.push(out, To::SourceOf(&inbox, i));
            }
        }
        if let Some(e) = batch.send(&socket, false).error {
            tracing::debug!(error = %e, "udp send");
        }
        if pace.commits_here() {
            server.commit(&mut collector);
        }
        pause = pace.handled(n, Instant::now());
    }
}

/// Whether the daemon is shutting down (the flag is set, or its sender is gone).
fn stopping(shutdown: &Shutdown) -> bool {
    shutdown.has_changed().map_or(true, |_| *shutdown.borrow())
}

#[cfg(test)]
#[path = "udp_tests.rs"]
mod tests;
