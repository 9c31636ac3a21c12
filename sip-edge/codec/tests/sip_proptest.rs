//! Property tests of the SIP codec: no input panics; generated valid requests, written with
//! random header spellings (case, compact forms, space before the colon, folding), parse back
//! to what was generated, and their responses parse in `rsip` with the same identifiers.

use std::net::SocketAddr;

use proptest::prelude::*;
use rsip::headers::untyped::UntypedHeader as _;
use rsip::prelude::{HeadersExt as _, ToTypedHeader as _};
use tollgate_sip::{
    frame_len, latin1_head, parse_message, write_response, Message, Method, ResponseExtras,
    Transport,
};

const VALID: &[u8] = b"INVITE sip:+442079460000@tollgate.example.net;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\nTo: <sip:+442079460000@tollgate.example.net;user=phone>\r\n\
From: \"Alice\" <sip:+14255550101@contoso.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.contoso.com\r\nCSeq: 314159 INVITE\r\n\
Content-Length: 4\r\n\r\nv=0\n";

/// Runs every entry point on `data` and, when its head is not UTF-8, on its Latin-1 repair
/// ([`latin1_head`], which the daemon parses instead); none may panic, and every answerable
/// input gets a response.
fn exercise(data: &[u8]) {
    let mut repaired = Vec::new();
    if latin1_head(data, &mut repaired) {
        assert!(
            !latin1_head(&repaired, &mut Vec::new()),
            "repaired once for all"
        );
        exercise_one(&repaired);
    }
    exercise_one(data);
}

fn exercise_one(data: &[u8]) {
    let mut out = Vec::new();
    let source: SocketAddr = "192.0.2.1:5060".parse().unwrap();
    if let Ok(Some(n)) = frame_len(data) {
        assert!(n <= data.len());
    }
    for transport in [Transport::Udp, Transport::Tcp] {
        let headers = match parse_message(data, transport) {
            Ok(Message::Request(r)) => Some(r.headers),
            Ok(Message::Response(_)) => None,
            Err(e) => e.headers,
        };
        if let Some(h) = headers {
            write_response(&mut out, &h, 400, None, source, &ResponseExtras::default());
            assert!(out.ends_with(b"Content-Length: 0\r\n\r\n"));
        }
    }
}

/// A header name spelled in one of the ways RFC 3261 §7.3 allows.
fn spelled(full: &'static str, compact: Option<&'static str>) -> impl Strategy<Value = String> {
    (any::<bool>(), any::<u8>(), 0..3usize).prop_map(move |(use_compact, case, spaces)| {
        let name = match compact {
            Some(c) if use_compact => c.to_string(),
            _ => full
                .chars()
                .enumerate()
                .map(|(i, ch)| {
                    if case >> (i % 8) & 1 == 1 {
                        ch.to_ascii_uppercase()
                    } else {
                        ch.to_ascii_lowercase()
                    }
                })
                .collect(),
        };
        format!("{name}{}:", " ".repeat(spaces))
    })
}

/// Separator before a value: a space, or a fold.
fn sep() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just(" "), Just("  "), Just("\r\n "), Just("\r\n\t")]
}

#[derive(Debug, Clone)]
struct Generated {
    method: &'static str,
    user: String,
    host: String,
    branch: String,
    from_tag: String,
    to_tag: Option<String>,
    call_id: String,
    cseq: u32,
    max_forwards: u8,
    port: Option<u16>,
    names: Vec<String>,
    seps: Vec<&'static str>,
    body: String,
}

fn generated() -> impl Strategy<Value = Generated> {
    let names = (
        spelled("Via", Some("v")),
        spelled("From", Some("f")),
        spelled("To", Some("t")),
        spelled("Call-ID", Some("i")),
        spelled("CSeq", None),
        spelled("Max-Forwards", None),
        spelled("Content-Length", Some("l")),
    )
        .prop_map(|(a, b, c, d, e, f, g)| vec![a, b, c, d, e, f, g]);
    (
        (
            prop::sample::select(vec!["INVITE", "OPTIONS", "CANCEL", "ACK", "BYE"]),
            "\\+?[0-9]{3,15}",
            "[a-z][a-z0-9-]{0,10}(\\.[a-z][a-z0-9]{0,8}){1,3}",
            "z9hG4bK[A-Za-z0-9.!%*_+`'~-]{1,20}",
            "[A-Za-z0-9.!%*_+`'~-]{1,16}",
            prop::option::of("[A-Za-z0-9]{1,16}"),
            "[A-Za-z0-9.!%*_+~-]{1,24}(@[a-z0-9.]{1,16})?",
        ),
        (
            0..(1u32 << 31),
            any::<u8>(),
            prop::option::of(1..=65535u16),
            names,
            prop::collection::vec(sep(), 7),
            "[ -~]{0,64}",
        ),
    )
        .prop_map(
            |(
                (method, user, host, branch, from_tag, to_tag, call_id),
                (cseq, max_forwards, port, names, seps, body),
            )| Generated {
                method,
                user,
                host,
                branch,
                from_tag,
                to_tag,
                call_id,
                cseq,
                max_forwards,
                port,
                names,
                seps,
                body,
            },
        )
}

