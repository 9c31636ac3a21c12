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
/// rest of the target's row only then.
const HAS_DELAYED: u16 = 1 << 15;

/// A DFA over the digits `0`-`9`.
///
/// regex-automata reports a match one byte late: entering a match state on byte `i` means a
/// match ended just before `i`. Each state's row holds its ten transitions and, beside them,
/// what its delayed matches and its end-of-input matches *mean*, already reduced at build time
/// by the caller to a mask and a payload: a walk, and its final answer, touch one row per step
/// and nothing else, and no per-pattern work is left for the hot path.
struct DigitDfa {
    /// `ROW` entries per state: `[t0..t9, delayed_lo, delayed_hi, eoi_lo, eoi_hi]`;
    /// transitions carry [`HAS_DELAYED`].
    rows: Vec<u16>,
    start: u16,
}

/// Entries per state row (28 bytes).
const ROW: usize = 14;
const DELAYED: usize = 10;
const EOI: usize = 12;

/// How the caller reduces a state's matches at build time.
struct Reduce<'a> {
    /// Bits for pattern `i` matching a proper prefix (OR-ed over the patterns; 0: not wanted,
    /// so walks do not stop for it).
    delayed: &'a dyn Fn(usize) -> u32,
    /// The payload of a state whose end-of-input matches are these patterns (ascending, never
    /// empty). 0 is reserved for "no match".
    eoi: &'a mut dyn FnMut(&[usize]) -> Result<u32, MetadataError>,
}

impl DigitDfa {
    fn build(
        patterns: &[&str],
        kind: MatchKind,
        reduce: Reduce<'_>,
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
        Self::encode(&dfa, start, reduce)
    }

    /// Walks every state reachable from `start` on digits and numbers them densely.
    fn encode(
        dfa: &dense::DFA<Vec<u32>>,
        start: StateID,
        reduce: Reduce<'_>,
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
        let patterns = |s: StateID| -> Vec<usize> {
            let mut ps: Vec<usize> = match dfa.is_match_state(s) {
                true => (0..dfa.match_len(s))
                    .map(|i| dfa.match_pattern(s, i).as_usize())
                    .collect(),
                false => Vec::new(),
            };
            ps.sort_unstable();
            ps.dedup();
            ps
        };
        let split = |v: u32| [v as u16, (v >> 16) as u16];
        let mut next = 0;
        while next < order.len() {
            let s = order[next];
            next += 1;
            for d in b'0'..=b'9' {
                let t = number(dfa.next_state(s, d), &mut order)?;
                rows.push(t);
            }
            let delayed = patterns(s)
                .into_iter()
                .fold(0u32, |m, p| m | (reduce.delayed)(p));
            rows.extend(split(delayed));
            let eoi = patterns(dfa.next_eoi_state(s));
            let payload = match eoi.is_empty() {
                true => 0,
                false => (reduce.eoi)(&eoi)?,
            };
            rows.extend(split(payload));
        }
        // Flag transitions into states with delayed matches.
        for i in 0..rows.len() {
            if i % ROW < 10 {
                let t = rows[i] as usize;
                let row = rows.get(t * ROW + DELAYED..t * ROW + DELAYED + 2);
                if row.is_some_and(|m| m != [0, 0]) {
                    rows[i] |= HAS_DELAYED;
                }
            }
        }
        Ok(DigitDfa {
            rows,
            start: start_idx,
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

    /// The 32-bit value at `at` (`DELAYED` or `EOI`) of state `s`'s row.
    #[inline(always)]
    fn word(&self, s: u16, at: usize) -> u32 {
        let row = s as usize * ROW + at;
        match self.rows.get(row..row + 2) {
            Some(&[lo, hi]) => lo as u32 | (hi as u32) << 16,
            _ => 0,
        }
    }

    fn memory_usage(&self) -> usize {
        self.rows.len() * 2
    }
}

/// The result of one walk over a [`PatternSet`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Walk {
    /// The payload of the patterns that match all of the digits (0: none).
    pub(crate) full: u32,
    /// The OR of the prefix bits of the patterns that match a proper prefix.
    pub(crate) prefix: u32,
}

/// Many patterns, one DFA: which of them match all of, or a prefix of, a digit string.
pub(crate) struct PatternSet {
    dfa: DigitDfa,
}

impl PatternSet {
    /// Compiles `patterns`. A walk reports `prefix(i)` OR-ed for each pattern `i` matching a
    /// proper prefix (libphonenumber's `leadingDigits`; 0 for patterns whose prefix matches do
    /// not matter), and `full(ids)` for the patterns `ids` (ascending, never empty) matching
    /// the whole input; `full` returns the payload a walk reports, never 0.
    pub(crate) fn new(
        patterns: &[&str],
        prefix: impl Fn(usize) -> u32,
        mut full: impl FnMut(&[usize]) -> Result<u32, MetadataError>,
    ) -> Result<PatternSet, MetadataError> {
        let reduce = Reduce {
            delayed: &prefix,
            eoi: &mut full,
        };
        Ok(PatternSet {
            dfa: DigitDfa::build(patterns, MatchKind::All, reduce)?,
        })
    }

    /// Walks `digits` once.
    #[inline]
    pub(crate) fn scan(&self, digits: &[u8]) -> Walk {
        let dfa = &self.dfa;
        let mut s = dfa.start;
        let mut prefix = 0;
        for &b in digits {
            let t = dfa.step(s, b);
            s = t & !HAS_DELAYED;
            if s == DEAD {
                return Walk { full: 0, prefix };
            }
            if t & HAS_DELAYED != 0 {
                prefix |= dfa.word(s, DELAYED);
            }
        }
        Walk {
            full: dfa.word(s, EOI),
            prefix,
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
        let reduce = Reduce {
            delayed: &|_| 1,
            eoi: &mut |_| Ok(1),
        };
        Ok(Prefix {
            dfa: DigitDfa::build(&[pattern], MatchKind::LeftmostFirst, reduce)?,
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
        if dfa.word(s, EOI) != 0 {
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

    /// A set whose payloads are bit masks of the pattern ids, so tests can read them back.
    fn set(patterns: &[&str]) -> PatternSet {
        let bits = |ids: &[usize]| ids.iter().fold(0u32, |m, &i| m | 1 << i);
        PatternSet::new(patterns, |i| 1 << i, move |ids| Ok(bits(ids))).unwrap()
    }

    fn scan(set: &PatternSet, s: &str) -> (Vec<usize>, Vec<usize>) {
        let w = set.scan(s.as_bytes());
        let ids = |m: u32| (0..32).filter(|i| m & 1 << i != 0).collect::<Vec<usize>>();
        (ids(w.prefix), ids(w.full))
    }

    #[test]
    fn set_reports_full_and_prefix_matches() {
        let set = set(&["[2-9]\\d{2}", "2\\d", "20|3", "\\d+"]);
        assert_eq!(scan(&set, "201"), (vec![1, 2, 3], vec![0, 3]));
        assert_eq!(scan(&set, "3"), (vec![], vec![2, 3]));
        assert_eq!(scan(&set, ""), (vec![], vec![]));
        let set = self::set(&["1", "12"]);
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
