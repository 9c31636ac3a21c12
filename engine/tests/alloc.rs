//! `classify` allocates nothing (issue 2): a counting global allocator (this test binary only)
//! watches a warm plan classify every form of input, including the transform-rule path whose
//! per-thread regex cache is created on first use and reused after.

mod common;
mod counting;

use common::{examples, plan};
use tollgate_engine::numbering::Region;

#[test]
fn classify_allocates_nothing() {
    let plan = plan();
    let us = Region::new("US").unwrap();
    let mut inputs: Vec<(String, Region)> = examples()
        .flat_map(|(t, _, _, nsn)| {
            let own = Region::new(&t.id)
                .filter(|r| !r.is_non_geographic())
                .unwrap_or(us);
            let np = t.national_prefix.clone().unwrap_or_default();
            [
                (format!("+{}{}", t.country_code, nsn), us),
                (format!("{np}{nsn}"), own),
                (format!("011 {} {}", t.country_code, nsn), us),
            ]
        })
        .collect();
    for (dialed, region) in [
        ("911", "US"),
        ("112", "DE"),
        ("tel:5550100;phone-context=+1-212", "GB"),
        ("abc", "US"),
        ("", "US"),
        ("+", "US"),
        ("011 15 2345 6789", "AR"),
        ("456789", "JE"),
    ] {
        inputs.push((dialed.to_owned(), Region::new(region).unwrap()));
    }
    // Warm up: per-thread caches of the transform-rule regexes are created on first use.
    for (d, r) in &inputs {
        let _ = plan.classify(d, *r);
    }
    let before = counting::allocations();
    let mut ok = 0;
    for (d, r) in &inputs {
        ok += plan.classify(d, *r).is_ok() as usize;
    }
    let after = counting::allocations();
    assert!(
        ok > inputs.len() / 2,
        "only {ok} of {} classified",
        inputs.len()
    );
    assert_eq!(
        after - before,
        0,
        "{} allocations in {} classifies",
        after - before,
        inputs.len()
    );
}

#[test]
fn compiled_plan_is_small() {
    // Issue 2: the compiled plan takes at most 20 MB.
    let bytes = plan().memory_usage();
    assert!(bytes < 20_000_000, "automata hold {bytes} bytes");
}
