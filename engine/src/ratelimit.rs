//! Token-bucket rate limits keyed by PT or source address, driven by the caller's clock.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use crate::time::Timestamp;

/// A rate: `burst` requests at once, refilled at `per_minute` requests per minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Bucket size.
    pub burst: u32,
    /// Refill rate.
    pub per_minute: u32,
}

impl Rate {
    /// A rate of `burst` at once and `per_minute` sustained.
    pub const fn new(burst: u32, per_minute: u32) -> Self {
        Self { burst, per_minute }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens, in thousandths.
    milli_tokens: u64,
    at: Timestamp,
}

/// Buckets keyed by `K`. Entries whose bucket has refilled are dropped when the map grows, so
/// memory stays bounded by the number of keys active within one refill period.
///
/// Public so that front ends (the server's per-source and per-token limits) share the engine's
/// clock-driven limiter.
#[derive(Debug)]
pub struct RateLimiter<K> {
    rate: Rate,
    buckets: Mutex<HashMap<K, Bucket>>,
}

const PRUNE_AT: usize = 100_000;

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// A limiter allowing `rate` per key.
    pub fn new(rate: Rate) -> Self {
        Self {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn refill(&self, b: &mut Bucket, now: Timestamp) {
        let full = u64::from(self.rate.burst) * 1000;
        let elapsed = now.saturating_duration_since(b.at).as_millis() as u64;
        // per_minute tokens per 60_000 ms = per_minute milli-tokens per 60 ms.
        let add = elapsed.saturating_mul(u64::from(self.rate.per_minute)) / 60;
        b.milli_tokens = (b.milli_tokens.saturating_add(add)).min(full);
        b.at = now.max(b.at);
    }

    /// Whether a token is available for `key` now, or how long until one is, without taking
    /// it.
    pub fn peek(&self, key: &K, now: Timestamp) -> Result<(), Duration> {
        let map = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(b) = map.get(key) else {
            return Ok(());
        };
        let mut b = *b;
        self.refill(&mut b, now);
        self.wait_for(&b)
    }

    /// `Ok` when `b` holds a whole token, else how long until it does.
    fn wait_for(&self, b: &Bucket) -> Result<(), Duration> {
        if b.milli_tokens >= 1000 {
            Ok(())
        } else if self.rate.per_minute == 0 {
            Err(Duration::from_secs(60))
        } else {
            let missing = 1000 - b.milli_tokens;
            Err(Duration::from_millis(
                (missing * 60).div_ceil(u64::from(self.rate.per_minute)),
            ))
        }
    }

    /// Take one token, or say how long until one is available.
    pub fn check(&self, key: &K, now: Timestamp) -> Result<(), Duration> {
        let full = u64::from(self.rate.burst) * 1000;
        let mut map = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= PRUNE_AT {
            map.retain(|_, b| {
                let mut c = *b;
                self.refill(&mut c, now);
                c.milli_tokens < full
            });
        }
        let b = map.entry(key.clone()).or_insert(Bucket {
            milli_tokens: full,
            at: now,
        });
        self.refill(b, now);
        self.wait_for(b)?;
        b.milli_tokens -= 1000;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let rl = RateLimiter::new(Rate::new(2, 60));
        let t0 = Timestamp::from_unix_secs(1000);
        assert!(rl.check(&"a", t0).is_ok());
        assert!(rl.check(&"a", t0).is_ok());
        assert_eq!(rl.check(&"a", t0), Err(Duration::from_millis(1000)));
        assert!(rl.check(&"b", t0).is_ok());
        let t1 = t0.saturating_add(Duration::from_millis(500));
        assert_eq!(rl.check(&"a", t1), Err(Duration::from_millis(500)));
        let t2 = t0.saturating_add(Duration::from_secs(1));
        assert!(rl.check(&"a", t2).is_ok());
    }

    #[test]
    fn a_peek_tells_without_taking() {
        let rl = RateLimiter::new(Rate::new(1, 60));
        let t0 = Timestamp::from_unix_secs(1000);
        // A key never seen has its whole burst.
        assert!(rl.peek(&"a", t0).is_ok());
        assert!(rl.peek(&"a", t0).is_ok());
        assert!(rl.check(&"a", t0).is_ok());
        assert_eq!(rl.peek(&"a", t0), Err(Duration::from_millis(1000)));
        // Peeking takes nothing: after the refill, the token is there for `check`.
        let t1 = t0.saturating_add(Duration::from_secs(1));
        assert!(rl.peek(&"a", t1).is_ok());
        assert!(rl.check(&"a", t1).is_ok());
        assert!(rl.check(&"a", t1).is_err());
    }
}
