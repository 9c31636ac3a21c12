//! TLS end to end: SIP over TLS (`tls:` listeners, RFC 3261 §26.2.1), HTTPS for the API
//! (`[http].tls = true`), client certificates (`[tls].client_ca`), bad handshakes, and the
//! certificate re-read on reload. The certificates are made here, by a throwaway CA (rcgen).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use tollgate_tests::daemon::{temp_dir, Daemon, Options, SipRequest, TIMEOUT};
use tollgate_tests::{repo_root, tollgate_bin};

const ALICE: &str = "sip:alice@contoso.com"; // US, MCOEV;MCOPSTN1

/// A CA of the test run.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = p.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// A certificate for `localhost` named `cn` with serial `serial`, for a server or a client.
    fn issue(&self, cn: &str, serial: u64, client: bool) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.serial_number = Some(SerialNumber::from(serial));
        p.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            der: cert.der().clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
        }
    }
}

/// A certificate and its key.
struct Leaf {
    der: CertificateDer<'static>,
    cert_pem: String,
    key_pem: String,
    key_der: Vec<u8>,
}

impl Leaf {
    /// Writes `cert.pem` and `key.pem` into `dir`.
    fn write(&self, dir: &Path) {
        std::fs::write(dir.join("cert.pem"), &self.cert_pem).unwrap();
        std::fs::write(dir.join("key.pem"), &self.key_pem).unwrap();
    }
}

/// The CA of servers (clients trust it) and the CA of clients (`[tls].client_ca`).
struct Pki {
    servers: Ca,
    clients: Ca,
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| Pki {
        servers: Ca::new("Tollgate test server CA"),
        clients: Ca::new("Tollgate test client CA"),
    })
}

/// A client trusting the server CA, with `cert` as its client certificate if given.
fn client(cert: Option<&Leaf>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(pki().servers.cert.der().clone()).unwrap();
    let b = ClientConfig::builder().with_root_certificates(roots);
    Arc::new(match cert {
        None => b.with_no_client_auth(),
        Some(l) => b
            .with_client_auth_cert(
                vec![l.der.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(l.key_der.clone())),
            )
            .unwrap(),
    })
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A TLS connection to `addr`, its handshake done.
fn connect(addr: SocketAddr, config: Arc<ClientConfig>) -> std::io::Result<Tls> {
    let tcp = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    tcp.set_read_timeout(Some(TIMEOUT))?;
    tcp.set_write_timeout(Some(TIMEOUT))?;
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(config, name).map_err(std::io::Error::other)?;
    let mut s = StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

/// The certificate the server presented.
fn served(s: &Tls) -> CertificateDer<'static> {
    s.conn.peer_certificates().unwrap()[0].clone().into_owned()
}

/// Writes `msg` and reads one answer's head (our answers have no body).
fn exchange(s: &mut Tls, msg: &[u8]) -> std::io::Result<String> {
    s.write_all(msg)?;
    s.flush()?;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        raw.extend_from_slice(&chunk[..n]);
    }
    Ok(String::from_utf8_lossy(&raw).into_owned())
}

/// An INVITE over TLS on a new connection; the answer's status line.
fn invite(addr: SocketAddr, config: Arc<ClientConfig>, call_id: &str) -> std::io::Result<String> {
    let mut s = connect(addr, config)?;
    invite_on(&mut s, call_id)
}

fn invite_on(s: &mut Tls, call_id: &str) -> std::io::Result<String> {
    let mut req = SipRequest::invite(ALICE, "+12065550100", call_id);
    req.transport = "TLS";
    let answer = exchange(s, req.render().as_bytes())?;
    assert!(answer.contains(call_id), "{answer}");
    Ok(answer.lines().next().unwrap_or_default().to_string())
}

/// `GET path` over HTTPS: status and body.
fn https_get(d: &Daemon, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = connect(d.http, client(None))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    // The answer is all there when the server closes (a close without close_notify is an
    // error for rustls; what was read still stands).
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad HTTP answer {text:?}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((status, body))
}

fn https_ready(d: &Daemon) -> bool {
    matches!(https_get(d, "/readyz"), Ok((200, _)))
}

/// `[tls]` over the files of `dir`.
fn tls_table(dir: &Path, client_ca: Option<&Path>) -> String {
    format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\n",
        dir.join("cert.pem").display(),
        dir.join("key.pem").display(),
        client_ca.map_or_else(String::new, |p| p.display().to_string()),
    )
}

