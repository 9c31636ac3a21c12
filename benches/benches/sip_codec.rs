//! Criterion benches of the SIP codec (issue 4): parsing a typical 700-byte INVITE and building
//! its 302, side by side with `rsip` parsing the same message in the same run.
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use tollgate_benches::sip::{redirect_extras, source, INVITE};
use tollgate_sip::{parse_message, write_response, Message, Transport};

fn sip_codec(c: &mut Criterion) {
    let source = source();
    let extras = redirect_extras();
    assert!(
        rsip::SipMessage::try_from(INVITE).is_ok(),
        "rsip parses the INVITE"
    );
    let mut out = Vec::with_capacity(2048);

    let mut g = c.benchmark_group("sip_codec");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    g.bench_function("tollgate_parse_and_302", |b| {
        b.iter(|| {
            if let Ok(Message::Request(req)) = parse_message(black_box(INVITE), Transport::Udp) {
                write_response(&mut out, &req.headers, 302, None, source, &extras);
            }
            black_box(out.len())
        })
    });
    g.bench_function("tollgate_parse", |b| {
        b.iter(|| parse_message(black_box(INVITE), Transport::Udp).is_ok())
    });
    g.bench_function("rsip_parse", |b| {
        b.iter(|| rsip::SipMessage::try_from(black_box(INVITE)).is_ok())
    });
    g.finish();
}

criterion_group!(benches, sip_codec);
criterion_main!(benches);
