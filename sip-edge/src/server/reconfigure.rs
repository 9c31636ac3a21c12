//! Re-reading `tollgate.toml` on a reload (SIGHUP, `POST /v1/reload`).
//!
//! An operator who adds a proxy to `[sip].trusted_peers` expects a reload to let it in, not a
//! restart that drops every call in flight. So a reload re-reads the file the daemon started
//! with and checks it whole; then:
//! - `[sip].trusted_peers` and `[sip].untrusted` take effect at once (the next datagram is
//!   judged by them: they are swapped in behind an `ArcSwap`, readers never wait);
//! - `[log].level` takes effect at once too (an operator turns debug on to look at one
//!   tenant's calls, then off, without a restart: [`crate::logging`]), unless `RUST_LOG` is set;
//! - `[tls]`: its files (certificate, key, client CA) are read again, from the paths the file
//!   names now, and serve every connection accepted from then on ([`crate::tls`]); a file that
//!   does not read fails the reload as below and the running certificate stays;
//! - every other table (`listen` addresses, `[http]` with `tls`, `[directory]`, `[ledger]`,
//!   `[grants]`, `[routes]`, `[emergency]`, `[cluster]`, `[log].format`) is bound to sockets,
//!   threads, the engine or the log's writer at start-up: a change there is logged as needing a
//!   restart, and the running values stay;
//! - a file that does not parse or check fails the whole reload, like a bad directory does:
//!   nothing changes, the errors are logged and `tollgate_reloads_total{result="error"}`
//!   counts (DESIGN §3).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::config::{DaemonConfig, SipTable, TlsTable, Untrusted};
use crate::peers::{self, Cidr};

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
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        Ok(Reread {
            peers: Peers {
                trusted: checked.trusted,
                untrusted: file.sip.untrusted,
            },
            restart_needed: restart_needed(&running, &file),
            log_level: (running.log.level != file.log.level).then(|| file.log.level.clone()),
            tls: file.tls.clone(),
            file,
        })
    }

    /// Records that `r`'s reloadable values are now in effect.
    pub fn applied(&self, r: &Reread) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.sip.trusted_peers = r.file.sip.trusted_peers.clone();
        running.sip.untrusted = r.file.sip.untrusted;
        running.log.level = r.file.log.level.clone();
        running.tls = r.file.tls.clone();
    }
}

/// The tables of `new` that differ from `running` and cannot change without a restart.
fn restart_needed(running: &DaemonConfig, new: &DaemonConfig) -> Vec<&'static str> {
    // `[sip]` without what a reload applies.
    let fixed = |s: &SipTable| SipTable {
        trusted_peers: Vec::new(),
        untrusted: Untrusted::Reject,
        ..s.clone()
    };
    [
        ("[sip]", fixed(&running.sip) != fixed(&new.sip)),
        ("[http]", running.http != new.http),
        ("[directory]", running.directory != new.directory),
        ("[ledger]", running.ledger != new.ledger),
        ("[grants]", running.grants != new.grants),
        ("[routes]", running.routes != new.routes),
        ("[emergency]", running.emergency != new.emergency),
        ("[cluster]", running.cluster != new.cluster),
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
        let waiting = ["[sip]", "[grants]", "[emergency]", "[cluster]"];
        assert_eq!(r.restart_needed, waiting);
        c.applied(&r);
        // Applied peers are the running ones now; the rest still differs.
        assert_eq!(c.reread().unwrap().restart_needed, waiting);
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
