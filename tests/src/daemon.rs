//! A running `tollgate serve` for end-to-end tests, and small SIP and HTTP clients (std only,
//! loopback, short timeouts).
//!
//! Ports: the harness picks them. It binds `127.0.0.1:0` over TCP, checks that UDP can have the
//! same port, lets both go and writes that port (SIP, UDP and TCP) and another one (HTTP) into
//! a temporary `tollgate.toml`. Another process could take a port in between: the daemon then
//! fails to bind and exits, and [`Daemon::start_with`] tries again with new ports (3 times).
//! `[directory].path` is the repository's `config/`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::{repo_root, tollgate_bin};

/// A fresh temporary directory (removed by the caller, or left in the system temp dir).
pub fn temp_dir(tag: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("tollgate-e2e-{tag}-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// How long a test waits for any one answer.
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// How to start the daemon: extra lines for `[sip]`, `[http]` and `[directory]`, the directory (default: the
/// repository's `config/`), the ledger file (default: one in the daemon's temp dir, removed
/// with it), and whole extra tables (e.g. `"[grants]\ngrant_seconds = 60\n"`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Options<'a> {
    pub sip: &'a str,
    pub http: &'a str,
    pub directory: Option<&'a std::path::Path>,
    /// Extra lines for `[directory]` (e.g. `watch = false`).
    pub directory_extra: &'a str,
    pub ledger: Option<&'a std::path::Path>,
    pub extra: &'a str,
    /// The host `[http].listen` binds (default `127.0.0.1`), e.g. `[::]`; clients still
    /// connect to `127.0.0.1` on its port.
    pub http_host: Option<&'a str>,
    /// Starts the daemon's wall clock at this UTC time (`YYYY-MM-DD hh:mm:ss`), from where it
    /// runs on (`faketime`, Debian package `faketime`): to cross a month end in a test.
    pub clock: Option<&'a str>,
    /// Variables of the test's environment the daemon must not inherit (e.g. `RUST_LOG`,
    /// which would override `[log].level` in a test of the log).
    pub env_remove: &'a [&'a str],
    /// Also listen for SIP over TLS (`tls:127.0.0.1:PORT`, another free port: [`Daemon::tls`]);
    /// the `[tls]` table goes in `extra`.
    pub tls_listener: bool,
    /// How to tell the daemon is ready (default: `GET /readyz` answers 200 over plain HTTP),
    /// e.g. over HTTPS with `[http].tls = true`.
    pub ready: Option<fn(&Daemon) -> bool>,
}

/// `tollgate serve`, killed (and its temporary directory removed) on drop.
pub struct Daemon {
    child: Option<Child>,
    /// SIP, over UDP and TCP.
    pub sip: SocketAddr,
    pub http: SocketAddr,
    /// SIP over TLS, with [`Options::tls_listener`].
    pub tls: Option<SocketAddr>,
    dir: PathBuf,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// libfaketime as Debian installs it (package `libfaketime`, pulled in by `faketime`), the
/// multi-threaded variant: [`Options::clock`].
const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// A port free on loopback for both TCP and UDP, right now.
pub fn free_port() -> u16 {
    for _ in 0..20 {
        let Ok(t) = TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(addr) = t.local_addr() else { continue };
        if UdpSocket::bind(addr).is_ok() {
            return addr.port();
        }
    }
    panic!("no free loopback port");
}

impl Daemon {
    /// The daemon with the default `[sip]` settings (loopback trusted).
    pub fn start() -> Daemon {
        Daemon::start_with("")
    }

    /// The daemon with `extra_sip` lines added to `[sip]` (e.g. `trusted_peers = [...]`).
    pub fn start_with(extra_sip: &str) -> Daemon {
        Daemon::start_in(extra_sip, &repo_root().join("config"))
    }

    /// The daemon over another directory (`tenants.toml`, `users.csv`, ...).
    pub fn start_in(extra_sip: &str, directory: &std::path::Path) -> Daemon {
        Daemon::start_full(extra_sip, "", directory)
    }

