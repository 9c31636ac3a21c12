//! [`Server::handle`] without sockets: bytes in, bytes out.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tollgate_engine::numbering::NumberingPlan;
use tollgate_engine::{Engine, EngineConfig, Snapshot};

use super::*;

fn server(trusted: &[&str], untrusted: Untrusted) -> Server {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    let snap = Snapshot::load(&dir).unwrap();
    let plan = NumberingPlan::builtin().unwrap();
    let engine = Engine::new(Arc::new(plan), EngineConfig::default(), snap, now());
    let trusted = trusted.iter().map(|c| c.parse().unwrap()).collect();
    Server::new(engine, trusted, untrusted, dir)
}

fn invite(method: &str, call_id: &str, dial: &str, max_forwards: u8) -> String {
    format!(
        "{method} sip:{dial}@tg;user=phone SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bK{call_id}\r\nMax-Forwards: {max_forwards}\r\nFrom: <sip:alice@contoso.com>;tag=1\r\nTo: <sip:{dial}@tg>\r\nCall-ID: {call_id}\r\nCSeq: 7 {method}\r\nContent-Length: 0\r\n\r\n"
    )
}

const SOURCE: &str = "127.0.0.1:40000";

fn answer(s: &Server, msg: &str) -> Option<String> {
    let source: SocketAddr = SOURCE.parse().unwrap();
    let mut out = Vec::new();
    s.handle(msg.as_bytes(), source, Transport::Udp, &mut out)
        .then(|| String::from_utf8(out).unwrap())
}

#[test]
fn dispatch() {
    let s = server(&["127.0.0.0/8"], Untrusted::Reject);
    let a = answer(&s, &invite("INVITE", "c1", "+12065550100", 70)).unwrap();
    assert!(a.starts_with("SIP/2.0 302 "), "{a}");
    // Answered to the source, said so in the top Via (RFC 3581).
    assert!(a.contains(";received=127.0.0.1;rport=40000"), "{a}");
    let again = answer(&s, &invite("INVITE", "c1", "+12065550100", 70)).unwrap();
    assert_eq!(a, again);
    assert_eq!(s.engine.reservations().active(), 1);
    assert_eq!(answer(&s, &invite("ACK", "c1", "+12065550100", 70)), None);
    let a = answer(&s, &invite("INVITE", "c2", "+12065550100", 0)).unwrap();
    assert!(a.starts_with("SIP/2.0 483 "), "{a}");
    let a = answer(&s, &invite("OPTIONS", "c3", "x", 0)).unwrap();
    assert!(a.starts_with("SIP/2.0 200 "), "{a}");
    let a = answer(&s, &invite("CANCEL", "c1", "+12065550100", 70)).unwrap();
    assert!(a.starts_with("SIP/2.0 200 "), "{a}");
    assert_eq!(s.engine.reservations().active(), 0);
    assert_eq!(answer(&s, "SIP/2.0 200 OK\r\n\r\n"), None);
}

#[test]
fn untrusted_sources() {
    let s = server(&["10.0.0.0/8"], Untrusted::Reject);
    let a = answer(&s, &invite("INVITE", "u1", "+12065550100", 70)).unwrap();
    assert!(a.starts_with("SIP/2.0 403 "), "{a}");
    assert!(a.contains("X-Tollgate-Reason: untrusted_peer\r\n"), "{a}");
    assert_eq!(s.engine.reservations().active(), 0);
    // Garbage from outside is never answered, even when it could be.
    let bad = invite("INVITE", "u2", "+12065550100", 70).replace("CSeq: 7", "CSeq: x");
    assert_eq!(answer(&s, &bad), None);
    let s = server(&["10.0.0.0/8"], Untrusted::Drop);
    assert_eq!(
        answer(&s, &invite("INVITE", "u3", "+12065550100", 70)),
        None
    );
}
