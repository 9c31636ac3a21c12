//! Overload (issue "The daemon" item 5, DESIGN §2): offered far more than it can decide, the
//! daemon answers new INVITEs `503 overloaded` with `Retry-After` rather than letting its
//! receive queue grow or overflow, keeps answering emergency calls, and serves normally at once
//! when the load drops.
//!
//! The daemon under test is the debug build, so a modest flood from `tollgate-load` is already
//! several times what it can decide.

use tollgate_tests::daemon::{Daemon, SipRequest};

#[test]
fn a_flood_is_shed_with_503_and_service_resumes_at_once() {
    let d = Daemon::start();
    let r = tollgate_tests::load::run(
        &d,
        &[
            "--mix",
            "domestic",
            "--rate",
            "100000",
            "--duration",
            "2",
            "--no-retransmit",
            "--timeout",
            "3",
            "--sockets",
            "2",
        ],
    );
    let shed = r["by_status"]["503"].as_u64().unwrap_or(0);
    assert!(shed > 0, "nothing shed: {r}");
    // Right after the flood: a normal call is decided again, not shed: a 302, or a 403 if the
    // flood's admissions used up the pool or alice's own limits (the flood's callers are the
    // shipped directory's, alice among them); an emergency call is admitted.
    let a =
        d.udp(&SipRequest::invite("sip:alice@contoso.com", "+12065550100", "after-flood").render());
    assert!(
        a.status() == 302
            || matches!(
                a.header("X-Tollgate-Reason"),
                Some("pool_exhausted" | "call_limit_reached" | "rate_limit_reached")
            ),
        "{}",
        a.text
    );
    let e = d.udp(&SipRequest::invite("sip:alice@contoso.com", "911", "after-flood-911").render());
    assert_eq!(e.status(), 302, "{}", e.text);
    let (_, metrics) = d.http("GET", "/metrics", "");
    let line = metrics
        .lines()
        .find(|l| l.starts_with("tollgate_decisions_total{") && l.contains("reason=\"overloaded\""))
        .unwrap_or_default()
        .to_string();
    let counted: u64 = line
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(counted > 0, "{line}");
    assert!(
        d.stderr().contains("overloaded: receive queue deep"),
        "{}",
        d.stderr()
    );
}
