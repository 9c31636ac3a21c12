//! End to end: the `tollgate` CLI facing what operators do to it (issue "Fail safe"): output
//! piped into `head`, and configurations that would only fail later.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use tollgate_tests::daemon::{temp_dir, Daemon, SipRequest};
use tollgate_tests::{decide_json, decide_output, repo_root, tollgate_bin};

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

/// Removes a temporary directory when dropped (also when the test fails).
struct Cleanup(Option<std::path::PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A `tollgate.toml` in a fresh temporary directory over the shipped directory, with `extra`
/// appended (whole tables); SIP and HTTP on port 0, so a `serve` that gets past its checks
/// binds nothing anyone else uses. Returns the file's path.
fn config_with(tag: &str, http: &str, extra: &str) -> std::path::PathBuf {
    let dir = temp_dir(tag);
    let text = format!(
        "[sip]\nlisten = [\"udp:127.0.0.1:0\", \"tcp:127.0.0.1:0\"]\n[http]\nlisten = \"127.0.0.1:0\"\n{http}\n[directory]\npath = \"{}\"\nwatch = false\n[ledger]\npath = \"{}\"\n{extra}",
        repo_root().join("config").display(),
        dir.join("ledger.db").display(),
    );
    let path = dir.join("tollgate.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// Runs `tollgate <cmd> --config <config>` to its end (a `serve` that starts is killed after
/// 5 s and reported as exit code -1); the exit code and stderr.
fn run_cli(cmd: &str, config: &std::path::Path) -> (i32, String) {
    let mut child = Command::new(tollgate_bin())
        .arg(cmd)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tollgate");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    if let Ok(None) = child.try_wait() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `check` refuses every `[http].token_file` that `serve` refuses, with the same message naming
/// the file and the field: a file that does not exist, an empty one, one with only white space,
/// a token that no `Authorization` header could carry. A good token passes both.
#[test]
fn token_file_checked_like_serve() {
    let dir = temp_dir("token");
    let _cleanup_tokens = Cleanup(Some(dir.clone()));
    let cases: [(&str, Option<&[u8]>, &str); 5] = [
        ("missing.token", None, "cannot read"),
        ("empty.token", Some(b""), "holds no token"),
        ("blank.token", Some(b"  \n\t\n"), "holds no token"),
        ("spaced.token", Some(b"two words\n"), "not visible ASCII"),
        ("control.token", Some(b"abc\x01def\n"), "not visible ASCII"),
    ];
    for (name, content, says) in cases {
        let token = dir.join(name);
        if let Some(c) = content {
            std::fs::write(&token, c).expect("write token");
        }
        let http = format!("token_file = \"{}\"", token.display());
        let config = config_with("token", &http, "");
        let mut seen = Vec::new();
        let _cleanup = Cleanup(config.parent().map(std::path::Path::to_path_buf));
        for cmd in ["check", "serve"] {
            let (code, stderr) = run_cli(cmd, &config);
            assert_eq!(code, 2, "{cmd} {name}: {stderr}");
            let line = stderr
                .lines()
                .find(|l| l.contains("[http].token_file"))
                .unwrap_or_else(|| panic!("{cmd} {name}: no error naming the field: {stderr}"))
                .to_string();
            // Line 5 of the file sets the field.
            assert!(
                line.starts_with("tollgate.toml:5: [http].token_file: "),
                "{line}"
            );
            assert!(line.contains(&token.display().to_string()), "{line}");
            assert!(line.contains(says), "{cmd} {name}: {line}");
            seen.push(line);
        }
        assert_eq!(seen[0], seen[1], "check and serve say the same");
    }
    std::fs::write(dir.join("good.token"), "s3cr3t-t0ken\n").expect("write token");
    let http = format!("token_file = \"{}\"", dir.join("good.token").display());
    let config = config_with("token", &http, "");
    let _cleanup = Cleanup(config.parent().map(std::path::Path::to_path_buf));
    let (code, stderr) = run_cli("check", &config);
    assert_eq!(code, 0, "{stderr}");
}

/// A `[routes]` value that cannot be the host part of a Contact URI (DESIGN §3: "a route is a
/// host or host:port, checked at load") stops `check` and `serve` alike with exit 2 and an
/// error naming the file, the line and the field, instead of a broken 302 for every call.
#[test]
fn bad_routes_refused_at_load() {
    let cases = [
        ("calling_plan", r#""pstn {region}.example.net""#, "' '"),
        ("calling_plan", r#""pstn-{region}.example.net>""#, "'>'"),
        ("calling_plan", r#""<pstn-{region}.example.net""#, "'<'"),
        ("calling_plan", r#""\"pstn.example.net\"""#, "'\"'"),
        (
            "calling_plan",
            r#""pstn-{region}\u0001.example.net""#,
            "'\\u{1}'",
        ),
        ("calling_plan", r#""""#, "empty"),
        ("calling_plan", r#"":5060""#, "empty host"),
        (
            "calling_plan",
            r#""pstn-{country}.example.net""#,
            "only placeholder",
        ),
        (
            "calling_plan",
            r#""pstn.example.net:{region}""#,
            "not the port",
        ),
        ("calling_plan", r#""pstn.example.net:99999""#, "port"),
        (
            "emergency",
            r#""sos-{region}.example.net""#,
            "only for [routes].calling_plan",
        ),
        ("emergency", r#""sos.example.net;transport=tcp""#, "';'"),
    ];
    for (field, value, says) in cases {
        let extra = format!("[routes]\n{field} = {value}\n");
        let config = config_with("routes", "", &extra);
        let _cleanup = Cleanup(config.parent().map(std::path::Path::to_path_buf));
        let line = std::fs::read_to_string(&config)
            .expect("read config")
            .lines()
            .position(|l| l.starts_with(field))
            .expect("field line")
            + 1;
        let prefix = format!("tollgate.toml:{line}: [routes].{field}: ");
        for cmd in ["check", "serve"] {
            let (code, stderr) = run_cli(cmd, &config);
            assert_eq!(code, 2, "{cmd} {field} = {value}: {stderr}");
            assert!(
                stderr
                    .lines()
                    .any(|l| l.starts_with(&prefix) && l.contains(says)),
                "{cmd} {field} = {value}: wanted {prefix}...{says}: {stderr}"
            );
        }
    }
    // Good routes pass: a placeholder in the host, a port, an address.
    let extra = "[routes]\ncalling_plan = \"pstn-{region}.example.net:5080\"\nemergency = \"[2001:db8::1]:5060\"\n";
    let config = config_with("routes", "", extra);
    let _cleanup = Cleanup(config.parent().map(std::path::Path::to_path_buf));
    let (code, stderr) = run_cli("check", &config);
    assert_eq!(code, 0, "{stderr}");
}

/// `decide` sees the pools the running daemon has used: it reads the daemon's ledger
/// read-only and rebuilds them as the daemon does at start. Without a ledger to read it says
/// plainly that the pools were not consulted.
#[test]
fn decide_consults_the_daemons_pools() {
    let d = Daemon::start();
    let config = d.config_path();
    // dave holds MCOPSTN5: a 120-minute pool of his own; four 1800 s grants use it up.
    let dave = "sip:dave@contoso.com";
    for i in 0..4 {
        let msg = SipRequest::invite(dave, "+12065550100", &format!("dave-{i}")).render();
        assert_eq!(d.udp(&msg).status(), 302);
    }
    let r = d.udp(&SipRequest::invite(dave, "+12065550100", "dave-4").render());
    assert_eq!(
        r.header("X-Tollgate-Reason"),
        Some("pool_exhausted"),
        "{}",
        r.text
    );

    let v = decide_json(&config, "dave@contoso.com", "+12065550100");
    assert_eq!(v["outcome"], "reject", "{v}");
    assert_eq!(v["reason"], "pool_exhausted", "{v}");
    assert_eq!(v["status"], 403, "{v}");
    assert_eq!(v["pools"], "ledger", "{v}");
    // Others' pools are untouched.
    let v = decide_json(&config, "alice@contoso.com", "+12065550100");
    assert_eq!(
        (v["outcome"].as_str(), v["pools"].as_str()),
        (Some("admit"), Some("ledger"))
    );
    // Text mode and stdin mode say the same.
    let text = decide_output(&config, "dave@contoso.com", "+12065550100", &[]);
    assert!(text.starts_with("reject 403 pool_exhausted\n"), "{text}");
    assert!(text.contains("  pools:        ledger"), "{text}");
    let mut child = Command::new(tollgate_bin())
        .arg("decide")
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn tollgate decide");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"{\"caller\": \"dave@contoso.com\", \"dial\": \"+12065550100\"}\n")
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON line");
    assert_eq!(
        (v["reason"].as_str(), v["pools"].as_str()),
        (Some("pool_exhausted"), Some("ledger"))
    );

    // No ledger file at that path: the decision stands on unused pools, and says so.
    let missing = config_with("decide", "", "");
    let _cleanup = Cleanup(missing.parent().map(std::path::Path::to_path_buf));
    let v = decide_json(&missing, "dave@contoso.com", "+12065550100");
    assert_eq!(v["outcome"], "admit", "{v}");
    assert_eq!(v["pools"], "not_consulted", "{v}");
    let note = v["pools_note"].as_str().unwrap_or_default();
    assert!(
        note.contains("[ledger].path") && note.contains("no such file"),
        "{v}"
    );
    let text = decide_output(&missing, "dave@contoso.com", "+12065550100", &[]);
    assert!(text.contains("  pools:        not consulted ("), "{text}");
}
