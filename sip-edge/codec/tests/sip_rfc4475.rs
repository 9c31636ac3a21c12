//! One message of our own for every case RFC 4475 §3 describes, each with the answer the RFC
//! expects (or, where Tollgate deliberately differs, the documented answer).
//!
//! Messages are written with `\n` line ends and sent with CRLF; `@LEN@` is replaced by the
//! length of the body (what follows the empty line).

use tollgate_sip::{parse_message, Message, Method, Request, Scheme, Transport};

/// What the codec must do with a message.
#[derive(Debug)]
enum Expect {
    /// A valid request.
    Accept,
    /// A response (recognized, then dropped).
    Response(u16),
    /// An answered error with this status.
    Answer(u16),
    /// An error that cannot be addressed: dropped.
    Silent,
}

fn wire(text: &str) -> Vec<u8> {
    let crlf = text.replace('\n', "\r\n");
    let body_len = crlf.find("\r\n\r\n").map_or(0, |i| crlf.len() - i - 4);
    crlf.replace("@LEN@", &body_len.to_string()).into_bytes()
}

fn check(bytes: &[u8], expect: Expect) -> Option<Request<'_>> {
    let got = parse_message(bytes, Transport::Udp);
    match (got, expect) {
        (Ok(Message::Request(r)), Expect::Accept) => return Some(r),
        (Ok(Message::Response(r)), Expect::Response(s)) => assert_eq!(r.status, s),
        (Err(e), Expect::Answer(s)) => {
            assert_eq!(e.status, s, "{e}");
            assert!(e.addressable(), "{e} not addressable");
        }
        (Err(e), Expect::Silent) => assert!(!e.addressable(), "{e} addressable"),
        (got, expect) => panic!("expected {expect:?}, got {got:?}"),
    }
    None
}

const SDP: &str = "v=0\no=mhandley 29739 7272939 IN IP4 192.0.2.3\ns=-\nc=IN IP4 192.0.2.4\nt=0 0\nm=audio 49217 RTP/AVP 0 12\nm=video 3227 RTP/AVP 31\na=rtpmap:31 LPC\n";

/// §3.1.1.1 A short tortuous INVITE: odd case, spacing, folding, compact forms.
#[test]
fn wsinv() {
    let m = wire(&format!(
        "INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0
TO :
 sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n
from   : \"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>
  ;
  tag = 98asjd8
MaX-fOrWaRdS: 0068
Call-ID: wsinv.ndaksdj@192.0.2.1
Content-Length   : @LEN@
cseq: 0009
  INVITE
Via  : SIP  /   2.0
 /UDP
    192.0.2.2;branch=390skdjuw
s :
NewFangledHeader:   newfangled value
 continued newfangled value
UnknownHeaderWithUnusualValue: ;;,,;;,;
Content-Type: application/sdp
Route:
 <sip:services.example.com;lr;unknownwith=value;unknown-no-value>
v:  SIP  / 2.0  / TCP     spindle.example.com   ;
  branch  =   z9hG4bK9ikj8  ,
 SIP  /    2.0   / UDP  192.168.255.111   ; branch=
 z9hG4bK30239
m:\"Quoted string \\\"\\\"\" <sip:jdrosen@example.com> ; newparam =
      newvalue ;
  secondparam ; q = 0.33

{SDP}"
    ));
    let r = check(&m, Expect::Accept).unwrap();
    assert_eq!(r.method, Method::Invite);
    assert_eq!(r.to.tag, Some("1918181833n"));
    assert_eq!(r.from.tag, Some("98asjd8"));
    assert_eq!(r.from.uri.user, Some("jdrosen"));
    assert_eq!((r.cseq.seq, r.cseq.method), (9, Method::Invite));
    assert_eq!(r.max_forwards, Some(68));
    assert_eq!((r.via.host, r.via.branch), ("192.0.2.2", Some("390skdjuw")));
    assert_eq!(r.vias().count(), 3);
    assert_eq!(r.body.len(), SDP.replace('\n', "\r\n").len());
}

