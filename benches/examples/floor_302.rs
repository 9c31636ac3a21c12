//! The floor: the cheapest UDP server `tollgate-load` can drive on this machine. Each of N
//! threads owns one `SO_REUSEPORT` socket, reads up to 64 datagrams per `recvmmsg(2)`, answers
//! every INVITE with a 302 built from its Via, From, To, Call-ID and CSeq lines, and sends the
//! answers with one `sendmmsg(2)`; ACKs and everything else are dropped. It checks nothing,
//! keeps no state and writes nothing. Its batches go through `tollgate-udp`, the daemon's own
//! batch I/O (the same system calls, no allocation per call): what a call costs here is the
//! kernel's UDP and wake-up work, which every daemon pays. Run the load ladder against it to
//! see the most any server could reach with the load generator on the same cores
//! (`benches/README.md`, "The floor").
//!
//!   cargo run --release -p tollgate-benches --example floor_302 -- 127.0.0.1:5080 [THREADS]

use std::net::{SocketAddr, UdpSocket};

use tollgate_udp::{Inbox, Outbox, To};

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
        let s = tollgate_udp::bind_reuse_port(addr, 8 << 20)?;
        let _ = socket2::SockRef::from(&s).set_send_buffer_size(8 << 20);
        handles.push(std::thread::spawn(move || serve(&s)));
    }
    eprintln!("floor_302: {threads} sockets on {addr}");
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

/// One socket's loop: a batch in (`recvmmsg`), its 302s out (`sendmmsg`).
fn serve(s: &UdpSocket) {
    let mut inbox = Inbox::new(BATCH, SLOT);
    let mut outbox = Outbox::new(BATCH);
    let mut out = vec![0u8; BATCH * SLOT];
    let mut lens = [0usize; BATCH];
    loop {
        let Ok(n) = inbox.recv(s, true) else {
            continue;
        };
        // Write every answer first (the batch then borrows them all).
        for (i, (reply, len)) in out
            .chunks_exact_mut(SLOT)
            .zip(&mut lens)
            .enumerate()
            .take(n)
        {
            *len = inbox.get(i).and_then(|msg| answer(msg, reply)).unwrap_or(0);
        }
        let mut batch = outbox.batch();
        for (i, (reply, &len)) in out.chunks_exact(SLOT).zip(&lens).enumerate().take(n) {
            if len > 0 {
                batch.push(&reply[..len], To::SourceOf(&inbox, i));
            }
        }
        batch.send(s, true);
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
