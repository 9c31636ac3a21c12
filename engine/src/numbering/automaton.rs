//! Digit automata compiled from libphonenumber patterns.
//!
//! libphonenumber evaluates its patterns with a general regex engine and a regex cache; the
//! Rust `phonenumber` crate keeps that cache behind one mutex, which serialises every thread.
//! Here every pattern is compiled once, at plan build time, into a dense DFA
//! (`regex-automata`). Searching a dense DFA is a table walk over `&self`: no cache, no lock,
//! no allocation, so classification scales with cores.
//!
//! Two shapes are needed:
//! - [`PatternSet`]: many patterns in one DFA (`MatchKind::All`), walked once over a national
//!   number to learn *every* pattern that matches the whole number, and every pattern that
//!   matches a prefix of it (libphonenumber's `leadingDigits`, used with `lookingAt`).
//! - [`Prefix`]: one pattern matched at the start of the input with leftmost-first semantics,
//!   giving the end of the match as Java's `Matcher.lookingAt()` + `end()` would (IDD and
//!   national prefixes).

use regex_automata::dfa::{dense, Automaton, StartKind};
use regex_automata::nfa::thompson;
use regex_automata::util::primitives::StateID;
use regex_automata::util::syntax;
use regex_automata::{Anchored, MatchKind};

use super::MetadataError;

/// Patterns use `\d` for ASCII digits only; Unicode classes would bloat the DFAs for nothing,
/// since input is normalised to ASCII before matching.
fn syntax_config() -> syntax::Config {
    syntax::Config::new().unicode(false).utf8(false)
}

fn thompson_config() -> thompson::Config {
    thompson::Config::new().utf8(false)
}

/// Many patterns, one DFA: which of them match all of, or a prefix of, a digit string.
pub(crate) struct PatternSet {
    dfa: dense::DFA<Vec<u32>>,
    start: StateID,
}

impl PatternSet {
    /// Compiles `patterns`; pattern `i` is reported as `i`.
    pub(crate) fn new(patterns: &[&str]) -> Result<PatternSet, MetadataError> {
        let dfa = dense::Builder::new()
            .configure(
                dense::DFA::config()
                    .match_kind(MatchKind::All)
                    .start_kind(StartKind::Anchored)
                    // Minimisation costs build time for little gain on these digit DFAs.
                    .minimize(false),
            )
            .syntax(syntax_config())
            .thompson(thompson_config())
            .build_many(patterns)
            .map_err(|e| MetadataError(format!("compiling {} patterns: {e}", patterns.len())))?;
        let start = start_state(&dfa)?;
        Ok(PatternSet { dfa, start })
    }

    /// Walks `digits` once. Calls `on_match(i, false)` for each pattern `i` that matches a
    /// proper prefix of `digits` (possibly several times), and `on_match(i, true)` for each
    /// pattern that matches all of `digits`.
    #[inline]
    pub(crate) fn scan(&self, digits: &[u8], mut on_match: impl FnMut(usize, bool)) {
        let dfa = &self.dfa;
        let mut s = self.start;
        for &b in digits {
            s = dfa.next_state(s, b);
            // A dense DFA reports a match one byte late: being in a match state now means a
            // match ended just before `b`, i.e. on a proper prefix.
            if dfa.is_special_state(s) {
                if dfa.is_match_state(s) {
                    for i in 0..dfa.match_len(s) {
                        on_match(dfa.match_pattern(s, i).as_usize(), false);
                    }
                } else if dfa.is_dead_state(s) {
                    return;
                }
            }
        }
        s = dfa.next_eoi_state(s);
        if dfa.is_match_state(s) {
            for i in 0..dfa.match_len(s) {
                on_match(dfa.match_pattern(s, i).as_usize(), true);
            }
        }
    }

    pub(crate) fn memory_usage(&self) -> usize {
        self.dfa.memory_usage()
    }
}

/// One pattern matched at the start of the input (Java `lookingAt`).
pub(crate) struct Prefix {
    dfa: dense::DFA<Vec<u32>>,
    start: StateID,
}

impl Prefix {
    pub(crate) fn new(pattern: &str) -> Result<Prefix, MetadataError> {
        let dfa = dense::Builder::new()
            .configure(
                dense::DFA::config()
                    .match_kind(MatchKind::LeftmostFirst)
                    .start_kind(StartKind::Anchored)
                    .minimize(false),
            )
            .syntax(syntax_config())
            .thompson(thompson_config())
            .build(pattern)
            .map_err(|e| MetadataError(format!("compiling {pattern:?}: {e}")))?;
        let start = start_state(&dfa)?;
        Ok(Prefix { dfa, start })
    }

    /// Length of the leftmost-first match at the start of `digits`, if any. A match may be
    /// empty (some national-prefix patterns match the empty string).
    ///
    /// A plain table walk rather than `try_search_fwd`: the inputs are a few digits long and
    /// the generic search's set-up costs more than the walk.
    #[inline]
    pub(crate) fn match_len(&self, digits: &[u8]) -> Option<usize> {
        let dfa = &self.dfa;
        let mut s = self.start;
        let mut last = None;
        for (i, &b) in digits.iter().enumerate() {
            s = dfa.next_state(s, b);
            if dfa.is_special_state(s) {
                if dfa.is_match_state(s) {
                    // Delayed by one byte: the match ended before `b`.
                    last = Some(i);
                } else if dfa.is_dead_state(s) {
                    return last;
                }
            }
        }
        s = dfa.next_eoi_state(s);
        if dfa.is_match_state(s) {
            last = Some(digits.len());
        }
        last
    }

    pub(crate) fn memory_usage(&self) -> usize {
        self.dfa.memory_usage()
    }
}

fn start_state(dfa: &dense::DFA<Vec<u32>>) -> Result<StateID, MetadataError> {
    // Patterns have no look-behind, so one start state serves every input.
    dfa.universal_start_state(Anchored::Yes)
        .ok_or_else(|| MetadataError("pattern set has no universal start state".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(set: &PatternSet, s: &str) -> (Vec<usize>, Vec<usize>) {
        let (mut p, mut f) = (vec![], vec![]);
        set.scan(
            s.as_bytes(),
            |i, full| if full { f.push(i) } else { p.push(i) },
        );
        p.sort();
        p.dedup();
        f.sort();
        (p, f)
    }

    #[test]
    fn set_reports_full_and_prefix_matches() {
        let set = PatternSet::new(&["[2-9]\\d{2}", "2\\d", "20|3", "\\d+"]).unwrap();
        assert_eq!(scan(&set, "201"), (vec![1, 2, 3], vec![0, 3]));
        assert_eq!(scan(&set, "3"), (vec![], vec![2, 3]));
        assert_eq!(scan(&set, ""), (vec![], vec![]));
        let set = PatternSet::new(&["1", "12"]).unwrap();
        assert_eq!(scan(&set, "13"), (vec![0], vec![]));
    }

    #[test]
    fn prefix_is_leftmost_first_like_java() {
        let p = Prefix::new("00[39]?|0").unwrap();
        assert_eq!(p.match_len(b"0044"), Some(2));
        assert_eq!(p.match_len(b"0039"), Some(3));
        assert_eq!(p.match_len(b"044"), Some(1));
        assert_eq!(p.match_len(b"44"), None);
        let p = Prefix::new("0|(?:1)?").unwrap();
        assert_eq!(p.match_len(b"5"), Some(0));
    }
}
