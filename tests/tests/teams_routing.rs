//! End to end (issue 19, item 6): voice routing policies for Direct Routing (`routing.toml`,
//! DESIGN §3; rule 7 of §4) through the real `tollgate serve` over SIP: several Contacts with
//! falling `q` in the 302, the fallback to the Calling Plan, `404 no_route`, the Contacts kept
//! in the ledger across a restart, and a broken `routing.toml` on reload keeping the old
//! directory.

use std::path::{Path, PathBuf};

use tollgate_tests::daemon::{temp_dir, Daemon, Options, SipRequest, SipResponse};

/// `kim@contoso.com` of the shipped directory: Phone System only, policy `US-Only`.
const KIM: &str = "sip:kim@contoso.com";

/// The Contacts of the shipped `US-Only` policy for a NANP number: the two SBCs of the
/// priority-1 route share q=1.0, the backup route's SBC follows at 0.9.
fn us_only_contacts(number: &str) -> String {
    format!(
        "<sip:{number}@sbc1.contoso.com:5061;transport=tls;user=phone>;q=1.0, \
         <sip:{number}@sbc2.contoso.com:5061;transport=tls;user=phone>;q=1.0, \
         <sip:{number}@sbc3.contoso.net:5061;transport=tls;user=phone>;q=0.9"
    )
}

/// A copy of the shipped directory (with `routing.toml`) and, if given, `extra_users` rows.
fn directory(tag: &str, extra_users: &str) -> PathBuf {
    let dir = tollgate_tests::shipped_directory(tag);
    let users = std::fs::read_to_string(dir.join("users.csv")).unwrap();
    std::fs::write(dir.join("users.csv"), format!("{users}{extra_users}")).unwrap();
    dir
}

fn assert_302(r: &SipResponse, contact: &str, basis: &str) {
    assert_eq!(r.status(), 302, "{}", r.text);
    assert_eq!(r.header("Contact"), Some(contact), "{}", r.text);
    assert_eq!(r.header("X-Tollgate-Basis"), Some(basis), "{}", r.text);
    // One Contact header: the proxy reads them all from it (`uac_redirect` get_redirects).
    assert_eq!(r.text.matches("\r\nContact:").count(), 1, "{}", r.text);
}

#[test]
fn a_policy_routes_to_several_gateways_with_falling_q() {
    let d = Daemon::start();
    let r = d.udp(&SipRequest::invite(KIM, "+12065550100", "route-1").render());
    assert_302(&r, &us_only_contacts("+12065550100"), "direct_routing");
    assert!(r.header("X-Tollgate-Max-Duration").is_some(), "{}", r.text);
    // The same over TCP.
    let r = d.tcp(
        &SipRequest::invite(KIM, "+14165550100", "route-2")
            .tcp()
            .render(),
    );
    assert_302(&r, &us_only_contacts("+14165550100"), "direct_routing");
    // A user with `direct_routing:<gateway>` keeps one Contact.
    let r = d.udp(&SipRequest::invite("sip:grace@contoso.com", "+12065550100", "route-3").render());
    assert_302(
        &r,
        "<sip:+12065550100@sbc1.contoso.com:5061;transport=tls;user=phone>",
        "direct_routing",
    );
    // `decide` over HTTP names the policy, the usage, the route and each Contact.
    let (status, v) = d.get_json("/v1/decide?caller=kim%40contoso.com&dial=%2B12065550100");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["voice_routing"]["policy"], "US-Only", "{v}");
    assert_eq!(v["voice_routing"]["usage"], "US and Canada", "{v}");
    assert_eq!(v["voice_routing"]["contacts"][2]["gateway"], "sbc3", "{v}");
    assert_eq!(v["voice_routing"]["contacts"][2]["q"], "0.9", "{v}");
}

#[test]
fn no_matching_route_is_no_route_for_a_direct_routing_only_user() {
    let d = Daemon::start();
    let r = d.udp(&SipRequest::invite(KIM, "+442079460000", "noroute-1").render());
    assert_eq!(r.status(), 404, "{}", r.text);
    assert_eq!(
        r.header("Reason"),
        Some("Q.850;cause=3;text=\"no_route\""),
        "{}",
        r.text
    );
    assert_eq!(
        r.header("X-Tollgate-Reason"),
        Some("no_route"),
        "{}",
        r.text
    );
    assert!(r.header("Contact").is_none(), "{}", r.text);
    // Emergency numbers never depend on the policy.
    let r = d.udp(&SipRequest::invite(KIM, "911", "noroute-2").render());
    assert_eq!(r.status(), 302, "{}", r.text);
    assert_eq!(
        r.header("X-Tollgate-Basis"),
        Some("emergency"),
        "{}",
        r.text
    );
    // Counted under its reason.
    let (_, metrics) = d.http("GET", "/metrics", "");
    assert!(
        metrics.contains("tollgate_decisions_total{outcome=\"reject\",reason=\"no_route\"} 1"),
        "{metrics}"
    );
}

