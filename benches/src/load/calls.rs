//! The calls of one worker thread and their timers (RFC 3261 §17.1.1.2, INVITE client
//! transaction): Timer A retransmits an unanswered INVITE over UDP after 500 ms, then 1 s, 2 s,
//! ... (doubling, no cap for INVITE); Timer B gives up after the timeout (64·T1 = 32 s).
//!
//! Worker `w` of `n` owns the global call indexes `w, w + n, w + 2n, ...`; its calls live in a
//! `Vec` at `index / n`, so a response is matched by an array index, not a map. Timers are FIFO
//! queues, not a heap: every call enters the Timer A queue of level `k` with the same delay
//! `T1·2^k` and the single Timer B queue with the same timeout, so each queue is already in
//! due order and the loop only ever looks at its head.

use std::collections::VecDeque;

use super::stats::Totals;

/// T1, µs.
pub const T1_US: u64 = 500_000;
/// Retransmission levels kept (500 ms .. 16 s: six retransmissions fit into 32 s).
const LEVELS: usize = 6;

/// One call: when its INVITE was first sent and what it got.
#[derive(Clone, Copy, Debug)]
struct Call {
    sent_us: u64,
    /// 0 while pending; the final status; [`TIMED_OUT`] after Timer B.
    status: u16,
}

const TIMED_OUT: u16 = u16::MAX;

/// What a response means for its call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Matched {
    /// The first final response: ACK it.
    Final,
    /// A final response again (the daemon retransmits it when our INVITE is retransmitted),
    /// or after Timer B: ACK it again (RFC 3261 §17.1.1.2), count it once.
    Repeat,
    /// 1xx: nothing to do.
    Provisional,
    /// Not a call of this worker.
    Unknown,
}

/// The calls of one worker.
pub struct Book {
    worker: u64,
    workers: u64,
    calls: Vec<Call>,
    outstanding: usize,
    retransmit: bool,
    timeout_us: u64,
    /// `(due µs, local index)` per Timer A level.
    timer_a: [VecDeque<(u64, u32)>; LEVELS],
    /// `(due µs, local index)`.
    timer_b: VecDeque<(u64, u32)>,
    pub totals: Totals,
}

impl Book {
    pub fn new(worker: usize, workers: usize, retransmit: bool, timeout_us: u64) -> Book {
        Book {
            worker: worker as u64,
            workers: workers.max(1) as u64,
            calls: Vec::with_capacity(1 << 16),
            outstanding: 0,
            retransmit,
            timeout_us,
            timer_a: Default::default(),
            timer_b: VecDeque::with_capacity(1 << 16),
            totals: Totals::default(),
        }
    }

    /// Calls started so far.
    pub fn started(&self) -> u64 {
        self.calls.len() as u64
    }

    /// Calls with neither a final response nor a timeout.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// The global index the next call will have.
    pub fn next_index(&self) -> u64 {
        self.calls.len() as u64 * self.workers + self.worker
    }

    /// Starts the next call (its INVITE is sent at `now_us`); returns its global index.
    pub fn start(&mut self, now_us: u64) -> u64 {
        let index = self.next_index();
        let local = self.calls.len() as u32;
        self.calls.push(Call {
            sent_us: now_us,
            status: 0,
        });
        self.outstanding += 1;
        self.totals.sent += 1;
        if self.retransmit {
            self.timer_a[0].push_back((now_us + T1_US, local));
        }
        self.timer_b.push_back((now_us + self.timeout_us, local));
        index
    }

    /// A response with `status` for global call `index` at `now_us`.
    pub fn respond(&mut self, index: u64, status: u16, now_us: u64) -> Matched {
        if index % self.workers != self.worker {
            return Matched::Unknown;
        }
        let Some(call) = self.calls.get_mut((index / self.workers) as usize) else {
            return Matched::Unknown;
        };
        if status < 200 {
            self.totals.provisional += 1;
            return Matched::Provisional;
        }
        if call.status != 0 {
            self.totals.late_or_duplicate += 1;
            return Matched::Repeat;
        }
        call.status = status;
        self.outstanding -= 1;
        let latency = now_us.saturating_sub(call.sent_us);
        self.totals.answer(status, latency);
        Matched::Final
    }

    /// Calls `resend(global index)` for each INVITE due for retransmission at `now_us`, and
    /// times out the calls past Timer B.
    pub fn tick(&mut self, now_us: u64, mut resend: impl FnMut(u64)) {
        for level in 0..LEVELS {
            while let Some(&(due, local)) = self.timer_a[level].front() {
                if due > now_us {
                    break;
                }
                self.timer_a[level].pop_front();
                let pending = self
                    .calls
                    .get(local as usize)
                    .is_some_and(|c| c.status == 0);
                if !pending {
                    continue;
                }
                self.totals.retransmissions += 1;
                resend(u64::from(local) * self.workers + self.worker);
                if let Some(next) = self.timer_a.get_mut(level + 1) {
                    next.push_back((now_us + (T1_US << (level + 1)), local));
                }
            }
        }
        while let Some(&(due, local)) = self.timer_b.front() {
            if due > now_us {
                break;
            }
            self.timer_b.pop_front();
            if let Some(c) = self.calls.get_mut(local as usize) {
                if c.status == 0 {
                    c.status = TIMED_OUT;
                    self.outstanding -= 1;
                    self.totals.timeouts += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_retransmissions_and_timeouts() {
        let mut b = Book::new(1, 2, true, 32 * T1_US * 2);
        assert_eq!(b.start(0), 1);
        assert_eq!(b.start(10), 3);
        assert_eq!(b.outstanding(), 2);
        assert_eq!(b.respond(3, 100, 20), Matched::Provisional);
        assert_eq!(b.respond(3, 302, 30), Matched::Final);
        assert_eq!(b.respond(3, 302, 40), Matched::Repeat);
        assert_eq!(b.respond(2, 302, 40), Matched::Unknown);
        assert_eq!(b.respond(5, 302, 40), Matched::Unknown);
        assert_eq!(b.outstanding(), 1);
        let mut resent = Vec::new();
        for t in (0..40_000_000).step_by(100_000) {
            b.tick(t, |i| resent.push((i, t)));
        }
        // 500 ms, 1.5 s, 3.5 s, 7.5 s, 15.5 s, 31.5 s after the start.
        let at: Vec<u64> = resent.iter().map(|r| r.1).collect();
        assert_eq!(
            at,
            [500_000, 1_500_000, 3_500_000, 7_500_000, 15_500_000, 31_500_000]
        );
        assert!(resent.iter().all(|r| r.0 == 1));
        assert_eq!(b.outstanding(), 0);
        assert_eq!(b.totals.timeouts, 1);
        assert_eq!(b.totals.retransmissions, 6);
        assert_eq!(b.totals.answered, 1);
        assert_eq!(b.totals.by_status[302], 1);
        assert_eq!(b.respond(1, 503, 40_000_000), Matched::Repeat);
    }

    #[test]
    fn no_retransmit() {
        let mut b = Book::new(0, 1, false, 1000);
        b.start(0);
        let mut n = 0;
        b.tick(5000, |_| n += 1);
        assert_eq!((n, b.totals.timeouts, b.outstanding()), (0, 1, 0));
    }
}
