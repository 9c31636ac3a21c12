//! Choosing a voice route allocates nothing (issue 19: the call path stays as fast): a
//! counting global allocator (this test binary only) watches the routes of the shipped
//! `routing.toml` selected and their Contacts walked, after a warm-up that creates the regex
//! engines' per-thread caches.

mod counting;

use std::path::Path;

use tollgate_engine::load::DirectoryFiles;
use tollgate_engine::Snapshot;

#[test]
fn selecting_a_voice_route_allocates_nothing() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    let mut files =
        DirectoryFiles::with(|name| std::fs::read(dir.join(name)).map_err(|e| e.to_string()));
    files.routing = Some(std::fs::read(dir.join("routing.toml")).map_err(|e| e.to_string()));
    files.dialplans = Some(std::fs::read(dir.join("dialplans.toml")).map_err(|e| e.to_string()));
    let snap = Snapshot::from_files(files).unwrap_or_else(|e| panic!("{e}"));
    let policies: Vec<u32> = (0..snap.routing.policies().len() as u32).collect();
    let numbers = [
        "+12065550100",
        "+14165550100",
        "+442079460000",
        "+1911",
        "+33155550104",
    ];
    let walk = || {
        let mut contacts = 0;
        for &p in &policies {
            for n in numbers {
                if let Some(r) = snap.routing.select(p, n) {
                    contacts += r.contacts().count();
                    assert!(!r.first_host().is_empty());
                }
            }
        }
        contacts
    };
    let warm = walk();
    let before = counting::allocations();
    let contacts = walk();
    let after = counting::allocations();
    assert_eq!(contacts, warm);
    assert!(
        contacts >= 6,
        "only {contacts} Contacts: the shipped policies changed"
    );
    assert_eq!(
        after - before,
        0,
        "allocations while selecting voice routes"
    );
}
