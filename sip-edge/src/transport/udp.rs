//! UDP (RFC 3261 §18.2.1): one receive loop per socket. Each listen address gets one socket per
//! core, bound with `SO_REUSEPORT` (DESIGN §7) so the kernel spreads datagrams over them.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use super::{stopped, Shutdown};
use crate::ledger::ReplyTo;
use crate::server::Server;
use crate::sip::parse::MAX_MESSAGE_LEN;
use crate::sip::Transport;

/// Binds `count` sockets to `addr` with `SO_REUSEPORT` (port 0: the first socket's port).
/// Each comes with a `dup` of itself for the ledger's writer thread, which sends the 302s it
/// committed from the same socket (so from the address the proxy sent to).
pub fn bind(
    addr: SocketAddr,
    count: usize,
) -> io::Result<Vec<(UdpSocket, Arc<std::net::UdpSocket>)>> {
    let mut sockets = Vec::with_capacity(count);
    let mut at = addr;
    for _ in 0..count.max(1) {
        let s = Socket::new(Domain::for_address(at), Type::DGRAM, Some(Protocol::UDP))?;
        #[cfg(unix)]
        s.set_reuse_port(true)?;
        s.set_nonblocking(true)?;
        s.bind(&at.into())?;
        let std: std::net::UdpSocket = s.into();
        at = std.local_addr()?;
        let sender = Arc::new(std.try_clone()?);
        sockets.push((UdpSocket::from_std(std)?, sender));
        if !cfg!(unix) {
            break;
        }
    }
    Ok(sockets)
}

/// Receives, handles and answers datagrams until shutdown.
pub async fn serve(
    server: Arc<Server>,
    socket: UdpSocket,
    sender: Arc<std::net::UdpSocket>,
    mut shutdown: Shutdown,
) {
    let mut buf = vec![0u8; MAX_MESSAGE_LEN + 1];
    let mut out = Vec::with_capacity(1024);
    let mut reply = ReplyTo::Udp {
        socket: sender,
        to: SocketAddr::from(([0, 0, 0, 0], 0)),
    };
    loop {
        let (n, source) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    // e.g. ECONNREFUSED from an ICMP error of an earlier send: not fatal.
                    tracing::debug!(error = %e, "udp receive");
                    continue;
                }
            },
            () = stopped(&mut shutdown) => return,
        };
        let Some(datagram) = buf.get(..n) else {
            continue;
        };
        if let ReplyTo::Udp { to, .. } = &mut reply {
            *to = source;
        }
        if server.handle(datagram, source, Transport::Udp, &reply, &mut out) {
            if let Err(e) = socket.send_to(&out, source).await {
                tracing::debug!(error = %e, %source, "udp send");
            }
        }
    }
}
