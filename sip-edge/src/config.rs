//! `tollgate.toml` (DESIGN §3): every table the daemon reads, with a default for every field;
//! unknown fields are errors. `[grants]`, `[routes]` and `[emergency]` are the engine's own types
//! ([`tollgate_engine::config`]).
//!
//! Beyond DESIGN §3 (which is silent on them), `[sip]` takes `tcp_max_connections`,
//! `tcp_max_connections_per_peer` and `tcp_idle_timeout_seconds` (which hold for `tls:`
//! listeners too), and `[http]` nothing more.

use std::net::SocketAddr;

use serde::Deserialize;
use tollgate_engine::config::{Emergency, Grants, Routes};
use tollgate_engine::reload_guard::ReloadGuard;
use tollgate_engine::EngineConfig;

use crate::peers::Cidr;

/// A configuration error: one line each, naming the table and field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("tollgate.toml:{line}: {message}")]
    Syntax { line: usize, message: String },
    #[error("tollgate.toml: [{table}].{field}: {message}")]
    Invalid {
        table: &'static str,
        field: &'static str,
        message: String,
    },
    #[error("{0}")]
    Engine(#[from] tollgate_engine::config::ConfigError),
}

impl ConfigError {
    /// The error as [`Display`](std::fmt::Display) writes it, with the line of its field in
    /// `text` (the file's contents) when the field is written there:
    /// `tollgate.toml:12: [routes].calling_plan: ...`. A field left to its default has no line.
    pub fn located(&self, text: &str) -> String {
        let field = match self {
            ConfigError::Syntax { .. } => None,
            ConfigError::Invalid { table, field, .. } => Some((*table, *field)),
            ConfigError::Engine(e) => e.field(),
        };
        match field {
            Some((table, field)) => locate(self.to_string(), text, table, field),
            None => self.to_string(),
        }
    }
}

/// `message` (`tollgate.toml: [table].field: ...`) with the line where `text` sets `field` in
/// `[table]` after the file name, if it does.
pub fn locate(message: String, text: &str, table: &str, field: &str) -> String {
    match (
        field_line(text, table, field),
        message.strip_prefix("tollgate.toml: "),
    ) {
        (Some(line), Some(rest)) => format!("tollgate.toml:{line}: {rest}"),
        _ => message,
    }
}

/// The 1-based line of `field = ...` in table `[table]` of a TOML text (plain keys, as this
/// file is written; a dotted or inline-table spelling is not found).
fn field_line(text: &str, table: &str, field: &str) -> Option<usize> {
    let mut current = "";
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(header) = line.strip_prefix('[') {
            current = header.split(']').next().unwrap_or("").trim();
            continue;
        }
        let is_field = line
            .strip_prefix(field)
            .is_some_and(|rest| rest.trim_start().starts_with('='));
        if current == table && is_field {
            return Some(i + 1);
        }
    }
    None
}

/// The whole file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonConfig {
    pub sip: SipTable,
    pub http: HttpTable,
    pub directory: DirectoryTable,
    pub ledger: LedgerTable,
    pub grants: Grants,
    pub routes: Routes,
    pub emergency: Emergency,
    pub enforcement: tollgate_engine::config::Enforcement,
    pub cluster: ClusterTable,
    pub log: LogTable,
    pub tls: TlsTable,
    pub numbering: NumberingTable,
}

/// `[numbering]`: where the libphonenumber metadata comes from. Numbering plans change every
/// month; an operator can use a newer `PhoneNumberMetadata.xml` and `ShortNumberMetadata.xml`
/// without a new build. `metadata` is a directory holding both (relative as
/// `[directory].path`); empty, the copy built in (libphonenumber v9.0.35). Read and checked at
/// start (`check` and `serve`); a change takes a restart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NumberingTable {
    pub metadata: String,
}

/// `[tls]` (DESIGN §3): the certificate of `tls:` SIP listeners and, with `[http].tls = true`,
/// of the HTTP API. `cert` is a PEM chain (the server's certificate first), `key` its PEM
/// private key (PKCS#8, PKCS#1 or SEC1); `client_ca` a PEM file of CA certificates: when set,
/// every TLS client must present a certificate signed by one of them (mutual TLS between
/// proxies, RFC 3261 §26.3.2.2). Paths are relative as `[directory].path`. The files are re-read on every
/// reload ([`crate::tls`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsTable {
    pub cert: String,
    pub key: String,
    pub client_ca: String,
}

