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
/// match ended just before `i`. Each state has a row of its ten transitions; what its delayed
/// matches and its end-of-input matches *mean* is reduced at build time by the caller to a
/// mask and a payload, kept beside the rows: no per-pattern work is left for the hot path.
///
/// The tables of every calling code together are near the size of a core's L2 cache, and a
/// walk is a chain of dependent loads, so their size is what a classification costs: a row is
/// 20 bytes, and the match data, read at most once per walk (and per flagged step), is not in
/// it.
struct DigitDfa {
    /// `ROW` transitions per state; they carry [`HAS_DELAYED`].
    rows: Vec<u16>,
    /// Per state: the mask of its delayed matches.
    delayed: Vec<u32>,
    /// Per state: the payload of its end-of-input matches (0: none).
    eoi: Vec<u16>,
    start: u16,
    /// Bit `d` set: the start state's transition on digit `d` is dead. Most walks of the
    /// prefix and short-number automata end on the first digit, and this answers them from
    /// the struct the caller already holds, without loading the start row.
    dead_first: u16,
}

/// Transitions per state row (20 bytes).
const ROW: usize = 10;

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
        // States are numbered in depth-first preorder, lowest digit first. The long tails of
        // phone patterns (`\d{7}`) are chains whose every digit leads to the same state: so
        // numbered, a chain's rows are adjacent, three to a cache line, and a walk down one
        // touches a third of the lines it would in breadth-first order.
        let mut index: HashMap<StateID, u16> = HashMap::new();
        let mut order: Vec<StateID> = Vec::new();
        let mut stack = vec![start];
        while let Some(s) = stack.pop() {
            if dfa.is_dead_state(s) || index.contains_key(&s) {
                continue;
            }
            let i = u16::try_from(order.len() + 1)
                .ok()
                .filter(|&i| i < HAS_DELAYED)
                .ok_or_else(|| MetadataError("digit DFA over 32767 states".into()))?;
            index.insert(s, i);
            order.push(s);
            stack.extend((b'0'..=b'9').rev().map(|d| dfa.next_state(s, d)));
        }
        let number = |s: StateID| -> Result<u16, MetadataError> {
            match dfa.is_dead_state(s) {
                true => Ok(DEAD),
                false => index
                    .get(&s)
                    .copied()
                    .ok_or_else(|| MetadataError("digit DFA state not numbered".into())),
            }
        };
        let start_idx = number(start)?;
        // Row 0 is the dead state.
        let mut rows = vec![DEAD; ROW];
        let mut delayed_masks = vec![0u32];
        let mut eoi_payloads = vec![0u16];
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
        for &s in &order {
            for d in b'0'..=b'9' {
                rows.push(number(dfa.next_state(s, d))?);
            }
            let delayed = patterns(s)
                .into_iter()
                .fold(0u32, |m, p| m | (reduce.delayed)(p));
            delayed_masks.push(delayed);
            let eoi = patterns(dfa.next_eoi_state(s));
            let payload = match eoi.is_empty() {
                true => 0,
                false => (reduce.eoi)(&eoi)?,
            };
            eoi_payloads.push(
                u16::try_from(payload)
                    .map_err(|_| MetadataError("digit DFA payload over 65535".into()))?,
            );
        }
        // Flag transitions into states with delayed matches.
        for t in rows.iter_mut() {
            if delayed_masks.get(*t as usize).is_some_and(|&m| m != 0) {
                *t |= HAS_DELAYED;
            }
        }
        let base = start_idx as usize * ROW;
        let dead_first = (0..ROW)
            .filter(|&d| rows.get(base + d) == Some(&DEAD))
            .fold(0u16, |m, d| m | 1 << d);
        Ok(DigitDfa {
            rows,
            delayed: delayed_masks,
            eoi: eoi_payloads,
            start: start_idx,
            dead_first,
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

    /// Whether the walk over `digits` dies on its first digit (a non-digit dies too).
    #[inline(always)]
    fn dies_at_once(&self, digits: &[u8]) -> bool {
        match digits.first() {
            Some(&b) => {
                let d = b.wrapping_sub(b'0');
                d > 9 || self.dead_first & (1 << d) != 0
            }
            None => false,
        }
    }

    /// The mask of state `s`'s delayed matches.
    #[inline(always)]
    fn delayed(&self, s: u16) -> u32 {
        self.delayed.get(s as usize).copied().unwrap_or(0)
    }

    /// The payload of state `s`'s end-of-input matches (0: none).
    #[inline(always)]
    fn eoi(&self, s: u16) -> u32 {
        self.eoi.get(s as usize).copied().map_or(0, u32::from)
    }

    fn memory_usage(&self) -> usize {
        self.rows.len() * 2 + self.delayed.len() * 4 + self.eoi.len() * 2
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
    /// the whole input; `full` returns the payload a walk reports (not 0, at most 65535).
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
        if dfa.dies_at_once(digits) {
            return Walk::default();
        }
        let mut s = dfa.start;
        let mut prefix = 0;
        for &b in digits {
            let t = dfa.step(s, b);
            s = t & !HAS_DELAYED;
            if s == DEAD {
                return Walk { full: 0, prefix };
            }
            if t & HAS_DELAYED != 0 {
                prefix |= dfa.delayed(s);
            }
        }
        Walk {
            full: dfa.eoi(s),
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
        if dfa.dies_at_once(digits) {
            return None;
        }
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
        if dfa.eoi(s) != 0 {
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
