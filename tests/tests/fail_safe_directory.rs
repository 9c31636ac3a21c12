//! End to end (issue 15, "Fail safe"): directory mistakes operators make are refused with file,
//! line and field, a reload that would take service away from most callers is refused unless
//! forced, a directory replaced with `mv` is still watched, and emergency numbers never depend
//! on the directory being right.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tollgate_tests::daemon::{temp_dir, Daemon, Options, SipRequest};
use tollgate_tests::{repo_root, tollgate_bin};

use tollgate_tests::DIRECTORY_FILES as FILES;
const DECIDE_ALICE: &str = "/v1/decide?caller=alice%40contoso.com&dial=%2B12065550100";
/// How long a watched change may take (the debounce is 300 ms).
const WITHIN: Duration = Duration::from_secs(10);

/// A copy of the shipped directory in a fresh temporary directory.
fn directory(tag: &str) -> PathBuf {
    let dir = temp_dir(tag);
    for f in FILES {
        std::fs::copy(repo_root().join("config").join(f), dir.join(f)).unwrap();
    }
    dir
}

/// `tollgate check` over `dir`: its exit code and stderr.
fn check(dir: &Path) -> (i32, String) {
    let config = dir.join("tollgate.toml");
    std::fs::write(
        &config,
        format!("[directory]\npath = \"{}\"\n", dir.display()),
    )
    .unwrap();
    let out = Command::new(tollgate_bin())
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .expect("run tollgate check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The shipped users.csv with `row` added.
fn users_with(row: &str) -> String {
    let users = std::fs::read_to_string(repo_root().join("config/users.csv")).unwrap();
    format!("{users}{row}\n")
}

/// `tollgate_reloads_total{result}` now.
fn reloads(d: &Daemon, result: &str) -> u64 {
    let (_, text) = d.http("GET", "/metrics", "");
    let prefix = format!("tollgate_reloads_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn decide(d: &Daemon, path: &str) -> Value {
    let (status, v) = d.get_json(path);
    assert_eq!(status, 200, "{v}");
    v
}

fn eventually(d: &Daemon, what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + WITHIN;
    while !ok() {
        assert!(Instant::now() < deadline, "{what}\n{}", d.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A usage location that is not a region of the numbering plan (`UK` for GB, `XX`), a license
/// list separated by spaces and a row short of columns: `check` refuses each, naming file,
/// line and field, and `serve` does not start on them.
#[test]
fn rows_that_would_disable_a_user_are_refused_by_check_and_serve() {
    let cases = [
        (
            "contoso,uk@contoso.com,+442079460001,UK,MCOEV;MCOPSTN1,calling_plan,,Sales,",
            "usage_location",
        ),
        (
            "contoso,xx@contoso.com,,XX,MCOEV;MCOPSTN1,calling_plan,,Sales,",
            "usage_location",
        ),
        (
            "contoso,sp@contoso.com,,US,MCOEV MCOPSTN1,calling_plan,,Sales,",
            "licenses",
        ),
        (
            "contoso,short@contoso.com,,US,MCOEV;MCOPSTN1",
            "voice_routing",
        ),
    ];
    for (row, field) in cases {
        let dir = directory("badrow");
        let text = users_with(row);
        let line = text.lines().count();
        std::fs::write(dir.join("users.csv"), &text).unwrap();
        let (code, err) = check(&dir);
        assert_eq!(code, 2, "{row}: {err}");
        assert!(
            err.contains(&format!("users.csv:{line}: {field}:")),
            "{row}: expected users.csv:{line}: {field}: in\n{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
    // serve refuses to start on the same file (exit 2, the same message).
    let dir = directory("badrow-serve");
    std::fs::write(dir.join("users.csv"), users_with(cases[0].0)).unwrap();
    let config = dir.join("tollgate.toml");
    std::fs::write(
        &config,
        format!(
            "[sip]\nlisten = [\"udp:127.0.0.1:0\"]\n[http]\nlisten = \"127.0.0.1:0\"\n\
             [directory]\npath = \"{0}\"\n[ledger]\npath = \"{0}/ledger.db\"\n",
            dir.display()
        ),
    )
    .unwrap();
    let out = Command::new(tollgate_bin())
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .expect("run tollgate serve");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("usage_location"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same row given to a running daemon by a reload: refused, counted, the old directory
/// serves on.
#[test]
fn a_reload_with_a_bad_usage_location_changes_nothing() {
    let dir = directory("badrow-reload");
    let d = Daemon::start_opts(&Options {
        directory: Some(&dir),
        directory_extra: "watch = false",
        ..Options::default()
    });
    std::fs::write(
        dir.join("users.csv"),
        users_with("contoso,uk@contoso.com,+442079460001,UK,MCOEV;MCOPSTN1,calling_plan,,Sales,"),
    )
    .unwrap();
    let (status, body) = d.http("POST", "/v1/reload", "");
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("usage_location"), "{body}");
    let v = decide(&d, "/v1/decide?caller=uk%40contoso.com&dial=999");
    assert_eq!(v["reason"], "unknown_caller", "{v}");
    assert_eq!(reloads(&d, "error"), 1);
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Rule 1 without the directory: callers it does not know dial their national emergency
/// number (999 from a +44 number, 15 from a +33 one) and get the emergency route; with
/// `[emergency].default_region`, so do callers whose identity is no number at all. Everything
/// else from them stays `unknown_caller`.
#[test]
fn national_emergency_numbers_of_callers_not_in_the_directory() {
    let d = Daemon::start();
    let cases = [
        ("sip:+442079460000@pstn.example.net;user=phone", "999", 302),
        ("tel:+442079460000", "112", 302),
        ("sip:+33142685300@pstn.example.net;user=phone", "15", 302),
        ("sip:+33142685300@pstn.example.net;user=phone", "999", 403),
        (
            "sip:+442079460000@pstn.example.net;user=phone",
            "+442079460001",
            403,
        ),
        ("sip:stranger@nowhere.example", "999", 403),
    ];
    for (i, (from, dial, status)) in cases.iter().enumerate() {
        let r = d.udp(&SipRequest::invite(from, dial, &format!("em-{i}")).render());
        assert_eq!(r.status(), *status, "{from} {dial}: {}", r.text);
        if *status == 302 {
            assert_eq!(
                r.header("X-Tollgate-Basis"),
                Some("emergency"),
                "{}",
                r.text
            );
            assert!(r.text.contains("emergency.example.net"), "{}", r.text);
        } else {
            assert_eq!(r.header("X-Tollgate-Reason"), Some("unknown_caller"));
        }
    }
    // P-Asserted-Identity places the caller too, over TCP as over UDP.
    let r = d.tcp(
        &SipRequest::invite("sip:anonymous@anonymous.invalid", "999", "em-pai")
            .tcp()
            .header("P-Asserted-Identity: <sip:+442079460000@pstn.example.net;user=phone>")
            .render(),
    );
    assert_eq!(r.status(), 302, "{}", r.text);
    drop(d);

    let d = Daemon::start_opts(&Options {
        extra: "[emergency]\ndefault_region = \"GB\"\n",
        ..Options::default()
    });
    let r = d.udp(&SipRequest::invite("sip:stranger@nowhere.example", "999", "em-def").render());
    assert_eq!(r.status(), 302, "{}", r.text);
    assert_eq!(r.header("X-Tollgate-Basis"), Some("emergency"));
    let r = d.udp(&SipRequest::invite("sip:stranger@nowhere.example", "15", "em-def2").render());
    assert_eq!(r.status(), 403, "{}", r.text);
}

/// A truncated users.csv or an emptied catalog.toml, picked up by the watch: refused (old
/// directory kept, counted, logged with the figures); forced through `POST /v1/reload?force=true`.
#[test]
fn a_reload_that_empties_the_directory_is_refused_unless_forced() {
    let dir = directory("shrink");
    let d = Daemon::start_in("", &dir);
    assert_eq!(decide(&d, DECIDE_ALICE)["outcome"], "admit");

    std::fs::write(dir.join("users.csv"), "").unwrap();
    eventually(&d, "the truncated users.csv refused", || {
        reloads(&d, "error") >= 1
    });
    assert_eq!(decide(&d, DECIDE_ALICE)["outcome"], "admit");
    let r = d.udp(&SipRequest::invite("sip:alice@contoso.com", "911", "shrink-911").render());
    assert_eq!(r.status(), 302, "{}", r.text);
    assert!(
        d.stderr().contains("0 users, 0 with Phone System"),
        "{}",
        d.stderr()
    );

    std::fs::copy(repo_root().join("config/users.csv"), dir.join("users.csv")).unwrap();
    std::fs::write(dir.join("catalog.toml"), "").unwrap();
    eventually(&d, "the emptied catalog refused", || {
        reloads(&d, "error") >= 2
    });
    assert_eq!(decide(&d, DECIDE_ALICE)["outcome"], "admit");
    assert_eq!(reloads(&d, "ok"), 0, "{}", d.stderr());

    // The operator means it.
    let (status, body) = d.http("POST", "/v1/reload", "");
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("force"), "{body}");
    let (status, body) = d.http("POST", "/v1/reload?force=true", "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        decide(&d, DECIDE_ALICE)["reason"],
        "no_phone_system",
        "{}",
        d.stderr()
    );
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Deploy tools swap the whole directory (`mv new current`): the watch follows the name.
#[test]
fn a_directory_replaced_by_mv_is_still_watched() {
    let root = temp_dir("mvroot");
    let current = root.join("current");
    std::fs::create_dir_all(&current).unwrap();
    for f in FILES {
        std::fs::copy(repo_root().join("config").join(f), current.join(f)).unwrap();
    }
    let d = Daemon::start_in("", &current);
    let zoe = "/v1/decide?caller=zoe%40contoso.com&dial=%2B12065550100";
    assert_eq!(decide(&d, zoe)["reason"], "unknown_caller");

    for round in 0..2 {
        let next = root.join(format!("next-{round}"));
        std::fs::create_dir_all(&next).unwrap();
        for f in FILES {
            std::fs::copy(current.join(f), next.join(f)).unwrap();
        }
        let zoe_line = if round == 0 {
            ",MCOEV;MCOPSTN1"
        } else {
            ",MCOEV"
        };
        std::fs::write(
            next.join("users.csv"),
            users_with(&format!(
                "contoso,zoe@contoso.com,+14255550199,US{zoe_line},calling_plan,,Sales,"
            )),
        )
        .unwrap();
        std::fs::rename(&current, root.join(format!("old-{round}"))).unwrap();
        std::fs::rename(&next, &current).unwrap();
        let want = if round == 0 { "admit" } else { "reject" };
        eventually(
            &d,
            &format!("round {round}: the new directory read"),
            || decide(&d, zoe)["outcome"] == want,
        );
    }
    drop(d);
    let _ = std::fs::remove_dir_all(&root);
}

/// A Direct Routing gateway that cannot be a Contact's host (a space, `>`) is refused by `check`
/// with the tenant's line and the gateway's key.
#[test]
fn bad_direct_routing_gateways_are_refused_by_check() {
    let dir = directory("badgw");
    let tenants = std::fs::read_to_string(dir.join("tenants.toml")).unwrap();
    let bad = tenants.replacen(
        "sbc1 = \"sbc1.contoso.com:5061;transport=tls\"",
        "sbc1 = \"sbc1.contoso.com:5061;transport=tls>\"",
        1,
    );
    assert_ne!(
        bad, tenants,
        "the shipped tenants.toml has no sbc1 gateway any more"
    );
    std::fs::write(dir.join("tenants.toml"), bad).unwrap();
    let (code, err) = check(&dir);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("tenants.toml:") && err.contains("direct_routing.sbc1:"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
