//! One worker thread: sends the calls of its share on schedule, reads the responses, ACKs
//! every final response, retransmits and times out (through [`Book`]), all on one socket in
//! one loop.
//!
//! Pacing: open loop (`--rate R`) sends, at each turn of the loop, every call due by now at
//! `R / workers` calls/s, so the sender keeps to its schedule whatever the daemon does (a slow
//! daemon shows as latency and timeouts, not as a slower offer — no coordinated omission). The
//! loop sleeps in `poll(2)` for at most 1 ms when there is nothing to do, so calls go out in
//! 1 ms slices. Closed loop (`--rate max`) keeps `C / workers` calls outstanding.
//!
//! No allocation per message: the INVITE and ACK buffers are reused, and a response is parsed
//! in place.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use super::calls::{Book, Matched};
use super::invite::Renderer;
use super::mix::Mix;
use super::response;
use super::stats::Totals;
use super::wire::{self, Wire};

/// Calls sent at most per turn of the loop before reading again.
const BURST: u64 = 512;
/// Messages read at most per turn of the loop before sending again.
const RECV_BATCH: usize = 1024;
/// The pacing slice, µs.
const SLICE_US: u64 = 1000;
/// How often a worker adds its counts to the shared totals, µs.
const PUBLISH_US: u64 = 50_000;

/// How calls are offered.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pace {
    /// Open loop at this many calls/s (this worker's share).
    Rate(f64),
    /// Closed loop: this many calls outstanding (this worker's share).
    Closed(usize),
}

/// What one worker does.
#[derive(Clone, Copy, Debug)]
pub struct Share {
    pub pace: Pace,
    /// New calls stop at this time (µs since the run's start)...
    pub send_until_us: u64,
    /// ... or after this many calls.
    pub max_calls: u64,
}

/// What all workers share: the run's clock, the totals, the stop flag.
pub struct Shared {
    pub start: Instant,
    /// The wall clock at `start`, ns since the epoch (to place kernel receive times).
    pub start_wall_ns: u64,
    pub totals: Mutex<Totals>,
    /// Set when a worker's socket failed for good (its error is printed).
    pub failed: AtomicBool,
    /// Latest final response (µs since start), for the achieved rate.
    pub last_answer_us: std::sync::atomic::AtomicU64,
    /// When the last worker stopped sending (µs since start).
    pub send_end_us: std::sync::atomic::AtomicU64,
}

impl Shared {
    pub fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// A kernel receive time (ns since the epoch) as µs since the start. Never before the
    /// start; the caller's latency saturates at zero if the clocks disagree by a little.
    pub fn at_us(&self, wall_ns: u64) -> u64 {
        wall_ns.saturating_sub(self.start_wall_ns) / 1000
    }

    fn publish(&self, totals: &mut Totals) {
        if let Ok(mut t) = self.totals.lock() {
            t.add(totals);
        }
        totals.reset();
    }
}

