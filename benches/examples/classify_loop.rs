//! Classifies the mixed workload (or one dialed string) in a loop, for profilers and
//! instruction counts, which are steadier than time on a shared machine:
//!
//! ```text
//! cargo build --release -p tollgate-benches --example classify_loop
//! valgrind --tool=callgrind target/release/examples/classify_loop mixed 100000
//! target/release/examples/classify_loop +442079460000 1000000 US
//! ```
use tollgate_benches::workload;
use tollgate_engine::numbering::{NumberingPlan, Region};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let what = args.get(1).map(String::as_str).unwrap_or("mixed");
    let n: usize = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let dials = match what {
        "mixed" => workload::mixed(4096),
        dialed => vec![workload::Dial {
            dialed: dialed.to_owned(),
            caller: Region::new(args.get(3).map(String::as_str).unwrap_or("US")).expect("region"),
        }],
    };
    let plan = NumberingPlan::builtin().expect("plan");
    let t = std::time::Instant::now();
    let mut ok = 0;
    for i in 0..n {
        let d = &dials[i % dials.len()];
        ok += plan
            .classify(std::hint::black_box(&d.dialed), d.caller)
            .is_ok() as usize;
    }
    let per = t.elapsed().as_nanos() as f64 / n.max(1) as f64;
    println!("{what}: {per:.1} ns/classify ({ok} of {n} ok)");
}
