//! De-duplication of WeChat's retried deliveries.
//!
//! WeChat retries a message three times when it gets no answer within 5 s, and a retry may arrive
//! while the first delivery is still being handled. The first delivery claims the key; a retry
//! that finds the record finished gets the identical reply; a retry that finds it still running
//! waits for it (woken at once in-process, polling Redis across replicas). No second side effect.
//!
//! A claim is a [`Ticket`]: whatever way its holder ends (error, panic, cancellation) the claim is
//! released when the ticket is dropped without [`Dedup::complete`], and the "pending" record in
//! the cache has a short TTL of its own, so a crashed replica's claim does not outlive WeChat's
//! retries either.
//!
//! When the shared cache fails (Redis down or slow; every call is bounded in
//! [`crate::platform::cache::RedisCache`]) de-duplication carries on in this process: a warning,
//! the metric `dangjian_cache_fallbacks_total{component="dedup"}`, and an in-process record. The
//! answers of the last minute are mirrored in process too, so a retry that arrives just after
//! Redis went away still gets the first reply.
//!
//! With Redis, answers are written by one task of their own, many to a pipelined round trip
//! (`complete` hands the answer over and returns): the reply goes out without waiting for Redis,
//! and no task is started per message. A retry in this process finds the answer in the mirror at
//! once; on another replica it polls the pending record until the answer lands (a few
//! milliseconds). Should the write fail, the answer stays in process for the whole TTL, as if the
//! claim had been made during an outage. [`Dedup::flush`] writes what is queued (at shutdown).

use std::{
    collections::HashMap,
    hash::BuildHasher,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use tokio::{
    sync::{mpsc, oneshot, watch},
    time::Instant,
};

use crate::platform::{
    cache::{Cache, MemoryCache, PutOutcome, Unavailable},
    metrics::Metrics,
};

const PENDING: &str = "\u{0}pending:";
/// How long an answer stays in the in-process mirror (WeChat's retries come within ~15 s).
const MIRROR_TTL: Duration = Duration::from_secs(60);
/// The running map is split by key so that workers handling different messages at once do not
/// wait on one lock (each key's claim and answer still meet under its shard's lock).
const SHARDS: usize = 16;
/// Answers that may wait for the writer; when full, `complete` writes its answer itself.
const QUEUE: usize = 16_384;
/// The most answers one pipelined write carries.
const BATCH: usize = 256;

fn is_pending(v: &str) -> bool {
    v.starts_with(PENDING)
}

pub enum Claim {
    /// This is the first delivery: handle it, then `complete` (dropping the ticket abandons it).
    First(Ticket),
    /// Answered before: send this reply again.
    Answered(String),
    /// Still being handled elsewhere at the deadline: the first delivery will answer.
    StillRunning,
}

/// What [`Dedup::settle`] did.
pub enum Settled {
    /// The first delivery: its reply is the record now, and nothing is left to complete.
    Recorded,
    /// Answered before: send this reply again.
    Answered(String),
    /// Not settled in one step (the message is being handled, the guard key is set, or the cache
    /// failed): claimed the usual way instead.
    Claimed(Claim),
}

/// A value a claim read from the shared cache in the same round trip ([`Dedup::claim_reading`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ReadAlong {
    /// Not read with the claim (in-process cache, an outage, or the claim was not made with a
    /// read): read it the usual way.
    #[default]
    NotRead,
    /// What the cache held when the claim was made.
    Read(Option<String>),
}

/// How a signed (timestamp, nonce) pair was used before (plaintext mode, where no body is signed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceUse {
    /// Never seen: now bound to this body.
    First,
    /// Seen with this very body: a retry.
    SameBody,
    /// Seen with another body: a replay of the signed URL.
    OtherBody,
}

pub struct Dedup {
    inner: Arc<Inner>,
}

struct Inner {
    cache: Arc<dyn Cache>,
    /// `cache` is in this process (no Redis): nothing to mirror.
    in_process: bool,
    /// The in-process stand-in while the cache fails, and the mirror of recent answers.
    fallback: MemoryCache,
    ttl: Duration,
    pending_ttl: Duration,
    local: [Mutex<RunningMap>; SHARDS],
    shard_of: foldhash::fast::RandomState,
    next_id: AtomicU64,
    metrics: Arc<Metrics>,
    epoch: std::time::Instant,
    warned_at: AtomicU64,
    /// The answer writer's queue (Redis only), started with the first answer.
    writer: std::sync::OnceLock<mpsc::Sender<Queued>>,
}

/// What the answer writer is given.
enum Queued {
    /// Write this answer (`cache_key`, reply) with the answer TTL.
    Answer(String, String),
    /// Say when everything queued before this has been written.
    Flush(oneshot::Sender<()>),
}

/// Keyed by message (openid and MsgId, signed by WeChat); foldhash, seeded per process.
type RunningMap = HashMap<String, Running, foldhash::fast::RandomState>;

struct Running {
    id: u64,
    rx: watch::Receiver<Option<String>>,
}

