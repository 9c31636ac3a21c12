//! End to end: the real `tollgate` binary, `decide` and `check`, with the shipped `config/`.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;
use tollgate_tests::{repo_root, tollgate_bin};

fn config() -> String {
    repo_root()
        .join("config/tollgate.toml")
        .display()
        .to_string()
}

fn decide(caller: &str, dial: &str) -> Value {
    tollgate_tests::decide_json(std::path::Path::new(&config()), caller, dial)
}

#[test]
fn single_decisions() {
    let d = decide("bob@contoso.com", "+44 20 7946 0000");
    assert_eq!(d["outcome"], "admit");
    assert_eq!(d["status"], 302);
    assert_eq!(d["basis"], "international_pool");
    assert_eq!(d["e164"], "+442079460000");
    assert_eq!(d["region"], "GB");
    assert_eq!(d["number_type"], "fixed_line");
    assert_eq!(d["route"], "pstn-us.example.net");
    assert_eq!(d["max_duration"], 1800);
    assert!(d["rule"].as_str().unwrap().starts_with("9:"));

    let d = decide("alice@contoso.com", "+44 20 7946 0000");
    assert_eq!(d["outcome"], "reject");
    assert_eq!(d["status"], 403);
    assert_eq!(d["reason"], "international_not_in_plan");

    let d = decide("nobody@example.com", "112");
    assert_eq!(d["basis"], "emergency");
    assert_eq!(d["route"], "emergency.example.net");

    let d = decide("judy@contoso.com", "+14255550101");
    assert_eq!(d["reason"], "no_phone_system");
}

#[test]
fn json_lines_mode_and_dry_run() {
    let mut child = Command::new(tollgate_bin())
        .args(["decide", "--config", &config()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn tollgate");
    let mut input = String::new();
    // 30 times the 120-minute user: a dry run never exhausts the pool.
    for _ in 0..30 {
        input.push_str("{\"caller\": \"dave@contoso.com\", \"dial\": \"+1 206 555 0100\"}\n");
    }
    input.push_str("not json\n{\"caller\": 1}\n");
    input.push_str("{\"caller\": \"oliver@northwind.co.uk\", \"dial\": \"020 7946 0000\"}\n");
    input.push_str("{\"caller\": \"ivan@contoso.com\", \"dial\": \"911\"}\n");
    input.push_str("{\"caller\": \"ivan@contoso.com\", \"dial\": \"+12065550100\"}\n");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 35);
    for l in &lines[..30] {
        assert_eq!(l["basis"], "domestic_pool", "{l}");
        assert_eq!(l["max_duration"], 1800);
    }
    assert!(lines[30]["error"].is_string());
    assert!(lines[31]["error"].is_string());
    assert_eq!(lines[32]["route"], "pstn-gb.example.net");
    assert_eq!(lines[33]["basis"], "emergency");
    assert_eq!(lines[34]["reason"], "pstn_disabled_by_policy");
}

#[test]
fn check_reports_every_error() {
    let out = Command::new(tollgate_bin())
        .args(["check", "--config", &config()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = std::env::temp_dir().join(format!("tollgate-check-{}", std::process::id()));
    let cfg = dir.join("etc");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::create_dir_all(dir.join("config")).unwrap();
    for f in ["tenants.toml", "catalog.toml", "rates.csv"] {
        std::fs::copy(
            repo_root().join("config").join(f),
            dir.join("config").join(f),
        )
        .unwrap();
    }
    std::fs::write(
        dir.join("config/users.csv"),
        "tenant,user,usage_location,licenses\nnope,a@x.com,US,MCOEV\ncontoso,b@contoso.com,USA,MCOEV\n",
    )
    .unwrap();
    std::fs::write(
        cfg.join("tollgate.toml"),
        "[directory]\npath = \"config\"\n",
    )
    .unwrap();
    let out = Command::new(tollgate_bin())
        .args(["check", "--config"])
        .arg(cfg.join("tollgate.toml"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("users.csv:2: tenant:"), "{err}");
    assert!(err.contains("users.csv:3: usage_location:"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Rule 7 by voice routing policy (`config/routing.toml`): the matched policy, usage and route,
/// and each Contact with its gateway and `q`; no matching route is `no_route`.
#[test]
fn voice_routing_policy() {
    let d = decide("kim@contoso.com", "+1 206 555 0100");
    assert_eq!(d["outcome"], "admit", "{d}");
    assert_eq!(d["basis"], "direct_routing", "{d}");
    assert!(d["rule"].as_str().unwrap().starts_with("7:"), "{d}");
    assert_eq!(d["route"], "sbc1.contoso.com:5061;transport=tls", "{d}");
    let v = &d["voice_routing"];
    assert_eq!(v["policy"], "US-Only", "{d}");
    assert_eq!(v["usage"], "US and Canada", "{d}");
    assert_eq!(v["route"], "US and Canada", "{d}");
    let contacts: Vec<(&str, &str, &str)> = v["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["gateway"].as_str().unwrap(),
                c["q"].as_str().unwrap(),
                c["route"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        contacts,
        [
            ("sbc1", "1.0", "US and Canada"),
            ("sbc2", "1.0", "US and Canada"),
            ("sbc3", "0.9", "US and Canada backup"),
        ]
    );
    assert_eq!(
        v["contacts"][2]["host"], "sbc3.contoso.net:5061;transport=tls",
        "{d}"
    );

    let d = decide("kim@contoso.com", "+44 20 7946 0000");
    assert_eq!(d["outcome"], "reject", "{d}");
    assert_eq!(d["status"], 404, "{d}");
    assert_eq!(d["reason"], "no_route", "{d}");
    assert!(d["rule"].as_str().unwrap().starts_with("7:"), "{d}");
    assert!(d.get("voice_routing").is_none(), "{d}");

    // The text form lists the policy and the Contacts.
    let text = tollgate_tests::decide_output(
        std::path::Path::new(&config()),
        "kim@contoso.com",
        "+12065550100",
        &[],
    );
    assert!(
        text.contains("policy:       US-Only (usage \"US and Canada\", route \"US and Canada\")"),
        "{text}"
    );
    assert!(
        text.contains(
            "contact:      q=0.9 sbc3 sbc3.contoso.net:5061;transport=tls (route \"US and Canada backup\")"
        ),
        "{text}"
    );
}

/// erin's dial plan (`config/dialplans.toml`, `redmond`) in `decide`: the rule and what it made
/// of the number, in JSON and in text.
#[test]
fn dial_plan_rule_and_normalized_number() {
    let d = decide("erin@contoso.com", "0101");
    assert_eq!(
        (&d["basis"], &d["dial_plan_rule"], &d["normalized"]),
        (
            &Value::from("internal"),
            &Value::from("extension"),
            &Value::from("+14255550101")
        ),
        "{d}"
    );
    // No rule matched: neither field.
    let d = decide("erin@contoso.com", "+12125550100");
    assert!(
        d.get("dial_plan_rule").is_none() && d.get("normalized").is_none(),
        "{d}"
    );
    let text = tollgate_tests::decide_output(
        std::path::Path::new(&config()),
        "erin@contoso.com",
        "9911",
        &[],
    );
    assert!(text.starts_with("admit 302 emergency"), "{text}");
    assert!(text.contains("dial_plan:    outside line"), "{text}");
    assert!(text.contains("normalized:   911"), "{text}");
}
