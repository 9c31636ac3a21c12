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
//! Deploy tools replace the whole directory (`mv config.new config`, or a symlink swapped with
//! `ln -sfn`): the watch on the old directory would go on watching what is now `config.old`, or
//! nothing. So the parent directory is watched too, for the directory's own name only; when that
//! name is replaced, the watch moves to the new directory and the directory reloads.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify::{Event, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tollgate_engine::dialplan::DIALPLANS_FILE;
use tollgate_engine::load::{CATALOG_FILE, RATES_FILE, TENANTS_FILE, USERS_FILE};
use tollgate_engine::routing::ROUTING_FILE;

use crate::server::Server;
use crate::transport::{stopped, Shutdown};

/// Quiet time after the last change before reloading.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// The names whose changes reload the directory.
const WATCHED: [&str; 7] = [
    TENANTS_FILE,
    USERS_FILE,
    CATALOG_FILE,
    RATES_FILE,
    ROUTING_FILE,
    DIALPLANS_FILE,
    "..data",
];

/// Starts watching `directory` (now, so that a change made once this returns is seen) and
/// spawns the task that reloads `server` on change, until `shutdown`. A watch that cannot be set
/// up (no inotify instances left, directory gone) is logged and skipped: the daemon serves on,
/// SIGHUP still reloads.
pub fn spawn(tasks: &mut JoinSet<()>, server: Arc<Server>, directory: PathBuf, shutdown: Shutdown) {
    // Absolute, not canonical: a symlink swapped over the name must still be followed.
    let directory = std::path::absolute(&directory).unwrap_or(directory);
    let changed = Arc::new(Notify::new());
    let replaced = Arc::new(Notify::new());
    let watcher = match watch(&directory, Arc::clone(&changed), Arc::clone(&replaced)) {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(directory = %directory.display(), error = %e,
                "cannot watch the directory; reload with SIGHUP or POST /v1/reload");
            return;
        }
    };
    tracing::info!(directory = %directory.display(), "watching the directory for changes");
    tasks.spawn(run(watcher, directory, changed, replaced, server, shutdown));
}

/// An inotify (or platform) watch on `directory` that wakes `changed` on each relevant event,
/// and on its parent that wakes `replaced` (and `changed`) when the directory's name is replaced.
fn watch(
    directory: &Path,
    changed: Arc<Notify>,
    replaced: Arc<Notify>,
) -> notify::Result<RecommendedWatcher> {
    let dir = directory.to_path_buf();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<Event>| match res {
        Ok(event) if replaces(&dir, &event) => {
            replaced.notify_one();
            changed.notify_one();
        }
        Ok(event) if relevant(&dir, &event) => changed.notify_one(),
        Ok(_) => {}
        Err(e) => {
            // Lost events (e.g. an overflowing queue): reload to be safe.
            tracing::warn!(error = %e, "directory watch error");
            changed.notify_one();
        }
    })?;
    watcher.watch(directory, RecursiveMode::NonRecursive)?;
    if let Some(parent) = directory.parent() {
        if let Err(e) = watcher.watch(parent, RecursiveMode::NonRecursive) {
            tracing::warn!(directory = %parent.display(), error = %e,
                "cannot watch the directory's parent: a directory replaced by `mv` will not be followed");
        }
    }
    Ok(watcher)
}

/// Whether `event` put something else under the name of `directory` (or took it away): a
/// rename, a creation or a removal of that name. Listing or opening it is no change.
fn replaces(directory: &Path, event: &Event) -> bool {
    matches!(
        event.kind,
        EventKind::Create(_) | EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
    ) && event.paths.iter().any(|p| p == directory)
}

/// Whether `event` may have changed the contents of `directory`.
fn relevant(directory: &Path, event: &Event) -> bool {
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
    changes
        && event
            .paths
            .iter()
            .any(|p| p.parent() == Some(directory) && watched_name(p))
}

fn watched_name(path: &Path) -> bool {
    path.file_name()
        .and_then(OsStr::to_str)
        .is_some_and(|name| WATCHED.contains(&name))
}

