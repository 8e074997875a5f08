//! The service validator's cache: the server's answers about RTs, by the RT's SHA-256 digest
//! (the cache never holds an RT), bounded in entries and in age.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::result::tessera_result;
use crate::validator::tessera_rt_identity;

/// What the server said about one RT.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Verdict {
    /// Valid, with what it says about its device.
    Valid(tessera_rt_identity),
    /// Refused for good: revoked, expired, superseded or not issued by the server.
    Refused(tessera_result),
}

#[derive(Debug)]
struct Entry {
    verdict: Verdict,
    /// When the entry stops being used, whatever it says.
    until: Instant,
}

/// Bounded map from RT digest to verdict, with an index by registration so that a revocation or
/// a newer generation ends the entries it makes wrong.
#[derive(Debug)]
pub(crate) struct Cache {
    entries: HashMap<[u8; 32], Entry>,
    /// Insertion order, oldest first, for eviction; may hold digests already removed.
    order: VecDeque<[u8; 32]>,
    by_registration: HashMap<u64, Vec<[u8; 32]>>,
    capacity: usize,
    max_age: Duration,
}

impl Cache {
    pub(crate) fn new(capacity: usize, max_age: Duration) -> Self {
        Self {
            entries: HashMap::new(),
            order: VecDeque::new(),
            by_registration: HashMap::new(),
            capacity,
            max_age,
        }
    }

    pub(crate) fn resize(&mut self, capacity: usize, max_age: Duration) {
        self.capacity = capacity;
        self.max_age = max_age;
        while self.entries.len() > self.capacity {
            self.evict_oldest();
        }
    }

    /// The verdict for an RT, if the cache still holds one. A valid entry whose RT has expired
    /// (by `now_unix`) answers `TESSERA_EXPIRED`.
    #[cfg(test)]
    fn get(&mut self, key: &[u8; 32], now_unix: u64) -> Option<Verdict> {
        self.lookup(key, now_unix).map(|(v, _)| v)
    }

    /// As [`get`](Self::get), and whether a valid entry is past half its age: it should be
    /// asked about again now, so that an RT in use never drops out of the cache.
    pub(crate) fn lookup(&mut self, key: &[u8; 32], now_unix: u64) -> Option<(Verdict, bool)> {
        let e = self.entries.get(key)?;
        let now = Instant::now();
        if now >= e.until {
            self.remove(key);
            return None;
        }
        let renew = now + self.max_age / 2 >= e.until;
        Some(match e.verdict {
            Verdict::Valid(id) if now_unix >= id.expires_at => {
                (Verdict::Refused(tessera_result::TESSERA_EXPIRED), false)
            }
            v @ Verdict::Valid(_) => (v, renew),
            v => (v, false),
        })
    }

