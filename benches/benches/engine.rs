//! Criterion benches of the engine (issue 3): `authorize` end to end (classify + directory
//! lookup + pool reservation) on a 100k-user synthetic directory with mixed destinations, on one
//! and two threads; and, measured once (not by criterion: each run takes seconds), building a
//! 1M-user snapshot, its resident memory, and decisions flowing while it is swapped in.
//!
//! `cargo bench -p tollgate-benches --bench engine`

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tollgate_benches::directory_gen::{self, dialed, region, upn};
use tollgate_engine::numbering::NumberingPlan;
use tollgate_engine::{Engine, EngineConfig, Request, Snapshot};

const NOW: u64 = 1_795_000_000;
const USERS: usize = 100_000;

/// (caller, dialed) pairs: every 7th user, six destinations each.
fn workload() -> Vec<(String, &'static str)> {
    (0..USERS)
        .step_by(7)
        .flat_map(|i| (0..6).map(move |k| (upn(i), dialed(region(i), k + i))))
        .collect()
}

fn engine(users: usize) -> Engine {
    let snap = Snapshot::build(directory_gen::records(users)).expect("snapshot");
    let plan = Arc::new(NumberingPlan::builtin().expect("plan"));
    Engine::new(plan, EngineConfig::default(), snap, NOW)
}

/// One admitted-and-released call: classify, lookup, rules, reservation, Call-ID map, release.
fn one_call(e: &Engine, call_id: &str, caller: &str, dial: &str) {
    let d = e.authorize(
        &Request {
            call_id,
            caller,
            dialed: dial,
        },
        NOW,
    );
    if d.grant.is_some() {
        let _ = e.release(call_id, NOW);
        e.reservations().forget(call_id);
    }
    black_box(d);
}

fn authorize(c: &mut Criterion) {
    let e = engine(USERS);
    let work = workload();
    let ids: Vec<String> = (0..4096).map(|i| format!("call-{i}@bench")).collect();
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decide_dry_run_100k", |b| {
        let mut i = 0;
        b.iter(|| {
            let (caller, dial) = &work[i % work.len()];
            i += 1;
            black_box(e.decide(caller, dial, NOW))
        })
    });
    g.bench_function("authorize_release_100k", |b| {
        let mut i = 0;
        b.iter(|| {
            let (caller, dial) = &work[i % work.len()];
            one_call(&e, &ids[i % ids.len()], caller, dial);
            i += 1;
        })
    });
    // Only the authorize calls are timed: batches of 1024 admissions, then (untimed) their
    // release, so the Call-ID map stays small.
    g.bench_function("authorize_100k", |b| {
        let mut i = 0;
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            let mut left = iters as usize;
            while left > 0 {
                let n = left.min(ids.len());
                let start = Instant::now();
                for id in &ids[..n] {
                    let (caller, dial) = &work[i % work.len()];
                    i += 1;
                    black_box(e.authorize(
                        &Request {
                            call_id: id,
                            caller,
                            dialed: dial,
                        },
                        NOW,
                    ));
                }
                spent += start.elapsed();
                for id in &ids[..n] {
                    let _ = e.release(id, NOW);
                    e.reservations().forget(id);
                }
                left -= n;
            }
            spent
        })
    });
    for threads in [1usize, 2] {
        g.bench_function(format!("authorize_release_100k_{threads}_threads"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                std::thread::scope(|s| {
                    for t in 0..threads {
                        let (e, work) = (&e, &work);
                        s.spawn(move || {
                            let ids: Vec<String> =
                                (0..1024).map(|i| format!("call-{t}-{i}@bench")).collect();
                            // Each thread walks the workload from its own offset, as two
                            // UDP workers take calls from different callers; interleaved,
                            // both threads would place the same user's six calls at the same
                            // moment, every time (its pool counter and reference counts
                            // bouncing between the cores), which a 100k-user directory makes
                            // rare.
                            let start = t * work.len() / threads;
                            for i in 0..iters as usize / threads {
                                let (caller, dial) = &work[(start + i) % work.len()];
                                one_call(e, &ids[i % ids.len()], caller, dial);
                            }
                        });
                    }
                });
                start.elapsed()
            })
        });
    }
    g.finish();
}

/// A `/proc/self/status` figure in KiB (`VmRSS`, `VmHWM`), 0 where unavailable.
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Build a 1M-user snapshot (from records, and from CSV text), report time and memory, then
/// swap it into a running engine while another thread keeps deciding.
fn snapshot_1m(_c: &mut Criterion) {
    const N: usize = 1_000_000;
    // From files, as the daemon loads it (users.csv streamed row by row).
    let dir = std::env::temp_dir().join(format!("tollgate-bench-{}", std::process::id()));
    directory_gen::write_dir(&dir, N).expect("write directory");
    let rss0 = status_kib("VmRSS:");
    let t = Instant::now();
    let snap = tollgate::directory::load(&dir).expect("snapshot");
    let load = t.elapsed();
    println!(
        "snapshot_1m/load_from_files: {:.2} s; RSS before {} MiB, after {} MiB, peak {} MiB",
        load.as_secs_f64(),
        rss0 / 1024,
        status_kib("VmRSS:") / 1024,
        status_kib("VmHWM:") / 1024
    );
    let _ = std::fs::remove_dir_all(&dir);
    // From records already in memory (the records themselves take ~350 MB).
    let rec = directory_gen::records(N);
    let t = Instant::now();
    drop(Snapshot::build(rec).expect("snapshot"));
    println!(
        "snapshot_1m/build_from_records: {:.2} s",
        t.elapsed().as_secs_f64()
    );

    // Decisions keep flowing during the swap.
    let e = engine(USERS);
    let work = workload();
    let stop = AtomicBool::new(false);
    let max_ns = AtomicU64::new(0);
    let slow = AtomicU64::new(0);
    let count = AtomicU64::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let (caller, dial) = &work[i % work.len()];
                let t = Instant::now();
                black_box(e.decide(caller, dial, NOW));
                let ns = t.elapsed().as_nanos() as u64;
                max_ns.fetch_max(ns, Ordering::Relaxed);
                if ns > 100_000 {
                    slow.fetch_add(1, Ordering::Relaxed);
                }
                count.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        });
        std::thread::sleep(Duration::from_millis(50));
        let before = count.load(Ordering::Relaxed);
        let t = Instant::now();
        e.reload(snap);
        let swap = t.elapsed();
        let during = count.load(Ordering::Relaxed) - before;
        std::thread::sleep(Duration::from_millis(50));
        stop.store(true, Ordering::Relaxed);
        println!(
            "snapshot_1m/swap: reload took {:.1} ms; {during} decisions meanwhile; \
             slowest decision {:.1} µs; {} of {} decisions over 100 µs",
            swap.as_secs_f64() * 1e3,
            max_ns.load(Ordering::Relaxed) as f64 / 1e3,
            slow.load(Ordering::Relaxed),
            count.load(Ordering::Relaxed)
        );
    });
}

criterion_group!(benches, authorize, snapshot_1m);
criterion_main!(benches);
