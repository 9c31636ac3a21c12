//! End to end: `tollgate serve` facing hostile or sloppy peers (issue "Fail safe"): requests
//! with Latin-1 header bytes, and TCP connections from untrusted or greedy sources.

use tollgate_tests::daemon::{Daemon, SipRequest, SipResponse};

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
