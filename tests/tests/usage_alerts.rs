//! Usage thresholds end to end (issue 20 item 5): a pool and a tenant's credits driven past
//! 80 % and 100 % by real INVITEs; the daemon logs each crossing once and counts it in
//! `tollgate_usage_threshold_crossings_total`. Run `cargo build --workspace --bins` first.

use std::time::{Duration, Instant};

use tollgate_tests::daemon::{temp_dir, Daemon, Options, SipRequest};
use tollgate_tests::repo_root;

/// `small`: one US user on MCOPSTN5 (120 minutes, a 7,200 s pool); `cred`: one user on
/// credits only, 0.570 at 0.019 a minute (30 minutes). With grants of 1,440 s (24 minutes),
/// four calls reserve 80 % of the pool and five all of it; one credits call spends 80 % of
/// the balance and the next (6 minutes) the rest.
fn directory() -> std::path::PathBuf {
    let dir = temp_dir("usage-dir");
    for f in ["catalog.toml", "rates.csv"] {
        std::fs::copy(repo_root().join("config").join(f), dir.join(f)).expect("copy");
    }
    std::fs::write(
        dir.join("tenants.toml"),
        "[[tenant]]\nid = \"small\"\ndomains = [\"small.example\"]\n\n\
         [[tenant]]\nid = \"cred\"\ndomains = [\"cred.example\"]\ncredits = \"0.570\"\n",
    )
    .expect("tenants");
    std::fs::write(
        dir.join("users.csv"),
        "tenant,user,usage_location,licenses\n\
         small,s1@small.example,US,MCOEV;MCOPSTN5\n\
         cred,c1@cred.example,US,MCOEV;MCOPSTNC\n",
    )
    .expect("users");
    dir
}

fn invite(d: &Daemon, from: &str, id: &str) -> u16 {
    d.udp(&SipRequest::invite(&format!("sip:{from}"), "+12125550100", id).render())
        .status()
}

/// Waits (bounded) for the once-a-second tick to have logged `n` lines containing `what`.
fn logged(d: &Daemon, what: &str, n: usize) -> usize {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let count = d.stderr().lines().filter(|l| l.contains(what)).count();
        if count >= n || Instant::now() > until {
            return count;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn crossings(d: &Daemon, kind: &str, threshold: &str) -> String {
    let (_, metrics) = d.http("GET", "/metrics", "");
    let key = format!(
        "tollgate_usage_threshold_crossings_total{{kind=\"{kind}\",threshold=\"{threshold}\"}}"
    );
    metrics
        .lines()
        .find(|l| l.starts_with(&key))
        .map(|l| l[key.len()..].trim().to_string())
        .unwrap_or_default()
}

#[test]
fn a_pool_and_a_balance_crossing_80_and_100_percent_are_logged_once_each() {
    let dir = directory();
    let d = Daemon::start_opts(&Options {
        directory: Some(&dir),
        directory_extra: "watch = false",
        extra: "[grants]\ngrant_seconds = 1440\n",
        ..Options::default()
    });
    for i in 0..3 {
        assert_eq!(invite(&d, "s1@small.example", &format!("p{i}")), 302);
    }
    // 60 %: nothing yet.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(logged(&d, "pool usage threshold crossed", 0), 0);
    assert_eq!(invite(&d, "s1@small.example", "p3"), 302);
    assert_eq!(logged(&d, "pool usage threshold crossed", 1), 1);
    assert_eq!(invite(&d, "s1@small.example", "p4"), 302);
    assert_eq!(logged(&d, "pool usage threshold crossed", 2), 2);
    let log = d.stderr();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("pool usage threshold crossed"))
        .collect();
    assert!(
        lines[0].contains("threshold=80") && lines[0].contains("small"),
        "{lines:?}"
    );
    assert!(lines[1].contains("threshold=100"), "{lines:?}");
    // Credits: 80 % with the first call, 100 % with the second.
    assert_eq!(invite(&d, "c1@cred.example", "c0"), 302);
    assert_eq!(logged(&d, "credits usage threshold crossed", 1), 1);
    assert_eq!(invite(&d, "c1@cred.example", "c1"), 302);
    assert_eq!(logged(&d, "credits usage threshold crossed", 2), 2);
    // Ticks go on; nothing is logged twice.
    std::thread::sleep(Duration::from_millis(1500));
    let all = d.stderr();
    let n = all
        .lines()
        .filter(|l| l.contains("usage threshold crossed"))
        .count();
    assert_eq!(n, 4, "{all}");
    for (kind, threshold) in [
        ("pool", "80"),
        ("pool", "100"),
        ("credits", "80"),
        ("credits", "100"),
    ] {
        assert_eq!(crossings(&d, kind, threshold), "1", "{kind} {threshold}");
    }
}
