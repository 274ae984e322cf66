//! The send rate limit, shared by every worker of every replica: a counter per wall-clock second in
//! the cache (Redis when configured, so all replicas draw from one budget; in-process otherwise).
//! A fixed one-second window is a token bucket refilled once a second with no carry-over.
//!
//! Pacing uses the system clock, not `AppState::clock`: it is about real seconds going by, and
//! a test's manual clock must not stop the sending.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokio_util::sync::CancellationToken;

use crate::platform::cache::Cache;

pub struct RateLimiter {
    cache: Arc<dyn Cache>,
    per_second: u64,
}

impl RateLimiter {
    /// `per_second` = 0: no limit.
    pub fn new(cache: Arc<dyn Cache>, per_second: u64) -> RateLimiter {
        RateLimiter { cache, per_second }
    }

    pub fn per_second(&self) -> u64 {
        self.per_second
    }

    /// Wait for one send's worth of budget. False if shut down meanwhile.
    pub async fn acquire(&self, shutdown: &CancellationToken) -> bool {
        if self.per_second == 0 {
            return true;
        }
        loop {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            let second = now.as_secs();
            match self
                .cache
                .incr(&format!("push:rate:{second}"), Duration::from_secs(2))
                .await
            {
                Ok(n) if n as u64 <= self.per_second => return true,
                Ok(_) => {}
                Err(e) => {
                    // Without the shared counter, fall back to this worker's share of one second.
                    tracing::warn!(error = %e, "push rate limiter: cache unavailable; pacing locally");
                    let pause = Duration::from_secs(1) / self.per_second.max(1) as u32;
                    return tokio::select! {
                        _ = tokio::time::sleep(pause) => true,
                        _ = shutdown.cancelled() => false,
                    };
                }
            }
            let next =
                Duration::from_secs(second + 1).saturating_sub(now) + Duration::from_millis(1);
            tokio::select! {
                _ = tokio::time::sleep(next) => {}
                _ = shutdown.cancelled() => return false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn never_more_than_the_rate_in_one_second() {
        let limiter =
            RateLimiter::new(Arc::new(crate::platform::cache::MemoryCache::default()), 20);
        let stop = CancellationToken::new();
        let start = std::time::Instant::now();
        // 41 sends at 20/s span at least three one-second windows: two boundaries, > 1 s.
        for _ in 0..41 {
            assert!(limiter.acquire(&stop).await);
        }
        assert!(
            start.elapsed() > Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
    }
}
