//! Parse errors: the SIP status to answer with, a short reason phrase, and the headers needed to
//! address that answer (RFC 3261 §8.2, §21.4.1; RFC 4475 §3.1.2).

use super::header::{HeaderName, Headers};

/// An internal, small error value: the status and reason phrase of the answer.
///
/// Every grammar helper returns this; [`ParseError`] adds the headers once, at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// SIP status to answer with (400, 416, 505, ...).
    pub status: u16,
    /// Reason phrase saying what was wrong (ASCII, no CR/LF).
    pub reason: &'static str,
}

impl Fault {
    /// A `400 Bad Request` with the given reason phrase.
    #[inline]
    pub const fn bad(reason: &'static str) -> Self {
        Self {
            status: 400,
            reason,
        }
    }
}

/// A message that cannot be processed.
///
/// `headers` is `Some` when the answer can be addressed (RFC 3261 §8.2.6: a response copies
/// Via, From, To, Call-ID and CSeq, so all five must be present); the daemon then sends
/// `status` with `reason` as the reason phrase. When it is `None` the message is dropped
/// silently and counted.
#[derive(Debug, thiserror::Error)]
#[error("SIP {status}: {reason}")]
pub struct ParseError<'a> {
    /// SIP status to answer with: 400, 416 or 505.
    pub status: u16,
    /// Short reason phrase saying what was wrong.
    pub reason: &'static str,
    /// The request's headers, when a response can be addressed.
    pub headers: Option<Headers<'a>>,
}

impl<'a> ParseError<'a> {
    /// An error that can never be answered (framing, size limits, responses, garbage).
    pub(crate) const fn silent(fault: Fault) -> Self {
        Self {
            status: fault.status,
            reason: fault.reason,
            headers: None,
        }
    }

    /// An error answered when `headers` hold what a response must copy.
    pub(crate) fn with_headers(fault: Fault, headers: Headers<'a>) -> Self {
        Self {
            status: fault.status,
            reason: fault.reason,
            headers: addressable(&headers).then_some(headers),
        }
    }

    /// Whether a response can be sent for this error.
    #[inline]
    pub fn addressable(&self) -> bool {
        self.headers.is_some()
    }
}

/// Via, From, To, Call-ID and CSeq are all present and non-empty (RFC 3261 §8.2.6.2).
fn addressable(headers: &Headers<'_>) -> bool {
    [
        HeaderName::Via,
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
        HeaderName::CSeq,
    ]
    .into_iter()
    .all(|name| headers.first(name).is_some_and(|v| !v.is_empty()))
}
