//! Choosing a voice route allocates nothing (issue 19: the call path stays as fast): a
//! counting global allocator (this test binary only) watches the routes of the shipped
//! `routing.toml` selected and their Contacts walked, after a warm-up that creates the regex
//! engines' per-thread caches.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use tollgate_engine::load::DirectoryFiles;
use tollgate_engine::Snapshot;

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

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
    let before = ALLOCS.load(Ordering::Relaxed);
    let contacts = walk();
    let after = ALLOCS.load(Ordering::Relaxed);
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
