//! How a UDP worker shares the ledger's work (DESIGN §6) as the load changes.
//!
//! At moderate load a worker commits its own calls (with its [`Collector`] and
//! [`Server::commit`], once per received batch) and, after a batch that was not full, sleeps before receiving again: at most
//! `[ledger].linger_us`, less when datagrams come fast enough to fill a batch sooner
//! ([`Linger`]). One wake-up and one commit then serve several calls, where handing each batch
//! to the ledger's writer thread would cost a wake-up of that thread, its sleep for the linger
//! and the context switches (with sipp at 4,000 calls/s on one socket: 1.16 → 0.21 voluntary
//! context switches and 31–34 → 23–26 µs of daemon CPU per call; `docs/performance.md`,
//! "Committing on the receiving thread").
//!
//! At high load the commits on the receiving thread cost more than they save: they are not
//! spread over the second core, while the worker commits it does not receive, and the pause
//! adds latency where batches fill anyway. Above [`HAND_OFF_ABOVE`] datagrams per second the
//! worker hands its calls' writes to the writer thread again (group commit across both
//! workers, in parallel with receiving) and receives without pausing; below
//! [`COMMIT_HERE_BELOW`] it takes them back. The gap keeps it from flapping; the rate is
//! measured over [`WINDOW`].

use std::time::{Duration, Instant};

use crate::ledger::linger::Linger;
#[cfg(doc)]
use crate::server::Collector;
use crate::server::Server;

use super::udp::BATCH;

/// Datagrams per second on one socket above which its worker hands its writes to the writer
/// thread (an INVITE and an ACK per call: 8,000 calls/s).
pub const HAND_OFF_ABOVE: f64 = 16_000.0;

/// Datagrams per second below which the worker commits its own writes again.
pub const COMMIT_HERE_BELOW: f64 = 12_000.0;

/// How long the arrival rate is counted over before the worker reconsiders.
pub const WINDOW: Duration = Duration::from_millis(20);

/// One worker's pacing state.
#[derive(Debug)]
pub struct Pace {
    /// Whether the ledger is durable (else nothing to commit here, and no pause).
    durable: bool,
    /// Whether this worker commits its own calls now.
    here: bool,
    linger: Linger,
    /// When the last batch was handled.
    last: Instant,
    /// The current counting window: when it started, datagrams so far.
    window: (Instant, usize),
}

impl Pace {
    /// Starts committing on this thread if the ledger is durable.
    pub fn new(server: &Server, now: Instant) -> Pace {
        let here = server.collects();
        Pace {
            durable: here,
            here,
            linger: Linger::new(server.linger(), BATCH),
            last: now,
            window: (now, 0),
        }
    }

    /// Whether this worker commits its own calls now: hands its [`Collector`] to
    /// [`Server::handle`], then [`Server::commit`]s it.
    pub fn commits_here(&self) -> bool {
        self.here
    }

    /// A batch of `n` datagrams was handled and its writes committed (or handed on): returns
    /// how long to sleep before receiving again.
    pub fn handled(&mut self, n: usize, now: Instant) -> Duration {
        self.linger
            .arrived(n, now.saturating_duration_since(self.last));
        self.last = now;
        let (start, count) = &mut self.window;
        *count += n;
        let span = now.saturating_duration_since(*start);
        if self.durable && span >= WINDOW {
            let rate = *count as f64 / span.as_secs_f64();
            self.here = commit_here(self.here, rate);
            self.window = (now, 0);
        }
        // A full batch may have left more queued: receive again at once.
        if !self.here || n == BATCH {
            Duration::ZERO
        } else {
            self.linger.wait(0, Duration::ZERO)
        }
    }
}

/// Whether a worker that commits its own calls (`here`) should, at `rate` datagrams per second.
fn commit_here(here: bool, rate: f64) -> bool {
    if here {
        rate <= HAND_OFF_ABOVE
    } else {
        rate < COMMIT_HERE_BELOW
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_hands_off_above_the_high_mark_and_takes_back_below_the_low_one() {
        // sipp at 4,000 calls/s: 8,000 datagrams/s on one socket.
        assert!(commit_here(true, 8_000.0));
        assert!(!commit_here(true, 20_000.0));
        // Between the marks nothing changes, whichever side it came from.
        assert!(commit_here(true, 14_000.0));
        assert!(!commit_here(false, 14_000.0));
        assert!(commit_here(false, 8_000.0));
    }
}