impl TlsTable {
    /// Whether a certificate and its key are configured.
    pub fn configured(&self) -> bool {
        !self.cert.is_empty() && !self.key.is_empty()
    }

    /// Every error of the table, given whether anything serves TLS.
    fn errors(&self, needed_by: &[(&'static str, &'static str, String)]) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if !self.configured() {
            for (table, field, what) in needed_by {
                errors.push(ConfigError::Invalid {
                    table,
                    field,
                    message: format!("{what} needs [tls].cert and [tls].key"),
                });
            }
        }
        let one_of = |field, other: &str| ConfigError::Invalid {
            table: "tls",
            field,
            message: format!("is set but [tls].{other} is not: a certificate needs its key"),
        };
        if self.cert.is_empty() && !self.key.is_empty() {
            errors.push(one_of("key", "cert"));
        }
        if self.key.is_empty() && !self.cert.is_empty() {
            errors.push(one_of("cert", "key"));
        }
        if !self.client_ca.is_empty() && !self.configured() {
            errors.push(ConfigError::Invalid {
                table: "tls",
                field: "client_ca",
                message: "needs [tls].cert and [tls].key: client certificates are asked for \
                          in a TLS handshake"
                    .into(),
            });
        }
        errors
    }
}

/// `[cluster]` (DESIGN §3, §6 "Several nodes"): `store`, the PostgreSQL URL of the pools and
/// balances of record (empty: one node, as without the table); `node_id`, this node's name in
/// the store (empty: the host name); `lease_seconds`, how long a share outlives its node's
/// last heartbeat before it returns to the pool.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterTable {
    pub store: String,
    pub node_id: String,
    pub lease_seconds: u64,
}

impl Default for ClusterTable {
    fn default() -> Self {
        ClusterTable {
            store: String::new(),
            node_id: String::new(),
            lease_seconds: 1200,
        }
    }
}

impl ClusterTable {
    /// Whether several nodes share the store.
    pub fn enabled(&self) -> bool {
        !self.store.trim().is_empty()
    }

    /// Every error of the table.
    fn errors(&self, ledger: &LedgerTable) -> Vec<ConfigError> {
        let invalid = |field, message: &str| ConfigError::Invalid {
            table: "cluster",
            field,
            message: message.into(),
        };
        let mut errors = Vec::new();
        if !self.enabled() {
            return errors;
        }
        let store = self.store.trim();
        if !(store.starts_with("postgres://") || store.starts_with("postgresql://")) {
            errors.push(invalid(
                "store",
                "must be a PostgreSQL URL (postgres://user@host:port/database), or empty for one node",
            ));
        }
        if self.node_id.len() > 64
            || !self
                .node_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            errors.push(invalid(
                "node_id",
                "at most 64 letters, digits, `.`, `_` or `-` (empty: the host name)",
            ));
        }
        if !(10..=86_400).contains(&self.lease_seconds) {
            errors.push(invalid("lease_seconds", "must be 10 to 86400"));
        }
        if !ledger.enabled {
            errors.push(invalid(
                "store",
                "needs [ledger].enabled = true: a node's calls reach the store from its ledger",
            ));
        }
        errors
    }
}

/// `[log]` (DESIGN §3): `format`, `text` (one human line per event) or `json` (one JSON
/// object per line, for a log shipper); `level`, a level name (`info` by default) or
/// comma-separated `target=level` directives as `RUST_LOG` takes them
/// (`info,tollgate::server=debug`). `RUST_LOG`, when set, overrides `level`. A reload applies
/// a new `level`; `format` needs a restart ([`crate::logging`]).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogTable {
    pub format: LogFormat,
    pub level: String,
}

