//! End to end: `[directory].watch = true` (the default) reloads the directory when its files
//! change, with no signal and no `POST /v1/reload`; a bad file keeps the old snapshot.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use tollgate_tests::daemon::{Daemon, Options};

/// A licensed US user who is not in the shipped `users.csv`.
const ZOE: &str = "contoso,zoe@contoso.com,+14255550199,US,MCOEV;MCOPSTN1,calling_plan,,Sales,";
const DECIDE_ZOE: &str = "/v1/decide?caller=zoe%40contoso.com&dial=%2B12065550100";
const DECIDE_ALICE: &str = "/v1/decide?caller=alice%40contoso.com&dial=%2B12065550100";

/// How long a change may take to be picked up (the debounce is 300 ms).
const WITHIN: Duration = Duration::from_secs(10);

fn decide(d: &Daemon, path: &str) -> Value {
    let (status, v) = d.get_json(path);
    assert_eq!(status, 200, "{v}");
    v
}

/// `tollgate_reloads_total{result="<result>"}` as scraped now.
fn reloads(d: &Daemon, result: &str) -> u64 {
    let (status, text) = d.http("GET", "/metrics", "");
    assert_eq!(status, 200);
    let prefix = format!("tollgate_reloads_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
}

/// Polls `check` every 50 ms until it holds, at most [`WITHIN`].
fn eventually(d: &Daemon, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WITHIN;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {WITHIN:?}\n{}",
            d.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Replaces `file` the way editors and deploy scripts do: write a sibling, rename it over.
fn replace(file: &Path, text: &str) {
    let tmp = file.with_extension("csv.new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

#[test]
fn file_changes_reload_and_bad_files_keep_the_old_snapshot() {
    let dir = tollgate_tests::shipped_directory("watch");
    let users_csv = dir.join("users.csv");
    let users = std::fs::read_to_string(&users_csv).unwrap();
    let d = Daemon::start_in("", &dir);
    let v = decide(&d, DECIDE_ZOE);
    assert_eq!(v["reason"], "unknown_caller", "{v}");

    // A user added by renaming a new file over users.csv: admitted once the watch reloads.
    replace(&users_csv, &format!("{users}{ZOE}\n"));
    eventually(&d, "zoe admitted after users.csv changed", || {
        decide(&d, DECIDE_ZOE)["outcome"] == "admit"
    });
    let v = decide(&d, DECIDE_ZOE);
    assert_eq!(v["route"], "pstn-us.example.net", "{v}");
    assert_eq!(reloads(&d, "error"), 0);

    // Other files in the directory (a ledger, an editor's swap file) reload nothing, and neither
    // do the reload's own reads of the directory.
    let ok = reloads(&d, "ok");
    assert!(ok >= 1, "{ok}");
    std::fs::write(dir.join("tollgate.db-wal"), "not a directory file").unwrap();
    std::fs::write(dir.join(".users.csv.swp"), "not a directory file").unwrap();
    std::thread::sleep(Duration::from_millis(1_000));
    assert_eq!(reloads(&d, "ok"), ok, "{}", d.stderr());

    // A broken users.csv written in place: the reload fails, is counted, the old snapshot stays.
    std::fs::write(&users_csv, format!("{users}{ZOE}\ncontoso,broken,,ZZ,,,\n")).unwrap();
    eventually(&d, "the failed reload counted", || {
        reloads(&d, "error") >= 1
    });
    assert_eq!(reloads(&d, "ok"), ok);
    assert_eq!(decide(&d, DECIDE_ZOE)["outcome"], "admit");
    assert_eq!(decide(&d, DECIDE_ALICE)["outcome"], "admit");
    assert!(d.stderr().contains("reload failed"), "{}", d.stderr());

    // Fixed again, without alice: the new snapshot answers.
    let without_alice: String = users
        .lines()
        .filter(|l| !l.contains("alice@contoso.com"))
        .map(|l| format!("{l}\n"))
        .collect();
    replace(&users_csv, &format!("{without_alice}{ZOE}\n"));
    eventually(&d, "alice gone after users.csv was fixed", || {
        decide(&d, DECIDE_ALICE)["reason"] == "unknown_caller"
    });
    assert_eq!(decide(&d, DECIDE_ZOE)["outcome"], "admit");
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn watch_false_reloads_only_on_request() {
    let dir = tollgate_tests::shipped_directory("nowatch");
    let users_csv = dir.join("users.csv");
    let users = std::fs::read_to_string(&users_csv).unwrap();
    let d = Daemon::start_opts(&Options {
        directory: Some(&dir),
        directory_extra: "watch = false",
        ..Options::default()
    });
    replace(&users_csv, &format!("{users}{ZOE}\n"));
    std::thread::sleep(Duration::from_millis(1_000));
    assert_eq!(decide(&d, DECIDE_ZOE)["reason"], "unknown_caller");
    assert_eq!(reloads(&d, "ok"), 0);
    let (status, body) = d.http("POST", "/v1/reload", "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(decide(&d, DECIDE_ZOE)["outcome"], "admit");
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}
