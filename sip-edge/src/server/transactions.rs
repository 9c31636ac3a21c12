//! The INVITE transaction cache (RFC 3261 §17.2.1, DESIGN §2 step 3): a retransmitted INVITE
//! (same Call-ID, CSeq number and top Via branch) gets the very bytes of the first answer, and
//! the engine is not asked again.
//!
//! Entries live 32 s: 64·T1, the time a client keeps retransmitting an INVITE (RFC 3261
//! §17.1.1.2, Timer B). The map is bounded: when full, expired entries are
//! swept, and if it is still full the answer is not cached (the engine still answers a repeated
//! Call-ID with the same decision and reserves nothing new).

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// Call-ID + CSeq + branch → the response bytes.
///
/// The map is keyed by a (randomly seeded) hash of the triple, so a lookup allocates nothing;
/// the entry keeps the triple and a lookup compares it. Two transactions with the same hash
/// (1 in 2^64) share a slot: the later one replaces the earlier, which then gets a fresh
/// decision (the engine's Call-ID replay keeps it from reserving twice).
pub struct Transactions {
    map: DashMap<u64, Entry>,
    hasher: RandomState,
    max: usize,
}

impl Transactions {
    pub fn new(max: usize) -> Transactions {
        Transactions {
            map: DashMap::new(),
            hasher: RandomState::new(),
            max,
        }
    }

    fn slot(&self, call_id: &str, cseq: u32, branch: &str) -> u64 {
        self.hasher.hash_one((call_id, cseq, branch))
    }

    /// The cached answer, if fresh.
    pub fn get(&self, call_id: &str, cseq: u32, branch: &str, now: Instant) -> Option<Arc<[u8]>> {
        let e = self.map.get(&self.slot(call_id, cseq, branch))?;
        let same = *e.key.call_id == *call_id && e.key.cseq == cseq && *e.key.branch == *branch;
        (same && now.duration_since(e.at) < TTL).then(|| Arc::clone(&e.bytes))
    }

    /// Keeps `bytes` as the answer of this transaction; returns `false` when full.
    pub fn insert(&self, key: TxKey, bytes: &[u8], now: Instant) -> bool {
        if self.map.len() >= self.max {
            self.sweep(now);
            if self.map.len() >= self.max {
                return false;
            }
        }
        let slot = self.slot(&key.call_id, key.cseq, &key.branch);
        self.map.insert(
            slot,
            Entry {
                key,
                bytes: bytes.into(),
                at: now,
            },
        );
        true
    }

    /// Drops expired entries.
    pub fn sweep(&self, now: Instant) {
        self.map.retain(|_, e| now.duration_since(e.at) < TTL);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
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
        let t = Transactions::new(2);
        let now = Instant::now();
        assert!(t.insert(key("a"), b"A", now));
        assert_eq!(&*t.get("a", 1, "z9hG4bK1", now).unwrap(), b"A");
        assert!(t.get("a", 2, "z9hG4bK1", now).is_none());
        assert!(t.get("a", 1, "z9hG4bK2", now).is_none());
        assert!(t.insert(key("b"), b"B", now));
        assert!(!t.insert(key("c"), b"C", now));
        let later = now + TTL;
        assert!(t.get("a", 1, "z9hG4bK1", later).is_none());
        assert!(t.insert(key("c"), b"C", later));
        assert_eq!(t.len(), 1);
    }
}
