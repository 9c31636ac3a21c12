//! What an operator watches: the decision log (`[log]`, text or JSON lines on stderr), a
//! tenant's credits and spending (`GET /v1/tenants/{id}`) and the credits gauges of
//! `/metrics`, against the real binary. Run `cargo build --workspace --bins` first.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use tollgate_tests::daemon::{temp_dir, Daemon, Options, SipRequest};

/// The log tests must see the level they configure, whatever the shell running them set.
const NO_RUST_LOG: &[&str] = &["RUST_LOG"];

fn start(log: &str, directory: Option<&Path>) -> Daemon {
    Daemon::start_opts(&Options {
        directory,
        directory_extra: "watch = false",
        extra: log,
        env_remove: NO_RUST_LOG,
        ..Options::default()
    })
}

/// The complete lines of the daemon's stderr (a line being written is left out).
fn lines(d: &Daemon) -> Vec<String> {
    d.stderr()
        .split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .map(|l| l.trim_end().to_string())
        .collect()
}

/// Waits (up to 5 s) until some stderr line satisfies `f`; returns the log then.
fn wait_for_line(d: &Daemon, what: &str, f: impl Fn(&str) -> bool) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let all = lines(d);
        if all.iter().any(|l| f(l)) {
            return all;
        }
        assert!(
            Instant::now() < deadline,
            "no log line {what} in:\n{}",
            all.join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every line of a JSON log, parsed; panics on a line that is not one JSON object.
fn json_lines(all: &[String]) -> Vec<Value> {
    all.iter()
        .map(|l| {
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}"));
            assert!(v.is_object(), "not an object: {l}");
            v
        })
        .collect()
}

fn with_call_id<'a>(events: &'a [Value], call_id: &str, message: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["call_id"] == call_id && e["message"] == message)
        .collect()
}

#[test]
fn json_log_is_one_object_per_line_with_the_decision() {
    let d = start("[log]\nformat = \"json\"\nlevel = \"debug\"\n", None);
    // Ivan's dial-out policy is PSTNDisabled (rule 5).
    let ivan = SipRequest::invite("sip:ivan@contoso.com", "+12065550100", "op-json-ivan").render();
    let r = d.udp(&ivan);
    assert_eq!(r.status(), 403, "{}", r.text);
    let reason = r.header("X-Tollgate-Reason").expect("X-Tollgate-Reason");
    assert_eq!(reason, "pstn_disabled_by_policy");
    // A retransmission gets the same answer and logs no second decision.
    assert_eq!(d.udp(&ivan).status(), 403);
    // A caller the directory does not know: no tenant.
    let nobody = SipRequest::invite("sip:nobody@contoso.com", "+12065550100", "op-json-nobody");
    assert_eq!(d.udp(&nobody.render()).status(), 403);
    // An admit, at debug, with its basis and maximum duration.
    let alice = SipRequest::invite("sip:alice@contoso.com", "+12065550100", "op-json-alice");
    let r = d.udp(&alice.render());
    assert_eq!(r.status(), 302, "{}", r.text);

    let all = wait_for_line(&d, "for the admit", |l| l.contains("op-json-alice"));
    let events = json_lines(&all);
    assert!(events.len() >= 5, "{all:?}");
    for e in &events {
        for key in ["timestamp", "level", "target", "message"] {
            assert!(e.get(key).is_some(), "{key} missing in {e}");
        }
    }

    let rejects = with_call_id(&events, "op-json-ivan", "reject");
    assert_eq!(rejects.len(), 1, "one line per decision: {rejects:?}");
    let e = rejects[0];
    assert_eq!(e["level"], "INFO");
    assert_eq!(
        e["reason"], reason,
        "the log says what X-Tollgate-Reason says"
    );
    assert_eq!(e["tenant"], "contoso");
    assert_eq!(e["caller"], "ivan@contoso.com");
    assert_eq!(e["dialed"], "+12065550100");
    assert_eq!(e["status"], 403);
    assert!(
        e["rule"].as_str().is_some_and(|r| r.starts_with("5: ")),
        "rule 5 fired: {e}"
    );

    let e = with_call_id(&events, "op-json-nobody", "reject");
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0]["reason"], "unknown_caller");
    assert_eq!(e[0]["caller"], "nobody@contoso.com");
    assert!(e[0].get("tenant").is_none(), "no tenant: {}", e[0]);

    let admits = with_call_id(&events, "op-json-alice", "admit");
    assert_eq!(admits.len(), 1, "{admits:?}");
    let e = admits[0];
    assert_eq!(e["level"], "DEBUG");
    assert_eq!(e["basis"], "domestic_pool");
    assert_eq!(e["max_duration"], 1800);
    assert_eq!(e["tenant"], "contoso");
    assert_eq!(e["caller"], "alice@contoso.com");
}

