//! `Engine::authorize` on the 100k-user synthetic directory in a loop (admit, then release),
//! for callgrind/perf: instruction counts are steadier than time on a shared machine.
//!
//! ```text
//! cargo build --release -p tollgate-benches --example authorize_loop
//! valgrind --tool=callgrind --toggle-collect='tollgate_engine::engine::Engine::authorize' \
//!     target/release/examples/authorize_loop 100000
//! target/release/examples/authorize_loop 1000000 teams   # dial plans and voice routing in use
//! target/release/examples/authorize_loop 1000000 plans   # dial plans only (`routing`: policies only)
//! ```
//!
//! With `teams`, the directory is `directory_gen::files_with_teams`: every user has a dial plan
//! of five rules, one in five routes by a voice routing policy; the calls are the same.
use std::sync::Arc;

use tollgate_benches::directory_gen::{self, dialed, region, upn};
use tollgate_engine::numbering::NumberingPlan;
use tollgate_engine::{Engine, EngineConfig, Request, Snapshot};

const NOW: u64 = 1_795_000_000;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let mode = std::env::args().nth(2).unwrap_or_default();
    let (plans, routing) = match mode.as_str() {
        "teams" => (true, true),
        "plans" => (true, false),
        "routing" => (false, true),
        _ => (false, false),
    };
    let snap = if plans || routing {
        Snapshot::from_files(directory_gen::files_with_teams(100_000, plans, routing))
            .expect("snapshot")
    } else {
        Snapshot::build(directory_gen::records(100_000)).expect("snapshot")
    };
    let plan = Arc::new(NumberingPlan::builtin().expect("plan"));
    let e = Engine::new(plan, EngineConfig::default(), snap, NOW);
    let work: Vec<(String, &str)> = (0..100_000)
        .step_by(7)
        .flat_map(|i| (0..6).map(move |k| (upn(i), dialed(region(i), k + i))))
        .collect();
    let ids: Vec<String> = (0..1024).map(|i| format!("call-{i}@bench")).collect();
    let t = std::time::Instant::now();
    let mut admitted = 0;
    for i in 0..n {
        let (caller, dial) = &work[i % work.len()];
        let id = &ids[i % ids.len()];
        let d = e.authorize(
            &Request {
                call_id: id,
                caller,
                dialed: dial,
            },
            NOW,
        );
        if d.grant.is_some() {
            admitted += 1;
            let _ = e.release(id, NOW);
            e.reservations().forget(id);
        }
    }
    let per = t.elapsed().as_nanos() as f64 / n.max(1) as f64;
    println!("authorize+release: {per:.0} ns/call ({admitted} of {n} admitted)");
}