impl Default for LogTable {
    fn default() -> Self {
        LogTable {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// `[log].format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The level names `[log].level` takes, alone or after `target=`.
const LOG_LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

impl LogTable {
    /// Every error of the table. Checked here rather than left to the filter parser, which
    /// reads an unknown word (`level = "verbose"`) as a target name at level `trace`: a typo
    /// would silently turn on every trace line of nothing, and leave the wanted level off.
    fn errors(&self) -> Vec<ConfigError> {
        let bad = |message: String| ConfigError::Invalid {
            table: "log",
            field: "level",
            message,
        };
        let level = self.level.trim();
        if level.is_empty() {
            return vec![bad(format!(
                "must be one of {} or target=level directives",
                LOG_LEVELS.join(", ")
            ))];
        }
        let mut errors = Vec::new();
        for directive in level.split(',') {
            let directive = directive.trim();
            let (target, name) = match directive.rsplit_once('=') {
                Some((t, n)) => (Some(t.trim()), n.trim()),
                None => (None, directive),
            };
            let target_ok = target.is_none_or(|t| {
                !t.is_empty()
                    && t.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_:-".contains(&b))
            });
            if !target_ok || !LOG_LEVELS.contains(&name.to_ascii_lowercase().as_str()) {
                errors.push(bad(format!(
                    "{directive:?}: expected a level ({}) or target=level",
                    LOG_LEVELS.join(", ")
                )));
            }
        }
        errors
    }
}

/// What to do with a request from outside `trusted_peers` (DESIGN §2 step 1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Untrusted {
    /// `403` with reason `untrusted_peer`.
    #[default]
    Reject,
    /// Silence.
    Drop,
}

/// `[sip]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SipTable {
    /// `udp:HOST:PORT` / `tcp:HOST:PORT` / `tls:HOST:PORT` (IPv6 hosts in brackets).
    pub listen: Vec<String>,
    /// CIDR ranges (or single addresses) allowed to ask.
    pub trusted_peers: Vec<String>,
    pub untrusted: Untrusted,
    /// Open TCP connections of trusted peers at most; more are closed at once.
    pub tcp_max_connections: usize,
    /// Open TCP connections from one source address at most (of `tcp_max_connections`), so
    /// one trusted but misbehaving peer cannot take every slot; more are closed at once.
    pub tcp_max_connections_per_peer: usize,
    /// A TCP connection idle this long is closed.
    pub tcp_idle_timeout_seconds: u64,
}

impl Default for SipTable {
    fn default() -> Self {
        SipTable {
            listen: vec!["udp:127.0.0.1:5060".into(), "tcp:127.0.0.1:5060".into()],
            trusted_peers: vec!["127.0.0.0/8".into(), "::1/128".into()],
            untrusted: Untrusted::Reject,
            tcp_max_connections: 1024,
            tcp_max_connections_per_peer: 256,
            tcp_idle_timeout_seconds: 120,
        }
    }
}

/// `[http]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpTable {
    pub listen: String,
    /// A file holding the bearer token for `/v1` (empty: `/v1` open to loopback clients only).
    pub token_file: String,
    /// HTTPS with the `[tls]` certificate.
    pub tls: bool,
}

impl Default for HttpTable {
    fn default() -> Self {
        HttpTable {
            listen: "127.0.0.1:9090".into(),
            token_file: String::new(),
            tls: false,
        }
    }
}

/// `[directory]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DirectoryTable {
    pub path: String,
    /// Reload when a directory file changes ([`crate::watch`]); SIGHUP and `POST /v1/reload`
    /// reload either way.
    pub watch: bool,
    /// A reload that removes more than this share of the users (or of the users with Phone
    /// System), in percent, is refused unless forced ([`tollgate_engine::reload_guard`]);
    /// `100` turns the check off (an emptied catalog is still refused).
    pub reload_max_drop_percent: u8,
}

impl Default for DirectoryTable {
    fn default() -> Self {
        DirectoryTable {
            path: "config".into(),
            watch: true,
            reload_max_drop_percent: ReloadGuard::default().max_drop_percent,
        }
    }
}

impl DirectoryTable {
    pub fn reload_guard(&self) -> ReloadGuard {
        ReloadGuard {
            max_drop_percent: self.reload_max_drop_percent,
        }
    }
}

/// `[ledger]` (DESIGN §6). Beyond `path`, which DESIGN §3 names, the table takes:
/// `enabled` (`false`: the in-memory seam, nothing survives a restart — for tests and for
/// measuring what the ledger costs), `synchronous` (`normal`: survives the process dying;
/// `full`: also an OS crash or power cut, a flush per batch), `queue` (writes waiting at most;
/// beyond it calls get `503 overloaded`), `batch` (writes per transaction at most) and
/// `linger_us` (how long a batch waits for more writes after its first, µs; at moderate load
/// also how long a UDP worker that commits its own calls waits between receives:
/// `transport::pace`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LedgerTable {
    pub enabled: bool,
    /// Relative paths are relative to the directory of `tollgate.toml`'s parent (as
    /// `[directory].path`).
    pub path: String,
    pub synchronous: crate::ledger::Synchronous,
    pub queue: usize,
    pub batch: usize,
    pub linger_us: u64,
}

