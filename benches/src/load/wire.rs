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
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tollgate_udp::{Inbox, Outbox, To};

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
    /// The socket, to wait on.
    fn fd(&self) -> BorrowedFd<'_>;
}

/// Waits until `wire` is readable (or writable, when it has bytes queued), at most
/// `timeout_ms` milliseconds.
pub fn wait(wire: &impl Wire, timeout_ms: i32) {
    tollgate_udp::wait_ready(wire.fd(), wire.wants_write(), timeout_ms);
}

/// Messages per `sendmmsg(2)` / `recvmmsg(2)` call.
const BATCH: usize = 64;
/// Room for one received datagram in a batch (the daemon's responses are < 1 KiB; a longer
/// one is truncated and then counted as unmatched).
const RECV_SLOT: usize = 4096;

/// A UDP socket connected to the daemon. With `mmsg`, messages are sent and received in
/// batches of up to [`BATCH`] per system call (`sendmmsg`/`recvmmsg`, through `tollgate-udp`):
/// at 100k calls/s a worker otherwise spends most of its time entering and leaving the kernel.
pub struct UdpWire {
    socket: UdpSocket,
    mmsg: bool,
    /// Messages queued for the next `sendmmsg`, back to back; `out_ends[i]` ends message `i`.
    out: Vec<u8>,
    out_ends: Vec<usize>,
    outbox: Outbox,
    /// Messages of full batches that could not be sent, reported by the next `flush`.
    dropped: u64,
    /// The last `recvmmsg`'s datagrams (with kernel receive times), and the next to return.
    inbox: Inbox,
    in_next: usize,
    /// Without `mmsg`: the one datagram of the last `recv`.
    single: Box<[u8]>,
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
        let socket: UdpSocket = s.into();
        if mmsg {
            tollgate_udp::set_receive_times(&socket)?;
        }
        Ok(UdpWire {
            socket,
            mmsg,
            out: Vec::with_capacity(BATCH * 2048),
            out_ends: Vec::with_capacity(BATCH),
            outbox: Outbox::new(BATCH),
            dropped: 0,
            inbox: Inbox::new(BATCH, RECV_SLOT).with_receive_times(),
            in_next: 0,
            single: vec![0; RECV_SLOT].into_boxed_slice(),
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Sends the queued messages with one `sendmmsg` (more if one is refused); returns how
    /// many could not be sent (once the socket buffer is full, the rest: UDP; Timer A resends
    /// INVITEs).
    fn send_batch(&mut self) -> u64 {
        let mut batch = self.outbox.batch();
        let mut begin = 0;
        for &end in &self.out_ends {
            batch.push(&self.out[begin..end], To::Peer);
            begin = end;
        }
        let sent = batch.send(&self.socket, false);
        self.out.clear();
        self.out_ends.clear();
        sent.dropped as u64
    }

    /// Fills the inbox with one `recvmmsg`; `Ok(false)` when nothing is there.
    fn recv_batch(&mut self) -> io::Result<bool> {
        self.in_next = 0;
        match self.inbox.recv(&self.socket, false) {
            Ok(n) => Ok(n > 0),
            Err(e) => match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(false),
                _ => Err(e),
            },
        }
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
            return match self.socket.recv(&mut self.single) {
                Ok(n) => Ok(self.single.get(..n).map(|m| (m, None))),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
                Err(e) => Err(e),
            };
        }
        if self.in_next == self.inbox.len() && !self.recv_batch()? {
            return Ok(None);
        }
        let i = self.in_next;
        self.in_next += 1;
        // A truncated response is returned empty (and counted as unmatched).
        let msg = if self.inbox.truncated(i) {
            Some(&[][..])
        } else {
            self.inbox.get(i)
        };
        Ok(msg.map(|m| (m, self.inbox.received_ns(i))))
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

    fn fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
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

    fn fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
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
