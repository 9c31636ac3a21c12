//! The server's side of the ledger (DESIGN §2 step 7, §6): what the call path queues, and what
//! happens to each write once the writer has committed it or failed to.
//!
//! - Committed: a held 302 is cached under its INVITE transaction and sent (a batch's UDP
//!   answers with one `sendmmsg` per socket); an HTTP handler waiting on an `end` or `extend`
//!   is told.
//! - Failed: a fresh admission is undone in the engine ([`Engine::abort`]) and answered
//!   `503 store_unavailable` instead, except an emergency call, which gets its 302 anyway
//!   (DESIGN §4 rule 1: whatever the ledger state) and is retried. Everything else already
//!   happened in the engine's memory (a settlement, an extension, a release): it is retried
//!   until a commit succeeds; the HTTP caller is told `store_unavailable`.
//! - Queue full: the admission is undone and answered `503 overloaded` at once.
//!
//! [`Engine::abort`]: tollgate_engine::Engine::abort

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use tollgate_engine::{Reason, StoredCall};

use super::status::SipStatus;
use super::transactions::Answer;
use super::{now, reject_extras, status_of, Server};
use crate::ledger::{After, Committer, Refused, ReplyTo, SipReply, Write};
use crate::sip::rewrite_response;
use tollgate_udp::send_many;

