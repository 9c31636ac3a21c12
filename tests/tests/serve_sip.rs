//! End to end: `tollgate serve` answering SIP over real UDP and TCP sockets on loopback
//! (DESIGN §2, "SIP answer contract"), with the shipped `config/` directory.

use std::time::Duration;

use serde_json::Value;
use tollgate_tests::daemon::{udp_exchange, Daemon, SipRequest, SipResponse};

const ALICE: &str = "sip:alice@contoso.com"; // US, MCOEV;MCOPSTN1
const BOB: &str = "sip:bob@contoso.com"; // US, SPE_E5;MCOPSTN2

fn assert_admit(r: &SipResponse, contact: &str, basis: &str, max: &str) {
    assert_eq!(r.status(), 302, "{}", r.text);
    assert_eq!(r.header("Contact"), Some(contact), "{}", r.text);
    assert_eq!(r.header("X-Tollgate-Basis"), Some(basis), "{}", r.text);
    assert_eq!(r.header("X-Tollgate-Max-Duration"), Some(max), "{}", r.text);
    assert!(
        r.header("To").is_some_and(|t| t.contains(";tag=")),
        "{}",
        r.text
    );
}

fn assert_reject(r: &SipResponse, status: u16, reason: &str, cause: u16) {
    assert_eq!(r.status(), status, "{}", r.text);
    let q850 = format!("Q.850;cause={cause};text=\"{reason}\"");
    assert_eq!(r.header("Reason"), Some(q850.as_str()), "{}", r.text);
    assert_eq!(r.header("X-Tollgate-Reason"), Some(reason), "{}", r.text);
    assert!(r.header("Contact").is_none(), "{}", r.text);
}

/// Admits, rejects and emergency over one transport.
fn decisions(d: &Daemon, send: impl Fn(&SipRequest) -> SipResponse, tag: &str) {
    let r = send(&SipRequest::invite(
        ALICE,
        "+12065550100",
        &format!("{tag}-1"),
    ));
    assert_admit(
        &r,
        "<sip:+12065550100@pstn-us.example.net;user=phone>",
        "domestic_pool",
        "1800",
    );
    assert!(r.text.contains(&format!("Call-ID: {tag}-1\r\n")));
    assert!(r.text.contains("CSeq: 1 INVITE\r\n"));
    // National format, normalized to E.164 in the Contact.
    let r = send(&SipRequest::invite(
        BOB,
        "+442079460000",
        &format!("{tag}-2"),
    ));
    assert_admit(
        &r,
        "<sip:+442079460000@pstn-us.example.net;user=phone>",
        "international_pool",
        "1800",
    );
    let r = send(&SipRequest::invite(
        ALICE,
        "+442079460000",
        &format!("{tag}-3"),
    ));
    assert_reject(&r, 403, "international_not_in_plan", 21);
    let r = send(&SipRequest::invite(
        "sip:nobody@example.com",
        "+12065550100",
        &format!("{tag}-4"),
    ));
    assert_reject(&r, 403, "unknown_caller", 21);
    let r = send(&SipRequest::invite(
        ALICE,
        "+999123456",
        &format!("{tag}-5"),
    ));
    assert_reject(&r, 404, "invalid_number", 1);
    let r = send(&SipRequest::invite(ALICE, "+1206", &format!("{tag}-6")));
    assert_reject(&r, 484, "incomplete_number", 28);
    let r = send(&SipRequest::invite(ALICE, "911", &format!("{tag}-7")));
    assert_eq!(r.status(), 302, "{}", r.text);
    assert_eq!(r.header("X-Tollgate-Basis"), Some("emergency"));
    assert!(r
        .header("Contact")
        .is_some_and(|c| c.contains("@emergency.example.net")));
    // The caller from P-Asserted-Identity (a trusted peer) wins over From.
    let r = send(
        &SipRequest::invite(
            "sip:nobody@example.com",
            "+12065550100",
            &format!("{tag}-8"),
        )
        .header("P-Asserted-Identity: <sip:+14255550102@contoso.com;user=phone>"),
    );
    assert_eq!(
        r.header("X-Tollgate-Basis"),
        Some("domestic_pool"),
        "{}",
        r.text
    );
    let _ = d;
}

#[test]
fn invites_over_udp() {
    let d = Daemon::start();
    decisions(&d, |req| d.udp(&req.render()), "udp");
}

