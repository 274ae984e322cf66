//! The app's side of the WeChat API client: where the access token lives (Redis across
//! replicas, memory for one instance), which base URL is used (dev mode: the built-in fake),
//! and the customer-service `Outbound` built on the client.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use async_trait::async_trait;
use secrecy::ExposeSecret;
use wechat::{
    client::{Client, ClientConfig},
    token::{AccessToken, MemoryTokenStore, TokenStore},
};

use crate::{
    platform::cache::RedisCache,
    platform::config::{PaySetup, Settings},
    platform::outbound::{CustomMessage, Outbound},
};

pub const PRODUCTION_API_BASE: &str = "https://api.weixin.qq.com";

/// Access tokens in Redis: one refresh across all replicas (SET NX PX lock), compare-and-delete
/// invalidation so a replica never throws away a token another replica just fetched.
///
/// Every call is bounded like the cache's (`redis_timeout_ms`, with its breaker). While Redis is
/// unavailable, `load` answers with the last token this process saw (WeChat accepts it until it
/// expires), and the other calls fail at once with a `token store` error rather than hang.
pub struct RedisTokenStore {
    cache: RedisCache,
    prefix: String,
    last_seen: std::sync::Mutex<std::collections::HashMap<String, AccessToken>>,
}

const COMPARE_AND_DELETE: &str = r#"
local v = redis.call('GET', KEYS[1])
if v and cjson.decode(v)['token'] == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end
"#;

const UNLOCK: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end
"#;

fn redis_err(e: anyhow::Error) -> wechat::Error {
    wechat::Error::Http(format!("token store: {e}"))
}

impl RedisTokenStore {
    pub fn new(cache: &RedisCache) -> RedisTokenStore {
        RedisTokenStore {
            cache: cache.clone(),
            prefix: format!("{}wechat_token:", cache.prefix()),
            last_seen: Default::default(),
        }
    }

    fn remember(&self, key: &str, token: &AccessToken) {
        self.last_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_owned(), token.clone());
    }

    fn token_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn lock_key(&self, key: &str) -> String {
        format!("{}{key}:lock", self.prefix)
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredToken {
    token: String,
    expires_at: i64,
}

#[async_trait]
impl TokenStore for RedisTokenStore {
    async fn load(&self, key: &str) -> wechat::Result<Option<AccessToken>> {
        let mut c = self.cache.connection();
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.token_key(key));
        let v: Option<String> = match self.cache.run(cmd.query_async(&mut c)).await {
            Ok(v) => v,
            Err(e) => {
                let last = self
                    .last_seen
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(key)
                    .cloned();
                return match last {
                    Some(t) => {
                        tracing::warn!(error = %e, "token store unavailable; using this process's last access token");
                        Ok(Some(t))
                    }
                    None => Err(redis_err(e)),
                };
            }
        };
        let token = v
            .and_then(|s| serde_json::from_str::<StoredToken>(&s).ok())
            .map(|t| AccessToken {
                token: t.token,
                expires_at: t.expires_at,
            });
        if let Some(t) = &token {
            self.remember(key, t);
        }
        Ok(token)
    }

    async fn save(&self, key: &str, token: &AccessToken) -> wechat::Result<()> {
        let mut c = self.cache.connection();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let ttl = (token.expires_at - now).max(1);
        let body = serde_json::to_string(&StoredToken {
            token: token.token.clone(),
            expires_at: token.expires_at,
        })
        .map_err(|e| wechat::Error::Decode(e.to_string()))?;
        self.remember(key, token);
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.token_key(key)).arg(body).arg("EX").arg(ttl);
        self.cache
            .run(cmd.query_async::<()>(&mut c))
            .await
            .map_err(redis_err)
    }

    async fn try_lock(&self, key: &str, ttl: Duration) -> wechat::Result<Option<String>> {
        let mut c = self.cache.connection();
        let id = hex::encode(rand::random::<[u8; 16]>());
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.lock_key(key))
            .arg(&id)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64);
        let r: Option<String> = self
            .cache
            .run(cmd.query_async(&mut c))
            .await
            .map_err(redis_err)?;
        Ok(r.map(|_| id))
    }

    async fn unlock(&self, key: &str, lock_id: &str) -> wechat::Result<()> {
        let mut c = self.cache.connection();
        let script = redis::Script::new(UNLOCK);
        let mut inv = script.key(self.lock_key(key));
        inv.arg(lock_id);
        self.cache
            .run(inv.invoke_async::<i64>(&mut c))
            .await
            .map_err(redis_err)?;
        Ok(())
    }

    async fn invalidate(&self, key: &str, token: &str) -> wechat::Result<()> {
        {
            let mut last = self.last_seen.lock().unwrap_or_else(|e| e.into_inner());
            if last.get(key).is_some_and(|t| t.token == token) {
                last.remove(key);
            }
        }
        let mut c = self.cache.connection();
        let script = redis::Script::new(COMPARE_AND_DELETE);
        let mut inv = script.key(self.token_key(key));
        inv.arg(token);
        self.cache
            .run(inv.invoke_async::<i64>(&mut c))
            .await
            .map_err(redis_err)?;
        Ok(())
    }
}

