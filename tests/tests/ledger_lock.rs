//! One daemon per ledger (issue "Fail safe", A2). A second `tollgate serve` on the same
//! `[ledger].path` used to start, bind the same UDP port beside the first (`SO_REUSEPORT`) and
//! admit from the same pools, each with its own idea of what was left. Now it exits at once,
//! before binding anything, naming the ledger and the holder; the CLI readers still read the
//! ledger while the daemon runs, and `kill -9` leaves no lock behind.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tollgate_tests::daemon::{temp_dir, Daemon, Options, SipRequest};
use tollgate_tests::tollgate_bin;

const ALICE: &str = "sip:alice@contoso.com";

#[test]
fn a_second_daemon_on_the_same_ledger_exits_at_once_and_the_first_keeps_serving() {
    let dir = temp_dir("lock");
    let ledger = dir.join("ledger.db");
    let opts = Options {
        ledger: Some(&ledger),
        ..Options::default()
    };
    let d = Daemon::start_opts(&opts);
    let r = d.udp(&SipRequest::invite(ALICE, "+12065550100", "lock-1").render());
    assert_eq!(r.status(), 302, "{}", r.text);

    // The same ledger and the same SIP port over UDP only (SO_REUSEPORT would let it share
    // the port), an HTTP port of its own: nothing but the ledger stops it.
    let first = std::fs::read_to_string(d.config_path()).unwrap();
    let second = first.replace(&format!(", \"tcp:{}\"", d.sip), "").replace(
        &format!("listen = \"{}\"", d.http),
        "listen = \"127.0.0.1:0\"",
    );
    assert_ne!(first, second);
    let config = dir.join("second.toml");
    std::fs::write(&config, second).unwrap();
    let mut child = Command::new(tollgate_bin())
        .args(["serve", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "a second daemon runs on the same ledger: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&ledger.display().to_string()),
        "names the ledger: {stderr}"
    );
    assert!(
        stderr.contains(&format!("pid {}", d.pid())),
        "names the holder: {stderr}"
    );
    assert!(!stderr.contains("listening"), "bound nothing: {stderr}");

    // The first still answers, and the CLI readers still read its ledger.
    let r = d.udp(&SipRequest::invite(ALICE, "+12065550100", "lock-2").render());
    assert_eq!(r.status(), 302, "{}", r.text);
    assert_eq!(d.http("GET", "/readyz", "").0, 200);
    let (_, call) = d.get_json("/v1/calls/lock-1");
    let month = call["month"].as_str().unwrap_or_default().to_string();
    for args in [&["pools"][..], &["cdrs", "--month", &month][..]] {
        let out = Command::new(tollgate_bin())
            .args(args)
            .arg("--config")
            .arg(d.config_path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tollgate {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // `kill -9`: the kernel lets go of the lock, and the next daemon starts on the ledger.
    d.kill9();
    let d = Daemon::start_opts(&opts);
    let (status, v) = d.get_json("/v1/calls/lock-2");
    assert_eq!(
        (status, v["state"].as_str()),
        (200, Some("reserved")),
        "{v}"
    );
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}