/// The right to handle one message. Complete it with [`Dedup::complete`]; dropped without that
/// (an error, a panic, a cancelled task), the claim is released and a retry may handle the message.
pub struct Ticket {
    inner: Arc<Inner>,
    /// The record's cache key ([`cache_key`]); the message's key is its tail ([`Ticket::key`]).
    ck: String,
    id: u64,
    on_fallback: bool,
    tx: Option<watch::Sender<Option<String>>>,
    done: bool,
    read_along: ReadAlong,
}

impl Ticket {
    /// What the claim read along with it (see [`Dedup::claim_reading`]), taken once.
    pub fn take_read_along(&mut self) -> ReadAlong {
        std::mem::take(&mut self.read_along)
    }

    fn key(&self) -> &str {
        key_of(&self.ck)
    }

    fn pending_value(&self) -> String {
        format!("{PENDING}{}", self.id)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // In-process waiters first: they are woken with "closed" when `tx` drops right after.
        self.inner.forget_running(self.key(), self.id);
        if self.inner.in_process {
            return; // the running map was the whole claim
        }
        let inner = self.inner.clone();
        let ck = std::mem::take(&mut self.ck);
        let value = self.pending_value();
        let on_fallback = self.on_fallback;
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { inner.release(&ck, &value, on_fallback).await });
        }
        // Outside a runtime the pending record's short TTL releases it.
    }
}

/// The answer writer: whatever has queued up since the last write goes in one pipelined round
/// trip. Ends when the [`Dedup`] is gone.
async fn write_answers(inner: std::sync::Weak<Inner>, mut rx: mpsc::Receiver<Queued>) {
    let mut queued = Vec::with_capacity(BATCH);
    let mut answers = Vec::with_capacity(BATCH);
    let mut flushed = Vec::new();
    while rx.recv_many(&mut queued, BATCH).await > 0 {
        let Some(inner) = inner.upgrade() else { return };
        for q in queued.drain(..) {
            match q {
                Queued::Answer(ck, reply) => answers.push((ck, reply)),
                Queued::Flush(done) => flushed.push(done),
            }
        }
        inner.store_answers(&answers).await;
        answers.clear();
        for done in flushed.drain(..) {
            let _ = done.send(());
        }
    }
}

const CACHE_PREFIX: &str = "dedup:";

fn cache_key(key: &str) -> String {
    let mut ck = String::with_capacity(CACHE_PREFIX.len() + key.len());
    ck.push_str(CACHE_PREFIX);
    ck.push_str(key);
    ck
}

/// The message's key inside its record's [`cache_key`].
fn key_of(ck: &str) -> &str {
    &ck[CACHE_PREFIX.len()..]
}

impl Inner {
    /// The running-map shard that holds `key`, locked.
    fn running(&self, key: &str) -> std::sync::MutexGuard<'_, RunningMap> {
        let shard = &self.local[self.shard_of.hash_one(key) as usize % SHARDS];
        shard.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn forget_running(&self, key: &str, id: u64) {
        let mut local = self.running(key);
        if local.get(key).is_some_and(|r| r.id == id) {
            local.remove(key);
        }
    }

    fn degraded(&self, what: &str, e: &anyhow::Error) {
        self.metrics.cache_fallback("dedup");
        // One warning per 10 s, not one per message under load.
        let now = self.epoch.elapsed().as_secs() + 10;
        let last = self.warned_at.load(Ordering::Relaxed);
        if now >= last + 10
            && self
                .warned_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(error = %e, what, "de-duplication cache unavailable; de-duplicating in this process");
        } else {
            tracing::debug!(error = %e, what, "de-duplicating in this process");
        }
    }

    /// Hand an answer to the writer; gives it back when the queue is full or there is no runtime
    /// to run the writer in.
    fn enqueue(self: &Arc<Self>, ck: String, reply: &str) -> Result<(), String> {
        let tx = match self.writer.get() {
            Some(tx) => tx,
            None => {
                let Ok(rt) = tokio::runtime::Handle::try_current() else {
                    return Err(ck);
                };
                self.writer.get_or_init(|| {
                    let (tx, rx) = mpsc::channel(QUEUE);
                    rt.spawn(write_answers(Arc::downgrade(self), rx));
                    tx
                })
            }
        };
        tx.try_send(Queued::Answer(ck, reply.to_owned()))
            .map_err(|e| match e.into_inner() {
                Queued::Answer(ck, _) => ck,
                Queued::Flush(_) => unreachable!("an answer was sent"),
            })
    }

    /// Write `(cache key, reply)` answers to the shared cache in one round trip; when it fails
    /// they are kept in process for the whole TTL, as claims made during an outage are.
    async fn store_answers(&self, answers: &[(String, String)]) {
        if let Err(e) = self.cache.set_many(answers, self.ttl).await {
            self.degraded("complete", &e);
            for (ck, reply) in answers {
                let _ = self.fallback.set(ck, reply, self.ttl).await;
            }
        }
    }

    async fn release(&self, ck: &str, pending: &str, on_fallback: bool) {
        let _ = self.fallback.del_if_eq(ck, pending).await;
        if !on_fallback {
            if let Err(e) = self.cache.del_if_eq(ck, pending).await {
                // The pending record expires by itself after `dedup_pending_ttl_secs`.
                tracing::warn!(error = %e, "could not release a de-duplication claim");
            }
        }
    }
}