/// A temporary directory holding a server certificate named `cn`.
fn cert_dir(tag: &str, cn: &str, serial: u64) -> (PathBuf, Leaf) {
    let dir = temp_dir(tag);
    let leaf = pki().servers.issue(cn, serial, false);
    leaf.write(&dir);
    (dir, leaf)
}

#[test]
fn tls_invite_gets_its_302_and_the_api_answers_over_https() {
    let (dir, leaf) = cert_dir("tls-basic", "tollgate-basic", 10);
    let extra = tls_table(&dir, None);
    let d = Daemon::start_opts(&Options {
        tls_listener: true,
        http: "tls = true",
        extra: &extra,
        ready: Some(https_ready),
        ..Options::default()
    });
    let tls = d.tls.unwrap();
    let mut s = connect(tls, client(None)).unwrap();
    assert_eq!(served(&s), leaf.der);
    assert_eq!(
        invite_on(&mut s, "tls-1").unwrap(),
        "SIP/2.0 302 Moved Temporarily"
    );
    // The connection stays open for more (RFC 3261 §18.3 framing over TLS).
    assert!(invite_on(&mut s, "tls-2")
        .unwrap()
        .starts_with("SIP/2.0 302"));
    // UDP and TCP still answer beside it.
    assert_eq!(
        d.tcp(
            &SipRequest::invite(ALICE, "+12065550100", "tcp-1")
                .tcp()
                .render()
        )
        .status(),
        302
    );

    assert_eq!(
        https_get(&d, "/healthz").unwrap(),
        (200, "ok\n".to_string())
    );
    let (status, body) = https_get(&d, "/v1/pools").unwrap();
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(v["pools"].as_array().is_some_and(|p| !p.is_empty()), "{v}");
    // Plain HTTP to the HTTPS port gets no HTTP answer.
    let mut plain = TcpStream::connect(d.http).unwrap();
    plain.set_read_timeout(Some(TIMEOUT)).unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    let _ = plain.read_to_end(&mut raw);
    assert!(!raw.starts_with(b"HTTP/1.1 200"), "{raw:?}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn tls_client_certificates_are_required_with_client_ca() {
    let (dir, _leaf) = cert_dir("tls-mutual", "tollgate-mutual", 20);
    let ca = dir.join("clients.pem");
    std::fs::write(&ca, pki().clients.cert.pem()).unwrap();
    let extra = tls_table(&dir, Some(&ca));
    let d = Daemon::start_opts(&Options {
        tls_listener: true,
        extra: &extra,
        ..Options::default()
    });
    let tls = d.tls.unwrap();
    // No certificate: refused (in TLS 1.3 the server's alert arrives on the first read).
    let r = invite(tls, client(None), "mutual-none");
    assert!(r.is_err(), "{r:?}");
    // A certificate of another CA (the servers' one): refused.
    let stranger = pki().servers.issue("stranger", 21, true);
    let r = invite(tls, client(Some(&stranger)), "mutual-stranger");
    assert!(r.is_err(), "{r:?}");
    // A certificate of the client CA: served.
    let proxy = pki().clients.issue("proxy-1", 22, true);
    let r = invite(tls, client(Some(&proxy)), "mutual-proxy").unwrap();
    assert!(r.starts_with("SIP/2.0 302"), "{r}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Reads until the peer closes; `true` if it did within `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut sink = Vec::new();
    match s.read_to_end(&mut sink) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

#[test]
fn tls_bad_handshakes_harm_no_other_connection() {
    let (dir, _leaf) = cert_dir("tls-bad", "tollgate-bad", 30);
    let extra = tls_table(&dir, None);
    let d = Daemon::start_opts(&Options {
        tls_listener: true,
        sip: "tcp_idle_timeout_seconds = 2",
        http: "tls = true",
        extra: &extra,
        ready: Some(https_ready),
        ..Options::default()
    });
    let tls = d.tls.unwrap();
    // Garbage where a ClientHello should be (a SIP request in clear): closed at once.
    let mut garbage = TcpStream::connect(tls).unwrap();
    garbage
        .write_all(
            SipRequest::invite(ALICE, "+12065550100", "clear")
                .render()
                .as_bytes(),
        )
        .unwrap();
    // A TLS record header promising 255 bytes that never come, and a client that says nothing.
    let mut stalled = TcpStream::connect(tls).unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01, 0x00, 0xff]).unwrap();
    let mut silent = TcpStream::connect(tls).unwrap();
    // The same on the HTTPS port.
    let mut http_stalled = TcpStream::connect(d.http).unwrap();
    http_stalled
        .write_all(&[0x16, 0x03, 0x01, 0x00, 0xff])
        .unwrap();
    let mut http_garbage = TcpStream::connect(d.http).unwrap();
    http_garbage.write_all(&[0xff; 64]).unwrap();

    // Meanwhile other clients are served, from other threads at the same time.
    let started = Instant::now();
    let clients: Vec<_> = (0..4)
        .map(|i| std::thread::spawn(move || invite(tls, client(None), &format!("beside-{i}"))))
        .collect();
    for c in clients {
        let r = c.join().unwrap().unwrap();
        assert!(r.starts_with("SIP/2.0 302"), "{r}");
    }
    assert_eq!(https_get(&d, "/healthz").unwrap().0, 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    assert!(closed_within(&mut garbage, TIMEOUT), "garbage left open");
    assert!(
        closed_within(&mut http_garbage, TIMEOUT),
        "https garbage left open"
    );
    // The stalled handshakes are bounded (here by the 2 s idle timeout, under the 10 s bound).
    assert!(
        closed_within(&mut stalled, Duration::from_secs(6)),
        "stalled left open"
    );
    assert!(
        closed_within(&mut silent, Duration::from_secs(6)),
        "silent left open"
    );
    // Still serving, nothing panicked.
    assert!(invite(tls, client(None), "after")
        .unwrap()
        .starts_with("SIP/2.0 302"));
    // Each failed handshake is counted, by listener and reason (the stalled HTTPS one is still
    // waiting: its 10 s bound is not up). A connection is closed just before its failure is
    // counted: the scrape is read again until the counts are there (3 s at most).
    let want = [
        ("listener=\"sip\",reason=\"error\"", 1),
        ("listener=\"sip\",reason=\"timeout\"", 2),
        ("listener=\"https\",reason=\"error\"", 1),
    ];
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (status, scrape) = https_get(&d, "/metrics").unwrap();
        assert_eq!(status, 200);
        let count = |labels: &str| -> Option<u64> {
            let series = format!("tollgate_tls_handshake_failures_total{{{labels}}} ");
            scrape
                .lines()
                .find_map(|l| l.strip_prefix(series.as_str()))
                .and_then(|v| v.trim().parse().ok())
        };
        let seen: Vec<_> = want.iter().map(|(l, _)| count(l)).collect();
        if want.iter().zip(&seen).all(|((_, n), s)| *s == Some(*n)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "counted {seen:?}, want {want:?}:\n{scrape}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(http_stalled);
    let stderr = d.stderr();
    assert!(!stderr.contains("panicked"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

/// The certificate a new connection is served, waiting up to 3 s for it to be `want`.
fn wait_for_cert(tls: SocketAddr, want: &CertificateDer<'_>) -> CertificateDer<'static> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let got = served(&connect(tls, client(None)).unwrap());
        if got == *want || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn tls_reload_serves_the_new_certificate_and_keeps_the_old_one_if_broken() {
    let (dir, a) = cert_dir("tls-reload", "tollgate-a", 40);
    let extra = tls_table(&dir, None);
    let d = Daemon::start_opts(&Options {
        tls_listener: true,
        extra: &extra,
        ..Options::default()
    });
    let tls = d.tls.unwrap();
    let mut before = connect(tls, client(None)).unwrap();
    assert_eq!(served(&before), a.der);

    // A new certificate, by POST /v1/reload: new connections get it.
    let b = pki().servers.issue("tollgate-b", 41, false);
    b.write(&dir);
    let (status, body) = d.http("POST", "/v1/reload", "");
    assert_eq!(status, 200, "{body}");
    let now = served(&connect(tls, client(None)).unwrap());
    assert_eq!(now, b.der);
    assert!(now.windows(10).any(|w| w == b"tollgate-b"), "subject CN");
    // A connection opened before keeps working.
    assert!(invite_on(&mut before, "before-reload")
        .unwrap()
        .starts_with("SIP/2.0 302"));

    // A broken key: the reload fails naming it, and the running certificate stays.
    let c = pki().servers.issue("tollgate-c", 42, false);
    std::fs::write(dir.join("cert.pem"), &c.cert_pem).unwrap();
    std::fs::write(
        dir.join("key.pem"),
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let (status, body) = d.http("POST", "/v1/reload", "");
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("[tls].key") && body.contains("key.pem"),
        "{body}"
    );
    assert_eq!(served(&connect(tls, client(None)).unwrap()), b.der);
    assert!(invite(tls, client(None), "after-broken")
        .unwrap()
        .starts_with("SIP/2.0 302"));
    // A key that is not the certificate's: refused as well.
    std::fs::write(dir.join("key.pem"), &a.key_pem).unwrap();
    let (status, body) = d.http("POST", "/v1/reload", "");
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("[tls].key"), "{body}");
    assert_eq!(served(&connect(tls, client(None)).unwrap()), b.der);

    // SIGHUP reloads it too.
    c.write(&dir);
    d.signal("HUP");
    assert_eq!(wait_for_cert(tls, &c.der), c.der);
    let _ = std::fs::remove_dir_all(dir);
}

/// `tollgate check` and `tollgate serve` on a config of `tls_lines` (after a `tls:` listener):
/// both exit 2; what `check` printed.
fn refused(tag: &str, tls_lines: &str) -> String {
    let dir = temp_dir(tag);
    let config = dir.join("tollgate.toml");
    let port = tollgate_tests::daemon::free_port();
    std::fs::write(
        &config,
        format!(
            "[sip]\nlisten = [\"tls:127.0.0.1:{port}\"]\n[http]\nlisten = \"127.0.0.1:{port}\"\n\
             [directory]\npath = \"{}\"\n[ledger]\nenabled = false\n{tls_lines}",
            repo_root().join("config").display()
        ),
    )
    .unwrap();
    let check = Command::new(tollgate_bin())
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let serve = Command::new(tollgate_bin())
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let check_err = String::from_utf8_lossy(&check.stderr).into_owned();
    let serve_err = String::from_utf8_lossy(&serve.stderr).into_owned();
    assert_eq!(check.status.code(), Some(2), "{check_err}");
    assert_eq!(serve.status.code(), Some(2), "{serve_err}");
    // serve says the same as check, line for line.
    for line in check_err.lines().filter(|l| l.starts_with("tollgate.toml")) {
        assert!(serve_err.contains(line), "{line}\n{serve_err}");
    }
    let _ = std::fs::remove_dir_all(dir);
    check_err
}

#[test]
fn tls_config_errors_stop_check_and_serve_naming_file_line_and_field() {
    // A tls: listener without [tls].
    let e = refused("tls-none", "");
    assert!(
        e.contains("tollgate.toml:2: [sip].listen: tls:127.0.0.1:")
            && e.contains("needs [tls].cert and [tls].key"),
        "{e}"
    );
    // Files that cannot be read.
    let e = refused(
        "tls-missing",
        "[tls]\ncert = \"/nonexistent/c.pem\"\nkey = \"/nonexistent/k.pem\"\n",
    );
    assert!(
        e.contains("tollgate.toml:10: [tls].cert: /nonexistent/c.pem: cannot read"),
        "{e}"
    );
    assert!(
        e.contains("tollgate.toml:11: [tls].key: /nonexistent/k.pem: cannot read"),
        "{e}"
    );
    // Not PEM, a broken PEM key, and a client CA file without a certificate.
    let dir = temp_dir("tls-bad-pem");
    let leaf = pki().servers.issue("tollgate-bad-pem", 50, false);
    std::fs::write(dir.join("cert.pem"), "hello\n").unwrap();
    std::fs::write(
        dir.join("key.pem"),
        "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    std::fs::write(dir.join("ca.pem"), &leaf.key_pem).unwrap();
    let e = refused("tls-bad-pem", &tls_table(&dir, Some(&dir.join("ca.pem"))));
    assert!(
        e.contains("tollgate.toml:10: [tls].cert:") && e.contains("holds no certificate"),
        "{e}"
    );
    assert!(
        e.contains("tollgate.toml:11: [tls].key:") && e.contains("not a PEM file"),
        "{e}"
    );
    assert!(
        e.contains("tollgate.toml:12: [tls].client_ca:") && e.contains("holds no certificate"),
        "{e}"
    );
    // A key that is not the certificate's.
    let other = pki().servers.issue("tollgate-other", 51, false);
    std::fs::write(dir.join("cert.pem"), &leaf.cert_pem).unwrap();
    std::fs::write(dir.join("key.pem"), &other.key_pem).unwrap();
    let e = refused("tls-mismatch", &tls_table(&dir, None));
    assert!(
        e.contains("tollgate.toml:11: [tls].key:") && e.contains("cannot serve"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
