//! Meeting dial-out end to end (DESIGN §3, `engine/src/conference.rs`): INVITEs marked
//! `X-Tollgate-Service: conference-dialout` to the real daemon over the shipped `config/`, and
//! `tollgate decide --service conference-dialout`. Run `cargo build --workspace --bins` first.

use std::process::Command;

use serde_json::Value;
use tollgate_tests::daemon::{Daemon, SipRequest, SipResponse};
use tollgate_tests::{repo_root, tollgate_bin};

const DIAL_OUT: &str = "X-Tollgate-Service: conference-dialout";

fn dial_out(d: &Daemon, organizer: &str, dial: &str, call_id: &str) -> SipResponse {
    let req = SipRequest::invite(&format!("sip:{organizer}"), dial, call_id).header(DIAL_OUT);
    d.udp(&req.render())
}

/// The tenant's Audio Conferencing pool of this month, from `/v1/pools`.
fn conference_pool(d: &Daemon, tenant: &str) -> Value {
    let (status, v) = d.get_json(&format!("/v1/pools?tenant={tenant}"));
    assert_eq!(status, 200, "{v}");
    v["pools"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["kind"] == "conference"))
        .cloned()
        .unwrap_or_else(|| panic!("no conference pool in {v}"))
}

#[test]
fn a_meeting_dials_out_under_its_organizers_cpc_policy_and_the_tenant_pool() {
    let d = Daemon::start();
    // bernd (fabrikam, Audio Conferencing, DialoutCPCZoneAPSTNInternational): the US is in
    // Zone A, paid by fabrikam's conferencing pool (one licence: 60 minutes).
    let before = conference_pool(&d, "fabrikam");
    assert_eq!(before["capacity_seconds"], 3600, "{before}");
    assert_eq!(before["sku"], "AudioConferencing", "{before}");
    let r = dial_out(&d, "bernd@fabrikam.de", "+12125550100", "conf-1");
    assert_eq!(r.status(), 302, "{}", r.text);
    assert_eq!(r.header("X-Tollgate-Basis"), Some("conference_pool"));
    assert_eq!(r.header("X-Tollgate-Max-Duration"), Some("1800"));
    assert!(
        r.header("Contact")
            .unwrap_or("")
            .contains("+12125550100@pstn-de.example.net"),
        "{}",
        r.text
    );
    assert_eq!(conference_pool(&d, "fabrikam")["reserved_seconds"], 1800);
    // The UAE is outside Zone A: his policy refuses it.
    let r = dial_out(&d, "bernd@fabrikam.de", "+97142000000", "conf-2");
    assert_eq!(r.status(), 403, "{}", r.text);
    assert_eq!(
        r.header("X-Tollgate-Reason"),
        Some("international_disabled_by_policy")
    );
    // clara: DialoutCPCDisabledPSTNDomestic.
    let r = dial_out(&d, "clara@fabrikam.de", "+4930555501", "conf-3");
    assert_eq!(r.status(), 403, "{}", r.text);
    assert_eq!(
        r.header("X-Tollgate-Reason"),
        Some("conference_dialout_disabled_by_policy")
    );
    assert!(
        r.header("Reason").unwrap_or("").contains("cause=57"),
        "{}",
        r.text
    );
    // chloe (E5, DialoutCPCInternationalPSTNDomestic): her meeting may call the UK, she may not.
    let r = dial_out(&d, "chloe@contoso.com", "+442079460000", "conf-4");
    assert_eq!(
        r.header("X-Tollgate-Basis"),
        Some("conference_pool"),
        "{}",
        r.text
    );
    let own = SipRequest::invite("sip:chloe@contoso.com", "+442079460000", "conf-5");
    let r = d.udp(&own.render());
    assert_eq!(
        r.header("X-Tollgate-Reason"),
        Some("international_disabled_by_policy"),
        "{}",
        r.text
    );
    // A service Tollgate does not know is refused, not decided as a call.
    let odd = SipRequest::invite("sip:alice@contoso.com", "+12125550100", "conf-6")
        .header("X-Tollgate-Service: voicemail");
    let r = d.udp(&odd.render());
    assert_eq!(r.status(), 400, "{}", r.text);
    // The end settles on the conferencing pool.
    let (status, body) = d.http(
        "POST",
        "/v1/calls/conf-1/end",
        r#"{"billable_seconds": 61}"#,
    );
    assert_eq!(status, 200, "{body}");
    let after = conference_pool(&d, "fabrikam");
    assert_eq!(
        (&after["used_seconds"], &after["reserved_seconds"]),
        (&Value::from(120), &Value::from(0)),
        "{after}"
    );
}

#[test]
fn decide_shows_a_dial_out_and_its_rule() {
    let config = repo_root().join("config/tollgate.toml");
    let run = |caller: &str, dial: &str| -> Value {
        let out = Command::new(tollgate_bin())
            .args(["decide", "--config"])
            .arg(&config)
            .args(["--caller", caller, "--dial", dial])
            .args(["--service", "conference-dialout", "--json"])
            .output()
            .expect("run tollgate decide");
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice(&out.stdout).expect("one JSON line")
    };
    let d = run("bernd@fabrikam.de", "+12125550100");
    assert_eq!(
        (&d["service"], &d["basis"], &d["rule"]),
        (
            &Value::from("conference-dialout"),
            &Value::from("conference_pool"),
            &Value::from(
                "9: a minute pool (the calling plan's; the tenant's conferencing pool for a meeting's dial-out)"
            )
        ),
        "{d}"
    );
    let d = run("clara@fabrikam.de", "+4930555501");
    assert_eq!(d["reason"], "conference_dialout_disabled_by_policy", "{d}");
    assert_eq!(
        d["rule"], "5: the caller's dial-out policy (its CPC part for a meeting's dial-out)",
        "{d}"
    );
    let bad = Command::new(tollgate_bin())
        .args(["decide", "--config"])
        .arg(&config)
        .args(["--caller", "bernd@fabrikam.de", "--dial", "+12125550100"])
        .args(["--service", "voicemail"])
        .output()
        .expect("run tollgate decide");
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
}
