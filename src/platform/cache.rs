//! Short-lived shared state: de-duplication records, rate-limit windows, locks, sessions.
//! Redis when `DANGJIAN_REDIS_URL` is set (shared by all replicas), in-process otherwise.
//!
//! Redis must never take a request down with it: every call is bounded by `redis_timeout_ms`,
//! and after a failure the cache answers "unavailable" at once for about a second (a small
//! circuit breaker) before it tries Redis again, so callers degrade quickly — de-duplication and
//! rate limits carry on in process ([`Cache::local`]), sessions answer 503 — and go back to Redis
//! as soon as it answers.

use std::{
    collections::HashMap,
    hash::{Hash, Hasher},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;

#[async_trait]
pub trait Cache: Send + Sync + 'static {
    async fn get(&self, key: &str) -> anyhow::Result<Option<String>>;
    async fn set(&self, key: &str, value: &str, ttl: Duration) -> anyhow::Result<()>;
    /// Set only if absent; true when this call created the key.
    async fn set_nx(&self, key: &str, value: &str, ttl: Duration) -> anyhow::Result<bool>;
    async fn del(&self, key: &str) -> anyhow::Result<()>;
    /// Delete only if the value is still `value` (release a lock we hold).
    async fn del_if_eq(&self, key: &str, value: &str) -> anyhow::Result<bool>;
    /// Increment a counter, creating it with `ttl` (a fixed window); returns the new value.
    async fn incr(&self, key: &str, ttl: Duration) -> anyhow::Result<i64>;
    async fn ping(&self) -> anyhow::Result<()>;
    fn kind(&self) -> &'static str;
    /// An in-process stand-in for state that stays correct per process (rate-limit windows)
    /// while this cache fails; `None` for the in-process cache itself.
    fn local(&self) -> Option<&MemoryCache> {
        None
    }
}

/// The cache could not be used (Redis down, slow, or the breaker open after a recent failure).
#[derive(Debug, thiserror::Error)]
#[error("cache unavailable: {0}")]
pub struct Unavailable(pub String);

const SHARDS: usize = 32;

/// In-process cache: sharded maps with lazy expiry and a periodic sweep.
pub struct MemoryCache {
    shards: Vec<Mutex<Shard>>,
}

#[derive(Default)]
struct Shard {
    map: HashMap<String, (String, Instant)>,
    writes: u32,
}

impl Shard {
    fn live(&mut self, key: &str, now: Instant) -> Option<&mut (String, Instant)> {
        let expired = matches!(self.map.get(key), Some((_, exp)) if *exp <= now);
        if expired {
            self.map.remove(key);
        }
        self.map.get_mut(key)
    }

    fn insert(&mut self, key: &str, value: String, exp: Instant, now: Instant) {
        self.writes += 1;
        if self.writes % 1024 == 0 {
            self.map.retain(|_, (_, e)| *e > now);
        }
        self.map.insert(key.to_owned(), (value, exp));
    }
}

impl Default for MemoryCache {
    fn default() -> Self {
        MemoryCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
        }
    }
}

impl MemoryCache {
    fn shard(&self, key: &str) -> std::sync::MutexGuard<'_, Shard> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        self.shards[(h.finish() as usize) % SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> anyhow::Result<Option<String>> {
        Ok(self
            .shard(key)
            .live(key, Instant::now())
            .map(|(v, _)| v.clone()))
    }

    async fn set(&self, key: &str, value: &str, ttl: Duration) -> anyhow::Result<()> {
        let now = Instant::now();
        self.shard(key)
            .insert(key, value.to_owned(), now + ttl, now);
        Ok(())
    }

    async fn set_nx(&self, key: &str, value: &str, ttl: Duration) -> anyhow::Result<bool> {
        let now = Instant::now();
        let mut shard = self.shard(key);
        if shard.live(key, now).is_some() {
            return Ok(false);
        }
        shard.insert(key, value.to_owned(), now + ttl, now);
        Ok(true)
    }

    async fn del(&self, key: &str) -> anyhow::Result<()> {
        self.shard(key).map.remove(key);
        Ok(())
    }

    async fn del_if_eq(&self, key: &str, value: &str) -> anyhow::Result<bool> {
        let mut shard = self.shard(key);
        if shard
            .live(key, Instant::now())
            .is_some_and(|(v, _)| v == value)
        {
            shard.map.remove(key);
            return Ok(true);
        }
        Ok(false)
    }

    async fn incr(&self, key: &str, ttl: Duration) -> anyhow::Result<i64> {
        let now = Instant::now();
        let mut shard = self.shard(key);
        if let Some((v, _)) = shard.live(key, now) {
            let n = v.parse::<i64>().unwrap_or(0) + 1;
            *v = n.to_string();
            return Ok(n);
        }
        shard.insert(key, "1".into(), now + ttl, now);
        Ok(1)
    }

    async fn ping(&self) -> anyhow::Result<()> {
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}

/// Redis-backed cache shared by all replicas; every key is namespaced with `prefix`.
#[derive(Clone)]
pub struct RedisCache {
    conn: redis::aio::ConnectionManager,
    prefix: String,
    guard: Arc<Guard>,
}

/// How long the breaker stays open after a failed call before Redis is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Bounds and breaker shared by every clone of a [`RedisCache`] (and the token store on it).
struct Guard {
    timeout: Duration,
    epoch: Instant,
    /// Milliseconds since `epoch` until which calls fail at once; 0 = closed.
    open_until: AtomicU64,
    local: MemoryCache,
}

