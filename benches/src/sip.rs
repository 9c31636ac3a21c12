//! The SIP codec workload of issue 4: a typical 700-byte INVITE and what its 302 adds.
use std::net::SocketAddr;

use tollgate_sip::ResponseExtras;

/// The message of the zero-allocation test (`sip-edge/codec/tests/alloc.rs`).
pub const INVITE: &[u8] = include_bytes!("../../sip-edge/codec/tests/data/invite.sip");

/// Where the INVITE came from.
pub fn source() -> SocketAddr {
    SocketAddr::from(([198, 51, 100, 5], 5060))
}

/// What a 302 adds to the copied headers (DESIGN §2).
pub fn redirect_extras() -> ResponseExtras<'static> {
    ResponseExtras {
        contact: Some("sip:+442079460000@pstn-gb.example.net;user=phone"),
        basis: Some("international_pool"),
        max_duration: Some(1800),
        ..Default::default()
    }
}
