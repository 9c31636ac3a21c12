//! Decision latency while the directory reloads (issue "Engine", "p99 during reload"): one
//! thread authorizes on the 100k-user synthetic directory and records each call's latency;
//! another reloads a freshly built 100k-user snapshot over and over (`Engine::reload`, what
//! SIGHUP does after parsing the files). Prints the percentiles with and without reloads, in
//! the same run.
//!
//! ```text
//! cargo run --release -p tollgate-benches --example reload_latency
//! ```
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tollgate_benches::directory_gen::{self, dialed, region, upn};
use tollgate_engine::numbering::NumberingPlan;
use tollgate_engine::{Engine, EngineConfig, Request, Snapshot};

const NOW: u64 = 1_795_000_000;
const USERS: usize = 100_000;

/// Authorizes (and releases) for `for_how_long`; the latency of each call, in ns.
fn run(e: &Engine, work: &[(String, &str)], ids: &[String], for_how_long: Duration) -> Vec<u64> {
    let mut lat = Vec::with_capacity(4_000_000);
    let start = Instant::now();
    let mut i = 0;
    while start.elapsed() < for_how_long {
        let (caller, dial) = &work[i % work.len()];
        let id = &ids[i % ids.len()];
        let t = Instant::now();
        let d = e.authorize(
            &Request {
                call_id: id,
                caller,
                dialed: dial,
            },
            NOW,
        );
        lat.push(t.elapsed().as_nanos() as u64);
        if d.grant.is_some() {
            let _ = e.release(id, NOW);
            e.reservations().forget(id);
        }
        i += 1;
    }
    lat
}

fn report(label: &str, mut lat: Vec<u64>) {
    lat.sort_unstable();
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    println!(
        "{label:<16} calls {:>9}  p50 {:>6} ns  p99 {:>7} ns  p99.9 {:>8} ns  max {:>9} ns",
        lat.len(),
        p(0.5),
        p(0.99),
        p(0.999),
        lat[lat.len() - 1]
    );
}

fn main() {
    let secs: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let snap = Snapshot::build(directory_gen::records(USERS)).expect("snapshot");
    let plan = Arc::new(NumberingPlan::builtin().expect("plan"));
    let e = Arc::new(Engine::new(plan, EngineConfig::default(), snap, NOW));
    let work: Vec<(String, &str)> = (0..USERS)
        .step_by(7)
        .flat_map(|i| (0..6).map(move |k| (upn(i), dialed(region(i), k + i))))
        .collect();
    let ids: Vec<String> = (0..1024).map(|i| format!("call-{i}@bench")).collect();
    let window = Duration::from_secs(secs);

    report("quiet", run(&e, &work, &ids, window));

    let stop = Arc::new(AtomicBool::new(false));
    let reloads = Arc::new(AtomicUsize::new(0));
    let reloader = {
        let (e, stop, reloads) = (Arc::clone(&e), Arc::clone(&stop), Arc::clone(&reloads));
        std::thread::spawn(move || {
            let mut swap_max = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                let snap = Snapshot::build(directory_gen::records(USERS)).expect("snapshot");
                let t = Instant::now();
                e.reload(snap);
                swap_max = swap_max.max(t.elapsed());
                reloads.fetch_add(1, Ordering::Relaxed);
            }
            swap_max
        })
    };
    let lat = run(&e, &work, &ids, window);
    stop.store(true, Ordering::Relaxed);
    let swap_max = reloader.join().expect("reloader");
    report("during reloads", lat);
    println!(
        "reloads: {} in {secs} s (each builds a {USERS}-user snapshot, then swaps); slowest swap {:?}",
        reloads.load(Ordering::Relaxed),
        swap_max
    );
}
