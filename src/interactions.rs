//! Last-interaction times of followers (they open the 48-hour customer-service window).
//! Recorded in memory on the hot path and written in batches, so a keyword reply costs no
//! database write.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use tokio_util::sync::CancellationToken;

use crate::db::{followers, Db};

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

    pub async fn flush(&self, db: &Db) -> sqlx::Result<usize> {
        let batch: Vec<(String, i64)> = {
            let mut map = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            map.drain().collect()
        };
        let n = batch.len();
        if let Err(e) = followers::touch_many(db, &batch).await {
            // Put them back; a later flush retries.
            for (openid, at) in batch {
                self.record(&openid, at);
            }
            return Err(e);
        }
        Ok(n)
    }

    /// Flush every `every` until cancelled, then once more.
    pub async fn run(&self, db: Db, every: Duration, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(every) => {}
            }
            if let Err(e) = self.flush(&db).await {
                tracing::warn!(error = %e, "flushing follower interactions failed; will retry");
            }
        }
        if let Err(e) = self.flush(&db).await {
            tracing::warn!(error = %e, "final flush of follower interactions failed");
        }
    }
}
