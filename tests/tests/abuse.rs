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
a,i@a.example,US,MCOEV;MCOPSTN2,,
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

/// Tenants each with one concern, for the tests below: `r` a tenant-wide minute, `v` a
/// velocity rule on a region, `n` no limits written (the defaults), `u` a per-user live limit
/// one user's own column lifts, `w` no tenant-wide limit until a reload sets one.
const MORE_TENANTS: &str = r#"
[[tenant]]
id = "r"
domains = ["r.example"]
[tenant.limits]
calls_per_minute = 3
user_calls_per_minute = 0
user_concurrent_calls = 0

[[tenant]]
id = "v"
domains = ["v.example"]
[[tenant.velocity]]
destination = "MX"
window_seconds = 120
warn = 1
block = 2

[[tenant]]
id = "n"
domains = ["n.example"]

[[tenant]]
id = "u"
domains = ["u.example"]
[tenant.limits]
user_concurrent_calls = 2

[[tenant]]
id = "w"
domains = ["w.example"]
"#;

const MORE_USERS: &str = "tenant,user,usage_location,licenses,concurrent_calls
r,r1@r.example,US,MCOEV;MCOPSTN2,
r,r2@r.example,US,MCOEV;MCOPSTN2,
v,v1@v.example,US,MCOEV;MCOPSTN2,
v,v2@v.example,US,MCOEV;MCOPSTN2,
v,v3@v.example,US,MCOEV;MCOPSTN2,
n,n1@n.example,US,MCOEV;MCOPSTN2,
u,u1@u.example,US,MCOEV;MCOPSTN2,
u,z@u.example,US,MCOEV;MCOPSTN2,0
w,w1@w.example,US,MCOEV;MCOPSTN2,
w,w2@w.example,US,MCOEV;MCOPSTN2,
w,w3@w.example,US,MCOEV;MCOPSTN2,
";

/// Mexico City: on the international list, paid from the international pool.
const MX: &str = "+525512345678";

fn more_directory(tenants: &str) -> PathBuf {
    let dir = directory(tenants);
    std::fs::write(dir.join("users.csv"), MORE_USERS).expect("users");
    dir
}

fn start_more() -> Daemon {
    start_with(&more_directory(MORE_TENANTS), None, "")
}

