//! The hot path allocates nothing (DESIGN §7): parsing a typical INVITE and building its 302
//! into a reused buffer make zero heap allocations. A counting global allocator, in this test
//! binary only, checks it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;

use tollgate_sip::{parse_message, write_response, Message, ResponseExtras, Transport};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts (per thread, so that the test
// harness's own threads do not disturb the count).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

const INVITE: &[u8] = include_bytes!("data/invite.sip");

#[test]
fn parse_and_build_do_not_allocate() {
    let source: SocketAddr = "198.51.100.5:5060".parse().unwrap();
    let extras = ResponseExtras {
        contact: Some("sip:+442079460000@pstn-gb.example.net;user=phone"),
        basis: Some("international_pool"),
        max_duration: Some(1800),
        ..Default::default()
    };
    let mut out = Vec::with_capacity(2048);

    let before = allocations();
    let parsed = parse_message(INVITE, Transport::Udp);
    let after_parse = allocations();
    let Ok(Message::Request(req)) = parsed else {
        panic!("typical INVITE did not parse");
    };
    write_response(&mut out, &req.headers, 302, None, source, &extras);
    let after_build = allocations();

    assert_eq!(after_parse - before, 0, "parse allocated");
    assert_eq!(after_build - after_parse, 0, "building the 302 allocated");
    assert!(out.starts_with(b"SIP/2.0 302 Moved Temporarily\r\n"));
    // Accessors the daemon uses do not allocate either.
    let before = allocations();
    let pai = req.p_asserted_identity.map(|a| a.uri.user);
    let dialed = (req.uri.user, req.uri.is_phone(), req.uri.phone_context());
    assert_eq!(allocations() - before, 0);
    assert_eq!(pai, Some(Some("+14255550101")));
    assert_eq!(dialed, (Some("+442079460000"), true, None));
}

#[test]
fn errors_do_not_allocate() {
    let bad = b"INVITE sip:a@example.com SIP/7.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
From: <sip:b@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n";
    let before = allocations();
    let e = parse_message(bad, Transport::Udp).unwrap_err();
    assert_eq!(allocations() - before, 0);
    assert_eq!(e.status, 505);
    assert!(e.addressable());
}
