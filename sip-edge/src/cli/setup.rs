//! Loading `tollgate.toml` ([`crate::config`]) and the directory it names (`[directory].path`),
//! for `decide`, `check` and `serve`.
//!
//! Relative paths in `tollgate.toml` are resolved against the **parent of the directory holding
//! the config file**: with the shipped `config/tollgate.toml`, `path = "config"` is the
//! repository's `config/`, whatever the current directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tollgate_engine::numbering::NumberingPlan;
use tollgate_engine::{Engine, EngineConfig, Snapshot};

use crate::config::{Checked, DaemonConfig};

/// Everything read, or every error found (one line each).
pub struct Setup {
    /// The whole `tollgate.toml`, checked.
    pub daemon: Checked,
    pub config: EngineConfig,
    pub directory: PathBuf,
    pub snapshot: Snapshot,
    /// The numbering plan: `[numbering].metadata`'s, else the one built in.
    pub plan: Arc<NumberingPlan>,
    /// The bearer token of `[http].token_file`, read when serving only.
    pub token: Option<Arc<str>>,
    /// The `[tls]` certificate, read when serving only, and only when `[tls]` names one.
    pub tls: Option<Arc<crate::tls::Tls>>,
}

/// Reads `config_path` and the directory it names, and with `serving` also what `serve` reads
/// besides ([`read_token`], the `[tls]` files: `check` must refuse whatever `serve` would
/// refuse); collects every error.
pub fn load(config_path: &Path, serving: bool) -> Result<Setup, Vec<String>> {
    let text = std::fs::read_to_string(config_path)
        .map_err(|e| vec![format!("{}: cannot read: {e}", config_path.display())])?;
    let file = DaemonConfig::from_toml(&text).map_err(|e| vec![e.to_string()])?;
    let directory = resolve_path(config_path, &file.directory.path);
    let mut errors = Vec::new();
    let token = if serving {
        read_token(config_path, &file.http.token_file).unwrap_or_else(|e| {
            errors.push(crate::config::locate(e, &text, "http", "token_file"));
            None
        })
    } else {
        None
    };
    // A `[tls]` that names a certificate is read even if nothing serves TLS yet, so that `check`
    // finds a broken file before `[http].tls` or a `tls:` listener is turned on.
    let tls = if serving && file.tls.configured() {
        let files = crate::tls::TlsFiles::of(config_path, &file.tls);
        crate::tls::Tls::load(files).map(Arc::new).map_or_else(
            |es| {
                errors.extend(es.iter().map(|e| {
                    crate::config::locate(format!("tollgate.toml: {e}"), &text, "tls", e.field())
                }));
                None
            },
            Some,
        )
    } else {
        None
    };
    let metadata = file.numbering.metadata.clone();
    let daemon = file
        .check()
        .map_err(|es| errors.extend(es.iter().map(|e| e.located(&text))));
    let snapshot = crate::directory::load(&directory).unwrap_or_else(|e| {
        errors.extend(e.0.iter().map(|e| format!("{}: {e}", directory.display())));
        Snapshot::default()
    });
    let plan = numbering_plan(config_path, &metadata)
        .and_then(|plan| covers_directory(plan, &snapshot))
        .map_err(|e| errors.push(crate::config::locate(e, &text, "numbering", "metadata")))
        .ok();
    match (daemon, plan) {
        (Ok(daemon), Some(plan)) if errors.is_empty() => Ok(Setup {
            config: daemon.engine.clone(),
            daemon,
            directory,
            snapshot,
            plan: Arc::new(plan),
            token,
            tls,
        }),
        _ => Err(errors),
    }
}

