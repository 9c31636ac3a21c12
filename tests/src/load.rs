//! Running `tollgate-load` (the load generator of `benches/`) against a [`Daemon`] and reading
//! its JSON report.

use std::process::Command;

use serde_json::Value;

use crate::daemon::{temp_dir, Daemon};
use crate::{repo_root, tollgate_load_bin};

/// Runs `tollgate-load` against `d` with the repository's `config/` callers, `--quiet` and
/// `args`; asserts it succeeded and printed its table; returns the parsed JSON report.
pub fn run(d: &Daemon, args: &[&str]) -> Value {
    run_with_callers(d, &repo_root().join("config"), args)
}

/// [`run`] with the callers of `callers` (a directory holding a `users.csv`).
pub fn run_with_callers(d: &Daemon, callers: &std::path::Path, args: &[&str]) -> Value {
    let dir = temp_dir("load");
    let json = dir.join("report.json");
    let out = Command::new(tollgate_load_bin())
        .arg("--target")
        .arg(d.sip.to_string())
        .arg("--directory")
        .arg(callers)
        .arg("--json")
        .arg(&json)
        .arg("--quiet")
        .args(args)
        .output()
        .expect("run tollgate-load");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "tollgate-load failed: {stdout}\n{stderr}\n{}",
        d.stderr()
    );
    let text = std::fs::read_to_string(&json).expect("JSON report");
    let _ = std::fs::remove_dir_all(&dir);
    // The table is on stdout too.
    assert!(stdout.contains("latency ms"), "{stdout}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}
