//! The abuse controls end to end (issue 20): each reason over SIP against the real daemon, shadow
//! mode, what `decide` says, `kill -9` and a reload. Run `cargo build --workspace --bins` first.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tollgate_tests::daemon::{temp_dir, Daemon, Options, SipRequest, SipResponse};
use tollgate_tests::{repo_root, tollgate_bin};

/// `a` limits everything it can; `b` allows high-risk numbers and lifts the per-user limits.
const TENANTS: &str = r#"
[[tenant]]
id = "a"
domains = ["a.example"]
credits = "100.00"
[tenant.limits]
user_concurrent_calls = 2
concurrent_calls = 3
user_calls_per_minute = 4
max_price_per_minute = "0.06"
daily_spend = "2.00"
[[tenant.velocity]]
destination = "+4420"
window_seconds = 600
warn = 1
block = 2

[[tenant]]
id = "b"
domains = ["b.example"]
[tenant.limits]
high_risk = "allow"
user_concurrent_calls = 0
user_calls_per_minute = 0
"#;

const USERS: &str = "tenant,user,usage_location,licenses,concurrent_calls,dial_out_policy
a,x@a.example,US,MCOEV;MCOPSTN1;MCOPSTN2,,
a,y@a.example,US,MCOEV;MCOPSTN1,,
a,c@a.example,US,MCOEV;MCOPSTNC,,
a,g@a.example,US,MCOEV;MCOPSTN2,1,
a,off@a.example,US,MCOEV;MCOPSTN1,,DialoutCPCandPSTNDisabled
b,w@b.example,US,MCOEV;MCOPSTN2,,
";

const US: &str = "+12125550100";

fn directory(tenants: &str) -> PathBuf {
    let dir = temp_dir("abuse-dir");
    for f in ["catalog.toml", "rates.csv"] {
        std::fs::copy(repo_root().join("config").join(f), dir.join(f)).expect("copy");
    }
    std::fs::write(dir.join("tenants.toml"), tenants).expect("tenants");
    std::fs::write(dir.join("users.csv"), USERS).expect("users");
    dir
}

fn start_with(dir: &Path, ledger: Option<&Path>, extra: &str) -> Daemon {
    Daemon::start_opts(&Options {
        directory: Some(dir),
        directory_extra: "watch = false",
        ledger,
        extra,
        ..Options::default()
    })
}

fn start() -> Daemon {
    start_with(&directory(TENANTS), None, "")
}

fn invite(d: &Daemon, from: &str, dial: &str, id: &str) -> SipResponse {
    d.udp(&SipRequest::invite(&format!("sip:{from}"), dial, id).render())
}

fn end(d: &Daemon, id: &str) {
    let (status, body) = d.http(
        "POST",
        &format!("/v1/calls/{id}/end"),
        r#"{"billable_seconds": 5}"#,
    );
    assert_eq!(status, 200, "{body}");
}

fn reason(r: &SipResponse) -> Option<&str> {
    r.header("X-Tollgate-Reason")
}

fn metric(d: &Daemon, prefix: &str) -> String {
    let (_, m) = d.http("GET", "/metrics", "");
    m.lines()
        .find(|l| l.starts_with(prefix))
        .map(|l| l[prefix.len()..].trim().to_string())
        .unwrap_or_default()
}

fn decide(d: &Daemon, caller: &str, dial: &str) -> Value {
    let path = format!(
        "/v1/decide?caller={}&dial={}",
        caller.replace('@', "%40"),
        dial.replace('+', "%2B")
    );
    let (status, v) = d.get_json(&path);
    assert_eq!(status, 200, "{v}");
    v
}

