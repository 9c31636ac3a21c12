//! End to end: the HTTP API of `tollgate serve` (DESIGN §5), reload and shutdown.

use std::time::{Duration, Instant};

use serde_json::Value;
use tollgate_tests::daemon::{temp_dir, Daemon, Options, SipRequest};
use tollgate_tests::repo_root;

const ALICE: &str = "sip:alice@contoso.com";

fn us_pool(d: &Daemon) -> Value {
    let (status, v) = d.get_json("/v1/pools?tenant=contoso");
    assert_eq!(status, 200);
    let pools = v["pools"].as_array().unwrap();
    assert!(pools.iter().all(|p| p["tenant"] == "contoso"), "{v}");
    pools
        .iter()
        .find(|p| p["region"] == "US" && p["sku"] == "MCOPSTN1" && p["kind"] == "domestic")
        .cloned()
        .unwrap_or_else(|| panic!("no US MCOPSTN1 pool in {v}"))
}

#[test]
fn end_extend_and_call_state() {
    let d = Daemon::start();
    let before = us_pool(&d);
    assert_eq!(before["used_seconds"], 0);
    let r = d.udp(&SipRequest::invite(ALICE, "+12065550100", "http-1").render());
    assert_eq!(r.status(), 302);
    assert_eq!(us_pool(&d)["reserved_seconds"], 1800);

    let (status, body) = d.http("POST", "/v1/calls/http-1/extend", "");
    assert_eq!(status, 200, "{body}");
    let x: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(x["granted_seconds"], 1800);
    assert_eq!(x["max_duration"], 3600);

    let (status, body) = d.http("POST", "/v1/calls/http-1/end", "{\"billable_seconds\": 61}");
    assert_eq!(status, 200, "{body}");
    let s: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(s["state"], "settled");
    assert_eq!(s["charged_seconds"], 120, "rounded up to the minute");
    assert_eq!(s["changed"], true);
    let pool = us_pool(&d);
    assert_eq!(pool["used_seconds"], 120);
    assert_eq!(pool["reserved_seconds"], 0);
    assert_eq!(
        pool["remaining_seconds"].as_u64().unwrap(),
        pool["capacity_seconds"].as_u64().unwrap() - 120
    );

    // Twice is harmless.
    let (status, body) = d.http("POST", "/v1/calls/http-1/end", "{\"billable_seconds\": 61}");
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["changed"],
        false
    );
    assert_eq!(us_pool(&d)["used_seconds"], 120);

    let (status, call) = d.get_json("/v1/calls/http-1");
    assert_eq!(status, 200);
    assert_eq!(call["state"], "settled");
    assert_eq!(call["tenant"], "contoso");
    assert_eq!(call["billable_seconds"], 61);
    assert_eq!(call["charged_seconds"], 120);

    // Errors: JSON with error and reason.
    let (status, e) = d.get_json("/v1/calls/nope");
    assert_eq!(status, 404);
    assert_eq!(e["reason"], "unknown_call");
    assert!(e["error"].is_string());
    let (status, body) = d.http("POST", "/v1/calls/nope/end", "{\"billable_seconds\": 1}");
    assert_eq!(status, 404, "{body}");
    let (status, body) = d.http("POST", "/v1/calls/http-1/end", "{\"seconds\": 1}");
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["reason"],
        "bad_request"
    );
    let (status, body) = d.http("POST", "/v1/calls/http-1/extend", "");
    assert_eq!(status, 409, "{body}");
}

