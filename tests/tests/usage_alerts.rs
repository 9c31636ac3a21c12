//! Usage thresholds end to end (issue 20 item 5): a pool and a tenant's credits driven past
//! 80 % and 100 % by real INVITEs (reserved) and their ends (used); the daemon logs each crossing
//! once, with its fields, and counts it in `tollgate_usage_threshold_crossings_total`; a new
//! month crosses afresh. Run `cargo build --workspace --bins` first.

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

/// Ends call `id` with `seconds` billable: the reservation becomes used seconds or money.
fn end(d: &Daemon, id: &str, seconds: u64) {
    let (status, body) = d.http(
        "POST",
        &format!("/v1/calls/{id}/end"),
        &format!(r#"{{"billable_seconds": {seconds}}}"#),
    );
    assert_eq!(status, 200, "end {id}: {body}");
}

/// The daemon's log lines containing `what`.
fn lines(d: &Daemon, what: &str) -> Vec<String> {
    d.stderr()
        .lines()
        .filter(|l| l.contains(what))
        .map(str::to_string)
        .collect()
}

/// Waits (bounded) for the once-a-second tick to have logged `n` lines containing `what`.
fn logged(d: &Daemon, what: &str, n: usize) -> Vec<String> {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let found = lines(d, what);
        if found.len() >= n || Instant::now() > until {
            return found;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Lets at least one tick run: it comes every second, so a little more than one.
fn a_tick() {
    std::thread::sleep(Duration::from_millis(1100));
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

const POOL: &str = "pool usage threshold crossed";
const CREDITS: &str = "credits usage threshold crossed";

fn start(dir: &std::path::Path, clock: Option<&str>) -> Daemon {
    Daemon::start_opts(&Options {
        directory: Some(dir),
        directory_extra: "watch = false",
        extra: "[grants]\ngrant_seconds = 1440\n",
        clock,
        ..Options::default()
    })
}

#[test]
fn a_pool_and_a_balance_crossing_80_and_100_percent_are_logged_once_each() {
    let dir = directory();
    let d = start(&dir, None);
    for (kind, threshold) in [("pool", "80"), ("pool", "100"), ("credits", "80")] {
        assert_eq!(crossings(&d, kind, threshold), "0", "{kind} {threshold}");
    }
    for i in 0..3 {
        assert_eq!(invite(&d, "s1@small.example", &format!("p{i}")), 302);
    }
    // One call talked its whole grant: 1,440 s used, 2,880 reserved, 60 %: nothing yet.
    end(&d, "p0", 1440);
    a_tick();
    assert_eq!(lines(&d, POOL), Vec::<String>::new());
    // The fourth reservation: 80 %.
    assert_eq!(invite(&d, "s1@small.example", "p3"), 302);
    let found = logged(&d, POOL, 1);
    assert_eq!(found.len(), 1, "{found:?}");
    for field in [
        "tenant=\"small\"",
        "region=\"US\"",
        "sku=\"MCOPSTN5\"",
        "kind=\"domestic\"",
        "threshold=80",
        "used_percent=80",
    ] {
        assert!(found[0].contains(field), "{field} not in {found:?}");
    }
    // The reservations become used seconds: still 80 %, nothing more.
    for id in ["p1", "p2", "p3"] {
        end(&d, id, 1440);
    }
    a_tick();
    assert_eq!(lines(&d, POOL).len(), 1);
    // The fifth: the whole pool.
    assert_eq!(invite(&d, "s1@small.example", "p4"), 302);
    let found = logged(&d, POOL, 2);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found[1].contains("threshold=100") && found[1].contains("used_percent=100"),
        "{found:?}"
    );
    end(&d, "p4", 1440);

    // Credits: the first call reserves 24 minutes (0.456 of 0.570, 80 %), the second the
    // last 6; each then talks what it reserved.
    assert_eq!(invite(&d, "c1@cred.example", "c0"), 302);
    let found = logged(&d, CREDITS, 1);
    assert_eq!(found.len(), 1, "{found:?}");
    for field in [
        "tenant=\"cred\"",
        "threshold=80",
        "used_percent=80",
        "balance=0.114000",
        "configured=0.570000",
    ] {
        assert!(found[0].contains(field), "{field} not in {found:?}");
    }
    end(&d, "c0", 1440);
    assert_eq!(invite(&d, "c1@cred.example", "c1"), 302);
    let found = logged(&d, CREDITS, 2);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found[1].contains("threshold=100") && found[1].contains("balance=0.000000"),
        "{found:?}"
    );
    end(&d, "c1", 360);
    // Ticks go on; nothing is logged twice.
    a_tick();
    a_tick();
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

/// A pool's marks start afresh with the month: 80 % in the last seconds of November, the
/// new month's pool empty, and 80 % of it logged again (the daemon's clock set by libfaketime,
/// as in the cluster's month-end test).
#[test]
fn a_new_month_crosses_afresh() {
    let dir = directory();
    let d = start(&dir, Some("2026-11-30 23:59:48"));
    let month = || {
        let (_, body) = d.http("GET", "/v1/pools?tenant=small", "");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v["pools"][0]["month"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(month(), "2026-11");
    for i in 0..4 {
        assert_eq!(invite(&d, "s1@small.example", &format!("nov{i}")), 302);
    }
    let found = logged(&d, POOL, 1);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        month(),
        "2026-11",
        "the first crossing must fall in November (the daemon's clock started 12 s before \
         the month's end)"
    );
    let until = Instant::now() + Duration::from_secs(20);
    while month() != "2026-12" {
        assert!(Instant::now() < until, "December never came");
        std::thread::sleep(Duration::from_millis(200));
    }
    for i in 0..4 {
        assert_eq!(invite(&d, "s1@small.example", &format!("dec{i}")), 302);
    }
    let found = logged(&d, POOL, 2);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[1].contains("threshold=80"), "{found:?}");
    assert_eq!(crossings(&d, "pool", "80"), "2");
    assert_eq!(crossings(&d, "pool", "100"), "0");
}
