//! The service validator's cache: the server's answers about RTs, by the RT's SHA-256 digest
//! (the cache never holds an RT), bounded in entries and in age.
//!
//! A valid answer is not given back as it was kept: each lookup judges the RT again by the
//! rules every validator applies ([`tessera_proto::token::judge()`]), with the server's word as
//! its authenticity (the entry is keyed by the RT's digest, so the server vouched for this very
//! RT) and the cache's own view of the registration (the newest generation the server called
//! valid, or revoked once the feed said so) as its state. So the cache answers expired, revoked
//! and superseded exactly as the server would, and at once.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use tessera_proto::token::judge::{judge, FamilyState, RtRefusal, Standing};
use tessera_proto::token::RtClaims;

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

/// What the cache knows of a registration it holds valid answers for.
#[derive(Debug, Default)]
struct Registration {
    /// The newest generation the server called valid, with the registration's binding; `None`
    /// once the feed reported it revoked.
    state: Option<FamilyState>,
    /// The digests of the valid answers about it.
    keys: Vec<[u8; 32]>,
}

/// Bounded map from RT digest to verdict, with an index by registration so that a revocation or
/// a newer generation ends the entries it makes wrong.
///
/// Valid answers and refusals are bounded apart, each to the capacity: a flood of made-up RTs
/// (each one a refusal) pushes out older refusals, never a valid answer a device relies on.
#[derive(Debug)]
pub(crate) struct Cache {
    entries: HashMap<[u8; 32], Entry>,
    /// Insertion order of valid answers, oldest first, for eviction; may hold digests already
    /// removed.
    order: VecDeque<[u8; 32]>,
    /// The same for refusals.
    refused_order: VecDeque<[u8; 32]>,
    /// How many entries are valid answers (the rest are refusals).
    valid: usize,
    by_registration: HashMap<u64, Registration>,
    capacity: usize,
    max_age: Duration,
    leeway_secs: u64,
}

impl Cache {
    pub(crate) fn new(capacity: usize, max_age: Duration, leeway_secs: u64) -> Self {
        Self {
            entries: HashMap::new(),
            order: VecDeque::new(),
            refused_order: VecDeque::new(),
            valid: 0,
            by_registration: HashMap::new(),
            capacity,
            max_age,
            leeway_secs,
        }
    }

    pub(crate) fn resize(&mut self, capacity: usize, max_age: Duration) {
        self.capacity = capacity;
        self.max_age = max_age;
        self.evict_over_capacity();
    }

    /// How many valid answers and refusals are held.
    pub(crate) fn counts(&self) -> (usize, usize) {
        (self.valid, self.entries.len() - self.valid)
    }

    fn evict_over_capacity(&mut self) {
        while self.valid > self.capacity {
            if !self.evict_oldest(true) {
                break;
            }
        }
        while self.entries.len() - self.valid > self.capacity {
            if !self.evict_oldest(false) {
                break;
            }
        }
    }

    /// The clock-skew leeway RTs are judged with (the server's, so that both agree).
    pub(crate) fn set_leeway(&mut self, leeway_secs: u64) {
        self.leeway_secs = leeway_secs;
    }

    /// The verdict for an RT (its digest and claims), if the cache still holds one.
    #[cfg(test)]
    fn get(&mut self, key: &[u8; 32], claims: &RtClaims, now_unix: u64) -> Option<Verdict> {
        self.lookup(key, claims, now_unix).map(|(v, _)| v)
    }