#[test]
fn decide_dry_run_and_metrics() {
    let d = Daemon::start();
    let (status, v) = d.get_json("/v1/decide?caller=alice%40contoso.com&dial=%2B12065550100");
    assert_eq!(status, 200);
    assert_eq!(v["outcome"], "admit");
    assert_eq!(v["basis"], "domestic_pool");
    assert_eq!(v["route"], "pstn-us.example.net");
    assert_eq!(
        us_pool(&d)["reserved_seconds"],
        0,
        "a dry run reserves nothing"
    );
    let (status, v) = d.get_json("/v1/decide?caller=alice%40contoso.com&dial=%2B442079460000");
    assert_eq!(status, 200);
    assert_eq!(v["reason"], "international_not_in_plan");
    let (status, v) = d.get_json("/v1/decide?caller=alice%40contoso.com");
    assert_eq!(status, 400);
    assert_eq!(v["reason"], "bad_request");

    assert_eq!(d.http("GET", "/healthz", "").0, 200);
    d.udp(&SipRequest::invite(ALICE, "+12065550100", "m-1").render());
    d.udp(&SipRequest::invite(ALICE, "+1206", "m-2").render());
    let (status, text) = d.http("GET", "/metrics", "");
    assert_eq!(status, 200);
    let remaining = us_pool(&d)["remaining_seconds"].as_u64().unwrap();
    let pool_gauge = format!(
        "tollgate_pool_remaining_seconds{{tenant=\"contoso\",region=\"US\",sku=\"MCOPSTN1\",kind=\"domestic\"}} {remaining}\n"
    );
    for needle in [
        "tollgate_decisions_total{outcome=\"admit\",reason=\"domestic_pool\"} 1",
        "tollgate_decisions_total{outcome=\"reject\",reason=\"incomplete_number\"} 1",
        "tollgate_decision_seconds_count 2",
        "tollgate_sip_messages_total{direction=\"in\",method_or_status=\"INVITE\",transport=\"udp\"} 2",
        "tollgate_sip_messages_total{direction=\"out\",method_or_status=\"302\",transport=\"udp\"} 1",
        "tollgate_sip_parse_errors_total 0",
        "tollgate_reservations_active 1",
        "tollgate_directory_users ",
        &pool_gauge,
        "tollgate_reloads_total{result=\"error\"} 0",
    ] {
        assert!(text.contains(needle), "{needle} missing in\n{text}");
    }
}