impl Dedup {
    /// `cache`: where the records live (Redis, shared by the replicas; without Redis an
    /// in-process store of their own, see `startup`); `ttl`: how long an answer is kept for
    /// retries; `pending_ttl`: how long an unfinished claim holds when its holder vanished without
    /// releasing it (crash); `local_bytes`: the bound of what is kept in this process while Redis
    /// fails and of the last minute's answers mirrored from Redis (the oldest unread go first, so
    /// the newest are kept). An in-process `cache` cannot fail, so nothing is mirrored from it.
    pub fn new(
        cache: Arc<dyn Cache>,
        ttl: Duration,
        pending_ttl: Duration,
        local_bytes: u64,
        metrics: Arc<Metrics>,
    ) -> Dedup {
        let fallback = MemoryCache::records_with_capacity_bytes(local_bytes);
        let in_process = cache.as_memory().is_some();
        Dedup {
            inner: Arc::new(Inner {
                cache,
                in_process,
                fallback,
                ttl,
                pending_ttl,
                local: std::array::from_fn(|_| Mutex::new(RunningMap::default())),
                shard_of: foldhash::fast::RandomState::default(),
                next_id: AtomicU64::new(1),
                metrics,
                epoch: std::time::Instant::now(),
                warned_at: AtomicU64::new(0),
                writer: std::sync::OnceLock::new(),
            }),
        }
    }

    /// `ck`: the record's [`cache_key`].
    fn ticket(&self, ck: String, id: u64, on_fallback: bool) -> Ticket {
        let mut local = self.inner.running(key_of(&ck));
        self.ticket_locked(&mut local, ck, id, on_fallback)
    }

    fn ticket_locked(
        &self,
        local: &mut RunningMap,
        ck: String,
        id: u64,
        on_fallback: bool,
    ) -> Ticket {
        let (tx, rx) = watch::channel(None);
        local.insert(key_of(&ck).to_owned(), Running { id, rx });
        Ticket {
            inner: self.inner.clone(),
            ck,
            id,
            on_fallback,
            tx: Some(tx),
            done: false,
            read_along: ReadAlong::NotRead,
        }
    }

    /// Claim `key`, waiting for a running first delivery until `deadline` (measured by the caller
    /// from the request's arrival, so a retry that waited gets no fresh budget). Never fails: when
    /// the cache does, the claim is made in process.
    pub async fn claim(&self, key: &str, deadline: Instant) -> Claim {
        self.claim_reading(key, None, deadline).await
    }