    /// As [`get`](Self::get), and whether a valid entry is past half its age: it should be
    /// asked about again now, so that an RT in use never drops out of the cache.
    pub(crate) fn lookup(
        &mut self,
        key: &[u8; 32],
        claims: &RtClaims,
        now_unix: u64,
    ) -> Option<(Verdict, bool)> {
        let e = self.entries.get(key)?;
        let now = Instant::now();
        if now >= e.until {
            self.remove(key);
            return None;
        }
        let renew = now + self.max_age / 2 >= e.until;
        let Verdict::Valid(id) = e.verdict else {
            return Some((e.verdict, false));
        };
        // The server vouched for this very RT: it is authentic.
        let registrations = &self.by_registration;
        let state = |rid: tessera_proto::RegistrationId| {
            Ok::<_, RtRefusal>(registrations.get(&rid.get()).and_then(|r| r.state))
        };
        match judge(true, claims, now_unix, self.leeway_secs, state) {
            Ok(Standing::Current) => Some((Verdict::Valid(id), renew)),
            // Above the newest generation the server vouched for: not this entry's RT (the
            // cache keeps none such); ask the server.
            Ok(Standing::Ahead) => None,
            Err(refusal) => Some((Verdict::Refused(refusal.into()), false)),
        }
    }

    /// Keep the server's answer about an RT (`binding`: the RT's). A valid answer ends the
    /// entries of older generations of the same registration: the server has refreshed it
    /// since.
    pub(crate) fn insert(&mut self, key: [u8; 32], verdict: Verdict, binding: u32) {
        if let Verdict::Valid(id) = verdict {
            let fresh = FamilyState {
                generation: id.generation,
                binding,
            };
            let reg = self
                .by_registration
                .entry(id.registration_id)
                .or_insert_with(|| Registration {
                    state: Some(fresh),
                    keys: Vec::new(),
                });
            let older = match reg.state {
                // Another binding (an id handed out again after a restore on the server),
                // or a newer generation: the entries held are wrong now.
                Some(held) if held.binding != binding || held.generation < fresh.generation => {
                    reg.state = Some(fresh);
                    std::mem::take(&mut reg.keys)
                }
                _ => Vec::new(),
            };
            if !reg.keys.contains(&key) {
                reg.keys.push(key);
            }
            for k in older.into_iter().filter(|k| *k != key) {
                self.remove(&k);
            }
        }
        let valid = matches!(verdict, Verdict::Valid(_));
        let fresh = Entry {
            verdict,
            until: Instant::now() + self.max_age,
        };
        // A fresh answer about an RT already held takes its entry's place in the same
        // segment; one that changes segment moves to the newest end of the other.
        match self.entries.insert(key, fresh).map(|old| old.verdict) {
            None if valid => {
                self.valid += 1;
                self.order.push_back(key);
            }
            None => self.refused_order.push_back(key),
            Some(Verdict::Valid(id)) if !valid => {
                self.valid -= 1;
                self.forget_key(id.registration_id, &key);
                self.refused_order.push_back(key);
            }
            Some(Verdict::Refused(_)) if valid => {
                self.valid += 1;
                self.order.push_back(key);
            }
            Some(_) => {}
        }
        self.evict_over_capacity();
        // Digests of entries removed otherwise linger in the orders; drop them now and then.
        let entries = &self.entries;
        for order in [&mut self.order, &mut self.refused_order] {
            if order.len() > 2 * self.capacity.max(16) {
                order.retain(|k| entries.contains_key(k));
            }
        }
    }

    /// A registration was revoked: its RTs are refused from now on.
    pub(crate) fn revoke(&mut self, registration_id: u64) {
        if let Some(reg) = self.by_registration.get_mut(&registration_id) {
            reg.state = None;
        }
    }

    /// Remove the oldest valid answer (`valid`) or refusal; false when there is none.
    fn evict_oldest(&mut self, valid: bool) -> bool {
        loop {
            let order = if valid {
                &mut self.order
            } else {
                &mut self.refused_order
            };
            let Some(k) = order.pop_front() else {
                return false;
            };
            // The digest may be of an entry removed since, or one that changed segment.
            let here = self
                .entries
                .get(&k)
                .is_some_and(|e| matches!(e.verdict, Verdict::Valid(_)) == valid);
            if here {
                self.remove(&k);
                return true;
            }
        }
    }

