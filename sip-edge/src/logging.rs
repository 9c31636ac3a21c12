//! The daemon's log (`[log]`, DESIGN §3): text or JSON lines on stderr, filtered by
//! `[log].level` unless `RUST_LOG` is set.
//!
//! The level sits in a [`reload`] layer so that a reload (SIGHUP, `POST /v1/reload`) can turn
//! debug on for a while without dropping the calls in flight; the format is a different
//! writer stack and takes a restart. The subscriber is process-global (the `tracing`
//! dispatcher), so its reload handle is too.

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter, Registry};

use crate::config::{LogFormat, LogTable};

/// How the running filter can be changed; `None` while `RUST_LOG` decides the level.
static LEVEL: OnceLock<Option<reload::Handle<EnvFilter, Registry>>> = OnceLock::new();

/// Installs the global subscriber as `log` says (once; later calls change nothing). `RUST_LOG`,
/// when set and valid, takes precedence over `level`, now and on reloads.
pub fn init(log: &LogTable) {
    let from_env = std::env::var_os(EnvFilter::DEFAULT_ENV)
        .and_then(|_| EnvFilter::try_from_default_env().ok());
    let by_env = from_env.is_some();
    let filter = from_env.unwrap_or_else(|| filter_of(&log.level));
    let (filter, handle) = reload::Layer::new(filter);
    let ansi = std::io::stderr().is_terminal();
    let (text, json) = match log.format {
        LogFormat::Text => (
            Some(fmt::layer().with_writer(std::io::stderr).with_ansi(ansi)),
            None,
        ),
        // One object per line, the event's fields at the top level beside `timestamp`,
        // `level`, `target` and `message`, so a shipper indexes `reason` or `call_id` as is.
        LogFormat::Json => (
            None,
            Some(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            ),
        ),
    };
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
        .try_init()
        .is_ok();
    if installed {
        let _ = LEVEL.set((!by_env).then_some(handle));
    }
}

/// The filter of a checked `[log].level` (the config check refuses what would not parse;
/// should it fail anyway, `info`).
fn filter_of(level: &str) -> EnvFilter {
    EnvFilter::try_new(level.trim()).unwrap_or_else(|_| EnvFilter::new("info"))
}

/// What a reload did with a new `[log].level`.
#[derive(Debug, PartialEq, Eq)]
pub enum LevelChange {
    Applied,
    /// `RUST_LOG` is set: it keeps deciding.
    Overridden,
    /// No subscriber of ours (a test, or `init` not called).
    NotInstalled,
}

/// Swaps the running filter for `level` (checked by [`crate::config`]).
pub fn set_level(level: &str) -> Result<LevelChange, String> {
    match LEVEL.get() {
        None => Ok(LevelChange::NotInstalled),
        Some(None) => Ok(LevelChange::Overridden),
        Some(Some(handle)) => handle
            .reload(filter_of(level))
            .map(|()| LevelChange::Applied)
            .map_err(|e| e.to_string()),
    }
}