/// Runs one worker to the end: sending stops per `share`, then the loop waits for the last
/// answers or timeouts.
pub fn run(
    wire: &mut impl Wire,
    renderer: &Renderer,
    mix: &Mix,
    book: &mut Book,
    share: Share,
    shared: &Shared,
) {
    let mut invite = Vec::with_capacity(2048);
    let mut ack = Vec::with_capacity(2048);
    let mut last_publish = 0;
    let mut last_answer = 0;
    let mut dead = false;
    let mut sending = true;
    loop {
        let now = shared.now_us();
        let mut busy = false;

        if sending && (now >= share.send_until_us || book.started() >= share.max_calls || dead) {
            sending = false;
            shared.send_end_us.fetch_max(now, Ordering::Relaxed);
        }
        if sending {
            let due = match share.pace {
                Pace::Rate(r) => {
                    let target = ((now as f64) * r / 1e6) as u64;
                    target.min(share.max_calls).saturating_sub(book.started())
                }
                Pace::Closed(c) => {
                    c.saturating_sub(book.outstanding())
                        .min((share.max_calls - book.started()) as usize) as u64
                }
            };
            for _ in 0..due.min(BURST) {
                if wire.backlogged() {
                    break;
                }
                let index = book.start(now);
                let (caller, dial) = mix.pick(index);
                renderer.invite(&mut invite, index, caller, dial);
                if wire.send(&invite).is_err() {
                    book.totals.send_errors += 1;
                }
                busy = true;
            }
        }

        flush(wire, book, shared, &mut dead);

        for _ in 0..RECV_BATCH {
            if dead {
                break;
            }
            // Parse and write the ACK while the message is borrowed; send after.
            let ack_ready = match wire.recv() {
                Ok(Some((msg, received))) => {
                    busy = true;
                    let now = received.map_or_else(|| shared.now_us(), |ns| shared.at_us(ns));
                    let answered = book.totals.answered;
                    let ready = handle(msg, renderer, mix, book, &mut ack, now, &mut last_answer);
                    if sending && book.totals.answered > answered {
                        book.totals.answered_while_sending += 1;
                    }
                    ready
                }
                Ok(None) => break,
                Err(e) => {
                    if e.kind() == std::io::ErrorKind::ConnectionRefused {
                        // UDP: an ICMP error of an earlier send (nothing listens): the calls
                        // will time out; keep going.
                        book.totals.send_errors += 1;
                        break;
                    }
                    fail(shared, &mut dead, "receive", &e);
                    break;
                }
            };
            if ack_ready {
                book.totals.acks += 1;
                if wire.send(&ack).is_err() {
                    book.totals.send_errors += 1;
                }
            }
        }

        let mut resend_errors = 0;
        book.tick(now, |index| {
            let (caller, dial) = mix.pick(index);
            renderer.invite(&mut invite, index, caller, dial);
            if wire.send(&invite).is_err() {
                resend_errors += 1;
            }
        });
        book.totals.send_errors += resend_errors;
        flush(wire, book, shared, &mut dead);

        if now - last_publish >= PUBLISH_US {
            shared.publish(&mut book.totals);
            shared
                .last_answer_us
                .fetch_max(last_answer, Ordering::Relaxed);
            last_publish = now;
        }
        if !sending && book.outstanding() == 0 {
            break;
        }
        if wire.timestamps() {
            // Sleep to the next 1 ms slice; responses wait in the socket buffer, stamped.
            let next = (now / SLICE_US + 1) * SLICE_US;
            let left = next.saturating_sub(shared.now_us());
            if left > 0 {
                std::thread::sleep(std::time::Duration::from_micros(left));
            }
        } else if !busy {
            wire::wait(wire, 1);
        }
    }
    flush(wire, book, shared, &mut dead);
    shared.publish(&mut book.totals);
    shared
        .last_answer_us
        .fetch_max(last_answer, Ordering::Relaxed);
}

/// One received message: counts it; returns `true` when `ack` holds an ACK to send.
fn handle(
    msg: &[u8],
    renderer: &Renderer,
    mix: &Mix,
    book: &mut Book,
    ack: &mut Vec<u8>,
    now: u64,
    last_answer: &mut u64,
) -> bool {
    let Some(r) = response::parse(msg) else {
        book.totals.unmatched += 1;
        return false;
    };
    let index = match response::call_index(r.call_id, renderer.call_id_prefix()) {
        Some(i) if r.cseq_method == b"INVITE" => i,
        _ => {
            book.totals.unmatched += 1;
            return false;
        }
    };
    match book.respond(index, r.status, now) {
        Matched::Final | Matched::Repeat => {
            *last_answer = now;
            let (caller, dial) = mix.pick(index);
            renderer.ack(ack, index, caller, dial, r.to);
            // A 2xx is ACKed end to end by the UAC core, not the transaction (§13.2.2.4);
            // the daemon never sends one, and the load sends no ACK for it.
            r.status >= 300
        }
        Matched::Provisional => false,
        Matched::Unknown => {
            book.totals.unmatched += 1;
            false
        }
    }
}

/// Sends what `wire` queued; counts dropped messages; a failed connection is `dead`.
fn flush(wire: &mut impl Wire, book: &mut Book, shared: &Shared, dead: &mut bool) {
    if *dead {
        return;
    }
    match wire.flush() {
        Ok(dropped) => book.totals.send_errors += dropped,
        Err(e) => fail(shared, dead, "send", &e),
    }
}

fn fail(shared: &Shared, dead: &mut bool, what: &str, e: &std::io::Error) {
    if !*dead {
        eprintln!("tollgate-load: {what}: {e}; this connection stops (its calls time out)");
        shared.failed.store(true, Ordering::Relaxed);
    }
    *dead = true;
}
