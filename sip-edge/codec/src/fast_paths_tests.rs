//! Differential property tests: each one-pass parser of a common form (`Uri::parse_fast`,
//! `NameAddr::parse_fast`, `Via::parse_fast`, `lex::params_fast`, the response's top Via
//! writer) gives, wherever it answers, exactly what the complete grammar gives (RFC 3261 §25.1).

use std::net::SocketAddr;

use proptest::prelude::*;

use super::address::NameAddr;
use super::lex::{params, params_fast, Param};
use super::uri::Uri;
use super::via::Via;

/// Pieces of SIP header values, good and bad.
const PIECES: &[&str] = &[
    "sip:",
    "sips:",
    "SIP:",
    "tel:",
    "+44",
    "alice",
    "@",
    "@",
    ":",
    ":",
    ";",
    ";",
    "=",
    "=",
    "?",
    "<",
    ">",
    ">",
    "\"",
    " ",
    "  ",
    "\t",
    "\r\n ",
    ",",
    "%41",
    "%4",
    "5060",
    "05060",
    "99999",
    "0",
    "example.com",
    "h",
    "[2001:db8::1]",
    "tag",
    "branch",
    "rport",
    "received",
    "lr",
    "user=phone",
    "/",
    "2.0",
    "UDP",
    "\\",
    "x",
    "-",
    ".",
    "_",
    "&",
    "$",
    "é",
];

/// Prefixes that steer the pieces towards each common form.
const PREFIXES: &[&str] = &[
    "",
    "sip:",
    "sip:a@b",
    "<sip:",
    "<sip:a@b>",
    "\"A B\" <sip:",
    "SIP/2.0/UDP ",
    "SIP/2.0/UDP h:5060",
    ";",
    ";tag=",
];

fn value() -> impl Strategy<Value = String> {
    (
        prop::sample::select(PREFIXES),
        prop::collection::vec(prop::sample::select(PIECES), 0..10),
    )
        .prop_map(|(prefix, pieces)| format!("{prefix}{}", pieces.concat()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20_000, ..ProptestConfig::default() })]

    #[test]
    fn uri_fast_path_agrees(s in value()) {
        if let Some(fast) = Uri::parse_fast(&s) {
            prop_assert_eq!(Ok(fast), Uri::parse_full(&s));
        }
    }

    #[test]
    fn address_fast_path_agrees(s in value()) {
        if let Some(fast) = NameAddr::parse_fast(&s, None) {
            prop_assert_eq!(Ok(fast), NameAddr::parse_full(&s));
        }
    }

    #[test]
    fn address_known_uri_agrees(s in value(), inner in value()) {
        if let Ok(known) = Uri::parse(&inner) {
            let v = format!("<{inner}>{s}");
            if let Some(fast) = NameAddr::parse_fast(&v, Some(&known)) {
                prop_assert_eq!(Ok(fast), NameAddr::parse_full(&v));
            }
        }
    }

    #[test]
    fn via_fast_path_agrees(s in value()) {
        if let Some(fast) = Via::parse_fast(&s) {
            prop_assert_eq!(Ok(fast), Via::parse_full(&s));
        }
    }

    #[test]
    fn params_fast_path_agrees(s in value()) {
        let mut fast = Vec::new();
        if params_fast(&s, |name, value| {
            fast.push(Ok(Param { name, value }));
            Some(())
        })
        .is_some()
        {
            prop_assert_eq!(fast, params(&s).collect::<Vec<_>>());
        }
    }

    #[test]
    fn top_via_writer_agrees(s in value()) {
        let source: SocketAddr = "198.51.100.5:5060".parse().unwrap();
        let mut fast = b"x".to_vec();
        let branch = super::response::write_top_via_fast(&mut fast, &s, source);
        let mut full = b"x".to_vec();
        if let Some(branch) = branch {
            let via = Via::parse(&s);
            prop_assert!(via.is_ok());
            if let Ok(via) = via {
                super::response::write_via(&mut full, &via, Some(source));
                prop_assert_eq!(branch, via.branch);
            }
        }
        prop_assert_eq!(fast, full);
    }
}
