//! Time as a dependency, so tests can move it (scheduled pushes, stale timestamps, expiries).

use std::sync::{
    atomic::{AtomicI64, Ordering},
    Arc,
};

use time::OffsetDateTime;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;

    fn unix_ms(&self) -> i64 {
        crate::platform::time::unix_ms(self.now())
    }
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that tests set and advance by hand.
#[derive(Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn at(t: OffsetDateTime) -> ManualClock {
        ManualClock(Arc::new(AtomicI64::new(crate::platform::time::unix_ms(t))))
    }

    pub fn advance(&self, d: std::time::Duration) {
        self.0.fetch_add(d.as_millis() as i64, Ordering::SeqCst);
    }

    pub fn set(&self, t: OffsetDateTime) {
        self.0
            .store(crate::platform::time::unix_ms(t), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        let ms = self.0.load(Ordering::SeqCst) as i128;
        OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000).expect("valid time")
    }
}