#[test]
fn invites_over_tcp() {
    let d = Daemon::start();
    decisions(&d, |req| d.tcp(&req.clone().tcp().render()), "tcp");
    // Several messages on one connection, written in one go, both answered. Not necessarily in
    // order: a 302 waits for its ledger commit while a reject leaves at once, and SIP matches
    // responses to transactions by Via branch and Call-ID, not by position (RFC 3261 §17.1.3).
    let a = SipRequest::invite(ALICE, "+12065550100", "tcp-pipe-1")
        .tcp()
        .render();
    let b = SipRequest::invite(ALICE, "+1206", "tcp-pipe-2")
        .tcp()
        .render();
    let mut s = std::net::TcpStream::connect(d.sip).unwrap();
    std::io::Write::write_all(&mut s, format!("{a}{b}").as_bytes()).unwrap();
    let r1 = tollgate_tests::daemon::read_tcp_response(&mut s).unwrap();
    // Both answers may arrive in one read; split them.
    let joined = if r1.text.matches("SIP/2.0 ").count() == 2 {
        r1.text.clone()
    } else {
        let r2 = tollgate_tests::daemon::read_tcp_response(&mut s).unwrap();
        format!("{}{}", r1.text, r2.text)
    };
    for (status, call_id) in [("302", "tcp-pipe-1"), ("484", "tcp-pipe-2")] {
        let answer = joined
            .split("SIP/2.0 ")
            .find(|r| r.starts_with(status))
            .unwrap_or_else(|| panic!("no {status}: {joined}"));
        assert!(
            answer.contains(&format!("Call-ID: {call_id}\r\n")),
            "{joined}"
        );
    }
}

