//! One daemon per ledger: an exclusive `flock` on `<ledger>.lock`, held for the life of the
//! process.
//!
//! Two daemons on one ledger would each rebuild the pools from it and admit against their own
//! copy (the UDP port can even be shared, with `SO_REUSEPORT`), overselling every pool, and
//! their writes would interleave. SQLite's own locks only serialize the transactions. So the
//! daemon takes this lock before it opens the ledger (and before it binds anything), and a
//! second one exits at once naming the holder.
//!
//! Why `flock` on a file beside the ledger: the kernel drops it when the process dies, even by
//! `kill -9`, so a restart never finds a stale lock; and it is not on the database file itself
//! because SQLite's POSIX locks on that file are released whenever any descriptor of it in the
//! process is closed. Readers (`tollgate cdrs`, `tollgate pools`, other SQLite clients) never
//! take it: they read while the daemon runs. The file holds the holder's pid, for the message.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::LedgerError;

/// The lock, held until dropped (the process's exit).
#[derive(Debug)]
pub struct Exclusive {
    _file: File,
}

/// `<ledger>.lock` beside the ledger, through symbolic links: two paths to one ledger lock one
/// file.
pub fn lock_path(ledger: &Path) -> PathBuf {
    let real = std::fs::canonicalize(ledger).unwrap_or_else(|_| {
        let dir = ledger.parent().filter(|d| !d.as_os_str().is_empty());
        match (dir.map(std::fs::canonicalize), ledger.file_name()) {
            (Some(Ok(d)), Some(name)) => d.join(name),
            _ => ledger.to_path_buf(),
        }
    });
    let mut name = real.into_os_string();
    name.push(".lock");
    PathBuf::from(name)
}

/// Takes the lock of `ledger` (creating its directory and the lock file if needed), or says
/// who holds it.
pub fn acquire(ledger: &Path) -> Result<Exclusive, LedgerError> {
    if let Some(dir) = ledger.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| LedgerError::Io(dir.display().to_string(), e))?;
    }
    let path = lock_path(ledger);
    let io = |e| LedgerError::Io(path.display().to_string(), e);
    // Not truncated on open: until this process holds the lock the pid is the holder's.
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    // SAFETY: `file` is an open descriptor for the whole call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(io(e));
        }
        let mut text = String::new();
        let pid = file
            .read_to_string(&mut text)
            .ok()
            .and_then(|_| text.trim().parse().ok());
        return Err(LedgerError::Locked { lock: path, pid });
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    Ok(Exclusive { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = dir.path().join("sub").join("ledger.db");
        let first = acquire(&ledger).unwrap();
        // flock locks belong to the open file: a second open in this process conflicts too.
        match acquire(&ledger) {
            Err(LedgerError::Locked { lock, pid }) => {
                assert_eq!(pid, Some(std::process::id()));
                assert!(lock.ends_with("sub/ledger.db.lock"), "{}", lock.display());
            }
            other => panic!("{other:?}"),
        }
        // Another path to the same ledger (a symbolic link to its directory) is the same lock.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path().join("sub"), &link).unwrap();
        assert!(matches!(
            acquire(&link.join("ledger.db")),
            Err(LedgerError::Locked { .. })
        ));
        drop(first);
        assert!(acquire(&ledger).is_ok());
    }
}
