//! Short-lived shared state: de-duplication records, rate-limit windows, locks, sessions.
//! Redis when `DANGJIAN_REDIS_URL` is set (shared by all replicas), in-process otherwise.
//!
//! Redis must never take a request down with it: every call is bounded by `redis_timeout_ms`,
//! and after a failure the cache answers "unavailable" at once for about a second (a small
//! circuit breaker) before it tries Redis again, so callers degrade quickly — de-duplication and
//! rate limits carry on in process ([`Cache::local`]), sessions answer 503 — and go back to Redis
//! as soon as it answers.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
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
    /// [`Cache::set_nx`] on `key` and a [`Cache::get`] of `other`, in one round trip where the
    /// cache is remote (Redis pipelines the two): the de-duplication claim reads the sender's
    /// chat state with it.
    async fn set_nx_and_get(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
        other: &str,
    ) -> anyhow::Result<(bool, Option<String>)> {
        let created = self.set_nx(key, value, ttl).await?;
        Ok((created, self.get(other).await?))
    }
    /// Put `value` at `key` with `ttl` unless `key` holds a value already or the key `unless`
    /// is set, in one step (one Redis script): a de-duplication record that is final from the
    /// start (a reply with no side effect) is claimed and answered at once, unless the sender has
    /// chat state that would make the message mean something else.
    async fn put_unless(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
        unless: Option<&str>,
    ) -> anyhow::Result<PutOutcome>;
    /// [`Cache::set`] of every `(key, value)` with one `ttl`, in one round trip where the cache
    /// is remote (Redis pipelines them): the de-duplication answers are written in batches.
    async fn set_many(&self, entries: &[(String, String)], ttl: Duration) -> anyhow::Result<()> {
        for (key, value) in entries {
            self.set(key, value, ttl).await?;
        }
        Ok(())
    }
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
    /// This cache itself when it is the in-process one, for callers that need its synchronous
    /// reads (the de-duplication claim reads it under a lock).
    fn as_memory(&self) -> Option<&MemoryCache> {
        None
    }
}

/// What [`Cache::put_unless`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    /// `key` was absent: it holds the value now.
    Put,
    /// `key` held this value: nothing was written.
    Held(String),
    /// The `unless` key was set: nothing was written.
    Guarded,
}

/// Default bound of the in-process cache (keys + values), whatever the traffic.
pub const DEFAULT_MEMORY_CACHE_BYTES: u64 = 32 * 1024 * 1024;

/// The cache could not be used (Redis down, slow, or the breaker open after a recent failure).
#[derive(Debug, thiserror::Error)]
#[error("cache unavailable: {0}")]
pub struct Unavailable(pub String);

/// One cached value and the instant it expires (TTLs are per entry).
#[derive(Clone)]
struct Entry {
    value: std::sync::Arc<str>,
    deadline: Instant,
}

struct PerEntry;

impl moka::Expiry<String, Entry> for PerEntry {
    fn expire_after_create(&self, _: &String, e: &Entry, now: Instant) -> Option<Duration> {
        Some(e.deadline.saturating_duration_since(now))
    }

    fn expire_after_update(
        &self,
        _: &String,
        e: &Entry,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(e.deadline.saturating_duration_since(now))
    }
}

/// Key, value and the bookkeeping per entry (the store's node, the allocations of key and
/// value): 300 bytes brings the bound within about a tenth of the resident memory measured
/// under load (bench/README.md).
fn weight(key: &str, e: &Entry) -> u64 {
    (key.len() + e.value.len() + 300) as u64
}

/// The de-duplication records' store: entries weighed as above.
#[derive(Clone)]
struct RecordWeight;

impl quick_cache::Weighter<String, Entry> for RecordWeight {
    fn weight(&self, key: &String, e: &Entry) -> u64 {
        weight(key, e)
    }
}

type Records = quick_cache::sync::Cache<
    String,
    Entry,
    RecordWeight,
    foldhash::fast::RandomState,
    quick_cache::sync::DefaultLifecycle<String, Entry>,
