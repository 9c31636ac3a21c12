//! Re-reading `tollgate.toml` on a reload (SIGHUP, `POST /v1/reload`).
//!
//! An operator who adds a proxy to `[sip].trusted_peers`, shortens the grants or moves a
//! gateway expects a reload to do it, not a restart that drops every call in flight. So a
//! reload re-reads the file the daemon started with and checks it whole; then what is not bound
//! to a socket, a thread or the store takes effect at once (swapped in behind an `ArcSwap`:
//! readers never wait):
//! - `[sip].trusted_peers` and `[sip].untrusted`: the next datagram, and the next connection
//!   accepted, are judged by them;
//! - `[sip].tcp_max_connections`, `tcp_max_connections_per_peer`, `tcp_idle_timeout_seconds`:
//!   for connections accepted from then on (lowering a limit closes none that are open);
//! - `[grants]`, `[routes]`, `[emergency]`, `[enforcement]`: for admissions, extensions and settlements from
//!   then on ([`tollgate_engine::Engine::reconfigure`]); a reservation already made keeps what
//!   it holds and its expiry;
//! - `[http].token_file`, and the token in it: read again (rotating the token takes a reload);
//! - `[log].level` (an operator turns debug on to look at one tenant's calls, then off, without
//!   a restart: [`crate::logging`]), unless `RUST_LOG` is set;
//! - `[tls]`: its files (certificate, key, client CA) are read again, from the paths the file
//!   names now, and serve every connection accepted from then on ([`crate::tls`]).
//!
//! What is bound at start-up — `[sip].listen`, `[http].listen` and `tls`, `[directory]`,
//! `[ledger]`, `[cluster]`, `[numbering]`, `[log].format` — is logged as needing a restart, and the running
//! values stay. A file that does not parse or check (or a token file or TLS file that does
//! not read) fails the whole reload, like a bad directory does: nothing changes, the errors are
//! logged and `tollgate_reloads_total{result="error"}` counts (DESIGN §3).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use std::sync::Arc;

use tollgate_engine::EngineConfig;

use crate::config::{DaemonConfig, HttpTable, SipTable, TlsTable, Untrusted};
use crate::peers::{self, Cidr};
use crate::transport::tcp::Limits;

/// Who may ask (DESIGN §2 step 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peers {
    pub trusted: Vec<Cidr>,
    pub untrusted: Untrusted,
}

impl Peers {
    pub fn trusts(&self, ip: IpAddr) -> bool {
        peers::trusted(&self.trusted, ip)
    }
}

/// The configuration file the daemon runs with, and the values in effect.
#[derive(Debug)]
pub struct ConfigFile {
    path: PathBuf,
    running: Mutex<DaemonConfig>,
}

/// What a re-read found.
#[derive(Debug)]
pub struct Reread {
    pub peers: Peers,
    /// The tables that changed but take effect only on a restart, as `[sip].listen`.
    pub restart_needed: Vec<&'static str>,
    /// A `[log].level` other than the running one.
    pub log_level: Option<String>,
    /// `[tls]` as the file says now (its files are re-read by the caller).
    pub tls: TlsTable,
    /// `[grants]`, `[routes]` and `[emergency]`, when any of them changed.
    pub engine: Option<EngineConfig>,
    /// `[sip].tcp_*`, when they changed.
    pub tcp_limits: Option<Limits>,
    /// The API token `[http].token_file` holds now (read again whatever changed).
    pub token: Option<Arc<str>>,
    file: DaemonConfig,
}

