//! `tollgate-engine`: the pure decision core of Tollgate.
//!
//! Like `quinn-proto` under `quinn`, this crate does no I/O of its own: no sockets, no tokio, no
//! clock reads. The daemon (`sip-edge`) feeds it bytes already parsed and the current time, and
//! turns its answers back into SIP and HTTP. Every business rule lives here, so every rule is
//! unit-testable without a socket.
//!
//! # The API a driver uses
//!
//! - [`NumberingPlan`](numbering::NumberingPlan): dialed string → E.164, region, number type.
//!   Compiled once, shared in an `Arc`.
//! - [`load::DirectoryFiles`]: the bytes of `tenants.toml`, `users.csv`, `catalog.toml` and
//!   `rates.csv`, read by the driver (the engine does no I/O).
//! - [`Snapshot`]: the checked, indexed directory, from [`Snapshot::from_files`] (or
//!   [`Snapshot::build`] from [`load::Records`]).
//! - [`EngineConfig`]: `[grants]`, `[routes]` and `[emergency]` of `tollgate.toml`
//!   ([`EngineConfig::from_toml`]).
//! - [`Engine`]: the decision core, shared by every thread.
//! - [`Request`] → [`Decision`]: one INVITE in; out, an admit ([`Basis`], [`Route`], maximum
//!   duration, the reserved [`Grant`]) or a reject ([`Reason`]).
//! - [`Settlement`], [`Extension`], [`CallError`]: the answers about a call already admitted.
//! - [`StoredCall`]: a call as the ledger keeps it, written after each change and handed back
//!   at start-up.
//!
//! # The order of calls
//!
//! 1. Build the snapshot: read the four files into [`load::DirectoryFiles`], then
//!    [`Snapshot::from_files`]; a [`load::LoadErrors`] names every bad file, line and field.
//! 2. [`Engine::new`] with the plan, the config, the snapshot and `now`.
//! 3. [`Engine::restore`] with every [`StoredCall`] the ledger holds, then [`Engine::expire`]
//!    (DESIGN §6), before any traffic.
//! 4. Per INVITE, [`Engine::authorize`]; persist [`Decision::grant`] (as
//!    [`StoredCall::admitted`]) before the 302 leaves, or [`Engine::abort`] if that fails.
//! 5. Per call, [`Engine::extend`] for a further grant, [`Engine::settle`] when the proxy
//!    reports the end, [`Engine::release`] on CANCEL; [`Engine::expire`] about once a second
//!    settles unreported calls. [`Engine::reload`] swaps in a new snapshot at any time.
//!
//! [`Engine::authorize`] shows steps 1, 2 and 4 on an inline directory. The rules themselves
//! are DESIGN §4, in [`policy`]; their vocabulary ([`Reason`], [`Basis`], [`Rule`]) is pinned by
//! DESIGN §2.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod bytes;
pub mod catalog;
pub mod conference;
pub mod config;
pub mod credits;
pub mod dialplan;
pub mod directory;
pub mod engine;
pub mod fxhash;
pub mod limits;
pub mod load;
pub mod numbering;
pub mod policy;
pub mod pools;
pub mod reload_guard;
pub mod reservations;
pub mod restore;
pub mod routing;
pub mod sequence;
pub mod shares;

pub use config::EngineConfig;
pub use directory::Snapshot;
pub use engine::{Ending, Engine, Extension, Mode, Request};
pub use policy::{Basis, Decision, Outcome, Reason, Route, Rule};
pub use reservations::{CallError, CallRecord, CallState, Funding, Grant, Settlement};
pub use restore::{Restored, StoredCall, StoredFunding};
