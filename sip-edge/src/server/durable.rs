//! The server's side of the ledger (DESIGN §2 step 7, §6): what waits on a write, and the one
//! place where it learns the write's fate.
//!
//! **A 302 leaves only after its commit.** An admission's 302 is not sent by the code that
//! decides it: it becomes a [`Held`] (its bytes, where they go, what to cache and count), queued
//! with the call's row ([`Server::hold`]). `Held`'s fields are private to this module and
//! [`ReplyTo`] cannot send outside it, so the only way out for held bytes is
//! [`Server::apply`], which the ledger's writer thread (given it at [`Server::start_ledger`])
//! and a UDP worker committing its own calls ([`Server::commit`]) call with each commit's
//! [`Outcome`]:
//!
//! - Committed: a held 302 is cached under its INVITE transaction and sent (a batch's UDP
//!   answers with one `sendmmsg` per socket); an HTTP handler waiting on an `end` or `extend`
//!   is told.
//! - Failed: a fresh admission is undone in the engine ([`Engine::abort`]) and answered
//!   `503 store_unavailable` instead, except an emergency call, which gets its 302 anyway
//!   (DESIGN §4 rule 1: whatever the ledger state, [`Basis::answered_without_commit`]) and is
//!   retried. Everything else already happened in the engine's memory (a settlement, an
//!   extension, a release): it is retried until a commit succeeds; the HTTP caller is told
//!   `store_unavailable`.
//! - Rejected (a row that can never commit): answered as failed, counted, not retried.
//!
//! The one answer that leaves without a commit by another road: when the ledger refuses a
//! write outright (queue full, writer gone), [`Server::hold`] answers at once, `503 overloaded`
//! or `503 store_unavailable`, or an emergency call's 302 (again
//! [`Basis::answered_without_commit`]).
//!
//! [`Engine::abort`]: tollgate_engine::Engine::abort

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use tollgate_engine::{Basis, Reason, StoredCall};

use super::status::SipStatus;
use super::transactions::{Answer, TxKey};
use super::{now, reject_extras, status_of, Server};
use crate::ledger::{self, LedgerError, Outcome, Refused};
use crate::sip::rewrite_response;
use tollgate_udp::send_many;

/// Where a SIP response goes once its write's fate is known: the source of the request
/// (DESIGN §2 step 8).
#[derive(Clone, Debug)]
pub enum ReplyTo {
    /// A handle on the receiving UDP socket (a `dup` of it, usable from any thread).
    Udp {
        socket: Arc<UdpSocket>,
        to: SocketAddr,
    },
    /// The connection's writer.
    Tcp(tokio::sync::mpsc::Sender<Vec<u8>>),
    /// Nowhere (unit tests, and the in-memory seam which answers inline).
    None,
}

impl ReplyTo {
    /// Sends without blocking (`MSG_DONTWAIT` over UDP; [`Server::apply`] sends a committed
    /// batch's UDP answers with one `sendmmsg` per socket instead); a full socket buffer or a
    /// closed connection drops the response (over UDP the client retransmits and gets it from
    /// the transaction cache). Private: held bytes leave through [`Server::apply`] only.
    fn send(&self, bytes: &[u8]) {
        match self {
            ReplyTo::Udp { socket, to } => {
                if let Err(e) = tollgate_udp::send_one(socket, bytes, *to) {
                    tracing::debug!(error = %e, %to, "udp send");
                }
            }
            ReplyTo::Tcp(tx) => {
                let _ = tx.try_send(bytes.to_vec());
            }
            ReplyTo::None => {}
        }
    }

    /// Sends an answer that waits on no commit (a parked call's reject, decided again off the
    /// receiving thread): never held bytes, which leave through [`Server::apply`] only.
    pub(super) fn send_now(&self, bytes: &[u8]) {
        self.send(bytes);
    }
}

/// A SIP response held until its write's fate is known. Its fields are private to this module:
/// only [`Server::apply`] (and [`Server::hold`], when the ledger refuses the write) let it go.
#[derive(Debug)]
pub struct Held {
    /// Shared with the transaction cache once sent.
    bytes: Arc<[u8]>,
    to: ReplyTo,
    /// Cache the bytes under this INVITE transaction once sent.
    tx: Option<TxKey>,
    /// An admission (the bytes are its 302), on this basis.
    admit: Option<Basis>,
    /// A new admission, not the replay of one already made: if its batch fails it is undone.
    fresh: bool,
    /// The transport label for metrics.
    transport: &'static str,
}

