//! Internal calls and tenant dial plans end to end (DESIGN §2 `internal`, §3 `dialplans.toml`;
//! `engine/src/dialplan.rs`): INVITEs to the real daemon over a copy of the shipped `config/`,
//! where erin@contoso.com uses the `redmond` plan. Run `cargo build --workspace --bins` first.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tollgate_tests::daemon::{Daemon, Options, SipRequest, SipResponse};

const ERIN: &str = "sip:erin@contoso.com";

/// A copy of the shipped directory, to break on purpose.
fn directory() -> PathBuf {
    tollgate_tests::shipped_directory("dialing")
}

fn invite(d: &Daemon, from: &str, dial: &str, call_id: &str) -> SipResponse {
    d.udp(&SipRequest::invite(from, dial, call_id).render())
}

fn pools_reserved(d: &Daemon) -> u64 {
    let (status, v) = d.get_json("/v1/pools?tenant=contoso");
    assert_eq!(status, 200, "{v}");
    v["pools"]
        .as_array()
        .expect("pools")
        .iter()
        .map(|p| p["reserved_seconds"].as_u64().unwrap_or(0))
        .sum()
}

fn start(dir: &Path) -> Daemon {
    Daemon::start_opts(&Options {
        directory: Some(dir),
        directory_extra: "watch = false",
        ..Options::default()
    })
}

#[test]
fn internal_calls_and_the_redmond_plan_over_sip() {
    let dir = directory();
    let d = start(&dir);
    // A colleague's full number: internal, free, to [routes].internal; nothing reserved.
    let r = invite(&d, "sip:alice@contoso.com", "+14255550102", "dial-1");
    assert_eq!(r.status(), 302, "{}", r.text);
    assert_eq!(r.header("X-Tollgate-Basis"), Some("internal"));
    assert!(
        r.header("Contact")
            .unwrap_or("")
            .contains("+14255550102@teams.example.net"),
        "{}",
        r.text
    );
    // The same number from another tenant is a PSTN call.
    let r = invite(&d, "sip:amelia@northwind.co.uk", "+14255550102", "dial-2");
    assert_eq!(
        r.header("X-Tollgate-Basis"),
        Some("international_pool"),
        "{}",
        r.text
    );
    let reserved = pools_reserved(&d);
    // By extension, through erin's dial plan.
    let r = invite(&d, ERIN, "0101", "dial-3");
    assert_eq!(r.header("X-Tollgate-Basis"), Some("internal"), "{}", r.text);
    assert!(
        r.header("Contact")
            .unwrap_or("")
            .contains("+14255550101@teams.example.net"),
        "{}",
        r.text
    );
    assert_eq!(
        pools_reserved(&d),
        reserved,
        "internal calls reserve nothing"
    );
    // Outside line 9: a domestic call from erin's pool; the ledger keeps what was dialed.
    let r = invite(&d, ERIN, "912065550100", "dial-4");
    assert_eq!(
        r.header("X-Tollgate-Basis"),
        Some("domestic_pool"),
        "{}",
        r.text
    );
    assert!(
        r.header("Contact").unwrap_or("").contains("+12065550100@"),
        "{}",
        r.text
    );
    let (status, call) = d.get_json("/v1/calls/dial-4");
    assert_eq!(status, 200, "{call}");
    assert_eq!(call["dialed"], "912065550100", "{call}");
    // 9 then 911, and 911: emergency, whatever the plan's order.
    for (dial, id) in [("9911", "dial-5"), ("911", "dial-6")] {
        let r = invite(&d, ERIN, dial, id);
        assert_eq!(
            r.header("X-Tollgate-Basis"),
            Some("emergency"),
            "{dial}: {}",
            r.text
        );
    }
    // decide names the rule and what it made of the number.
    let (status, v) = d.get_json("/v1/decide?caller=erin%40contoso.com&dial=9911");
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (&v["dial_plan_rule"], &v["normalized"], &v["basis"]),
        (
            &Value::from("outside line"),
            &Value::from("911"),
            &Value::from("emergency")
        ),
        "{v}"
    );
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_broken_dialplans_toml_on_reload_keeps_the_old_directory() {
    let dir = directory();
    let d = start(&dir);
    let shipped = std::fs::read_to_string(dir.join("dialplans.toml")).expect("dialplans");
    for (broken, names) in [
        (
            shipped.replace(r"pattern = '^(\d{4})$'", r"pattern = '^(?=\d{4})$'"),
            "pattern",
        ),
        (
            shipped.replace(
                "translation = \"+1425555$1\"",
                "translation = \"+1425555$2\"",
            ),
            "translation",
        ),
        (
            shipped.replace("id = \"redmond\"", "id = \"seattle\""),
            "dial_plan",
        ),
    ] {
        assert_ne!(broken, shipped, "the shipped dialplans.toml changed");
        std::fs::write(dir.join("dialplans.toml"), &broken).expect("write");
        let (status, body) = d.http("POST", "/v1/reload", "");
        assert_eq!(status, 500, "{body}");
        assert!(body.contains(names), "{names}: {body}");
        assert!(
            body.contains("dialplans.toml:") || body.contains("users.csv:"),
            "{body}"
        );
        // The old plan still serves.
        let r = invite(&d, ERIN, "0101", &format!("kept-{names}"));
        assert_eq!(r.header("X-Tollgate-Basis"), Some("internal"), "{}", r.text);
    }
    std::fs::write(dir.join("dialplans.toml"), &shipped).expect("write");
    let (status, body) = d.http("POST", "/v1/reload", "");
    assert_eq!(status, 200, "{body}");
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}
