//! Where the access token (获取 Access token / 获取稳定版接口调用凭据) lives between calls, and the
//! lock that lets exactly one process refresh it.
//!
//! The [`Client`](crate::client::Client) keys the store by its AppId. An implementation for several
//! replicas (Redis in the app) needs: `load`/`save` of the token with its expiry, a lock with expiry
//! (`SET key id NX PX ttl`), an unlock that deletes only our own lock, and a compare-and-delete of
//! the token (both a small Lua script on Redis).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// An access token and the unix time (seconds) at which WeChat stops accepting it.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken {
    pub token: String,
    /// Unix seconds.
    pub expires_at: i64,
}

impl std::fmt::Debug for AccessToken {
    // The token is a credential: never let a `{:?}` put it into a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl AccessToken {
    /// Seconds of validity left at unix time `now`.
    pub fn remaining(&self, now: i64) -> i64 {
        self.expires_at - now
    }
}

/// Shared storage of the access token, with a cross-process refresh lock.
#[async_trait::async_trait]
pub trait TokenStore: Send + Sync + 'static {
    /// The stored token for `key`, if any (expired tokens may be returned; the client checks).
    async fn load(&self, key: &str) -> crate::Result<Option<AccessToken>>;
    /// Store `token` for `key`, replacing any other.
    async fn save(&self, key: &str, token: &AccessToken) -> crate::Result<()>;
    /// Take the cross-process refresh lock for `ttl`; Some(lock_id) when acquired.
    async fn try_lock(&self, key: &str, ttl: Duration) -> crate::Result<Option<String>>;
    /// Release the lock if it is still held with `lock_id` (an expired lock taken over by another
    /// process is left alone).
    async fn unlock(&self, key: &str, lock_id: &str) -> crate::Result<()>;
    /// Delete the stored token only if it is still `token` (compare-and-delete).
    async fn invalidate(&self, key: &str, token: &str) -> crate::Result<()>;
}

/// A [`TokenStore`] in process memory: correct for one process (or several `Client`s in one
/// process, which is how the tests simulate replicas).
#[derive(Debug, Default)]
pub struct MemoryTokenStore {
    inner: Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    tokens: HashMap<String, AccessToken>,
    locks: HashMap<String, (String, Instant)>,
}

impl MemoryTokenStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut MemoryInner) -> R) -> R {
        // A panic while holding this lock cannot leave the maps half-updated, so poisoning is moot.
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }
}

/// A random lock id, so that only the holder can release its lock.
pub(crate) fn random_id() -> String {
    use rand::Rng;
    let bytes: [u8; 16] = rand::thread_rng().gen();
    hex::encode(bytes)
}

#[async_trait::async_trait]
impl TokenStore for MemoryTokenStore {
    async fn load(&self, key: &str) -> crate::Result<Option<AccessToken>> {
        Ok(self.with(|m| m.tokens.get(key).cloned()))
    }

    async fn save(&self, key: &str, token: &AccessToken) -> crate::Result<()> {
        self.with(|m| m.tokens.insert(key.to_owned(), token.clone()));
        Ok(())
    }

    async fn try_lock(&self, key: &str, ttl: Duration) -> crate::Result<Option<String>> {
        let now = Instant::now();
        Ok(self.with(|m| {
            if let Some((_, until)) = m.locks.get(key) {
                if *until > now {
                    return None;
                }
            }
            let id = random_id();
            m.locks.insert(key.to_owned(), (id.clone(), now + ttl));
            Some(id)
        }))
    }

    async fn unlock(&self, key: &str, lock_id: &str) -> crate::Result<()> {
        self.with(|m| {
            if m.locks.get(key).is_some_and(|(id, _)| id == lock_id) {
                m.locks.remove(key);
            }
        });
        Ok(())
    }

    async fn invalidate(&self, key: &str, token: &str) -> crate::Result<()> {
        self.with(|m| {
            if m.tokens.get(key).is_some_and(|t| t.token == token) {
                m.tokens.remove(key);
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lock_is_exclusive_until_unlocked_or_expired() {
        let s = MemoryTokenStore::new();
        let id = s
            .try_lock("k", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        assert!(s
            .try_lock("k", Duration::from_secs(60))
            .await
            .unwrap()
            .is_none());
        s.unlock("k", "not-mine").await.unwrap();
        assert!(s
            .try_lock("k", Duration::from_secs(60))
            .await
            .unwrap()
            .is_none());
        s.unlock("k", &id).await.unwrap();
        let _ = s
            .try_lock("k", Duration::from_millis(1))
            .await
            .unwrap()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(s
            .try_lock("k", Duration::from_secs(1))
            .await
            .unwrap()
            .is_some());
    }

    #[tokio::test]
    async fn invalidate_only_deletes_the_same_token() {
        let s = MemoryTokenStore::new();
        let t = AccessToken {
            token: "new".into(),
            expires_at: 1,
        };
        s.save("k", &t).await.unwrap();
        s.invalidate("k", "old").await.unwrap();
        assert_eq!(s.load("k").await.unwrap(), Some(t));
        s.invalidate("k", "new").await.unwrap();
        assert_eq!(s.load("k").await.unwrap(), None);
    }

    #[test]
    fn debug_redacts_the_token() {
        let t = AccessToken {
            token: "SECRET-TOKEN".into(),
            expires_at: 1,
        };
        assert!(!format!("{t:?}").contains("SECRET"));
    }
}