#[test]
fn log_level_is_reloaded_and_text_format_still_works() {
    let d = start("[log]\nlevel = \"info\"\n", None);
    let ivan = SipRequest::invite("sip:ivan@contoso.com", "+12065550100", "op-text-ivan");
    assert_eq!(d.udp(&ivan.render()).status(), 403);
    let alice = SipRequest::invite("sip:alice@contoso.com", "+12065550100", "op-text-alice-1");
    assert_eq!(d.udp(&alice.render()).status(), 302);
    let all = wait_for_line(&d, "for the reject", |l| l.contains("op-text-ivan"));
    let line = all
        .iter()
        .find(|l| l.contains("op-text-ivan"))
        .expect("the reject");
    assert!(!line.starts_with('{'), "text, not JSON: {line}");
    for field in [
        " INFO ",
        "reject",
        "reason=\"pstn_disabled_by_policy\"",
        "tenant=\"contoso\"",
        "caller=\"ivan@contoso.com\"",
        "dialed=\"+12065550100\"",
    ] {
        assert!(line.contains(field), "{field} missing in {line}");
    }
    // Admits are at debug: not at info.
    assert!(!d.stderr().contains("op-text-alice-1"), "{}", d.stderr());

    // The level is reloaded: debug now shows the admits.
    let config = std::fs::read_to_string(d.config_path()).expect("config");
    let debug = config.replace("level = \"info\"", "level = \"debug\"");
    assert_ne!(config, debug);
    std::fs::write(d.config_path(), debug).expect("write config");
    let (status, body) = d.http("POST", "/v1/reload", "");
    assert_eq!(status, 200, "{body}");
    let alice = SipRequest::invite("sip:alice@contoso.com", "+12065550100", "op-text-alice-2");
    assert_eq!(d.udp(&alice.render()).status(), 302);
    let all = wait_for_line(&d, "for the admit after the reload", |l| {
        l.contains("op-text-alice-2")
    });
    let line = all
        .iter()
        .find(|l| l.contains("op-text-alice-2"))
        .expect("the admit");
    assert!(
        line.contains("DEBUG") && line.contains("basis=\"domestic_pool\""),
        "{line}"
    );
    assert!(line.contains("max_duration=1800"), "{line}");
}

/// The shipped directory with contoso's `user_spend_limit` at 0.50: two minutes at the default
/// rate (0.25 a minute) reach it.
fn directory_with_limit() -> PathBuf {
    let dir = tollgate_tests::shipped_directory("operator-dir");
    let tenants = std::fs::read_to_string(dir.join("tenants.toml")).expect("tenants");
    let limited = tenants.replace(
        "user_spend_limit = \"20.00\"",
        "user_spend_limit = \"0.50\"",
    );
    assert_ne!(
        tenants, limited,
        "the shipped contoso has no 20.00 limit any more"
    );
    std::fs::write(dir.join("tenants.toml"), limited).expect("write tenants");
    dir
}

/// The value of the series `name{tenant="…"}` in a scrape.
fn gauge(scrape: &str, name: &str, tenant: &str) -> f64 {
    let prefix = format!("{name}{{tenant=\"{tenant}\"}} ");
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{prefix} missing in\n{scrape}"))
}

fn scrape(d: &Daemon) -> String {
    let (status, body) = d.http("GET", "/metrics", "");
    assert_eq!(status, 200);
    body
}

