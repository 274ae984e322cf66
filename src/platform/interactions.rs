//! Last-interaction times of followers (they open the 48-hour customer-service window).
//! Recorded in memory on the hot path and written in batches, so a keyword reply costs no
//! database write.

//! The official account's worker writes the batches (`official_account::service`).

use std::{collections::HashMap, sync::Mutex};

#[derive(Default)]
pub struct Interactions {
    pending: Mutex<HashMap<String, i64>>,
}

impl Interactions {
    pub fn record(&self, openid: &str, at_ms: i64) {
        let mut map = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        match map.get_mut(openid) {
            Some(t) if *t >= at_ms => {}
            Some(t) => *t = at_ms,
            None => {
                map.insert(openid.to_owned(), at_ms);
            }
        }
    }

    /// Take the recorded times (the newest per openid) for writing.
    pub fn drain(&self) -> Vec<(String, i64)> {
        let mut map = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        map.drain().collect()
    }

    /// Put back a batch whose write failed, so a later flush retries it.
    pub fn restore(&self, batch: Vec<(String, i64)>) {
        for (openid, at) in batch {
            self.record(&openid, at);
        }
    }
}
