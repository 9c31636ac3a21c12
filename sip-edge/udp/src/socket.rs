//! Socket setup and inspection shared by the daemon, the load generator and the floor.

use std::io;
use std::net::{SocketAddr, UdpSocket};
#[cfg(unix)]
use std::os::fd::{AsRawFd, BorrowedFd};

use socket2::{Domain, Protocol, Socket, Type};

/// A UDP socket bound to `addr` with `SO_REUSEPORT` (on Unix), so that several sockets — one
/// per thread — share the address and the kernel spreads datagrams over them; asks for a
/// `recv_buffer`-byte receive buffer (best effort: the kernel caps it at `net.core.rmem_max`).
pub fn bind_reuse_port(addr: SocketAddr, recv_buffer: usize) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    #[cfg(unix)]
    s.set_reuse_port(true)?;
    let _ = s.set_recv_buffer_size(recv_buffer);
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// Asks the kernel to record each datagram's receive time (`SO_TIMESTAMPNS`, Linux), read with
/// [`crate::Inbox::received_ns`]. `Unsupported` elsewhere.
pub fn set_receive_times(socket: &UdpSocket) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let on: libc::c_int = 1;
        // SAFETY: an int option, passed by pointer with its size; the kernel only reads it.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                std::ptr::from_ref(&on).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = socket;
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// The bytes queued on `socket`'s receive side as the kernel accounts them against
/// `SO_RCVBUF` (`SO_MEMINFO`, Linux ≥ 4.6: each datagram's whole buffer, so a 700-byte
/// datagram takes ~2 KiB on loopback), or `None` where it cannot be read. How a server sees a
/// queue building up before the kernel starts dropping.
pub fn queued_bytes(socket: &UdpSocket) -> Option<usize> {
    #[cfg(target_os = "linux")]
    {
        const SPARC: bool = cfg!(any(target_arch = "sparc", target_arch = "sparc64"));
        /// `SO_MEMINFO` (not exported by `libc`): 55 in `asm-generic/socket.h` and on MIPS,
        /// 0x39 on SPARC.
        const SO_MEMINFO: libc::c_int = if SPARC { 0x39 } else { 55 };
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
    #[cfg(not(target_os = "linux"))]
    {
        let _ = socket;
        None
    }
}

/// Waits until `fd` is readable — or writable too, with `write` — or `timeout_ms`
/// milliseconds pass (`poll(2)`). A signal makes the wait shorter.
#[cfg(unix)]
pub fn wait_ready(fd: BorrowedFd<'_>, write: bool, timeout_ms: i32) {
    let mut events = libc::POLLIN;
    if write {
        events |= libc::POLLOUT;
    }
    let mut fds = libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd, count 1; poll only writes its `revents`. An error (EINTR) is
    // a shorter wait, which the caller tolerates.
    unsafe {
        libc::poll(&mut fds, 1, timeout_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::time::{Duration, Instant};

    #[test]
    fn sockets_share_a_port_and_the_queue_is_measured() {
        let a = bind_reuse_port("127.0.0.1:0".parse().unwrap(), 1 << 20).unwrap();
        let at = a.local_addr().unwrap();
        let b = bind_reuse_port(at, 1 << 20).unwrap();
        assert_eq!(b.local_addr().unwrap(), at);
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        // One socket, so that every datagram lands in it.
        drop(b);
        if cfg!(target_os = "linux") {
            assert_eq!(queued_bytes(&a), Some(0));
        }
        for _ in 0..4 {
            tx.send_to(&[0; 500], at).unwrap();
        }
        if cfg!(target_os = "linux") {
            assert!(queued_bytes(&a).unwrap() >= 4 * 500);
        }
    }

    #[test]
    fn waits_for_readable_at_most_the_timeout() {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let t = Instant::now();
        wait_ready(s.as_fd(), false, 20);
        assert!(t.elapsed() >= Duration::from_millis(15));
        s.send_to(b"x", s.local_addr().unwrap()).unwrap();
        let t = Instant::now();
        wait_ready(s.as_fd(), false, 5_000);
        assert!(t.elapsed() < Duration::from_secs(4));
    }
}