#[test]
fn tenant_view_and_credits_metrics_follow_a_credits_call() {
    let dir = directory_with_limit();
    let d = start("", Some(&dir));

    let (status, t) = d.get_json("/v1/tenants/contoso");
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["tenant"], "contoso");
    assert_eq!(t["balance"], "250.000000");
    assert_eq!(t["configured"], "250.000000");
    assert_eq!(t["user_spend_limit"], "0.500000");
    assert_eq!(t["spend"], serde_json::json!([]));
    assert_eq!(t["live_calls"], 0);
    let (_, pools) = d.get_json("/v1/pools?tenant=contoso");
    assert_eq!(t["month"], pools["pools"][0]["month"], "{pools}");
    let m = scrape(&d);
    assert_eq!(gauge(&m, "tollgate_credits_balance", "contoso"), 250.0);
    assert_eq!(gauge(&m, "tollgate_credits_configured", "contoso"), 250.0);
    assert_eq!(gauge(&m, "tollgate_users_at_spend_limit", "contoso"), 0.0);
    assert_eq!(gauge(&m, "tollgate_credits_balance", "northwind"), 40.0);

    // Frank holds Communications Credits only: Sydney at the default 0.25 a minute, two
    // minutes granted (all the 0.50 limit pays for).
    let frank = |id: &str| SipRequest::invite("sip:frank@contoso.com", "+61293744000", id);
    let r = d.udp(&frank("op-credits-1").render());
    assert_eq!(r.status(), 302, "{}", r.text);
    assert_eq!(r.header("X-Tollgate-Basis"), Some("credits"));
    assert_eq!(r.header("X-Tollgate-Max-Duration"), Some("120"));

    let (_, t) = d.get_json("/v1/tenants/contoso");
    assert_eq!(t["balance"], "249.500000", "{t}");
    assert_eq!(t["configured"], "250.000000");
    assert_eq!(
        t["spend"],
        serde_json::json!([{"user": "frank@contoso.com", "spent": "0.500000"}])
    );
    assert_eq!(t["live_calls"], 1);
    let (_, other) = d.get_json("/v1/tenants/northwind");
    assert_eq!(other["live_calls"], 0, "{other}");
    assert_eq!(other["spend"], serde_json::json!([]));
    assert_eq!(other["user_spend_limit"], Value::Null);
    let m = scrape(&d);
    assert_eq!(gauge(&m, "tollgate_credits_balance", "contoso"), 249.5);
    assert_eq!(gauge(&m, "tollgate_credits_configured", "contoso"), 250.0);
    assert_eq!(gauge(&m, "tollgate_users_at_spend_limit", "contoso"), 1.0);
    assert_eq!(gauge(&m, "tollgate_users_at_spend_limit", "northwind"), 0.0);

    // At the limit: the next credits call is refused.
    let r = d.udp(&frank("op-credits-2").render());
    assert_eq!(r.header("X-Tollgate-Reason"), Some("spend_limit_reached"));

    // The call ends after 30 s: one minute charged, the rest goes back.
    let (status, body) = d.http(
        "POST",
        "/v1/calls/op-credits-1/end",
        "{\"billable_seconds\": 30}",
    );
    assert_eq!(status, 200, "{body}");
    let (_, t) = d.get_json("/v1/tenants/contoso");
    assert_eq!(t["balance"], "249.750000", "{t}");
    assert_eq!(
        t["spend"],
        serde_json::json!([{"user": "frank@contoso.com", "spent": "0.250000"}])
    );
    assert_eq!(t["live_calls"], 0);
    let m = scrape(&d);
    assert_eq!(gauge(&m, "tollgate_credits_balance", "contoso"), 249.75);
    assert_eq!(gauge(&m, "tollgate_users_at_spend_limit", "contoso"), 0.0);

    // An unknown tenant: the API's JSON error.
    let (status, e) = d.get_json("/v1/tenants/nosuch");
    assert_eq!(status, 404, "{e}");
    assert_eq!(e["reason"], "unknown_tenant");
    assert!(e["error"].is_string(), "{e}");
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tenant_view_is_under_the_v1_token() {
    let dir = temp_dir("operator-token");
    let token = dir.join("token");
    std::fs::write(&token, "s3cret\n").expect("token");
    let http = format!("token_file = \"{}\"", token.display());
    let d = Daemon::start_opts(&Options {
        http: &http,
        ..Options::default()
    });
    let (status, body) = d.http("GET", "/v1/tenants/contoso", "");
    assert_eq!(status, 401, "{body}");
    let (status, body) = d.http_with(
        "GET",
        "/v1/tenants/contoso",
        "Authorization: Bearer s3cret\r\n",
        "",
    );
    assert_eq!(status, 200, "{body}");
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `tollgate.toml` as written now, with `from` replaced by `to` (which must change it).
fn edit_config(d: &Daemon, from: &str, to: &str) {
    let config = std::fs::read_to_string(d.config_path()).expect("config");
    let edited = config.replace(from, to);
    assert_ne!(config, edited, "{from:?} is not in\n{config}");
    std::fs::write(d.config_path(), edited).expect("write config");
}

/// An INVITE and its answer over a TCP connection of its own; `None` if the connection is
/// closed unanswered (refused at `accept`).
fn tcp_invite(
    s: &mut std::net::TcpStream,
    call_id: &str,
) -> Option<tollgate_tests::daemon::SipResponse> {
    use std::io::Write;
    let msg = SipRequest::invite("sip:alice@contoso.com", "+12065550100", call_id)
        .tcp()
        .render();
    s.write_all(msg.as_bytes()).ok()?;
    tollgate_tests::daemon::read_tcp_response(s)
}

/// A reload applies `[grants]`, `[routes]`, the TCP connection limits and the API token
/// without a restart: the next call is sized and routed by the new figures, a call admitted
/// before keeps its reservation, a second TCP connection is let in once the limit is raised,
/// and the old token stops working. Nothing is logged as waiting for a restart.
#[test]
fn a_reload_applies_grants_routes_connection_limits_and_the_token() {
    let dir = temp_dir("operator-reload");
    let token = dir.join("token");
    std::fs::write(&token, "old-token\n").expect("token");
    let http = format!("token_file = \"{}\"", token.display());
    let d = Daemon::start_opts(&Options {
        sip: "tcp_max_connections = 1",
        http: &http,
        directory_extra: "watch = false",
        extra: "[grants]\ngrant_seconds = 1800\n[routes]\ncalling_plan = \"pstn-{region}.example.net\"\n",
        ..Options::default()
    });
    let old = "Authorization: Bearer old-token\r\n";
    let before = SipRequest::invite("sip:alice@contoso.com", "+12065550100", "op-reload-1");
    let r = d.udp(&before.render());
    assert_eq!(r.status(), 302, "{}", r.text);
    assert_eq!(r.header("X-Tollgate-Max-Duration"), Some("1800"));
    assert!(
        r.header("Contact")
            .unwrap_or("")
            .contains("@pstn-us.example.net"),
        "{}",
        r.text
    );
    // One connection holds the only TCP slot: a second is closed unanswered.
    let mut first = d.tcp_from([127, 0, 0, 1].into()).expect("connect");
    assert_eq!(
        tcp_invite(&mut first, "op-reload-tcp-1").map(|r| r.status()),
        Some(302)
    );
    let mut second = d.tcp_from([127, 0, 0, 1].into()).expect("connect");
    assert!(tcp_invite(&mut second, "op-reload-tcp-2").is_none());

    edit_config(&d, "grant_seconds = 1800", "grant_seconds = 600");
    edit_config(
        &d,
        "pstn-{region}.example.net",
        "carrier-{region}.example.org:5070",
    );
    edit_config(&d, "tcp_max_connections = 1", "tcp_max_connections = 4");
    std::fs::write(&token, "new-token\n").expect("token");
    let (status, body) = d.http_with("POST", "/v1/reload", old, "");
    assert_eq!(status, 200, "{body}");

    let after = SipRequest::invite("sip:alice@contoso.com", "+12065550100", "op-reload-2");
    let r = d.udp(&after.render());
    assert_eq!(r.status(), 302, "{}", r.text);
    assert_eq!(r.header("X-Tollgate-Max-Duration"), Some("600"));
    assert!(
        r.header("Contact")
            .unwrap_or("")
            .contains("@carrier-us.example.org:5070"),
        "{}",
        r.text
    );
    let mut third = d.tcp_from([127, 0, 0, 1].into()).expect("connect");
    assert_eq!(
        tcp_invite(&mut third, "op-reload-tcp-3").map(|r| r.status()),
        Some(302)
    );
    drop((first, second, third));
    // The old token is refused, the new one works.
    let (status, _) = d.http_with("GET", "/v1/calls/op-reload-1", old, "");
    assert_eq!(status, 401);
    let new = "Authorization: Bearer new-token\r\n";
    let (status, body) = d.http_with("GET", "/v1/calls/op-reload-1", new, "");
    assert_eq!(status, 200, "{body}");
    let call: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        call["reserved_seconds"], 1800,
        "kept its reservation: {body}"
    );
    // Its extension is one grant of the new size.
    let (status, body) = d.http_with("POST", "/v1/calls/op-reload-1/extend", new, "");
    assert_eq!(status, 200, "{body}");
    let x: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        (x["granted_seconds"].as_u64(), x["max_duration"].as_u64()),
        (Some(600), Some(2400)),
        "{body}"
    );
    assert!(
        !d.stderr().contains("takes effect on restart"),
        "{}",
        d.stderr()
    );
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}