#[test]
fn live_calls_are_limited_per_user_and_tenant_and_an_end_or_cancel_frees_a_place() {
    let d = start();
    assert_eq!(invite(&d, "x@a.example", US, "l1").status(), 302);
    assert_eq!(invite(&d, "x@a.example", US, "l2").status(), 302);
    let r = invite(&d, "x@a.example", US, "l3");
    assert_eq!(
        (r.status(), reason(&r)),
        (403, Some("call_limit_reached")),
        "{}",
        r.text
    );
    assert_eq!(
        r.header("Reason"),
        Some("Q.850;cause=34;text=\"call_limit_reached\"")
    );
    // A retransmission of an admitted INVITE is the same call: its 302 again.
    assert_eq!(invite(&d, "x@a.example", US, "l1").status(), 302);
    // The tenant's third place is y's; the fourth call of the tenant is refused.
    assert_eq!(invite(&d, "y@a.example", US, "l4").status(), 302);
    let r = invite(&d, "y@a.example", US, "l5");
    assert_eq!(reason(&r), Some("call_limit_reached"), "{}", r.text);
    let v = decide(&d, "y@a.example", US);
    assert_eq!(v["limit"]["name"], "concurrent_calls", "{v}");
    assert_eq!(
        (v["limit"]["limit"].as_u64(), v["limit"]["current"].as_u64()),
        (Some(3), Some(4))
    );
    // An end gives a place back; so does a CANCEL.
    end(&d, "l1");
    assert_eq!(invite(&d, "y@a.example", US, "l6").status(), 302);
    let req = SipRequest::invite("sip:x@a.example", US, "l2").with_method("CANCEL");
    assert_eq!(d.udp(&req.render()).status(), 200);
    assert_eq!(invite(&d, "x@a.example", US, "l7").status(), 302);
    // A user's own column: g may hold one.
    end(&d, "l6");
    assert_eq!(invite(&d, "g@a.example", US, "g1").status(), 302);
    assert_eq!(
        reason(&invite(&d, "g@a.example", US, "g2")),
        Some("call_limit_reached")
    );
    assert_eq!(
        metric(
            &d,
            "tollgate_decisions_total{outcome=\"reject\",reason=\"call_limit_reached\"}"
        ),
        "3"
    );
}

#[test]
fn calls_per_minute_say_when_to_retry_and_leave_the_others_alone() {
    let d = start();
    for i in 0..4 {
        let id = format!("r{i}");
        assert_eq!(invite(&d, "x@a.example", US, &id).status(), 302);
        end(&d, &id);
    }
    let r = invite(&d, "x@a.example", US, "r4");
    assert_eq!(
        (r.status(), reason(&r)),
        (403, Some("rate_limit_reached")),
        "{}",
        r.text
    );
    let retry: u64 = r
        .header("Retry-After")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!((1..=60).contains(&retry), "{}", r.text);
    // decide names the limit and when to retry.
    let v = decide(&d, "x@a.example", US);
    assert_eq!(v["reason"], "rate_limit_reached", "{v}");
    assert_eq!(v["limit"]["name"], "user_calls_per_minute");
    assert!(
        v["limit"]["retry_after"].as_u64().is_some_and(|r| r >= 1),
        "{v}"
    );
    // Another user of the tenant is served.
    assert_eq!(invite(&d, "y@a.example", US, "r5").status(), 302);
}

#[test]
fn a_velocity_rule_warns_then_blocks_one_destination() {
    let d = start();
    let london = |i: u32| format!("+44207946{i:04}");
    assert_eq!(invite(&d, "x@a.example", &london(1), "v1").status(), 302);
    end(&d, "v1");
    assert_eq!(invite(&d, "x@a.example", &london(2), "v2").status(), 302);
    end(&d, "v2");
    assert_eq!(
        metric(&d, "tollgate_velocity_warnings_total{tenant=\"a\"}"),
        "1"
    );
    assert!(
        d.stderr().contains("velocity rule's warn threshold passed"),
        "{}",
        d.stderr()
    );
    let r = invite(&d, "x@a.example", &london(3), "v3");
    assert_eq!(reason(&r), Some("rate_limit_reached"), "{}", r.text);
    assert!(r.header("Retry-After").is_some(), "{}", r.text);
    assert!(
        d.stderr().contains("velocity +4420 2 reached"),
        "{}",
        d.stderr()
    );
    // Elsewhere in the UK is not watched.
    assert_eq!(
        invite(&d, "x@a.example", "+441614960000", "v4").status(),
        302
    );
}

#[test]
fn high_risk_numbers_are_refused_unless_the_tenant_allows_them() {
    let d = start();
    for (i, n) in [
        "+8816123456789",
        "+88216123456",
        "+85021234567",
        "+6922471234",
    ]
    .iter()
    .enumerate()
    {
        let r = invite(&d, "x@a.example", n, &format!("h{i}"));
        assert_eq!(
            (r.status(), reason(&r)),
            (403, Some("high_risk_destination")),
            "{n}: {}",
            r.text
        );
        let r = invite(&d, "w@b.example", n, &format!("hb{i}"));
        assert_ne!(reason(&r), Some("high_risk_destination"), "{n}: {}", r.text);
    }
    let v = decide(&d, "x@a.example", "+8816123456789");
    assert_eq!(v["limit"]["destination"], "+881", "{v}");
    // Emergency calls are never limited.
    for i in 0..5 {
        assert_eq!(
            invite(&d, "g@a.example", "911", &format!("e{i}")).status(),
            302
        );
    }
}

