//! `tollgate-engine`: the pure decision core of Tollgate.
//!
//! Like `quinn-proto` under `quinn`, this crate does no I/O of its own: no sockets, no tokio, no
//! clock reads. The daemon (`sip-edge`) feeds it bytes already parsed and the current time, and
//! turns its answers back into SIP and HTTP. Every business rule lives here, so every rule is
//! unit-testable without a socket.

pub mod catalog;
pub mod credits;
pub mod directory;
pub mod load;
pub mod numbering;
pub mod pools;
