//! What a run counts: calls, answers by status, retransmissions, timeouts, and the latency
//! histogram (INVITE first sent → final response, microseconds, `hdrhistogram`, 3 significant
//! digits).
//!
//! Each worker thread counts into its own [`Totals`] and adds them to a shared one under a
//! mutex every few milliseconds, so the hot loops take no lock and touch no shared cache
//! line; the progress line and the final report read the shared ones.

use hdrhistogram::Histogram;

/// Latencies above this (µs) are recorded as this: 10 minutes is far beyond any timeout.
pub const MAX_LATENCY_US: u64 = 600_000_000;

/// Counts of one worker, or of all of them.
#[derive(Clone, Debug)]
pub struct Totals {
    /// Calls started (first INVITE sent, or queued on TCP).
    pub sent: u64,
    /// Calls that got a final response (3xx–6xx; 2xx too, though the daemon sends none).
    pub answered: u64,
    /// Of those, answered while their worker was still starting new calls (the achieved rate
    /// counts these over the sending time, so that stragglers answered after retransmissions
    /// do not stretch the window).
    pub answered_while_sending: u64,
    /// Final responses by status code (index = status, 100..700).
    pub by_status: Box<[u64; 700]>,
    /// INVITE retransmissions (Timer A).
    pub retransmissions: u64,
    /// Calls with no final response after the timeout (Timer B).
    pub timeouts: u64,
    /// Final responses for calls already answered (retransmitted by the daemon) or timed out.
    pub late_or_duplicate: u64,
    /// Provisional responses (1xx).
    pub provisional: u64,
    /// ACKs sent (one per final response received, duplicates included).
    pub acks: u64,
    /// Datagrams or frames that were no response of this run.
    pub unmatched: u64,
    /// Send errors (e.g. `ENOBUFS`, `ECONNREFUSED`): the message was not sent.
    pub send_errors: u64,
    /// Latency, µs.
    pub latency: Histogram<u64>,
}

impl Default for Totals {
    fn default() -> Self {
        Totals {
            sent: 0,
            answered: 0,
            answered_while_sending: 0,
            by_status: Box::new([0; 700]),
            retransmissions: 0,
            timeouts: 0,
            late_or_duplicate: 0,
            provisional: 0,
            acks: 0,
            unmatched: 0,
            send_errors: 0,
            latency: new_histogram(),
        }
    }
}

/// An empty latency histogram, 1 µs .. [`MAX_LATENCY_US`], 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts (low >= 1, high >= 2 * low,
    // sigfig <= 5): this cannot fail.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).unwrap_or_else(|_| unreachable!())
}

impl Totals {
    /// A final response after `latency_us`.
    pub fn answer(&mut self, status: u16, latency_us: u64) {
        self.answered += 1;
        if let Some(n) = self.by_status.get_mut(status as usize) {
            *n += 1;
        }
        self.latency.saturating_record(latency_us.max(1));
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Totals) {
        self.sent += other.sent;
        self.answered += other.answered;
        self.answered_while_sending += other.answered_while_sending;
        for (a, b) in self.by_status.iter_mut().zip(other.by_status.iter()) {
            *a += b;
        }
        self.retransmissions += other.retransmissions;
        self.timeouts += other.timeouts;
        self.late_or_duplicate += other.late_or_duplicate;
        self.provisional += other.provisional;
        self.acks += other.acks;
        self.unmatched += other.unmatched;
        self.send_errors += other.send_errors;
        // Same bounds on both sides: adding cannot fail.
        let _ = self.latency.add(&other.latency);
    }

    /// Back to zero, keeping the allocations.
    pub fn reset(&mut self) {
        self.sent = 0;
        self.answered = 0;
        self.answered_while_sending = 0;
        self.by_status.fill(0);
        self.retransmissions = 0;
        self.timeouts = 0;
        self.late_or_duplicate = 0;
        self.provisional = 0;
        self.acks = 0;
        self.unmatched = 0;
        self.send_errors = 0;
        self.latency.reset();
    }
}