    /// The daemon with lines added to `[sip]` and `[http]`, over `directory`.
    pub fn start_full(extra_sip: &str, extra_http: &str, directory: &std::path::Path) -> Daemon {
        Daemon::start_opts(&Options {
            sip: extra_sip,
            http: extra_http,
            directory: Some(directory),
            ..Options::default()
        })
    }

    /// The daemon as `opts` say.
    pub fn start_opts(opts: &Options<'_>) -> Daemon {
        let mut last = String::new();
        for _ in 0..3 {
            match Daemon::try_start(opts) {
                Ok(d) => return d,
                Err(e) => last = e,
            }
        }
        panic!("tollgate serve did not start: {last}");
    }

    fn try_start(opts: &Options<'_>) -> Result<Daemon, String> {
        let (extra_sip, extra_http) = (opts.sip, opts.http);
        let config_dir = repo_root().join("config");
        let directory = opts.directory.unwrap_or(&config_dir);
        let dir = temp_dir("serve");
        let ledger = opts
            .ledger
            .map_or_else(|| dir.join("ledger.db"), std::path::Path::to_path_buf);
        let sip = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let http_listen = format!("{}:{}", opts.http_host.unwrap_or("127.0.0.1"), http.port());
        let tls = opts
            .tls_listener
            .then(|| SocketAddr::from(([127, 0, 0, 1], free_port())));
        let tls_listen = tls.map_or_else(String::new, |a| format!(", \"tls:{a}\""));
        let config = format!(
            "[sip]\nlisten = [\"udp:{sip}\", \"tcp:{sip}\"{tls_listen}]\n{extra_sip}\n[http]\nlisten = \"{http_listen}\"\n{extra_http}\n[directory]\npath = \"{}\"\n{}\n[ledger]\npath = \"{}\"\n",
            directory.display(),
            opts.directory_extra,
            ledger.display()
        ) + opts.extra;
        let config_path = dir.join("tollgate.toml");
        std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.join("stderr.log")).map_err(|e| e.to_string())?;
        let mut command = Command::new(tollgate_bin());
        if let Some(t) = opts.clock {
            // libfaketime preloaded into the daemon itself (not the `faketime` wrapper, which
            // forks: the daemon must stay the child, for signals and for its end at drop).
            // Timers and timeouts keep the real monotonic clock.
            let lib = FAKETIME_LIB;
            assert!(
                std::path::Path::new(lib).exists(),
                "{lib} is missing: run scripts/test, which installs faketime"
            );
            command
                .env("LD_PRELOAD", lib)
                .env("FAKETIME", format!("@{t}"))
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        for var in opts.env_remove {
            command.env_remove(var);
        }
        let child = command
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| e.to_string())?;
        let mut d = Daemon {
            child: Some(child),
            sip,
            http,
            tls,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = d.child.as_mut().map(|c| c.try_wait()) {
                return Err(format!("exited with {status}: {}", d.stderr()));
            }
            let ready = match opts.ready {
                Some(ready) => ready(&d),
                None => matches!(d.try_http("GET", "/readyz", "", ""), Ok((200, _))),
            };
            if ready {
                return Ok(d);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("not ready in time: {}", d.stderr()))
    }

    /// What the daemon logged so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    /// The `tollgate.toml` the daemon runs with (for CLI commands against its ledger).
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("tollgate.toml")
    }

