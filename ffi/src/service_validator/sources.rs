//! How many unknown RTs each client address may have the validator ask the server about: a
//! token bucket per address. Whoever can reach the broker can make RTs that look right (the
//! checksum is no secret), and each unknown one costs an INTROSPECT charged to the broker's one
//! service token; an address past its share is refused without a question to the server.

use std::collections::HashMap;
use std::time::Instant;

/// Default: 20 at once, then 10 a second per address.
pub(crate) const DEFAULT_BURST: u32 = 20;
pub(crate) const DEFAULT_PER_SEC: u32 = 10;

/// Addresses remembered at most; past that, those whose bucket is full again are forgotten.
const MAX_SOURCES: usize = 65_536;

#[derive(Debug)]
pub(crate) struct SourceLimit {
    burst: f64,
    per_sec: f64,
    buckets: HashMap<Box<str>, (f64, Instant)>,
}

impl SourceLimit {
    pub(crate) fn new(burst: u32, per_sec: u32) -> Self {
        Self {
            burst: f64::from(burst),
            per_sec: f64::from(per_sec),
            buckets: HashMap::new(),
        }
    }

    /// Take one question for `source` at `now`; false when it has none left.
    pub(crate) fn take(&mut self, source: &str, now: Instant) -> bool {
        if self.buckets.len() >= MAX_SOURCES && !self.buckets.contains_key(source) {
            let (burst, rate) = (self.burst, self.per_sec);
            self.buckets
                .retain(|_, (t, at)| *t + now.duration_since(*at).as_secs_f64() * rate < burst);
            if self.buckets.len() >= MAX_SOURCES {
                // Every address remembered is still short: a new one waits its turn.
                return false;
            }
        }
        let (tokens, at) = self
            .buckets
            .entry(source.into())
            .or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_sec).min(self.burst);
        *at = now.max(*at);
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn an_address_gets_its_burst_then_its_rate_and_others_are_apart() {
        let mut l = SourceLimit::new(3, 2);
        let t0 = Instant::now();
        assert!((0..3).all(|_| l.take("10.0.0.1", t0)));
        assert!(!l.take("10.0.0.1", t0));
        assert!(l.take("10.0.0.2", t0));
        // Two a second: one more after half a second.
        let t1 = t0 + Duration::from_millis(500);
        assert!(l.take("10.0.0.1", t1));
        assert!(!l.take("10.0.0.1", t1));
        // Never more than the burst, however long it waited.
        let t2 = t1 + Duration::from_secs(3600);
        assert_eq!((0..10).filter(|_| l.take("10.0.0.1", t2)).count(), 3);
    }
}