impl Default for LedgerTable {
    fn default() -> Self {
        LedgerTable {
            enabled: true,
            path: "var/tollgate.db".into(),
            synchronous: crate::ledger::Synchronous::Normal,
            queue: 65_536,
            batch: 4096,
            linger_us: 1000,
        }
    }
}

/// A SIP transport of a listen address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenKind {
    Udp,
    Tcp,
    /// TCP with TLS (RFC 3261 §26.2.1), with the `[tls]` certificate.
    Tls,
}

/// One parsed `[sip].listen` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listen {
    pub kind: ListenKind,
    pub addr: SocketAddr,
}

/// The parsed, checked settings the daemon runs with.
#[derive(Clone, Debug)]
pub struct Checked {
    pub file: DaemonConfig,
    pub engine: EngineConfig,
    pub listen: Vec<Listen>,
    pub trusted: Vec<Cidr>,
    pub http: SocketAddr,
}

impl DaemonConfig {
    /// Parses the text of a `tollgate.toml`.
    pub fn from_toml(text: &str) -> Result<DaemonConfig, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Syntax {
            line: e
                .span()
                .map(|s| tollgate_engine::load::line_of(text, s.start))
                .unwrap_or(0),
            message: e.message().to_string(),
        })
    }

    /// Checks every field; returns every error found.
    pub fn check(self) -> Result<Checked, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let engine = EngineConfig {
            grants: self.grants.clone(),
            routes: self.routes.clone(),
            emergency: self.emergency.clone(),
            enforcement: self.enforcement.clone(),
            shares: self.cluster.enabled(),
        };
        errors.extend(engine.errors().into_iter().map(ConfigError::from));
        errors.extend(self.cluster.errors(&self.ledger));
        errors.extend(self.log.errors());
        let invalid = |table, field, message: String| ConfigError::Invalid {
            table,
            field,
            message,
        };
        let mut listen = Vec::new();
        for l in &self.sip.listen {
            match parse_listen(l) {
                Ok(x) => listen.push(x),
                Err(m) => errors.push(invalid("sip", "listen", format!("{l:?}: {m}"))),
            }
        }
        let mut needs_tls = Vec::new();
        for l in listen.iter().filter(|l| l.kind == ListenKind::Tls) {
            needs_tls.push(("sip", "listen", format!("tls:{}", l.addr)));
        }
        if self.http.tls {
            needs_tls.push(("http", "tls", "HTTPS".to_string()));
        }
        errors.extend(self.tls.errors(&needs_tls));
        let mut trusted = Vec::new();
        for p in &self.sip.trusted_peers {
            match p.parse::<Cidr>() {
                Ok(c) => trusted.push(c),
                Err(m) => errors.push(invalid("sip", "trusted_peers", format!("{p:?}: {m}"))),
            }
        }
        if self.sip.tcp_max_connections == 0 {
            errors.push(invalid(
                "sip",
                "tcp_max_connections",
                "must be at least 1".into(),
            ));
        }
        if self.directory.reload_max_drop_percent > 100 {
            errors.push(invalid(
                "directory",
                "reload_max_drop_percent",
                "must be a percentage, 0 to 100".into(),
            ));
        }
        if self.sip.tcp_max_connections_per_peer == 0 {
            errors.push(invalid(
                "sip",
                "tcp_max_connections_per_peer",
                "must be at least 1".into(),
            ));
        }
        let http = self.http.listen.parse::<SocketAddr>().unwrap_or_else(|e| {
            errors.push(invalid(
                "http",
                "listen",
                format!("{:?}: {e}", self.http.listen),
            ));
            SocketAddr::from(([127, 0, 0, 1], 9090))
        });
        if errors.is_empty() {
            Ok(Checked {
                file: self,
                engine,
                listen,
                trusted,
                http,
            })
        } else {
            Err(errors)
        }
    }
}

