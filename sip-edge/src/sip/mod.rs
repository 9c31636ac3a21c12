//! Tollgate's SIP codec: a zero-copy parser with validation, and a response builder.
//!
//! - [`parse::parse_message`] parses one datagram or TCP frame into a borrowed [`Message`]
//!   (RFC 3261 §7, §20, §25) and validates requests ([`validate`]); [`parse::frame_len`] finds
//!   the end of a message in a TCP stream (RFC 3261 §18.3).
//! - [`response::write_response`] writes a response into a reusable buffer (RFC 3261 §8.2.6,
//!   RFC 3581, RFC 3326).
//!
//! Nothing here allocates on the heap or panics on any input; the tests include every case of
//! RFC 4475 §3 (see `tests/sip_rfc4475.rs`).

pub mod address;
pub mod error;
pub mod header;
pub mod lex;
pub mod message;
pub mod parse;
pub mod response;
pub mod uri;
pub mod validate;
pub mod via;
mod write;

#[cfg(test)]
mod fast_paths_tests;

pub use address::NameAddr;
pub use error::{Fault, ParseError};
pub use header::{Header, HeaderName, Headers};
pub use message::{CSeq, Message, Method, Request, Response};
pub use parse::{frame_len, latin1_head, parse_message};
pub use response::{rewrite_response, write_response, ResponseExtras};
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
