//! Prints how long the numbering plan takes to compile and how much memory its automata hold.
//! `cargo run --release -p tollgate-engine --example plan_stats`
fn main() {
    let t = std::time::Instant::now();
    let plan = match tollgate_engine::numbering::NumberingPlan::builtin() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    println!(
        "compiled in {:.1} ms; automata {:.2} MB",
        t.elapsed().as_secs_f64() * 1e3,
        plan.memory_usage() as f64 / 1e6
    );
}