/// The official-account and mini-program clients, sharing one token store, and the WeChat Pay
/// client (None when online payment is off).
pub struct Clients {
    pub wechat: Client,
    pub mp: Client,
    pub pay: Option<wechat::pay::PayClient>,
    /// Dev mode only: the in-process fake WeChat the clients talk to.
    pub dev_fake: Option<(wechat::fake::FakeWechat, Arc<wechat::fake::FakeServer>)>,
}

pub async fn build_clients(
    settings: &Settings,
    redis: Option<&RedisCache>,
) -> anyhow::Result<Clients> {
    let store: Arc<dyn TokenStore> = match redis {
        Some(r) => Arc::new(RedisTokenStore::new(r)),
        None => Arc::new(MemoryTokenStore::new()),
    };
    let mut dev_fake = None;
    let base = match (&settings.wechat_api_base, settings.dev_mode()) {
        (Some(base), _) => base.clone(),
        (None, true) => {
            let fake = wechat::fake::FakeWechat::new(wechat::fake::FakeConfig {
                app_id: settings.wechat_app_id.clone(),
                app_secret: settings.wechat_app_secret.expose_secret().to_owned(),
                mp_app_id: settings.mp_app_id.clone(),
                mp_app_secret: settings.mp_app_secret.expose_secret().to_owned(),
            });
            // The fake refuses unknown template ids (40037) like WeChat: register the demo one.
            fake.add_template(wechat::client::TemplateInfo {
                template_id: settings.wechat_news_template_id.clone(),
                title: "新闻资讯推送".into(),
                content: "{{first.DATA}}\n标题：{{keyword1.DATA}}\n时间：{{keyword2.DATA}}\n{{remark.DATA}}".into(),
                ..Default::default()
            });
            let server = fake.spawn().await;
            tracing::warn!(base_url = %server.base_url, "DEV MODE: WeChat API calls go to the built-in fake; see /dev/wechat/outbox");
            let base = server.base_url.clone();
            dev_fake = Some((fake, Arc::new(server)));
            base
        }
        (None, false) => PRODUCTION_API_BASE.to_owned(),
    };
    let mp_base = settings.mp_api_base.clone().unwrap_or_else(|| base.clone());
    let wechat = Client::new(
        ClientConfig::new(
            &base,
            &settings.wechat_app_id,
            settings.wechat_app_secret.expose_secret(),
        ),
        store.clone(),
    )?;
    let mp = Client::new(
        ClientConfig::new(
            &mp_base,
            &settings.mp_app_id,
            settings.mp_app_secret.expose_secret(),
        ),
        store,
    )?;
    let pay = build_pay(settings, &base)?;
    Ok(Clients {
        wechat,
        mp,
        pay,
        dev_fake,
    })
}

fn read_pem(var: &str, path: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("DANGJIAN_{var}: cannot read {}", path.display()))
}

