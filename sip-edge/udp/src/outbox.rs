//! Sending many datagrams with one `sendmmsg(2)`, from headers that are reused for every batch.

use std::io;
use std::net::{SocketAddr, UdpSocket};

use crate::Inbox;

/// Where a datagram of a [`Batch`] goes.
#[derive(Clone, Copy)]
pub enum To<'b> {
    /// The socket's connected peer.
    Peer,
    /// This address.
    Addr(SocketAddr),
    /// The source of datagram `i` of the inbox's last batch (its address as the kernel wrote
    /// it, not copied nor converted): how a server answers.
    SourceOf(&'b Inbox, usize),
}

/// What [`Batch::send`] (or [`send_many`]) did.
#[derive(Debug, Default)]
pub struct Sent {
    /// Datagrams the kernel took.
    pub sent: usize,
    /// Datagrams dropped: refused one by one (e.g. `ECONNREFUSED` from an ICMP error of an
    /// earlier send), or, once the send buffer was full (`WouldBlock`), all the rest.
    pub dropped: usize,
    /// The last error seen, if any.
    pub error: Option<io::Error>,
}

#[cfg(target_os = "linux")]
pub use linux::{Batch, Outbox};
#[cfg(not(target_os = "linux"))]
pub use single::{Batch, Outbox};

/// Messages per `sendmmsg` at most (the kernel's `UIO_MAXIOV`).
const MAX: usize = 1024;

/// Sends each `(bytes, to)` from `socket`, never blocking: a datagram that finds the send
/// buffer full is dropped (a SIP client retransmits). One `sendmmsg` per 1,024 datagrams; the
/// headers are allocated per call (for a loop, keep an [`Outbox`]).
pub fn send_many(socket: &UdpSocket, msgs: &[(&[u8], SocketAddr)]) -> Sent {
    let mut outbox = Outbox::new(msgs.len().clamp(1, MAX));
    let mut total = Sent::default();
    for chunk in msgs.chunks(MAX) {
        let mut batch = outbox.batch();
        for &(bytes, to) in chunk {
            batch.push(bytes, To::Addr(to));
        }
        let sent = batch.send(socket, false);
        total.sent += sent.sent;
        total.dropped += sent.dropped;
        total.error = sent.error.or(total.error);
    }
    total
}