impl Guard {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    async fn run<T>(
        &self,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> anyhow::Result<T> {
        let open_until = self.open_until.load(Ordering::Relaxed);
        if open_until != 0 && self.now_ms() < open_until {
            return Err(Unavailable("redis failed recently; retrying shortly".into()).into());
        }
        let outcome = match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) if !is_outage(&e) => return Err(e.into()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        };
        match outcome {
            Ok(v) => {
                if open_until != 0 && self.open_until.swap(0, Ordering::Relaxed) != 0 {
                    tracing::warn!("redis is answering again");
                }
                Ok(v)
            }
            Err(why) => {
                let until = self.now_ms() + RETRY_AFTER.as_millis() as u64;
                if self.open_until.swap(until, Ordering::Relaxed) == 0 {
                    tracing::warn!(error = %why, "redis unavailable; degrading until it answers");
                }
                Err(Unavailable(why).into())
            }
        }
    }
}

/// Errors that mean "Redis is not there" (as opposed to a wrong command, type or script).
fn is_outage(e: &redis::RedisError) -> bool {
    use redis::ErrorKind as K;
    !matches!(
        e.kind(),
        K::ResponseError | K::TypeError | K::ExecAbortError | K::NoScriptError | K::ExtensionError
    )
}

const DEL_IF_EQ: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end
"#;

const INCR_WINDOW: &str = r#"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"#;

impl RedisCache {
    /// Connect (start-up fails when Redis is not there); every later call gives up after `timeout`.
    pub async fn connect(url: &str, prefix: &str, timeout: Duration) -> anyhow::Result<RedisCache> {
        let client = redis::Client::open(url)?;
        // Reconnection runs in the background and is retried on the next call; requests never
        // wait for it longer than `timeout`.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(1))
            .set_response_timeout(Duration::from_secs(2))
            .set_number_of_retries(1)
            .set_max_delay(200);
        let conn = redis::aio::ConnectionManager::new_with_config(client, config).await?;
        Ok(RedisCache {
            conn,
            prefix: prefix.to_owned(),
            guard: Arc::new(Guard {
                timeout,
                epoch: Instant::now(),
                open_until: AtomicU64::new(0),
                local: MemoryCache::default(),
            }),
        })
    }

    /// Run one Redis call within the bound and the breaker (also used by the token store).
    pub async fn run<T>(
        &self,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> anyhow::Result<T> {
        self.guard.run(fut).await
    }

    fn key(&self, key: &str) -> String {
        format!("{}{}", self.prefix, key)
    }

    /// The connection, for the few callers that need raw commands (token store).
    pub fn connection(&self) -> redis::aio::ConnectionManager {
        self.conn.clone()
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

fn px(ttl: Duration) -> u64 {
    ttl.as_millis().max(1) as u64
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> anyhow::Result<Option<String>> {
        let mut c = self.conn.clone();
        self.run(redis::cmd("GET").arg(self.key(key)).query_async(&mut c))
            .await
    }

    async fn set(&self, key: &str, value: &str, ttl: Duration) -> anyhow::Result<()> {
        let mut c = self.conn.clone();
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(key)).arg(value).arg("PX").arg(px(ttl));
        self.run(cmd.query_async::<()>(&mut c)).await
    }

    async fn set_nx(&self, key: &str, value: &str, ttl: Duration) -> anyhow::Result<bool> {
        let mut c = self.conn.clone();
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(key))
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(px(ttl));
        let r: Option<String> = self.run(cmd.query_async(&mut c)).await?;
        Ok(r.is_some())
    }

    async fn del(&self, key: &str) -> anyhow::Result<()> {
        let mut c = self.conn.clone();
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.key(key));
        self.run(cmd.query_async::<i64>(&mut c)).await.map(|_| ())
    }

    async fn del_if_eq(&self, key: &str, value: &str) -> anyhow::Result<bool> {
        let mut c = self.conn.clone();
        let script = redis::Script::new(DEL_IF_EQ);
        let mut inv = script.key(self.key(key));
        inv.arg(value);
        let n: i64 = self.run(inv.invoke_async(&mut c)).await?;
        Ok(n == 1)
    }

    async fn incr(&self, key: &str, ttl: Duration) -> anyhow::Result<i64> {
        let mut c = self.conn.clone();
        let script = redis::Script::new(INCR_WINDOW);
        let mut inv = script.key(self.key(key));
        inv.arg(px(ttl));
        self.run(inv.invoke_async(&mut c)).await
    }

    async fn ping(&self) -> anyhow::Result<()> {
        let mut c = self.conn.clone();
        let cmd = redis::cmd("PING");
        self.run(cmd.query_async::<String>(&mut c))
            .await
            .map(|_| ())
    }

    fn kind(&self) -> &'static str {
        "redis"
    }

    fn local(&self) -> Option<&MemoryCache> {
        Some(&self.guard.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_cache_expires_and_set_nx_is_exclusive() {
        let c = MemoryCache::default();
        assert!(c.set_nx("k", "a", Duration::from_millis(30)).await.unwrap());
        assert!(!c.set_nx("k", "b", Duration::from_millis(30)).await.unwrap());
        assert_eq!(c.get("k").await.unwrap().as_deref(), Some("a"));
        assert!(!c.del_if_eq("k", "b").await.unwrap());
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(c.get("k").await.unwrap(), None);
        assert!(c.set_nx("k", "b", Duration::from_secs(1)).await.unwrap());
        assert!(c.del_if_eq("k", "b").await.unwrap());
        assert_eq!(c.incr("n", Duration::from_secs(1)).await.unwrap(), 1);
        assert_eq!(c.incr("n", Duration::from_secs(1)).await.unwrap(), 2);
    }
}