#[test]
fn credits_calls_are_held_to_a_dearest_rate_and_a_daily_cap() {
    let d = start();
    // GB mobile is 0.090 a minute: dearer than 0.06.
    let r = invite(&d, "c@a.example", "+447400123456", "p1");
    assert_eq!(reason(&r), Some("destination_rate_too_high"), "{}", r.text);
    let v = decide(&d, "c@a.example", "+447400123456");
    assert_eq!(
        (v["limit"]["limit"].as_str(), v["limit"]["current"].as_str()),
        (Some("0.060000"), Some("0.090000")),
        "{v}"
    );
    // Mexico is 0.050: admitted, and 2.00 a day pays 40 minutes of it: 30, then 10, then none.
    let r = invite(&d, "c@a.example", "+525512345678", "p2");
    assert_eq!(
        (
            r.header("X-Tollgate-Basis"),
            r.header("X-Tollgate-Max-Duration")
        ),
        (Some("credits"), Some("1800")),
        "{}",
        r.text
    );
    let (s, _) = d.http("POST", "/v1/calls/p2/end", r#"{"billable_seconds": 1800}"#);
    assert_eq!(s, 200);
    let r = invite(&d, "c@a.example", "+525512345678", "p3");
    assert_eq!(
        r.header("X-Tollgate-Max-Duration"),
        Some("600"),
        "{}",
        r.text
    );
    let r = invite(&d, "c@a.example", "+525512345678", "p4");
    assert_eq!(reason(&r), Some("daily_spend_limit_reached"), "{}", r.text);
}

#[test]
fn shadow_mode_admits_and_reports_what_it_would_refuse() {
    let shadow = "[enforcement]\nshadow = [\"call_limit_reached\", \"high_risk_destination\", \"pstn_disabled_by_policy\"]\n";
    let d = start_with(&directory(TENANTS), None, shadow);
    assert_eq!(invite(&d, "g@a.example", US, "s1").status(), 302);
    let r = invite(&d, "g@a.example", US, "s2");
    assert_eq!(r.status(), 302, "{}", r.text);
    assert_eq!(
        r.header("X-Tollgate-Shadow"),
        Some("call_limit_reached"),
        "{}",
        r.text
    );
    // The Marshall Islands: high risk, and on the international list (a satellite number,
    // high risk shadowed, would still be off it: destination_not_supported).
    let r = invite(&d, "w@b.example", "+6922471234", "s3");
    assert_eq!(r.status(), 302, "{}", r.text);
    assert_eq!(
        r.header("X-Tollgate-Shadow"),
        None,
        "b allows them: {}",
        r.text
    );
    let r = invite(&d, "x@a.example", "+6922471234", "s4");
    assert_eq!(
        r.header("X-Tollgate-Basis"),
        Some("international_pool"),
        "{}",
        r.text
    );
    assert_eq!(
        r.header("X-Tollgate-Shadow"),
        Some("high_risk_destination"),
        "{}",
        r.text
    );
    // A policy reason: off may not call the PSTN, and is admitted as if it could.
    let r = invite(&d, "off@a.example", US, "s5");
    assert_eq!(
        r.header("X-Tollgate-Shadow"),
        Some("pstn_disabled_by_policy"),
        "{}",
        r.text
    );
    end(&d, "s5");
    // A reason not listed still refuses: y's fifth call in a minute.
    for i in 0..4 {
        let id = format!("t{i}");
        assert_eq!(invite(&d, "y@a.example", US, &id).status(), 302);
        end(&d, &id);
    }
    assert_eq!(
        reason(&invite(&d, "y@a.example", US, "t4")),
        Some("rate_limit_reached")
    );
    // g's second call, and each of y's four: the tenant's fourth live call (g holds two, x one).
    assert_eq!(
        metric(
            &d,
            "tollgate_shadow_rejections_total{reason=\"call_limit_reached\"}"
        ),
        "5"
    );
    assert_eq!(
        metric(
            &d,
            "tollgate_shadow_rejections_total{reason=\"high_risk_destination\"}"
        ),
        "1"
    );
    assert!(
        d.stderr()
            .contains("shadow: would have been refused, admitted"),
        "{}",
        d.stderr()
    );
    let v = decide(&d, "g@a.example", US);
    assert_eq!(
        (v["outcome"].as_str(), v["shadow_reason"].as_str()),
        (Some("admit"), Some("call_limit_reached")),
        "{v}"
    );
}

#[test]
fn a_reason_that_cannot_be_shadowed_is_a_config_error() {
    let dir = directory(TENANTS);
    let config = dir.join("tollgate.toml");
    std::fs::write(
        &config,
        format!(
            "[directory]\npath = \"{}\"\n[enforcement]\nshadow = [\"pool_exhausted\"]\n",
            dir.display()
        ),
    )
    .expect("config");
    let out = Command::new(tollgate_bin())
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .expect("run tollgate check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("tollgate.toml:4")
            && stderr.contains("[enforcement].shadow")
            && stderr.contains("cannot be shadowed"),
        "{stderr}"
    );
}

#[test]
fn limits_survive_kill_9() {
    let dir = directory(TENANTS);
    let ledger = temp_dir("abuse-ledger").join("ledger.db");
    let d = start_with(&dir, Some(&ledger), "");
    assert_eq!(invite(&d, "x@a.example", US, "k1").status(), 302);
    assert_eq!(invite(&d, "x@a.example", US, "k2").status(), 302);
    for i in 0..2 {
        let id = format!("ky{i}");
        assert_eq!(invite(&d, "y@a.example", US, &id).status(), 302);
        end(&d, &id);
    }
    d.kill9();
    let d = start_with(&dir, Some(&ledger), "");
    // x's two calls are still live.
    assert_eq!(
        reason(&invite(&d, "x@a.example", US, "k3")),
        Some("call_limit_reached")
    );
    // y's two admissions are still in its minute: two more, then refused.
    for i in 2..4 {
        let id = format!("ky{i}");
        assert_eq!(invite(&d, "y@a.example", US, &id).status(), 302, "{id}");
        end(&d, &id);
    }
    assert_eq!(
        reason(&invite(&d, "y@a.example", US, "ky4")),
        Some("rate_limit_reached")
    );
}

#[test]
fn a_reload_applies_a_lower_limit_at_once_and_live_calls_still_count() {
    let dir = directory(TENANTS);
    let d = start_with(&dir, None, "");
    assert_eq!(invite(&d, "x@a.example", US, "d1").status(), 302);
    std::fs::write(
        dir.join("tenants.toml"),
        TENANTS.replace("user_concurrent_calls = 2", "user_concurrent_calls = 1"),
    )
    .expect("rewrite");
    let (status, body) = d.http("POST", "/v1/reload", "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        reason(&invite(&d, "x@a.example", US, "d2")),
        Some("call_limit_reached")
    );
    end(&d, "d1");
    assert_eq!(invite(&d, "x@a.example", US, "d3").status(), 302);
}

/// `tollgate decide` on the daemon's config reads its ledger: the limits it reports are those
/// the daemon holds (x's two live calls), in JSON and in words.
#[test]
fn the_decide_cli_sees_the_daemons_live_calls() {
    let dir = directory(TENANTS);
    let ledger = temp_dir("abuse-decide").join("ledger.db");
    let d = start_with(&dir, Some(&ledger), "");
    assert_eq!(invite(&d, "x@a.example", US, "c1").status(), 302);
    assert_eq!(invite(&d, "x@a.example", US, "c2").status(), 302);
    let run = |json: bool| {
        let mut cmd = Command::new(tollgate_bin());
        cmd.args(["decide", "--config"]).arg(d.config_path()).args([
            "--caller",
            "x@a.example",
            "--dial",
            US,
        ]);
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().expect("run tollgate decide");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let v: Value = serde_json::from_str(run(true).trim()).expect("JSON");
    assert_eq!(v["reason"], "call_limit_reached", "{v}");
    assert_eq!(v["pools"], "ledger", "{v}");
    assert_eq!(
        (v["limit"]["name"].as_str(), v["limit"]["current"].as_u64()),
        (Some("user_concurrent_calls"), Some(3)),
        "{v}"
    );
    let text = run(false);
    assert!(
        text.contains("limit:") && text.contains("user_concurrent_calls 2 reached (3 live calls)"),
        "{text}"
    );
}
