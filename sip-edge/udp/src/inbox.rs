//! Receiving many datagrams with one `recvmmsg(2)` into buffers that are reused for every batch.

#[cfg(target_os = "linux")]
pub use linux::Inbox;
#[cfg(not(target_os = "linux"))]
pub use single::Inbox;

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::mem::size_of;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket};
    use std::os::fd::AsRawFd;
    use std::ptr;

    /// Control-message room per slot with receive times: one `SCM_TIMESTAMPNS` (a 16-byte
    /// `cmsghdr` and a 16-byte `timespec`), with room to spare.
    const CONTROL_SLOT: usize = 64;
    /// The same, in the `u64` words the control buffer is made of (aligned for `cmsghdr`).
    const CONTROL_WORDS: usize = CONTROL_SLOT / size_of::<u64>();

    /// The receive buffers of one socket's reader and the message headers pointing into them,
    /// reused for every batch: nothing is allocated per datagram or per call.
    ///
    /// The headers hold raw pointers into the buffers; they are rewritten before each system
    /// call rather than set once, so that moving the `Inbox` can never leave one dangling.
    pub struct Inbox {
        /// Bytes per slot: a longer datagram is cut ([`Inbox::truncated`]).
        slot: usize,
        /// `batch` slots of `slot` bytes. Zeroed lazily by the allocator: pages are only
        /// touched as datagrams fill them, so the resident cost is what is received.
        bufs: Box<[u8]>,
        /// The source address of each datagram (and the destination of its answer, through
        /// [`crate::To::SourceOf`]).
        names: Box<[libc::sockaddr_storage]>,
        iovs: Box<[libc::iovec]>,
        msgs: Box<[libc::mmsghdr]>,
        /// `CONTROL_WORDS` per slot with receive times ([`Inbox::with_receive_times`]), else
        /// empty.
        control: Box<[u64]>,
        /// Datagrams held from the last [`Inbox::recv`].
        count: usize,
    }

    // SAFETY: the raw pointers in `iovs` and `msgs` only ever point into this `Inbox`'s own
    // heap buffers, are rewritten before each system call, and are never dereferenced by
    // Rust code; nothing is shared, so the `Inbox` may move to another thread.
    unsafe impl Send for Inbox {}

    /// `n` zeroed C structures.
    fn zeroed<T: Copy>(n: usize) -> Box<[T]> {
        // SAFETY: only used for `sockaddr_storage`, `iovec` and `mmsghdr`, plain C structures
        // of integers and raw pointers for which all-zero bytes are a valid value.
        vec![unsafe { std::mem::zeroed::<T>() }; n].into_boxed_slice()
    }

    impl Inbox {
        /// Room for `batch` datagrams of up to `slot` bytes each, received per call at most.
        pub fn new(batch: usize, slot: usize) -> Inbox {
            Inbox {
                slot,
                bufs: vec![0; batch * slot].into_boxed_slice(),
                names: zeroed(batch),
                iovs: zeroed(batch),
                msgs: zeroed(batch),
                control: Box::default(),
                count: 0,
            }
        }

        /// Also keeps each datagram's kernel receive time ([`Inbox::received_ns`]), for a
        /// socket that records them ([`crate::set_receive_times`]).
        pub fn with_receive_times(mut self) -> Inbox {
            self.control = vec![0; self.msgs.len() * CONTROL_WORDS].into_boxed_slice();
            self
        }

        /// How many datagrams one [`Inbox::recv`] takes at most.
        #[inline]
        pub fn capacity(&self) -> usize {
            self.msgs.len()
        }

        /// Takes up to [`Inbox::capacity`] queued datagrams with one `recvmmsg`, without
        /// waiting for more. With `wait`, first blocks until at least one is queued
        /// (`MSG_WAITFORONE`; on a socket with a receive timeout, `WouldBlock` when it
        /// elapses); without, returns `WouldBlock` at once if none is (`MSG_DONTWAIT`).
        /// Returns how many it holds; the previous batch is gone.
        pub fn recv(&mut self, socket: &UdpSocket, wait: bool) -> io::Result<usize> {
            let flags = if wait {
                libc::MSG_WAITFORONE
            } else {
                libc::MSG_DONTWAIT
            };
            self.count = 0;
            let batch = self.msgs.len();
            let slot = self.slot;
            let base = self.bufs.as_mut_ptr();
            for (i, iov) in self.iovs.iter_mut().enumerate() {
                *iov = libc::iovec {
                    iov_base: base.wrapping_add(i * slot).cast(),
                    iov_len: slot,
                };
            }
            let names = self.names.as_mut_ptr();
            let iovs = self.iovs.as_mut_ptr();
            let control = self.control.as_mut_ptr();
            let has_control = !self.control.is_empty();
            for (i, m) in self.msgs.iter_mut().enumerate() {
                let h = &mut m.msg_hdr;
                h.msg_name = names.wrapping_add(i).cast();
                h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                h.msg_iov = iovs.wrapping_add(i);
                h.msg_iovlen = 1;
                if has_control {
                    h.msg_control = control.wrapping_add(i * CONTROL_WORDS).cast();
                    h.msg_controllen = CONTROL_SLOT as _;
                } else {
                    h.msg_control = ptr::null_mut();
                    h.msg_controllen = 0;
                }
                h.msg_flags = 0;
                m.msg_len = 0;
            }
            // SAFETY: `msgs` holds `batch` headers, each pointing at its own `names` entry
            // (with its size as `msg_namelen`), its own iovec, which covers a disjoint
            // `slot`-byte range of `bufs` (`batch` × `slot` bytes), and, with receive times,
            // its own disjoint `CONTROL_SLOT`-byte range of `control` (else none). All of
            // them live in `self`, which the call borrows mutably, and the kernel writes
            // within those bounds only.
            let n = unsafe {
                libc::recvmmsg(
                    socket.as_raw_fd(),
                    self.msgs.as_mut_ptr(),
                    batch as libc::c_uint,
                    flags as _,
                    ptr::null_mut(),
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            self.count = (n as usize).min(batch);
            Ok(self.count)
        }

        /// How many datagrams the last [`Inbox::recv`] took.
        #[inline]
        pub fn len(&self) -> usize {
            self.count
        }

        /// Whether the last [`Inbox::recv`] took none.
        #[inline]
        pub fn is_empty(&self) -> bool {
            self.count == 0
        }

        /// Datagram `i` of the last batch (its first [`Inbox::new`]`(_, slot)` bytes if it
        /// was [`truncated`](Inbox::truncated)).
        #[inline]
        pub fn get(&self, i: usize) -> Option<&[u8]> {
            if i >= self.count {
                return None;
            }
            let len = (self.msgs.get(i)?.msg_len as usize).min(self.slot);
            self.bufs.get(i * self.slot..i * self.slot + len)
        }

        /// The source address of datagram `i` of the last batch.
        #[inline]
        pub fn source(&self, i: usize) -> Option<SocketAddr> {
            if i >= self.count {
                return None;
            }
            let len = self.msgs.get(i)?.msg_hdr.msg_namelen;
            socket_addr(self.names.get(i)?, len)
        }

        /// Whether datagram `i` was longer than a slot, and so cut (`MSG_TRUNC`).
        #[inline]
        pub fn truncated(&self, i: usize) -> bool {
            i < self.count
                && self
                    .msgs
                    .get(i)
                    .is_some_and(|m| m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0)
        }

        /// The kernel's receive time of datagram `i` (`CLOCK_REALTIME`, ns since the epoch),
        /// when the inbox keeps them and the socket records them.
        pub fn received_ns(&self, i: usize) -> Option<u64> {
            if i >= self.count {
                return None;
            }
            let words = self
                .control
                .get(i * CONTROL_WORDS..(i + 1) * CONTROL_WORDS)?;
            let got = self.msgs.get(i)?.msg_hdr.msg_controllen;
            // A header over this slot's control bytes as the kernel left them (rebuilt, not
            // the one of the call, so that it points into `self` wherever `self` is now).
            // SAFETY: an all-zero `msghdr` is a valid value (null pointers, zero lengths).
            let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
            h.msg_control = words.as_ptr().cast_mut().cast();
            // `msg_controllen` is a `usize` with glibc, a `u32` with musl.
            #[allow(clippy::unnecessary_cast)]
            let got = got as usize;
            h.msg_controllen = got.min(CONTROL_SLOT) as _;
            // SAFETY: `h` covers the `msg_controllen` bytes of control messages the kernel
            // wrote into this slot (at most `CONTROL_SLOT`, inside `words`, which is aligned
            // for `cmsghdr`); the libc macros walk them within those bounds, and the
            // timestamp is read unaligned.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(&h);
                while !c.is_null() {
                    if (*c).cmsg_level == libc::SOL_SOCKET
                        && (*c).cmsg_type == libc::SCM_TIMESTAMPNS
                    {
                        let ts: libc::timespec = ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                        return Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
                    }
                    c = libc::CMSG_NXTHDR(&h, c);
                }
            }
            None
        }

        /// The kernel's form of datagram `i`'s source address, for a `sendmmsg` header.
        #[inline]
        pub(crate) fn raw_source(
            &self,
            i: usize,
        ) -> Option<(*const libc::sockaddr_storage, libc::socklen_t)> {
            if i >= self.count {
                return None;
            }
            let len = self.msgs.get(i)?.msg_hdr.msg_namelen;
            Some((ptr::from_ref(self.names.get(i)?), len))
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

/// One datagram per system call, where `recvmmsg` is not available.
#[cfg(not(target_os = "linux"))]
mod single {
    use std::io;
    use std::net::{SocketAddr, UdpSocket};

    /// The receive buffer of one socket's reader (one datagram at a time here).
    pub struct Inbox {
        buf: Box<[u8]>,
        got: Option<(usize, SocketAddr)>,
    }

    impl Inbox {
        /// Room for one datagram of up to `slot` bytes (`batch` is ignored).
        pub fn new(batch: usize, slot: usize) -> Inbox {
            let _ = batch;
            Inbox {
                buf: vec![0; slot].into_boxed_slice(),
                got: None,
            }
        }

        /// Receive times are not kept here.
        pub fn with_receive_times(self) -> Inbox {
            self
        }

        /// One.
        pub fn capacity(&self) -> usize {
            1
        }

        /// Receives one datagram; with `wait`, blocking (up to the socket's timeout).
        pub fn recv(&mut self, socket: &UdpSocket, wait: bool) -> io::Result<usize> {
            self.got = None;
            socket.set_nonblocking(!wait)?;
            self.got = Some(socket.recv_from(&mut self.buf)?);
            Ok(1)
        }

        /// How many datagrams the last [`Inbox::recv`] took.
        pub fn len(&self) -> usize {
            usize::from(self.got.is_some())
        }

        /// Whether the last [`Inbox::recv`] took none.
        pub fn is_empty(&self) -> bool {
            self.got.is_none()
        }

        /// The datagram, for `i` 0.
        pub fn get(&self, i: usize) -> Option<&[u8]> {
            let (n, _) = self.got.filter(|_| i == 0)?;
            self.buf.get(..n.min(self.buf.len()))
        }

        /// Its source address.
        pub fn source(&self, i: usize) -> Option<SocketAddr> {
            self.got.filter(|_| i == 0).map(|(_, a)| a)
        }

        /// Not known here.
        pub fn truncated(&self, _i: usize) -> bool {
            false
        }

        /// Not known here.
        pub fn received_ns(&self, _i: usize) -> Option<u64> {
            None
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io;
    use std::net::UdpSocket;
    use std::time::Duration;

    fn receiver() -> UdpSocket {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s
    }

    #[test]
    fn one_call_takes_a_batch_with_sources_and_cuts_long_ones() {
        let rx = receiver();
        let to = rx.local_addr().unwrap();
        let (a, b) = (
            UdpSocket::bind("127.0.0.1:0").unwrap(),
            UdpSocket::bind("127.0.0.1:0").unwrap(),
        );
        a.send_to(b"one", to).unwrap();
        b.send_to(b"two", to).unwrap();
        a.send_to(b"a datagram longer than a slot", to).unwrap();
        a.send_to(b"four", to).unwrap();
        let mut inbox = Inbox::new(3, 8);
        assert_eq!(inbox.capacity(), 3);
        // Loopback delivers synchronously: all four are queued; three fit.
        assert_eq!(inbox.recv(&rx, true).unwrap(), 3);
        assert_eq!(inbox.len(), 3);
        assert_eq!(inbox.get(0), Some(&b"one"[..]));
        assert_eq!(inbox.source(0), Some(a.local_addr().unwrap()));
        assert_eq!(inbox.get(1), Some(&b"two"[..]));
        assert_eq!(inbox.source(1), Some(b.local_addr().unwrap()));
        assert_eq!(inbox.get(2), Some(&b"a datagr"[..]));
        assert!(inbox.truncated(2) && !inbox.truncated(0));
        assert_eq!((inbox.get(3), inbox.source(3)), (None, None));
        assert_eq!(inbox.received_ns(0), None);
        // The next call replaces the batch; then nothing is queued.
        assert_eq!(inbox.recv(&rx, false).unwrap(), 1);
        assert_eq!(inbox.get(0), Some(&b"four"[..]));
        assert_eq!(inbox.get(1), None);
        let e = inbox.recv(&rx, false).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert!(inbox.is_empty());
    }

    #[test]
    fn waits_up_to_the_receive_timeout() {
        let rx = receiver();
        rx.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let mut inbox = Inbox::new(4, 64);
        let e = inbox.recv(&rx, true).unwrap_err();
        assert!(matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ));
    }

    #[test]
    fn ipv6_sources_and_receive_times() {
        let Ok(rx) = UdpSocket::bind("[::1]:0") else {
            return; // no IPv6 loopback here
        };
        rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        crate::set_receive_times(&rx).unwrap();
        let tx = UdpSocket::bind("[::1]:0").unwrap();
        tx.send_to(b"hello", rx.local_addr().unwrap()).unwrap();
        let mut inbox = Inbox::new(2, 64).with_receive_times();
        // Moved after it is made: nothing points into the old place.
        let mut moved = Box::new(inbox);
        assert_eq!(moved.recv(&rx, true).unwrap(), 1);
        inbox = *moved;
        assert_eq!(inbox.get(0), Some(&b"hello"[..]));
        assert_eq!(inbox.source(0), Some(tx.local_addr().unwrap()));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        let at = inbox.received_ns(0).unwrap();
        assert!(at <= now && now - at < 10_000_000_000, "{at} vs {now}");
    }
}
