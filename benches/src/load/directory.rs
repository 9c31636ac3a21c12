//! `tollgate-load --write-directory DIR --users N`: the synthetic directory of
//! [`crate::directory_gen`] (the one the criterion benches use) written to `DIR`, plus a
//! `DIR/tollgate.toml` that serves it, so that `tollgate check --config DIR/tollgate.toml` and
//! `tollgate serve --config DIR/tollgate.toml` work as they are.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;

/// Where the daemon of the written `tollgate.toml` listens.
#[derive(Clone, Copy, Debug)]
pub struct Listen {
    /// SIP, UDP and TCP.
    pub sip: SocketAddr,
    pub http: SocketAddr,
}

/// Writes `tenants.toml`, `users.csv`, `catalog.toml`, `rates.csv` and `tollgate.toml` of
/// `users` users into `dir` (created if needed).
pub fn write(dir: &Path, users: usize, listen: Listen) -> anyhow::Result<()> {
    crate::directory_gen::write_dir(dir, users)
        .with_context(|| format!("cannot write the directory {}", dir.display()))?;
    // Absolute paths: the daemon resolves relative ones against the config file's
    // grandparent (the repository root for `config/tollgate.toml`).
    let abs =
        std::fs::canonicalize(dir).with_context(|| format!("cannot resolve {}", dir.display()))?;
    let path = dir.join("tollgate.toml");
    std::fs::write(&path, tollgate_toml(&abs, listen))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The daemon configuration serving the directory at `abs` (an absolute path).
pub fn tollgate_toml(abs: &Path, listen: Listen) -> String {
    // TOML basic strings: escape backslashes and quotes of the path.
    let dir = abs
        .display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    format!(
        "# Written by `tollgate-load --write-directory`: serves the synthetic directory beside it.\n\
         [sip]\n\
         listen = [\"udp:{sip}\", \"tcp:{sip}\"]\n\
         trusted_peers = [\"127.0.0.0/8\", \"::1/128\"]\n\
         [http]\n\
         listen = \"{http}\"\n\
         [directory]\n\
         path = \"{dir}\"\n\
         watch = false\n\
         [ledger]\n\
         path = \"{dir}/tollgate.db\"\n",
        sip = listen.sip,
        http = listen.http,
    )
}