/// §3.1.1.2 Wide range of valid characters.
#[test]
fn intmeth() {
    let m = wire(
        "!interesting-Method0123456789_*+`.%indeed'~ sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com SIP/2.0
Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~
To: \"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f\" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>
From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%=\"\u{440}\u{430}\u{431}\u{43e}\u{442}\u{430}\";tag=_token~1'+`*%!-.
Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{
CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~
Max-Forwards: 255
extensionHeader-!.%*+_`'~:\u{feff}\u{5927}\u{505c}\u{96fb}
Content-Length: 0

",
    );
    let r = check(&m, Expect::Accept).unwrap();
    assert_eq!(
        r.method,
        Method::Other("!interesting-Method0123456789_*+`.%indeed'~")
    );
    assert_eq!(r.cseq.method, r.method);
    assert_eq!(r.from.tag, Some("_token~1'+`*%!-."));
}

/// §3.1.1.3 Valid use of the % escaping mechanism.
#[test]
fn esc01() {
    let m = wire(&format!(
        "INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0
To: sip:%75se%72@example.com
From: <sip:I%20have%20spaces@example.net>;tag=938
Max-Forwards: 87
i: esc01.239409asdfakjkn23onasd0-3234
CSeq: 234234 INVITE
Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw
C: application/sdp
Contact:
  <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>
Content-Length: @LEN@

{SDP}"
    ));
    let r = check(&m, Expect::Accept).unwrap();
    assert_eq!(r.uri.user, Some("sips%3Auser%40example.com"));
    assert_eq!(r.to.uri.user, Some("%75se%72"));
}

/// §3.1.1.4 Escaped nulls in URIs.
#[test]
fn escnull() {
    let m = wire(
        "REGISTER sip:example.com SIP/2.0
To: sip:null-%00-null@example.com
From: sip:null-%00-null@example.com;tag=839923423
Max-Forwards: 70
Call-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd
CSeq: 14398234 REGISTER
Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw
Contact: <sip:%00@host5.example.com>
Contact: <sip:%00%00@host5.example.com>
L:0

",
    );
    let r = check(&m, Expect::Accept).unwrap();
    assert_eq!(r.method, Method::Register);
}

/// §3.1.1.5 Use of % when it is not an escape (a token character in a method).
#[test]
fn esc02() {
    let m = wire(
        "RE%47IST%45R sip:registrar.example.com SIP/2.0
To: \"%Z%45\" <sip:resource@example.com>
From: \"%Z%45\" <sip:resource@example.com>;tag=f232jadfj23
Call-ID: esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf
Via: SIP/2.0/TCP host.example.com;rport;branch=z9hG4bK209%fzsnel234
CSeq: 29344 RE%47IST%45R
Max-Forwards: 70
Contact: <sip:alias1@host1.example.com>
C%6Fntact: <sip:alias2@host2.example.com>
Contact: <sip:alias3@host3.example.com>
l: 0

",
    );
    let r = check(&m, Expect::Accept).unwrap();
    assert_eq!(r.method, Method::Other("RE%47IST%45R"));
    assert_eq!(r.via.rport, Some(None));
}

/// §3.1.1.6 No LWS between display name and <.
#[test]
fn lwsdisp() {
    let m = wire(
        "OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: caller<sip:caller@example.com>;tag=323
Max-Forwards: 70
Call-ID: lwsdisp.1234abcd@funky.example.com
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw
l: 0

",
    );
    let r = check(&m, Expect::Accept).unwrap();
    assert_eq!(r.from.display, Some("caller"));
}

/// §3.1.1.7 Long values in header fields.
#[test]
fn longreq() {
    let long = "very".repeat(100);
    let vias: String = (0..8)
        .map(|i| {
            format!(
                "Via: SIP/2.0/TCP sip{i}.example.com;branch=z9hG4bK{long}, SIP/2.0/UDP 192.0.2.{i};branch=z9hG4bK{i}{long}\n"
            )
        })
        .collect();
    let m = wire(&format!(
        "INVITE sip:user@example.com SIP/2.0
To: \"I have a user name of {long} long\" <sip:{long}@example.com>;tag={long}
From: sip:{long}@example.net;tag={long}
Call-ID: {long}
CSeq: 3882340 INVITE
Unknown-{long}-{long}: {long}
{vias}Max-Forwards: 70
Contact: <sip:amazinglylongcallername{long}@host5.example.net>
Content-Length: 0

"
    ));
    let r = check(&m, Expect::Accept).unwrap();
    assert_eq!(r.vias().count(), 16);
    assert_eq!(r.call_id, long);
}

/// §3.1.1.8 Extra trailing octets in a UDP datagram: the second message is ignored.
#[test]
fn dblreq() {
    let m = wire(&format!(
        "REGISTER sip:example.com SIP/2.0
To: sip:j.user@example.com
From: sip:j.user@example.com;tag=43251j3j324
Max-Forwards: 8
I: dblreq.0ha0isndaksdj99sdfafnl3lk233412
Contact: sip:j.user@host.example.com
CSeq: 8 REGISTER
Via: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKkdjuw23492
Content-Length: 0

INVITE sip:joe@example.com SIP/2.0
t: sip:joe@example.com
From: sip:caller@example.net;tag=141334
Max-Forwards: 8
Call-ID: dblreq.0ha0isnda977644900765@192.0.2.15
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw380234
Content-Type: application/sdp
Content-Length: 150

{SDP}"
    ));
    let r = check(&m, Expect::Accept).unwrap();
    assert_eq!(r.method, Method::Register);
    assert!(r.body.is_empty());
}

/// §3.1.1.9 Semicolon-separated parameters in the URI user part.
#[test]
fn semiuri() {
    let m = wire(
        "OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0
To: sip:j_user@example.com
From: sip:caller@example.org;tag=33242
Max-Forwards: 3
Call-ID: semiuri.0ha0isndaksdj
CSeq: 8 OPTIONS
Accept: application/sdp, application/pkcs7-mime,
        multipart/mixed, multipart/signed,
        message/sip, message/sipfrag
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw
l: 0

",
    );
    let r = check(&m, Expect::Accept).unwrap();
    assert_eq!(r.uri.user, Some("user;par=u%40example.net"));
    assert_eq!(r.uri.host, "example.com");
}

/// §3.1.1.10 Varied and unknown transport types.
#[test]
fn transports() {
    let m = wire(
        "OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: <sip:caller@example.com>;tag=323
Max-Forwards: 70
Call-ID:  transports.kijh4akdnaqjkwendsasfdj
Accept: application/sdp
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP t1.example.com;branch=z9hG4bKkdjuw
Via: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf
Via: SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj
Via: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en
Via: SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee
l: 0

",
    );
    let r = check(&m, Expect::Accept).unwrap();
    assert_eq!(r.vias().count(), 5);
}

/// §3.1.1.11 Multipart MIME message, with a binary (non-UTF-8) part.
#[test]
fn mpart01() {
    let mut body = wire(
        "--7a9cbec02ceef655
Content-Type: text/plain

Hello
--7a9cbec02ceef655
Content-Type: application/octet-stream

",
    );
    body.extend_from_slice(&[0x30, 0x82, 0xff, 0xfe, 0x00, 0x80]);
    body.extend_from_slice(b"\r\n--7a9cbec02ceef655--\r\n");
    let mut m = wire(&format!(
        "MESSAGE sip:kumiko@example.org SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-;rport
Max-Forwards: 70
Route: <sip:127.0.0.1:5080>
Identity: r5mwreLuyDRYBi/0TiPwEsY3rEVsk/G2WxhgTV1PF7hHuL
From: <sip:fluffy@example.com>;tag=2fb0dcc9
To: <sip:kumiko@example.org>
Call-ID: 3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..
CSeq: 1 MESSAGE
Content-Transfer-Encoding: binary
Content-Type: multipart/mixed;boundary=7a9cbec02ceef655
Date: Sat, 15 Oct 2005 04:44:56 GMT
User-Agent: SIPimp.org/0.2.5 (curses)
Content-Length: {}

",
        body.len()
    ));
    m.extend_from_slice(&body);
    let r = check(&m, Expect::Accept).unwrap();
    assert_eq!(r.body, &body[..]);
}

/// §3.1.1.12 Unusual (UTF-8) reason phrase: a response, dropped.
#[test]
fn unreason() {
    let m = wire(
        "SIP/2.0 200 = 2**3 * 5**2 \u{43d}\u{43e} \u{441}\u{442}\u{43e} \u{434}\u{435}\u{432}\u{44f}\u{43d}\u{43e}\u{441}\u{442}\u{43e} \u{434}\u{435}\u{432}\u{44f}\u{442}\u{44c}
Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923
Call-ID: unreason.1234ksdfak3j2erwedfsASdf
CSeq: 35 INVITE
From: sip:user@example.com;tag=11141343
To: sip:user@example.edu;tag=2229
Content-Length: 0

",
    );
    check(&m, Expect::Response(200));
}

/// §3.1.1.13 Empty reason phrase.
#[test]
fn noreason() {
    let m = wire(
        "SIP/2.0 100 \nVia: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe\nCall-ID: noreason.asndj203insdf99223ndf\nCSeq: 35 INVITE\nFrom: <sip:user@example.com>;tag=39ansfi3\nTo: <sip:user@example.edu>;tag=902jndnke3\nContent-Length: 0\n\n",
    );
    check(&m, Expect::Response(100));
}

/// A request with our usual headers: `line` as Request-Line (its method also in CSeq), `extra`
/// headers added, then each `(from, to)` edit applied to the text.
fn request(line: &str, extra: &str, edits: &[(&str, &str)]) -> Vec<u8> {
    let method = line.split(' ').next().unwrap_or_default();
    let mut text = format!(
        "{line}
To: sip:j.user@example.com
From: sip:caller@example.net;tag=134161461246
Max-Forwards: 7
Call-ID: case.0ha0isndaksdjasdf3234nas
CSeq: 8 {method}
Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw
{extra}l: 0

"
    );
    for (from, to) in edits {
        text = text.replace(from, to);
    }
    wire(&text)
}

/// §3.1.2.1 Extraneous header field separators.
#[test]
fn badinv01() {
    let m = wire(
        "INVITE sip:user@example.com SIP/2.0
To: sip:j.user@example.com
From: sip:caller@example.net;tag=134161461246
Max-Forwards: 7
Call-ID: badinv01.0ha0isndaksdjasdf3234nas
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.15;;,;,,
Contact: \"Joe\" <sip:joe@example.org>;;;;
Content-Length: 0

",
    );
    check(&m, Expect::Answer(400));
}

/// §3.1.2.2 Content-Length larger than the message.
#[test]
fn clerr() {
    // A too large Content-Length, a short body.
    let mut m = request(
        "INVITE sip:user@example.com SIP/2.0",
        "Max-Forwards: 80\n",
        &[("l: 0", "Content-Length: 9999")],
    );
    m.extend_from_slice(b"v=0\r\n");
    let e = parse_message(&m, Transport::Udp).unwrap_err();
    assert_eq!(
        (e.status, e.reason),
        (400, "Content-Length larger than message")
    );
    // Max-Forwards twice is also wrong, but the framing error comes first.
    assert!(e.addressable());
}

/// §3.1.2.3 Negative Content-Length.
#[test]
fn scalar02() {
    let m = request(
        "REGISTER sip:example.com SIP/2.0",
        "",
        &[("l: 0", "Content-Length: -999")],
    );
    check(&m, Expect::Answer(400));
}

/// §3.1.2.4 Request scalar fields with overlarge values.
#[test]
fn scalarlg() {
    let m = request(
        "REGISTER sip:example.com SIP/2.0",
        "Expires: 10000000000000000000000\n",
        &[
            ("8 REGISTER", "36893488147419103232 REGISTER"),
            ("Max-Forwards: 7", "Max-Forwards: 300"),
        ],
    );
    check(&m, Expect::Answer(400));
    let mf = request(
        "INVITE sip:a@example.com SIP/2.0",
        "",
        &[("Max-Forwards: 7", "Max-Forwards: 300")],
    );
    check(&mf, Expect::Answer(400));
}

/// §3.1.2.5 Response scalar fields with overlarge values: a response, dropped.
#[test]
fn scalarlg_response() {
    let m = wire("SIP/2.0 503 Service Unavailable\nVia: SIP/2.0/TCP host129.example.com;branch=z9hG4bKzzxdiwo34sw;received=192.0.2.129\nTo: <sip:user@example.com>\nFrom: <sip:other@example.net>;tag=2easdjfejw\nCSeq: 9292394834772304023312 OPTIONS\nCall-ID: scalarlg.noase0of0234hn2qofoaf0232aewf2394r\nRetry-After: 949302838503028349304023988\nWarning: 1812 overture \"In Progress\"\nContent-Length: 0\n\n");
    check(&m, Expect::Response(503));
}

/// §3.1.2.6 Unterminated quoted string in display name.
#[test]
fn quotbal() {
    let m = request(
        "INVITE sip:user@example.com SIP/2.0",
        "",
        &[(
            "To: sip:j.user@example.com",
            "To: \"Mr. J. User <sip:j.user@example.com>",
        )],
    );
    check(&m, Expect::Answer(400));
}

/// §3.1.2.7 <> enclosing the Request-URI.
#[test]
fn ltgtruri() {
    check(
        &request("INVITE <sip:user@example.com> SIP/2.0", "", &[]),
        Expect::Answer(400),
    );
}

/// §3.1.2.8 Malformed SIP Request-URI (embedded LWS).
#[test]
fn lwsruri() {
    check(
        &request("INVITE sip:user@example.com; lr SIP/2.0", "", &[]),
        Expect::Answer(400),
    );
}

/// §3.1.2.9 Multiple SP separating Request-Line elements.
#[test]
fn lwsstart() {
    check(
        &request("INVITE  sip:user@example.com  SIP/2.0", "", &[]),
        Expect::Answer(400),
    );
}

/// §3.1.2.10 SP characters at the end of the Request-Line.
#[test]
fn trws() {
    check(
        &request("INVITE sip:user@example.com SIP/2.0  ", "", &[]),
        Expect::Answer(400),
    );
}

/// §3.1.2.11 Escaped headers in the SIP Request-URI.
#[test]
fn escruri() {
    let m = request(
        "INVITE sip:user@example.com?Route=%3Csip:example.com%3E SIP/2.0",
        "",
        &[],
    );
    let e = parse_message(&m, Transport::Udp).unwrap_err();
    assert_eq!(
        (e.status, e.reason),
        (400, "Request-URI must not contain headers")
    );
}

/// §3.1.2.12 Invalid time zone in Date: Tollgate never reads Date, so it is processed (the
/// RFC's strict answer would be 400; see the module docs of `validate`).
#[test]
fn baddate() {
    check(
        &request(
            "INVITE sip:user@example.com SIP/2.0",
            "Date: Fri, 01 Jan 2010 16:00:00 EST\n",
            &[],
        ),
        Expect::Accept,
    );
}

/// §3.1.2.13 Failure to enclose a name-addr URI (with headers) in <>.
#[test]
fn regbadct() {
    let m = request(
        "INVITE sip:user@example.com SIP/2.0",
        "Contact: sip:user@example.com?Route=%3Csip:sip.example.com%3E\n",
        &[],
    );
    check(&m, Expect::Answer(400));
}

/// §3.1.2.14 Spaces within addr-spec.
#[test]
fn badaspec() {
    let m = request(
        "INVITE sip:user@example.com SIP/2.0",
        "",
        &[(
            "To: sip:j.user@example.com",
            "To: \"Watson, Thomas\" < sip:t.watson@example.org >",
        )],
    );
    check(&m, Expect::Answer(400));
}

/// §3.1.2.15 Non-token characters in display name.
#[test]
fn baddn() {
    let m = request(
        "INVITE sip:user@example.com SIP/2.0",
        "",
        &[(
            "From: sip:caller@example.net;tag=134161461246",
            "From: Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
        )],
    );
    check(&m, Expect::Answer(400));
}

/// §3.1.2.16 Unknown protocol version: 505.
#[test]
fn badvers() {
    check(
        &request("INVITE sip:t.watson@example.org SIP/7.0", "", &[]),
        Expect::Answer(505),
    );
}

/// §3.1.2.17 Start line and CSeq method mismatch.
#[test]
fn mismatch01() {
    let m = request(
        "OPTIONS sip:user@example.com SIP/2.0",
        "",
        &[("8 OPTIONS", "8 INVITE")],
    );
    let e = parse_message(&m, Transport::Udp).unwrap_err();
    assert_eq!(
        (e.status, e.reason),
        (400, "CSeq method does not match request method")
    );
}

/// §3.1.2.18 Unknown method with CSeq method mismatch.
#[test]
fn mismatch02() {
    check(
        &request(
            "NEWMETHOD sip:user@example.com SIP/2.0",
            "",
            &[("8 NEWMETHOD", "8 INVITE")],
        ),
        Expect::Answer(400),
    );
}

/// §3.1.2.19 Overlarge response code: dropped without answer.
#[test]
fn bigcode() {
    let m = wire("SIP/2.0 4294967301 better not break the receiver\nVia: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe\nCall-ID: bigcode.asdof3uj203asdnf3429uasdhfas3ehjasdfas9i\nCSeq: 353494 INVITE\nFrom: <sip:user@example.com>;tag=39ansfi3\nTo: <sip:user@example.edu>;tag=902jndnke3\nContent-Length: 0\n\n");
    check(&m, Expect::Silent);
}

/// §3.2.1 Missing transaction identifier (branch without the RFC 3261 cookie, or only the
/// cookie): processed as RFC 2543 transactions are.
#[test]
fn badbranch() {
    for via in ["z9hG4bK", "1234abcd"] {
        let branch = format!("branch={via}");
        let m = request(
            "OPTIONS sip:user@example.com SIP/2.0",
            "",
            &[("branch=z9hG4bKkdjuw", &branch)],
        );
        let r = check(&m, Expect::Accept).unwrap();
        assert_eq!(r.via.branch, Some(via));
    }
}

/// §3.3.1 Missing required header fields: the RFC asks for 400, but without Call-ID, From and
/// To no response can be addressed (RFC 3261 §8.2.6), so it is dropped.
#[test]
fn insuf() {
    let m = wire("INVITE sip:user@example.com SIP/2.0\nCSeq: 193942 INVITE\nVia: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf\nContent-Type: application/sdp\nl: 0\n\n");
    check(&m, Expect::Silent);
}

/// §3.3.2 Request-URI with an unknown scheme: 416.
#[test]
fn unkscm() {
    let m = request(
        "OPTIONS nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0",
        "",
        &[],
    );
    check(&m, Expect::Answer(416));
}

/// §3.3.3 Request-URI with a known but atypical scheme: 416.
#[test]
fn novelsc() {
    let m = request("OPTIONS soap.beep://192.0.2.103:3002 SIP/2.0", "", &[]);
    check(&m, Expect::Answer(416));
}

/// §3.3.4 Unknown URI schemes in header fields: processed.
#[test]
fn unksm2() {
    let m = request(
        "REGISTER sip:example.com SIP/2.0",
        "",
        &[
            ("To: sip:j.user@example.com", "To: isbn:2983792873"),
            (
                "From: sip:caller@example.net;tag=134161461246",
                "From: <http://www.example.com>;tag=3234233",
            ),
        ],
    );
    let r = check(&m, Expect::Accept).unwrap();
    assert_eq!(
        (r.to.uri.scheme, r.from.uri.scheme),
        (Scheme::Other, Scheme::Other)
    );
}

/// §3.3.5 Proxy-Require and Require for extensions we do not support: 420.
#[test]
fn bext01() {
    let m = request("OPTIONS sip:user@example.com SIP/2.0",
        "Require: nothingSupportsThis, nothingSupportsThisEither\nProxy-Require: noProxiesSupportThis\n", &[]);
    check(&m, Expect::Answer(420));
}

/// §3.3.6 Unknown Content-Type: the RFC expects 415 from a UAS that reads the body; a redirect
/// server never does, so the request is processed.
#[test]
fn invut() {
    let m = request(
        "INVITE sip:user@example.com SIP/2.0",
        "Content-Type: application/unknownformat\n",
        &[],
    );
    check(&m, Expect::Accept);
}

/// §3.3.7 Unknown authorization scheme: processed (a registrar's concern; Tollgate answers 405).
#[test]
fn regaut01() {
    let m = request(
        "REGISTER sip:example.com SIP/2.0",
        "Authorization: NoOneKnowsThisScheme opaque-data=here\n",
        &[],
    );
    check(&m, Expect::Accept);
}

/// §3.3.8 Multiple values in single-value required header fields.
#[test]
fn multi01() {
    let m = request(
        "INVITE sip:user@company.com SIP/2.0",
        "Call-ID: multi01.98asdh@192.0.2.2\nTo: sip:other@example.net\n",
        &[],
    );
    let e = parse_message(&m, Transport::Udp).unwrap_err();
    assert_eq!(e.status, 400);
    assert!(e.reason.starts_with("Multiple"), "{}", e.reason);
    let joined = request(
        "INVITE sip:user@company.com SIP/2.0",
        "",
        &[("CSeq: 8 INVITE", "CSeq: 8 INVITE, 9 INVITE")],
    );
    check(&joined, Expect::Answer(400));
}

/// §3.3.9 Multiple Content-Length values.
#[test]
fn mcl01() {
    let m = request(
        "OPTIONS sip:user@example.com SIP/2.0",
        "Content-Length: 0\n",
        &[],
    );
    let e = parse_message(&m, Transport::Udp).unwrap_err();
    assert_eq!(
        (e.status, e.reason),
        (400, "Multiple Content-Length values")
    );
}

/// §3.3.10 200 OK response with broadcast Via sent-by: a response, dropped.
#[test]
fn bcast() {
    let m = wire("SIP/2.0 200 OK\nVia: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923\nVia: SIP/2.0/UDP 255.255.255.255;branch=z9hG4bK1saber23\nCall-ID: bcast.0384840201234ksdfak3j2erwedfsASdf\nCSeq: 35 INVITE\nFrom: sip:user@example.com;tag=11141343\nTo: sip:user@example.edu;tag=2229\nContent-Length: 0\n\n");
    check(&m, Expect::Response(200));
}

/// §3.3.11 Max-Forwards of zero: parsed; the daemon answers 483 (DESIGN §2).
#[test]
fn zeromf() {
    let m = request(
        "OPTIONS sip:user@example.com SIP/2.0",
        "",
        &[("Max-Forwards: 7", "Max-Forwards: 0")],
    );
    let r = check(&m, Expect::Accept).unwrap();
    assert_eq!(r.max_forwards, Some(0));
}

/// §3.3.12 / §3.3.13 REGISTER with unusual or missing Contact parameter values: processed.
#[test]
fn cparam() {
    for contact in [
        "Contact: \"Quoted string \\\"\\\"\" <sip:jdrosen@example.com> ; expires=0 ; newparam\n",
        "Contact: <sip:+19725552222@gw1.example.net;unknownparam>;expires=7200\n",
        "Contact: <sip:user@host.example.com>;q=0.5\n",
    ] {
        let m = request("REGISTER sip:example.com SIP/2.0", contact, &[]);
        check(&m, Expect::Accept);
    }
}

/// §3.3.14 REGISTER with a URL parameter in an escaped Contact: processed.
#[test]
fn regescrt() {
    let m = request(
        "REGISTER sip:example.com SIP/2.0",
        "Contact: <sip:user@example.com?Route=%3Csip:sip.example.com%3E>\n",
        &[],
    );
    check(&m, Expect::Accept);
}

/// §3.3.15 Unacceptable Accept offering: the RFC expects 406 from a UAS that would answer
/// with a body; a redirect server answers without one, so the request is processed.
#[test]
fn sdp01() {
    let m = request(
        "INVITE sip:user@example.com SIP/2.0",
        "Accept: text/nobodyKnowsThis\n",
        &[],
    );
    check(&m, Expect::Accept);
}

/// §3.4.1 INVITE with RFC 2543 syntax: no branch, no tag, no Max-Forwards.
#[test]
fn inv2543() {
    let m = wire("INVITE sip:UserB@example.com SIP/2.0\nVia: SIP/2.0/UDP iftgw.example.com\nFrom: <sip:+13035551111@ift.client.example.net;user=phone>\nRecord-Route: <sip:UserB@example.com;maddr=ss1.example.com>\nTo: sip:+16505552222@ss1.example.net;user=phone\nCall-ID: inv2543.1717@ift.client.example.com\nCSeq: 56 INVITE\nContent-Type: application/sdp\n\nv=0\n");
    let r = check(&m, Expect::Accept).unwrap();
    assert_eq!(
        (r.via.branch, r.from.tag, r.max_forwards),
        (None, None, None)
    );
    assert_eq!(r.body, b"v=0\r\n");
}
