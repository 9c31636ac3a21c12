//! Reading the directory (DESIGN §3: `tenants.toml`, `users.csv`, `catalog.toml`, `rates.csv`)
//! for the engine, which parses and checks it: the engine does no I/O of its own (DESIGN §1).

use std::path::Path;

use tollgate_engine::load::{DirectoryFiles, LoadErrors};
use tollgate_engine::Snapshot;

/// The four files of `dir` as bytes; a file that cannot be read says why, with its path.
pub fn files(dir: &Path) -> DirectoryFiles {
    DirectoryFiles::with(|name| {
        let path = dir.join(name);
        std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    })
}

/// The snapshot of the directory at `dir`, or every error of every file (blocking I/O).
pub fn load(dir: &Path) -> Result<Snapshot, LoadErrors> {
    Snapshot::from_files(files(dir))
}