/// `udp:127.0.0.1:5060`, `tcp:[::1]:5060`, `tls:127.0.0.1:5061`.
fn parse_listen(s: &str) -> Result<Listen, String> {
    let (scheme, addr) = s
        .split_once(':')
        .ok_or("expected udp:HOST:PORT, tcp:HOST:PORT or tls:HOST:PORT")?;
    let kind = match scheme {
        "udp" => ListenKind::Udp,
        "tcp" => ListenKind::Tcp,
        "tls" => ListenKind::Tls,
        other => return Err(format!("unknown transport {other:?} (udp, tcp or tls)")),
    };
    let addr = addr.parse::<SocketAddr>().map_err(|e| e.to_string())?;
    Ok(Listen { kind, addr })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_config_is_the_default() {
        let c = DaemonConfig::from_toml(include_str!("../../config/tollgate.toml")).unwrap();
        assert_eq!(c, DaemonConfig::default());
        let c = c.check().unwrap();
        assert_eq!(c.listen.len(), 2);
        assert_eq!(c.trusted.len(), 2);
        assert_eq!(
            DaemonConfig::from_toml("").unwrap(),
            DaemonConfig::default()
        );
    }

    #[test]
    fn unknown_fields_and_bad_values() {
        let e = DaemonConfig::from_toml("[sip]\nlisten = []\nbogus = 1\n").unwrap_err();
        assert!(matches!(e, ConfigError::Syntax { line: 3, .. }), "{e}");
        assert!(DaemonConfig::from_toml("[nope]\n").is_err());
        assert!(DaemonConfig::from_toml("[sip]\nuntrusted = \"maybe\"\n").is_err());
        let c = DaemonConfig::from_toml(
            "[sip]\nlisten = [\"sctp:1.2.3.4:5\", \"udp:nohost\"]\ntrusted_peers = [\"10.0.0.0/33\"]\n[http]\nlisten = \"x\"\n[grants]\nbilling_increment_seconds = 0\n",
        )
        .unwrap();
        let errors = c.check().unwrap_err();
        assert_eq!(errors.len(), 5, "{errors:?}");
        assert!(errors[0].to_string().contains("billing_increment_seconds"));
    }

    #[test]
    fn cluster_settings_are_checked_and_located() {
        let ok = "[cluster]\nstore = \"postgres://tollgate@127.0.0.1:5432/tollgate\"\nnode_id = \"a-1\"\n";
        let c = DaemonConfig::from_toml(ok).unwrap().check().unwrap();
        assert!(c.engine.shares, "a store means shares");
        assert!(!DaemonConfig::default().check().unwrap().engine.shares);
        let text = "[ledger]\nenabled = false\n[cluster]\nstore = \"redis://x\"\nnode_id = \"a b\"\nlease_seconds = 5\n";
        let errors = DaemonConfig::from_toml(text).unwrap().check().unwrap_err();
        let located: Vec<String> = errors.iter().map(|e| e.located(text)).collect();
        assert_eq!(located.len(), 4, "{located:?}");
        assert!(
            located[0].starts_with("tollgate.toml:4: [cluster].store: must be a PostgreSQL URL"),
            "{located:?}"
        );
        assert!(
            located[1].starts_with("tollgate.toml:5: [cluster].node_id:"),
            "{located:?}"
        );
        assert!(
            located[2].starts_with("tollgate.toml:6: [cluster].lease_seconds:"),
            "{located:?}"
        );
        assert!(
            located[3].contains("[ledger].enabled = true"),
            "{located:?}"
        );
    }

    #[test]
    fn routes_are_checked_and_located() {
        let text = "[sip]\nlisten = []\n\n[routes]\n# where calls go\ncalling_plan = \"pstn {region}\"\nemergency   = \"sos>\"\n";
        let errors = DaemonConfig::from_toml(text).unwrap().check().unwrap_err();
        let located: Vec<String> = errors.iter().map(|e| e.located(text)).collect();
        assert_eq!(located.len(), 2, "{located:?}");
        assert!(
            located[0].starts_with("tollgate.toml:6: [routes].calling_plan: \"pstn {region}\": "),
            "{located:?}"
        );
        assert!(
            located[1].starts_with("tollgate.toml:7: [routes].emergency: \"sos>\": "),
            "{located:?}"
        );
        // A default value has no line; neither has a field of another table.
        assert_eq!(field_line(text, "routes", "listen"), None);
        assert_eq!(field_line(text, "sip", "listen"), Some(2));
    }

    #[test]
    fn log_table_defaults_parses_and_locates_errors() {
        assert_eq!(
            DaemonConfig::from_toml("").unwrap().log,
            LogTable {
                format: LogFormat::Text,
                level: "info".into()
            }
        );
        let c = DaemonConfig::from_toml(
            "[log]\nformat = \"json\"\nlevel = \"warn,tollgate::server=debug\"\n",
        )
        .unwrap();
        assert_eq!(c.log.format, LogFormat::Json);
        assert!(c.check().is_ok());
        // A format that is neither: a syntax error on its line.
        let e = DaemonConfig::from_toml("[log]\nformat = \"xml\"\n").unwrap_err();
        assert!(matches!(e, ConfigError::Syntax { line: 2, .. }), "{e}");
        let e = DaemonConfig::from_toml("[log]\ncolour = true\n").unwrap_err();
        assert!(matches!(e, ConfigError::Syntax { line: 2, .. }), "{e}");
        // Words the filter parser would take for a target are refused, with their line.
        for bad in [
            "verbose",
            "",
            "info,=debug",
            "info,a b=debug",
            "tollgate=loud",
        ] {
            let text = format!("[sip]\n[log]\nlevel = {bad:?}\n");
            let errors = DaemonConfig::from_toml(&text).unwrap().check().unwrap_err();
            assert_eq!(errors.len(), 1, "{bad:?}: {errors:?}");
            let located = errors[0].located(&text);
            assert!(
                located.starts_with("tollgate.toml:3: [log].level: "),
                "{bad:?}: {located}"
            );
        }
        for good in ["INFO", "off", "debug,tollgate=trace", " warn "] {
            let text = format!("[log]\nlevel = {good:?}\n");
            assert!(
                DaemonConfig::from_toml(&text).unwrap().check().is_ok(),
                "{good:?}"
            );
        }
    }

    #[test]
    fn listen_forms() {
        assert_eq!(
            parse_listen("tcp:[::1]:5070").unwrap().addr,
            "[::1]:5070".parse().unwrap()
        );
        assert_eq!(parse_listen("udp:0.0.0.0:0").unwrap().kind, ListenKind::Udp);
        assert_eq!(
            parse_listen("tls:[::1]:5061").unwrap().kind,
            ListenKind::Tls
        );
        assert!(parse_listen("tls:nohost").is_err());
        assert!(parse_listen("wss:127.0.0.1:443")
            .unwrap_err()
            .contains("udp, tcp or tls"));
    }

    #[test]
    fn tls_settings_are_checked_and_located() {
        let ok = "[sip]\nlisten = [\"tls:127.0.0.1:5061\"]\n[http]\ntls = true\n\
                  [tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nclient_ca = \"ca.pem\"\n";
        let c = DaemonConfig::from_toml(ok).unwrap().check().unwrap();
        assert_eq!(c.listen[0].kind, ListenKind::Tls);
        assert!(c.file.http.tls);
        assert_eq!(c.file.tls.client_ca, "ca.pem");

        // A tls: listener and HTTPS without a certificate: both named, at their lines.
        let text = "[sip]\nlisten = [\"udp:127.0.0.1:5060\", \"tls:127.0.0.1:5061\"]\n\
                    [http]\ntls = true\n";
        let errors = DaemonConfig::from_toml(text).unwrap().check().unwrap_err();
        let located: Vec<String> = errors.iter().map(|e| e.located(text)).collect();
        assert_eq!(
            located,
            [
                "tollgate.toml:2: [sip].listen: tls:127.0.0.1:5061 needs [tls].cert and [tls].key",
                "tollgate.toml:4: [http].tls: HTTPS needs [tls].cert and [tls].key",
            ]
        );

        // Half a pair, and a client CA without a certificate.
        let text = "[tls]\ncert = \"c.pem\"\nclient_ca = \"ca.pem\"\n";
        let errors = DaemonConfig::from_toml(text).unwrap().check().unwrap_err();
        let located: Vec<String> = errors.iter().map(|e| e.located(text)).collect();
        assert_eq!(located.len(), 2, "{located:?}");
        assert!(located[0].starts_with("tollgate.toml:2: [tls].cert: is set but [tls].key is not"));
        assert!(located[1].starts_with("tollgate.toml:3: [tls].client_ca: needs [tls].cert"));

        // Unknown fields of the table are refused with their line.
        let e = DaemonConfig::from_toml("[tls]\ncert = \"c\"\nkey_file = \"k\"\n").unwrap_err();
        assert!(matches!(e, ConfigError::Syntax { line: 3, .. }), "{e}");
        // Without TLS anywhere the table may stay empty (the shipped config).
        assert!(DaemonConfig::default().check().is_ok());
    }
}
