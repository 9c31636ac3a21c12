//! Every response we build parses in `rsip`, an independent implementation, with the same
//! status, Vias, Call-ID, CSeq and To tag (DESIGN §8).

use std::net::SocketAddr;

use rsip::headers::untyped::UntypedHeader as _;
use rsip::prelude::{HeadersExt as _, ToTypedHeader as _};
use tollgate_sip::to_tag;
use tollgate_sip::{
    parse_message, write_response, Headers, Message, Request, ResponseExtras, Transport, Via,
};

/// Requests of the shapes proxies send: compact forms, folding, tel: URIs, several Vias.
const REQUESTS: &[&str] = &[
    "INVITE sip:+442079460000@tollgate.example.net;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:+442079460000@tollgate.example.net;user=phone>\r\n\
From: \"Alice\" <sip:+14255550101@contoso.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.contoso.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@192.0.2.10>\r\n\
Content-Length: 0\r\n\r\n",
    "INVITE tel:+1-212-555-0100 SIP/2.0\r\n\
v: SIP/2.0/UDP 192.0.2.20;branch=z9hG4bKnashds8;received=192.0.2.99, SIP/2.0/TCP 192.0.2.21:5070;branch=z9hG4bK2\r\n\
v: SIP/2.0/UDP 192.0.2.22\r\n ;branch=z9hG4bK3\r\n\
f: <sip:bob@fabrikam.com>;tag=88\r\n\
t: <tel:+1-212-555-0100>\r\n\
i: 9f8e7d6c@192.0.2.20\r\n\
CSeq: 7\r\n INVITE\r\n\
l: 0\r\n\r\n",
    "OPTIONS sip:tollgate.example.net SIP/2.0\r\n\
Via: SIP/2.0/TCP proxy.example.net:5060;branch=z9hG4bKping\r\n\
From: <sip:ping@proxy.example.net>;tag=p1\r\n\
To: <sip:tollgate.example.net>;tag=already\r\n\
Call-ID: ping-1\r\n\
CSeq: 1 OPTIONS\r\n\
Max-Forwards: 0\r\n\
Content-Length: 0\r\n\r\n",
    "INVITE sip:0044207946@tollgate.example.net SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.30\r\n\
From: sip:carol@contoso.com\r\n\
To: sip:0044207946@tollgate.example.net\r\n\
Call-ID: rfc2543-style@192.0.2.30\r\n\
CSeq: 1 INVITE\r\n\r\n",
];

fn extras_cases() -> Vec<(u16, Option<&'static str>, ResponseExtras<'static>)> {
    vec![
        (
            302,
            None,
            ResponseExtras {
                contact: Some("sip:+442079460000@pstn-gb.example.net;user=phone"),
                basis: Some("international_pool"),
                max_duration: Some(1800),
                ..Default::default()
            },
        ),
        (
            403,
            None,
            ResponseExtras {
                q850_cause: Some(21),
                reason: Some("pool_exhausted"),
                ..Default::default()
            },
        ),
        (
            503,
            None,
            ResponseExtras {
                q850_cause: Some(42),
                reason: Some("overloaded"),
                retry_after: Some(5),
                ..Default::default()
            },
        ),
        (
            405,
            None,
            ResponseExtras {
                allow: true,
                ..Default::default()
            },
        ),
        (400, Some("Malformed CSeq"), ResponseExtras::default()),
        (200, None, ResponseExtras::default()),
    ]
}

/// Parses a request that must be valid.
fn request(raw: &str) -> Request<'_> {
    match parse_message(raw.as_bytes(), Transport::Udp) {
        Ok(Message::Request(r)) => r,
        other => panic!("{other:?}"),
    }
}

/// Checks one built response against `rsip`.
fn cross_check(out: &[u8], status: u16, headers: &Headers<'_>, source: SocketAddr) {
    let text = String::from_utf8_lossy(out);
    let resp = rsip::Response::try_from(out).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
    assert_eq!(resp.status_code().code(), status);

    let ours: Vec<Via<'_>> = headers
        .values(tollgate_sip::HeaderName::Via)
        .map(|v| Via::parse(v).unwrap())
        .collect();
    let theirs: Vec<rsip::typed::Via> = resp
        .headers
        .iter()
        .filter_map(|h| match h {
            rsip::Header::Via(v) => Some(v.typed().unwrap()),
            _ => None,
        })
        .collect();
    assert_eq!(ours.len(), theirs.len(), "{text}");
    for (i, (o, t)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(o.branch, t.branch().map(|b| b.value()), "{text}");
        assert_eq!(o.transport.to_ascii_uppercase(), t.transport.to_string());
        if i == 0 {
            assert_eq!(t.received().unwrap(), Some(source.ip()), "{text}");
            let rport = t.params.iter().find_map(|p| match p {
                rsip::Param::Other(n, Some(v)) if n.value() == "rport" => Some(v.value()),
                _ => None,
            });
            assert_eq!(rport, Some(source.port().to_string().as_str()), "{text}");
        }
    }

    let call_id = headers.first(tollgate_sip::HeaderName::CallId).unwrap();
    assert_eq!(resp.call_id_header().unwrap().value(), call_id);
    let cseq = resp.cseq_header().unwrap().typed().unwrap();
    let req_cseq = headers.first(tollgate_sip::HeaderName::CSeq).unwrap();
    let mut parts = req_cseq.split_whitespace();
    assert_eq!(cseq.seq.to_string(), parts.next().unwrap());
    assert_eq!(cseq.method.to_string(), parts.next().unwrap());

    let to = tollgate_sip::NameAddr::parse(headers.first(tollgate_sip::HeaderName::To).unwrap())
        .unwrap();
    let expected_tag = match to.tag {
        Some(t) => t.to_string(),
        None => {
            let branch = ours[0].branch.unwrap_or(
                headers
                    .values(tollgate_sip::HeaderName::Via)
                    .next()
                    .unwrap(),
            );
            String::from_utf8(to_tag(call_id, branch).to_vec()).unwrap()
        }
    };
    let to_header = resp.to_header().unwrap();
    if to.uri.scheme == tollgate_sip::Scheme::Tel {
        // rsip 0.4 cannot parse `tel:` URIs (DESIGN §8): compare the raw header instead.
        assert!(
            to_header.value().ends_with(&format!(";tag={expected_tag}")),
            "{text}"
        );
        return;
    }
    let tag = to_header.tag();
    let tag = tag.unwrap_or_else(|e| panic!("{e:?}\n{text}")).unwrap();
    assert_eq!(tag.value(), expected_tag, "{text}");
}

