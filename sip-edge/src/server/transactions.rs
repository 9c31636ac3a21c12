//! The INVITE transaction cache (RFC 3261 §17.2.1, DESIGN §2 step 3): a retransmitted INVITE
//! (same Call-ID, CSeq number and top Via branch) gets the same answer as the first, and the
//! engine is not asked again.
//!
//! What is kept is the least that gives the same bytes back ([`Answer`]): a 302 as its bytes
//! (they are held for the ledger anyway, and shared), a reject as its [`Reason`] alone. The
//! reject is written again from the retransmission, which carries the same headers (RFC 3261
//! §17.1.1.2 resends the request unchanged) and gets the same To tag (a hash of Call-ID and
//! branch, [`crate::sip::to_tag`]), so its bytes are those of the first answer. A copy of each
//! ~600-byte reject, kept for 32 s, cost an allocation and a copy per call and most of the
//! page faults of a busy daemon. An entry holds no allocation of its own either: the
//! transaction is identified by two independently seeded 64-bit hashes of the triple
//! ([`TxKey`]), not a copy of it.
//!
//! Entries are answered for 32 s: 64·T1, the time a client keeps retransmitting an INVITE
//! (RFC 3261 §17.1.1.2, Timer B). Memory is bounded without ever scanning the map on the call
//! path: entries go into the *current* of two generations, and lookups check both. When the
//! current one is 32 s old or holds half of `max` entries it becomes the previous one and the
//! old previous one is dropped whole. Under a load that fills a generation in less than 32 s,
//! answers are kept for less time than that; a retransmission that misses the cache is decided
//! again, and the engine answers a Call-ID it already admitted with the same decision,
//! reserving nothing new.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use dashmap::DashMap;
use tollgate_engine::Reason;

/// How long an answer is kept.
pub const TTL: Duration = Duration::from_secs(32);

/// The identity of an INVITE transaction: two hashes of its Call-ID, CSeq number and top Via
/// branch, with independent random seeds. The first picks the slot, the second must match
/// too: two transactions are taken for one only if both 64-bit hashes collide (about 1 in
/// 2^128 for a given pair; and the engine's Call-ID replay keeps even that from reserving
/// twice).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxKey {
    slot: u64,
    check: u64,
}

/// What a transaction was answered with.
#[derive(Clone, Debug)]
pub enum Answer {
    /// A reject, written again for a retransmission (see the module docs).
    Reject(Reason),
    /// The answer's bytes (a 302), shared with whoever sent them.
    Bytes(Arc<[u8]>),
}

struct Entry {
    check: u64,
    answer: Answer,
    at: Instant,
}

/// Keyed by a hash already (see [`Transactions`]); hashed again with `foldhash`, which costs
/// less than std's SipHash on every insert and lookup.
type Map = DashMap<u64, Entry, foldhash::quality::RandomState>;

/// The two generations, swapped as one.
struct Generations {
    current: Arc<Map>,
    previous: Arc<Map>,
}

/// Call-ID + CSeq + branch ([`TxKey`]) → the [`Answer`].
///
/// A rotation swaps in a new pair of maps (`arc-swap`: lookups never wait) and sets the old
/// previous generation aside; [`Transactions::sweep`], on the once-a-second ticker, frees it.
/// Freeing a generation of a hundred thousand answers takes milliseconds: not on the thread
/// that receives SIP.
pub struct Transactions {
    generations: ArcSwap<Generations>,
    /// Inserts into the current generation.
    count: AtomicUsize,
    /// When the current generation started; held while rotating.
    since: Mutex<Instant>,
    /// Generations rotated out, to free off the call path.
    retired: Mutex<Vec<Arc<Map>>>,
    hasher: foldhash::quality::RandomState,
    checker: foldhash::quality::RandomState,
    max: usize,
}

impl Transactions {
    /// A cache of about `max` answers at most.
    pub fn new(max: usize) -> Transactions {
        Transactions {
            generations: ArcSwap::from_pointee(Generations {
                current: Arc::new(Map::default()),
                previous: Arc::new(Map::default()),
            }),
            count: AtomicUsize::new(0),
            since: Mutex::new(Instant::now()),
            retired: Mutex::new(Vec::new()),
            hasher: foldhash::quality::RandomState::default(),
            checker: foldhash::quality::RandomState::default(),
            max: max.max(2),
        }
    }

    /// The key of the INVITE transaction (Call-ID, CSeq number, top Via branch).
    pub fn key(&self, call_id: &str, cseq: u32, branch: &str) -> TxKey {
        TxKey {
            slot: self.hasher.hash_one((call_id, cseq, branch)),
            check: self.checker.hash_one((call_id, cseq, branch)),
        }
    }