    /// [`Dedup::claim`], reading the cache key `read_along` in the same round trip when the
    /// cache is shared (Redis): a first delivery's ticket carries the value
    /// ([`Ticket::take_read_along`]), which saves the handler a round trip of its own before
    /// the reply.
    pub async fn claim_reading(
        &self,
        key: &str,
        read_along: Option<&str>,
        deadline: Instant,
    ) -> Claim {
        let inner = &self.inner;
        let ck = cache_key(key);
        loop {
            // Fast path: the first delivery is running in this process.
            let running = {
                let mut local = inner.running(key);
                match (local.get(key), inner.cache.as_memory()) {
                    (Some(r), _) => Some(r.rx.clone()),
                    // Without Redis this process is the only claimant: the running map is the
                    // claim and the store holds the answers, both read under the key's shard lock
                    // (so no "pending" record is written, and none needs releasing).
                    (None, Some(store)) => {
                        if let Some(v) = store.get_now(&ck) {
                            return Claim::Answered(v);
                        }
                        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
                        return Claim::First(self.ticket_locked(&mut local, ck, id, false));
                    }
                    (None, None) => None,
                }
            };
            if let Some(mut rx) = running {
                match tokio::time::timeout_at(deadline, rx.wait_for(Option::is_some)).await {
                    Ok(Ok(v)) => return Claim::Answered(v.clone().unwrap_or_default()),
                    Ok(Err(_)) => {
                        // Abandoned: the ticket removed itself; try to claim again.
                        if Instant::now() >= deadline {
                            return Claim::StillRunning;
                        }
                        continue;
                    }
                    Err(_) => return Claim::StillRunning,
                }
            }
            let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
            let pending = format!("{PENDING}{id}");
            // Answers (and outage-time claims) kept in process come first.
            match inner.fallback.get(&ck).await.ok().flatten() {
                Some(v) if !is_pending(&v) => return Claim::Answered(v),
                Some(_) => {
                    // Claimed in process during an outage by a task that has not finished: wait.
                    if Instant::now() >= deadline {
                        return Claim::StillRunning;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                None => {}
            }
            let claimed = match read_along {
                Some(other) => inner
                    .cache
                    .set_nx_and_get(&ck, &pending, inner.pending_ttl, other)
                    .await
                    .map(|(created, v)| created.then_some(ReadAlong::Read(v))),
                None => inner
                    .cache
                    .set_nx(&ck, &pending, inner.pending_ttl)
                    .await
                    .map(|created| created.then_some(ReadAlong::NotRead)),
            };
            match claimed {
                Ok(Some(along)) => {
                    let mut ticket = self.ticket(ck, id, false);
                    ticket.read_along = along;
                    return Claim::First(ticket);
                }
                Ok(None) => {}
                Err(e) => {
                    inner.degraded("claim", &e);
                    if inner
                        .fallback
                        .set_nx(&ck, &pending, inner.pending_ttl)
                        .await
                        .unwrap_or(false)
                    {
                        return Claim::First(self.ticket(ck, id, true));
                    }
                    continue;
                }
            }
            // Claimed by another replica (or an earlier run of this one): poll for its answer.
            loop {
                match inner.cache.get(&ck).await {
                    Ok(Some(v)) if !is_pending(&v) => return Claim::Answered(v),
                    Ok(Some(_)) => {}
                    Ok(None) => break, // released: try to claim again
                    Err(e) => {
                        inner.degraded("poll", &e);
                        break; // claim in process
                    }
                }
                if Instant::now() >= deadline {
                    return Claim::StillRunning;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// Claim `key` and record `reply` as its answer in one step: for a message whose reply has
    /// no side effect and is known before the claim (a keyword answer). A retry finds the answer
    /// at once, so there is nothing running to wait for and nothing to complete. With Redis it
    /// is one script, the only Redis command of such a message.
    ///
    /// `unless`: a key of the shared cache that, when set, means the message is not settled
    /// this way (the sender's open chat draft, which makes a text a step of it); the claim is
    /// then made as [`Dedup::claim_reading`] makes it, reading the key along. Without Redis the
    /// records live in a store of their own, so the caller looks at its key itself and passes
    /// `None`.
    pub async fn settle(
        &self,
        key: &str,
        reply: &str,
        unless: Option<&str>,
        deadline: Instant,
    ) -> Settled {
        let inner = &self.inner;
        let ck = cache_key(key);
        if let Some(store) = inner.cache.as_memory() {
            debug_assert!(unless.is_none(), "in process the caller reads the guard");
            {
                // Under the key's shard lock, as every in-process claim is.
                let local = inner.running(key);
                if !local.contains_key(key) {
                    return match store.put_if_absent_now(&ck, reply, inner.ttl) {
                        None => Settled::Recorded,
                        Some(v) => Settled::Answered(v),
                    };
                }
            }
            // Handled the usual way in this process right now: wait for its answer.
            return Settled::Claimed(self.claim(key, deadline).await);
        }
        // Answers (and outage-time claims) kept in process come first.
        let held = match inner.fallback.get(&ck).await.ok().flatten() {
            Some(v) => Some(v),
            None => match inner.cache.put_unless(&ck, reply, inner.ttl, unless).await {
                Ok(PutOutcome::Put) => {
                    // Mirrored, so that a retry just after Redis went away still gets it.
                    let _ = inner
                        .fallback
                        .set(&ck, reply, inner.ttl.min(MIRROR_TTL))
                        .await;
                    return Settled::Recorded;
                }
                Ok(PutOutcome::Held(v)) => Some(v),
                Ok(PutOutcome::Guarded) => None,
                Err(e) => {
                    // An outage is counted by the claim, which falls back to this process;
                    // anything else (a refused script) is a fallback of its own.
                    if e.downcast_ref::<Unavailable>().is_none() {
                        inner.degraded("settle", &e);
                    }
                    None
                }
            },
        };
        match held {
            Some(v) if !is_pending(&v) => Settled::Answered(v),
            // Guarded, being handled the usual way (here or on another replica), or the cache
            // failed.
            _ => Settled::Claimed(self.claim_reading(key, unless, deadline).await),
        }
    }

    /// Record the reply that was (or will be) given to the first delivery. With Redis the
    /// answer is mirrored here at once and written to Redis by the answer writer.
    pub async fn complete(&self, mut ticket: Ticket, reply: &str) {
        let inner = &self.inner;
        let ck = &ticket.ck;
        if inner.in_process {
            let _ = inner.cache.set(ck, reply, inner.ttl).await;
        } else if ticket.on_fallback {
            let _ = inner.fallback.set(ck, reply, inner.ttl).await;
        } else {
            let _ = inner
                .fallback
                .set(ck, reply, inner.ttl.min(MIRROR_TTL))
                .await;
            if let Err(ck) = inner.enqueue(ck.clone(), reply) {
                // Queue full (or no runtime): this answer is written here, on its own.
                inner.store_answers(&[(ck, reply.to_owned())]).await;
            }
        }
        inner.forget_running(ticket.key(), ticket.id);
        if let Some(tx) = ticket.tx.take() {
            // Retries waiting in this process cloned their receiver from the running map, which
            // no longer holds one: with none waiting (nearly always), there is no one to copy
            // the reply for.
            if tx.receiver_count() > 0 {
                let _ = tx.send(Some(reply.to_owned()));
            }
        }
        ticket.done = true;
    }

    /// Wait until the answers handed to the writer so far are written (or kept in process).
    pub async fn flush(&self) {
        let Some(tx) = self.inner.writer.get() else {
            return;
        };
        let (done, written) = oneshot::channel();
        if tx.send(Queued::Flush(done)).await.is_ok() {
            let _ = written.await;
        }
    }

    /// The first delivery failed before doing anything: let a retry try again. (Dropping the
    /// ticket does the same, in the background.)
    pub async fn abandon(&self, mut ticket: Ticket) {
        ticket.done = true;
        self.inner.forget_running(ticket.key(), ticket.id);
        drop(ticket.tx.take()); // wakes local waiters with "closed"
        if self.inner.in_process {
            return;
        }
        self.inner
            .release(&ticket.ck, &ticket.pending_value(), ticket.on_fallback)
            .await;
    }

    /// Plaintext mode: bind a signed (timestamp, nonce) pair to the hash of the one body it may
    /// carry, for `ttl` (the timestamp window). Like claims, kept in process when the cache fails.
    pub async fn bind_nonce(&self, pair: &str, body_hash: &str, ttl: Duration) -> NonceUse {
        let inner = &self.inner;
        let ck = format!("nonce:{pair}");
        if let Some(v) = inner.fallback.get(&ck).await.ok().flatten() {
            return if v == body_hash {
                NonceUse::SameBody
            } else {
                NonceUse::OtherBody
            };
        }
        let seen = match inner.cache.set_nx(&ck, body_hash, ttl).await {
            Ok(true) => return NonceUse::First,
            Ok(false) => inner.cache.get(&ck).await,
            Err(e) => Err(e),
        };
        match seen {
            Ok(Some(v)) if v == body_hash => NonceUse::SameBody,
            Ok(Some(_)) => NonceUse::OtherBody,
            // Expired between the two calls: the window is over for it anyway.
            Ok(None) => NonceUse::First,
            Err(e) => {
                inner.degraded("nonce", &e);
                match inner.fallback.set_nx(&ck, body_hash, ttl).await {
                    Ok(true) | Err(_) => NonceUse::First,
                    Ok(false) => match inner.fallback.get(&ck).await.ok().flatten() {
                        Some(v) if v != body_hash => NonceUse::OtherBody,
                        _ => NonceUse::SameBody,
                    },
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::cache::MemoryCache;

    fn dedup_on(cache: Arc<dyn Cache>) -> Arc<Dedup> {
        Arc::new(Dedup::new(
            cache,
            Duration::from_secs(60),
            Duration::from_secs(30),
            crate::platform::cache::DEFAULT_MEMORY_CACHE_BYTES,
            Arc::new(Metrics::default()),
        ))
    }

    fn dedup() -> Arc<Dedup> {
        dedup_on(Arc::new(MemoryCache::default()))
    }

    fn within(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    /// The caches a claim can live in: in-process always, Redis too when the CI variable is set.
    async fn caches() -> Vec<Arc<dyn Cache>> {
        let mut v: Vec<Arc<dyn Cache>> = vec![Arc::new(MemoryCache::default())];
        if let Ok(url) = std::env::var("DANGJIAN_TEST_REDIS_URL") {
            let prefix = format!("dj_unit:{}:", rand::random::<u64>());
            let redis = crate::platform::cache::RedisCache::connect(
                &url,
                &prefix,
                Duration::from_millis(500),
            )
            .await
            .expect("DANGJIAN_TEST_REDIS_URL reachable");
            v.push(Arc::new(redis));
        }
        v
    }

    #[tokio::test]
    async fn retry_while_running_waits_for_the_first_reply() {
        let d = dedup();
        let Claim::First(ticket) = d.claim("u:1", within(1000)).await else {
            panic!("first claim must be First")
        };
        let d2 = d.clone();
        let waiter = tokio::spawn(async move { d2.claim("u:1", within(2000)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        d.complete(ticket, "<xml>reply</xml>").await;
        match waiter.await.unwrap() {
            Claim::Answered(r) => assert_eq!(r, "<xml>reply</xml>"),
            _ => panic!("retry must get the first reply"),
        }
        match d.claim("u:1", within(1000)).await {
            Claim::Answered(r) => assert_eq!(r, "<xml>reply</xml>"),
            _ => panic!("later retry must get the first reply"),
        }
    }

    #[tokio::test]
    async fn a_claim_reads_along_in_one_round_trip_on_a_shared_cache_only() {
        for cache in caches().await {
            let shared = cache.as_memory().is_none();
            cache
                .set("chat_draft:o1", "1", Duration::from_secs(60))
                .await
                .unwrap();
            let d = dedup_on(cache.clone());
            for (key, along, want) in [
                ("o1:1", "chat_draft:o1", Some("1")),
                ("o1:2", "chat_draft:nobody", None),
            ] {
                let Claim::First(mut t) = d.claim_reading(key, Some(along), within(1000)).await
                else {
                    panic!("a new key is a first delivery ({})", cache.kind())
                };
                let expected = if shared {
                    ReadAlong::Read(want.map(str::to_owned))
                } else {
                    ReadAlong::NotRead // nothing to save in process: the handler reads it
                };
                assert_eq!(t.take_read_along(), expected, "{}", cache.kind());
                assert_eq!(t.take_read_along(), ReadAlong::NotRead, "taken once");
                d.complete(t, "<xml>r</xml>").await;
            }
            // A retry is answered as before, whatever it reads along.
            match d
                .claim_reading("o1:1", Some("chat_draft:o1"), within(1000))
                .await
            {
                Claim::Answered(r) => assert_eq!(r, "<xml>r</xml>", "{}", cache.kind()),
                _ => panic!("a retry gets the first reply ({})", cache.kind()),
            }
        }
    }

    /// A reply known before the claim is recorded in one step: the first delivery settles it,
    /// every retry (here, on another replica, or through the usual claim) gets it again.
    #[tokio::test]
    async fn a_settled_reply_is_the_answer_for_every_retry() {
        for cache in caches().await {
            let kind = cache.kind();
            let (d, other) = (dedup_on(cache.clone()), dedup_on(cache.clone()));
            let first = d.settle("s:1", "<xml>one</xml>", None, within(1000)).await;
            assert!(matches!(first, Settled::Recorded), "{kind}: first delivery");
            assert_eq!(
                cache.get(&cache_key("s:1")).await.unwrap().as_deref(),
                Some("<xml>one</xml>"),
                "{kind}: recorded, not pending"
            );
            // A retry computes its own reply (a later CreateTime): the first one is sent.
            match d.settle("s:1", "<xml>two</xml>", None, within(1000)).await {
                Settled::Answered(r) => assert_eq!(r, "<xml>one</xml>", "{kind}"),
                _ => panic!("{kind}: a retry gets the first reply"),
            }
            match d.claim("s:1", within(1000)).await {
                Claim::Answered(r) => assert_eq!(r, "<xml>one</xml>", "{kind}"),
                _ => panic!("{kind}: a claim finds the settled reply"),
            }
            if kind == "redis" {
                match other
                    .settle("s:1", "<xml>two</xml>", None, within(1000))
                    .await
                {
                    Settled::Answered(r) => assert_eq!(r, "<xml>one</xml>"),
                    _ => panic!("another replica gets the first reply"),
                }
            }
        }
    }

    /// A message being handled the usual way is waited for, not settled over; a message whose
    /// guard key is set is claimed the usual way, reading the guard along.
    #[tokio::test]
    async fn settling_gives_way_to_a_running_claim_and_to_the_guard() {
        for cache in caches().await {
            let kind = cache.kind();
            let d = dedup_on(cache.clone());
            let Claim::First(t) = d.claim("r:1", within(1000)).await else {
                panic!("{kind}: first claim")
            };
            let d2 = d.clone();
            let retry =
                tokio::spawn(
                    async move { d2.settle("r:1", "<xml>x</xml>", None, within(3000)).await },
                );
            tokio::time::sleep(Duration::from_millis(30)).await;
            d.complete(t, "<xml>handled</xml>").await;
            match retry.await.unwrap() {
                Settled::Claimed(Claim::Answered(r)) => assert_eq!(r, "<xml>handled</xml>"),
                _ => panic!("{kind}: the retry waits for the running delivery's reply"),
            }
            if kind != "redis" {
                continue; // in process the caller reads the guard (see `settle`)
            }
            cache
                .set("chat_draft:g", "1", Duration::from_secs(60))
                .await
                .unwrap();
            match d
                .settle(
                    "g:1",
                    "<xml>keyword</xml>",
                    Some("chat_draft:g"),
                    within(1000),
                )
                .await
            {
                Settled::Claimed(Claim::First(mut t)) => {
                    assert_eq!(t.take_read_along(), ReadAlong::Read(Some("1".into())));
                    d.complete(t, "<xml>draft step</xml>").await;
                }
                _ => panic!("a guarded message is claimed the usual way"),
            }
            d.flush().await;
            assert_eq!(
                cache.get(&cache_key("g:1")).await.unwrap().as_deref(),
                Some("<xml>draft step</xml>")
            );
            let unguarded = d
                .settle(
                    "g:2",
                    "<xml>keyword</xml>",
                    Some("chat_draft:nobody"),
                    within(1000),
                )
                .await;
            assert!(matches!(unguarded, Settled::Recorded));
        }
    }

    #[tokio::test]
    async fn put_unless_puts_once_and_honours_its_guard() {
        let mut all = caches().await;
        all.push(Arc::new(MemoryCache::records_with_capacity_bytes(1 << 20)));
        for cache in all {
            let kind = cache.kind();
            let ttl = Duration::from_secs(60);
            let put = |k: &'static str, v: &'static str, g: Option<&'static str>| {
                let cache = cache.clone();
                async move { cache.put_unless(k, v, ttl, g).await.unwrap() }
            };
            assert_eq!(put("p", "a", None).await, PutOutcome::Put, "{kind}");
            assert_eq!(
                put("p", "b", None).await,
                PutOutcome::Held("a".into()),
                "{kind}"
            );
            assert_eq!(
                cache.get("p").await.unwrap().as_deref(),
                Some("a"),
                "{kind}"
            );
            cache.set("guard", "1", ttl).await.unwrap();
            assert_eq!(
                put("q", "a", Some("guard")).await,
                PutOutcome::Guarded,
                "{kind}"
            );
            assert_eq!(
                cache.get("q").await.unwrap(),
                None,
                "{kind}: nothing written"
            );
            assert_eq!(
                put("q", "a", Some("no-guard")).await,
                PutOutcome::Put,
                "{kind}"
            );
            // The TTL is the one given.
            assert_eq!(
                cache
                    .put_unless("t", "a", Duration::from_millis(30), None)
                    .await
                    .unwrap(),
                PutOutcome::Put
            );
            tokio::time::sleep(Duration::from_millis(60)).await;
            assert_eq!(
                put("t", "b", None).await,
                PutOutcome::Put,
                "{kind}: expired"
            );
        }
    }

    #[tokio::test]
    async fn abandoned_claim_can_be_taken_again() {
        let d = dedup();
        let Claim::First(t) = d.claim("k", within(10)).await else {
            panic!()
        };
        d.abandon(t).await;
        assert!(matches!(d.claim("k", within(10)).await, Claim::First(_)));
    }

    #[tokio::test]
    async fn still_running_after_the_wait() {
        let d = dedup();
        let Claim::First(_t) = d.claim("k", within(10)).await else {
            panic!()
        };
        assert!(matches!(
            d.claim("k", within(30)).await,
            Claim::StillRunning
        ));
    }

    /// Issue 13, item 3: a handler that panics must not leave its claim behind, in process or in
    /// Redis: a waiting retry and a later one may handle the message, long before any deadline.
    #[tokio::test]
    async fn a_panicking_handler_leaves_no_claim_behind() {
        for cache in caches().await {
            let kind = cache.kind();
            let d = dedup_on(cache.clone());
            let Claim::First(ticket) = d.claim("o:panic", within(1000)).await else {
                panic!("{kind}: first claim")
            };
            // A retry is already waiting in this process when the handler dies.
            let d2 = d.clone();
            let waiter = tokio::spawn(async move { d2.claim("o:panic", within(5000)).await });
            tokio::time::sleep(Duration::from_millis(20)).await;
            let handler = tokio::spawn(async move {
                let _held = ticket;
                panic!("handler bug");
            });
            assert!(handler.await.unwrap_err().is_panic());
            let started = Instant::now();
            let retried = waiter.await.unwrap();
            assert!(
                matches!(retried, Claim::First(_)),
                "{kind}: the waiting retry takes the released claim"
            );
            assert!(started.elapsed() < Duration::from_secs(4), "{kind}");
            drop(retried);
            // The shared record is released too (another replica could claim it).
            let mut released = false;
            for _ in 0..100 {
                if cache.get("dedup:o:panic").await.unwrap().is_none() {
                    released = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert!(released, "{kind}: pending record removed");
        }
    }

    /// Issue 13, item 3: the pending record has the short TTL, not the answer's.
    #[tokio::test]
    async fn a_crashed_claim_expires_after_the_pending_ttl() {
        let cache: Arc<dyn Cache> = Arc::new(MemoryCache::default());
        let d = Dedup::new(
            cache.clone(),
            Duration::from_secs(600),
            Duration::from_millis(50),
            crate::platform::cache::DEFAULT_MEMORY_CACHE_BYTES,
            Arc::new(Metrics::default()),
        );
        let Claim::First(t) = d.claim("k", within(10)).await else {
            panic!()
        };
        // A crash: neither completed nor dropped in this process.
        std::mem::forget(t);
        let other = Dedup::new(
            cache,
            Duration::from_secs(600),
            Duration::from_millis(50),
            crate::platform::cache::DEFAULT_MEMORY_CACHE_BYTES,
            Arc::new(Metrics::default()),
        );
        assert!(matches!(
            other.claim("k", within(2000)).await,
            Claim::First(_)
        ));
    }

    #[tokio::test]
    async fn a_nonce_carries_one_body_only() {
        let d = dedup();
        let ttl = Duration::from_secs(600);
        assert_eq!(d.bind_nonce("1:n", "aaa", ttl).await, NonceUse::First);
        assert_eq!(d.bind_nonce("1:n", "aaa", ttl).await, NonceUse::SameBody);
        assert_eq!(d.bind_nonce("1:n", "bbb", ttl).await, NonceUse::OtherBody);
        assert_eq!(d.bind_nonce("2:n", "bbb", ttl).await, NonceUse::First);
    }

    /// Answers go to the shared cache through the writer, many to a round trip: after
    /// `flush` every one is in Redis, and another replica on the same Redis replays each.
    #[tokio::test]
    async fn answers_reach_the_shared_cache_through_the_writer_for_the_other_replicas() {
        let Some(cache) = caches().await.into_iter().find(|c| c.kind() == "redis") else {
            // The memory cache has no writer; CI sets DANGJIAN_TEST_REDIS_URL.
            assert!(
                std::env::var("DANGJIAN_CI_REQUIRE_BACKENDS").is_err(),
                "Redis required"
            );
            return;
        };
        let (d, other) = (dedup_on(cache.clone()), dedup_on(cache.clone()));
        // More than one batch, all handed over before the writer runs.
        let n = BATCH + 44;
        let mut tickets = Vec::new();
        for i in 0..n {
            let Claim::First(t) = d.claim(&format!("w:{i}"), within(1000)).await else {
                panic!("first claim")
            };
            tickets.push(t);
        }
        for (i, t) in tickets.into_iter().enumerate() {
            d.complete(t, &format!("<xml>{i}</xml>")).await;
        }
        d.flush().await;
        for i in 0..n {
            let key = format!("w:{i}");
            assert_eq!(
                cache.get(&cache_key(&key)).await.unwrap(),
                Some(format!("<xml>{i}</xml>")),
                "{key} written"
            );
            match other.claim(&key, within(10)).await {
                Claim::Answered(r) => assert_eq!(r, format!("<xml>{i}</xml>")),
                _ => panic!("{key}: the other replica replays the answer"),
            }
        }
    }

    /// A shared cache that takes claims but fails every write of an answer (Redis going away
    /// between the claim and the answer).
    struct AnswersFail(MemoryCache);

    #[async_trait::async_trait]
    impl Cache for AnswersFail {
        async fn get(&self, key: &str) -> anyhow::Result<Option<String>> {
            self.0.get(key).await
        }
        async fn set(&self, _: &str, _: &str, _: Duration) -> anyhow::Result<()> {
            Err(crate::platform::cache::Unavailable("cut".into()).into())
        }
        async fn set_many(&self, _: &[(String, String)], _: Duration) -> anyhow::Result<()> {
            Err(crate::platform::cache::Unavailable("cut".into()).into())
        }
        async fn set_nx(&self, key: &str, value: &str, ttl: Duration) -> anyhow::Result<bool> {
            self.0.set_nx(key, value, ttl).await
        }
        /// Writes an answer: fails like the others.
        async fn put_unless(
            &self,
            _: &str,
            _: &str,
            _: Duration,
            _: Option<&str>,
        ) -> anyhow::Result<PutOutcome> {
            Err(crate::platform::cache::Unavailable("cut".into()).into())
        }
        async fn del(&self, key: &str) -> anyhow::Result<()> {
            self.0.del(key).await
        }
        async fn del_if_eq(&self, key: &str, value: &str) -> anyhow::Result<bool> {
            self.0.del_if_eq(key, value).await
        }
        async fn incr(&self, key: &str, ttl: Duration) -> anyhow::Result<i64> {
            self.0.incr(key, ttl).await
        }
        async fn ping(&self) -> anyhow::Result<()> {
            Ok(())
        }
        fn kind(&self) -> &'static str {
            "answers-fail"
        }
    }

    /// A settle the shared cache cannot take (Redis going away) is claimed the usual way, and
    /// its answer still reaches a retry.
    #[tokio::test]
    async fn a_settle_the_cache_refuses_is_claimed_the_usual_way() {
        let d = dedup_on(Arc::new(AnswersFail(MemoryCache::default())));
        let Settled::Claimed(Claim::First(t)) =
            d.settle("f:2", "<xml>kw</xml>", None, within(1000)).await
        else {
            panic!("claimed the usual way")
        };
        d.complete(t, "<xml>kw</xml>").await;
        d.flush().await;
        match d
            .settle("f:2", "<xml>later</xml>", None, within(1000))
            .await
        {
            Settled::Answered(r) => assert_eq!(r, "<xml>kw</xml>"),
            _ => panic!("the retry gets the first answer"),
        }
    }

    #[tokio::test]
    async fn an_answer_the_writer_could_not_write_stays_in_process_for_its_ttl() {
        let metrics = Arc::new(Metrics::default());
        let d = Dedup::new(
            Arc::new(AnswersFail(MemoryCache::default())),
            Duration::from_secs(600),
            Duration::from_secs(30),
            crate::platform::cache::DEFAULT_MEMORY_CACHE_BYTES,
            metrics.clone(),
        );
        let Claim::First(t) = d.claim("f:1", within(1000)).await else {
            panic!("first claim")
        };
        d.complete(t, "<xml>once</xml>").await;
        d.flush().await;
        let text = metrics.render();
        assert!(
            text.contains("dangjian_cache_fallbacks_total{component=\"dedup\"} 1"),
            "{text}"
        );
        // Kept for the answer's TTL, not the mirror's minute.
        let ttl = d
            .inner
            .fallback
            .remaining_ttl(&cache_key("f:1"))
            .expect("kept in process");
        assert!(ttl > MIRROR_TTL, "{ttl:?}");
        match d.claim("f:1", within(10)).await {
            Claim::Answered(r) => assert_eq!(r, "<xml>once</xml>"),
            _ => panic!("the retry gets the first answer"),
        }
    }
}
