//! The UDP worker on real loopback sockets: batches that mix answered and unanswered
//! datagrams from several sources, IPv6, shutdown.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use tollgate_engine::numbering::NumberingPlan;
use tollgate_engine::{Engine, EngineConfig};

use super::*;
use crate::config::Untrusted;
use crate::ledger::Ledger;
use crate::server::now;

fn server() -> Arc<Server> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    let snap = crate::directory::load(&dir).unwrap();
    let plan = NumberingPlan::builtin().unwrap();
    let engine = Engine::new(Arc::new(plan), EngineConfig::default(), snap, now());
    let trusted = ["127.0.0.0/8", "::1/128"]
        .iter()
        .map(|c| c.parse().unwrap())
        .collect();
    Arc::new(Server::new(
        engine,
        trusted,
        Untrusted::Reject,
        dir,
        Ledger::memory(),
    ))
}

fn request(method: &str, call_id: &str) -> String {
    format!(
        "{method} sip:+12065550100@tg;user=phone SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bK{call_id}\r\nMax-Forwards: 70\r\nFrom: <sip:alice@contoso.com>;tag=1\r\nTo: <sip:+12065550100@tg>\r\nCall-ID: {call_id}\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
    )
}

/// The Call-ID of a response.
fn call_id(response: &[u8]) -> String {
    let text = String::from_utf8_lossy(response);
    text.lines()
        .find_map(|l| l.strip_prefix("Call-ID: "))
        .unwrap_or_default()
        .to_owned()
}

type Sockets = Vec<(UdpSocket, Arc<UdpSocket>)>;
type Workers = (
    tokio::sync::watch::Sender<bool>,
    Vec<std::thread::JoinHandle<()>>,
);

/// `count` sockets bound to `addr`, and the address they share.
fn sockets(addr: SocketAddr, count: usize) -> (SocketAddr, Sockets) {
    let sockets = bind(addr, count).unwrap();
    (sockets[0].0.local_addr().unwrap(), sockets)
}

/// A worker on each socket; the flag stops them.
fn spawn(sockets: Sockets) -> Workers {
    let server = server();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let threads = sockets
        .into_iter()
        .map(|(s, sender)| {
            let (server, shutdown) = (Arc::clone(&server), shutdown.clone());
            std::thread::spawn(move || serve(server, s, sender, shutdown))
        })
        .collect();
    (stop, threads)
}

/// Several clients each send a burst (INVITEs and OPTIONS, which are answered, between ACKs
/// and garbage, which are not) before the workers start: the kernel queues them, so every
/// batch is full and holds datagrams of every client. Each client gets exactly the answers to
/// its own requests.
fn bursts(addr: SocketAddr) {
    let (at, sockets) = sockets(addr, 2);
    let clients: Vec<UdpSocket> = (0..4)
        .map(|_| {
            let c = UdpSocket::bind(SocketAddr::new(addr.ip(), 0)).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            c
        })
        .collect();
    let per_client = 40;
    let mut expected = vec![HashSet::new(); clients.len()];
    for n in 0..per_client {
        for (c, client) in clients.iter().enumerate() {
            let id = format!("burst-{c}-{n}");
            let msg = match n % 4 {
                0 | 1 => request("INVITE", &id),
                2 => request("OPTIONS", &id),
                _ => {
                    client.send_to(b"\x00garbage", at).unwrap();
                    request("ACK", &id)
                }
            };
            if n % 4 != 3 {
                expected[c].insert(id);
            }
            client.send_to(msg.as_bytes(), at).unwrap();
        }
    }
    let (stop, threads) = spawn(sockets);
    let mut buf = vec![0u8; 65_536];
    for (c, client) in clients.iter().enumerate() {
        let mut got = HashSet::new();
        while got.len() < expected[c].len() {
            let (n, from) = client.recv_from(&mut buf).unwrap();
            assert_eq!(from, at, "answered from the address the request went to");
            let id = call_id(&buf[..n]);
            assert!(expected[c].contains(&id), "client {c} got {id}");
            assert!(got.insert(id.clone()), "client {c} got {id} twice");
        }
    }
    // Nothing more: ACKs and garbage were not answered.
    for client in &clients {
        client
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        assert!(client.recv_from(&mut buf).is_err());
    }
    let t = Instant::now();
    stop.send(true).unwrap();
    for thread in threads {
        thread.join().unwrap();
    }
    assert!(
        t.elapsed() < RECV_TIMEOUT * 5,
        "stopped in {:?}",
        t.elapsed()
    );
}

#[test]
fn bursts_over_ipv4() {
    bursts(SocketAddr::from(([127, 0, 0, 1], 0)));
}

#[test]
fn bursts_over_ipv6() {
    let addr = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0));
    if UdpSocket::bind(addr).is_err() {
        eprintln!("no IPv6 loopback here: skipped");
        return;
    }
    bursts(addr);
}

/// A datagram of nearly the largest size UDP carries over IPv4 is received whole.
#[test]
fn large_datagram() {
    let (at, sockets) = sockets(SocketAddr::from(([127, 0, 0, 1], 0)), 1);
    let (stop, threads) = spawn(sockets);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let head = request("OPTIONS", "big").replace("Content-Length: 0\r\n\r\n", "");
    let body = "a".repeat(60_000);
    let msg = format!("{head}Content-Length: {}\r\n\r\n{body}", body.len());
    client.send_to(msg.as_bytes(), at).unwrap();
    let mut buf = vec![0u8; 65_536];
    let (n, _) = client.recv_from(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("SIP/2.0 200 "), "{text}");
    drop(stop);
    for thread in threads {
        thread.join().unwrap();
    }
}
