//! TCP (RFC 3261 §18.3): messages framed by Content-Length ([`crate::sip::frame_len`]), one task
//! per connection, at most `tcp_max_connections` of them (more are closed at once), each closed
//! after `tcp_idle_timeout_seconds` without a byte. A stream that cannot be framed any more gets
//! the error's answer when it can be addressed, then is closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::{stopped, Shutdown};
use crate::ledger::ReplyTo;
use crate::server::Server;
use crate::sip::{frame_len, Transport};

/// Responses held for one connection by the ledger at most: as many as the ledger's default
/// queue holds, so a busy pipelining proxy never loses one (over TCP a dropped answer is not
/// retransmitted; the client's transaction would time out). tokio allocates the channel as it
/// fills, not up front.
const HELD: usize = 65_536;

/// How long shutdown waits for open connections to finish what they hold.
const DRAIN: Duration = Duration::from_secs(5);

/// Connection limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub idle: Duration,
}

/// Accepts connections until shutdown, then drains them (at most [`DRAIN`]).
pub async fn serve(server: Arc<Server>, listener: TcpListener, limits: Limits, shutdown: Shutdown) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut conns = JoinSet::new();
    let mut stop = shutdown.clone();
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "tcp accept");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => break,
        };
        // Reap finished connections so the set stays small.
        while conns.try_join_next().is_some() {}
        match Arc::clone(&slots).try_acquire_owned() {
            Ok(permit) => {
                let server = Arc::clone(&server);
                let shutdown = shutdown.clone();
                conns.spawn(connection(
                    server,
                    stream,
                    peer,
                    limits.idle,
                    shutdown,
                    permit,
                ));
            }
            Err(_) => tracing::warn!(%peer, "tcp connection limit reached, closing"),
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN, async { while conns.join_next().await.is_some() {} }).await;
}

async fn connection(
    server: Arc<Server>,
    mut stream: TcpStream,
    peer: SocketAddr,
    idle: Duration,
    mut shutdown: Shutdown,
    _permit: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut out = Vec::with_capacity(1024);
    // Responses the ledger held until their batch committed come back through here, so this
    // task stays the connection's only writer.
    let (held_tx, mut held) = tokio::sync::mpsc::channel::<Vec<u8>>(HELD);
    let reply = ReplyTo::Tcp(held_tx);
    loop {
        // Every complete message already buffered.
        loop {
            match frame_len(&buf) {
                Ok(Some(n)) => {
                    let now = match buf.get(..n) {
                        Some(frame) => server.handle(frame, peer, Transport::Tcp, &reply, &mut out),
                        None => return,
                    };
                    if now && stream.write_all(&out).await.is_err() {
                        return;
                    }
                    buf.drain(..n);
                }
                Ok(None) => break,
                Err(_) => {
                    if server.unframeable(&buf, peer, &mut out) {
                        let _ = stream.write_all(&out).await;
                    }
                    return;
                }
            }
        }
        let read = tokio::select! {
            r = tokio::time::timeout(idle, stream.read_buf(&mut buf)) => r,
            Some(bytes) = held.recv() => {
                if stream.write_all(&bytes).await.is_err() {
                    return;
                }
                continue;
            }
            () = stopped(&mut shutdown) => {
                // Answers still held by the ledger get a moment to arrive.
                while let Ok(Some(bytes)) =
                    tokio::time::timeout(Duration::from_millis(500), held.recv()).await
                {
                    if stream.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                return;
            }
        };
        match read {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => {}
            Err(_) => {
                tracing::debug!(%peer, "tcp idle timeout");
                return;
            }
        }
    }
}
