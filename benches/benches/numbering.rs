//! Criterion benches of `NumberingPlan::classify` (issue 2).
use criterion::{criterion_group, criterion_main, Criterion};

fn classify(c: &mut Criterion) {
    let plan = tollgate_engine::numbering::NumberingPlan::builtin().expect("plan");
    let gb = tollgate_engine::numbering::Region::new("GB").expect("GB");
    c.bench_function("classify/gb", |b| {
        b.iter(|| plan.classify(std::hint::black_box("+442079460000"), gb))
    });
}

criterion_group!(benches, classify);
criterion_main!(benches);