    /// The process id (for signals).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Sends `signal` (e.g. `TERM`) and waits for the exit, at most 15 s.
    pub fn signal_and_wait(mut self, signal: &str) -> ExitStatus {
        self.signal(signal);
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("tollgate did not exit on SIG{signal}: {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9`: the process dies at once, whatever it was doing.
    pub fn kill9(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends a signal without waiting.
    pub fn signal(&self, signal: &str) {
        let pid = self.pid().to_string();
        let ok = Command::new("kill")
            .args(["-s", signal, &pid])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -s {signal} {pid} failed");
    }

    /// One HTTP/1.1 request (`Connection: close`); the status and the body.
    pub fn http(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        self.http_with(method, path, "", body)
    }

    /// As [`Daemon::http`], with extra header lines (each ending in CRLF).
    pub fn http_with(&self, method: &str, path: &str, headers: &str, body: &str) -> (u16, String) {
        self.try_http(method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.stderr()))
    }

    fn try_http(
        &self,
        method: &str,
        path: &str,
        headers: &str,
        body: &str,
    ) -> std::io::Result<(u16, String)> {
        self.try_http_bytes(method, path, headers, body.as_bytes())
            .map(|a| (a.status, a.body))
    }

    /// As [`Daemon::http_with`], with a body of any bytes, and the answer's headers too.
    pub fn http_bytes(&self, method: &str, path: &str, headers: &str, body: &[u8]) -> HttpAnswer {
        self.try_http_bytes(method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.stderr()))
    }

    fn try_http_bytes(
        &self,
        method: &str,
        path: &str,
        headers: &str,
        body: &[u8],
    ) -> std::io::Result<HttpAnswer> {
        let mut s = TcpStream::connect_timeout(&self.http, TIMEOUT)?;
        s.set_read_timeout(Some(TIMEOUT))?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\n\r\n",
            self.http,
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        s.write_all(&req)?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status = text
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad HTTP answer {text:?}")))?;
        let (head, body) = text
            .split_once("\r\n\r\n")
            .map_or((text.clone(), String::new()), |(h, b)| {
                (h.to_string(), b.to_string())
            });
        Ok(HttpAnswer { status, head, body })
    }

    /// `GET` and parse JSON.
    pub fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let (status, body) = self.http("GET", path, "");
        let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
        (status, v)
    }

    /// A UDP client socket on loopback.
    pub fn udp_client(&self) -> UdpSocket {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind udp client");
        s.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        s
    }

    /// Sends one datagram and waits for one answer.
    pub fn udp(&self, msg: &str) -> SipResponse {
        self.udp_bytes(msg.as_bytes())
    }

    /// [`Daemon::udp`] for a message that need not be UTF-8.
    pub fn udp_bytes(&self, msg: &[u8]) -> SipResponse {
        let s = self.udp_client();
        udp_exchange_bytes(&s, self.sip, msg)
            .unwrap_or_else(|| panic!("no answer to\n{}", String::from_utf8_lossy(msg)))
    }

    /// Sends one message on a new TCP connection and reads one answer.
    pub fn tcp(&self, msg: &str) -> SipResponse {
        self.tcp_bytes(msg.as_bytes())
    }

    /// A TCP connection to the SIP port from `local` (any address of 127/8 on Linux, where
    /// all of it is loopback): to play several peers, trusted or not, from one machine.
    pub fn tcp_from(&self, local: std::net::IpAddr) -> std::io::Result<TcpStream> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(self.sip),
            socket2::Type::STREAM,
            None,
        )?;
        socket.bind(&SocketAddr::new(local, 0).into())?;
        socket.connect_timeout(&self.sip.into(), TIMEOUT)?;
        let stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(TIMEOUT))?;
        Ok(stream)
    }

    /// [`Daemon::tcp`] for a message that need not be UTF-8.
    pub fn tcp_bytes(&self, msg: &[u8]) -> SipResponse {
        let mut s = TcpStream::connect_timeout(&self.sip, TIMEOUT).expect("tcp connect");
        s.write_all(msg).expect("tcp write");
        read_tcp_response(&mut s)
            .unwrap_or_else(|| panic!("no answer to\n{}", String::from_utf8_lossy(msg)))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An HTTP answer: status, status line and headers, body.
#[derive(Clone, Debug)]
pub struct HttpAnswer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl HttpAnswer {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }
}

/// Sends `msg` from `socket` and waits (up to the socket's read timeout) for one datagram.
pub fn udp_exchange(socket: &UdpSocket, to: SocketAddr, msg: &str) -> Option<SipResponse> {
    udp_exchange_bytes(socket, to, msg.as_bytes())
}

