//! Helpers for the end-to-end tests in `tests/tests/`: locating and running the real binary,
//! a running daemon with SIP and HTTP clients ([`daemon`]), the load generator ([`load`]), a
//! throwaway PostgreSQL ([`postgres`]), Kamailio on the shipped configuration ([`kamailio`])
//! and sipp with the scenarios of `tests/scenarios/` ([`sipp`]).

use std::path::PathBuf;

/// Path of the `tollgate` binary to test: `$TOLLGATE_BIN`, else the one built beside this test
/// executable (`target/<profile>/tollgate`).
///
/// Integration tests of *this* crate do not get `CARGO_BIN_EXE_tollgate` (the binary belongs to
/// another package), so `scripts/test` runs `cargo build --workspace --bins` before `cargo test`.
pub fn tollgate_bin() -> PathBuf {
    workspace_bin("tollgate", "TOLLGATE_BIN")
}

/// Path of the load generator `tollgate-load` (package `tollgate-benches`): `$TOLLGATE_LOAD_BIN`,
/// else the one built beside this test executable, as for [`tollgate_bin`].
pub fn tollgate_load_bin() -> PathBuf {
    workspace_bin("tollgate-load", "TOLLGATE_LOAD_BIN")
}

/// `$env`, else `target/<profile>/<name>` beside this test executable.
fn workspace_bin(name: &str, env: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(|p| p.parent())
        .expect("target profile dir");
    let bin = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} not found: run `cargo build --workspace --bins` first (scripts/test does)",
        bin.display()
    );
    bin
}

/// The repository root (where `config/` lives).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

/// The files of the shipped directory (`config/`), the optional ones included.
pub const DIRECTORY_FILES: [&str; 6] = [
    "tenants.toml",
    "users.csv",
    "catalog.toml",
    "rates.csv",
    "routing.toml",
    "dialplans.toml",
];

/// A copy of the shipped directory in a fresh temporary directory (`tag` names it), for a
/// test to change.
pub fn shipped_directory(tag: &str) -> PathBuf {
    let dir = daemon::temp_dir(tag);
    for f in DIRECTORY_FILES {
        std::fs::copy(repo_root().join("config").join(f), dir.join(f))
            .unwrap_or_else(|e| panic!("copying config/{f}: {e}"));
    }
    dir
}

/// `tollgate SUBCOMMAND --config CONFIG ARGS…`: its standard output, asserting it succeeded.
pub fn tollgate_output(subcommand: &str, config: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new(tollgate_bin())
        .arg(subcommand)
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run tollgate");
    assert!(
        out.status.success(),
        "tollgate {subcommand}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `tollgate decide --config CONFIG --caller CALLER --dial DIAL` with `extra` arguments (e.g.
/// `--json`): its standard output, asserting it succeeded.
pub fn decide_output(config: &std::path::Path, caller: &str, dial: &str, extra: &[&str]) -> String {
    let mut args = vec!["--caller", caller, "--dial", dial];
    args.extend_from_slice(extra);
    tollgate_output("decide", config, &args)
}

/// `tollgate decide … --json`: the decision.
pub fn decide_json(config: &std::path::Path, caller: &str, dial: &str) -> serde_json::Value {
    let out = decide_output(config, caller, dial, &["--json"]);
    serde_json::from_str(&out).expect("one JSON object")
}

pub mod daemon;
pub mod kamailio;
pub mod load;
pub mod postgres;
pub mod sipp;
