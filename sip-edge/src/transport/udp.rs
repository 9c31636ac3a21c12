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
//! With the durable ledger a worker may also commit its own calls (DESIGN §6): after handling a
//! batch it sends the answers that are ready, commits the batch's reservations
//! ([`Server::commit_here`], shared with the other worker: see `ledger::combine`), and the
//! 302s leave from there; then it may sleep before receiving again. When it does that, and
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

use socket2::{Domain, Protocol, Socket, Type};

use super::pace::Pace;
use super::Shutdown;
use crate::ledger::ReplyTo;
use crate::server::Server;
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
        let s = Socket::new(Domain::for_address(at), Type::DGRAM, Some(Protocol::UDP))?;
        #[cfg(unix)]
        s.set_reuse_port(true)?;
        // Best effort: the kernel caps it at `net.core.rmem_max`.
        if let Err(e) = s.set_recv_buffer_size(RECV_BUFFER) {
            tracing::debug!(error = %e, "SO_RCVBUF");
        }
        s.set_read_timeout(Some(RECV_TIMEOUT))?;
        s.set_write_timeout(Some(SEND_TIMEOUT))?;
        s.bind(&at.into())?;
        let socket: UdpSocket = s.into();
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
    let mut inbox = Inbox::new();
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
        let shed = n == BATCH && backlog(&socket).is_some_and(|b| b > shed_at);
        if shed {
            server.shedding();
        }
        for (i, (ready, out)) in ready.iter_mut().zip(outs.iter_mut()).enumerate().take(n) {
            *ready = false;
            let Some((datagram, source)) = inbox.get(i) else {
                continue;
            };
            if let ReplyTo::Udp { to, .. } = &mut reply {
                *to = source;
            }
            *ready = if shed {
                server.handle_overloaded(datagram, source, Transport::Udp, &reply, out)
            } else {
                server.handle(datagram, source, Transport::Udp, &reply, out)
            };
        }
        inbox.answer(&socket, &outs, ready.get(..n).unwrap_or_default());
        if pace.commits_here() {
            server.commit_here();
        }
        pause = pace.handled(&server, n, Instant::now());
    }
}

/// The bytes queued on `socket`'s receive side (`SO_MEMINFO`, Linux ≥ 4.6), or `None` where it
/// cannot be read (then nothing is shed).
fn backlog(socket: &UdpSocket) -> Option<usize> {
    #[cfg(all(
        target_os = "linux",
        any(
            target_arch = "x86_64",
            target_arch = "x86",
            target_arch = "aarch64",
            target_arch = "arm",
            target_arch = "riscv64"
        )
    ))]
    {
        use std::os::fd::AsRawFd;
        /// `SO_MEMINFO` of `asm-generic/socket.h` (not exported by `libc`).
        const SO_MEMINFO: libc::c_int = 55;
        // `SK_MEMINFO_VARS` of `linux/sock_diag.h`.
        let mut info = [0u32; 9];
        let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
        // SAFETY: `info` is a writable buffer of `len` bytes that outlives the call; the
        // kernel writes at most `len` bytes and updates `len`.
        let r = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_MEMINFO,
                info.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if r != 0 {
            return None;
        }
        info.get(libc::SK_MEMINFO_RMEM_ALLOC as usize)
            .map(|&b| b as usize)
    }
    #[cfg(not(all(
        target_os = "linux",
        any(
            target_arch = "x86_64",
            target_arch = "x86",
            target_arch = "aarch64",
            target_arch = "arm",
            target_arch = "riscv64"
        )
    )))]
    {
        let _ = socket;
        None
    }
}

/// Whether the daemon is shutting down (the flag is set, or its sender is gone).
fn stopping(shutdown: &Shutdown) -> bool {
    shutdown.has_changed().map_or(true, |_| *shutdown.borrow())
}

#[cfg(target_os = "linux")]
use mmsg::Inbox;

