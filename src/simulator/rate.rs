//! The per-agent calls-per-second limit (GCRA, as AI Studio's 429s suggest): bursts of up to
//! a second's worth of calls (at least one), then the rate.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter as Gcra};

/// Past this many agents, the ones whose limit has recovered are forgotten.
const MAX_TRACKED_AGENTS: usize = 10_000;

/// One GCRA state per agent id.
type PerAgent<C> =
    Gcra<String, HashMapStateStore<String>, C, NoOpMiddleware<<C as Clock>::Instant>>;

pub struct RateLimiter<C: Clock = DefaultClock> {
    /// `None`: no limit.
    limiter: Option<PerAgent<C>>,
    clock: C,
}

impl RateLimiter {
    /// `per_second` of zero (or less) admits everything.
    pub fn new(per_second: f64) -> Self {
        Self::with_clock(per_second, DefaultClock::default())
    }
}

impl<C: Clock + Clone> RateLimiter<C> {
    fn with_clock(per_second: f64, clock: C) -> Self {
        let quota = (per_second > 0.0)
            .then(|| Quota::with_period(Duration::from_secs_f64(1.0 / per_second)))
            .flatten();
        let burst = NonZeroU32::new(per_second.max(1.0) as u32).unwrap_or(NonZeroU32::MIN);
        Self {
            limiter: quota
                .map(|quota| Gcra::hashmap_with_clock(quota.allow_burst(burst), clock.clone())),
            clock,
        }
    }

    /// Admits a call for `agent`, or says after how many whole seconds one would be.
    pub fn admit(&self, agent: &str) -> Result<(), u64> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        if limiter.len() >= MAX_TRACKED_AGENTS {
            limiter.retain_recent();
        }
        limiter.check_key(&agent.to_owned()).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            (wait.as_secs_f64().ceil() as u64).max(1)
        })
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    #[test]
    fn admits_the_rate_per_agent_then_refills() {
        let clock = FakeRelativeClock::default();
        let limiter = RateLimiter::with_clock(2.0, clock.clone());
        assert_eq!(limiter.admit("a"), Ok(()));
        assert_eq!(limiter.admit("a"), Ok(()));
        assert_eq!(limiter.admit("a"), Err(1));
        assert_eq!(limiter.admit("b"), Ok(()));
        clock.advance(Duration::from_millis(500));
        assert_eq!(limiter.admit("a"), Ok(()));
    }

    #[test]
    fn slow_rates_ask_for_a_longer_wait_and_zero_is_unlimited() {
        let limiter = RateLimiter::with_clock(0.1, FakeRelativeClock::default());
        assert_eq!(limiter.admit("a"), Ok(()));
        assert_eq!(limiter.admit("a"), Err(10));
        let unlimited = RateLimiter::new(0.0);
        for _ in 0..100 {
            assert_eq!(unlimited.admit("a"), Ok(()));
        }
    }
}
