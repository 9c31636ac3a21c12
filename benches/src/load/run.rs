//! A whole run: opens the sockets, starts one worker thread per socket (plain std threads:
//! each loop is a poll-style loop on one nonblocking socket, see [`super::worker`]), prints a
//! progress line on stderr once a second, and returns the merged totals.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::calls::Book;
use super::invite::{Renderer, Via};
use super::mix::Mix;
use super::stats::Totals;
use super::wire::{TcpWire, UdpWire};
use super::worker::{self, Pace, Share, Shared};

/// What to run.
#[derive(Clone, Debug)]
pub struct Plan {
    pub target: SocketAddr,
    pub transport: Via,
    /// UDP sockets or TCP connections, one thread each.
    pub workers: usize,
    /// Calls/s in total, or `None` for closed loop.
    pub rate: Option<f64>,
    /// Closed loop: calls outstanding in total.
    pub concurrency: usize,
    /// New calls stop after this long...
    pub duration: Duration,
    /// ... or after this many calls in total.
    pub calls: Option<u64>,
    pub timeout: Duration,
    pub retransmit: bool,
    pub sdp: bool,
    /// UDP: batch sends and receives with `sendmmsg`/`recvmmsg`.
    pub mmsg: bool,
    /// Keeps the Call-IDs of two runs against one daemon apart.
    pub run_id: u32,
    /// Print the progress line.
    pub progress: bool,
}

/// What a run measured.
pub struct Outcome {
    pub totals: Totals,
    /// From the start to the last worker's last new call, seconds.
    pub send_secs: f64,
    /// From the start to the last final response, seconds.
    pub answer_secs: f64,
    /// The whole run, the wait for the last answers and timeouts included, seconds.
    pub total_secs: f64,
    /// Whether a socket failed for good during the run.
    pub failed: bool,
}

/// Runs `plan` with callers and numbers from `mix`.
pub fn run(plan: &Plan, mix: Arc<Mix>) -> anyhow::Result<Outcome> {
    let workers = plan.workers.max(1);
    let shared = Arc::new(Shared {
        start: Instant::now(),
        start_wall_ns: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
        totals: Mutex::new(Totals::default()),
        failed: AtomicBool::new(false),
        last_answer_us: AtomicU64::new(0),
        send_end_us: AtomicU64::new(0),
    });
    let send_until_us = plan.duration.as_micros() as u64;
    let timeout_us = plan.timeout.as_micros() as u64;
    let mut threads = Vec::with_capacity(workers);
    for w in 0..workers {
        let pace = match plan.rate {
            Some(r) => Pace::Rate(r / workers as f64),
            None => Pace::Closed(plan.concurrency.div_ceil(workers).max(1)),
        };
        let max_calls = match plan.calls {
            // Worker w owns the indexes w, w + n, ...: those below `calls`.
            Some(n) => (n + (workers - w - 1) as u64) / workers as u64,
            None => u64::MAX,
        };
        let share = Share {
            pace,
            send_until_us,
            max_calls,
        };
        let retransmit = plan.retransmit && plan.transport == Via::Udp;
        let mut book = Book::new(w, workers, retransmit, timeout_us);
        let (mix, shared) = (Arc::clone(&mix), Arc::clone(&shared));
        let name = format!("load-{w}");
        let t = match plan.transport {
            Via::Udp => {
                let mut wire = UdpWire::connect(plan.target, plan.mmsg)
                    .with_context(|| format!("udp socket to {}", plan.target))?;
                let local = wire.local_addr()?.to_string();
                let renderer = Renderer::new(plan.run_id, Via::Udp, &local, plan.sdp);
                std::thread::Builder::new().name(name).spawn(move || {
                    worker::run(&mut wire, &renderer, &mix, &mut book, share, &shared);
                })?
            }
            Via::Tcp => {
                let mut wire = TcpWire::connect(plan.target)
                    .with_context(|| format!("tcp connection to {}", plan.target))?;
                let local = wire.local_addr()?.to_string();
                let renderer = Renderer::new(plan.run_id, Via::Tcp, &local, plan.sdp);
                std::thread::Builder::new().name(name).spawn(move || {
                    worker::run(&mut wire, &renderer, &mix, &mut book, share, &shared);
                })?
            }
        };
        threads.push(t);
    }
    progress_until_done(&shared, &threads, plan.progress);
    for t in threads {
        if t.join().is_err() {
            anyhow::bail!("a load worker panicked");
        }
    }
    let totals = shared
        .totals
        .lock()
        .map_err(|_| anyhow::anyhow!("totals lock poisoned"))?
        .clone();
    Ok(Outcome {
        totals,
        send_secs: shared.send_end_us.load(Ordering::Relaxed) as f64 / 1e6,
        answer_secs: shared.last_answer_us.load(Ordering::Relaxed) as f64 / 1e6,
        total_secs: shared.start.elapsed().as_secs_f64(),
        failed: shared.failed.load(Ordering::Relaxed),
    })
}

/// Waits for the workers, printing once a second: elapsed, calls sent, answered, the answer
/// rate of the last second, outstanding calls and p99 so far.
fn progress_until_done(shared: &Shared, threads: &[std::thread::JoinHandle<()>], print: bool) {
    let mut next = Duration::from_secs(1);
    let mut prev_answered = 0;
    // `is_finished` rather than a counter: a worker that panics ends the wait too.
    while threads.iter().any(|t| !t.is_finished()) {
        std::thread::sleep(Duration::from_millis(20));
        let elapsed = shared.start.elapsed();
        if elapsed < next {
            continue;
        }
        next += Duration::from_secs(1);
        if !print {
            continue;
        }
        let Ok(t) = shared.totals.lock() else { return };
        let p99 = t.latency.value_at_quantile(0.99) as f64 / 1000.0;
        eprintln!(
            "[{:>5.1}s] sent {} answered {} ({}/s) outstanding {} retrans {} timeouts {} p99 {p99:.2} ms",
            elapsed.as_secs_f64(),
            t.sent,
            t.answered,
            t.answered - prev_answered,
            t.sent.saturating_sub(t.answered + t.timeouts),
            t.retransmissions,
            t.timeouts,
        );
        prev_answered = t.answered;
    }
}
