//! Several nodes (DESIGN §6): a call whose share was short waits for the cluster driver
//! instead of being refused.
//!
//! The engine answers `store_unavailable` with the account it lacked ([`Decision::lacking`])
//! when this node's share of a pool or balance cannot pay for the call but the store may have
//! more. The call is then parked with the driver ([`crate::cluster::driver::Driver::park`]):
//! a copy of the request, where it came from and where its answer goes. The driver draws from
//! the store for every parked call's account at once and has each call decided again, once,
//! with parking off ([`Server::decide_parked`]): admitted from the topped-up share (its 302
//! held for the commit as any other), answered as a single node would once the account is
//! drained (`pool_exhausted`, credits), or `503 store_unavailable` when the store is away, so
//! the proxy tries another node. Nothing is cached for a parked call, so a retransmission of
//! its INVITE meanwhile is parked (or answered) in its turn.
//!
//! [`Decision::lacking`]: tollgate_engine::Decision::lacking

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Instant;

use tollgate_engine::shares::Short;
use tollgate_sip::{parse_message, Message, Transport};

use super::durable::ReplyTo;
use super::Server;
use crate::cluster::driver::{Driver, Parked};

/// Where a request came from, and what may be done with it.
pub(super) struct Origin<'a> {
    /// The request as received (parked calls keep a copy).
    pub buf: &'a [u8],
    pub source: SocketAddr,
    pub transport: Transport,
    pub reply: &'a ReplyTo,
    /// Whether a short share may park the call (not when it is decided again).
    pub may_park: bool,
}

impl Server {
    /// Makes this server park calls with `driver` (several nodes).
    pub fn start_cluster(self: &Arc<Self>, driver: Arc<Driver>) {
        let _ = self.me.set(Arc::downgrade(self));
        let _ = self.cluster.set(driver);
    }

    /// Parks the call of `from` with the driver; `false` if it cannot wait (one node, or too
    /// many wait already): answer it `503 store_unavailable` now.
    pub(super) fn park(&self, from: &Origin<'_>, short: Short) -> bool {
        let (Some(driver), Some(me)) = (self.cluster.get(), self.me.get()) else {
            return false;
        };
        let me: Weak<Server> = Weak::clone(me);
        let (buf, source, transport, reply) = (
            from.buf.to_vec(),
            from.source,
            from.transport,
            from.reply.clone(),
        );
        let parked = Parked {
            short,
            since: Instant::now(),
            retry: Box::new(move |may_park| {
                if let Some(server) = me.upgrade() {
                    server.decide_parked(&buf, source, transport, &reply, may_park);
                }
            }),
        };
        match driver.park(parked) {
            Ok(()) => {
                self.metrics.parked.inc();
                true
            }
            Err(_) => false,
        }
    }

    /// Decides a parked call again and sends its answer (a 302 waits for its commit as usual).
    fn decide_parked(
        &self,
        buf: &[u8],
        source: SocketAddr,
        transport: Transport,
        reply: &ReplyTo,
        may_park: bool,
    ) {
        let Ok(Message::Request(req)) = parse_message(buf, transport) else {
            return;
        };
        let from = Origin {
            buf,
            source,
            transport,
            reply,
            may_park,
        };
        let mut out = Vec::with_capacity(1024);
        if self.invite(&mut out, &req, &from, None) {
            reply.send_now(&out);
        }
    }
}