impl Held {
    /// An admission's 302 (`bytes`), cached under `tx` once it leaves; `fresh` unless the
    /// engine replayed an admission it had already made.
    pub(super) fn admission(
        bytes: &[u8],
        to: &ReplyTo,
        tx: TxKey,
        basis: Basis,
        fresh: bool,
        transport: &'static str,
    ) -> Held {
        Held {
            bytes: bytes.into(),
            to: to.clone(),
            tx: Some(tx),
            admit: Some(basis),
            fresh,
            transport,
        }
    }
}

/// What waits on a ledger write.
#[derive(Debug)]
pub enum Waiter {
    Nothing,
    Sip(Held),
    /// An HTTP handler waits: `true` once committed, `false` if the commit failed.
    Notify(tokio::sync::oneshot::Sender<bool>),
}

/// A ledger write of the daemon: a call's row and what waits on it.
pub type Write = ledger::Write<Waiter>;

/// The writes a UDP worker's calls made since its last [`Server::commit`]: the worker owns it
/// and hands it to [`Server::handle`] while it commits its own calls.
pub type Collector = ledger::Collector<Waiter>;

impl Server {
    /// Starts the ledger's writer thread, which hands each of its commits' outcomes to
    /// [`Server::apply`] on that thread, right after the commit. It holds the server weakly:
    /// once the server is gone, outcomes are dropped (and whoever waits is told so).
    pub fn start_ledger(self: &Arc<Self>) -> Result<(), LedgerError> {
        let server = Arc::downgrade(self);
        self.ledger.start(move |outcome| {
            server
                .upgrade()
                .map(|s| s.apply(outcome))
                .unwrap_or_default()
        })
    }

    /// Queues an admission's write with its 302 (`held`, also in `out`), into `here` if the
    /// caller commits its own calls. Returns whether `out` must be sent now instead: the
    /// queue was full or the writer gone, and `out` now holds the 503 (or, for an emergency
    /// call, still the 302).
    pub(super) fn hold(
        &self,
        call: StoredCall,
        held: Held,
        here: Option<&mut Collector>,
        out: &mut Vec<u8>,
    ) -> bool {
        let write = Write {
            call,
            waiter: Waiter::Sip(held),
        };
        let (w, reason) = match self.ledger.submit(write, here) {
            Ok(()) => return false,
            Err(Refused::Full(w)) => (w, Reason::Overloaded),
            Err(Refused::Closed(w)) => (w, Reason::StoreUnavailable),
        };
        let Waiter::Sip(held) = w.waiter else {
            return true;
        };
        match held.admit {
            Some(basis) if basis.answered_without_commit() => {
                self.admitted(basis, &w.call.call_id, held.transport, out);
            }
            _ => {
                if held.fresh {
                    self.engine.abort(&w.call.call_id);
                }
                self.refuse(&held, &w.call, reason, out);
            }
        }
        true
    }

    /// Queues the row of `call_id` as the engine now holds it, with `out` (already written) to
    /// be sent once committed, into `here` if the caller commits its own calls. Returns
    /// whether the response is held (else: send `out` now; the change stays in memory and is
    /// not durable).
    pub(super) fn persist_now(
        &self,
        call_id: &str,
        out: &[u8],
        reply: &ReplyTo,
        label: &'static str,
        here: Option<&mut Collector>,
    ) -> bool {
        if !self.ledger.is_durable() {
            return false;
        }
        let Some(r) = self.engine.reservations().get(call_id) else {
            return false;
        };
        let w = Write {
            call: StoredCall::from_record(call_id, &r),
            waiter: Waiter::Sip(Held {
                bytes: out.into(),
                to: reply.clone(),
                tx: None,
                admit: None,
                fresh: false,
                transport: label,
            }),
        };
        match self.ledger.submit(w, here) {
            Ok(()) => true,
            Err(Refused::Full(w) | Refused::Closed(w)) => {
                tracing::warn!(call_id = %w.call.call_id, "ledger queue refused a change: kept in memory only");
                false
            }
        }
    }

