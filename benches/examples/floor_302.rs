//! The floor: the cheapest UDP server `tollgate-load` can drive on this machine. Each of N
//! threads owns one `SO_REUSEPORT` socket, reads up to 64 datagrams per `recvmmsg(2)`, answers
//! every INVITE with a 302 built from its Via, From, To, Call-ID and CSeq lines, and sends the
//! answers with one `sendmmsg(2)`; ACKs and everything else are dropped. It checks nothing,
//! keeps no state and writes nothing: what a call costs here is the kernel's UDP and wake-up
//! work, which every daemon pays. Run the load ladder against it to see the most any server
//! could reach with the load generator on the same cores (`benches/README.md`, "The floor").
//!
//!   cargo run --release -p tollgate-benches --example floor_302 -- 127.0.0.1:5080 [THREADS]

use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, Socket, Type};

const BATCH: usize = 64;
const SLOT: usize = 4096;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:5080".into())
        .parse()?;
    let threads: usize = args.next().map_or(Ok(2), |t| t.parse())?;
    let mut handles = Vec::new();
    for _ in 0..threads {
        let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        s.set_reuse_port(true)?;
        let _ = s.set_recv_buffer_size(8 << 20);
        let _ = s.set_send_buffer_size(8 << 20);
        s.bind(&addr.into())?;
        handles.push(std::thread::spawn(move || serve(&s)));
    }
    eprintln!("floor_302: {threads} sockets on {addr}");
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

/// One socket's loop: a batch in, its 302s out.
fn serve(s: &Socket) {
    let mut inbuf = vec![0u8; BATCH * SLOT];
    let mut out = vec![0u8; BATCH * SLOT];
    let mut out_lens = [0usize; BATCH];
    // SAFETY (both): all-zero sockaddr_storage and mmsghdr are valid values.
    let mut names: [libc::sockaddr_storage; BATCH] = unsafe { std::mem::zeroed() };
    loop {
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; BATCH];
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for (i, chunk) in inbuf.chunks_exact_mut(SLOT).enumerate() {
            iov[i].iov_base = chunk.as_mut_ptr().cast();
            iov[i].iov_len = SLOT;
            hdrs[i].msg_hdr.msg_iov = &mut iov[i];
            hdrs[i].msg_hdr.msg_iovlen = 1;
            hdrs[i].msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
            hdrs[i].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
        }
        // SAFETY: each header points at its own slot, iovec and address, all alive across the
        // call; the kernel writes within the given lengths.
        let n = unsafe {
            libc::recvmmsg(
                s.as_raw_fd(),
                hdrs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n <= 0 {
            continue;
        }
        let mut replies = 0;
        let mut out_iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; BATCH];
        let mut out_hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for i in 0..n as usize {
            let msg = &inbuf[i * SLOT..i * SLOT + hdrs[i].msg_len as usize];
            let reply = &mut out[replies * SLOT..(replies + 1) * SLOT];
            let Some(len) = answer(msg, reply) else {
                continue;
            };
            out_lens[replies] = len;
            out_iov[replies].iov_base = reply.as_mut_ptr().cast();
            out_iov[replies].iov_len = len;
            out_hdrs[replies].msg_hdr.msg_iov = &mut out_iov[replies];
            out_hdrs[replies].msg_hdr.msg_iovlen = 1;
            out_hdrs[replies].msg_hdr.msg_name = hdrs[i].msg_hdr.msg_name;
            out_hdrs[replies].msg_hdr.msg_namelen = hdrs[i].msg_hdr.msg_namelen;
            replies += 1;
        }
        let mut first = 0;
        while first < replies {
            // SAFETY: the headers point at `out` slots and `names`, alive across the call.
            let sent = unsafe {
                libc::sendmmsg(
                    s.as_raw_fd(),
                    out_hdrs[first..].as_mut_ptr(),
                    (replies - first) as u32,
                    0,
                )
            };
            if sent <= 0 {
                break;
            }
            first += sent as usize;
        }
    }
}

/// The 302 for an INVITE (its Via, From, To, Call-ID and CSeq lines, a Contact), written into
/// `out`; `None` for anything else or if it does not fit.
fn answer(msg: &[u8], out: &mut [u8]) -> Option<usize> {
    if !msg.starts_with(b"INVITE ") {
        return None;
    }
    let head = &msg[..memchr::memmem::find(msg, b"\r\n\r\n")?];
    let mut w = Writer { out, len: 0 };
    w.put(b"SIP/2.0 302 Moved Temporarily\r\n")?;
    for line in head.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let name = &line[..line.len().min(5)];
        let keep = [&b"via:"[..], b"from:", b"to:", b"call-", b"cseq:"]
            .iter()
            .any(|p| name.len() >= p.len() && name[..p.len()].eq_ignore_ascii_case(p));
        if keep {
            w.put(line)?;
            w.put(b"\r\n")?;
        }
    }
    w.put(b"Contact: <sip:+14255550100@sbc.example.com>\r\nContent-Length: 0\r\n\r\n")?;
    Some(w.len)
}

struct Writer<'a> {
    out: &'a mut [u8],
    len: usize,
}

impl Writer<'_> {
    fn put(&mut self, b: &[u8]) -> Option<()> {
        self.out
            .get_mut(self.len..self.len + b.len())?
            .copy_from_slice(b);
        self.len += b.len();
        Some(())
    }
}
