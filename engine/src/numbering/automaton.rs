//! Digit automata compiled from libphonenumber patterns.
//!
//! libphonenumber evaluates its patterns with a general regex engine and a regex cache; the
//! Rust `phonenumber` crate keeps that cache behind one mutex, which serialises every thread.
//! Here every pattern is compiled once, at plan build time, into a DFA: `regex-automata`
//! determinises it, then [`DigitDfa`] re-encodes the result over the only alphabet a national
//! number has, the ten digits, with 16-bit state ids. A row is 20 bytes instead of
//! regex-automata's 64 (stride 16 × `u32`), so a walk touches a third of the cache lines, and
//! searching is a table walk over `&self`: no cache, no lock, no allocation, so
//! classification scales with cores.
//!
//! Two shapes are needed:
//! - [`PatternSet`]: many patterns in one DFA (`MatchKind::All`), walked once over a national
//!   number to learn *every* pattern that matches the whole number, and every pattern that
//!   matches a prefix of it (libphonenumber's `leadingDigits`, used with `lookingAt`).
//! - [`Prefix`]: one pattern matched at the start of the input with leftmost-first semantics,
//!   giving the end of the match as Java's `Matcher.lookingAt()` + `end()` would (IDD and
//!   national prefixes).

use std::collections::HashMap;

use regex_automata::dfa::{dense, Automaton, StartKind};
use regex_automata::nfa::thompson;
use regex_automata::util::primitives::StateID;
use regex_automata::util::syntax;
use regex_automata::{Anchored, MatchKind};

use super::MetadataError;

/// The dead state: every transition from it leads back to it, and it matches nothing.
const DEAD: u16 = 0;
/// Set in a transition when its target state has delayed matches, so that the walk reads the
/// match table only then (one cache line per step otherwise).
const HAS_DELAYED: u16 = 1 << 15;

/// A DFA over the digits `0`-`9`.
///
/// regex-automata reports a match one byte late: entering a match state on byte `i` means a
/// match ended just before `i`. Each state's row holds its ten transitions and, beside them,
/// where its delayed matches and its end-of-input matches are in `ids`, so that a walk and its
/// final match lookup touch one row per step and nothing else.
struct DigitDfa {
    /// `ROW` entries per state: `[t0..t9, delayed_from, delayed_len, eoi_from, eoi_len]`;
    /// transitions carry [`HAS_DELAYED`].
    rows: Vec<u16>,
    start: u16,
    ids: Vec<u16>,
}

/// Entries per state row (28 bytes).
const ROW: usize = 14;
const DELAYED: usize = 10;
const EOI: usize = 12;

impl DigitDfa {
    /// `delayed(i)`: whether pattern `i`'s matches on a proper prefix are wanted; the others
    /// are left out of the delayed lists, so walks do not stop for them.
    fn build(
        patterns: &[&str],
        kind: MatchKind,
        delayed: &dyn Fn(usize) -> bool,
    ) -> Result<DigitDfa, MetadataError> {
        let dfa = dense::Builder::new()
            .configure(
                dense::DFA::config()
                    .match_kind(kind)
                    .start_kind(StartKind::Anchored)
                    // Minimisation costs build time for little gain on these digit DFAs.
                    .minimize(false),
            )
            // `\d` means ASCII digits: inputs are normalised before matching.
            .syntax(syntax::Config::new().unicode(false).utf8(false))
            .thompson(thompson::Config::new().utf8(false))
            .build_many(patterns)
            .map_err(|e| MetadataError(format!("compiling {patterns:?}: {e}")))?;
        // Patterns have no look-behind, so one start state serves every input.
        let start = dfa
            .universal_start_state(Anchored::Yes)
            .ok_or_else(|| MetadataError("pattern set has no universal start state".into()))?;
        Self::encode(&dfa, start, delayed)
    }

