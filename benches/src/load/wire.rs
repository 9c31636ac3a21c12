//! The two transports behind one small interface ([`Wire`]) so that one worker loop
//! ([`super::worker`]) drives both: a connected, nonblocking UDP socket (one datagram per
//! message), or a nonblocking TCP connection (RFC 3261 §18.3: a byte stream framed by
//! `Content-Length`, with a send queue).
//!
//! Nonblocking sockets plus `poll(2)` rather than blocking calls: one thread both sends on its
//! schedule and receives, with no second thread per socket to wake and no lock between them.
//! Buffers are allocated once per socket.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use super::response;

/// Socket buffers asked for (the kernel caps them at `net.core.{r,w}mem_max`): a burst of a
/// few thousand datagrams must not be dropped while the thread is busy sending.
const SOCKET_BUFFER: usize = 8 << 20;
/// TCP: the sender holds back while this much is queued and unsent.
const TCP_BACKLOG: usize = 256 << 10;
/// TCP receive buffer (a response is < 1 KiB; many are read at once).
const TCP_INBUF: usize = 512 << 10;

/// One socket of the load, sending and receiving SIP messages.
pub trait Wire {
    /// Sends (UDP) or queues (TCP) one message.
    fn send(&mut self, msg: &[u8]) -> io::Result<()>;
    /// Writes what is queued, as far as the socket takes it now; returns how many queued
    /// messages were dropped (UDP) or an error that ends the connection (TCP).
    fn flush(&mut self) -> io::Result<u64>;
    /// The next whole message received, if one is there now, with the kernel's receive
    /// time (`CLOCK_REALTIME`, ns) when the socket records it.
    fn recv(&mut self) -> io::Result<Option<(&[u8], Option<u64>)>>;
    /// Whether [`Wire::recv`] gives kernel receive times: the loop can then sleep through
    /// its 1 ms slices instead of waking for every response, without skewing latencies.
    fn timestamps(&self) -> bool;
    /// Whether new calls should wait (TCP: too much queued).
    fn backlogged(&self) -> bool;
    /// Whether bytes wait to be written.
    fn wants_write(&self) -> bool;
    fn fd(&self) -> RawFd;
}