/// The WeChat Pay v3 client for the mini-program's merchant (see `Settings::pay_setup`).
/// `fake_base`: where the fake WeChat is (the built-in one in dev mode, or
/// `DANGJIAN_WECHAT_API_BASE`), used by the test merchant unless `DANGJIAN_PAY_API_BASE` is set.
pub fn build_pay(
    settings: &Settings,
    fake_base: &str,
) -> anyhow::Result<Option<wechat::pay::PayClient>> {
    use wechat::pay::{MerchantConfig, PayClient};
    let config = match settings.pay_setup() {
        PaySetup::Disabled => {
            tracing::warn!(
                "WeChat Pay is off (no DANGJIAN_PAY_MCH_ID): dues are billed and reconciled, \
                 but not paid online"
            );
            return Ok(None);
        }
        PaySetup::TestMerchant => {
            use wechat::fake::test_keys as k;
            let base = settings.pay_api_base.as_deref().unwrap_or(fake_base);
            tracing::warn!(
                base_url = %base,
                mch_id = k::MCH_ID,
                "DEV MODE: WeChat Pay uses the fake's public TEST merchant keys; \
                 set DANGJIAN_PAY_MCH_ID and the other DANGJIAN_PAY_* for real payments"
            );
            MerchantConfig::new(
                k::MCH_ID,
                &settings.mp_app_id,
                k::MERCHANT_PRIVATE_KEY_PEM,
                k::MERCHANT_SERIAL,
                k::API_V3_KEY,
            )?
            .with_platform_public_key(k::PUB_KEY_ID, k::PLATFORM_PUBLIC_KEY_PEM)?
            .with_base_url(base)
        }
        PaySetup::Merchant => {
            let missing = |var: &str| anyhow::anyhow!("DANGJIAN_{var}: required");
            let key_path = settings
                .pay_private_key_path
                .as_deref()
                .ok_or_else(|| missing("PAY_PRIVATE_KEY_PATH"))?;
            let key_pem = read_pem("PAY_PRIVATE_KEY_PATH", key_path)?;
            let v3 = settings
                .pay_api_v3_key
                .as_ref()
                .ok_or_else(|| missing("PAY_API_V3_KEY"))?;
            let mut config = MerchantConfig::new(
                settings.pay_mch_id.as_deref().unwrap_or_default().trim(),
                &settings.mp_app_id,
                &key_pem,
                settings
                    .pay_cert_serial
                    .as_deref()
                    .unwrap_or_default()
                    .trim(),
                v3.expose_secret(),
            )
            .context("DANGJIAN_PAY_PRIVATE_KEY_PATH / DANGJIAN_PAY_API_V3_KEY")?;
            if let (Some(path), Some(id)) = (
                &settings.pay_platform_public_key_path,
                &settings.pay_platform_public_key_id,
            ) {
                let pem = read_pem("PAY_PLATFORM_PUBLIC_KEY_PATH", path)?;
                config = config
                    .with_platform_public_key(id.trim(), &pem)
                    .context("DANGJIAN_PAY_PLATFORM_PUBLIC_KEY_PATH")?;
            }
            config.with_base_url(
                settings
                    .pay_api_base
                    .as_deref()
                    .unwrap_or(MerchantConfig::DEFAULT_BASE_URL),
            )
        }
    };
    Ok(Some(
        PayClient::new(config).context("DANGJIAN_PAY_API_BASE")?,
    ))
}

/// Customer-service messages through the official-account client.
pub struct ClientOutbound(pub Client);

#[async_trait]
impl Outbound for ClientOutbound {
    async fn send_custom(&self, openid: &str, message: CustomMessage) -> Result<(), wechat::Error> {
        use wechat::client as m;
        let msg = match message {
            CustomMessage::Text(text) => m::CustomMessage::text(openid, text),
            CustomMessage::News {
                title,
                description,
                url,
                pic_url,
            } => m::CustomMessage::news(
                openid,
                m::NewsArticle {
                    title,
                    description,
                    url,
                    picurl: pic_url,
                },
            ),
        };
        self.0.custom_send(&msg).await
    }
}
