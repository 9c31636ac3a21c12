//! `[directory].watch = true` (DESIGN §5): reload the directory when one of its files changes.
//!
//! The watch is on the directory itself, not on the four files, so that every way of replacing
//! a file is seen: writing it in place, an editor's write-then-rename, `mv new users.csv`, a
//! file removed and created again. Events for other names (editor swap and backup files, the
//! SQLite ledger if it sits nearby) are ignored, and so is merely opening a file (a reload opens
//! all four). A burst of events (a large file written in pieces, four files copied one after the
//! other) is folded into one reload, [`DEBOUNCE`] after the last event.
//!
//! The reload is [`Server::reload`], the same as SIGHUP and `POST /v1/reload`: a bad directory
//! keeps the old snapshot, is logged and counted (`tollgate_reloads_total{result="error"}`).
//!
//! Kubernetes mounts a ConfigMap as symlinks through `..data`, swapped by a rename on update:
//! an event on `..data` counts as a change too.
//!
//! Not covered: the watched directory itself removed or renamed (the watch ends with it;
//! SIGHUP still reloads).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{Event, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tollgate_engine::load::{CATALOG_FILE, RATES_FILE, TENANTS_FILE, USERS_FILE};

use crate::server::Server;
use crate::transport::{stopped, Shutdown};

/// Quiet time after the last change before reloading.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// The names whose changes reload the directory.
const WATCHED: [&str; 5] = [TENANTS_FILE, USERS_FILE, CATALOG_FILE, RATES_FILE, "..data"];

/// Starts watching `directory` (now, so that a change made once this returns is seen) and
/// spawns the task that reloads `server` on change, until `shutdown`. A watch that cannot be set
/// up (no inotify instances left, directory gone) is logged and skipped: the daemon serves on,
/// SIGHUP still reloads.
pub fn spawn(tasks: &mut JoinSet<()>, server: Arc<Server>, directory: PathBuf, shutdown: Shutdown) {
    let changed = Arc::new(Notify::new());
    let watcher = match watch(&directory, Arc::clone(&changed)) {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(directory = %directory.display(), error = %e,
                "cannot watch the directory; reload with SIGHUP or POST /v1/reload");
            return;
        }
    };
    tracing::info!(directory = %directory.display(), "watching the directory for changes");
    tasks.spawn(run(watcher, changed, server, shutdown));
}

/// An inotify (or platform) watch on `directory` that wakes `changed` on each relevant event.
fn watch(directory: &Path, changed: Arc<Notify>) -> notify::Result<RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<Event>| match res {
        Ok(event) if relevant(&event) => changed.notify_one(),
        Ok(_) => {}
        Err(e) => {
            // Lost events (e.g. an overflowing queue): reload to be safe.
            tracing::warn!(error = %e, "directory watch error");
            changed.notify_one();
        }
    })?;
    watcher.watch(directory, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

/// Whether `event` may have changed the directory's contents.
fn relevant(event: &Event) -> bool {
    if event.need_rescan() {
        return true;
    }
    let changes = match event.kind {
        // Opening and reading change nothing (and a reload does both).
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) => true,
        EventKind::Any | EventKind::Other => true,
    };
    changes && event.paths.iter().any(|p| watched_name(p))
}

fn watched_name(path: &Path) -> bool {
    path.file_name()
        .and_then(OsStr::to_str)
        .is_some_and(|name| WATCHED.contains(&name))
}

/// Reloads [`DEBOUNCE`] after the last change, until `shutdown`. Owns `watcher`: the watch ends
/// with the task.
async fn run(
    watcher: RecommendedWatcher,
    changed: Arc<Notify>,
    server: Arc<Server>,
    mut shutdown: Shutdown,
) {
    let _watcher = watcher;
    let mut due: Option<Instant> = None;
    loop {
        let deadline = due.unwrap_or_else(Instant::now);
        tokio::select! {
            () = changed.notified() => due = Some(Instant::now() + DEBOUNCE),
            () = tokio::time::sleep_until(deadline), if due.is_some() => {
                due = None;
                let s = Arc::clone(&server);
                // Errors are logged and counted by `reload`.
                let _ = tokio::task::spawn_blocking(move || s.reload()).await;
            }
            () = stopped(&mut shutdown) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use notify::event::{CreateKind, DataChange, ModifyKind, RemoveKind, RenameMode};

    use super::*;

    fn event(kind: EventKind, paths: &[&str]) -> Event {
        let mut e = Event::new(kind);
        for p in paths {
            e = e.add_path(PathBuf::from(p));
        }
        e
    }

    #[test]
    fn changes_to_directory_files_count() {
        let write = EventKind::Modify(ModifyKind::Data(DataChange::Any));
        for name in [
            "tenants.toml",
            "users.csv",
            "catalog.toml",
            "rates.csv",
            "..data",
        ] {
            assert!(relevant(&event(write, &[&format!("/etc/tollgate/{name}")])));
        }
        let rename = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        assert!(relevant(&event(
            rename,
            &["/d/users.csv.new", "/d/users.csv"]
        )));
        assert!(relevant(&event(
            EventKind::Create(CreateKind::File),
            &["/d/rates.csv"]
        )));
        assert!(relevant(&event(
            EventKind::Remove(RemoveKind::File),
            &["/d/catalog.toml"]
        )));
        let closed = EventKind::Access(AccessKind::Close(AccessMode::Write));
        assert!(relevant(&event(closed, &["/d/users.csv"])));
    }

    #[test]
    fn other_files_and_reads_do_not() {
        let write = EventKind::Modify(ModifyKind::Data(DataChange::Any));
        for name in [
            "tollgate.db",
            "tollgate.db-wal",
            "users.csv~",
            ".users.csv.swp",
            "4913",
        ] {
            assert!(!relevant(&event(write, &[&format!("/d/{name}")])), "{name}");
        }
        let open = EventKind::Access(AccessKind::Open(AccessMode::Any));
        assert!(!relevant(&event(open, &["/d/users.csv"])));
        let closed = EventKind::Access(AccessKind::Close(AccessMode::Read));
        assert!(!relevant(&event(closed, &["/d/users.csv"])));
        let rescan = Event::new(EventKind::Other).set_flag(notify::event::Flag::Rescan);
        assert!(relevant(&rescan));
    }
}
