//! Fuzzes the SIP parser on both transports, TCP framing, and the response builder on every
//! request it accepts or can answer, and all of that again on the Latin-1 repair of a head that
//! is not UTF-8 (`latin1_head`, which the daemon parses instead). Any panic, overflow or
//! out-of-bounds access is a finding.
#![no_main]

use std::net::{Ipv4Addr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use tollgate_sip::{
    frame_len, latin1_head, parse_message, write_response, Message, ResponseExtras, Transport,
};

fuzz_target!(|data: &[u8]| {
    let mut repaired = Vec::new();
    if latin1_head(data, &mut repaired) {
        assert!(!latin1_head(&repaired, &mut Vec::new()));
        exercise(&repaired);
    }
    exercise(data);
});

fn exercise(data: &[u8]) {
    let source = SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), 5060));
    let mut out = Vec::with_capacity(2048);
    if let Ok(Some(n)) = frame_len(data) {
        assert!(n <= data.len());
    }
    for transport in [Transport::Udp, Transport::Tcp] {
        let headers = match parse_message(data, transport) {
            Ok(Message::Request(req)) => Some(req.headers),
            Ok(Message::Response(_)) => None,
            Err(e) => e.headers,
        };
        if let Some(h) = headers {
            write_response(&mut out, &h, 400, Some("Bad"), source, &ResponseExtras::default());
            assert!(out.ends_with(b"Content-Length: 0\r\n\r\n"));
        }
    }
}