>;

/// Where a [`MemoryCache`] keeps its entries.
#[derive(Clone)]
enum Store {
    /// moka with TinyLFU: what is read most (sessions, rate-limit windows) stays when full.
    Moka(moka::sync::Cache<String, Entry, foldhash::fast::RandomState>),
    /// quick_cache: an entry that was never read again goes oldest first when full, so the
    /// newest records are the ones kept. Expiry is checked on reading; the bound keeps memory
    /// flat.
    Records(Arc<Records>),
}

/// In-process cache (one instance only): per-entry TTLs and a size bound, so memory stays flat
/// however many messages arrive.
#[derive(Clone)]
pub struct MemoryCache {
    store: Store,
}

impl Default for MemoryCache {
    fn default() -> Self {
        MemoryCache::with_capacity_bytes(DEFAULT_MEMORY_CACHE_BYTES)
    }
}

impl MemoryCache {
    /// Bounded by `max_bytes`; when full, moka's TinyLFU keeps the entries read most (sessions,
    /// rate-limit windows) against a flood of entries written once.
    pub fn with_capacity_bytes(max_bytes: u64) -> MemoryCache {
        let entries = moka::sync::Cache::builder()
            .max_capacity(max_bytes)
            .eviction_policy(moka::policy::EvictionPolicy::tiny_lfu())
            .weigher(|k: &String, e: &Entry| weight(k, e).min(u32::MAX as u64) as u32)
            .expire_after(PerEntry)
            // foldhash, seeded per process, instead of SipHash: hashing every key was a few
            // percent of a webhook message (bench/README.md).
            .build_with_hasher(foldhash::fast::RandomState::default());
        MemoryCache {
            store: Store::Moka(entries),
        }
    }

    /// Bounded by `max_bytes`; when full, the oldest entry that was not read again goes. For
    /// records where the newest matter most whatever was read before (de-duplication: a retry
    /// comes within seconds of its first delivery), which TinyLFU could refuse to admit at
    /// capacity. Written once and almost never read, such records cost moka a concurrent-table
    /// rehash and housekeeping on every message at capacity: quick_cache evicts them in place.
    pub fn records_with_capacity_bytes(max_bytes: u64) -> MemoryCache {
        let records = Records::with_options(
            quick_cache::OptionsBuilder::new()
                .estimated_items_capacity((max_bytes / 700).max(16) as usize)
                .weight_capacity(max_bytes)
                // Space reserved for entries read again: records hardly ever are (a retry), so
                // nearly all of it goes to the records in the order they came (quick_cache's
                // default of 97% would leave the newest records 3%).
                .hot_allocation(0.05)
                .build()
                .expect("valid record store options"),
            RecordWeight,
            foldhash::fast::RandomState::default(),
            Default::default(),
        );
        MemoryCache {
            store: Store::Records(Arc::new(records)),
        }
    }

    fn live(&self, key: &str) -> Option<Entry> {
        // The clock is read only for a hit: the de-duplication claim's lookup nearly always misses.
        match &self.store {
            Store::Moka(m) => m.get(key),
            Store::Records(r) => r.get(key),
        }
        .filter(|e| e.deadline > Instant::now())
    }

    fn entry(value: &str, ttl: Duration) -> Entry {
        Entry {
            value: value.into(),
            deadline: Instant::now() + ttl,
        }
    }

    /// The live value of `key`, read synchronously (in process nothing waits).
    pub fn get_now(&self, key: &str) -> Option<String> {
        self.live(key).map(|e| e.value.to_string())
    }

    /// Put `value` at `key` unless it holds a live value, which is returned instead; one
    /// lookup, synchronous.
    pub fn put_if_absent_now(&self, key: &str, value: &str, ttl: Duration) -> Option<String> {
        self.compute(key, |cur| match cur {
            Some(e) => (Change::Keep, Some(e.value.to_string())),
            None => (Change::Put(Self::entry(value, ttl)), None),
        })
    }