impl ConfigFile {
    pub fn new(path: PathBuf, running: DaemonConfig) -> ConfigFile {
        ConfigFile {
            path,
            running: Mutex::new(running),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads and checks the file again (blocking I/O). Every error, one line each, naming the
    /// file.
    pub fn reread(&self) -> Result<Reread, Vec<String>> {
        let at = |e: &dyn std::fmt::Display| format!("{}: {e}", self.path.display());
        let text = std::fs::read_to_string(&self.path).map_err(|e| vec![at(&e)])?;
        let file = DaemonConfig::from_toml(&text).map_err(|e| vec![at(&e)])?;
        let checked = file
            .clone()
            .check()
            .map_err(|es| es.iter().map(|e| at(e)).collect::<Vec<_>>())?;
        let token = crate::cli::setup::read_token(&self.path, &file.http.token_file)
            .map_err(|e| vec![format!("{}: {e}", self.path.display())])?;
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let engine_changed = running.grants != file.grants
            || running.routes != file.routes
            || running.emergency != file.emergency
            || running.enforcement != file.enforcement;
        let limits = Limits::of(&file.sip);
        Ok(Reread {
            peers: Peers {
                trusted: checked.trusted,
                untrusted: file.sip.untrusted,
            },
            restart_needed: restart_needed(&running, &file),
            log_level: (running.log.level != file.log.level).then(|| file.log.level.clone()),
            tls: file.tls.clone(),
            engine: engine_changed.then_some(checked.engine),
            tcp_limits: (Limits::of(&running.sip) != limits).then_some(limits),
            token,
            file,
        })
    }

    /// Records that `r`'s reloadable values are now in effect.
    pub fn applied(&self, r: &Reread) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.sip.trusted_peers = r.file.sip.trusted_peers.clone();
        running.sip.untrusted = r.file.sip.untrusted;
        running.sip.tcp_max_connections = r.file.sip.tcp_max_connections;
        running.sip.tcp_max_connections_per_peer = r.file.sip.tcp_max_connections_per_peer;
        running.sip.tcp_idle_timeout_seconds = r.file.sip.tcp_idle_timeout_seconds;
        running.http.token_file = r.file.http.token_file.clone();
        running.grants = r.file.grants.clone();
        running.routes = r.file.routes.clone();
        running.emergency = r.file.emergency.clone();
        running.enforcement = r.file.enforcement.clone();
        running.log.level = r.file.log.level.clone();
        running.tls = r.file.tls.clone();
    }
}

/// The tables of `new` that differ from `running` and cannot change without a restart.
fn restart_needed(running: &DaemonConfig, new: &DaemonConfig) -> Vec<&'static str> {
    // `[sip]` and `[http]` without what a reload applies.
    let sip = |s: &SipTable| SipTable {
        trusted_peers: Vec::new(),
        untrusted: Untrusted::Reject,
        tcp_max_connections: 0,
        tcp_max_connections_per_peer: 0,
        tcp_idle_timeout_seconds: 0,
        ..s.clone()
    };
    let http = |h: &HttpTable| HttpTable {
        token_file: String::new(),
        ..h.clone()
    };
    [
        ("[sip]", sip(&running.sip) != sip(&new.sip)),
        ("[http]", http(&running.http) != http(&new.http)),
        ("[directory]", running.directory != new.directory),
        ("[ledger]", running.ledger != new.ledger),
        ("[cluster]", running.cluster != new.cluster),
        ("[numbering]", running.numbering != new.numbering),
        ("[log].format", running.log.format != new.log.format),
    ]
    .into_iter()
    .filter_map(|(table, changed)| changed.then_some(table))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> (tempfile::TempDir, ConfigFile) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tollgate.toml");
        std::fs::write(&path, text).unwrap();
        let running = DaemonConfig::from_toml(text).unwrap();
        (dir, ConfigFile::new(path, running))
    }

    #[test]
    fn peers_apply_and_other_tables_wait_for_a_restart() {
        let (_dir, c) = file("[sip]\ntrusted_peers = [\"10.0.0.0/8\"]\n");
        let r = c.reread().unwrap();
        assert!(!r.peers.trusts("127.0.0.1".parse().unwrap()));
        assert!(r.restart_needed.is_empty());

        std::fs::write(
            c.path(),
            "[sip]\ntrusted_peers = [\"127.0.0.0/8\"]\nuntrusted = \"drop\"\n\
             listen = [\"udp:127.0.0.1:5999\"]\n[grants]\ngrant_seconds = 600\n\
             [emergency]\ndefault_region = \"GB\"\n[cluster]\nnode_id = \"tg-9\"\n",
        )
        .unwrap();
        let r = c.reread().unwrap();
        assert!(r.peers.trusts("127.0.0.1".parse().unwrap()));
        assert_eq!(r.peers.untrusted, Untrusted::Drop);
        let waiting = ["[sip]", "[cluster]"];
        assert_eq!(r.restart_needed, waiting);
        let engine = r.engine.clone().expect("[grants] and [emergency] changed");
        assert_eq!(engine.grants.grant_seconds, 600);
        assert_eq!(engine.emergency.default_region, "GB");
        c.applied(&r);
        // Applied tables are the running ones now; the rest still differs.
        let again = c.reread().unwrap();
        assert_eq!(again.restart_needed, waiting);
        assert!(again.engine.is_none() && again.tcp_limits.is_none());
    }

    #[test]
    fn log_level_applies_and_log_format_waits_for_a_restart() {
        let (_dir, c) = file("[log]\nlevel = \"info\"\n");
        let r = c.reread().unwrap();
        assert_eq!(r.log_level, None, "unchanged: nothing to apply");
        std::fs::write(c.path(), "[log]\nlevel = \"debug\"\nformat = \"json\"\n").unwrap();
        let r = c.reread().unwrap();
        assert_eq!(r.log_level.as_deref(), Some("debug"));
        assert_eq!(r.restart_needed, ["[log].format"]);
        c.applied(&r);
        let r = c.reread().unwrap();
        assert_eq!(r.log_level, None, "applied: the running level");
        assert_eq!(r.restart_needed, ["[log].format"]);
        std::fs::write(c.path(), "[log]\nlevel = \"loud\"\n").unwrap();
        let e = c.reread().unwrap_err();
        assert!(e[0].contains("[log].level"), "{e:?}");
    }

    #[test]
    fn a_bad_file_names_itself_and_its_errors() {
        let (_dir, c) = file("[sip]\n");
        std::fs::write(
            c.path(),
            "[sip]\ntrusted_peers = [\"10.0.0.0/33\"]\nbogus = 1\n",
        )
        .unwrap();
        let e = c.reread().unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].contains("tollgate.toml") && e[0].contains("bogus"),
            "{e:?}"
        );
        std::fs::write(c.path(), "[sip]\ntrusted_peers = [\"10.0.0.0/33\"]\n").unwrap();
        let e = c.reread().unwrap_err();
        assert!(
            e[0].contains("trusted_peers") && e[0].contains("prefix"),
            "{e:?}"
        );
        std::fs::remove_file(c.path()).unwrap();
        assert!(c.reread().is_err());
    }
}
