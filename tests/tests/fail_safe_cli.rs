//! End to end: the `tollgate` CLI facing what operators do to it (issue "Fail safe"): output
//! piped into `head`, and configurations that would only fail later.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use tollgate_tests::daemon::Daemon;
use tollgate_tests::{repo_root, tollgate_bin};

fn shipped_config() -> String {
    repo_root()
        .join("config/tollgate.toml")
        .display()
        .to_string()
}

/// Runs `tollgate args…` with its stdout a pipe whose reader goes away after `keep` lines,
/// while `stdin_lines` copies of `line` are fed to it; returns the exit code and stderr.
fn with_stdout_closed(args: &[&str], keep: usize, line: &str, stdin_lines: usize) -> (i32, String) {
    let mut child = Command::new(tollgate_bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tollgate");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = line.repeat(stdin_lines);
    // The child may stop reading once its output is gone: a failed write here is expected.
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let stdout = child.stdout.take().expect("stdout");
    let mut reader = BufReader::new(stdout);
    for _ in 0..keep {
        let mut l = String::new();
        let _ = reader.read_line(&mut l);
    }
    drop(reader);
    let out = child.wait_with_output().expect("wait");
    let _ = feeder.join();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `tollgate … | head -1`: every command that writes to stdout ends quietly, exit 0, when the
/// reader is gone, instead of panicking in `println!` or reporting "Broken pipe".
#[test]
fn closed_stdout_ends_quietly() {
    let config = shipped_config();
    let decide_line = "{\"caller\": \"bob@contoso.com\", \"dial\": \"+12065550100\"}\n";
    let cases: [(&[&str], usize, &str, usize); 6] = [
        // One decision in text mode, stdout closed before it is written.
        (
            &[
                "decide",
                "--config",
                &config,
                "--caller",
                "bob@contoso.com",
                "--dial",
                "+12065550100",
            ],
            0,
            "",
            0,
        ),
        (
            &[
                "decide",
                "--config",
                &config,
                "--caller",
                "bob@contoso.com",
                "--dial",
                "911",
                "--json",
            ],
            0,
            "",
            0,
        ),
        // Stdin mode: the reader takes one line and leaves; many more are fed.
        (&["decide", "--config", &config], 1, decide_line, 20_000),
        (&["numbers", "--region", "US"], 1, "+12065550100\n", 50_000),
        (&["numbers", "--region", "GB"], 0, "020 7946 0000\n", 50_000),
        (&["check", "--config", &config], 0, "", 0),
    ];
    for (args, keep, line, n) in cases {
        let (code, stderr) = with_stdout_closed(args, keep, line, n);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(stderr, "", "{args:?}: nothing to say");
        assert_eq!(code, 0, "{args:?}: {stderr}");
    }
    // The ledger readers, over a daemon's ledger.
    let d = Daemon::start();
    let config = d.config_path().display().to_string();
    let month = "2026-01";
    for args in [
        &["pools", "--config", &config][..],
        &["pools", "--config", &config, "--format", "csv"][..],
        &["cdrs", "--config", &config, "--month", month][..],
    ] {
        let (code, stderr) = with_stdout_closed(args, 0, "", 0);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!((code, stderr.as_str()), (0, ""), "{args:?}");
    }
}
