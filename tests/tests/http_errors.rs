//! HTTP answers to what the API does not serve (issue "Fail safe", A3): every refusal is the
//! JSON error of DESIGN §5 (`{"error", "reason"}`), unknown paths and wrong methods included,
//! and `/v1` on a dual-stack listener (`[::]`) treats an IPv4 loopback client (seen as
//! `::ffff:127.0.0.1`) as loopback.

use serde_json::Value;
use tollgate_tests::daemon::{Daemon, HttpAnswer, Options, SipRequest};

const ALICE: &str = "sip:alice@contoso.com";

/// `a` is a JSON error with `reason`.
fn json_error(a: &HttpAnswer, status: u16, reason: &str) -> Value {
    assert_eq!(a.status, status, "{a:?}");
    assert!(
        a.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{a:?}"
    );
    let v: Value = serde_json::from_str(&a.body).unwrap_or_else(|e| panic!("{e}: {a:?}"));
    assert_eq!(v["reason"], reason, "{a:?}");
    assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{a:?}");
    v
}

#[test]
fn unknown_paths_wrong_methods_and_malformed_requests_get_json_errors() {
    let d = Daemon::start();
    let r = d.udp(&SipRequest::invite(ALICE, "+12065550100", "errors-1").render());
    assert_eq!(r.status(), 302, "{}", r.text);
    let (_, pools) = d.get_json("/v1/pools");
    let (_, call) = d.get_json("/v1/calls/errors-1");

    for path in [
        "/nope",
        "/v1",
        "/v1/calls",
        "/v1/calls/errors-1/settle",
        "/v2/pools",
    ] {
        let a = d.http_bytes("GET", path, "", b"");
        let v = json_error(&a, 404, "not_found");
        assert_eq!(v["error"], "no such endpoint", "{path}");
    }
    for (method, path, allow) in [
        ("GET", "/v1/calls/errors-1/end", "POST"),
        ("DELETE", "/v1/calls/errors-1", "GET"),
        ("POST", "/v1/pools", "GET"),
        ("GET", "/v1/reload", "POST"),
        ("PUT", "/healthz", "GET"),
    ] {
        let a = d.http_bytes(method, path, "", b"");
        json_error(&a, 405, "method_not_allowed");
        assert!(
            a.header("allow").is_some_and(|h| h.contains(allow)),
            "{method} {path}: {a:?}"
        );
    }
    // Axum's own refusals: a query it cannot read, a path that is not UTF-8 once decoded, a
    // body that is not UTF-8.
    let a = d.http_bytes("GET", "/v1/pools?month=2026-11&month=2026-12", "", b"");
    json_error(&a, 400, "bad_request");
    let a = d.http_bytes("GET", "/v1/decide?caller=a&caller=b&dial=1", "", b"");
    json_error(&a, 400, "bad_request");
    let a = d.http_bytes("GET", "/v1/calls/%FF%FE", "", b"");
    json_error(&a, 400, "bad_request");
    let a = d.http_bytes("POST", "/v1/calls/errors-1/end", "", b"\xff\xfe{}");
    json_error(&a, 400, "bad_request");

    // None of it changed anything.
    assert_eq!(d.get_json("/v1/pools"), (200, pools));
    assert_eq!(d.get_json("/v1/calls/errors-1"), (200, call));
}

#[test]
fn an_ipv4_loopback_client_of_a_dual_stack_listener_is_loopback() {
    let d = Daemon::start_opts(&Options {
        http_host: Some("[::]"),
        ..Options::default()
    });
    // Connected to 127.0.0.1, seen by the daemon as ::ffff:127.0.0.1.
    let (status, body) = d.http("GET", "/v1/pools", "");
    assert_eq!(status, 200, "{body}");
    let (status, body) = d.http("GET", "/v1/calls/nope", "");
    assert_eq!(status, 404, "{body}");
}
