//! SIP transports (RFC 3261 §18): UDP ([`udp`], on threads of its own) and TCP ([`tcp`], on
//! tokio). Both hand every message to [`crate::server::Server::handle`] and send its answer back
//! to the source address and port (DESIGN §2 step 8). A `watch` channel set to `true` stops
//! them: UDP threads stop within [`udp::RECV_TIMEOUT`], TCP stops accepting and each connection
//! finishes the messages it already holds.

pub mod pace;
pub mod tcp;
pub mod udp;

/// `true` once the daemon is shutting down.
pub type Shutdown = tokio::sync::watch::Receiver<bool>;

/// Resolves once `shutdown` is set (or its sender is gone).
pub async fn stopped(shutdown: &mut Shutdown) {
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}
