//! End to end: the load generator `tollgate-load` (issue 7) against the real daemon, with the
//! shipped `config/` directory's callers: every call answered (and ACKed), none timed out, some
//! admitted. Short and slow on purpose (2 s at 2000 calls/s): it checks the tool and the
//! daemon's answers under a little load, not throughput.

use std::process::Command;

use serde_json::Value;
use tollgate_tests::daemon::{temp_dir, Daemon};
use tollgate_tests::tollgate_load_bin;

/// `tollgate-load` against `d` with `args`, with 8 s for the last answers.
fn load(d: &Daemon, args: &[&str]) -> Value {
    let mut all = vec!["--timeout", "8"];
    all.extend_from_slice(args);
    tollgate_tests::load::run(d, &all)
}

fn n(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

/// Every call answered once and ACKed, none lost, some admitted.
fn assert_clean(r: &Value, at_least: u64) {
    let sent = n(r, "sent");
    assert!(sent >= at_least, "sent {sent} < {at_least}: {r}");
    assert_eq!(n(r, "timeouts"), 0, "{r}");
    assert_eq!(n(r, "answered"), sent, "{r}");
    assert_eq!(n(r, "acks"), sent + n(r, "late_or_duplicate"), "{r}");
    assert_eq!(n(r, "unmatched"), 0, "{r}");
    let by_status = r["by_status"].as_object().expect("by_status");
    let total: u64 = by_status.values().filter_map(Value::as_u64).sum();
    assert_eq!(total, sent, "{r}");
    assert!(
        by_status.get("302").and_then(Value::as_u64).unwrap_or(0) > 0,
        "no 302: {r}"
    );
    // The default mix has invalid and incomplete numbers, and callers without the license.
    for status in ["403", "404", "484"] {
        assert!(by_status.contains_key(status), "no {status}: {r}");
    }
    assert!(r["latency"]["p99_ms"].as_f64().is_some(), "{r}");
}

#[test]
fn udp_2000_calls_per_second_for_2_seconds() {
    let d = Daemon::start();
    let r = load(&d, &["--rate", "2000", "--duration", "2"]);
    assert_eq!(r["transport"], "udp");
    assert_clean(&r, 3_800);
}

#[test]
fn tcp_closed_loop() {
    let d = Daemon::start();
    let r = load(
        &d,
        &[
            "--transport",
            "tcp",
            "--connections",
            "2",
            "--rate",
            "max",
            "--concurrency",
            "50",
            "--calls",
            "2000",
        ],
    );
    assert_eq!(r["transport"], "tcp");
    assert_eq!(n(&r, "sent"), 2000, "{r}");
    assert_clean(&r, 2000);
}

#[test]
fn written_directory_passes_tollgate_check() {
    let dir = temp_dir("load-dir");
    let out = Command::new(tollgate_load_bin())
        .arg("--write-directory")
        .arg(&dir)
        .args(["--users", "1000", "--sip-listen", "127.0.0.1:5070"])
        .output()
        .expect("run tollgate-load --write-directory");
    assert!(out.status.success(), "{out:?}");
    for f in [
        "tenants.toml",
        "users.csv",
        "catalog.toml",
        "rates.csv",
        "tollgate.toml",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let check = Command::new(tollgate_tests::tollgate_bin())
        .arg("check")
        .arg("--config")
        .arg(dir.join("tollgate.toml"))
        .output()
        .expect("run tollgate check");
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{check:?}");
    assert!(stdout.contains("5 tenants, 1000 users"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}
