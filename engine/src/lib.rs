//! `tollgate-engine`: the pure decision core of Tollgate.
//!
//! Like `quinn-proto` under `quinn`, this crate does no I/O of its own: no sockets, no tokio, no
//! clock reads. The daemon (`sip-edge`) feeds it bytes already parsed and the current time, and
//! turns its answers back into SIP and HTTP. Every business rule lives here, so every rule is
//! unit-testable without a socket.

#![forbid(unsafe_code)]

mod bytes;
pub mod catalog;
pub mod config;
pub mod credits;
pub mod directory;
pub mod engine;
pub mod fxhash;
pub mod load;
pub mod numbering;
pub mod policy;
pub mod pools;
pub mod reload_guard;
pub mod reservations;
pub mod restore;
pub mod sequence;

pub use config::EngineConfig;
pub use directory::Snapshot;
pub use engine::{Engine, Extension, Mode, Request};
pub use policy::{Basis, Decision, Outcome, Reason, Route, Rule};
pub use reservations::{CallError, CallRecord, CallState, Funding, Grant, Settlement};
pub use restore::{Restored, StoredCall, StoredFunding};
