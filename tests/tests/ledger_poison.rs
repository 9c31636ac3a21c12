//! A settlement the ledger could never store (issue "Fail safe", A1): `billable_seconds` past
//! what fits a SQLite integer used to be accepted, wedge the writer on a row it retried every
//! second for ever, and take `/readyz`, admissions and every later settlement down with it.
//! Now it is refused at the API with a 400 and changes nothing; the ledger keeps committing.

use serde_json::Value;
use tollgate_tests::daemon::{temp_dir, Daemon, Options, SipRequest};

const ALICE: &str = "sip:alice@contoso.com";

fn start(ledger: &std::path::Path) -> Daemon {
    Daemon::start_opts(&Options {
        ledger: Some(ledger),
        ..Options::default()
    })
}

#[test]
fn an_unstorable_billable_seconds_is_refused_and_the_ledger_keeps_committing() {
    let dir = temp_dir("poison");
    let ledger = dir.join("ledger.db");
    let d = start(&ledger);
    for id in ["poison-1", "poison-2"] {
        let r = d.udp(&SipRequest::invite(ALICE, "+12065550100", id).render());
        assert_eq!(r.status(), 302, "{}", r.text);
    }
    let (_, pools_before) = d.get_json("/v1/pools");
    let (_, call_before) = d.get_json("/v1/calls/poison-1");

    for hostile in [
        "9223372036854775808",
        "18446744073709551615",
        "1000000001",
        "18446744073709551616",
        "-1",
        "1.5",
    ] {
        let (status, body) = d.http(
            "POST",
            "/v1/calls/poison-1/end",
            &format!("{{\"billable_seconds\": {hostile}}}"),
        );
        assert_eq!(status, 400, "{hostile}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!(v["reason"], "bad_request", "{v}");
        let error = v["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("billable_seconds") && error.contains("1000000000"),
            "names the field and the range: {v}"
        );
    }
    // Nothing changed.
    assert_eq!(d.get_json("/v1/calls/poison-1"), (200, call_before));
    assert_eq!(d.get_json("/v1/pools"), (200, pools_before));
    assert_eq!(d.http("GET", "/readyz", "").0, 200);

    // The largest allowed value settles (charged at most the reservation), and so do the
    // calls after it; new calls are admitted.
    let (status, body) = d.http(
        "POST",
        "/v1/calls/poison-1/end",
        r#"{"billable_seconds": 1000000000}"#,
    );
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["charged_seconds"], v["reserved_seconds"], "{v}");
    let (status, body) = d.http(
        "POST",
        "/v1/calls/poison-2/end",
        r#"{"billable_seconds": 61}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(d.http("GET", "/readyz", "").0, 200);
    let r = d.tcp(
        &SipRequest::invite(ALICE, "+12065550100", "poison-3")
            .tcp()
            .render(),
    );
    assert_eq!(r.status(), 302, "{}", r.text);
    assert!(d.signal_and_wait("TERM").success());

    // Both settlements survived the restart.
    let d = start(&ledger);
    for (id, billable) in [("poison-1", 1_000_000_000u64), ("poison-2", 61)] {
        let (status, v) = d.get_json(&format!("/v1/calls/{id}"));
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["state"], "settled", "{id}: {v}");
        assert_eq!(v["billable_seconds"], billable, "{id}: {v}");
    }
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}