/// Sends one datagram to `to` without blocking (`MSG_DONTWAIT`).
pub fn send_one(socket: &UdpSocket, bytes: &[u8], to: SocketAddr) -> io::Result<usize> {
    #[cfg(unix)]
    let flags = libc::MSG_DONTWAIT;
    #[cfg(not(unix))]
    let flags = 0;
    socket2::SockRef::from(socket).send_to_with_flags(bytes, &to.into(), flags)
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::marker::PhantomData;
    use std::net::{SocketAddr, UdpSocket};
    use std::os::fd::AsRawFd;
    use std::ptr;

    use socket2::SockAddr;

    use super::{Sent, To};

    /// The message headers of one socket's sender, reused for every batch: nothing is
    /// allocated per datagram or per call. Each batch is a [`Batch`], which borrows the
    /// bytes it sends.
    pub struct Outbox {
        /// Destinations given as [`To::Addr`], in the kernel's form.
        names: Box<[SockAddr]>,
        iovs: Box<[libc::iovec]>,
        msgs: Box<[libc::mmsghdr]>,
    }

    // SAFETY: the raw pointers in `iovs` and `msgs` are only read by the kernel during
    // `Batch::send`, after the batch rewrote every header it sends; between batches they are
    // stale and unused. Nothing is shared, so the `Outbox` may move to another thread.
    unsafe impl Send for Outbox {}

    impl Outbox {
        /// Room for `batch` datagrams per `sendmmsg`.
        pub fn new(batch: usize) -> Outbox {
            let any = SockAddr::from(SocketAddr::from(([0, 0, 0, 0], 0)));
            Outbox {
                names: vec![any; batch].into_boxed_slice(),
                // SAFETY: all-zero `iovec` and `mmsghdr` are valid values (null pointers,
                // zero lengths).
                iovs: vec![unsafe { std::mem::zeroed::<libc::iovec>() }; batch].into_boxed_slice(),
                // SAFETY: as above.
                msgs: vec![unsafe { std::mem::zeroed::<libc::mmsghdr>() }; batch]
                    .into_boxed_slice(),
            }
        }

        /// How many datagrams one [`Batch`] holds at most.
        #[inline]
        pub fn capacity(&self) -> usize {
            self.msgs.len()
        }

        /// A new, empty batch over these headers.
        #[inline]
        pub fn batch<'b>(&mut self) -> Batch<'_, 'b> {
            Batch {
                outbox: self,
                len: 0,
                bytes: PhantomData,
            }
        }
    }

    /// Datagrams to send with one `sendmmsg`: headers of an [`Outbox`] pointing at bytes and
    /// addresses borrowed for `'b`, so they stay put until [`Batch::send`].
    pub struct Batch<'o, 'b> {
        outbox: &'o mut Outbox,
        len: usize,
        bytes: PhantomData<&'b [u8]>,
    }

    impl<'b> Batch<'_, 'b> {
        /// Adds `bytes` for `to`. `false` (and nothing added) when the batch is full, or when
        /// `to` is the source of a datagram the inbox does not hold.
        #[inline]
        pub fn push(&mut self, bytes: &'b [u8], to: To<'b>) -> bool {
            let k = self.len;
            let o = &mut *self.outbox;
            let (Some(iov), Some(m), Some(name)) =
                (o.iovs.get_mut(k), o.msgs.get_mut(k), o.names.get_mut(k))
            else {
                return false;
            };
            let (name, namelen): (*const libc::c_void, libc::socklen_t) = match to {
                To::Peer => (ptr::null(), 0),
                To::Addr(addr) => {
                    *name = SockAddr::from(addr);
                    (name.as_ptr().cast(), name.len())
                }
                To::SourceOf(inbox, i) => match inbox.raw_source(i) {
                    Some((p, len)) => (p.cast(), len),
                    None => return false,
                },
            };
            *iov = libc::iovec {
                iov_base: bytes.as_ptr().cast_mut().cast(),
                iov_len: bytes.len(),
            };
            let h = &mut m.msg_hdr;
            h.msg_name = name.cast_mut();
            h.msg_namelen = namelen;
            h.msg_iov = ptr::from_mut(iov);
            h.msg_iovlen = 1;
            h.msg_control = ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
            m.msg_len = 0;
            self.len += 1;
            true
        }

        /// Datagrams in the batch.
        #[inline]
        pub fn len(&self) -> usize {
            self.len
        }

        /// Whether the batch is empty.
        #[inline]
        pub fn is_empty(&self) -> bool {
            self.len == 0
        }

        /// Whether the batch is full.
        #[inline]
        pub fn is_full(&self) -> bool {
            self.len == self.outbox.msgs.len()
        }

        /// Sends the batch with `sendmmsg` (as many calls as it takes; `EINTR` retried).
        /// With `wait` a blocking socket may block for room; without (`MSG_DONTWAIT`), once
        /// the send buffer is full the rest is dropped. A datagram the kernel refuses is
        /// dropped and the rest still go.
        pub fn send(self, socket: &UdpSocket, wait: bool) -> Sent {
            let flags = if wait { 0 } else { libc::MSG_DONTWAIT };
            let mut done = Sent::default();
            let Some(hdrs) = self.outbox.msgs.get_mut(..self.len) else {
                return done;
            };
            let mut first = 0;
            while first < hdrs.len() {
                let rest = hdrs.get_mut(first..).unwrap_or_default();
                // SAFETY: `push` set every header of `hdrs` (this batch's, from 0) over an
                // iovec of the outbox and bytes borrowed for `'b`, and an address in the
                // outbox, in an `Inbox` borrowed for `'b`, or none: all outlive this call.
                // The kernel reads those and writes only the `msg_len` fields of `rest`.
                let r = unsafe {
                    libc::sendmmsg(
                        socket.as_raw_fd(),
                        rest.as_mut_ptr(),
                        rest.len() as libc::c_uint,
                        flags as _,
                    )
                };
                if r > 0 {
                    first += r as usize;
                    done.sent += r as usize;
                    continue;
                }
                let e = io::Error::last_os_error();
                if r < 0 && e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                if r < 0 && e.kind() == io::ErrorKind::WouldBlock {
                    // The send buffer is full: the rest would find it full too.
                    done.dropped += rest.len();
                    done.error = Some(e);
                    break;
                }
                // That datagram is dropped; the rest still go.
                done.dropped += 1;
                first += 1;
                if r < 0 {
                    done.error = Some(e);
                }
            }
            done
        }
    }
}

