//! Last-interaction times of followers (they open the 48-hour customer-service window).
//! Recorded in memory on the hot path and written in batches, so a keyword reply costs no
//! database write.
//!
//! A follower's time is written at most once a [`COALESCE_MS`]: a follower who sends ten
//! messages in a minute costs one row write, not ten. The time stored can so lag the truth by
//! up to that much, which only ever closes the window early (a push never goes to a follower
//! whose window has closed). The official account's worker writes the batches
//! (`official_account::service`).

use std::{collections::HashMap, sync::Mutex};

/// A newer interaction within this long of the one last written is not written again.
pub const COALESCE_MS: i64 = 60_000;

/// Past this many followers remembered, the written ones are forgotten at the next drain
/// (only their coalescing is lost), so memory stays bounded under a crowd of new followers.
const MAX_REMEMBERED: usize = 100_000;

#[derive(Default)]
pub struct Interactions {
    /// foldhash, seeded per process: the openids come signed from WeChat.
    seen: Mutex<HashMap<String, Seen, foldhash::fast::RandomState>>,
}

#[derive(Clone, Copy)]
struct Seen {
    at_ms: i64,
    /// Not written yet.
    dirty: bool,
}

impl Interactions {
    pub fn record(&self, openid: &str, at_ms: i64) {
        let mut map = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        match map.get_mut(openid) {
            Some(s) if s.dirty => s.at_ms = s.at_ms.max(at_ms),
            Some(s) if at_ms < s.at_ms + COALESCE_MS => {}
            Some(s) => *s = Seen { at_ms, dirty: true },
            None => {
                map.insert(openid.to_owned(), Seen { at_ms, dirty: true });
            }
        }
    }

    /// Take the times not written yet (the newest per openid) for writing. `now_ms` forgets
    /// the written ones that can no longer hold back a write.
    pub fn drain(&self, now_ms: i64) -> Vec<(String, i64)> {
        let mut map = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let mut batch = Vec::new();
        let crowded = map.len() > MAX_REMEMBERED;
        map.retain(|openid, s| {
            if s.dirty {
                batch.push((openid.clone(), s.at_ms));
                s.dirty = false;
                true
            } else {
                !crowded && now_ms < s.at_ms + COALESCE_MS
            }
        });
        batch
    }

    /// Put back a batch whose write failed, so a later flush retries it.
    pub fn restore(&self, batch: Vec<(String, i64)>) {
        let mut map = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        for (openid, at_ms) in batch {
            let s = map.entry(openid).or_insert(Seen { at_ms, dirty: true });
            s.at_ms = s.at_ms.max(at_ms);
            s.dirty = true;
        }
    }

    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_follower_is_written_once_a_minute_at_most() {
        let i = Interactions::default();
        i.record("o1", 1_000);
        i.record("o1", 5_000);
        i.record("o2", 2_000);
        let mut b = i.drain(6_000);
        b.sort();
        assert_eq!(b, [("o1".to_owned(), 5_000), ("o2".to_owned(), 2_000)]);
        // Within the minute after the write: nothing to write again.
        i.record("o1", 30_000);
        i.record("o1", 64_999);
        assert_eq!(i.drain(65_000), []);
        // A minute after the written time: written again.
        i.record("o1", 65_000);
        assert_eq!(i.drain(66_000), [("o1".to_owned(), 65_000)]);
    }

    #[test]
    fn written_followers_are_forgotten_after_the_minute() {
        let i = Interactions::default();
        i.record("o1", 1_000);
        assert_eq!(i.drain(2_000).len(), 1);
        assert_eq!(i.remembered(), 1);
        assert_eq!(i.drain(61_000), []);
        assert_eq!(i.remembered(), 0);
        // Back later: written again at once.
        i.record("o1", 70_000);
        assert_eq!(i.drain(71_000), [("o1".to_owned(), 70_000)]);
    }

    #[test]
    fn a_failed_write_is_retried_with_the_newest_time() {
        let i = Interactions::default();
        i.record("o1", 1_000);
        let b = i.drain(2_000);
        i.record("o1", 3_000); // coalesced: not dirty again
        i.restore(b);
        assert_eq!(i.drain(4_000), [("o1".to_owned(), 1_000)]);
        let i = Interactions::default();
        i.record("o1", 1_000);
        let b = i.drain(2_000);
        i.record("o1", 90_000); // dirty again, newer than the batch
        i.restore(b);
        assert_eq!(i.drain(91_000), [("o1".to_owned(), 90_000)]);
    }

    #[test]
    fn a_crowd_does_not_grow_memory_without_bound() {
        let i = Interactions::default();
        for n in 0..=MAX_REMEMBERED {
            i.record(&format!("o{n}"), 1_000);
        }
        assert_eq!(i.drain(2_000).len(), MAX_REMEMBERED + 1);
        assert_eq!(i.remembered(), MAX_REMEMBERED + 1);
        // Over the bound: the written ones go at the next drain, though inside the minute.
        i.record("late", 3_000);
        assert_eq!(i.drain(4_000), [("late".to_owned(), 3_000)]);
        assert_eq!(i.remembered(), 1);
    }
}