#[test]
fn every_response_parses_in_rsip() {
    let sources: [SocketAddr; 2] = [
        "192.0.2.99:5062".parse().unwrap(),
        "198.51.100.7:40000".parse().unwrap(),
    ];
    let mut out = Vec::with_capacity(1024);
    let mut checked = 0;
    for raw in REQUESTS {
        let req = request(raw);
        for (status, phrase, extras) in extras_cases() {
            for source in sources {
                write_response(&mut out, &req.headers, status, phrase, source, &extras);
                cross_check(&out, status, &req.headers, source);
                checked += 1;
            }
        }
    }
    assert_eq!(checked, REQUESTS.len() * 6 * 2);
}

#[test]
fn error_responses_parse_in_rsip() {
    let bad = "INVITE sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\nFrom: <sip:b@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: c1\r\nCSeq: 9 INVITE\r\nMax-Forwards: 300\r\nContent-Length: 0\r\n\r\n";
    let e = parse_message(bad.as_bytes(), Transport::Udp).unwrap_err();
    let headers = e.headers.as_ref().unwrap();
    let mut out = Vec::new();
    let source: SocketAddr = "192.0.2.1:5060".parse().unwrap();
    write_response(
        &mut out,
        headers,
        e.status,
        Some(e.reason),
        source,
        &ResponseExtras::default(),
    );
    assert!(out.starts_with(b"SIP/2.0 400 Malformed Max-Forwards\r\n"));
    cross_check(&out, 400, headers, source);
}

#[test]
fn exact_302_bytes() {
    let req = request(REQUESTS[0]);
    let mut out = Vec::new();
    let extras = ResponseExtras {
        contact: Some("sip:+442079460000@pstn-gb.example.net;user=phone"),
        basis: Some("international_pool"),
        max_duration: Some(1800),
        ..Default::default()
    };
    let source: SocketAddr = "192.0.2.10:5060".parse().unwrap();
    write_response(&mut out, &req.headers, 302, None, source, &extras);
    let tag = String::from_utf8(to_tag(req.call_id, "z9hG4bK776asdhds").to_vec()).unwrap();
    let expected = format!(
        "SIP/2.0 302 Moved Temporarily\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;received=192.0.2.10;rport=5060\r\n\
From: \"Alice\" <sip:+14255550101@contoso.com>;tag=1928301774\r\n\
To: <sip:+442079460000@tollgate.example.net;user=phone>;tag={tag}\r\n\
Call-ID: a84b4c76e66710@pc33.contoso.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:+442079460000@pstn-gb.example.net;user=phone>\r\n\
X-Tollgate-Basis: international_pool\r\n\
X-Tollgate-Max-Duration: 1800\r\n\
Server: {}\r\n\
Content-Length: 0\r\n\r\n",
        tollgate_sip::SERVER
    );
    assert_eq!(String::from_utf8(out.clone()).unwrap(), expected);
    // A retransmission gets identical bytes.
    let mut again = Vec::new();
    write_response(&mut again, &req.headers, 302, None, source, &extras);
    assert_eq!(out, again);
}

#[test]
fn reject_headers() {
    let req = request(REQUESTS[1]);
    let mut out = Vec::new();
    let source: SocketAddr = "[2001:db8::1]:5060".parse().unwrap();
    let extras = ResponseExtras {
        q850_cause: Some(42),
        reason: Some("overloaded"),
        retry_after: Some(5),
        allow: true,
        ..Default::default()
    };
    write_response(&mut out, &req.headers, 503, None, source, &extras);
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("SIP/2.0 503 Service Unavailable\r\n"));
    assert!(
        text.contains(
            "Via: SIP/2.0/UDP 192.0.2.20;branch=z9hG4bKnashds8;received=2001:db8::1;rport=5060\r\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("Via: SIP/2.0/UDP 192.0.2.22;branch=z9hG4bK3\r\n"),
        "{text}"
    );
    assert!(text.contains("CSeq: 7 INVITE\r\n"), "{text}");
    assert!(text.contains("Reason: Q.850;cause=42;text=\"overloaded\"\r\nX-Tollgate-Reason: overloaded\r\nRetry-After: 5\r\nAllow: INVITE, ACK, CANCEL, OPTIONS\r\n"), "{text}");
}
