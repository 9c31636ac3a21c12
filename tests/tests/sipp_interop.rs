//! Interop with a real, independent SIP implementation: sipp (Debian `sip-tester`, installed
//! by `scripts/test`) drives `tollgate serve` over UDP with the scenarios in `benches/sipp/`:
//! INVITE → 302 → ACK and INVITE → 403 → ACK, 1000 calls/s for 10 s each; every call must
//! succeed (sipp exits 0 only when no call failed). Issue 5.

use std::net::UdpSocket;
use std::process::{Command, Stdio};

use tollgate_tests::daemon::Daemon;
use tollgate_tests::repo_root;

/// Calls per scenario and the rate: 10 s at 1000 calls/s.
const CALLS: &str = "10000";
const RATE: &str = "1000";

fn sipp(d: &Daemon, scenario: &str, caller: &str, dial: &str) {
    let path = repo_root().join("benches/sipp").join(scenario);
    // A free local port for sipp (it would otherwise try 5060).
    let port = UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("free UDP port");
    let out = Command::new("sipp")
        .arg("-sf")
        .arg(&path)
        .args(["-key", "caller", caller, "-key", "dial", dial])
        .args(["-m", CALLS, "-r", RATE, "-l", "5000"])
        .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-t", "u1"])
        .args(["-timeout", "60s", "-timeout_error", "-nostdin"])
        .arg(d.sip.to_string())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run sipp ({e}): scripts/test installs it"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let tail: String = stdout.lines().rev().take(40).collect::<Vec<_>>().join("\n");
    assert_eq!(
        out.status.code(),
        Some(0),
        "sipp {scenario}: some calls failed\n{tail}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sipp_invite_302_ack_and_invite_403_ack() {
    // The shipped directory, with contoso's per-user limits lifted: 10,000 calls of one user in
    // 10 s is what the default limits are there to refuse (`abuse.rs`).
    let dir = tollgate_tests::shipped_directory("sipp-dir");
    let tenants = std::fs::read_to_string(dir.join("tenants.toml")).expect("tenants.toml");
    let contoso = "user_spend_limit = \"20.00\"\n";
    assert!(tenants.contains(contoso), "{tenants}");
    let lifted = tenants.replacen(
        contoso,
        &format!(
            "{contoso}[tenant.limits]\nuser_concurrent_calls = 0\nuser_calls_per_minute = 0\n"
        ),
        1,
    );
    std::fs::write(dir.join("tenants.toml"), lifted).expect("write tenants.toml");
    let d = Daemon::start_in("", &dir);
    // A Direct Routing user: admitted to the tenant's SBC, no pool to run dry.
    sipp(&d, "invite_302.xml", "grace@contoso.com", "+442079460000");
    // A Domestic-plan user dialing abroad: 403 international_not_in_plan.
    sipp(&d, "invite_403.xml", "alice@contoso.com", "+442079460000");
}
