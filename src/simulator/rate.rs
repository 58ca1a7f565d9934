//! The per-agent calls-per-second limit: a token bucket per agent, full at start.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Past this many agents, buckets that have refilled are forgotten.
const MAX_TRACKED_AGENTS: usize = 10_000;

pub struct RateLimiter {
    per_second: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// `per_second` of zero (or less) admits everything. Bursts up to one second's worth
    /// (at least one call) are admitted.
    pub fn new(per_second: f64) -> Self {
        Self {
            per_second,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Admits a call for `agent`, or says after how many whole seconds one would be.
    pub fn admit(&self, agent: &str) -> Result<(), u64> {
        self.admit_at(agent, Instant::now())
    }

    fn admit_at(&self, agent: &str, now: Instant) -> Result<(), u64> {
        if self.per_second <= 0.0 {
            return Ok(());
        }
        let capacity = self.per_second.max(1.0);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_TRACKED_AGENTS {
            let per_second = self.per_second;
            buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.at).as_secs_f64() * per_second < capacity
            });
        }
        let bucket = buckets.entry(agent.to_owned()).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        let refill = now.saturating_duration_since(bucket.at).as_secs_f64() * self.per_second;
        bucket.tokens = (bucket.tokens + refill).min(capacity);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / self.per_second;
            Err((wait.ceil() as u64).max(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn admits_the_rate_per_agent_then_refills() {
        let limiter = RateLimiter::new(2.0);
        let start = Instant::now();
        assert_eq!(limiter.admit_at("a", start), Ok(()));
        assert_eq!(limiter.admit_at("a", start), Ok(()));
        assert_eq!(limiter.admit_at("a", start), Err(1));
        assert_eq!(limiter.admit_at("b", start), Ok(()));
        assert_eq!(
            limiter.admit_at("a", start + Duration::from_millis(500)),
            Ok(())
        );
    }

    #[test]
    fn slow_rates_ask_for_a_longer_wait_and_zero_is_unlimited() {
        let limiter = RateLimiter::new(0.1);
        let start = Instant::now();
        assert_eq!(limiter.admit_at("a", start), Ok(()));
        assert_eq!(limiter.admit_at("a", start), Err(10));
        let unlimited = RateLimiter::new(0.0);
        for _ in 0..100 {
            assert_eq!(unlimited.admit_at("a", start), Ok(()));
        }
    }
}