    /// Walks every state reachable from `start` on digits and numbers them densely.
    fn encode(
        dfa: &dense::DFA<Vec<u32>>,
        start: StateID,
        delayed: &dyn Fn(usize) -> bool,
    ) -> Result<DigitDfa, MetadataError> {
        let mut index: HashMap<StateID, u16> = HashMap::new();
        let mut order: Vec<StateID> = Vec::new();
        let mut number = |s: StateID, order: &mut Vec<StateID>| -> Result<u16, MetadataError> {
            if dfa.is_dead_state(s) {
                return Ok(DEAD);
            }
            if let Some(&i) = index.get(&s) {
                return Ok(i);
            }
            let i = u16::try_from(order.len() + 1)
                .ok()
                .filter(|&i| i < HAS_DELAYED)
                .ok_or_else(|| MetadataError("digit DFA over 32767 states".into()))?;
            index.insert(s, i);
            order.push(s);
            Ok(i)
        };
        let start_idx = number(start, &mut order)?;
        // Row 0 is the dead state.
        let mut rows = vec![DEAD; ROW];
        let mut ids: Vec<u16> = Vec::new();
        let too_big = || MetadataError("digit DFA match table over 65535 entries".into());
        let matches = |s: StateID,
                       ids: &mut Vec<u16>,
                       keep: &dyn Fn(usize) -> bool|
         -> Result<[u16; 2], MetadataError> {
            let from = u16::try_from(ids.len()).map_err(|_| too_big())?;
            if dfa.is_match_state(s) {
                for i in 0..dfa.match_len(s) {
                    let p = dfa.match_pattern(s, i).as_usize();
                    if keep(p) {
                        ids.push(u16::try_from(p).map_err(|_| too_big())?);
                    }
                }
            }
            let len = u16::try_from(ids.len() - from as usize).map_err(|_| too_big())?;
            Ok([from, len])
        };
        let mut next = 0;
        while next < order.len() {
            let s = order[next];
            next += 1;
            for d in b'0'..=b'9' {
                let t = number(dfa.next_state(s, d), &mut order)?;
                rows.push(t);
            }
            rows.extend(matches(s, &mut ids, delayed)?);
            rows.extend(matches(dfa.next_eoi_state(s), &mut ids, &|_| true)?);
        }
        // Flag transitions into states with delayed matches.
        for i in 0..rows.len() {
            if i % ROW < 10 {
                let t = rows[i] as usize;
                if rows.get(t * ROW + DELAYED + 1).is_some_and(|&len| len > 0) {
                    rows[i] |= HAS_DELAYED;
                }
            }
        }
        Ok(DigitDfa {
            rows,
            start: start_idx,
            ids,
        })
    }

    #[inline(always)]
    fn step(&self, s: u16, digit: u8) -> u16 {
        // Inputs are ASCII digits (see `dialstring`); anything else goes to the dead state.
        let d = digit.wrapping_sub(b'0') as usize;
        if d > 9 {
            return DEAD;
        }
        self.rows.get(s as usize * ROW + d).copied().unwrap_or(DEAD)
    }

    /// The patterns of the match list at `at` (`DELAYED` or `EOI`) of state `s`.
    #[inline(always)]
    fn matches(&self, s: u16, at: usize) -> &[u16] {
        let row = s as usize * ROW + at;
        match self.rows.get(row..row + 2) {
            Some(&[from, len]) => {
                let from = from as usize;
                self.ids.get(from..from + len as usize).unwrap_or(&[])
            }
            _ => &[],
        }
    }

    fn memory_usage(&self) -> usize {
        self.rows.len() * 2 + self.ids.len() * 2
    }
}

/// Many patterns, one DFA: which of them match all of, or a prefix of, a digit string.
pub(crate) struct PatternSet {
    dfa: DigitDfa,
}

impl PatternSet {
    /// Compiles `patterns`; pattern `i` is reported as `i`. Prefix matches are reported only
    /// for the patterns for which `prefix(i)` holds (libphonenumber's `leadingDigits`).
    pub(crate) fn new(
        patterns: &[&str],
        prefix: impl Fn(usize) -> bool,
    ) -> Result<PatternSet, MetadataError> {
        Ok(PatternSet {
            dfa: DigitDfa::build(patterns, MatchKind::All, &prefix)?,
        })
    }

