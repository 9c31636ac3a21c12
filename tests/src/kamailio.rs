//! A real Kamailio running the shipped `deploy/kamailio/kamailio.cfg`, for the proxy tests.
//! Only addresses are set (`-A` defines on the command line, as an operator may): where it
//! listens, the Tollgate nodes (a dispatcher list file in a temporary directory), the HTTP API
//! for end reports and the emergency gateway; plus its control socket, in the same directory.
//!
//! Kamailio runs in the foreground (`-DD`, its workers forked from it) and logs to a file
//! (`-E`); it is stopped with its whole process group on drop. Debian's packages `kamailio`
//! and `kamailio-utils-modules` (`http_client`) are needed: `scripts/test` installs them.

use std::net::{SocketAddr, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::daemon::{free_port, temp_dir, SipResponse};
use crate::repo_root;

/// One Tollgate node as the dispatcher list names it: its SIP address and, as the attribute
/// `api=`, its HTTP API (where the ends of the calls it admitted are reported first).
#[derive(Clone, Copy, Debug)]
pub struct Node {
    pub sip: SocketAddr,
    pub http: Option<SocketAddr>,
}

/// What to start Kamailio with.
#[derive(Clone, Debug)]
pub struct Setup {
    pub nodes: Vec<Node>,
    /// `TOLLGATE_API`: reports go here when the admitting node's `api=` does not answer.
    pub api: SocketAddr,
    /// `EMERGENCY_GW`: where emergency calls go when no Tollgate node answers.
    pub emergency_gw: SocketAddr,
    /// `TOLLGATE_HTTP_HEADER`, when not the default (e.g. `Authorization: Bearer …`).
    pub http_header: Option<String>,
    /// `CONFERENCE_BRIDGE_IP`: the one source whose `X-Tollgate-Service` is passed on.
    pub conference_bridge: Option<std::net::IpAddr>,
    /// Reach the nodes over TCP (`LISTEN_TCP` on the same port as UDP, and
    /// `;transport=tcp` in the dispatcher list); else UDP.
    pub tcp: bool,
}

/// `kamailio -DD -E` with the shipped configuration; stopped on drop.
pub struct Kamailio {
    child: Option<Child>,
    /// Where callers send their INVITEs (UDP).
    pub addr: SocketAddr,
    dir: PathBuf,
}

/// The shipped configuration.
pub fn config_path() -> PathBuf {
    repo_root().join("deploy/kamailio/kamailio.cfg")
}

impl Kamailio {
    /// Starts it and waits until it answers OPTIONS; retries with another port (3 times) when
    /// the one picked was taken meanwhile. Panics with Kamailio's log when it cannot start.
    pub fn start(setup: &Setup) -> Kamailio {
        let mut last = String::new();
        for _ in 0..3 {
            match Kamailio::try_start(setup) {
                Ok(k) => return k,
                Err(e) => last = e,
            }
        }
        panic!("kamailio did not start: {last}");
    }

    fn try_start(setup: &Setup) -> Result<Kamailio, String> {
        let dir = temp_dir("kamailio");
        let transport = if setup.tcp { ";transport=tcp" } else { "" };
        let list: String = setup
            .nodes
            .iter()
            .map(|n| match n.http {
                Some(h) => format!("1 sip:{}{transport} 0 0 api=http://{h}\n", n.sip),
                None => format!("1 sip:{}{transport}\n", n.sip),
            })
            .collect();
        std::fs::write(dir.join("tollgate-nodes.list"), list).map_err(|e| e.to_string())?;
        // Kamailio looks for the optional tollgate-local.cfg in its working directory before
        // the configuration's own: an empty one here keeps a local file beside the shipped
        // configuration (a developer's overrides) out of the test.
        std::fs::write(dir.join("tollgate-local.cfg"), "").map_err(|e| e.to_string())?;
        std::fs::create_dir_all(dir.join("run")).map_err(|e| e.to_string())?;
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let log = std::fs::File::create(dir.join("kamailio.log")).map_err(|e| e.to_string())?;
        let mut defines = vec![
            format!("LISTEN=udp:{addr}"),
            format!(
                "DISPATCHER_LIST=\"{}\"",
                dir.join("tollgate-nodes.list").display()
            ),
            format!("TOLLGATE_API=\"http://{}\"", setup.api),
            format!("EMERGENCY_GW=\"{}\"", setup.emergency_gw),
            format!("CTL_SOCKET=\"unix:{}\"", dir.join("ctl").display()),
        ];
        if setup.tcp {
            defines.push(format!("LISTEN_TCP=tcp:{addr}"));
        }
        if let Some(ip) = setup.conference_bridge {
            defines.push(format!("CONFERENCE_BRIDGE_IP=\"{ip}\""));
        }
        if let Some(h) = &setup.http_header {
            defines.push(format!("TOLLGATE_HTTP_HEADER=\"{h}\""));
        }
        let mut cmd = Command::new("kamailio");
        cmd.arg("-f").arg(config_path()).args(["-DD", "-E"]);
        for d in &defines {
            cmd.arg("-A").arg(d);
        }
        // Its own process group, so that drop stops the workers with the main process.
        let child = cmd
            .arg("-Y")
            .arg(dir.join("run"))
            .arg("-w")
            .arg(&dir)
            .current_dir(&dir)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| {
                format!("cannot run kamailio ({e}): run scripts/test, which installs the packages kamailio and kamailio-utils-modules")
            })?;
        let mut k = Kamailio {
            child: Some(child),
            addr,
            dir,
        };
        let probe = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        probe
            .set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = k.child.as_mut().map(|c| c.try_wait()) {
                let log = k.log();
                let hint = if log.contains("http_client") {
                    " (http_client is in the package kamailio-utils-modules: run scripts/test)"
                } else {
                    ""
                };
                return Err(format!("exited with {status}{hint}:\n{log}"));
            }
            if options(&probe, addr).is_some_and(|r| r.status() == 200) {
                return Ok(k);
            }
        }
        Err(format!("no answer to OPTIONS in time:\n{}", k.log()))
    }

    /// What Kamailio logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("kamailio.log")).unwrap_or_default()
    }
}

/// One OPTIONS to the proxy itself; its answer.
fn options(socket: &UdpSocket, to: SocketAddr) -> Option<SipResponse> {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let local = socket.local_addr().ok()?;
    let msg = format!(
        "OPTIONS sip:{to} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-probe-{n};rport\r\nMax-Forwards: 70\r\nFrom: <sip:probe@{local}>;tag=p\r\nTo: <sip:{to}>\r\nCall-ID: probe-{n}@{local}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
    );
    let answers = crate::daemon::udp_responses(socket, to, msg.as_bytes());
    answers.into_iter().last()
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGTERM lets the main process stop its workers; the group kill is for whatever
            // is left after a second.
            let pid = c.id().to_string();
            let _ = Command::new("kill")
                .args(["-TERM", &pid])
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + Duration::from_secs(1);
            while Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