#[test]
fn a_calling_plan_user_falls_back_to_the_plan() {
    // International Calling Plan and policy US-Only: NANP numbers go to Direct Routing, the
    // rest to the plan's pools.
    let dir = directory(
        "routing-fallback",
        "contoso,lena@contoso.com,+14255550120,US,MCOEV;MCOPSTN2,policy:US-Only,,Ops,\n",
    );
    let d = Daemon::start_in("", &dir);
    let lena = "sip:lena@contoso.com";
    let r = d.udp(&SipRequest::invite(lena, "+12125550100", "fb-1").render());
    assert_302(&r, &us_only_contacts("+12125550100"), "direct_routing");
    let r = d.udp(&SipRequest::invite(lena, "+442079460000", "fb-2").render());
    assert_302(
        &r,
        "<sip:+442079460000@pstn-us.example.net;user=phone>",
        "international_pool",
    );
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The ledger keeps a call's Contacts: after a restart, a retransmission of the INVITE gets the
/// same 302 from the restored reservation.
#[test]
fn the_contacts_survive_a_restart_in_the_ledger() {
    let scratch = temp_dir("routing-ledger");
    let ledger = scratch.join("ledger.db");
    let opts = Options {
        ledger: Some(&ledger),
        ..Options::default()
    };
    let invite = SipRequest::invite(KIM, "+12065550100", "restart-1").render();
    let first = {
        let d = Daemon::start_opts(&opts);
        let r = d.udp(&invite);
        assert_302(&r, &us_only_contacts("+12065550100"), "direct_routing");
        d.kill9();
        r
    };
    let d = Daemon::start_opts(&opts);
    let again = d.udp(&invite);
    assert_eq!(
        again.header("Contact"),
        first.header("Contact"),
        "{}",
        again.text
    );
    assert_eq!(again.header("X-Tollgate-Basis"), Some("direct_routing"));
    let (status, v) = d.get_json("/v1/calls/restart-1");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["state"], "reserved", "{v}");
    drop(d);
    let _ = std::fs::remove_dir_all(&scratch);
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

#[test]
fn a_broken_routing_toml_on_reload_keeps_the_old_directory() {
    let dir = directory("routing-reload", "");
    let d = Daemon::start_opts(&Options {
        directory: Some(&dir),
        directory_extra: "watch = false",
        ..Options::default()
    });
    let shipped = std::fs::read_to_string(dir.join("routing.toml")).unwrap();
    // Look-ahead is not in the regex syntax Tollgate compiles: the reload is refused, with the
    // file, line and field.
    let broken = shipped.replacen(r"'^\+1(\d{10})$'", r"'^\+1(?!900)\d{10}$'", 1);
    assert_ne!(broken, shipped, "the shipped routing.toml changed");
    write(&dir, "routing.toml", &broken);
    let (status, body) = d.http("POST", "/v1/reload", "");
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("routing.toml:"), "{body}");
    assert!(body.contains("pattern"), "{body}");
    let r = d.udp(&SipRequest::invite(KIM, "+12065550100", "reload-1").render());
    assert_302(&r, &us_only_contacts("+12065550100"), "direct_routing");
    // A gateway the tenant does not have: refused too.
    write(
        &dir,
        "routing.toml",
        &shipped.replacen("[\"sbc3\"]", "[\"sbc9\"]", 1),
    );
    let (status, body) = d.http("POST", "/v1/reload", "");
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("sbc9"), "{body}");
    // A good change is taken: the backup route now goes through sbc2 only, already listed, so
    // the Contacts are the primary route's two.
    write(
        &dir,
        "routing.toml",
        &shipped.replacen("[\"sbc3\"]", "[\"sbc2\"]", 1),
    );
    let (status, body) = d.http("POST", "/v1/reload", "");
    assert_eq!(status, 200, "{body}");
    let r = d.udp(&SipRequest::invite(KIM, "+12065550100", "reload-2").render());
    assert_302(
        &r,
        "<sip:+12065550100@sbc1.contoso.com:5061;transport=tls;user=phone>;q=1.0, \
         <sip:+12065550100@sbc2.contoso.com:5061;transport=tls;user=phone>;q=1.0",
        "direct_routing",
    );
    // Removing the file takes the policies away: its users are then refused at reload.
    std::fs::remove_file(dir.join("routing.toml")).unwrap();
    let (status, body) = d.http("POST", "/v1/reload", "");
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("users.csv:") && body.contains("policy"),
        "{body}"
    );
    let (_, metrics) = d.http("GET", "/metrics", "");
    assert!(
        metrics.contains("tollgate_reloads_total{result=\"error\"} 3"),
        "{metrics}"
    );
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}