    /// Walks `digits` once. Calls `on_match(i, false)` for each prefix pattern `i` that
    /// matches a proper prefix of `digits` (possibly several times), and `on_match(i, true)`
    /// for each pattern that matches all of `digits`.
    #[inline]
    pub(crate) fn scan(&self, digits: &[u8], mut on_match: impl FnMut(usize, bool)) {
        let dfa = &self.dfa;
        let mut s = dfa.start;
        for &b in digits {
            let t = dfa.step(s, b);
            s = t & !HAS_DELAYED;
            if s == DEAD {
                return;
            }
            if t & HAS_DELAYED != 0 {
                for &p in dfa.matches(s, DELAYED) {
                    on_match(p as usize, false);
                }
            }
        }
        for &p in dfa.matches(s, EOI) {
            on_match(p as usize, true);
        }
    }

    pub(crate) fn memory_usage(&self) -> usize {
        self.dfa.memory_usage()
    }
}

/// One pattern matched at the start of the input (Java `lookingAt`).
pub(crate) struct Prefix {
    dfa: DigitDfa,
}

impl Prefix {
    pub(crate) fn new(pattern: &str) -> Result<Prefix, MetadataError> {
        Ok(Prefix {
            dfa: DigitDfa::build(&[pattern], MatchKind::LeftmostFirst, &|_| true)?,
        })
    }

    /// Length of the leftmost-first match at the start of `digits`, if any. A match may be
    /// empty (some national-prefix patterns match the empty string).
    ///
    /// Leftmost-first priority is built into the DFA (lower-priority continuations are
    /// pruned once a match is seen), so the last match seen before the walk dies is the one
    /// a backtracking engine would report.
    #[inline]
    pub(crate) fn match_len(&self, digits: &[u8]) -> Option<usize> {
        let dfa = &self.dfa;
        let mut s = dfa.start;
        let mut last = None;
        for (i, &b) in digits.iter().enumerate() {
            let t = dfa.step(s, b);
            s = t & !HAS_DELAYED;
            if s == DEAD {
                return last;
            }
            if t & HAS_DELAYED != 0 {
                last = Some(i);
            }
        }
        if !dfa.matches(s, EOI).is_empty() {
            last = Some(digits.len());
        }
        last
    }

    pub(crate) fn memory_usage(&self) -> usize {
        self.dfa.memory_usage()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(set: &PatternSet, s: &str) -> (Vec<usize>, Vec<usize>) {
        let (mut p, mut f) = (vec![], vec![]);
        set.scan(
            s.as_bytes(),
            |i, full| {
                if full {
                    f.push(i)
                } else {
                    p.push(i)
                }
            },
        );
        p.sort();
        p.dedup();
        f.sort();
        (p, f)
    }

    #[test]
    fn set_reports_full_and_prefix_matches() {
        let set = PatternSet::new(&["[2-9]\\d{2}", "2\\d", "20|3", "\\d+"], |_| true).unwrap();
        assert_eq!(scan(&set, "201"), (vec![1, 2, 3], vec![0, 3]));
        assert_eq!(scan(&set, "3"), (vec![], vec![2, 3]));
        assert_eq!(scan(&set, ""), (vec![], vec![]));
        let set = PatternSet::new(&["1", "12"], |_| true).unwrap();
        assert_eq!(scan(&set, "13"), (vec![0], vec![]));
    }

    #[test]
    fn prefix_is_leftmost_first_like_java() {
        let p = Prefix::new("00[39]?|0").unwrap();
        assert_eq!(p.match_len(b"0044"), Some(2));
        assert_eq!(p.match_len(b"0039"), Some(3));
        assert_eq!(p.match_len(b"044"), Some(1));
        assert_eq!(p.match_len(b"44"), None);
        assert_eq!(p.match_len(b"00"), Some(2));
        let p = Prefix::new("0|(?:1)?").unwrap();
        assert_eq!(p.match_len(b"5"), Some(0));
        assert_eq!(p.match_len(b""), Some(0));
        let p = Prefix::new("0(?:1|12)").unwrap();
        assert_eq!(
            p.match_len(b"0123"),
            Some(2),
            "first alternative wins, as in Java"
        );
    }
}
