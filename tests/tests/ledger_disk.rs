//! A ledger that cannot write (DESIGN §6, issue "Durable ledger" item 5): normal calls get
//! `503 store_unavailable`, emergency calls still get their 302, `/readyz` says so, and service
//! comes back by itself when the disk has room again.
//!
//! The fault is real: the ledger lives on a 1 MiB tmpfs that the test fills up, so SQLite's
//! next append to its write-ahead log fails with `ENOSPC`. Mounting needs `CAP_SYS_ADMIN`
//! (CI runs as root, as it must to `apt-get install sipp`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tollgate_tests::daemon::{temp_dir, Daemon, Options, SipRequest};

const ALICE: &str = "sip:alice@contoso.com";

/// A small tmpfs, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = temp_dir("tmpfs");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs for the disk-full test failed: it needs root (CAP_SYS_ADMIN)"
        );
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `path` until the file system is full.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).expect("filler");
    let block = [0xa5u8; 4096];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
}

fn invite(d: &Daemon, dial: &str, call_id: &str) -> tollgate_tests::daemon::SipResponse {
    d.udp(&SipRequest::invite(ALICE, dial, call_id).render())
}

#[test]
fn full_disk_refuses_normal_calls_admits_emergency_and_recovers() {
    let fs = Tmpfs::mount("1m");
    let ledger = fs.0.join("ledger.db");
    let d = Daemon::start_opts(&Options {
        ledger: Some(&ledger),
        ..Options::default()
    });
    let a = invite(&d, "+12065550100", "disk-1");
    assert_eq!(a.status(), 302, "{}", a.text);

    let filler = fs.0.join("filler");
    fill(&filler);
    let r = invite(&d, "+12065550100", "disk-2");
    assert_eq!(r.status(), 503, "{}", r.text);
    assert_eq!(
        r.header("X-Tollgate-Reason"),
        Some("store_unavailable"),
        "{}",
        r.text
    );
    assert!(r.header("Retry-After").is_some(), "{}", r.text);
    // The refused call holds nothing.
    let (status, _) = d.http("GET", "/v1/calls/disk-2", "");
    assert_eq!(status, 404);
    // Emergency calls go through whatever the ledger state (DESIGN §4 rule 1).
    let e = invite(&d, "911", "disk-911");
    assert_eq!(e.status(), 302, "{}", e.text);
    assert_eq!(
        e.header("X-Tollgate-Basis"),
        Some("emergency"),
        "{}",
        e.text
    );
    let (status, body) = d.http("GET", "/readyz", "");
    assert_eq!(status, 503, "{body}");
    let (_, metrics) = d.http("GET", "/metrics", "");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("tollgate_ledger_commit_errors_total ") && !l.ends_with(" 0")),
        "{metrics}"
    );

    // Room again: service resumes by itself, and the emergency call is written after all.
    std::fs::remove_file(&filler).expect("remove filler");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut n = 0;
    loop {
        n += 1;
        let r = invite(&d, "+12065550100", &format!("disk-after-{n}"));
        if r.status() == 302 {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {}", r.text);
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, _) = d.http("GET", "/readyz", "");
    assert_eq!(status, 200);
    let db =
        rusqlite::Connection::open_with_flags(&ledger, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open ledger");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ids: Vec<String> = db
            .prepare("SELECT call_id FROM calls ORDER BY call_id")
            .and_then(|mut s| {
                s.query_map([], |r| r.get(0))?
                    .collect::<Result<Vec<String>, _>>()
            })
            .expect("query");
        if ids.iter().any(|i| i == "disk-911") {
            assert!(ids.iter().any(|i| i == "disk-1"));
            assert!(!ids.iter().any(|i| i == "disk-2"), "{ids:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "emergency call never written: {ids:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(d);
}
