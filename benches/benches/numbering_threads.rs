//! Thread scaling of `classify` (issue 2: two threads ≥ 1.8× one thread's throughput, since
//! nothing shared is written). Runs the mixed workload for a fixed time on one thread, then on
//! two, in the same run, and prints both throughputs and their ratio.
//!
//! `cargo bench -p tollgate-benches --bench numbering_threads`

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tollgate_benches::workload;
use tollgate_engine::numbering::NumberingPlan;

fn throughput(
    plan: &NumberingPlan,
    dials: &[workload::Dial],
    threads: usize,
    for_: Duration,
) -> f64 {
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let total: u64 = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let stop = &stop;
                s.spawn(move || {
                    let mut n = 0u64;
                    let mut i = t * 997;
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..256 {
                            let d = &dials[i % dials.len()];
                            std::hint::black_box(plan.classify(&d.dialed, d.caller).is_ok());
                            i += 1;
                        }
                        n += 256;
                    }
                    n
                })
            })
            .collect();
        std::thread::sleep(for_);
        stop.store(true, Ordering::Relaxed);
        workers.into_iter().map(|w| w.join().unwrap_or(0)).sum()
    });
    total as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too: keep it short then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let plan = NumberingPlan::builtin().expect("plan");
    let dials = workload::mixed(4096);
    let secs = Duration::from_millis(if quick { 50 } else { 3000 });
    // Alternate 1 and 2 threads a few times so a noisy neighbour hits both alike.
    let rounds = if quick { 1 } else { 3 };
    let (mut one, mut two) = (0.0, 0.0);
    for _ in 0..rounds {
        one += throughput(&plan, &dials, 1, secs);
        two += throughput(&plan, &dials, 2, secs);
    }
    let (one, two) = (one / rounds as f64, two / rounds as f64);
    println!(
        "classify mixed: 1 thread {:.2} M/s, 2 threads {:.2} M/s, ratio {:.2}x",
        one / 1e6,
        two / 1e6,
        two / one
    );
}
