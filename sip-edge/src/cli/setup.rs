//! Loading what `decide` and `check` need from `tollgate.toml`: the engine settings
//! (`[grants]`, `[routes]`) and the directory (`[directory].path`).
//!
//! Relative paths in `tollgate.toml` are resolved against the **parent of the directory holding
//! the config file**: with the shipped `config/tollgate.toml`, `path = "config"` is the
//! repository's `config/`, whatever the current directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tollgate_engine::numbering::NumberingPlan;
use tollgate_engine::{Engine, EngineConfig, Snapshot};

/// Everything read, or every error found (one line each).
pub struct Setup {
    pub config: EngineConfig,
    pub directory: PathBuf,
    pub snapshot: Snapshot,
}

/// The `[directory]` table: only `path` matters here.
#[derive(serde::Deserialize, Default)]
struct DirectoryTable {
    path: Option<String>,
}

#[derive(serde::Deserialize, Default)]
struct Outer {
    #[serde(default)]
    directory: DirectoryTable,
}

/// Reads `config_path` and the directory it names; collects every error.
pub fn load(config_path: &Path) -> Result<Setup, Vec<String>> {
    let text = std::fs::read_to_string(config_path)
        .map_err(|e| vec![format!("{}: cannot read: {e}", config_path.display())])?;
    let mut errors = Vec::new();
    let config = EngineConfig::from_toml(&text).unwrap_or_else(|e| {
        errors.push(e.to_string());
        EngineConfig::default()
    });
    let outer: Outer = toml::from_str(&text).unwrap_or_else(|e| {
        errors.push(format!("tollgate.toml: [directory]: {}", e.message()));
        Outer::default()
    });
    let rel = outer.directory.path.unwrap_or_else(|| "config".into());
    let base = config_path
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    let directory = if Path::new(&rel).is_absolute() {
        PathBuf::from(rel)
    } else {
        base.join(rel)
    };
    let snapshot = Snapshot::load(&directory).unwrap_or_else(|e| {
        errors.extend(e.0.iter().map(|e| format!("{}: {e}", directory.display())));
        Snapshot::default()
    });
    if errors.is_empty() {
        Ok(Setup {
            config,
            directory,
            snapshot,
        })
    } else {
        Err(errors)
    }
}

/// Unix seconds now (the CLI may read the clock; the engine never does).
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
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