fn retry_after(r: &SipResponse) -> u64 {
    r.header("Retry-After")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `tollgate decide --json` on the daemon's config (and so its ledger).
fn decide_cli(d: &Daemon, caller: &str, dial: &str) -> Value {
    let out = Command::new(tollgate_bin())
        .args(["decide", "--json", "--config"])
        .arg(d.config_path())
        .args(["--caller", caller, "--dial", dial])
        .output()
        .expect("run tollgate decide");
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[test]
fn a_tenants_calls_per_minute_hold_across_its_users_and_a_dry_run_counts_nothing() {
    let d = start_more();
    // Dry runs reserve nothing: the minute is still empty after them.
    for _ in 0..5 {
        assert_eq!(decide(&d, "r1@r.example", US)["outcome"], "admit");
    }
    for (i, who) in ["r1", "r2", "r1"].iter().enumerate() {
        let id = format!("tm{i}");
        let r = invite(&d, &format!("{who}@r.example"), US, &id);
        assert_eq!(r.status(), 302, "{id}: {}", r.text);
        end(&d, &id);
    }
    let req = SipRequest::invite("sip:r2@r.example", US, "tm3");
    let r = d.udp(&req.render());
    assert_eq!(
        (r.status(), reason(&r)),
        (403, Some("rate_limit_reached")),
        "{}",
        r.text
    );
    assert_eq!(
        r.header("Reason"),
        Some("Q.850;cause=21;text=\"rate_limit_reached\""),
        "{}",
        r.text
    );
    assert!((1..=60).contains(&retry_after(&r)), "{}", r.text);
    // A retransmission gets the bytes first sent.
    assert_eq!(d.udp(&req.render()).text, r.text);
    let v = decide(&d, "r2@r.example", US);
    assert_eq!(v["reason"], "rate_limit_reached", "{v}");
    assert_eq!(v["limit"]["name"], "calls_per_minute", "{v}");
    assert_eq!(
        (v["limit"]["limit"].as_u64(), v["limit"]["current"].as_u64()),
        (Some(3), Some(4)),
        "{v}"
    );
    assert!(
        v["limit"]["retry_after"]
            .as_u64()
            .is_some_and(|s| (1..=60).contains(&s)),
        "{v}"
    );
    // Another tenant is not held by it.
    assert_eq!(invite(&d, "n1@n.example", US, "tm4").status(), 302);
}

#[test]
fn a_velocity_rule_on_a_region_counts_every_user_of_the_tenant() {
    let d = start_more();
    assert_eq!(invite(&d, "v1@v.example", MX, "vr1").status(), 302);
    end(&d, "vr1");
    // The next one passes the warn threshold: decide says so, and admits.
    let v = decide(&d, "v2@v.example", MX);
    assert_eq!(v["outcome"], "admit", "{v}");
    assert_eq!(
        (
            v["warning"]["name"].as_str(),
            v["warning"]["destination"].as_str()
        ),
        (Some("velocity"), Some("MX")),
        "{v}"
    );
    let r = invite(&d, "v2@v.example", "+528112345678", "vr2");
    assert_eq!(r.status(), 302, "{}", r.text);
    end(&d, "vr2");
    assert_eq!(
        metric(&d, "tollgate_velocity_warnings_total{tenant=\"v\"}"),
        "1"
    );
    // The third of the tenant to Mexico is refused, whoever places it.
    let v = decide(&d, "v3@v.example", MX);
    assert_eq!(v["reason"], "rate_limit_reached", "{v}");
    assert_eq!(
        (
            v["limit"]["name"].as_str(),
            v["limit"]["destination"].as_str(),
            v["limit"]["limit"].as_u64(),
            v["limit"]["current"].as_u64()
        ),
        (Some("velocity"), Some("MX"), Some(2), Some(3)),
        "{v}"
    );
    let r = invite(&d, "v3@v.example", MX, "vr3");
    assert_eq!(reason(&r), Some("rate_limit_reached"), "{}", r.text);
    assert!((1..=120).contains(&retry_after(&r)), "{}", r.text);
    assert!(
        d.stderr().contains("velocity MX 2 reached"),
        "{}",
        d.stderr()
    );
    // Other destinations are not watched.
    assert_eq!(invite(&d, "v3@v.example", US, "vr4").status(), 302);
}

#[test]
fn a_tenant_that_writes_no_limits_has_the_default_ones() {
    let d = start_more();
    for i in 0..20 {
        let r = invite(&d, "n1@n.example", US, &format!("dn{i}"));
        assert_eq!(r.status(), 302, "call {i}: {}", r.text);
    }
    let r = invite(&d, "n1@n.example", US, "dn20");
    assert_eq!(reason(&r), Some("call_limit_reached"), "{}", r.text);
    let v = decide(&d, "n1@n.example", US);
    assert_eq!(
        (
            v["limit"]["name"].as_str(),
            v["limit"]["limit"].as_u64(),
            v["limit"]["current"].as_u64()
        ),
        (Some("user_concurrent_calls"), Some(20), Some(21)),
        "{v}"
    );
    for i in 0..20 {
        end(&d, &format!("dn{i}"));
    }
    // 60 admissions a minute: 40 more, then refused.
    for i in 21..61 {
        let id = format!("dn{i}");
        let r = invite(&d, "n1@n.example", US, &id);
        assert_eq!(r.status(), 302, "{id}: {}", r.text);
        end(&d, &id);
    }
    let r = invite(&d, "n1@n.example", US, "dn61");
    assert_eq!(reason(&r), Some("rate_limit_reached"), "{}", r.text);
    assert_eq!(
        decide(&d, "n1@n.example", US)["limit"]["limit"].as_u64(),
        Some(60)
    );
}

#[test]
fn a_release_frees_a_place_and_a_users_column_of_0_lifts_their_limit() {
    let d = start_more();
    assert_eq!(invite(&d, "u1@u.example", US, "ur1").status(), 302);
    assert_eq!(invite(&d, "u1@u.example", US, "ur2").status(), 302);
    assert_eq!(
        reason(&invite(&d, "u1@u.example", US, "ur3")),
        Some("call_limit_reached")
    );
    // The same Call-ID on another branch (a proxy trying again) is the same call: its 302.
    let mut again = SipRequest::invite("sip:u1@u.example", US, "ur2");
    again.branch = "z9hG4bK-ur2-again".into();
    assert_eq!(d.udp(&again.render()).status(), 302);
    let (status, body) = d.http("POST", "/v1/calls/ur1/release", "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(invite(&d, "u1@u.example", US, "ur4").status(), 302);
    // z's users.csv concurrent_calls is 0: no per-user limit, whatever the tenant's.
    for i in 0..4 {
        let r = invite(&d, "z@u.example", US, &format!("uz{i}"));
        assert_eq!(r.status(), 302, "call {i}: {}", r.text);
    }
}

#[test]
fn shadowed_rates_prices_and_daily_caps_admit_and_report() {
    let shadow = "[enforcement]\nshadow = [\"rate_limit_reached\", \"destination_rate_too_high\", \"daily_spend_limit_reached\"]\n";
    let d = start_with(&directory(TENANTS), None, shadow);
    for i in 0..4 {
        let id = format!("sr{i}");
        assert_eq!(invite(&d, "x@a.example", US, &id).status(), 302);
        end(&d, &id);
    }
    // x's fifth call in the minute: admitted, no Retry-After.
    let r = invite(&d, "x@a.example", US, "sr4");
    assert_eq!(r.status(), 302, "{}", r.text);
    assert_eq!(
        r.header("X-Tollgate-Shadow"),
        Some("rate_limit_reached"),
        "{}",
        r.text
    );
    assert_eq!(r.header("Retry-After"), None, "{}", r.text);
    end(&d, "sr4");
    // The CLI reads the daemon's ledger: x's minute is full there too.
    let v = decide_cli(&d, "x@a.example", US);
    assert_eq!(
        (v["outcome"].as_str(), v["shadow_reason"].as_str()),
        (Some("admit"), Some("rate_limit_reached")),
        "{v}"
    );
    assert_eq!(v["limit"]["name"], "user_calls_per_minute", "{v}");
    // A GB mobile, dearer than the tenant's dearest rate: admitted on credits.
    let r = invite(&d, "c@a.example", "+447400123456", "sp1");
    assert_eq!(
        (
            r.status(),
            r.header("X-Tollgate-Basis"),
            r.header("X-Tollgate-Shadow")
        ),
        (302, Some("credits"), Some("destination_rate_too_high")),
        "{}",
        r.text
    );
    // That call's grant shrank to what the 2.00 day had left: the next one is over the cap,
    // admitted in full.
    let r = invite(&d, "c@a.example", "+525512345678", "sp2");
    assert_eq!(
        (
            r.status(),
            r.header("X-Tollgate-Shadow"),
            r.header("X-Tollgate-Max-Duration")
        ),
        (302, Some("daily_spend_limit_reached"), Some("1800")),
        "{}",
        r.text
    );
    for reason in [
        "rate_limit_reached",
        "destination_rate_too_high",
        "daily_spend_limit_reached",
    ] {
        assert_eq!(
            metric(
                &d,
                &format!("tollgate_shadow_rejections_total{{reason=\"{reason}\"}}")
            ),
            "1",
            "{reason}"
        );
    }
}

#[test]
fn serve_refuses_a_reason_that_cannot_be_shadowed() {
    let dir = directory(TENANTS);
    let config = dir.join("tollgate.toml");
    std::fs::write(
        &config,
        format!(
            "[directory]\npath = \"{}\"\n[enforcement]\nshadow = [\"call_limit_reached\", \"credits_exhausted\"]\n",
            dir.display()
        ),
    )
    .expect("config");
    let out = Command::new(tollgate_bin())
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .expect("run tollgate serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("tollgate.toml:4")
            && stderr.contains("[enforcement].shadow")
            && stderr.contains("credits_exhausted"),
        "{stderr}"
    );
}

/// The tenant's live calls, a velocity window and the day's spend, as well as a user's, are
/// read back from the ledger after `kill -9`; a restored call ends over HTTP.
#[test]
fn tenant_velocity_and_daily_counts_survive_kill_9() {
    let dir = directory(TENANTS);
    let ledger = temp_dir("abuse-ledger-t").join("ledger.db");
    let d = start_with(&dir, Some(&ledger), "");
    let london = |i: u32| format!("+44207946{i:04}");
    for i in 1..3 {
        let id = format!("kv{i}");
        assert_eq!(invite(&d, "i@a.example", &london(i), &id).status(), 302);
        end(&d, &id);
    }
    let r = invite(&d, "c@a.example", MX, "kc1");
    assert_eq!(
        r.header("X-Tollgate-Max-Duration"),
        Some("1800"),
        "{}",
        r.text
    );
    let (s, _) = d.http("POST", "/v1/calls/kc1/end", r#"{"billable_seconds": 1800}"#);
    assert_eq!(s, 200);
    // The tenant's three places: x's two and g's one.
    for (who, id) in [("x", "kt1"), ("x", "kt2"), ("g", "kt3")] {
        let r = invite(&d, &format!("{who}@a.example"), US, id);
        assert_eq!(r.status(), 302, "{id}: {}", r.text);
    }
    d.kill9();
    let d = start_with(&dir, Some(&ledger), "");
    let r = invite(&d, "y@a.example", US, "kt4");
    assert_eq!(reason(&r), Some("call_limit_reached"), "{}", r.text);
    assert_eq!(
        decide(&d, "y@a.example", US)["limit"]["name"],
        "concurrent_calls"
    );
    // A call restored from the ledger ends like any other, and gives its place back.
    end(&d, "kt1");
    let r = invite(&d, "i@a.example", &london(3), "kv3");
    assert_eq!(reason(&r), Some("rate_limit_reached"), "{}", r.text);
    assert_eq!(
        decide(&d, "i@a.example", &london(3))["limit"]["name"],
        "velocity"
    );
    // 1.50 of today's 2.00 was spent before the kill: 10 minutes at 0.05 are left.
    let r = invite(&d, "c@a.example", MX, "kc2");
    assert_eq!(
        r.header("X-Tollgate-Max-Duration"),
        Some("600"),
        "{}",
        r.text
    );
}

/// A reload that gives a tenant a tenant-wide limit it had none of counts the calls it
/// already holds, live and in the minute; one that lifts a limit lets the next call in.
#[test]
fn a_reload_that_sets_a_tenant_wide_limit_counts_the_calls_already_held() {
    let dir = more_directory(MORE_TENANTS);
    let d = start_with(&dir, None, "");
    assert_eq!(invite(&d, "w1@w.example", US, "wr1").status(), 302);
    assert_eq!(invite(&d, "w2@w.example", US, "wr2").status(), 302);
    let with = |limits: &str| {
        std::fs::write(
            dir.join("tenants.toml"),
            MORE_TENANTS.replace(
                "id = \"w\"\ndomains = [\"w.example\"]\n",
                &format!("id = \"w\"\ndomains = [\"w.example\"]\n[tenant.limits]\n{limits}\n"),
            ),
        )
        .expect("rewrite");
        let (status, body) = d.http("POST", "/v1/reload", "");
        assert_eq!(status, 200, "{body}");
    };
    with("concurrent_calls = 2\ncalls_per_minute = 2");
    let r = invite(&d, "w3@w.example", US, "wr3");
    assert_eq!(reason(&r), Some("call_limit_reached"), "{}", r.text);
    let v = decide(&d, "w3@w.example", US);
    assert_eq!(
        (v["limit"]["name"].as_str(), v["limit"]["current"].as_u64()),
        (Some("concurrent_calls"), Some(3)),
        "{v}"
    );
    // One ends: a live place is free, but both admissions are in the tenant's minute.
    end(&d, "wr1");
    let r = invite(&d, "w3@w.example", US, "wr4");
    assert_eq!(reason(&r), Some("rate_limit_reached"), "{}", r.text);
    // Lifted again: the next call is admitted at once.
    with("concurrent_calls = 0\ncalls_per_minute = 0");
    assert_eq!(invite(&d, "w3@w.example", US, "wr5").status(), 302);
}