    /// Persists the row of `call_id` and waits for the commit (HTTP `end` / `extend`). `true`
    /// once durable (or with the in-memory seam), `false` if the ledger could not commit it.
    pub async fn persist(&self, call_id: &str) -> bool {
        if !self.ledger.is_durable() {
            return true;
        }
        let Some(r) = self.engine.reservations().get(call_id) else {
            return true;
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let w = Write {
            call: StoredCall::from_record(call_id, &r),
            waiter: Waiter::Notify(tx),
        };
        match self.ledger.submit(w, None) {
            Ok(()) => rx.await.unwrap_or(false),
            Err(_) => false,
        }
    }

    /// Writes `call_id`'s row to the ledger as memory holds it now, without waiting for the
    /// commit (an expiry, or a change another node made to this node's call).
    pub fn record(&self, call_id: &str) {
        if !self.ledger.is_durable() {
            return;
        }
        if let Some(r) = self.engine.reservations().get(call_id) {
            let w = Write {
                call: StoredCall::from_record(call_id, &r),
                waiter: Waiter::Nothing,
            };
            if self.ledger.submit(w, None).is_err() {
                tracing::warn!(%call_id, "ledger queue refused a write: kept in memory only");
            }
        }
    }

    /// Settles expired reservations and persists them; writes this month's pool capacities
    /// when the month or the directory changed. Called once a second.
    pub(super) fn persist_expired(&self, settled: &[tollgate_engine::Settlement]) {
        if !self.ledger.is_durable() {
            return;
        }
        for s in settled {
            self.record(&s.call_id);
        }
        let month = self.engine.month(now()).0 + 1;
        if self.pools_written.swap(month, Ordering::AcqRel) != month
            && !self.ledger.write_pools(self.engine.pools(now()))
        {
            self.pools_changed();
        }
    }

    /// The directory changed: its pool capacities are written again on the next tick.
    pub(super) fn pools_changed(&self) {
        self.pools_written.store(0, Ordering::Release);
    }

    /// Whether a thread may commit the ledger writes of the calls it handles itself, with a
    /// [`Collector`] and [`Server::commit`] (see [`crate::ledger`]): never where the ledger is
    /// in memory (answers leave at once).
    pub fn collects(&self) -> bool {
        self.ledger.collects()
    }

    /// How long a thread that commits its own calls may wait for more before receiving again
    /// (`[ledger].linger_us`).
    pub fn linger(&self) -> std::time::Duration {
        self.ledger.linger()
    }

    /// Commits what the calls handled with `here` wrote since the last call (with whatever
    /// other workers queued meanwhile), acting on each outcome ([`Server::apply`]): their held
    /// answers leave from here.
    pub fn commit(&self, here: &mut Collector) {
        while let Some(outcome) = self.ledger.commit(here) {
            let retry = self.apply(outcome);
            self.ledger.retry(retry);
        }
    }

    /// Whether the ledger's last commit succeeded (`/readyz`).
    pub fn store_ok(&self) -> bool {
        self.store_ok.load(Ordering::Acquire)
    }

    /// Acts on what one commit attempt did: the only place a held answer is released (see the
    /// module doc). Counts the attempt, answers what waited on its writes, and returns what to
    /// try again with the next batch.
    pub fn apply(&self, outcome: Outcome<'_, Waiter>) -> Vec<Write> {
        let Outcome {
            writes,
            failed,
            rejected,
            records,
            seconds,
        } = outcome;
        for r in rejected {
            self.metrics.ledger_rejected_writes.inc();
            tracing::error!(
                call_id = %r.write.call.call_id,
                error = %r.error,
                "ledger cannot ever store this call's row: dropped, the rest of its batch \
                 commits (the change stays in memory only)"
            );
            // What waits on it is answered as for a failed batch (an admission is undone and
            // refused); the write itself is not retried.
            drop(self.failed(r.write));
        }
        self.metrics.ledger_commit_seconds.observe(seconds);
        let Some(e) = failed else {
            self.metrics.ledger_records.inc_by(records as u64);
            if !self.store_ok.swap(true, Ordering::AcqRel) {
                tracing::info!("ledger commits again");
            }
            self.committed(writes);
            return Vec::new();
        };
        self.metrics.ledger_commit_errors.inc();
        self.store_ok.store(false, Ordering::Release);
        let t = now();
        if self.store_logged.swap(t, Ordering::AcqRel) != t {
            tracing::error!(error = %e, records, "ledger commit failed: admissions answered 503 store_unavailable");
        }
        writes.filter_map(|w| self.failed(w)).collect()
    }

    /// The writes are durable: their answers leave ([`Server::apply`] only).
    fn committed(&self, writes: std::vec::Drain<'_, Write>) {
        // UDP answers, to send with one `sendmmsg` per socket.
        let mut udp: Vec<(Arc<UdpSocket>, Arc<[u8]>, SocketAddr)> =
            Vec::with_capacity(writes.len());
        // Several nodes: the committed rows go on to the cluster store (the outbox).
        let cluster = self.cluster.get();
        let mut rows = Vec::with_capacity(if cluster.is_some() { writes.len() } else { 0 });
        for w in writes {
            match w.waiter {
                Waiter::Sip(mut held) => {
                    self.leaving(&mut held, &w.call.call_id);
                    match held.to {
                        ReplyTo::Udp { socket, to } => udp.push((socket, held.bytes, to)),
                        other => other.send(&held.bytes),
                    }
                }
                Waiter::Notify(tx) => {
                    let _ = tx.send(true);
                }
                Waiter::Nothing => {}
            }
            if cluster.is_some() {
                rows.push(w.call);
            }
        }
        if let Some(c) = cluster {
            c.outbox.push(rows);
        }
        udp.sort_unstable_by_key(|(s, _, _)| Arc::as_ptr(s) as usize);
        for group in udp.chunk_by(|a, b| Arc::ptr_eq(&a.0, &b.0)) {
            let msgs: Vec<(&[u8], SocketAddr)> =
                group.iter().map(|(_, b, to)| (&b[..], *to)).collect();
            if let Some((socket, _, _)) = group.first() {
                if let Some(e) = send_many(socket, &msgs).error {
                    tracing::debug!(error = %e, "udp send");
                }
            }
        }
    }

    /// `w`'s write was not committed ([`Server::apply`] only): answers what waits on it;
    /// returns what to retry (state the engine already holds), or `None` to forget it (an
    /// admission refused instead).
    fn failed(&self, w: Write) -> Option<Write> {
        let call = w.call;
        match w.waiter {
            Waiter::Sip(held) => match held.admit {
                Some(b) if !b.answered_without_commit() => {
                    if held.fresh {
                        self.engine.abort(&call.call_id);
                    }
                    let mut out = Vec::with_capacity(held.bytes.len());
                    self.refuse(&held, &call, Reason::StoreUnavailable, &mut out);
                    held.to.send(&out);
                    return None;
                }
                _ => {
                    let mut held = held;
                    self.leaving(&mut held, &call.call_id);
                    held.to.send(&held.bytes);
                }
            },
            Waiter::Notify(tx) => {
                let _ = tx.send(false);
            }
            Waiter::Nothing => {}
        }
        Some(Write {
            call,
            waiter: Waiter::Nothing,
        })
    }

    /// Answers a held admission with `reason` instead, now. The decision log's reject line
    /// names the call as the engine admitted it, and why the admission did not stand; a full
    /// ledger queue refuses every admission while it lasts, so those lines are at debug and a
    /// warning at most once a second counts them.
    fn refuse(&self, held: &Held, call: &StoredCall, reason: Reason, out: &mut Vec<u8>) {
        rewrite_response(
            out,
            &held.bytes,
            reason.sip_status(),
            &reject_extras(reason),
        );
        self.metrics.rejected(reason);
        self.metrics.message_out(status_of(out), held.transport);
        macro_rules! reject {
            ($level:expr, $rule:expr) => {
                tracing::event!(
                    $level,
                    call_id = call.call_id,
                    caller = &*call.user,
                    dialed = &*call.dialed,
                    tenant = Some(&*call.tenant).filter(|t| !t.is_empty()),
                    reason = reason.as_str(),
                    rule = $rule,
                    status = reason.sip_status(),
                    "reject"
                )
            };
        }
        if reason != Reason::Overloaded {
            reject!(
                tracing::Level::INFO,
                "ledger: the admission could not be committed"
            );
            return;
        }
        reject!(tracing::Level::DEBUG, "ledger: the write queue is full");
        self.queue_full.fetch_add(1, Ordering::Relaxed);
        let t = now();
        if self.queue_full_logged.swap(t, Ordering::AcqRel) != t {
            tracing::warn!(
                reason = reason.as_str(),
                rejected_since_last = self.queue_full.swap(0, Ordering::Relaxed),
                "ledger queue full: admissions answered 503 overloaded"
            );
        }
    }

    /// A held response whose write is settled (committed, or an emergency call) is leaving:
    /// counted, logged, cached under its INVITE transaction.
    fn leaving(&self, held: &mut Held, call_id: &str) {
        if let Some(basis) = held.admit {
            self.admitted(basis, call_id, held.transport, &held.bytes);
        } else {
            self.metrics
                .message_out(status_of(&held.bytes), held.transport);
        }
        if let Some(key) = held.tx.take() {
            self.transactions
                .insert(key, Answer::Bytes(Arc::clone(&held.bytes)), Instant::now());
        }
    }
}
