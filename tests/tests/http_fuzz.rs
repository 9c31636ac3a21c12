//! Arbitrary requests to the HTTP API of the real daemon (issue "Fail safe", A4): bodies for
//! `end`, `extend` and `reload` (any JSON, hostile numbers, bytes that are not UTF-8), query
//! strings for `decide` and `pools`, Call-IDs of any bytes, and any method. Every request gets
//! an answer below 500 (the ledger is healthy here, so a 503 would be the ledger refusing a
//! write: none is genuine), every refusal is the JSON error of DESIGN §5, and a refused
//! request changes nothing: the pools and the test's calls read the same after it as before.
//!
//! A bounded number of cases (a few seconds against a debug build); proptest prints the
//! request that failed.

use std::cell::{Cell, RefCell};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value;
use tollgate_tests::daemon::{Daemon, SipRequest};

const ALICE: &str = "sip:alice@contoso.com";
/// Calls admitted before the run, which the requests may end or extend.
const CALLS: [&str; 4] = ["fuzz-0", "fuzz-1", "fuzz-2", "fuzz-3"];
const CASES: u32 = 1000;
/// Up to 24 characters a URI may hold unencoded (RFC 3986: unreserved, sub-delims, `:@/?`),
/// and `%`, whether a valid escape follows or not.
const URI_CHARS: &str = "[A-Za-z0-9._~!$&'()*+,;=:@/?%-]{0,24}";

#[derive(Clone, Debug)]
struct Req {
    method: &'static str,
    path: String,
    body: Vec<u8>,
}

/// `%XX` for every byte but the unreserved ones.
fn encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::vec(
                (
                    prop_oneof![Just("billable_seconds".to_string()), ".{0,8}"],
                    inner
                ),
                0..4
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A number as JSON text: integers of every size, past `u64`, negative, fractions, exponents.
fn number_text() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u64..=2_000_000_000).prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:e}")),
        prop::sample::select(vec![
            "9223372036854775807",
            "9223372036854775808",
            "18446744073709551615",
            "18446744073709551616",
            "1000000000",
            "1000000001",
            "-0",
            "1e400",
            "0.0",
            "00",
            "\"61\"",
            "null",
        ])
        .prop_map(str::to_string),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => number_text().prop_map(|n| format!("{{\"billable_seconds\": {n}}}").into_bytes()),
        2 => json_value().prop_map(|v| v.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..48),
        1 => ".{0,40}".prop_map(String::into_bytes),
    ]
}

fn call_id() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(CALLS.to_vec()).prop_map(str::to_string),
        prop::collection::vec(any::<u8>(), 0..16).prop_map(|b| encode(&b)),
    ]
}

fn query() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec!["caller", "dial", "tenant", "month", "x", ""]);
    let value = prop_oneof![
        prop::sample::select(vec![
            "alice@contoso.com",
            "+12065550100",
            "911",
            "contoso",
            "2026-11",
            "2026-13",
            "0000-00",
            "9999-12",
        ])
        .prop_map(|s| encode(s.as_bytes())),
        prop::collection::vec(any::<u8>(), 0..16).prop_map(|b| encode(&b)),
        // Raw, as a client might send it: any character a URI may carry unencoded (others
        // make the request line itself invalid: hyper answers those before the API sees them).
        URI_CHARS,
    ];
    prop::collection::vec((key, value), 0..4).prop_map(|kv| {
        kv.into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    })
}

fn request() -> impl Strategy<Value = Req> {
    let method = prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]);
    let post = |m: &'static str| prop_oneof![4 => Just("POST"), 1 => Just(m)];
    prop_oneof![
        4 => (post("GET"), call_id(), body()).prop_map(|(method, id, body)| Req {
            method,
            path: format!("/v1/calls/{id}/end"),
            body,
        }),
        2 => (post("PUT"), call_id(), body()).prop_map(|(method, id, body)| Req {
            method,
            path: format!("/v1/calls/{id}/extend"),
            body,
        }),
        1 => (method.clone(), call_id()).prop_map(|(method, id)| Req {
            method,
            path: format!("/v1/calls/{id}"),
            body: Vec::new(),
        }),
        2 => (method.clone(), query(), body()).prop_map(|(method, q, body)| Req {
            method,
            path: format!("/v1/decide?{q}"),
            body,
        }),
        2 => (method.clone(), query()).prop_map(|(method, q)| Req {
            method,
            path: format!("/v1/pools?{q}"),
            body: Vec::new(),
        }),
        1 => (post("GET"), body()).prop_map(|(method, body)| Req {
            method,
            path: "/v1/reload".into(),
            body,
        }),
        1 => (method, URI_CHARS).prop_map(|(method, p)| Req {
            method,
            path: format!("/{p}"),
            body: Vec::new(),
        }),
    ]
}

/// What a refused request must leave as it was.
fn state(d: &Daemon) -> Vec<(u16, Value)> {
    let mut s = vec![d.get_json("/v1/pools")];
    s.extend(
        CALLS
            .iter()
            .map(|id| d.get_json(&format!("/v1/calls/{id}"))),
    );
    s
}

#[test]
fn every_request_gets_an_answer_and_a_refused_one_changes_nothing() {
    let d = Daemon::start();
    for id in CALLS {
        let r = d.udp(&SipRequest::invite(ALICE, "+12065550100", id).render());
        assert_eq!(r.status(), 302, "{}", r.text);
    }
    let known = RefCell::new(state(&d));
    let (accepted, refused) = (Cell::new(0u32), Cell::new(0u32));
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&request(), |req| {
        let a = d.http_bytes(req.method, &req.path, "", &req.body);
        prop_assert!(a.status < 500, "{req:?} -> {a:?}");
        if a.status < 400 {
            // Accepted: it may have changed something (an end, an extend).
            accepted.set(accepted.get() + 1);
            *known.borrow_mut() = state(&d);
            return Ok(());
        }
        refused.set(refused.get() + 1);
        let v: Value = serde_json::from_str(&a.body)
            .map_err(|e| TestCaseError::fail(format!("{req:?} -> {a:?}: {e}")))?;
        prop_assert!(
            v["error"].is_string() && v["reason"].is_string(),
            "{req:?} -> {a:?}"
        );
        prop_assert_eq!(&state(&d), &*known.borrow(), "{:?} -> {:?}", req, a);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}\n{}", d.stderr());
    }
    assert_eq!(d.http("GET", "/readyz", "").0, 200);
    // Both sides were exercised, and some ends went through.
    assert!(
        accepted.get() > 0 && refused.get() > 0,
        "{accepted:?} {refused:?}"
    );
    let settled = CALLS
        .iter()
        .filter(|id| d.get_json(&format!("/v1/calls/{id}")).1["state"] == "settled")
        .count();
    assert!(settled > 0, "no call was ended");
}
