//! Sequence numbers for admitted calls ([`crate::Grant::seq`]): the ledger's key for a call's
//! row, so rows are appended in about the order calls arrive (`sip-edge/src/ledger/schema.rs`).
//!
//! One counter shared by every thread would be one cache line written by every admission from
//! every core; measured on the 2-thread authorize bench, it cost the second thread a fifth of
//! its throughput. So each thread takes numbers from a block of [`BLOCK`] it reserved from the
//! shared counter, which is touched once per block. Numbers are unique; across threads they
//! are in admission order to within a block, which keeps the ledger's inserts at the end of
//! its table.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// Numbers a thread takes from the shared counter at a time.
pub const BLOCK: u64 = 32;

/// Tells apart the counters of several engines in one process (tests, benches) in the
/// per-thread blocks.
static COUNTERS: AtomicU64 = AtomicU64::new(1);

/// A thread's current block: of which counter, in which epoch, what is left.
#[derive(Clone, Copy)]
struct Block {
    counter: u64,
    epoch: u64,
    next: u64,
    end: u64,
}

thread_local! {
    static BLOCK_OF_THIS_THREAD: Cell<Block> = const {
        Cell::new(Block { counter: 0, epoch: 0, next: 0, end: 0 })
    };
}

/// The shared counter.
#[derive(Debug)]
pub struct Sequence {
    id: u64,
    next: AtomicU64,
    /// Bumped by [`Sequence::floor`]: blocks taken before it are dropped.
    epoch: AtomicU64,
}

impl Sequence {
    /// Numbers from `start` (at least 1) on.
    pub fn new(start: u64) -> Sequence {
        Sequence {
            id: COUNTERS.fetch_add(1, Ordering::Relaxed),
            next: AtomicU64::new(start.max(1)),
            epoch: AtomicU64::new(0),
        }
    }

    /// Every number handed out from now on is at least `next`. Meant for start-up, before
    /// traffic: a thread in the middle of taking a block may still finish it below `next`.
    pub fn floor(&self, next: u64) {
        self.next.fetch_max(next, Ordering::Relaxed);
        self.epoch.fetch_add(1, Ordering::Relaxed);
    }

    /// The next number, from this thread's block.
    pub fn next(&self) -> u64 {
        let epoch = self.epoch.load(Ordering::Relaxed);
        BLOCK_OF_THIS_THREAD.with(|cell| {
            let mut b = cell.get();
            if b.counter != self.id || b.epoch != epoch || b.next == b.end {
                let start = self.next.fetch_add(BLOCK, Ordering::Relaxed);
                b = Block {
                    counter: self.id,
                    epoch,
                    next: start,
                    end: start + BLOCK,
                };
            }
            let n = b.next;
            b.next += 1;
            cell.set(b);
            n
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_across_threads_and_counters_and_above_the_floor() {
        let a = Sequence::new(1000);
        let b = Sequence::new(1000);
        assert_eq!((a.next(), a.next(), b.next()), (1000, 1001, 1000));
        a.floor(5000);
        assert_eq!(a.next(), 5000);
        let seen: Vec<u64> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..1000).map(|_| a.next()).collect::<Vec<_>>()))
                .collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        let mut sorted = seen.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 4000);
        assert!(sorted[0] > 5000);
        // Within one thread, increasing.
        assert!(seen[..1000].windows(2).all(|w| w[0] < w[1]));
    }
}