/// [`udp_exchange`] for a message that need not be UTF-8.
pub fn udp_exchange_bytes(socket: &UdpSocket, to: SocketAddr, msg: &[u8]) -> Option<SipResponse> {
    socket.send_to(msg, to).ok()?;
    let mut buf = vec![0u8; 65_535];
    let (n, _) = socket.recv_from(&mut buf).ok()?;
    Some(SipResponse::new(buf.get(..n)?.to_vec()))
}

/// Sends `msg` from `socket` and collects the answers up to the first final one (200 or
/// more), waiting for each up to the socket's read timeout: a stateful proxy answers
/// `100 Trying` before the final answer. Empty if nothing came.
pub fn udp_responses(socket: &UdpSocket, to: SocketAddr, msg: &[u8]) -> Vec<SipResponse> {
    let mut answers = Vec::new();
    if socket.send_to(msg, to).is_err() {
        return answers;
    }
    let mut buf = vec![0u8; 65_535];
    while let Ok((n, _)) = socket.recv_from(&mut buf) {
        let Some(bytes) = buf.get(..n) else { break };
        let r = SipResponse::new(bytes.to_vec());
        let last = r.status() >= 200;
        answers.push(r);
        if last {
            break;
        }
    }
    answers
}

/// Reads one response (our responses have no body) from a TCP stream.
pub fn read_tcp_response(s: &mut TcpStream) -> Option<SipResponse> {
    s.set_read_timeout(Some(TIMEOUT)).ok()?;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        raw.extend_from_slice(chunk.get(..n)?);
    }
    Some(SipResponse::new(raw))
}

/// A SIP response as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SipResponse {
    pub bytes: Vec<u8>,
    pub text: String,
}

impl SipResponse {
    fn new(bytes: Vec<u8>) -> SipResponse {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        SipResponse { bytes, text }
    }

    pub fn status(&self) -> u16 {
        self.text
            .get(8..11)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.text.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }
}

/// A request as a proxy would send it.
#[derive(Clone, Debug)]
pub struct SipRequest {
    pub method: String,
    pub request_uri: String,
    pub from: String,
    pub call_id: String,
    pub cseq: u32,
    pub branch: String,
    pub transport: &'static str,
    pub max_forwards: u32,
    pub extra: Vec<String>,
}

impl SipRequest {
    /// An INVITE from `from` (a URI) to the Request-URI `sip:{dial}@tollgate;user=phone`.
    pub fn invite(from: &str, dial: &str, call_id: &str) -> SipRequest {
        SipRequest {
            method: "INVITE".into(),
            request_uri: format!("sip:{dial}@tollgate.example.net;user=phone"),
            from: from.into(),
            call_id: call_id.into(),
            cseq: 1,
            branch: format!("z9hG4bK-{call_id}"),
            transport: "UDP",
            max_forwards: 70,
            extra: Vec::new(),
        }
    }

    /// The same dialog and Request-URI, another method (CSeq method follows).
    pub fn with_method(&self, method: &str) -> SipRequest {
        SipRequest {
            method: method.into(),
            ..self.clone()
        }
    }

    pub fn tcp(mut self) -> SipRequest {
        self.transport = "TCP";
        self
    }

    pub fn header(mut self, line: &str) -> SipRequest {
        self.extra.push(line.into());
        self
    }

    pub fn render(&self) -> String {
        let mut extra = String::new();
        for h in &self.extra {
            extra.push_str(h);
            extra.push_str("\r\n");
        }
        format!(
            "{m} {ruri} SIP/2.0\r\nVia: SIP/2.0/{t} 127.0.0.1:5999;branch={b};rport\r\nMax-Forwards: {mf}\r\nFrom: <{from}>;tag=e2e\r\nTo: <{ruri}>\r\nCall-ID: {cid}\r\nCSeq: {cseq} {m}\r\n{extra}Content-Length: 0\r\n\r\n",
            m = self.method,
            ruri = self.request_uri,
            t = self.transport,
            b = self.branch,
            mf = self.max_forwards,
            from = self.from,
            cid = self.call_id,
            cseq = self.cseq,
        )
    }
}
