//! Reading the directory (DESIGN §3: `tenants.toml`, `users.csv`, `catalog.toml`, `rates.csv`,
//! and the optional `routing.toml` and `dialplans.toml`)
//! for the engine, which parses and checks it: the engine does no I/O of its own (DESIGN §1).

use std::path::Path;

use tollgate_engine::dialplan::DIALPLANS_FILE;
use tollgate_engine::load::{DirectoryFiles, LoadErrors};
use tollgate_engine::routing::ROUTING_FILE;
use tollgate_engine::Snapshot;

/// The four files of `dir` as bytes; a file that cannot be read says why, with its path. The
/// optional `routing.toml` and `dialplans.toml` (DESIGN §3) are read when they exist.
pub fn files(dir: &Path) -> DirectoryFiles {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let mut files = DirectoryFiles::with(read);
    files.routing = optional(dir, ROUTING_FILE);
    files.dialplans = optional(dir, DIALPLANS_FILE);
    files
}

/// An optional file of the directory: `None` when it does not exist; a file that exists but
/// cannot be read is an error like any other.
fn optional(dir: &Path, name: &str) -> Option<Result<Vec<u8>, String>> {
    let path = dir.join(name);
    match std::fs::read(&path) {
        Ok(bytes) => Some(Ok(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => Some(Err(format!("cannot read {}: {e}", path.display()))),
    }
}

/// The snapshot of the directory at `dir`, or every error of every file (blocking I/O).
pub fn load(dir: &Path) -> Result<Snapshot, LoadErrors> {
    Snapshot::from_files(files(dir))
}