/// Polls `/metrics` until it contains `needle` (SIGHUP reloads asynchronously).
fn wait_for_metric(d: &Daemon, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, text) = d.http("GET", "/metrics", "");
        if text.contains(needle) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{needle} never appeared in\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn reload_good_and_bad() {
    let dir = tollgate_tests::shipped_directory("directory");
    // Only the reloads asked for here: no file watch (`serve_watch.rs` tests that).
    let d = Daemon::start_opts(&Options {
        directory: Some(&dir),
        directory_extra: "watch = false",
        ..Options::default()
    });
    let (status, body) = d.http("POST", "/v1/reload", "");
    assert_eq!(status, 200, "{body}");
    wait_for_metric(&d, "tollgate_reloads_total{result=\"ok\"} 1");

    // A broken users.csv: the reload fails, the old snapshot keeps answering.
    let users = std::fs::read_to_string(dir.join("users.csv")).unwrap();
    std::fs::write(
        dir.join("users.csv"),
        format!("{users}contoso,broken,,ZZ,,,\n"),
    )
    .unwrap();
    let (status, body) = d.http("POST", "/v1/reload", "");
    assert_eq!(status, 500, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["reason"], "reload_failed");
    assert!(v["error"].as_str().unwrap().contains("users.csv"), "{v}");
    wait_for_metric(&d, "tollgate_reloads_total{result=\"error\"} 1");
    let r = d.udp(&SipRequest::invite(ALICE, "+12065550100", "after-bad").render());
    assert_eq!(r.status(), 302, "{}", r.text);

    // SIGHUP, with a user removed: the new snapshot answers.
    let without_alice: String = users
        .lines()
        .filter(|l| !l.contains("alice@contoso.com"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(dir.join("users.csv"), without_alice).unwrap();
    d.signal("HUP");
    wait_for_metric(&d, "tollgate_reloads_total{result=\"ok\"} 2");
    let r = d.udp(&SipRequest::invite(ALICE, "+12065550100", "after-hup").render());
    assert_eq!(r.status(), 403, "{}", r.text);
    assert_eq!(r.header("X-Tollgate-Reason"), Some("unknown_caller"));
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A reload re-reads `tollgate.toml`: trusted peers change at once, a bad file changes
/// nothing, other tables wait for a restart.
#[test]
fn reload_applies_trusted_peers() {
    let d = Daemon::start_opts(&Options {
        sip: "trusted_peers = [\"10.0.0.0/8\"]",
        directory_extra: "watch = false",
        ..Options::default()
    });
    let invite = |id: &str| d.udp(&SipRequest::invite(ALICE, "+12065550100", id).render());
    let r = invite("peers-1");
    assert_eq!(r.status(), 403, "{}", r.text);
    assert_eq!(r.header("X-Tollgate-Reason"), Some("untrusted_peer"));

    let path = d.config_path();
    let original = std::fs::read_to_string(&path).unwrap();
    let trusting = original.replace("10.0.0.0/8", "127.0.0.0/8");
    std::fs::write(&path, &trusting).unwrap();
    let (status, body) = d.http("POST", "/v1/reload", "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(invite("peers-2").status(), 302);

    // Unparseable: the reload fails whole, naming the file and the field; peers unchanged.
    std::fs::write(&path, format!("{trusting}\n[sip2]\nx = 1\n")).unwrap();
    let (status, body) = d.http("POST", "/v1/reload", "");
    assert_eq!(status, 500, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let error = v["error"].as_str().unwrap();
    assert!(
        error.contains("tollgate.toml") && error.contains("sip2"),
        "{v}"
    );
    wait_for_metric(&d, "tollgate_reloads_total{result=\"error\"} 1");
    assert_eq!(invite("peers-3").status(), 302);

    // SIGHUP: back to 10/8, and a log format change that needs a restart (logged, not
    // applied).
    std::fs::write(&path, format!("{original}\n[log]\nformat = \"json\"\n")).unwrap();
    d.signal("HUP");
    wait_for_metric(&d, "tollgate_reloads_total{result=\"ok\"} 2");
    assert_eq!(invite("peers-4").status(), 403);
    assert!(
        d.stderr().contains("takes effect on restart"),
        "{}",
        d.stderr()
    );
}

#[test]
fn sigterm_exits_zero() {
    let d = Daemon::start();
    assert_eq!(
        d.udp(&SipRequest::invite(ALICE, "911", "t-1").render())
            .status(),
        302
    );
    let status = d.signal_and_wait("TERM");
    assert_eq!(status.code(), Some(0));
}

/// `tollgate serve` over a config file with `text`: exit code and stderr.
fn serve_with_config(text: &str) -> (Option<i32>, String) {
    let dir = temp_dir("badconfig");
    let config = dir.join("tollgate.toml");
    std::fs::write(&config, text).unwrap();
    let out = std::process::Command::new(tollgate_tests::tollgate_bin())
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_config_exits_2() {
    let (code, stderr) = serve_with_config("[sip]\nlisten = [\"sctp:1.2.3.4:5\"]\nbogus = 1\n");
    assert_eq!(code, Some(2));
    assert!(stderr.contains("tollgate.toml:3"), "{stderr}");
    let (code, stderr) =
        serve_with_config("[sip]\nlisten = [\"sctp:1.2.3.4:5\"]\ntrusted_peers = [\"nope\"]\n");
    assert_eq!(code, Some(2));
    assert!(stderr.contains("[sip].listen"), "{stderr}");
    assert!(stderr.contains("[sip].trusted_peers"), "{stderr}");
}

#[test]
fn bearer_token_guards_v1() {
    let dir = temp_dir("token");
    let token = dir.join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let http = format!("token_file = \"{}\"", token.display());
    let d = Daemon::start_full("", &http, &repo_root().join("config"));
    let (status, body) = d.http("GET", "/v1/pools", "");
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["reason"],
        "bad_token"
    );
    let (status, _) = d.http_with("GET", "/v1/pools", "Authorization: Bearer nope\r\n", "");
    assert_eq!(status, 401);
    let (status, body) = d.http_with("GET", "/v1/pools", "Authorization: Bearer s3cret\r\n", "");
    assert_eq!(status, 200, "{body}");
    // Health and metrics stay open.
    assert_eq!(d.http("GET", "/metrics", "").0, 200);
    assert_eq!(d.http("GET", "/healthz", "").0, 200);
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}