    /// The cached answer, if fresh.
    pub fn get(&self, key: TxKey, now: Instant) -> Option<Answer> {
        let g = self.generations.load();
        for map in [&g.current, &g.previous] {
            if let Some(e) = map.get(&key.slot) {
                if e.check == key.check && now.saturating_duration_since(e.at) < TTL {
                    return Some(e.answer.clone());
                }
            }
        }
        None
    }

    /// Keeps `answer` as the answer of this transaction.
    pub fn insert(&self, key: TxKey, answer: Answer, now: Instant) {
        self.generations.load().current.insert(
            key.slot,
            Entry {
                check: key.check,
                answer,
                at: now,
            },
        );
        if self.count.fetch_add(1, Ordering::AcqRel) + 1 >= self.max / 2 {
            self.rotate(now, false);
        }
    }

    /// Starts a new generation if the current one is full, or (`by_age`) [`TTL`] old.
    fn rotate(&self, now: Instant, by_age: bool) {
        // Whoever holds the lock rotates; the others go on.
        let Ok(mut since) = self.since.try_lock() else {
            return;
        };
        let full = self.count.load(Ordering::Acquire) >= self.max / 2;
        let old = now.saturating_duration_since(*since) >= TTL;
        if !(full || (by_age && old)) {
            return;
        }
        let cur = self.generations.load_full();
        // Sized for as many answers as the one before held: a generation that grows from
        // empty rehashes every entry at each doubling, on the SIP threads.
        let size = cur.current.len().min(self.max / 2);
        let next = Generations {
            current: Arc::new(Map::with_capacity_and_hasher(size, Default::default())),
            previous: Arc::clone(&cur.current),
        };
        self.generations.store(Arc::new(next));
        self.count.store(0, Ordering::Release);
        *since = now;
        self.retired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::clone(&cur.previous));
    }

    /// Drops answers older than [`TTL`] (a generation at a time) and frees the generations
    /// rotated out. Call it once a second, off the SIP threads.
    pub fn sweep(&self, now: Instant) {
        self.rotate(now, true);
        let dead = std::mem::take(&mut *self.retired.lock().unwrap_or_else(|p| p.into_inner()));
        drop(dead);
    }

    pub fn len(&self) -> usize {
        let g = self.generations.load();
        g.current.len() + g.previous.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(t: &Transactions, c: &str, cseq: u32, branch: &str, now: Instant) -> Option<Vec<u8>> {
        match t.get(t.key(c, cseq, branch), now)? {
            Answer::Bytes(b) => Some(b.to_vec()),
            Answer::Reject(r) => Some(r.as_str().as_bytes().to_vec()),
        }
    }

    fn put(t: &Transactions, c: &str, now: Instant) {
        let answer = Answer::Bytes(c.as_bytes().into());
        t.insert(t.key(c, 1, "z9hG4bK1"), answer, now);
    }

    #[test]
    fn hit_expiry_and_bound() {
        let t = Transactions::new(8);
        let now = Instant::now();
        put(&t, "a", now);
        assert_eq!(bytes(&t, "a", 1, "z9hG4bK1", now).unwrap(), b"a");
        assert!(bytes(&t, "a", 2, "z9hG4bK1", now).is_none());
        assert!(bytes(&t, "a", 1, "z9hG4bK2", now).is_none());
        assert!(bytes(&t, "b", 1, "z9hG4bK1", now).is_none());
        // Never answered once TTL old, even before a sweep.
        assert!(bytes(&t, "a", 1, "z9hG4bK1", now + TTL).is_none());
        // Count bound: 4 per generation, two generations.
        for c in ["b", "c", "d", "e", "f", "g", "h", "i", "j"] {
            put(&t, c, now);
            assert!(t.len() <= 8, "{}", t.len());
        }
        assert!(
            bytes(&t, "a", 1, "z9hG4bK1", now).is_none(),
            "oldest dropped"
        );
        assert_eq!(bytes(&t, "j", 1, "z9hG4bK1", now).unwrap(), b"j");
        assert_eq!(bytes(&t, "h", 1, "z9hG4bK1", now).unwrap(), b"h");
        // Age bound: two sweeps a TTL apart drop everything.
        t.sweep(now + TTL);
        t.sweep(now + TTL + TTL);
        assert!(t.is_empty());
    }

    #[test]
    fn a_reject_is_kept_as_its_reason() {
        let t = Transactions::new(8);
        let now = Instant::now();
        let key = t.key("r", 7, "z9hG4bKr");
        t.insert(key, Answer::Reject(Reason::NoCallingPlan), now);
        assert!(matches!(
            t.get(key, now),
            Some(Answer::Reject(Reason::NoCallingPlan))
        ));
        // The same triple gives the same key; another slot's hash or check does not match.
        assert_eq!(t.key("r", 7, "z9hG4bKr"), key);
        let other = TxKey {
            slot: key.slot,
            check: key.check ^ 1,
        };
        assert!(t.get(other, now).is_none());
    }
}