fn pool_reserved(d: &Daemon, region: &str, sku: &str) -> u64 {
    let (status, v) = d.get_json("/v1/pools?tenant=contoso");
    assert_eq!(status, 200);
    v["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["region"] == region && p["sku"] == sku && p["kind"] == "domestic")
        .unwrap_or_else(|| panic!("no pool {region} {sku} in {v}"))["reserved_seconds"]
        .as_u64()
        .unwrap()
}

#[test]
fn retransmission_ack_and_cancel() {
    let d = Daemon::start();
    let client = d.udp_client();
    let invite = SipRequest::invite(ALICE, "+12065550100", "rtx-1");
    let first = udp_exchange(&client, d.sip, &invite.render()).unwrap();
    assert_eq!(first.status(), 302);
    let again = udp_exchange(&client, d.sip, &invite.render()).unwrap();
    assert_eq!(
        first.bytes, again.bytes,
        "a retransmission gets the same bytes"
    );
    assert_eq!(pool_reserved(&d, "US", "MCOPSTN1"), 1800);
    let (status, call) = d.get_json("/v1/calls/rtx-1");
    assert_eq!(status, 200);
    assert_eq!(call["state"], "reserved");
    assert_eq!(call["reserved_seconds"], 1800);

    // The ACK for the 302 is absorbed: nothing comes back.
    client
        .set_read_timeout(Some(Duration::from_millis(400)))
        .unwrap();
    assert_eq!(
        udp_exchange(&client, d.sip, &invite.with_method("ACK").render()),
        None
    );
    client
        .set_read_timeout(Some(tollgate_tests::daemon::TIMEOUT))
        .unwrap();

    // CANCEL: 200, and the reservation goes back.
    let cancel = udp_exchange(&client, d.sip, &invite.with_method("CANCEL").render()).unwrap();
    assert_eq!(cancel.status(), 200, "{}", cancel.text);
    assert!(cancel.text.contains("CSeq: 1 CANCEL\r\n"));
    let (_, call) = d.get_json("/v1/calls/rtx-1");
    assert_eq!(call["state"], "released");
    assert_eq!(pool_reserved(&d, "US", "MCOPSTN1"), 0);
    // CANCEL of a call that was rejected: 200, it has no effect (RFC 3261 §9.2).
    let rejected = SipRequest::invite(ALICE, "+1206", "rejected-1");
    let decisions = |d: &Daemon| {
        let (_, metrics) = d.http("GET", "/metrics", "");
        metrics
            .lines()
            .filter(|l| l.starts_with("tollgate_decisions_total{") && l.contains("reject"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    let before = decisions(&d);
    let first = udp_exchange(&client, d.sip, &rejected.render()).unwrap();
    assert_eq!(first.status(), 484);
    assert_eq!(decisions(&d), before + 1.0);
    // Its retransmission: the same bytes again (the cache keeps the reason and writes the
    // reject anew), and no second decision.
    let again = udp_exchange(&client, d.sip, &rejected.render()).unwrap();
    assert_eq!(
        first.text, again.text,
        "a retransmitted reject gets the same bytes"
    );
    assert_eq!(decisions(&d), before + 1.0);
    assert_eq!(
        d.udp(&rejected.with_method("CANCEL").render()).status(),
        200
    );
    // CANCEL of a transaction never seen: 481 (RFC 3261 §9.2).
    let other = SipRequest::invite(ALICE, "+12065550100", "never-seen").with_method("CANCEL");
    let r = d.udp(&other.render());
    assert_eq!(r.status(), 481, "{}", r.text);
    assert!(r
        .text
        .starts_with("SIP/2.0 481 Call/Transaction Does Not Exist\r\n"));
}

#[test]
fn options_other_methods_max_forwards_and_garbage() {
    let d = Daemon::start();
    let mut options = SipRequest::invite(ALICE, "x", "opt-1").with_method("OPTIONS");
    options.request_uri = "sip:tollgate.example.net".into();
    let r = d.udp(&options.render());
    assert_eq!(r.status(), 200, "{}", r.text);

    for method in ["BYE", "REGISTER", "FOO"] {
        let req = SipRequest::invite(ALICE, "+12065550100", "m-1").with_method(method);
        let r = d.udp(&req.render());
        assert_eq!(r.status(), 405, "{method}: {}", r.text);
        assert_eq!(r.header("Allow"), Some("INVITE, ACK, CANCEL, OPTIONS"));
    }

    let mut hop = SipRequest::invite(ALICE, "+12065550100", "mf-0");
    hop.max_forwards = 0;
    let r = d.udp(&hop.render());
    assert_eq!(r.status(), 483, "{}", r.text);
    let (status, _) = d.http("GET", "/v1/calls/mf-0", "");
    assert_eq!(status, 404, "a 483 reserves nothing");

    // Addressable garbage: 400 with what was wrong. Unaddressable garbage: silence.
    let bad = SipRequest::invite(ALICE, "+12065550100", "bad-1")
        .render()
        .replace("CSeq: 1 INVITE", "CSeq: one INVITE");
    let r = d.udp(&bad);
    assert_eq!(r.status(), 400, "{}", r.text);
    let client = d.udp_client();
    client
        .set_read_timeout(Some(Duration::from_millis(400)))
        .unwrap();
    assert_eq!(udp_exchange(&client, d.sip, "hello\r\n\r\n"), None);
    let (_, metrics) = d.http("GET", "/metrics", "");
    assert!(
        metrics.contains("tollgate_sip_parse_errors_total 2"),
        "{metrics}"
    );
}

#[test]
fn untrusted_peers_get_403_or_silence() {
    let d = Daemon::start_with("trusted_peers = [\"10.255.255.0/24\"]");
    let r = d.udp(&SipRequest::invite(ALICE, "+12065550100", "u-1").render());
    assert_reject(&r, 403, "untrusted_peer", 21);
    let r = d.tcp(
        &SipRequest::invite(ALICE, "+12065550100", "u-2")
            .tcp()
            .render(),
    );
    assert_reject(&r, 403, "untrusted_peer", 21);
    let (status, _): (u16, Value) = d.get_json("/v1/pools");
    assert_eq!(status, 200);
    assert_eq!(
        pool_reserved(&d, "US", "MCOPSTN1"),
        0,
        "no lookup, no reservation"
    );
    drop(d);

    let d = Daemon::start_with("trusted_peers = [\"10.255.255.0/24\"]\nuntrusted = \"drop\"");
    let client = d.udp_client();
    client
        .set_read_timeout(Some(Duration::from_millis(400)))
        .unwrap();
    let invite = SipRequest::invite(ALICE, "+12065550100", "u-3").render();
    assert_eq!(udp_exchange(&client, d.sip, &invite), None);
}

/// `true` when the daemon closes the connection (EOF or reset) within `within`.
fn closed_by_peer(s: &mut std::net::TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 256];
    match std::io::Read::read(s, &mut buf) {
        Ok(n) => n == 0,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn tcp_connection_cap_and_idle_timeout() {
    let d = Daemon::start_with("tcp_max_connections = 1\ntcp_idle_timeout_seconds = 1");
    let invite = SipRequest::invite(ALICE, "+12065550100", "cap-1")
        .tcp()
        .render();
    let mut first = std::net::TcpStream::connect(d.sip).unwrap();
    std::io::Write::write_all(&mut first, invite.as_bytes()).unwrap();
    let r = tollgate_tests::daemon::read_tcp_response(&mut first).unwrap();
    assert_eq!(r.status(), 302);
    // Over the cap: closed at once, unanswered.
    let mut second = std::net::TcpStream::connect(d.sip).unwrap();
    let _ = std::io::Write::write_all(&mut second, invite.as_bytes());
    assert!(closed_by_peer(&mut second, Duration::from_secs(2)));
    // The first one is closed after a second of silence; then there is room again.
    let start = std::time::Instant::now();
    assert!(closed_by_peer(&mut first, Duration::from_secs(3)));
    assert!(start.elapsed() < Duration::from_secs(3));
    let r = d.tcp(
        &SipRequest::invite(ALICE, "+12065550100", "cap-2")
            .tcp()
            .render(),
    );
    assert_eq!(r.status(), 302);
}
