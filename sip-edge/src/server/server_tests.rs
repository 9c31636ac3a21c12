//! [`Server::handle`] without sockets: bytes in, bytes out.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tollgate_engine::numbering::NumberingPlan;
use tollgate_engine::{Engine, EngineConfig};

use super::*;
use crate::store::StoreReader;

fn server(trusted: &[&str], untrusted: Untrusted) -> Server {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    let snap = crate::directory::load(&dir).unwrap();
    let plan = NumberingPlan::builtin().unwrap();
    let engine = Engine::new(Arc::new(plan), EngineConfig::default(), snap, now());
    let trusted = trusted.iter().map(|c| c.parse().unwrap()).collect();
    Server::new(engine, trusted, untrusted, dir, Ledger::memory())
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
    s.handle(
        msg.as_bytes(),
        source,
        Transport::Udp,
        &ReplyTo::None,
        None,
        &mut out,
    )
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
fn an_ack_is_counted_and_never_answered_even_malformed() {
    let s = server(&["127.0.0.0/8"], Untrusted::Reject);
    let a = answer(&s, &invite("INVITE", "k1", "+12065550100", 70)).unwrap();
    assert!(a.starts_with("SIP/2.0 302 "), "{a}");
    assert_eq!(answer(&s, &invite("ACK", "k1", "+12065550100", 70)), None);
    // Without the headers that make a request answerable (a malformed INVITE like this one
    // gets a 400): an ACK still gets nothing, and is not counted as a parse error.
    let bad = invite("ACK", "k2", "+12065550100", 70).replace("CSeq: 7", "CSeq: x");
    assert_eq!(answer(&s, &bad), None);
    let bad_invite = invite("INVITE", "k3", "+12065550100", 70).replace("CSeq: 7", "CSeq: x");
    assert!(answer(&s, &bad_invite).unwrap().starts_with("SIP/2.0 400 "));
    let text = s.metrics.encode();
    assert!(
        text.contains(
            "tollgate_sip_messages_total{direction=\"in\",method_or_status=\"ACK\",transport=\"udp\"} 2"
        ),
        "{text}"
    );
    assert!(text.contains("tollgate_sip_parse_errors_total 1"), "{text}");
    assert_eq!(s.engine.reservations().active(), 1);
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

/// A server over a fresh durable ledger in `dir`, its writer started.
fn durable(dir: &Path) -> Arc<Server> {
    use crate::ledger::{Settings, Synchronous};
    let settings = Settings {
        path: dir.join("l.db"),
        synchronous: Synchronous::Normal,
        queue: 16,
        batch: 8,
        linger: std::time::Duration::ZERO,
    };
    let (ledger, recovery) = Ledger::open(settings, now()).unwrap();
    assert!(recovery.calls.is_empty());
    assert_eq!(recovery.next_seq, 1);
    let base = server(&["127.0.0.0/8"], Untrusted::Reject);
    let s = Arc::new(Server::new(
        base.engine,
        vec!["127.0.0.0/8".parse().unwrap()],
        Untrusted::Reject,
        base.directory,
        ledger,
    ));
    s.start_ledger().unwrap();
    s
}

/// A reply target whose responses the test reads from the receiver.
fn reply_channel() -> (ReplyTo, tokio::sync::mpsc::Receiver<Vec<u8>>) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    (ReplyTo::Tcp(tx), rx)
}

/// A UDP worker's calls: while it commits its own, a 302 waits for its `commit`; once
/// [`Pace`] sees a high rate it hands the writes to the writer thread, which commits and sends
/// on its own; when the rate drops it takes them back.
///
/// [`Pace`]: crate::transport::pace::Pace
#[test]
fn a_worker_commits_its_own_calls_until_the_rate_hands_them_to_the_writer() {
    use crate::transport::pace::Pace;
    use std::time::{Duration, Instant};
    let tmp = tempfile::tempdir().unwrap();
    let s = durable(tmp.path());
    let (reply, mut rx) = reply_channel();
    let source: SocketAddr = SOURCE.parse().unwrap();
    let mut out = Vec::new();
    let t0 = Instant::now();
    let mut pace = Pace::new(&s, t0);
    let mut collector = Collector::default();
    // A worker's INVITE, with its collector while its pace says it commits its own calls.
    let mut handle = |call_id: &str, here: Option<&mut Collector>| {
        let msg = invite("INVITE", call_id, "+12065550100", 70);
        s.handle(
            msg.as_bytes(),
            source,
            Transport::Udp,
            &reply,
            here,
            &mut out,
        )
    };
    assert!(pace.commits_here());
    assert!(!handle("w1", pace.commits_here().then_some(&mut collector)));
    // Held here, not by the writer thread: nothing leaves before this thread commits.
    std::thread::sleep(Duration::from_millis(50));
    assert!(rx.try_recv().is_err());
    s.commit(&mut collector);
    let sent = String::from_utf8(rx.try_recv().unwrap()).unwrap();
    assert!(sent.starts_with("SIP/2.0 302 "), "{sent}");
    // Full batches every millisecond: 64,000 datagrams/s.
    let mut t = t0;
    for _ in 0..25 {
        t += Duration::from_millis(1);
        assert_eq!(
            pace.handled(crate::transport::udp::BATCH, t),
            Duration::ZERO
        );
    }
    assert!(!pace.commits_here());
    assert!(!handle("w2", pace.commits_here().then_some(&mut collector)));
    // No `commit` now: the writer thread sends it.
    let deadline = Instant::now() + Duration::from_secs(5);
    let sent = loop {
        match rx.try_recv() {
            Ok(b) => break String::from_utf8(b).unwrap(),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => panic!("the writer did not send the 302: {e}"),
        }
    };
    assert!(sent.starts_with("SIP/2.0 302 "), "{sent}");
    // Quiet again: one datagram every 10 ms (the window that saw the last full batches still
    // averages above the low mark; the next one does not).
    for _ in 0..5 {
        t += Duration::from_millis(10);
        pace.handled(1, t);
    }
    assert!(pace.commits_here());
    for id in ["w1", "w2"] {
        let row = s.ledger.call(id).unwrap().unwrap();
        assert_eq!(row.state, tollgate_engine::CallState::Reserved);
    }
    s.ledger.stop();
}

/// With the durable ledger: the 302 is held until its row is committed, then sent to the
/// reply target; the row is in the file; a CANCEL's 200 waits for the release likewise.
#[test]
fn durable_ledger_holds_the_302_until_committed() {
    let tmp = tempfile::tempdir().unwrap();
    let s = durable(tmp.path());
    let (reply, mut rx) = reply_channel();
    let source: SocketAddr = SOURCE.parse().unwrap();
    let mut out = Vec::new();
    let handle = |msg: &str, out: &mut Vec<u8>| {
        s.handle(msg.as_bytes(), source, Transport::Udp, &reply, None, out)
    };
    let msg = invite("INVITE", "d1", "+12065550100", 70);
    assert!(!handle(&msg, &mut out));
    let sent = String::from_utf8(rx.blocking_recv().unwrap()).unwrap();
    assert!(sent.starts_with("SIP/2.0 302 "), "{sent}");
    let row = s.ledger.call("d1").unwrap().unwrap();
    assert_eq!(row.state, tollgate_engine::CallState::Reserved);
    assert_eq!(row.version, 1);
    // The retransmission is answered from the cache with the same bytes, at once.
    assert!(handle(&msg, &mut out));
    assert_eq!(String::from_utf8(out.clone()).unwrap(), sent);
    let cancel = invite("CANCEL", "d1", "+12065550100", 70);
    assert!(!handle(&cancel, &mut out));
    let sent = String::from_utf8(rx.blocking_recv().unwrap()).unwrap();
    assert!(sent.starts_with("SIP/2.0 200 "), "{sent}");
    let row = s.ledger.call("d1").unwrap().unwrap();
    assert_eq!(
        (row.state, row.version),
        (tollgate_engine::CallState::Released, 2)
    );
    s.ledger.stop();
}

#[test]
fn a_held_302_rewritten_as_a_503_keeps_the_transaction_headers() {
    let s = server(&["127.0.0.0/8"], Untrusted::Reject);
    let a = answer(&s, &invite("INVITE", "r1", "+12065550100", 70)).unwrap();
    let mut out = Vec::new();
    let extras = crate::sip::ResponseExtras {
        q850_cause: super::status::q850_cause(Reason::StoreUnavailable),
        reason: Some("store_unavailable"),
        retry_after: Some(5),
        ..Default::default()
    };
    crate::sip::rewrite_response(&mut out, a.as_bytes(), 503, &extras);
    let b = String::from_utf8(out).unwrap();
    assert!(b.starts_with("SIP/2.0 503 Service Unavailable\r\n"), "{b}");
    for h in ["Via: ", "From: ", "To: ", "Call-ID: ", "CSeq: "] {
        let line = |t: &str| t.lines().find(|l| l.starts_with(h)).map(str::to_string);
        assert_eq!(line(&a), line(&b), "{h}");
    }
    assert!(
        !b.contains("Contact:") && !b.contains("X-Tollgate-Basis"),
        "{b}"
    );
    assert!(
        b.contains("X-Tollgate-Reason: store_unavailable\r\n"),
        "{b}"
    );
    assert!(b.contains("Retry-After: 5\r\n") && b.ends_with("Content-Length: 0\r\n\r\n"));
}

#[test]
fn overloaded_sheds_new_invites_only() {
    let s = server(&["127.0.0.0/8"], Untrusted::Reject);
    let source: SocketAddr = SOURCE.parse().unwrap();
    let shed = |msg: &str| {
        let mut out = Vec::new();
        s.handle_overloaded(
            msg.as_bytes(),
            source,
            Transport::Udp,
            &ReplyTo::None,
            None,
            &mut out,
        )
        .then(|| String::from_utf8(out).unwrap())
    };
    let a = shed(&invite("INVITE", "o1", "+12065550100", 70)).unwrap();
    assert!(a.starts_with("SIP/2.0 503 "), "{a}");
    assert!(
        a.contains("X-Tollgate-Reason: overloaded\r\n") && a.contains("Retry-After: "),
        "{a}"
    );
    assert_eq!(
        s.engine.reservations().active(),
        0,
        "nothing decided, nothing reserved"
    );
    // Emergency calls always go through.
    let e = shed(&invite("INVITE", "o2", "911", 70)).unwrap();
    assert!(e.starts_with("SIP/2.0 302 "), "{e}");
    // A call already admitted (a retransmission) gets its answer, not a 503.
    let first = answer(&s, &invite("INVITE", "o3", "+12065550100", 70)).unwrap();
    assert_eq!(
        shed(&invite("INVITE", "o3", "+12065550100", 70)).unwrap(),
        first
    );
    // Other methods as usual.
    let o = shed(&invite("OPTIONS", "o4", "x", 70)).unwrap();
    assert!(o.starts_with("SIP/2.0 200 "), "{o}");
    assert_eq!(shed(&invite("ACK", "o3", "+12065550100", 70)), None);
}
