//! How long to wait for more work before committing (the ledger writer) or receiving again (a
//! UDP worker that commits its own calls): long enough at moderate load that one wake-up and
//! one commit serve several calls, never longer than `[ledger].linger_us`, and shorter when
//! work comes fast enough to fill a batch anyway.

use std::time::Duration;

/// A batch of this many calls is worth committing without lingering: a commit costs ~14 µs of
/// CPU plus ~2.3 µs per call (`benches/examples/ledger_rows.rs`, appended rows), so past 32
/// calls waiting for more saves under half a microsecond per call, and at high rates it would
/// only add latency.
pub const ENOUGH_TO_COMMIT: usize = 32;

/// The rest of the linger, but no longer than the last batch's arrival rate says it takes to
/// gather `enough`. For the writer (`enough` = [`ENOUGH_TO_COMMIT`] calls) at 4,000 calls/s
/// that is the whole linger (4 calls per 1 ms); at 100,000 calls/s about 0.3 ms, so the
/// linger costs little latency where batches fill anyway.
#[derive(Debug)]
pub struct Linger {
    max: Duration,
    enough: usize,
    /// Items per second while the last batch gathered (0: unknown).
    rate: f64,
}

impl Linger {
    /// Waits at most `max`, for at most `enough` items.
    pub fn new(max: Duration, enough: usize) -> Linger {
        Linger {
            max,
            enough,
            rate: 0.0,
        }
    }

    /// How long to wait with `have` items gathered `elapsed` after the first.
    pub fn wait(&self, have: usize, elapsed: Duration) -> Duration {
        let left = self.max.saturating_sub(elapsed);
        if have >= self.enough {
            return Duration::ZERO;
        }
        if self.rate > 0.0 {
            let to_enough = (self.enough - have) as f64 / self.rate;
            left.min(Duration::from_secs_f64(to_enough))
        } else {
            left
        }
    }

    /// `items` came in the last `over` (a receive's worth of datagrams since the one before).
    pub fn arrived(&mut self, items: usize, over: Duration) {
        let secs = over.as_secs_f64();
        self.rate = if secs > 0.0 { items as f64 / secs } else { 0.0 };
    }

    /// A batch of `items` finished gathering `elapsed` after its first came.
    pub fn gathered(&mut self, items: usize, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        self.rate = if items > 1 && secs > 0.0 {
            (items - 1) as f64 / secs
        } else {
            0.0
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_linger_shrinks_as_the_rate_grows() {
        let mut l = Linger::new(MS, ENOUGH_TO_COMMIT);
        // Nothing known yet: the whole linger, less what has passed.
        assert_eq!(l.wait(1, Duration::ZERO), MS);
        assert_eq!(l.wait(1, MS / 4), MS * 3 / 4);
        assert_eq!(l.wait(1, MS * 2), Duration::ZERO);
        // 4 calls in 1 ms (4,000/s): 31 more would take ~7.75 ms, so the whole linger.
        l.gathered(5, MS);
        assert_eq!(l.wait(1, Duration::ZERO), MS);
        // 100 calls per ms: 31 more take 0.31 ms.
        l.gathered(101, MS);
        let w = l.wait(1, Duration::ZERO);
        assert!(w > MS / 4 && w < MS / 3, "{w:?}");
        // A full batch does not wait; one call tells nothing about the rate.
        assert_eq!(l.wait(ENOUGH_TO_COMMIT, Duration::ZERO), Duration::ZERO);
        l.gathered(1, MS);
        assert_eq!(l.wait(1, Duration::ZERO), MS);
    }

    #[test]
    fn what_is_enough_is_the_callers() {
        // A UDP worker waits for 32 datagrams: at 64 per ms, half a millisecond.
        let mut l = Linger::new(MS, 32);
        l.arrived(64, MS);
        let w = l.wait(0, Duration::ZERO);
        assert!(w > MS * 4 / 10 && w < MS * 6 / 10, "{w:?}");
    }
}
