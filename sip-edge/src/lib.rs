//! `tollgate`: the daemon and CLI around `tollgate-engine`.
//!
//! The engine decides; this crate translates bytes to engine calls and engine answers to bytes.

pub mod cli;
pub mod cluster;
pub mod config;
pub mod decision;
pub mod directory;
pub mod http;
pub mod ledger;
pub mod logging;
pub mod metrics;
pub mod peers;
pub mod server;
pub mod store;
pub mod tls;
pub mod transport;
pub mod usage;
pub mod watch;

/// The SIP codec, its own crate (`tollgate-sip`); re-exported so `crate::sip::…` paths stay.
pub use tollgate_sip as sip;
