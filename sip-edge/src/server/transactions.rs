//! The INVITE transaction cache (RFC 3261 §17.2.1, DESIGN §2 step 3): a retransmitted INVITE
//! (same Call-ID, CSeq number and top Via branch) gets the very bytes of the first answer, and
//! the engine is not asked again.
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

/// How long an answer is kept.
pub const TTL: Duration = Duration::from_secs(32);

/// The identity of an INVITE transaction.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct TxKey {
    pub call_id: Box<str>,
    pub cseq: u32,
    pub branch: Box<str>,
}

struct Entry {
    key: TxKey,
    bytes: Arc<[u8]>,
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

/// Call-ID + CSeq + branch → the response bytes.
///
/// The maps are keyed by a (randomly seeded) hash of the triple, so a lookup allocates
/// nothing; the entry keeps the triple and a lookup compares it. Two transactions with the
/// same hash (1 in 2^64) share a slot: the later one replaces the earlier, which then gets a
/// fresh decision (the engine's Call-ID replay keeps it from reserving twice).
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
            max: max.max(2),
        }
    }

    fn slot(&self, call_id: &str, cseq: u32, branch: &str) -> u64 {
        self.hasher.hash_one((call_id, cseq, branch))
    }

    /// The cached answer, if fresh.
    pub fn get(&self, call_id: &str, cseq: u32, branch: &str, now: Instant) -> Option<Arc<[u8]>> {
        let slot = self.slot(call_id, cseq, branch);
        let g = self.generations.load();
        for map in [&g.current, &g.previous] {
            if let Some(e) = map.get(&slot) {
                let same =
                    *e.key.call_id == *call_id && e.key.cseq == cseq && *e.key.branch == *branch;
                if same && now.saturating_duration_since(e.at) < TTL {
                    return Some(Arc::clone(&e.bytes));
                }
            }
        }
        None
    }

    /// Keeps `bytes` as the answer of this transaction (shared with the sender: no copy).
    pub fn insert(&self, key: TxKey, bytes: Arc<[u8]>, now: Instant) {
        let slot = self.slot(&key.call_id, key.cseq, &key.branch);
        self.generations.load().current.insert(
            slot,
            Entry {
                key,
                bytes,
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

    fn key(c: &str) -> TxKey {
        TxKey {
            call_id: c.into(),
            cseq: 1,
            branch: "z9hG4bK1".into(),
        }
    }

    #[test]
    fn hit_expiry_and_bound() {
        let t = Transactions::new(8);
        let now = Instant::now();
        t.insert(key("a"), b"A"[..].into(), now);
        assert_eq!(&*t.get("a", 1, "z9hG4bK1", now).unwrap(), b"A");
        assert!(t.get("a", 2, "z9hG4bK1", now).is_none());
        assert!(t.get("a", 1, "z9hG4bK2", now).is_none());
        // Never answered once TTL old, even before a sweep.
        assert!(t.get("a", 1, "z9hG4bK1", now + TTL).is_none());
        // Count bound: 4 per generation, two generations.
        for c in ["b", "c", "d", "e", "f", "g", "h", "i", "j"] {
            t.insert(key(c), c.as_bytes().into(), now);
            assert!(t.len() <= 8, "{}", t.len());
        }
        assert!(t.get("a", 1, "z9hG4bK1", now).is_none(), "oldest dropped");
        assert_eq!(&*t.get("j", 1, "z9hG4bK1", now).unwrap(), b"j");
        assert_eq!(&*t.get("h", 1, "z9hG4bK1", now).unwrap(), b"h");
        // Age bound: two sweeps a TTL apart drop everything.
        t.sweep(now + TTL);
        t.sweep(now + TTL + TTL);
        assert!(t.is_empty());
    }
}
