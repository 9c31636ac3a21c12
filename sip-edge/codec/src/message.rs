//! Parsed messages: a validated request with typed access to the headers Tollgate uses, or the
//! status line of a response (RFC 3261 §7.1, §7.2).

use super::address::NameAddr;
use super::header::{HeaderName, Headers};
use super::uri::Uri;
use super::via::Via;

/// A request method (RFC 3261 §7.1; method names are case-sensitive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method<'a> {
    /// `INVITE`
    Invite,
    /// `ACK`
    Ack,
    /// `CANCEL`
    Cancel,
    /// `OPTIONS`
    Options,
    /// `BYE`
    Bye,
    /// `REGISTER`
    Register,
    /// Any other token (`extension-method`).
    Other(&'a str),
}

impl<'a> Method<'a> {
    /// The method named by a token.
    pub fn from_token(t: &'a str) -> Self {
        match t {
            "INVITE" => Self::Invite,
            "ACK" => Self::Ack,
            "CANCEL" => Self::Cancel,
            "OPTIONS" => Self::Options,
            "BYE" => Self::Bye,
            "REGISTER" => Self::Register,
            other => Self::Other(other),
        }
    }

    /// The method name.
    #[inline]
    pub fn as_str(&self) -> &'a str {
        match self {
            Self::Invite => "INVITE",
            Self::Ack => "ACK",
            Self::Cancel => "CANCEL",
            Self::Options => "OPTIONS",
            Self::Bye => "BYE",
            Self::Register => "REGISTER",
            Self::Other(t) => t,
        }
    }
}

/// The `CSeq` header (RFC 3261 §20.16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CSeq<'a> {
    /// Sequence number (< 2**31, RFC 3261 §8.1.1.5).
    pub seq: u32,
    /// Method; equal to the request method.
    pub method: Method<'a>,
}

/// A request that passed validation, borrowing from the datagram.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The method of the Request-Line.
    pub method: Method<'a>,
    /// The Request-URI (`sip`, `sips` or `tel`; other schemes are answered 416).
    pub uri: Uri<'a>,
    /// Every header line, in order.
    pub headers: Headers<'a>,
    /// The body, framed by Content-Length.
    pub body: &'a [u8],
    /// The top Via value.
    pub via: Via<'a>,
    /// From.
    pub from: NameAddr<'a>,
    /// To.
    pub to: NameAddr<'a>,
    /// Call-ID.
    pub call_id: &'a str,
    /// CSeq.
    pub cseq: CSeq<'a>,
    /// Max-Forwards (`None` when absent, as from RFC 2543 clients).
    pub max_forwards: Option<u8>,
    /// The first P-Asserted-Identity value (RFC 3325); see [`Request::asserted_identities`].
    pub p_asserted_identity: Option<NameAddr<'a>>,
}

impl<'a> Request<'a> {
    /// Every P-Asserted-Identity value (a `sip:` and a `tel:` one may both be present); values
    /// that do not parse are skipped (validation already rejected a malformed first one).
    #[inline]
    pub fn asserted_identities(&self) -> impl Iterator<Item = NameAddr<'a>> + '_ {
        self.headers
            .values(HeaderName::PAssertedIdentity)
            .filter_map(|v| NameAddr::parse(v).ok())
    }

    /// Every Via value, top first.
    #[inline]
    pub fn vias(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.headers.values(HeaderName::Via)
    }
}

/// The status line of a response. A redirect server never answers a response: the daemon
/// counts and drops it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response<'a> {
    /// Status code, 100..=699.
    pub status: u16,
    /// Reason phrase (UTF-8, may be empty).
    pub reason: &'a str,
}

/// A parsed message.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // no heap on the hot path: the request lives on the stack
pub enum Message<'a> {
    /// A valid request.
    Request(Request<'a>),
    /// A response (to be dropped).
    Response(Response<'a>),
}