/// Waits until `wire` is readable (or writable, when it has bytes queued), at most
/// `timeout_ms` milliseconds.
pub fn wait(wire: &impl Wire, timeout_ms: i32) {
    let mut events = libc::POLLIN;
    if wire.wants_write() {
        events |= libc::POLLOUT;
    }
    let mut fds = libc::pollfd {
        fd: wire.fd(),
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd, count 1; poll only writes `revents`. An error (EINTR) is a
    // shorter wait, which the caller's loop tolerates.
    unsafe {
        libc::poll(&mut fds, 1, timeout_ms);
    }
}

/// Messages per `sendmmsg(2)` / `recvmmsg(2)` call.
const BATCH: usize = 64;
/// Control-message room per received datagram (one `SCM_TIMESTAMPNS`).
const CMSG_SLOT: usize = 64;
/// Room for one received datagram in a batch (the daemon's responses are < 1 KiB; a longer
/// one is truncated and then counted as unmatched).
const RECV_SLOT: usize = 4096;

/// A UDP socket connected to the daemon. With `mmsg`, messages are sent and received in
/// batches of up to [`BATCH`] per system call (`sendmmsg`/`recvmmsg`): at 100k calls/s a
/// worker otherwise spends most of its time entering and leaving the kernel.
pub struct UdpWire {
    socket: UdpSocket,
    mmsg: bool,
    /// Messages queued for the next `sendmmsg`, back to back; `out_ends[i]` ends message `i`.
    out: Vec<u8>,
    out_ends: Vec<usize>,
    /// Messages of full batches that could not be sent, reported by the next `flush`.
    dropped: u64,
    /// `BATCH` receive slots of `RECV_SLOT` bytes.
    inbuf: Box<[u8]>,
    in_lens: [usize; BATCH],
    /// Kernel receive times of the slots (ns since the epoch), when known.
    in_times: [Option<u64>; BATCH],
    /// `BATCH` control slots of `CMSG_SLOT` bytes (u64s: aligned for `cmsghdr`).
    control: Box<[u64]>,
    in_count: usize,
    in_next: usize,
}

impl UdpWire {
    /// A new socket on an ephemeral loopback port, connected to `target`.
    pub fn connect(target: SocketAddr, mmsg: bool) -> io::Result<UdpWire> {
        let s = Socket::new(
            Domain::for_address(target),
            Type::DGRAM,
            Some(Protocol::UDP),
        )?;
        // Best effort: smaller buffers only mean drops (and retransmissions) sooner.
        let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
        let _ = s.set_send_buffer_size(SOCKET_BUFFER);
        let local: SocketAddr = if target.is_ipv4() {
            ([127, 0, 0, 1], 0).into()
        } else {
            (std::net::Ipv6Addr::LOCALHOST, 0).into()
        };
        s.bind(&local.into())?;
        s.connect(&target.into())?;
        s.set_nonblocking(true)?;
        if mmsg {
            set_timestamps(&s)?;
        }
        Ok(UdpWire {
            socket: s.into(),
            mmsg,
            out: Vec::with_capacity(BATCH * 2048),
            out_ends: Vec::with_capacity(BATCH),
            dropped: 0,
            inbuf: vec![0; BATCH * RECV_SLOT].into_boxed_slice(),
            in_lens: [0; BATCH],
            in_times: [None; BATCH],
            control: vec![0; BATCH * CMSG_SLOT / 8].into_boxed_slice(),
            in_count: 0,
            in_next: 0,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Sends the queued messages; returns how many could not be sent.
    fn send_batch(&mut self) -> u64 {
        let mut dropped = 0;
        let mut first = 0;
        while first < self.out_ends.len() {
            let mut iov = [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; BATCH];
            // SAFETY: an all-zero mmsghdr is valid (null name and control, no iovecs).
            let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
            let n = self.out_ends.len() - first;
            for i in 0..n {
                let begin = if first + i == 0 {
                    0
                } else {
                    self.out_ends[first + i - 1]
                };
                let end = self.out_ends[first + i];
                iov[i].iov_base = self.out[begin..end].as_ptr() as *mut libc::c_void;
                iov[i].iov_len = end - begin;
                hdrs[i].msg_hdr.msg_iov = &mut iov[i];
                hdrs[i].msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: `hdrs[..n]` point at `iov[..n]`, which point into `self.out`; all live
            // across the call, and the kernel only reads them (it writes `msg_len`).
            let sent = unsafe {
                libc::sendmmsg(
                    self.socket.as_raw_fd(),
                    hdrs.as_mut_ptr(),
                    n as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if sent > 0 {
                first += sent as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            if e.kind() == io::ErrorKind::WouldBlock {
                // The socket buffer is full: drop the rest (UDP; Timer A resends INVITEs).
                dropped += n as u64;
                break;
            }
            // e.g. ECONNREFUSED from an earlier ICMP error: skip this message.
            dropped += 1;
            first += 1;
        }
        self.out.clear();
        self.out_ends.clear();
        dropped
    }

    /// Fills the receive slots with one `recvmmsg`; `Ok(false)` when nothing is there.
    fn recv_batch(&mut self) -> io::Result<bool> {
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; BATCH];
        // SAFETY: an all-zero mmsghdr is valid (null name and control, no iovecs).
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        let slots = self.inbuf.chunks_exact_mut(RECV_SLOT);
        let controls = self.control.chunks_exact_mut(CMSG_SLOT / 8);
        for (i, (chunk, control)) in slots.zip(controls).enumerate() {
            iov[i].iov_base = chunk.as_mut_ptr() as *mut libc::c_void;
            iov[i].iov_len = RECV_SLOT;
            hdrs[i].msg_hdr.msg_iov = &mut iov[i];
            hdrs[i].msg_hdr.msg_iovlen = 1;
            hdrs[i].msg_hdr.msg_control = control.as_mut_ptr() as *mut libc::c_void;
            hdrs[i].msg_hdr.msg_controllen = CMSG_SLOT as _;
        }
        // SAFETY: `hdrs` point at `iov`, which point at disjoint `RECV_SLOT`-byte slots of
        // `self.inbuf`, and at disjoint `CMSG_SLOT`-byte slots of `self.control`; all live
        // across the call; the kernel writes at most `iov_len` / `msg_controllen` bytes into
        // each and sets `msg_len`, `msg_flags`, `msg_controllen`.
        let n = unsafe {
            libc::recvmmsg(
                self.socket.as_raw_fd(),
                hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(false),
                _ => Err(e),
            };
        }
        let n = n as usize;
        for (i, h) in hdrs[..n].iter().enumerate() {
            let truncated = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            self.in_lens[i] = if truncated { 0 } else { h.msg_len as usize };
            self.in_times[i] = receive_time(&h.msg_hdr);
        }
        self.in_count = n;
        self.in_next = 0;
        Ok(n > 0)
    }
}

impl Wire for UdpWire {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        if !self.mmsg {
            return self.socket.send(msg).map(|_| ());
        }
        self.out.extend_from_slice(msg);
        self.out_ends.push(self.out.len());
        if self.out_ends.len() == BATCH {
            self.dropped += self.send_batch();
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<u64> {
        if !self.out_ends.is_empty() {
            self.dropped += self.send_batch();
        }
        Ok(std::mem::take(&mut self.dropped))
    }

    fn recv(&mut self) -> io::Result<Option<(&[u8], Option<u64>)>> {
        if !self.mmsg {
            return match self.socket.recv(&mut self.inbuf[..RECV_SLOT]) {
                Ok(n) => Ok(self.inbuf.get(..n).map(|m| (m, None))),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
                Err(e) => Err(e),
            };
        }
        if self.in_next == self.in_count && !self.recv_batch()? {
            return Ok(None);
        }
        let i = self.in_next;
        self.in_next += 1;
        let msg = self
            .inbuf
            .get(i * RECV_SLOT..i * RECV_SLOT + self.in_lens[i]);
        Ok(msg.map(|m| (m, self.in_times[i])))
    }

    fn timestamps(&self) -> bool {
        self.mmsg
    }

    fn backlogged(&self) -> bool {
        false
    }

    fn wants_write(&self) -> bool {
        false
    }

    fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

/// Asks the kernel to record each datagram's receive time (`SO_TIMESTAMPNS`, Linux).
fn set_timestamps(s: &Socket) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a valid socket, an int option of the right size.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The `SCM_TIMESTAMPNS` of a received message, ns since the epoch.
fn receive_time(h: &libc::msghdr) -> Option<u64> {
    // SAFETY: `h` is a msghdr the kernel just filled: its control buffer holds
    // `msg_controllen` bytes of well-formed cmsghdrs, walked with the libc macros; the
    // timestamp is read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                return Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    None
}

/// A TCP connection to the daemon with a send queue and a framing receive buffer.
pub struct TcpWire {
    stream: TcpStream,
    out: Vec<u8>,
    /// Bytes of `out` already written.
    written: usize,
    inbuf: Box<[u8]>,
    /// `inbuf[start..end]` is received and not yet consumed.
    start: usize,
    end: usize,
    /// Length of the message last returned by `recv`, consumed on the next call.
    last: usize,
}

impl TcpWire {
    pub fn connect(target: SocketAddr) -> io::Result<TcpWire> {
        let stream = TcpStream::connect_timeout(&target, Duration::from_secs(3))?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        Ok(TcpWire {
            stream,
            out: Vec::with_capacity(TCP_BACKLOG * 2),
            written: 0,
            inbuf: vec![0; TCP_INBUF].into_boxed_slice(),
            start: 0,
            end: 0,
            last: 0,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.stream.local_addr()
    }

    /// The next whole message in `inbuf[start..end]`, skipping keep-alive CRLFs.
    fn frame(&mut self) -> io::Result<Option<usize>> {
        while self.start < self.end && matches!(self.inbuf[self.start], b'\r' | b'\n') {
            self.start += 1;
        }
        response::frame_len(&self.inbuf[self.start..self.end])
            .map_err(|()| io::Error::new(io::ErrorKind::InvalidData, "unframeable TCP stream"))
    }
}

impl Wire for TcpWire {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        self.out.extend_from_slice(msg);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<u64> {
        while self.written < self.out.len() {
            match self.stream.write(&self.out[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.written == self.out.len() {
            self.out.clear();
            self.written = 0;
        } else if self.written > TCP_BACKLOG {
            self.out.drain(..self.written);
            self.written = 0;
        }
        Ok(0)
    }

    fn recv(&mut self) -> io::Result<Option<(&[u8], Option<u64>)>> {
        self.start += std::mem::take(&mut self.last);
        if let Some(n) = self.frame()? {
            self.last = n;
            return Ok(self
                .inbuf
                .get(self.start..self.start + n)
                .map(|m| (m, None)));
        }
        // Need more bytes: move the partial message to the front, then read.
        if self.start > 0 {
            self.inbuf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.inbuf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "message too large",
            ));
        }
        match self.stream.read(&mut self.inbuf[self.end..]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => self.end += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        }
        match self.frame()? {
            Some(n) => {
                self.last = n;
                Ok(self
                    .inbuf
                    .get(self.start..self.start + n)
                    .map(|m| (m, None)))
            }
            None => Ok(None),
        }
    }

    fn timestamps(&self) -> bool {
        false
    }

    fn backlogged(&self) -> bool {
        self.out.len() - self.written > TCP_BACKLOG
    }

    fn wants_write(&self) -> bool {
        self.written < self.out.len()
    }

    fn fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::time::Instant;

    /// Receives until `n` messages came or 3 s passed.
    fn recv_n(wire: &mut impl Wire, n: usize) -> Vec<(Vec<u8>, Option<u64>)> {
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(3);
        while got.len() < n && Instant::now() < deadline {
            match wire.recv().unwrap() {
                Some((m, t)) => got.push((m.to_vec(), t)),
                None => wait(wire, 10),
            }
        }
        got
    }

    #[test]
    fn udp_batches_both_ways_with_receive_times() {
        for mmsg in [true, false] {
            let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
            peer.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let mut wire = UdpWire::connect(peer.local_addr().unwrap(), mmsg).unwrap();
            for i in 0..(BATCH + 3) {
                wire.send(format!("m{i}").as_bytes()).unwrap();
            }
            assert_eq!(wire.flush().unwrap(), 0);
            let mut buf = [0u8; 64];
            for i in 0..(BATCH + 3) {
                let (n, from) = peer.recv_from(&mut buf).unwrap();
                assert_eq!(&buf[..n], format!("m{i}").as_bytes());
                peer.send_to(&buf[..n], from).unwrap();
            }
            let got = recv_n(&mut wire, BATCH + 3);
            assert_eq!(got.len(), BATCH + 3);
            assert_eq!(got[BATCH].0, format!("m{BATCH}").into_bytes());
            assert_eq!(got.iter().all(|(_, t)| t.is_some()), mmsg);
            assert_eq!(wire.timestamps(), mmsg);
        }
    }

    #[test]
    fn tcp_frames_split_and_joined_messages() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut wire = TcpWire::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        wire.send(b"hello").unwrap();
        assert!(wire.wants_write());
        wire.flush().unwrap();
        let mut buf = [0u8; 5];
        server.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        let msg = b"SIP/2.0 302 Moved\r\nl: 2\r\n\r\nab";
        let mut stream = b"\r\n".to_vec();
        stream.extend_from_slice(msg);
        stream.extend_from_slice(msg);
        stream.extend_from_slice(&msg[..10]);
        server.write_all(&stream).unwrap();
        let got = recv_n(&mut wire, 2);
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|(m, t)| m == msg && t.is_none()));
        server.write_all(&msg[10..]).unwrap();
        assert_eq!(recv_n(&mut wire, 1)[0].0, msg);
        drop(server);
        let deadline = Instant::now() + Duration::from_secs(3);
        let eof = loop {
            match wire.recv() {
                Err(e) => break e.kind(),
                Ok(_) if Instant::now() > deadline => panic!("no EOF"),
                Ok(_) => wait(&wire, 10),
            }
        };
        assert_eq!(eof, io::ErrorKind::UnexpectedEof);
    }
}
