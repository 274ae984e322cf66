//! The send rate limit, shared by every worker of every replica: a counter per wall-clock second in
//! the cache (Redis when configured, so all replicas draw from one budget; in-process otherwise).
//! A fixed one-second window is a token bucket refilled once a second with no carry-over.
//!
//! Pacing uses the system clock, not `AppState::clock`: it is about real seconds going by, and
//! a test's manual clock must not stop the sending.
//!
//! When the cache fails (Redis down), the process falls back to one bucket of its own, shared by
//! all its senders: each send reserves the next free slot, `1/rate` after the previous one, so the
//! process as a whole never sends faster than the rate (each replica at most the rate; before,
//! every sender slept `1/rate` on its own and the rate was multiplied by the number of senders).

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokio_util::sync::CancellationToken;

use crate::platform::cache::Cache;

pub struct RateLimiter {
    cache: Arc<dyn Cache>,
    per_second: u64,
    /// The fallback bucket: the instant of the next free send slot in this process.
    next_slot: std::sync::Mutex<Option<tokio::time::Instant>>,
}

impl RateLimiter {
    /// `per_second` = 0: no limit.
    pub fn new(cache: Arc<dyn Cache>, per_second: u64) -> RateLimiter {
        RateLimiter {
            cache,
            per_second,
            next_slot: std::sync::Mutex::new(None),
        }
    }

    /// Reserve the next slot of the process-wide fallback bucket; returns when it starts.
    fn reserve_local_slot(&self) -> tokio::time::Instant {
        let interval = Duration::from_secs(1) / self.per_second.max(1) as u32;
        let now = tokio::time::Instant::now();
        let mut next = self.next_slot.lock().unwrap_or_else(|e| e.into_inner());
        // No carry-over of idle time: a slot never starts before now.
        let slot = next.filter(|t| *t > now).unwrap_or(now);
        *next = Some(slot + interval);
        slot
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
                    // Without the shared counter: this process's one bucket, shared by its senders.
                    tracing::debug!(error = %e, "push rate limiter: cache unavailable; pacing in this process");
                    let slot = self.reserve_local_slot();
                    return tokio::select! {
                        _ = tokio::time::sleep_until(slot) => true,
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
    async fn never_more_than_the_rate_in_one_second_and_no_slower_than_it() {
        let limiter =
            RateLimiter::new(Arc::new(crate::platform::cache::MemoryCache::default()), 20);
        let stop = CancellationToken::new();
        let start = std::time::Instant::now();
        // The wall-clock second of each of 41 sends at 20/s.
        let mut per_second = std::collections::BTreeMap::<u64, u32>::new();
        for _ in 0..41 {
            assert!(limiter.acquire(&stop).await);
            let s = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs();
            *per_second.entry(s).or_default() += 1;
        }
        let elapsed = start.elapsed();
        // Upper bound of the rate: no wall-clock second has more than 20 sends.
        assert!(per_second.values().all(|n| *n <= 20), "{per_second:?}");
        // So 41 sends span at least three seconds: two boundaries, more than 1 s.
        assert!(per_second.len() >= 3, "{per_second:?}");
        assert!(elapsed > Duration::from_secs(1), "{elapsed:?}");
        // And the limiter does not hold back more than it must: a full second's budget is used
        // before the next second (only the first, partial second and the last may have less),
        // and the whole run takes at most the three seconds it needs (plus scheduling slack).
        let counts: Vec<u32> = per_second.values().copied().collect();
        assert!(
            counts[1..counts.len() - 1].iter().all(|n| *n == 20),
            "{per_second:?}"
        );
        assert!(elapsed < Duration::from_millis(3_500), "{elapsed:?}");
    }

    /// A cache that is always down (Redis gone).
    struct Down;

    #[async_trait::async_trait]
    impl Cache for Down {
        async fn get(&self, _: &str) -> anyhow::Result<Option<String>> {
            anyhow::bail!("down")
        }
        async fn set(&self, _: &str, _: &str, _: Duration) -> anyhow::Result<()> {
            anyhow::bail!("down")
        }
        async fn set_nx(&self, _: &str, _: &str, _: Duration) -> anyhow::Result<bool> {
            anyhow::bail!("down")
        }
        async fn put_unless(
            &self,
            _: &str,
            _: &str,
            _: Duration,
            _: Option<&str>,
        ) -> anyhow::Result<crate::platform::cache::PutOutcome> {
            anyhow::bail!("down")
        }
        async fn del(&self, _: &str) -> anyhow::Result<()> {
            anyhow::bail!("down")
        }
        async fn del_if_eq(&self, _: &str, _: &str) -> anyhow::Result<bool> {
            anyhow::bail!("down")
        }
        async fn incr(&self, _: &str, _: Duration) -> anyhow::Result<i64> {
            anyhow::bail!("down")
        }
        async fn ping(&self) -> anyhow::Result<()> {
            anyhow::bail!("down")
        }
        fn kind(&self) -> &'static str {
            "down"
        }
    }

    /// Issue 13, item 5: with Redis down, eight concurrent senders share one bucket: 16 sends at
    /// 20/s take 15 intervals of 50 ms — not the 50 ms of eight senders pacing on their own, and
    /// not more than the bucket needs. Tokio's paused clock makes both bounds exact.
    #[tokio::test(start_paused = true)]
    async fn push_rate_without_redis_is_one_bucket_per_process() {
        let limiter = Arc::new(RateLimiter::new(Arc::new(Down), 20));
        let stop = CancellationToken::new();
        let start = tokio::time::Instant::now();
        let senders: Vec<_> = (0..8)
            .map(|_| {
                let (l, s) = (limiter.clone(), stop.clone());
                tokio::spawn(async move {
                    for _ in 0..2 {
                        assert!(l.acquire(&s).await);
                    }
                })
            })
            .collect();
        for s in senders {
            s.await.unwrap();
        }
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(750) && elapsed < Duration::from_millis(800),
            "16 sends at 20/s: {elapsed:?}"
        );
    }
}
