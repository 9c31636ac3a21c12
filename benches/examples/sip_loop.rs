//! Parses the typical INVITE and builds its 302 in a loop, for instruction counts (steadier
//! than time on a shared machine). Run with N = 0 and N = 100000 and diff the totals:
//!
//! ```text
//! CARGO_PROFILE_RELEASE_DEBUG=true cargo build --release -p tollgate-benches --example sip_loop
//! valgrind --tool=callgrind target/release/examples/sip_loop both 100000
//! callgrind_annotate --inclusive=no callgrind.out.<pid>
//! ```
//!
//! (Debug info only maps instructions to source lines.) Figures: `benches/README.md`,
//! "The SIP codec".
//!
//! The first argument is `parse` (parse only), `build` (build from one parse) or `both`.
use std::hint::black_box;

use tollgate_benches::sip::{redirect_extras, source, INVITE};
use tollgate_sip::{parse_message, write_response, Message, Transport};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let what = args.get(1).map(String::as_str).unwrap_or("both");
    let n: usize = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let (source, extras) = (source(), redirect_extras());
    let mut out = Vec::with_capacity(2048);
    let Ok(Message::Request(req)) = parse_message(INVITE, Transport::Udp) else {
        panic!("the INVITE does not parse");
    };
    let t = std::time::Instant::now();
    let mut total = 0;
    for _ in 0..n {
        match what {
            "parse" => total += parse_message(black_box(INVITE), Transport::Udp).is_ok() as usize,
            "build" => {
                write_response(
                    &mut out,
                    black_box(&req.headers),
                    302,
                    None,
                    source,
                    &extras,
                );
                total += out.len();
            }
            _ => {
                if let Ok(Message::Request(r)) = parse_message(black_box(INVITE), Transport::Udp) {
                    write_response(&mut out, &r.headers, 302, None, source, &extras);
                    total += out.len();
                }
            }
        }
    }
    let per = t.elapsed().as_nanos() as f64 / n.max(1) as f64;
    println!("{what}: {per:.1} ns/iteration ({total})");
}
