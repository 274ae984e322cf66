//! De-duplication of WeChat's retried deliveries.
//!
//! WeChat retries a message three times when it gets no answer within 5 s, and a retry may arrive
//! while the first delivery is still being handled. The first delivery claims the key; a retry
//! that finds the record finished gets the identical reply; a retry that finds it still running
//! waits for it (woken at once in-process, polling Redis across replicas). No second side effect.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::watch;

use crate::platform::cache::Cache;

const PENDING: &str = "\u{0}pending";

pub enum Claim {
    /// This is the first delivery: handle it, then `complete` (or `abandon` on failure).
    First(Ticket),
    /// Answered before: send this reply again.
    Answered(String),
    /// Still being handled elsewhere after waiting `wait`: the first delivery will answer.
    StillRunning,
}

pub struct Dedup {
    cache: Arc<dyn Cache>,
    ttl: Duration,
    local: Mutex<HashMap<String, watch::Receiver<Option<String>>>>,
}

pub struct Ticket {
    key: String,
    tx: watch::Sender<Option<String>>,
}

impl Dedup {
    pub fn new(cache: Arc<dyn Cache>, ttl: Duration) -> Dedup {
        Dedup {
            cache,
            ttl,
            local: Mutex::new(HashMap::new()),
        }
    }

    fn cache_key(key: &str) -> String {
        format!("dedup:{key}")
    }

    pub async fn claim(&self, key: &str, wait: Duration) -> anyhow::Result<Claim> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Fast path: the first delivery is running in this process.
            let local = self
                .local
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(key)
                .cloned();
            if let Some(mut rx) = local {
                match tokio::time::timeout_at(deadline, rx.wait_for(Option::is_some)).await {
                    Ok(Ok(v)) => return Ok(Claim::Answered(v.clone().unwrap_or_default())),
                    Ok(Err(_)) => continue, // abandoned: try to claim again
                    Err(_) => return Ok(Claim::StillRunning),
                }
            }
            let ck = Self::cache_key(key);
            if self.cache.set_nx(&ck, PENDING, self.ttl).await? {
                let (tx, rx) = watch::channel(None);
                self.local
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key.to_owned(), rx);
                return Ok(Claim::First(Ticket {
                    key: key.to_owned(),
                    tx,
                }));
            }
            // Claimed by another replica (or an earlier run of this one): poll for its answer.
            loop {
                match self.cache.get(&ck).await? {
                    Some(v) if v != PENDING => return Ok(Claim::Answered(v)),
                    Some(_) => {}
                    None => break, // abandoned: try to claim again
                }
                if tokio::time::Instant::now() >= deadline {
                    return Ok(Claim::StillRunning);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// Record the reply that was (or will be) given to the first delivery.
    pub async fn complete(&self, ticket: Ticket, reply: &str) -> anyhow::Result<()> {
        let result = self
            .cache
            .set(&Self::cache_key(&ticket.key), reply, self.ttl)
            .await;
        self.local
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ticket.key);
        let _ = ticket.tx.send(Some(reply.to_owned()));
        result
    }

    /// The first delivery failed before doing anything: let a retry try again.
    pub async fn abandon(&self, ticket: Ticket) {
        self.local
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ticket.key);
        if let Err(e) = self
            .cache
            .del_if_eq(&Self::cache_key(&ticket.key), PENDING)
            .await
        {
            tracing::warn!(error = %e, "could not release a de-duplication claim");
        }
        drop(ticket.tx); // wakes local waiters with "closed"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::cache::MemoryCache;

    #[tokio::test]
    async fn retry_while_running_waits_for_the_first_reply() {
        let d = Arc::new(Dedup::new(
            Arc::new(MemoryCache::default()),
            Duration::from_secs(60),
        ));
        let Claim::First(ticket) = d.claim("u:1", Duration::from_secs(1)).await.unwrap() else {
            panic!("first claim must be First")
        };
        let d2 = d.clone();
        let waiter = tokio::spawn(async move { d2.claim("u:1", Duration::from_secs(2)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        d.complete(ticket, "<xml>reply</xml>").await.unwrap();
        match waiter.await.unwrap().unwrap() {
            Claim::Answered(r) => assert_eq!(r, "<xml>reply</xml>"),
            _ => panic!("retry must get the first reply"),
        }
        match d.claim("u:1", Duration::from_secs(1)).await.unwrap() {
            Claim::Answered(r) => assert_eq!(r, "<xml>reply</xml>"),
            _ => panic!("later retry must get the first reply"),
        }
    }

    #[tokio::test]
    async fn abandoned_claim_can_be_taken_again() {
        let d = Dedup::new(Arc::new(MemoryCache::default()), Duration::from_secs(60));
        let Claim::First(t) = d.claim("k", Duration::from_millis(10)).await.unwrap() else {
            panic!()
        };
        d.abandon(t).await;
        assert!(matches!(
            d.claim("k", Duration::from_millis(10)).await.unwrap(),
            Claim::First(_)
        ));
    }

    #[tokio::test]
    async fn still_running_after_the_wait() {
        let d = Dedup::new(Arc::new(MemoryCache::default()), Duration::from_secs(60));
        let Claim::First(_t) = d.claim("k", Duration::from_millis(10)).await.unwrap() else {
            panic!()
        };
        assert!(matches!(
            d.claim("k", Duration::from_millis(30)).await.unwrap(),
            Claim::StillRunning
        ));
    }
}
