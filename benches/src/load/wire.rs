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
/// The largest SIP message over UDP.
const MAX_DATAGRAM: usize = 65_535;
/// TCP: the sender holds back while this much is queued and unsent.
const TCP_BACKLOG: usize = 256 << 10;
/// TCP receive buffer (a response is < 1 KiB; many are read at once).
const TCP_INBUF: usize = 512 << 10;

/// One socket of the load, sending and receiving SIP messages.
pub trait Wire {
    /// Sends (UDP) or queues (TCP) one message.
    fn send(&mut self, msg: &[u8]) -> io::Result<()>;
    /// Writes what is queued, as far as the socket takes it now (TCP).
    fn flush(&mut self) -> io::Result<()>;
    /// The next whole message received, if one is there now.
    fn recv(&mut self) -> io::Result<Option<&[u8]>>;
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

/// A UDP socket connected to the daemon.
pub struct UdpWire {
    socket: UdpSocket,
    buf: Box<[u8]>,
}

impl UdpWire {
    /// A new socket on an ephemeral loopback port, connected to `target`.
    pub fn connect(target: SocketAddr) -> io::Result<UdpWire> {
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
        Ok(UdpWire {
            socket: s.into(),
            buf: vec![0; MAX_DATAGRAM].into_boxed_slice(),
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }
}

impl Wire for UdpWire {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        self.socket.send(msg).map(|_| ())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn recv(&mut self) -> io::Result<Option<&[u8]>> {
        match self.socket.recv(&mut self.buf) {
            Ok(n) => Ok(self.buf.get(..n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
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

    fn flush(&mut self) -> io::Result<()> {
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
        Ok(())
    }

    fn recv(&mut self) -> io::Result<Option<&[u8]>> {
        self.start += std::mem::take(&mut self.last);
        if let Some(n) = self.frame()? {
            self.last = n;
            return Ok(self.inbuf.get(self.start..self.start + n));
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
                Ok(self.inbuf.get(self.start..self.start + n))
            }
            None => Ok(None),
        }
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