/// Reloads [`DEBOUNCE`] after the last change, until `shutdown`. Owns `watcher`: the watch ends
/// with the task.
async fn run(
    mut watcher: RecommendedWatcher,
    directory: PathBuf,
    changed: Arc<Notify>,
    replaced: Arc<Notify>,
    server: Arc<Server>,
    mut shutdown: Shutdown,
) {
    let mut due: Option<Instant> = None;
    loop {
        let deadline = due.unwrap_or_else(Instant::now);
        tokio::select! {
            () = replaced.notified() => {
                // The name now points at another directory (or at nothing, until the next
                // event on it): watch whatever it is now.
                let _ = watcher.unwatch(&directory);
                match watcher.watch(&directory, RecursiveMode::NonRecursive) {
                    Ok(()) => tracing::info!(directory = %directory.display(), "directory replaced; watching the new one"),
                    Err(e) => tracing::warn!(directory = %directory.display(), error = %e, "directory gone; watching for it to come back"),
                }
            }
            () = changed.notified() => due = Some(Instant::now() + DEBOUNCE),
            () = tokio::time::sleep_until(deadline), if due.is_some() => {
                due = None;
                let s = Arc::clone(&server);
                // Errors are logged and counted by `reload`.
                let _ = tokio::task::spawn_blocking(move || s.reload(false)).await;
            }
            () = stopped(&mut shutdown) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use notify::event::{CreateKind, DataChange, RemoveKind, RenameMode};

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
            "routing.toml",
            "dialplans.toml",
            "..data",
        ] {
            assert!(relevant(
                Path::new("/d"),
                &event(write, &[&format!("/d/{name}")])
            ));
        }
        let rename = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        assert!(relevant(
            Path::new("/d"),
            &event(rename, &["/d/users.csv.new", "/d/users.csv"])
        ));
        assert!(relevant(
            Path::new("/d"),
            &event(EventKind::Create(CreateKind::File), &["/d/rates.csv"])
        ));
        assert!(relevant(
            Path::new("/d"),
            &event(EventKind::Remove(RemoveKind::File), &["/d/catalog.toml"])
        ));
        let closed = EventKind::Access(AccessKind::Close(AccessMode::Write));
        assert!(relevant(Path::new("/d"), &event(closed, &["/d/users.csv"])));
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
            assert!(
                !relevant(Path::new("/d"), &event(write, &[&format!("/d/{name}")])),
                "{name}"
            );
        }
        let open = EventKind::Access(AccessKind::Open(AccessMode::Any));
        assert!(!relevant(Path::new("/d"), &event(open, &["/d/users.csv"])));
        let closed = EventKind::Access(AccessKind::Close(AccessMode::Read));
        assert!(!relevant(
            Path::new("/d"),
            &event(closed, &["/d/users.csv"])
        ));
        // The same names beside the directory, in the parent that is watched too.
        assert!(!relevant(Path::new("/d"), &event(write, &["/users.csv"])));
        let rescan = Event::new(EventKind::Other).set_flag(notify::event::Flag::Rescan);
        assert!(relevant(Path::new("/d"), &rescan));
    }

    #[test]
    fn the_directory_replaced_under_its_name_is_followed() {
        let d = Path::new("/etc/tollgate");
        let rename = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        assert!(replaces(
            d,
            &event(rename, &["/etc/tollgate.new", "/etc/tollgate"])
        ));
        assert!(replaces(
            d,
            &event(EventKind::Create(CreateKind::Folder), &["/etc/tollgate"])
        ));
        assert!(replaces(
            d,
            &event(EventKind::Remove(RemoveKind::Folder), &["/etc/tollgate"])
        ));
        let open = EventKind::Access(AccessKind::Open(AccessMode::Any));
        assert!(!replaces(d, &event(open, &["/etc/tollgate"])));
        assert!(!replaces(
            d,
            &event(rename, &["/etc/other.new", "/etc/other"])
        ));
        assert!(!replaces(d, &event(rename, &["/etc/tollgate/users.csv"])));
    }
}
