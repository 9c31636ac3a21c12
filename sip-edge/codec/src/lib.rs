//! Tollgate's SIP codec: a zero-copy parser with validation, and a response builder.
//!
//! - [`parse_message`] parses one datagram or TCP frame into a borrowed [`Message`]
//!   (RFC 3261 §7, §20, §25) and validates requests; [`frame_len`] finds the end of a message
//!   in a TCP stream (RFC 3261 §18.3); [`latin1_head`] repairs a header section that is not
//!   UTF-8 before parsing.
//! - [`write_response`] writes a response into a reusable buffer (RFC 3261 §8.2.6, RFC 3581,
//!   RFC 3326); [`rewrite_response`] turns an answer already written into another status.
//!
//! Nothing here allocates on the heap or panics on any input; the tests include every case of
//! RFC 4475 §3 (see `tests/sip_rfc4475.rs`).
//!
//! A crate of its own, with no tokio, no SQLite and no engine (DESIGN §1): the daemon, the
//! fuzz target and the load generator all use it, and the last two need nothing else. The
//! modules are private; what they export for those users is re-exported here.
#![warn(missing_docs)]
// One `unsafe` block (`parse_message`'s ASCII fast path skips UTF-8 validation it has already
// done) is allowed where it stands; nothing else may add any.
#![deny(unsafe_code)]

mod address;
mod error;
mod header;
mod lex;
mod message;
mod parse;
mod response;
mod uri;
mod validate;
mod via;
mod write;

#[cfg(test)]
mod fast_paths_tests;

pub use address::NameAddr;
pub use error::{Fault, ParseError};
pub use header::{Header, HeaderName, Headers, MAX_HEADERS};
pub use message::{CSeq, Message, Method, Request, Response};
pub use parse::{frame_len, latin1_head, parse_message, MAX_LINE_LEN, MAX_MESSAGE_LEN};
pub use response::{
    reason_phrase, rewrite_response, to_tag, write_decimal, write_response, ResponseExtras, ALLOW,
    SERVER,
};
pub use uri::{Scheme, Uri};
pub use via::Via;

/// The transport a message arrived on; it decides body framing (RFC 3261 §18.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A datagram: without Content-Length the body runs to its end.
    Udp,
    /// A stream (TCP or TLS): Content-Length is mandatory.
    Tcp,
}