    /// Keep the server's answer about an RT. A valid answer ends the entries of older
    /// generations of the same registration: the server has refreshed it since.
    pub(crate) fn insert(&mut self, key: [u8; 32], verdict: Verdict) {
        if let Verdict::Valid(id) = verdict {
            let older: Vec<[u8; 32]> = self
                .by_registration
                .get(&id.registration_id)
                .into_iter()
                .flatten()
                .filter(|k| {
                    matches!(self.entries.get(*k),
                        Some(Entry { verdict: Verdict::Valid(o), .. }) if o.generation < id.generation)
                })
                .copied()
                .collect();
            for k in older {
                self.remove(&k);
            }
            let keys = self.by_registration.entry(id.registration_id).or_default();
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        let fresh = Entry {
            verdict,
            until: Instant::now() + self.max_age,
        };
        if self.entries.insert(key, fresh).is_none() {
            self.order.push_back(key);
        }
        while self.entries.len() > self.capacity {
            self.evict_oldest();
        }
        // Digests of entries removed otherwise linger in `order`; drop them now and then.
        if self.order.len() > 2 * self.capacity.max(16) {
            let entries = &self.entries;
            self.order.retain(|k| entries.contains_key(k));
        }
    }

    /// A registration was revoked: its RTs are refused from now on.
    pub(crate) fn revoke(&mut self, registration_id: u64) {
        for k in self
            .by_registration
            .remove(&registration_id)
            .unwrap_or_default()
        {
            if let Some(e) = self.entries.get_mut(&k) {
                e.verdict = Verdict::Refused(tessera_result::TESSERA_REVOKED);
            }
        }
    }

    fn evict_oldest(&mut self) {
        while let Some(k) = self.order.pop_front() {
            if self.entries.contains_key(&k) {
                self.remove(&k);
                return;
            }
        }
    }

    fn remove(&mut self, key: &[u8; 32]) {
        let Some(e) = self.entries.remove(key) else {
            return;
        };
        if let Verdict::Valid(id) = e.verdict {
            if let Some(keys) = self.by_registration.get_mut(&id.registration_id) {
                keys.retain(|k| k != key);
                if keys.is_empty() {
                    self.by_registration.remove(&id.registration_id);
                }
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(registration_id: u64, generation: u32, expires_at: u64) -> Verdict {
        Verdict::Valid(crate::validator::identity(
            registration_id,
            generation,
            expires_at,
            "pump-1",
        ))
    }

    fn code(v: Option<Verdict>) -> Option<tessera_result> {
        v.map(|v| match v {
            Verdict::Valid(_) => tessera_result::TESSERA_OK,
            Verdict::Refused(c) => c,
        })
    }

    #[test]
    fn a_revocation_turns_the_registrations_entries_into_refusals() {
        let mut c = Cache::new(10, Duration::from_secs(60));
        c.insert([1; 32], valid(7, 1, 2_000));
        c.insert([2; 32], valid(8, 1, 2_000));
        c.revoke(7);
        assert_eq!(
            code(c.get(&[1; 32], 1_000)),
            Some(tessera_result::TESSERA_REVOKED)
        );
        assert_eq!(
            code(c.get(&[2; 32], 1_000)),
            Some(tessera_result::TESSERA_OK)
        );
    }

    #[test]
    fn a_valid_entry_answers_expired_once_its_rt_has_expired() {
        let mut c = Cache::new(10, Duration::from_secs(60));
        c.insert([1; 32], valid(7, 1, 2_000));
        assert_eq!(
            code(c.get(&[1; 32], 1_999)),
            Some(tessera_result::TESSERA_OK)
        );
        assert_eq!(
            code(c.get(&[1; 32], 2_000)),
            Some(tessera_result::TESSERA_EXPIRED)
        );
    }

    #[test]
    fn a_valid_entry_past_half_its_age_asks_to_be_renewed() {
        let mut c = Cache::new(10, Duration::from_secs(60));
        c.insert([1; 32], valid(7, 1, 2_000));
        assert!(matches!(c.lookup(&[1; 32], 1_000), Some((_, false))));
        // The same entry under a lifetime it is past half of; a new answer renews it.
        c.resize(10, Duration::from_secs(7_200));
        assert!(matches!(
            c.lookup(&[1; 32], 1_000),
            Some((Verdict::Valid(_), true))
        ));
        c.insert([1; 32], valid(7, 1, 2_000));
        assert!(matches!(c.lookup(&[1; 32], 1_000), Some((_, false))));
        assert_eq!(c.by_registration[&7].len(), 1);
        // Refusals are not renewed.
        c.insert([2; 32], Verdict::Refused(tessera_result::TESSERA_REVOKED));
        c.resize(10, Duration::from_secs(100_000));
        assert!(matches!(c.lookup(&[2; 32], 1_000), Some((_, false))));
    }

    #[test]
    fn a_newer_generation_ends_the_older_ones() {
        let mut c = Cache::new(10, Duration::from_secs(60));
        c.insert([1; 32], valid(7, 1, 2_000));
        c.insert([2; 32], valid(7, 2, 3_000));
        assert_eq!(code(c.get(&[1; 32], 1_000)), None);
        assert_eq!(
            code(c.get(&[2; 32], 1_000)),
            Some(tessera_result::TESSERA_OK)
        );
    }

    #[test]
    fn the_oldest_entry_goes_when_full_and_entries_end_at_their_age() {
        let mut c = Cache::new(2, Duration::from_secs(60));
        c.insert([1; 32], valid(1, 1, 2_000));
        c.insert([2; 32], valid(2, 1, 2_000));
        c.insert([3; 32], valid(3, 1, 2_000));
        assert_eq!(c.len(), 2);
        assert_eq!(code(c.get(&[1; 32], 1_000)), None);
        assert_eq!(
            code(c.get(&[3; 32], 1_000)),
            Some(tessera_result::TESSERA_OK)
        );
        // Shrinking evicts at once; a lifetime of zero ends every entry.
        c.resize(1, Duration::ZERO);
        assert_eq!(c.len(), 1);
        c.insert(
            [4; 32],
            Verdict::Refused(tessera_result::TESSERA_SUPERSEDED),
        );
        assert_eq!(code(c.get(&[4; 32], 1_000)), None);
        // Removed digests do not pile up in the eviction order.
        c.resize(2, Duration::from_secs(60));
        for i in 0..100u8 {
            c.insert([i; 32], valid(u64::from(i), 1, 2_000));
            c.revoke(u64::from(i));
        }
        assert!(c.order.len() <= 32);
    }
}