    /// How long `key` has left to live, if it is there (for tests).
    #[cfg(test)]
    pub fn remaining_ttl(&self, key: &str) -> Option<Duration> {
        self.live(key)
            .map(|e| e.deadline.saturating_duration_since(Instant::now()))
    }

    /// Entries held now (after pending evictions ran; expired records not yet evicted count
    /// too): for tests and metrics.
    pub fn len(&self) -> u64 {
        match &self.store {
            Store::Moka(m) => {
                m.run_pending_tasks();
                m.entry_count()
            }
            Store::Records(r) => r.len() as u64,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `decide(the key's live entry)` runs atomically for `key` (under the entry's lock); what
    /// it returns beside the [`Change`] goes back to the caller.
    fn compute<T>(&self, key: &str, decide: impl FnOnce(Option<&Entry>) -> (Change, T)) -> T {
        use quick_cache::sync::{EntryAction, EntryResult};
        let now = Instant::now();
        let mut decide = Some(decide);
        let mut out = None;
        match &self.store {
            Store::Moka(m) => {
                use moka::ops::compute::Op;
                m.entry_by_ref(key).and_compute_with(|cur| {
                    let cur = cur.map(|e| e.into_value()).filter(|e| e.deadline > now);
                    let (change, t) = decide.take().expect("run once")(cur.as_ref());
                    out = Some(t);
                    match change {
                        Change::Keep => Op::Nop,
                        Change::Put(e) => Op::Put(e),
                        Change::Remove => Op::Remove,
                    }
                });
            }
            Store::Records(r) => {
                let result = r.entry(key, None, |_, e| {
                    let live = e.deadline > now;
                    let (change, t) = decide.take().expect("run once")(live.then_some(&*e));
                    out = Some(t);
                    match change {
                        Change::Put(next) => {
                            *e = next;
                            EntryAction::Retain(())
                        }
                        Change::Keep if live => EntryAction::Retain(()),
                        // An expired record is as good as absent: dropped while here.
                        Change::Keep | Change::Remove => EntryAction::Remove,
                    }
                });
                if let EntryResult::Vacant(guard) = result {
                    let (change, t) = decide.take().expect("not run for a vacant key")(None);
                    out = Some(t);
                    if let Change::Put(next) = change {
                        let _ = guard.insert(next);
                    }
                }
            }
        }
        out.expect("the decision ran")
    }
}

/// What [`MemoryCache::compute`] does to a key.
enum Change {
    Keep,
    Put(Entry),
    Remove,
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> anyhow::Result<Option<String>> {
        Ok(self.get_now(key))
    }

    async fn set(&self, key: &str, value: &str, ttl: Duration) -> anyhow::Result<()> {
        let e = Self::entry(value, ttl);
        match &self.store {
            Store::Moka(m) => m.insert(key.to_owned(), e),
            Store::Records(r) => r.insert(key.to_owned(), e),
        }
        Ok(())
    }

    async fn set_nx(&self, key: &str, value: &str, ttl: Duration) -> anyhow::Result<bool> {
        Ok(self.compute(key, |cur| match cur {
            Some(_) => (Change::Keep, false),
            None => (Change::Put(Self::entry(value, ttl)), true),
        }))
    }

    async fn put_unless(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
        unless: Option<&str>,
    ) -> anyhow::Result<PutOutcome> {
        if unless.is_some_and(|other| self.live(other).is_some()) {
            return Ok(PutOutcome::Guarded);
        }
        Ok(match self.put_if_absent_now(key, value, ttl) {
            None => PutOutcome::Put,
            Some(held) => PutOutcome::Held(held),
        })
    }

    async fn del(&self, key: &str) -> anyhow::Result<()> {
        match &self.store {
            Store::Moka(m) => m.invalidate(key),
            Store::Records(r) => {
                r.remove(key);
            }
        }
        Ok(())
    }

    async fn del_if_eq(&self, key: &str, value: &str) -> anyhow::Result<bool> {
        Ok(self.compute(key, |cur| match cur {
            Some(e) if &*e.value == value => (Change::Remove, true),
            _ => (Change::Keep, false),
        }))
    }

    async fn incr(&self, key: &str, ttl: Duration) -> anyhow::Result<i64> {
        Ok(self.compute(key, |cur| {
            let next = match cur {
                // The window keeps its first deadline (a fixed window, like Redis INCR+EXPIRE).
                Some(e) => Entry {
                    value: (e.value.parse::<i64>().unwrap_or(0) + 1).to_string().into(),
                    deadline: e.deadline,
                },
                None => Self::entry("1", ttl),
            };
            let n = next.value.parse().unwrap_or(1);
            (Change::Put(next), n)
        }))
    }

    async fn ping(&self) -> anyhow::Result<()> {
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "memory"
    }

    fn as_memory(&self) -> Option<&MemoryCache> {
        Some(self)
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

/// [`Cache::put_unless`]: KEYS[1] the record, KEYS[2] (optional) the guard; ARGV the value
/// and its TTL in ms. Answers {0, nil} put, {1, held} held, {2, nil} guarded: Lua's `false`
/// becomes Redis's nil, so every answer has two elements and reads as one (code, value) pair.
const PUT_UNLESS: &str = r#"
if KEYS[2] and redis.call('EXISTS', KEYS[2]) == 1 then return {2, false} end
local held = redis.call('GET', KEYS[1])
if held then return {1, held} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {0, false}
"#;

/// Scripts run on every message, hashed once (redis-rs sends EVALSHA, and loads the script when
/// Redis does not know it yet).
static PUT_UNLESS_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(PUT_UNLESS));

impl RedisCache {
    /// Connect (start-up fails when Redis is not there); every later call gives up after `timeout`.
    pub async fn connect(url: &str, prefix: &str, timeout: Duration) -> anyhow::Result<RedisCache> {
        let client = redis::Client::open(url)?;
        // Reconnection runs in the background and is retried on the next call; requests never
        // wait for it longer than `timeout`.
        // No response timeout of the client's own: every call is bounded by `timeout` already
        // (`Guard::run`), and a second timer per call cost a registration and a cancellation on
        // every message. TCP_NODELAY stays off (the client's default): while one write waits for
        // its answer the next ones gather behind it, and Redis reads several commands at once.
        // Measured with it on: 3–5% fewer messages a second (bench/README.md).
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(1))
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
        // Joined like the de-duplication key and the draft marker: every message builds two.
        [self.prefix.as_str(), key].concat()
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

    async fn set_nx_and_get(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
        other: &str,
    ) -> anyhow::Result<(bool, Option<String>)> {
        let mut c = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(self.key(key))
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(px(ttl))
            .cmd("GET")
            .arg(self.key(other));
        let (created, read): (Option<String>, Option<String>) =
            self.run(pipe.query_async(&mut c)).await?;
        Ok((created.is_some(), read))
    }

    async fn put_unless(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
        unless: Option<&str>,
    ) -> anyhow::Result<PutOutcome> {
        let mut c = self.conn.clone();
        let mut inv = PUT_UNLESS_SCRIPT.key(self.key(key));
        if let Some(other) = unless {
            inv.key(self.key(other));
        }
        inv.arg(value).arg(px(ttl));
        let (code, held): (i64, Option<String>) = self.run(inv.invoke_async(&mut c)).await?;
        match (code, held) {
            (0, _) => Ok(PutOutcome::Put),
            (1, Some(held)) => Ok(PutOutcome::Held(held)),
            (2, _) => Ok(PutOutcome::Guarded),
            (code, _) => anyhow::bail!("unexpected answer {code} from the put-unless script"),
        }
    }

    async fn set_many(&self, entries: &[(String, String)], ttl: Duration) -> anyhow::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut c = self.conn.clone();
        let mut pipe = redis::pipe();
        for (key, value) in entries {
            pipe.cmd("SET")
                .arg(self.key(key))
                .arg(value)
                .arg("PX")
                .arg(px(ttl))
                .ignore();
        }
        self.run(pipe.query_async::<()>(&mut c)).await
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
        // Both stores: moka (TinyLFU) and the records' store (quick_cache).
        for c in [
            MemoryCache::default(),
            MemoryCache::records_with_capacity_bytes(1024 * 1024),
        ] {
            assert!(c.set_nx("k", "a", Duration::from_millis(30)).await.unwrap());
            assert!(!c.set_nx("k", "b", Duration::from_millis(30)).await.unwrap());
            assert_eq!(c.get("k").await.unwrap().as_deref(), Some("a"));
            assert!(!c.del_if_eq("k", "b").await.unwrap());
            assert_eq!(c.get("k").await.unwrap().as_deref(), Some("a"));
            tokio::time::sleep(Duration::from_millis(40)).await;
            assert_eq!(c.get("k").await.unwrap(), None);
            // An expired entry is absent: set_nx takes the key, del_if_eq does not match it.
            assert!(c.set_nx("k", "b", Duration::from_secs(1)).await.unwrap());
            assert!(c.del_if_eq("k", "b").await.unwrap());
            assert_eq!(c.get("k").await.unwrap(), None);
            assert!(!c.del_if_eq("k", "b").await.unwrap());
            c.set("e", "old", Duration::from_millis(10)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(!c.del_if_eq("e", "old").await.unwrap());
            assert_eq!(c.incr("n", Duration::from_secs(1)).await.unwrap(), 1);
            assert_eq!(c.incr("n", Duration::from_secs(1)).await.unwrap(), 2);
            c.del("n").await.unwrap();
            assert_eq!(c.incr("n", Duration::from_secs(1)).await.unwrap(), 1);
        }
    }

    /// The de-duplication store at capacity: whatever came before, the newest records — the
    /// ones a retry a few seconds later asks for — are all kept.
    #[tokio::test]
    async fn the_records_store_keeps_the_newest_records_at_capacity() {
        let c = MemoryCache::records_with_capacity_bytes(1024 * 1024);
        let value = "x".repeat(400);
        for i in 0..20_000 {
            c.set(&format!("dedup:o:{i}"), &value, Duration::from_secs(600))
                .await
                .unwrap();
        }
        for i in 19_500..20_000 {
            assert!(
                c.get(&format!("dedup:o:{i}")).await.unwrap().is_some(),
                "record {i} of the newest 500 was evicted"
            );
        }
        assert!(c.len() * 600 <= 1024 * 1024, "{} held", c.len());
    }

    #[tokio::test]
    async fn memory_cache_stays_within_its_bound_however_many_keys_arrive() {
        let c = MemoryCache::with_capacity_bytes(1024 * 1024);
        let value = "x".repeat(400);
        for i in 0..50_000 {
            c.set(&format!("dedup:o{i}:{i}"), &value, Duration::from_secs(600))
                .await
                .unwrap();
        }
        // 50,000 × ~530 weighed bytes is ~26 MiB offered; at most 1 MiB is kept.
        let held = c.len();
        assert!(held > 0 && held * 500 <= 1024 * 1024, "{held} entries held");
        // Concurrent set_nx on one key: exactly one winner, in either store.
        for c in [
            MemoryCache::default(),
            MemoryCache::records_with_capacity_bytes(1024 * 1024),
        ] {
            let c = std::sync::Arc::new(c);
            let mut wins = 0;
            let tasks: Vec<_> = (0..64)
                .map(|i| {
                    let c = c.clone();
                    tokio::spawn(async move {
                        c.set_nx("lock", &i.to_string(), Duration::from_secs(5))
                            .await
                            .unwrap()
                    })
                })
                .collect();
            for t in tasks {
                wins += usize::from(t.await.unwrap());
            }
            assert_eq!(wins, 1);
        }
    }
}
