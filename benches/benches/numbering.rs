//! Criterion benches of `NumberingPlan::classify` (issue 2), side by side with the
//! `phonenumber` crate doing the same work (parse, validate, region, type) on the same inputs
//! with the same metadata, in the same run.
//!
//! `cargo bench -p tollgate-benches --bench numbering`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tollgate_benches::workload;
use tollgate_engine::numbering::{metadata, NumberingPlan};

fn classify(c: &mut Criterion) {
    let plan = NumberingPlan::builtin().expect("plan");
    // A power of two, so that picking the next input is a mask, not a division (the division
    // cost ~10 ns per iteration, charged to both sides).
    const N: usize = 4096;
    let dials = workload::mixed(N);
    let mut group = c.benchmark_group("classify");
    group.throughput(Throughput::Elements(1));

    let mut i = 0;
    group.bench_function("tollgate", |b| {
        b.iter(|| {
            let d = &dials[i & (N - 1)];
            i += 1;
            black_box(plan.classify(black_box(&d.dialed), d.caller)).ok()
        })
    });

    let db = phonenumber::metadata::Database::parse(metadata::PHONE_NUMBER_METADATA)
        .expect("phonenumber loads the metadata");
    let ids: Vec<Option<phonenumber::country::Id>> = dials
        .iter()
        .map(|d| d.caller.as_str().parse().ok())
        .collect();
    let mut i = 0;
    group.bench_function("phonenumber_crate", |b| {
        b.iter(|| {
            let k = i & (N - 1);
            i += 1;
            let n = phonenumber::parse_with(&db, ids[k], black_box(&dials[k].dialed)).ok()?;
            let valid = n.is_valid_with(&db);
            let region = n.metadata(&db).map(|m| m.id().len());
            Some((valid, region, n.number_type(&db)))
        })
    });
    group.finish();

    c.bench_function("plan/compile", |b| {
        b.iter(|| NumberingPlan::builtin().expect("plan"))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = classify, single
}
criterion_main!(benches);

fn single(c: &mut Criterion) {
    let plan = NumberingPlan::builtin().expect("plan");
    let mut group = c.benchmark_group("classify_one");
    for (name, dialed, caller) in [
        ("e164_gb", "+442079460000", "US"),
        ("e164_us", "+12125550100", "GB"),
        ("national_gb", "020 7946 0000", "GB"),
        ("idd_de", "0044 20 7946 0000", "DE"),
        ("emergency_us", "911", "US"),
    ] {
        let caller = tollgate_engine::numbering::Region::new(caller).expect("region");
        group.bench_function(name, |b| {
            b.iter(|| black_box(plan.classify(black_box(dialed), caller)).ok())
        });
    }
    group.finish();
}
