//! The application state: platform values only (database, cache, clock, the WeChat clients,
//! settings, metrics, the content files). A leaf: it imports no feature. Cheap to clone (a few
//! `Arc` refcounts); handlers take it, functions below the HTTP layer take only what they use.

use std::sync::Arc;

use secrecy::SecretString;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::platform::{
    cache::Cache, clock::Clock, config::Settings, content::ContentStore, db::Db, dedup::Dedup,
    interactions::Interactions, metrics::Metrics, outbound::Outbound,
};

/// Webhook secrets, prepared once.
pub struct WebhookKeys {
    pub token: SecretString,
    pub crypto: wechat::crypto::MessageCrypto,
}

/// Everything a handler or worker may need. One `Arc`: a clone per request is one refcount
/// increment (not one per field); fields are read through `Deref` (`st.db`, `st.cache`, ...).
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    pub fn new(services: Services) -> AppState {
        AppState(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The platform values the state holds.
pub struct Services {
    pub settings: Arc<Settings>,
    /// Personal data at rest: AES-256-GCM + blind index (`crate::platform::pii`).
    pub cipher: Arc<crate::platform::pii::DataCipher>,
    /// `DANGJIAN_TRUSTED_PROXIES`, parsed once (client IP resolution).
    pub trusted_proxies: Arc<Vec<ipnet::IpNet>>,
    pub db: Db,
    pub cache: Arc<dyn Cache>,
    pub dedup: Arc<Dedup>,
    pub content: Arc<ContentStore>,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    pub webhook: Arc<WebhookKeys>,
    pub interactions: Arc<Interactions>,
    pub outbound: Arc<dyn Outbound>,
    /// Official-account API client (shared access token).
    pub wechat: wechat::client::Client,
    /// Mini-program API client.
    pub mp: wechat::client::Client,
    /// WeChat Pay v3 client of the mini-program's merchant; None when online payment is off
    /// (production without `DANGJIAN_PAY_MCH_ID`).
    pub pay: Option<wechat::pay::PayClient>,
    /// Dev mode only: the built-in fake WeChat (its outbox is shown at /dev/wechat/outbox).
    pub dev_fake: Option<wechat::fake::FakeWechat>,
    /// Keeps the dev-mode fake server running as long as the state lives.
    pub dev_fake_server: Option<Arc<wechat::fake::FakeServer>>,
    /// Work spawned by requests (late replies, follow-ups), drained on shutdown.
    pub tasks: TaskTracker,
    pub shutdown: CancellationToken,
}