/// One datagram per system call, where `sendmmsg` is not available.
#[cfg(not(target_os = "linux"))]
mod single {
    use std::io;
    use std::marker::PhantomData;
    use std::net::{SocketAddr, UdpSocket};

    use super::{Sent, To};

    /// Room for one batch's destinations.
    pub struct Outbox {
        items: Vec<(*const u8, usize, Option<SocketAddr>)>,
        cap: usize,
    }

    // SAFETY: the pointers are only read during `Batch::send`, while the batch borrows them.
    unsafe impl Send for Outbox {}

    impl Outbox {
        /// Room for `batch` datagrams per batch.
        pub fn new(batch: usize) -> Outbox {
            Outbox {
                items: Vec::with_capacity(batch),
                cap: batch,
            }
        }

        /// How many datagrams one [`Batch`] holds at most.
        pub fn capacity(&self) -> usize {
            self.cap
        }

        /// A new, empty batch.
        pub fn batch<'b>(&mut self) -> Batch<'_, 'b> {
            self.items.clear();
            Batch {
                outbox: self,
                bytes: PhantomData,
            }
        }
    }

    /// Datagrams to send, one system call each.
    pub struct Batch<'o, 'b> {
        outbox: &'o mut Outbox,
        bytes: PhantomData<&'b [u8]>,
    }

    impl<'b> Batch<'_, 'b> {
        /// Adds `bytes` for `to`; `false` when full or `to` is unknown.
        pub fn push(&mut self, bytes: &'b [u8], to: To<'b>) -> bool {
            if self.is_full() {
                return false;
            }
            let to = match to {
                To::Peer => None,
                To::Addr(a) => Some(a),
                To::SourceOf(inbox, i) => match inbox.source(i) {
                    Some(a) => Some(a),
                    None => return false,
                },
            };
            self.outbox.items.push((bytes.as_ptr(), bytes.len(), to));
            true
        }

        /// Datagrams in the batch.
        pub fn len(&self) -> usize {
            self.outbox.items.len()
        }

        /// Whether the batch is empty.
        pub fn is_empty(&self) -> bool {
            self.outbox.items.is_empty()
        }

        /// Whether the batch is full.
        pub fn is_full(&self) -> bool {
            self.outbox.items.len() >= self.outbox.cap
        }

        /// Sends each datagram (see the Linux version for the error handling).
        pub fn send(self, socket: &UdpSocket, wait: bool) -> Sent {
            let mut done = Sent::default();
            if socket.set_nonblocking(!wait).is_err() {
                done.dropped = self.len();
                return done;
            }
            let items = &self.outbox.items;
            for (k, &(p, len, to)) in items.iter().enumerate() {
                // SAFETY: `push` took `p` and `len` from a slice borrowed for `'b`, which
                // outlives this batch.
                let bytes = unsafe { std::slice::from_raw_parts(p, len) };
                let r = match to {
                    Some(to) => socket.send_to(bytes, to),
                    None => socket.send(bytes),
                };
                match r {
                    Ok(_) => done.sent += 1,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        done.dropped += items.len() - k;
                        done.error = Some(e);
                        break;
                    }
                    Err(e) => {
                        done.dropped += 1;
                        done.error = Some(e);
                    }
                }
            }
            done
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn receiver(addr: &str) -> Option<UdpSocket> {
        let s = UdpSocket::bind(addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        Some(s)
    }

    #[test]
    fn every_datagram_reaches_its_own_destination() {
        let from = UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = receiver("127.0.0.1:0").unwrap();
        let (aa, fa) = (a.local_addr().unwrap(), from.local_addr().unwrap());
        let msgs: Vec<(&[u8], SocketAddr)> = vec![(b"one", aa), (b"two", aa), (b"three", aa)];
        let sent = send_many(&from, &msgs);
        assert_eq!((sent.sent, sent.dropped), (3, 0));
        let mut buf = [0u8; 16];
        for want in ["one", "two", "three"] {
            let (n, src) = a.recv_from(&mut buf).unwrap();
            assert_eq!((&buf[..n], src), (want.as_bytes(), fa));
        }
        assert_eq!(send_one(&from, b"four", aa).unwrap(), 4);
        assert_eq!(a.recv(&mut buf).unwrap(), 4);
        if let Some(b) = receiver("[::1]:0") {
            let from6 = UdpSocket::bind("[::1]:0").unwrap();
            send_many(&from6, &[(b"five", b.local_addr().unwrap())]);
            let n = b.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"five");
        }
    }

    #[test]
    fn a_batch_answers_an_inbox_and_its_headers_are_reused() {
        let server = receiver("127.0.0.1:0").unwrap();
        let to = server.local_addr().unwrap();
        let clients: Vec<UdpSocket> = (0..3).map(|_| receiver("127.0.0.1:0").unwrap()).collect();
        let mut inbox = Inbox::new(4, 64);
        let mut outbox = Outbox::new(2);
        let mut buf = [0u8; 64];
        for round in 0..2 {
            for (i, c) in clients.iter().enumerate() {
                c.send_to(format!("q{round}{i}").as_bytes(), to).unwrap();
            }
            assert_eq!(inbox.recv(&server, true).unwrap(), 3);
            let answers: Vec<Vec<u8>> = (0..3)
                .map(|i| [b"a:", inbox.get(i).unwrap()].concat())
                .collect();
            // Two fit in a batch; the third goes in the next one.
            let mut batch = outbox.batch();
            assert!(batch.is_empty());
            assert!(batch.push(&answers[0], To::SourceOf(&inbox, 0)));
            assert!(!batch.push(&answers[1], To::SourceOf(&inbox, 7)));
            assert!(batch.push(&answers[1], To::SourceOf(&inbox, 1)));
            assert!(batch.is_full() && !batch.push(&answers[2], To::SourceOf(&inbox, 2)));
            assert_eq!(batch.send(&server, false).sent, 2);
            let mut batch = outbox.batch();
            assert!(batch.push(&answers[2], To::SourceOf(&inbox, 2)));
            assert_eq!(batch.len(), 1);
            assert_eq!(batch.send(&server, true).sent, 1);
            for (i, c) in clients.iter().enumerate() {
                let (n, from) = c.recv_from(&mut buf).unwrap();
                assert_eq!(&buf[..n], format!("a:q{round}{i}").as_bytes());
                assert_eq!(from, to);
            }
        }
    }

    #[test]
    fn a_connected_socket_sends_to_its_peer_and_refusals_are_dropped() {
        let peer = receiver("127.0.0.1:0").unwrap();
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.connect(peer.local_addr().unwrap()).unwrap();
        let mut outbox = Outbox::new(8);
        let mut batch = outbox.batch();
        for m in [&b"x"[..], b"yy"] {
            batch.push(m, To::Peer);
        }
        let sent = batch.send(&s, false);
        assert_eq!(
            (sent.sent, sent.dropped, sent.error.is_none()),
            (2, 0, true)
        );
        let mut buf = [0u8; 8];
        assert_eq!(peer.recv(&mut buf).unwrap(), 1);
        assert_eq!(peer.recv(&mut buf).unwrap(), 2);
        // Nothing listens any more: the ICMP error of one send refuses a later one.
        let gone = peer.local_addr().unwrap();
        drop(peer);
        let mut refused = 0;
        for _ in 0..4 {
            let mut batch = outbox.batch();
            batch.push(b"z", To::Addr(gone));
            batch.push(b"z", To::Peer);
            let sent = batch.send(&s, false);
            assert_eq!(sent.sent + sent.dropped, 2);
            refused += sent.dropped;
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(refused > 0);
    }
}
