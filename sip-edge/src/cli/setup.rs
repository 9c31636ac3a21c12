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
}

/// Reads `config_path` and the directory it names; collects every error.
pub fn load(config_path: &Path) -> Result<Setup, Vec<String>> {
    let text = std::fs::read_to_string(config_path)
        .map_err(|e| vec![format!("{}: cannot read: {e}", config_path.display())])?;
    let file = DaemonConfig::from_toml(&text).map_err(|e| vec![e.to_string()])?;
    let directory = resolve_path(config_path, &file.directory.path);
    let mut errors = Vec::new();
    let daemon = file
        .check()
        .map_err(|es| errors.extend(es.iter().map(|e| e.to_string())));
    let snapshot = Snapshot::load(&directory).unwrap_or_else(|e| {
        errors.extend(e.0.iter().map(|e| format!("{}: {e}", directory.display())));
        Snapshot::default()
    });
    match daemon {
        Ok(daemon) if errors.is_empty() => Ok(Setup {
            config: daemon.engine.clone(),
            daemon,
            directory,
            snapshot,
        }),
        _ => Err(errors),
    }
}

/// [`load`], or `None` after printing every error on stderr (the caller exits 2).
pub fn load_or_report(config_path: &Path) -> Option<Setup> {
    load(config_path)
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
    let plan = NumberingPlan::builtin()?;
    Ok(Engine::new(
        Arc::new(plan),
        setup.config,
        setup.snapshot,
        now(),
    ))
}