impl Server {
    /// Queues an admission's write with its 302 (in `out`). Returns whether `out` must be sent
    /// now instead: the queue was full or the writer gone, and `out` now holds the 503 (or,
    /// for an emergency call, still the 302).
    pub(super) fn hold(&self, write: Write, out: &mut Vec<u8>) -> bool {
        let (w, reason) = match self.ledger.submit(write) {
            Ok(()) => return false,
            Err(Refused::Full(w)) => (w, Reason::Overloaded),
            Err(Refused::Closed(w)) => (w, Reason::StoreUnavailable),
        };
        let After::Sip(held) = w.after else {
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
                self.refuse(&held, &w.call.call_id, reason, out);
            }
        }
        true
    }

    /// Queues the row of `call_id` as the engine now holds it, with `out` (already written) to
    /// be sent once committed. Returns whether the response is held (else: send `out` now;
    /// the change stays in memory and is not durable).
    pub(super) fn persist_now(
        &self,
        call_id: &str,
        out: &[u8],
        reply: &ReplyTo,
        label: &'static str,
    ) -> bool {
        if !self.ledger.is_durable() {
            return false;
        }
        let Some(r) = self.engine.reservations().get(call_id) else {
            return false;
        };
        let w = Write {
            call: StoredCall::from_record(call_id, &r),
            after: After::Sip(SipReply {
                bytes: out.into(),
                to: reply.clone(),
                tx: None,
                admit: None,
                fresh: false,
                transport: label,
            }),
        };
        match self.ledger.submit(w) {
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
            after: After::Notify(tx),
        };
        match self.ledger.submit(w) {
            Ok(()) => rx.await.unwrap_or(false),
            Err(_) => false,
        }
    }

    /// Settles expired reservations and persists them; writes this month's pool capacities
    /// when the month or the directory changed. Called once a second.
    pub(super) fn persist_expired(&self, settled: &[tollgate_engine::Settlement]) {
        if !self.ledger.is_durable() {
            return;
        }
        for s in settled {
            if let Some(r) = self.engine.reservations().get(&s.call_id) {
                let w = Write {
                    call: StoredCall::from_record(&s.call_id, &r),
                    after: After::Nothing,
                };
                if self.ledger.submit(w).is_err() {
                    tracing::warn!(call_id = %s.call_id, "ledger queue refused an expiry: kept in memory only");
                }
            }
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

    /// With `on`, makes the calling thread commit the ledger writes of the calls it handles
    /// itself, at each [`Server::commit_here`] (see [`crate::ledger`]); without, hands them to
    /// the ledger's writer thread again. Returns whether the thread now commits its own: never
    /// where the ledger is in memory (answers leave at once).
    pub fn collect_here(&self, on: bool) -> bool {
        self.ledger.collect_here(on)
    }

    /// How long a thread that commits its own calls may wait for more before receiving again
    /// (`[ledger].linger_us`).
    pub fn linger(&self) -> std::time::Duration {
        self.ledger.linger()
    }

    /// Commits what this thread's calls wrote since the last call, and sends their held
    /// answers.
    pub fn commit_here(&self) {
        self.ledger.commit_here(self);
    }

    /// Whether the ledger's last commit succeeded (`/readyz`).
    pub fn store_ok(&self) -> bool {
        self.store_ok.load(Ordering::Acquire)
    }

    /// Answers a held admission with `reason` instead, now.
    fn refuse(&self, held: &SipReply, call_id: &str, reason: Reason, out: &mut Vec<u8>) {
        rewrite_response(
            out,
            &held.bytes,
            reason.sip_status(),
            &reject_extras(reason),
        );
        self.metrics.rejected(reason);
        self.metrics.message_out(status_of(out), held.transport);
        tracing::info!(call_id, reason = reason.as_str(), "reject");
    }

    /// A held response whose write is settled (committed, or an emergency call) is leaving:
    /// counted, logged, cached under its INVITE transaction.
    fn leaving(&self, held: &mut SipReply, call_id: &str) {
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

    /// Sends a held response whose write is settled.
    fn release_held(&self, mut held: SipReply, call_id: &str) {
        self.leaving(&mut held, call_id);
        held.to.send(&held.bytes);
    }
}

impl Committer for Server {
    fn committed(&self, batch: &mut Vec<Write>) {
        // UDP answers, to send with one `sendmmsg` per socket.
        let mut udp: Vec<(Arc<UdpSocket>, Arc<[u8]>, SocketAddr)> = Vec::with_capacity(batch.len());
        for w in batch.drain(..) {
            match w.after {
                After::Sip(mut held) => {
                    self.leaving(&mut held, &w.call.call_id);
                    match held.to {
                        ReplyTo::Udp { socket, to } => udp.push((socket, held.bytes, to)),
                        other => other.send(&held.bytes),
                    }
                }
                After::Notify(tx) => {
                    let _ = tx.send(true);
                }
                After::Nothing => {}
            }
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

    fn failed(&self, w: Write) -> Option<Write> {
        let call = w.call;
        match w.after {
            After::Sip(held) => match held.admit {
                Some(b) if !b.answered_without_commit() => {
                    if held.fresh {
                        self.engine.abort(&call.call_id);
                    }
                    let mut out = Vec::with_capacity(held.bytes.len());
                    self.refuse(&held, &call.call_id, Reason::StoreUnavailable, &mut out);
                    held.to.send(&out);
                    return None;
                }
                _ => self.release_held(held, &call.call_id),
            },
            After::Notify(tx) => {
                let _ = tx.send(false);
            }
            After::Nothing => {}
        }
        Some(Write {
            call,
            after: After::Nothing,
        })
    }

    fn rejected(&self, w: Write, error: &rusqlite::Error) {
        self.metrics.ledger_rejected_writes.inc();
        tracing::error!(
            call_id = %w.call.call_id,
            %error,
            "ledger cannot ever store this call's row: dropped, the rest of its batch commits \
             (the change stays in memory only)"
        );
        // What waits on it is answered as for a failed batch (an admission is undone and
        // refused); the write itself is not retried.
        drop(self.failed(w));
    }

    fn batch(&self, records: usize, seconds: f64, error: Option<&rusqlite::Error>) {
        self.metrics.ledger_commit_seconds.observe(seconds);
        let Some(e) = error else {
            self.metrics.ledger_records.inc_by(records as u64);
            if !self.store_ok.swap(true, Ordering::AcqRel) {
                tracing::info!("ledger commits again");
            }
            return;
        };
        self.metrics.ledger_commit_errors.inc();
        self.store_ok.store(false, Ordering::Release);
        let t = now();
        if self.store_logged.swap(t, Ordering::AcqRel) != t {
            tracing::error!(error = %e, records, "ledger commit failed: admissions answered 503 store_unavailable");
        }
    }
}