/// The numbering plan of `[numbering].metadata` (`metadata`, relative as `[directory].path`):
/// the directory's `PhoneNumberMetadata.xml` and `ShortNumberMetadata.xml`, or the copy built in
/// when empty. An error names the field, the file and, for a file that does not parse, its line.
pub fn numbering_plan(config_path: &Path, metadata: &str) -> Result<NumberingPlan, String> {
    let field = "tollgate.toml: [numbering].metadata";
    if metadata.is_empty() {
        return NumberingPlan::builtin().map_err(|e| format!("{field}: the built-in copy: {e}"));
    }
    let dir = resolve_path(config_path, metadata);
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path)
            .map_err(|e| format!("{field}: {}: cannot read: {e}", path.display()))
    };
    let phone = read("PhoneNumberMetadata.xml")?;
    let short = read("ShortNumberMetadata.xml")?;
    NumberingPlan::from_xml(&phone, &short).map_err(|e| format!("{field}: {}/{e}", dir.display()))
}

/// `plan`, if it can read the numbers of every usage location of the directory: a region it
/// lacks would make its users' national numbers, emergency numbers included, unreadable.
fn covers_directory(plan: NumberingPlan, snapshot: &Snapshot) -> Result<NumberingPlan, String> {
    let mut missing: Vec<String> = snapshot
        .users
        .iter()
        .map(|u| u.usage_location)
        .filter(|r| !plan.has_region(*r))
        .map(|r| r.as_str().to_string())
        .collect();
    missing.sort_unstable();
    missing.dedup();
    if missing.is_empty() {
        Ok(plan)
    } else {
        Err(format!(
            "tollgate.toml: [numbering].metadata: lacks regions the directory's users are licensed in: {}",
            missing.join(", ")
        ))
    }
}

/// [`load`], or `None` after printing every error on stderr (the caller exits 2).
pub fn load_or_report(config_path: &Path, serving: bool) -> Option<Setup> {
    load(config_path, serving)
        .map_err(|errors| {
            for e in &errors {
                eprintln!("{e}");
            }
        })
        .ok()
}

/// A path of `tollgate.toml` (`[directory].path`, `[http].token_file`), resolved as above.
pub fn resolve_path(config_path: &Path, rel: &str) -> PathBuf {
    let base = config_path
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    if Path::new(rel).is_absolute() {
        PathBuf::from(rel)
    } else {
        base.join(rel)
    }
}

pub use crate::server::now;

/// The bearer token of `[http].token_file` (an empty setting: none, `/v1` is open to loopback
/// clients only), for `serve` and `check` alike, so that `check` refuses what `serve` would.
///
/// A file that cannot be read, or that holds no token, is an error rather than "no token":
/// an operator who set the field meant `/v1` to be guarded. The token is the file's text
/// trimmed of surrounding white space (a trailing newline is usual); inside, it must be
/// visible ASCII, since it has to be sent in an `Authorization: Bearer` header (RFC 6750 §2.1
/// `b64token`, RFC 9110 §11.4): a token with a space or a control character could never match.
pub fn read_token(config_path: &Path, file: &str) -> Result<Option<Arc<str>>, String> {
    if file.is_empty() {
        return Ok(None);
    }
    let field = "tollgate.toml: [http].token_file";
    let path = resolve_path(config_path, file);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("{field}: {}: cannot read: {e}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!(
            "{field}: {}: holds no token (the file is empty or only white space)",
            path.display()
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{field}: {}: the token holds white space or a character that is not visible \
             ASCII, which an Authorization header cannot carry (RFC 6750 §2.1)",
            path.display()
        ));
    }
    Ok(Some(token.into()))
}

/// The ledger settings of `[ledger]`, its path resolved as above; `None` when disabled.
pub fn ledger_settings(config_path: &Path, file: &DaemonConfig) -> Option<crate::ledger::Settings> {
    let l = &file.ledger;
    l.enabled.then(|| crate::ledger::Settings {
        path: resolve_path(config_path, &l.path),
        synchronous: l.synchronous,
        queue: l.queue,
        batch: l.batch,
        linger: std::time::Duration::from_micros(l.linger_us),
    })
}

/// An engine over the loaded directory.
pub fn engine(setup: Setup) -> anyhow::Result<Engine> {
    Ok(Engine::new(setup.plan, setup.config, setup.snapshot, now()))
}
