//! End to end: `tollgate serve` facing hostile or sloppy peers (issue "Fail safe"): requests
//! with Latin-1 header bytes, and TCP connections from untrusted or greedy sources.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, TcpStream};
use std::time::Duration;

use tollgate_tests::daemon::{read_tcp_response, Daemon, SipRequest, SipResponse, TIMEOUT};

const BOB: &str = "sip:bob@contoso.com"; // US, SPE_E5;MCOPSTN2

/// A transport's name and how to send one message over it and read the answer.
type Transport<'a> = (&'a str, &'a dyn Fn(&[u8]) -> SipResponse);

/// `req` rendered, with `display` (raw bytes, e.g. Latin-1) as the From display name.
fn with_display(req: &SipRequest, display: &[u8]) -> Vec<u8> {
    let text = req.render();
    let (before, after) = text.split_once("From: <").expect("From header");
    let mut bytes = before.as_bytes().to_vec();
    bytes.extend_from_slice(b"From: ");
    bytes.extend_from_slice(display);
    bytes.extend_from_slice(b" <");
    bytes.extend_from_slice(after.as_bytes());
    bytes
}

/// A From display name in Latin-1 (`"Jos\xe9"`, not UTF-8 as RFC 3261 §25 asks) is common in
/// the field and takes no part in the decision: the INVITE is decided and answered like any
/// other, over UDP and TCP; the echoed From holds the name as UTF-8.
#[test]
fn latin1_display_name_is_answered() {
    let d = Daemon::start();
    let udp = |m: &[u8]| d.udp_bytes(m);
    let tcp = |m: &[u8]| d.tcp_bytes(m);
    let send: [Transport<'_>; 2] = [("udp", &udp), ("tcp", &tcp)];
    for (transport, send) in send {
        let mut req = SipRequest::invite(BOB, "+12065550100", &format!("latin1-{transport}"));
        if transport == "tcp" {
            req = req.tcp();
        }
        let r = send(&with_display(&req, b"\"Jos\xe9 M\xfcller\""));
        assert_eq!(r.status(), 302, "{transport}: {}", r.text);
        assert_eq!(
            r.header("X-Tollgate-Basis"),
            Some("domestic_pool"),
            "{}",
            r.text
        );
        assert_eq!(
            r.header("From"),
            Some("\"Jos\u{e9} M\u{fc}ller\" <sip:bob@contoso.com>;tag=e2e"),
            "{}",
            r.text
        );
        // An unquoted Latin-1 display name is not a display name at all (RFC 3261 §25.1:
        // tokens): a 400 that says so, never silence.
        let req = SipRequest::invite(BOB, "+12065550100", &format!("latin1-bare-{transport}"));
        let req = if transport == "tcp" { req.tcp() } else { req };
        let r = send(&with_display(&req, b"Jos\xe9"));
        assert_eq!(r.status(), 400, "{transport}: {}", r.text);
        assert!(
            r.text.starts_with("SIP/2.0 400 Invalid display name\r\n"),
            "{}",
            r.text
        );
    }
}

/// Whether the daemon closes `s` (EOF or reset) within `within` without a byte.
fn closed_by_daemon(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).expect("timeout");
    let mut byte = [0u8; 1];
    matches!(s.read(&mut byte), Ok(0) | Err(_)) && !timed_out(s)
}

/// Whether a read on `s` times out now (the connection is still open and silent).
fn timed_out(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let mut byte = [0u8; 1];
    matches!(s.read(&mut byte), Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut))
}

/// `tollgate_tcp_refused_total{reason}` from `/metrics`.
fn refused(d: &Daemon, reason: &str) -> u64 {
    let (status, text) = d.http("GET", "/metrics", "");
    assert_eq!(status, 200);
    let series = format!("tollgate_tcp_refused_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

/// Sends an INVITE on `s` and reads its answer.
fn invite_on(s: &mut TcpStream, call_id: &str) -> Option<SipResponse> {
    let msg = SipRequest::invite(BOB, "+12065550100", call_id)
        .tcp()
        .render();
    s.write_all(msg.as_bytes()).ok()?;
    read_tcp_response(s)
}

/// Idle connections from an untrusted address can no longer take the trusted proxies' TCP
/// slots (they are judged at `accept`), and one trusted source cannot take them all either
/// (`tcp_max_connections_per_peer`). On loopback: 127.0.0.1 is untrusted, 127.0.0.2 and
/// 127.0.0.3 are trusted (Linux routes all of 127/8 to `lo`).
#[test]
fn tcp_slots_are_kept_for_trusted_peers() {
    let d = Daemon::start_with(
        "trusted_peers = [\"127.0.0.2/32\", \"127.0.0.3/32\"]\ntcp_max_connections = 8\ntcp_max_connections_per_peer = 4",
    );
    let (two, three): (IpAddr, IpAddr) = ([127, 0, 0, 2].into(), [127, 0, 0, 3].into());
    // Far more idle connections from the untrusted address than there are slots.
    let idle: Vec<TcpStream> = (0..60)
        .filter_map(|_| TcpStream::connect_timeout(&d.sip, TIMEOUT).ok())
        .collect();
    assert_eq!(idle.len(), 60, "the kernel accepts them all");
    // A trusted proxy still gets its INVITE answered over TCP.
    let mut proxy = d.tcp_from(three).expect("connect from 127.0.0.3");
    let r = invite_on(&mut proxy, "slots-1").expect("an answer for the trusted proxy");
    assert_eq!(r.status(), 302, "{}", r.text);
    assert!(refused(&d, "untrusted") > 0);
    // An untrusted peer that does send a request still learns why (untrusted = "reject"),
    // once the idle ones have let their connections go (at once on close, else after 2 s).
    drop(idle);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let r = loop {
        let answer = TcpStream::connect_timeout(&d.sip, TIMEOUT)
            .ok()
            .and_then(|mut s| invite_on(&mut s, "slots-2"));
        match answer {
            Some(r) => break r,
            None if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            None => panic!("no 403 for the untrusted peer"),
        }
    };
    assert_eq!(r.status(), 403, "{}", r.text);
    assert_eq!(r.header("X-Tollgate-Reason"), Some("untrusted_peer"));

    // One trusted source holds its 4 connections: its 5th is closed at once, while another
    // trusted source is still served.
    let mut greedy: Vec<TcpStream> = (0..4)
        .map(|_| d.tcp_from(two).expect("connect from 127.0.0.2"))
        .collect();
    for s in &mut greedy {
        assert!(timed_out(s), "the first 4 stay open");
    }
    let mut fifth = d.tcp_from(two).expect("connect from 127.0.0.2");
    assert!(closed_by_daemon(&mut fifth, TIMEOUT), "the 5th is closed");
    assert_eq!(refused(&d, "per_peer_limit"), 1);
    let r = invite_on(&mut proxy, "slots-3").expect("the other proxy is still served");
    assert_eq!(r.status(), 302, "{}", r.text);
    let r = invite_on(&mut greedy[0], "slots-4").expect("the greedy one's own are served");
    assert_eq!(r.status(), 302, "{}", r.text);

    // Dozens of refusals, a few log lines.
    let lines = d
        .stderr()
        .lines()
        .filter(|l| l.contains("tcp connections refused"))
        .count();
    assert!((1..=4).contains(&lines), "{lines} lines:\n{}", d.stderr());
}