/// Batches with `recvmmsg`/`sendmmsg` (Linux).
#[cfg(target_os = "linux")]
mod mmsg {
    use std::io;
    use std::mem::size_of;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket};
    use std::os::fd::AsRawFd;
    use std::ptr;

    use super::{BATCH, SLOT};

    /// The receive buffers of one worker and the message headers pointing into them, reused
    /// for every batch (nothing is allocated per datagram).
    ///
    /// The headers hold raw pointers into the buffers; they are rewritten before each system
    /// call rather than set once, so that moving the `Inbox` can never leave one dangling.
    pub struct Inbox {
        /// `BATCH` slots of [`SLOT`] bytes. Zeroed lazily by the allocator: pages are only
        /// touched as datagrams fill them, so the resident cost is what is received.
        bufs: Vec<u8>,
        /// The source address of each datagram, and then the destination of its answer.
        names: Box<[libc::sockaddr_storage; BATCH]>,
        iovs: Box<[libc::iovec; BATCH]>,
        msgs: Box<[libc::mmsghdr; BATCH]>,
        send_iovs: Box<[libc::iovec; BATCH]>,
        send_msgs: Box<[libc::mmsghdr; BATCH]>,
        /// Datagrams held from the last [`Inbox::recv`].
        count: usize,
    }

    /// Zeroed C structures.
    fn zeroed<T: Copy>() -> Box<[T; BATCH]> {
        // SAFETY: only used for `sockaddr_storage`, `iovec` and `mmsghdr`, plain C structures
        // of integers and raw pointers for which all-zero bytes are a valid value.
        Box::new([unsafe { std::mem::zeroed::<T>() }; BATCH])
    }

    impl Inbox {
        pub fn new() -> Inbox {
            Inbox {
                bufs: vec![0; BATCH * SLOT],
                names: zeroed(),
                iovs: zeroed(),
                msgs: zeroed(),
                send_iovs: zeroed(),
                send_msgs: zeroed(),
                count: 0,
            }
        }

        /// Takes up to [`BATCH`] queued datagrams without waiting for more. With `wait`, first
        /// blocks until at least one is queued (or the socket's receive timeout elapses:
        /// `WouldBlock`; `MSG_WAITFORONE`); without, returns `WouldBlock` at once if none is.
        /// Returns how many it holds.
        pub fn recv(&mut self, socket: &UdpSocket, wait: bool) -> io::Result<usize> {
            let flags = if wait {
                libc::MSG_WAITFORONE
            } else {
                libc::MSG_DONTWAIT
            };
            self.count = 0;
            let base = self.bufs.as_mut_ptr();
            for (i, iov) in self.iovs.iter_mut().enumerate() {
                *iov = libc::iovec {
                    iov_base: base.wrapping_add(i * SLOT).cast(),
                    iov_len: SLOT,
                };
            }
            let names = self.names.as_mut_ptr();
            let iovs = self.iovs.as_mut_ptr();
            for (i, m) in self.msgs.iter_mut().enumerate() {
                let h = &mut m.msg_hdr;
                h.msg_name = names.wrapping_add(i).cast();
                h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                h.msg_iov = iovs.wrapping_add(i);
                h.msg_iovlen = 1;
                h.msg_control = ptr::null_mut();
                h.msg_controllen = 0;
                h.msg_flags = 0;
                m.msg_len = 0;
            }
            // SAFETY: `msgs` holds BATCH headers, each pointing at its own `names` entry (with
            // its size as `msg_namelen`) and its own iovec, which covers a disjoint SLOT-byte
            // range of `bufs` (BATCH × SLOT bytes). All of them live in `self`, which the call
            // borrows mutably, and the kernel writes within those bounds only.
            let n = unsafe {
                libc::recvmmsg(
                    socket.as_raw_fd(),
                    self.msgs.as_mut_ptr(),
                    BATCH as libc::c_uint,
                    flags as _,
                    ptr::null_mut(),
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            self.count = (n as usize).min(BATCH);
            Ok(self.count)
        }

        /// Datagram `i` of the last batch and its source address.
        pub fn get(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
            if i >= self.count {
                return None;
            }
            let m = self.msgs.get(i)?;
            let len = (m.msg_len as usize).min(SLOT);
            let bytes = self.bufs.get(i * SLOT..i * SLOT + len)?;
            let source = socket_addr(self.names.get(i)?, m.msg_hdr.msg_namelen)?;
            Some((bytes, source))
        }

        /// Sends `outs[i]` to the source of datagram `i`, for every `i` where `ready[i]`, in
        /// one `sendmmsg` (more if one fails). Never blocks: what does not fit in the send
        /// buffer is dropped (and counted by the kernel), as a lost datagram would be.
        pub fn answer(&mut self, socket: &UdpSocket, outs: &[Vec<u8>], ready: &[bool]) {
            // Which datagram each answer goes back to.
            let mut to = [0usize; BATCH];
            let mut k = 0;
            for (i, out) in outs.iter().enumerate().take(self.count) {
                if !ready.get(i).copied().unwrap_or(false) {
                    continue;
                }
                let (Some(iov), Some(slot)) = (self.send_iovs.get_mut(k), to.get_mut(k)) else {
                    break;
                };
                *iov = libc::iovec {
                    iov_base: out.as_ptr().cast_mut().cast(),
                    iov_len: out.len(),
                };
                *slot = i;
                k += 1;
            }
            let names = self.names.as_mut_ptr();
            let iovs = self.send_iovs.as_mut_ptr();
            for (j, (m, &i)) in self.send_msgs.iter_mut().zip(&to).enumerate().take(k) {
                let h = &mut m.msg_hdr;
                h.msg_name = names.wrapping_add(i).cast();
                h.msg_namelen = self.msgs.get(i).map_or(0, |r| r.msg_hdr.msg_namelen);
                h.msg_iov = iovs.wrapping_add(j);
                h.msg_iovlen = 1;
                h.msg_control = ptr::null_mut();
                h.msg_controllen = 0;
                h.msg_flags = 0;
                m.msg_len = 0;
            }
            // Every header `..k` points at a source address the kernel wrote (with its
            // length) and an iovec over a live `outs` buffer (see above).
            if let Some(hdrs) = self.send_msgs.get_mut(..k) {
                crate::transport::udp_send::linux::send_all(socket, hdrs);
            }
        }
    }

    /// The address the kernel wrote into `name` (`len` bytes of it).
    fn socket_addr(name: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
        let len = len as usize;
        match libc::c_int::from(name.ss_family) {
            libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
                // SAFETY: `sockaddr_storage` is large and aligned enough for every socket
                // address type, and the family and length say the kernel wrote a
                // `sockaddr_in` there.
                let a = unsafe { &*ptr::from_ref(name).cast::<libc::sockaddr_in>() };
                let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                Some(SocketAddr::from((ip, u16::from_be(a.sin_port))))
            }
            libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
                // SAFETY: as above, for a `sockaddr_in6`.
                let a = unsafe { &*ptr::from_ref(name).cast::<libc::sockaddr_in6>() };
                let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
                let port = u16::from_be(a.sin6_port);
                Some(SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    port,
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }
}

#[cfg(not(target_os = "linux"))]
use single::Inbox;

/// One datagram per system call, where `recvmmsg`/`sendmmsg` are not available.
#[cfg(not(target_os = "linux"))]
mod single {
    use std::io;
    use std::net::{SocketAddr, UdpSocket};

    use super::SLOT;

    pub struct Inbox {
        buf: Vec<u8>,
        got: Option<(usize, SocketAddr)>,
    }

    impl Inbox {
        pub fn new() -> Inbox {
            Inbox {
                buf: vec![0; SLOT],
                got: None,
            }
        }

        pub fn recv(&mut self, socket: &UdpSocket, wait: bool) -> io::Result<usize> {
            self.got = None;
            socket.set_nonblocking(!wait)?;
            let got = socket.recv_from(&mut self.buf)?;
            self.got = Some(got);
            Ok(1)
        }

        pub fn get(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
            let (n, source) = self.got.filter(|_| i == 0)?;
            Some((self.buf.get(..n)?, source))
        }

        pub fn answer(&mut self, socket: &UdpSocket, outs: &[Vec<u8>], ready: &[bool]) {
            if let (Some((_, to)), Some(out), Some(true)) =
                (self.got, outs.first(), ready.first().copied())
            {
                if let Err(e) = socket.send_to(out, to) {
                    tracing::debug!(error = %e, %to, "udp send");
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "udp_tests.rs"]
mod tests;