impl Generated {
    fn render(&self) -> String {
        let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
        let to_tag = self
            .to_tag
            .as_ref()
            .map(|t| format!(";tag={t}"))
            .unwrap_or_default();
        let (n, s) = (&self.names, &self.seps);
        format!(
            "{m} sip:{u}@{h};user=phone SIP/2.0\r\n\
{}{}SIP/2.0/UDP {h}{port};branch={b};rport\r\n\
{}{}<sip:alice@{h}>;tag={ft}\r\n\
{}{}<sip:{u}@{h}>{to_tag}\r\n\
{}{}{c}\r\n\
{}{}{q}{}{m}\r\n\
{}{}{mf}\r\n\
{}{}{len}\r\n\r\n{body}",
            n[0],
            s[0],
            n[1],
            s[1],
            n[2],
            s[2],
            n[3],
            s[3],
            n[4],
            s[4],
            s[5],
            n[5],
            s[6],
            n[6],
            s[0],
            m = self.method,
            u = self.user,
            h = self.host,
            b = self.branch,
            ft = self.from_tag,
            c = self.call_id,
            q = self.cseq,
            mf = self.max_forwards,
            len = self.body.len(),
            body = self.body,
        )
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..1500)) {
        exercise(&data);
    }

    #[test]
    fn mutated_requests_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..8)
    ) {
        let mut data = VALID.to_vec();
        for (at, byte, op) in edits {
            let i = at.index(data.len());
            match op {
                0 => data[i] = byte,
                1 => data.insert(i, byte),
                _ => {
                    data.remove(i);
                }
            }
        }
        exercise(&data);
    }

    #[test]
    fn generated_requests_round_trip(g in generated()) {
        let text = g.render();
        let req = match parse_message(text.as_bytes(), Transport::Tcp) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}\n{text}"),
        };
        prop_assert_eq!(frame_len(text.as_bytes()).unwrap(), Some(text.len()));
        prop_assert_eq!(req.method, Method::from_token(g.method));
        prop_assert_eq!(req.uri.user, Some(g.user.as_str()));
        prop_assert_eq!(req.uri.host, g.host.as_str());
        prop_assert_eq!(req.via.host, g.host.as_str());
        prop_assert_eq!(req.via.port, g.port);
        prop_assert_eq!(req.via.branch, Some(g.branch.as_str()));
        prop_assert_eq!(req.from.tag, Some(g.from_tag.as_str()));
        prop_assert_eq!(req.to.tag, g.to_tag.as_deref());
        prop_assert_eq!(req.call_id, g.call_id.as_str());
        prop_assert_eq!((req.cseq.seq, req.cseq.method), (g.cseq, req.method));
        prop_assert_eq!(req.max_forwards, Some(g.max_forwards));
        prop_assert_eq!(req.body, g.body.as_bytes());

        // Its response parses in rsip with the same identifiers.
        let source: SocketAddr = "198.51.100.7:40000".parse().unwrap();
        let mut out = Vec::new();
        write_response(&mut out, &req.headers, 302, None, source, &ResponseExtras {
            contact: Some("sip:+442079460000@pstn-gb.example.net;user=phone"),
            ..Default::default()
        });
        let resp = rsip::Response::try_from(&out[..]).unwrap();
        prop_assert_eq!(resp.call_id_header().unwrap().value(), req.call_id);
        let cseq = resp.cseq_header().unwrap().typed().unwrap();
        prop_assert_eq!(cseq.seq, g.cseq);
        let via = resp.via_header().unwrap().typed().unwrap();
        prop_assert_eq!(via.branch().map(|b| b.value().to_string()), Some(g.branch.clone()));
        let tag = resp.to_header().unwrap().tag().unwrap().unwrap();
        if let Some(t) = &g.to_tag {
            prop_assert_eq!(tag.value(), t.as_str());
        }
    }

    /// A From display name of arbitrary Latin-1 bytes (not UTF-8, against RFC 3261 §25 but
    /// sent in the field) parses once [`latin1_head`] repairs the head: the same URI and tag,
    /// the display name decoded as Latin-1, the body untouched; on UDP and TCP alike.
    #[test]
    fn latin1_display_names_parse_after_repair(
        pairs in prop::collection::vec((0x80u8..=0xff, 0x20u8..0x7f), 1..20)
    ) {
        // Each byte above 0x7f followed by an ASCII one: never valid UTF-8, so always Latin-1.
        let name: Vec<u8> = pairs
            .into_iter()
            .flat_map(|(high, ascii)| [high, ascii])
            .map(|b| if b == b'"' || b == b'\\' { b'x' } else { b })
            .collect();
        let (before, after) = VALID.split_at(
            VALID.windows(6).position(|w| w == b"From: ").unwrap() + 6,
        );
        let after = &after[after.iter().position(|&b| b == b'<').unwrap()..];
        let mut msg = before.to_vec();
        msg.push(b'"');
        msg.extend_from_slice(&name);
        msg.extend_from_slice(b"\" ");
        msg.extend_from_slice(after);
        let mut fixed = Vec::new();
        let repaired = latin1_head(&msg, &mut fixed);
        prop_assert!(repaired);
        prop_assert!(parse_message(&msg, Transport::Udp).is_err());
        for transport in [Transport::Udp, Transport::Tcp] {
            let req = match parse_message(&fixed, transport) {
                Ok(Message::Request(r)) => r,
                other => panic!("{other:?}"),
            };
            let latin1: String = name.iter().map(|&b| char::from(b)).collect();
            let quoted = format!("\"{latin1}\"");
            prop_assert_eq!(req.from.display, Some(quoted.as_str()));
            prop_assert_eq!(req.from.uri.user, Some("+14255550101"));
            prop_assert_eq!(req.from.tag, Some("1928301774"));
            prop_assert_eq!(req.body, b"v=0\n");
        }
    }
}