    /// Remove an entry.
    fn remove(&mut self, key: &[u8; 32]) {
        let Some(e) = self.entries.remove(key) else {
            return;
        };
        if let Verdict::Valid(id) = e.verdict {
            self.valid -= 1;
            self.forget_key(id.registration_id, key);
        }
    }

    /// A valid answer about a registration is gone: its index forgets it (and the
    /// registration, with its last answer).
    fn forget_key(&mut self, registration_id: u64, key: &[u8; 32]) {
        if let Some(reg) = self.by_registration.get_mut(&registration_id) {
            reg.keys.retain(|k| k != key);
            if reg.keys.is_empty() {
                self.by_registration.remove(&registration_id);
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
    use tessera_proto::RegistrationId;

    const BINDING: u32 = 5;

    /// The claims of an RT and the server's valid answer about it.
    fn rt(registration_id: u64, generation: u32, expires_at: u64) -> (RtClaims, Verdict) {
        let claims = RtClaims {
            key_id: 1,
            registration_id: RegistrationId::new(registration_id),
            binding: BINDING,
            generation,
            issued_at: 0,
            expires_at,
        };
        let verdict = Verdict::Valid(crate::validator::identity(
            registration_id,
            generation,
            expires_at,
            "pump-1",
        ));
        (claims, verdict)
    }

    fn code(v: Option<Verdict>) -> Option<tessera_result> {
        v.map(|v| match v {
            Verdict::Valid(_) => tessera_result::TESSERA_OK,
            Verdict::Refused(c) => c,
        })
    }

    fn cache(capacity: usize) -> Cache {
        Cache::new(capacity, Duration::from_secs(60), 60)
    }

    #[test]
    fn a_revocation_turns_the_registrations_entries_into_refusals() {
        let mut c = cache(10);
        let (a, va) = rt(7, 1, 2_000);
        let (b, vb) = rt(8, 1, 2_000);
        c.insert([1; 32], va, BINDING);
        c.insert([2; 32], vb, BINDING);
        c.revoke(7);
        assert_eq!(
            code(c.get(&[1; 32], &a, 1_000)),
            Some(tessera_result::TESSERA_REVOKED)
        );
        assert_eq!(
            code(c.get(&[2; 32], &b, 1_000)),
            Some(tessera_result::TESSERA_OK)
        );
    }

    #[test]
    fn a_valid_entry_answers_expired_once_its_rt_is_past_the_leeway() {
        let mut c = cache(10);
        let (a, va) = rt(7, 1, 2_000);
        c.insert([1; 32], va, BINDING);
        assert_eq!(
            code(c.get(&[1; 32], &a, 2_059)),
            Some(tessera_result::TESSERA_OK)
        );
        assert_eq!(
            code(c.get(&[1; 32], &a, 2_060)),
            Some(tessera_result::TESSERA_EXPIRED)
        );
        c.set_leeway(0);
        assert_eq!(
            code(c.get(&[1; 32], &a, 2_000)),
            Some(tessera_result::TESSERA_EXPIRED)
        );
    }

    #[test]
    fn a_valid_entry_past_half_its_age_asks_to_be_renewed() {
        let mut c = cache(10);
        let (a, va) = rt(7, 1, 2_000);
        c.insert([1; 32], va, BINDING);
        assert!(matches!(c.lookup(&[1; 32], &a, 1_000), Some((_, false))));
        // The same entry under a lifetime it is past half of; a new answer renews it.
        c.resize(10, Duration::from_secs(7_200));
        assert!(matches!(
            c.lookup(&[1; 32], &a, 1_000),
            Some((Verdict::Valid(_), true))
        ));
        c.insert([1; 32], va, BINDING);
        assert!(matches!(c.lookup(&[1; 32], &a, 1_000), Some((_, false))));
        assert_eq!(c.by_registration[&7].keys.len(), 1);
        // Refusals are not renewed.
        c.insert(
            [2; 32],
            Verdict::Refused(tessera_result::TESSERA_REVOKED),
            BINDING,
        );
        c.resize(10, Duration::from_secs(100_000));
        assert!(matches!(c.lookup(&[2; 32], &a, 1_000), Some((_, false))));
    }

    #[test]
    fn a_newer_generation_ends_the_older_ones() {
        let mut c = cache(10);
        let (a, va) = rt(7, 1, 2_000);
        let (b, vb) = rt(7, 2, 3_000);
        c.insert([1; 32], va, BINDING);
        c.insert([2; 32], vb, BINDING);
        assert_eq!(code(c.get(&[1; 32], &a, 1_000)), None);
        assert_eq!(
            code(c.get(&[2; 32], &b, 1_000)),
            Some(tessera_result::TESSERA_OK)
        );
        // An answer about the older generation arriving late is judged superseded.
        c.insert([1; 32], va, BINDING);
        assert_eq!(
            code(c.get(&[1; 32], &a, 1_000)),
            Some(tessera_result::TESSERA_SUPERSEDED)
        );
    }

    #[test]
    fn a_flood_of_refusals_never_pushes_out_a_valid_answer() {
        let mut c = cache(4);
        let held: Vec<_> = (1..=4u8)
            .map(|i| {
                let (claims, v) = rt(u64::from(i), 1, 2_000);
                c.insert([i; 32], v, BINDING);
                (i, claims)
            })
            .collect();
        for i in 0..1_000u32 {
            let mut key = [0xff; 32];
            key[..4].copy_from_slice(&i.to_be_bytes());
            c.insert(
                key,
                Verdict::Refused(tessera_result::TESSERA_UNAUTHENTICATED),
                BINDING,
            );
        }
        assert_eq!(c.counts(), (4, 4));
        for (i, claims) in held {
            assert_eq!(
                code(c.get(&[i; 32], &claims, 1_000)),
                Some(tessera_result::TESSERA_OK)
            );
        }
        // An RT refused once and valid later (or the other way round) moves between the two.
        let (claims, v) = rt(9, 1, 2_000);
        c.insert(
            [9; 32],
            Verdict::Refused(tessera_result::TESSERA_REVOKED),
            BINDING,
        );
        c.insert([9; 32], v, BINDING);
        // Its refusal is gone; as a fifth valid answer it pushed out the oldest valid one.
        assert_eq!(c.counts(), (4, 3));
        assert_eq!(code(c.get(&[1; 32], &rt(1, 1, 2_000).0, 1_000)), None);
        assert_eq!(
            code(c.get(&[9; 32], &claims, 1_000)),
            Some(tessera_result::TESSERA_OK)
        );
    }

    #[test]
    fn the_oldest_entry_goes_when_full_and_entries_end_at_their_age() {
        let mut c = cache(2);
        let (a, va) = rt(1, 1, 2_000);
        c.insert([1; 32], va, BINDING);
        c.insert([2; 32], rt(2, 1, 2_000).1, BINDING);
        let (third, v3) = rt(3, 1, 2_000);
        c.insert([3; 32], v3, BINDING);
        assert_eq!(c.len(), 2);
        assert_eq!(code(c.get(&[1; 32], &a, 1_000)), None);
        assert_eq!(
            code(c.get(&[3; 32], &third, 1_000)),
            Some(tessera_result::TESSERA_OK)
        );
        // Shrinking evicts at once; a lifetime of zero ends every entry.
        c.resize(1, Duration::ZERO);
        assert_eq!(c.len(), 1);
        c.insert(
            [4; 32],
            Verdict::Refused(tessera_result::TESSERA_SUPERSEDED),
            BINDING,
        );
        assert_eq!(code(c.get(&[4; 32], &a, 1_000)), None);
        // Removed digests do not pile up in the eviction order.
        c.resize(2, Duration::from_secs(60));
        for i in 0..100u8 {
            c.insert([i; 32], rt(u64::from(i), 1, 2_000).1, BINDING);
            c.revoke(u64::from(i));
        }
        assert!(c.order.len() <= 32);
    }
}
