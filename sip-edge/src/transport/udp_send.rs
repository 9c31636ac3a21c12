//! Sending many datagrams from one socket at once, without blocking: the ledger writer's
//! path (DESIGN §6). When a group commit lands, its 302s go out with one `sendmmsg` per socket
//! instead of one `sendto` each (each system call costs ~1–2 µs besides the UDP work).

use std::io;
use std::net::{SocketAddr, UdpSocket};

/// Sends each `(bytes, to)` from `socket`, never blocking: a datagram that finds the send
/// buffer full is dropped (the client retransmits; the transaction cache answers again).
pub fn send_many(socket: &UdpSocket, msgs: &[(&[u8], SocketAddr)]) {
    #[cfg(target_os = "linux")]
    linux::send_many(socket, msgs);
    #[cfg(not(target_os = "linux"))]
    for (bytes, to) in msgs {
        let _ = socket2::SockRef::from(socket).send_to(bytes, &(*to).into());
    }
}

/// Sends one datagram without blocking (`MSG_DONTWAIT`).
pub fn send_one(socket: &UdpSocket, bytes: &[u8], to: SocketAddr) -> io::Result<usize> {
    #[cfg(unix)]
    let flags = libc::MSG_DONTWAIT;
    #[cfg(not(unix))]
    let flags = 0;
    socket2::SockRef::from(socket).send_to_with_flags(bytes, &to.into(), flags)
}

#[cfg(target_os = "linux")]
pub(crate) mod linux {
    use std::io;
    use std::net::{SocketAddr, UdpSocket};
    use std::os::fd::AsRawFd;

    use socket2::SockAddr;

    /// Messages per `sendmmsg` at most (the kernel's `UIO_MAXIOV`).
    const MAX: usize = 1024;

    pub fn send_many(socket: &UdpSocket, msgs: &[(&[u8], SocketAddr)]) {
        for chunk in msgs.chunks(MAX) {
            let names: Vec<SockAddr> = chunk.iter().map(|(_, to)| SockAddr::from(*to)).collect();
            let mut iovs: Vec<libc::iovec> = chunk
                .iter()
                .map(|(bytes, _)| libc::iovec {
                    iov_base: bytes.as_ptr().cast_mut().cast(),
                    iov_len: bytes.len(),
                })
                .collect();
            let iov = iovs.as_mut_ptr();
            let mut hdrs: Vec<libc::mmsghdr> = names
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    // SAFETY: an all-zero `mmsghdr` is a valid value (null pointers, zero
                    // lengths); the fields that matter are set below.
                    let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                    m.msg_hdr.msg_name = name.as_ptr().cast_mut().cast();
                    m.msg_hdr.msg_namelen = name.len();
                    m.msg_hdr.msg_iov = iov.wrapping_add(i);
                    m.msg_hdr.msg_iovlen = 1;
                    m
                })
                .collect();
            send_all(socket, &mut hdrs);
        }
    }

    /// Sends every message of `hdrs` with `sendmmsg` (as many calls as it takes), never
    /// blocking; a message the kernel refuses is dropped and the rest still go.
    pub fn send_all(socket: &UdpSocket, hdrs: &mut [libc::mmsghdr]) {
        let mut sent = 0;
        while sent < hdrs.len() {
            // SAFETY: the caller built every header of `hdrs` over an address and an iovec
            // that outlive this call; the kernel reads those and writes only the `msg_len`
            // fields of headers `sent..`, all inside `hdrs`.
            let r = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    hdrs.as_mut_ptr().add(sent),
                    (hdrs.len() - sent) as libc::c_uint,
                    libc::MSG_DONTWAIT as _,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // That datagram is dropped; the rest still go.
                tracing::debug!(error = %e, "udp send");
                sent += 1;
            } else {
                sent += (r as usize).max(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn every_datagram_reaches_its_own_destination() {
        let from = UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("[::1]:0")
            .or_else(|_| UdpSocket::bind("127.0.0.1:0"))
            .unwrap();
        let from6 = if b.local_addr().unwrap().is_ipv6() {
            UdpSocket::bind("[::1]:0").unwrap()
        } else {
            UdpSocket::bind("127.0.0.1:0").unwrap()
        };
        for s in [&a, &b] {
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        }
        let (aa, ba) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let msgs: Vec<(&[u8], SocketAddr)> = vec![(b"one", aa), (b"two", aa), (b"three", aa)];
        send_many(&from, &msgs);
        send_many(&from6, &[(b"four", ba)]);
        let mut buf = [0u8; 16];
        for want in ["one", "two", "three"] {
            let (n, src) = a.recv_from(&mut buf).unwrap();
            assert_eq!(
                (&buf[..n], src),
                (want.as_bytes(), from.local_addr().unwrap())
            );
        }
        let n = b.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"four");
        assert_eq!(send_one(&from, b"five", aa).unwrap(), 4);
        let n = a.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"five");
    }
}
