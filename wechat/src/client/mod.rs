//! Typed client for the WeChat HTTP APIs (official account and mini-program), with an access
//! token shared by every replica through a [`TokenStore`].
//!
//! One [`Client`] serves one AppId: build one for the official account and another, with the
//! mini-program's AppId/secret/base URL, for the mini-program APIs.
//!
//! Access token (获取 Access token): single flight in the process (a tokio mutex: concurrent callers
//! wait for one refresh) and across processes (the store's lock with expiry; the others poll the
//! store). A token is refreshed [`TokenPolicy::refresh_ahead`] before it expires; while another
//! process refreshes, callers keep using the old, still valid token. When WeChat rejects the token
//! (40001/42001/40014) the client deletes it from the store only if it is still the current one,
//! refreshes once and retries the call once.
//!
//! Retries ([`RetryPolicy`]): errcode -1 (系统繁忙), HTTP 5xx and connection failures are retried with
//! bounded exponential backoff and jitter. A timeout is retried only for calls that are safe to
//! repeat (queries, token, menu); a send that timed out is returned as [`Error::Http`]: its outcome
//! is unknown and the caller must not resend it blindly. Quota errors (45009, 45047, ...) and every
//! other errcode are returned as [`Error::Api`] at once.
//!
//! Nothing here logs the access token or the AppSecret: URLs are never logged (reqwest errors are
//! stripped of them), only the API path.

mod auth;
mod media;
mod menu;
mod message;
mod mp;
mod user;

pub use auth::TokenResponse;
pub use media::{DraftArticle, MaterialUpload, MediaUpload, MediaUploadKind};
pub use menu::{Button, Menu, MenuInfo};
pub use message::{
    CustomBody, CustomMessage, MassContent, MassFilter, MassMessage, MassSendResult, MediaId,
    MiniProgram, MiniProgramPage, News, NewsArticle, TemplateInfo, TemplateMessage, TemplateValue,
    TextContent,
};
pub use mp::{
    BizSubscribeMessage, MsgSecCheck, MsgSecCheckResult, PhoneInfo, SecCheckDetail, SecResult,
    Session, SubscribeMessage, Suggest, WxaCode, WxaCodeUnlimit,
};
pub use user::{Lang, Tag, TagInfo, UserInfo, UserList, UserListData};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::token::{AccessToken, TokenStore};
use crate::{Error, Result};

/// Paths of the WeChat APIs, relative to the base URL, without a leading slash. The fake records
/// calls under the same names (`fake.calls_to(api::CUSTOM_SEND)`).
pub mod api {
    /// 获取 Access token
    pub const TOKEN: &str = "cgi-bin/token";
    /// 获取稳定版接口调用凭据
    pub const STABLE_TOKEN: &str = "cgi-bin/stable_token";
    /// 创建自定义菜单
    pub const MENU_CREATE: &str = "cgi-bin/menu/create";
    /// 查询自定义菜单
    pub const MENU_GET: &str = "cgi-bin/menu/get";
    /// 删除自定义菜单
    pub const MENU_DELETE: &str = "cgi-bin/menu/delete";
    /// 获取用户列表
    pub const USER_GET: &str = "cgi-bin/user/get";
    /// 批量获取用户基本信息
    pub const USER_INFO_BATCHGET: &str = "cgi-bin/user/info/batchget";
    /// 创建标签
    pub const TAGS_CREATE: &str = "cgi-bin/tags/create";
    /// 获取公众号已创建的标签
    pub const TAGS_GET: &str = "cgi-bin/tags/get";
    /// 获取标签下粉丝列表
    pub const USER_TAG_GET: &str = "cgi-bin/user/tag/get";
    /// 批量为用户打标签
    pub const TAGS_MEMBERS_BATCHTAGGING: &str = "cgi-bin/tags/members/batchtagging";
    /// 客服接口-发消息
    pub const CUSTOM_SEND: &str = "cgi-bin/message/custom/send";
    /// 发送模板消息
    pub const TEMPLATE_SEND: &str = "cgi-bin/message/template/send";
    /// 获取模板列表
    pub const TEMPLATE_LIST: &str = "cgi-bin/template/get_all_private_template";
    /// 根据标签进行群发
    pub const MASS_SENDALL: &str = "cgi-bin/message/mass/sendall";
    /// 预览接口
    pub const MASS_PREVIEW: &str = "cgi-bin/message/mass/preview";
    /// 新增临时素材
    pub const MEDIA_UPLOAD: &str = "cgi-bin/media/upload";
    /// 新增其他类型永久素材
    pub const MATERIAL_ADD: &str = "cgi-bin/material/add_material";
    /// 新建草稿
    pub const DRAFT_ADD: &str = "cgi-bin/draft/add";
    /// 小程序登录 (code2Session)
    pub const JSCODE2SESSION: &str = "sns/jscode2session";
    /// 获取手机号 (getPhoneNumber)
    pub const GET_USER_PHONE_NUMBER: &str = "wxa/business/getuserphonenumber";
    /// 文本内容安全识别 (msgSecCheck)
    pub const MSG_SEC_CHECK: &str = "wxa/msg_sec_check";
    /// 发送订阅消息 (subscribeMessage.send)
    pub const SUBSCRIBE_SEND: &str = "cgi-bin/message/subscribe/send";
    /// 发送订阅通知 (公众号 订阅通知, subscribe/bizsend)
    pub const SUBSCRIBE_BIZSEND: &str = "cgi-bin/message/subscribe/bizsend";
    /// 获取不限制的小程序码 (getUnlimitedQRCode)
    pub const WXACODE_UNLIMIT: &str = "wxa/getwxacodeunlimit";
}

/// WeChat 全局返回码 the client acts on.
pub mod errcode {
    /// 系统繁忙: retried with backoff.
    pub const SYSTEM_BUSY: i64 = -1;
    /// 获取 access_token 时 AppSecret 错误，或者 access_token 无效.
    pub const INVALID_CREDENTIAL: i64 = 40001;
    /// 不合法的 OpenID.
    pub const INVALID_OPENID: i64 = 40003;
    /// 不合法的 AppID.
    pub const INVALID_APPID: i64 = 40013;
    /// 不合法的 access_token.
    pub const INVALID_ACCESS_TOKEN: i64 = 40014;
    /// 不合法的 code (jscode2session, getuserphonenumber).
    pub const INVALID_CODE: i64 = 40029;
    /// 不合法的 AppSecret.
    pub const INVALID_APPSECRET: i64 = 40125;
    /// 缺少 access_token 参数.
    pub const ACCESS_TOKEN_MISSING: i64 = 41001;
    /// access_token 超时.
    pub const ACCESS_TOKEN_EXPIRED: i64 = 42001;
    /// 需要接收者关注 (the follower has unsubscribed).
    pub const REQUIRE_SUBSCRIBE: i64 = 43004;
    /// 接口调用超过限制 (daily quota).
    pub const API_QUOTA: i64 = 45009;
    /// 客服接口下行条数超过上限.
    pub const CUSTOM_QUOTA: i64 = 45047;
    /// 解析 JSON/XML 内容错误.
    pub const DATA_FORMAT: i64 = 47001;

    /// The token was rejected: refresh once and retry once.
    pub fn is_token_error(code: i64) -> bool {
        matches!(
            code,
            INVALID_CREDENTIAL | ACCESS_TOKEN_EXPIRED | INVALID_ACCESS_TOKEN
        )
    }

    /// A frequency or quota limit (45xxx 频率/条数限制): never retried by the client.
    pub fn is_quota(code: i64) -> bool {
        matches!(
            code,
            45009 | 45011 | 45047 | 45028 | 45065 | 45066 | 45067 | 45083 | 45084
        )
    }
}

/// How often, and how patiently, transient failures are retried.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (1 = never retry).
    pub max_attempts: u32,
    /// Delay before the first retry; doubles each time.
    pub base_delay: Duration,
    /// Upper bound of one delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(3),
        }
    }
}

impl RetryPolicy {
    /// Never retry.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// Delay before retry number `retry` (1-based): exponential, capped, with "equal jitter"
    /// (half fixed, half random) so that replicas that failed together do not retry together.
    pub fn delay(&self, retry: u32) -> Duration {
        use rand::Rng;
        let exp = self
            .base_delay
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16));
        let capped = exp.min(self.max_delay);
        let half = capped / 2;
        let jitter_ms = half.as_millis() as u64;
        let jitter = if jitter_ms == 0 {
            Duration::ZERO
        } else {
            Duration::from_millis(rand::thread_rng().gen_range(0..=jitter_ms))
        };
        half + jitter
    }
}

/// When and how the shared access token is refreshed.
#[derive(Clone, Debug)]
pub struct TokenPolicy {
    /// Refresh when less than this is left (cgi-bin/token mode). `stable_token` keeps returning the
    /// same token until it expires, so in that mode the token is refreshed only when it is about
    /// to expire.
    pub refresh_ahead: Duration,
    /// Expiry of the cross-process refresh lock (covers a crashed refresher).
    pub lock_ttl: Duration,
    /// How often a process that did not get the lock looks in the store for the new token.
    pub poll_interval: Duration,
    /// How long a caller waits for a token before giving up with [`Error::Http`].
    pub max_wait: Duration,
    /// After a failed refresh, callers within this window get the same error instead of
    /// fetching again (no herd against a failing WeChat).
    pub failure_cooldown: Duration,
}

impl Default for TokenPolicy {
    fn default() -> Self {
        Self {
            refresh_ahead: Duration::from_secs(300),
            lock_ttl: Duration::from_secs(30),
            poll_interval: Duration::from_millis(50),
            max_wait: Duration::from_secs(15),
            failure_cooldown: Duration::from_secs(1),
        }
    }
}

/// Configuration of one [`Client`] (one AppId).
#[derive(Clone)]
pub struct ClientConfig {
    /// `https://api.weixin.qq.com`, or the fake's URL. A trailing slash is ignored.
    pub base_url: String,
    pub app_id: String,
    /// Never printed by `Debug`.
    pub app_secret: String,
    /// Timeout of one HTTP request.
    pub timeout: Duration,
    /// Use 获取稳定版接口调用凭据 (`cgi-bin/stable_token`) instead of `cgi-bin/token`.
    pub use_stable_token: bool,
    pub retry: RetryPolicy,
    pub token: TokenPolicy,
}

impl ClientConfig {
    /// Defaults: 10 s timeout, `cgi-bin/token`, 3 attempts, refresh 5 min ahead.
    pub fn new(
        base_url: impl Into<String>,
        app_id: impl Into<String>,
        app_secret: impl Into<String>,
    ) -> Self {
        Self {
            base_url: base_url.into(),
            app_id: app_id.into(),
            app_secret: app_secret.into(),
            timeout: Duration::from_secs(10),
            use_stable_token: false,
            retry: RetryPolicy::default(),
            token: TokenPolicy::default(),
        }
    }
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("base_url", &self.base_url)
            .field("app_id", &self.app_id)
            .field("app_secret", &"<redacted>")
            .field("timeout", &self.timeout)
            .field("use_stable_token", &self.use_stable_token)
            .field("retry", &self.retry)
            .field("token", &self.token)
            .finish()
    }
}

/// The WeChat API client. Cheap to clone (an `Arc` inside); share one per AppId.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.inner.config)
            .finish()
    }
}

struct Inner {
    config: ClientConfig,
    base: String,
    http: reqwest::Client,
    store: Arc<dyn TokenStore>,
    /// The token this process last saw, so that a call does not need a store round trip.
    cached: Mutex<Option<AccessToken>>,
    /// In-process single flight of refreshes.
    refresh: tokio::sync::Mutex<()>,
    /// The last refresh failure, for [`TokenPolicy::failure_cooldown`].
    last_failure: Mutex<Option<(Instant, Error)>>,
}

/// A token with less than this left is not used: it could expire in flight.
const USABLE_MARGIN_SECS: i64 = 5;

pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A copy of an error for callers that share one failure (`Error` is not `Clone`).
fn replay(e: &Error) -> Error {
    match e {
        Error::Api { errcode, errmsg } => Error::Api {
            errcode: *errcode,
            errmsg: errmsg.clone(),
        },
        Error::Http(m) => Error::Http(m.clone()),
        Error::Decode(m) => Error::Decode(m.clone()),
        other => Error::Http(other.to_string()),
    }
}

impl Client {
    /// A client for `config.app_id`, keeping its access token in `store`.
    pub fn new(config: ClientConfig, store: Arc<dyn TokenStore>) -> Result<Self> {
        let base = config.base_url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::Config(format!(
                "wechat base URL must be http(s): {base:?}"
            )));
        }
        if config.app_id.is_empty() || config.app_secret.is_empty() {
            return Err(Error::Config(
                "wechat app_id and app_secret must be set".into(),
            ));
        }
        if config.retry.max_attempts == 0 {
            return Err(Error::Config(
                "retry.max_attempts must be at least 1".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| Error::Config(format!("http client: {}", e.without_url())))?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                base,
                http,
                store,
                cached: Mutex::new(None),
                refresh: tokio::sync::Mutex::new(()),
                last_failure: Mutex::new(None),
            }),
        })
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The key under which the token lives in the store: the AppId.
    fn store_key(&self) -> &str {
        &self.inner.config.app_id
    }

    fn refresh_ahead_secs(&self) -> i64 {
        if self.inner.config.use_stable_token {
            USABLE_MARGIN_SECS
        } else {
            (self.inner.config.token.refresh_ahead.as_secs() as i64).max(USABLE_MARGIN_SECS)
        }
    }

    fn is_fresh(&self, t: &AccessToken, now: i64) -> bool {
        t.remaining(now) > self.refresh_ahead_secs()
    }

    fn cached(&self) -> Option<AccessToken> {
        self.inner
            .cached
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_cached(&self, t: &AccessToken) {
        *self.inner.cached.lock().unwrap_or_else(|p| p.into_inner()) = Some(t.clone());
    }

    /// A valid access token: from this process' cache, from the store, or freshly fetched (once
    /// across all processes sharing the store). This is what every API call uses; call it directly
    /// only to hand the token to something else (e.g. a JS-SDK ticket request).
    pub async fn access_token(&self) -> Result<String> {
        let now = unix_now();
        let cached = self.cached();
        if let Some(t) = &cached {
            if self.is_fresh(t, now) {
                return Ok(t.token.clone());
            }
        }
        let _guard = match self.inner.refresh.try_lock() {
            Ok(g) => g,
            Err(_) => {
                // Someone in this process is refreshing; the old token still works meanwhile.
                if let Some(t) = cached.filter(|t| t.remaining(now) > USABLE_MARGIN_SECS) {
                    return Ok(t.token);
                }
                self.inner.refresh.lock().await
            }
        };
        if let Some(t) = self.cached() {
            if self.is_fresh(&t, unix_now()) {
                return Ok(t.token);
            }
        }
        let cooldown = self.inner.config.token.failure_cooldown;
        if let Some((at, e)) = &*self
            .inner
            .last_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
        {
            if at.elapsed() < cooldown {
                return Err(replay(e));
            }
        }
        match self.refresh_shared().await {
            Ok(t) => {
                self.set_cached(&t);
                Ok(t.token)
            }
            Err(e) => {
                *self
                    .inner
                    .last_failure
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), replay(&e)));
                Err(e)
            }
        }
    }

    /// Fetching the token is itself an API call: the box breaks the async recursion.
    fn access_token_boxed(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String>> + Send + '_>> {
        Box::pin(self.access_token())
    }

    /// The cross-process part: take the token from the store, or take the store's lock and fetch
    /// it, or wait for whoever holds the lock.
    async fn refresh_shared(&self) -> Result<AccessToken> {
        let policy = &self.inner.config.token;
        let store = &self.inner.store;
        let key = self.store_key();
        let deadline = Instant::now() + policy.max_wait;
        loop {
            let stored = store.load(key).await?;
            if let Some(t) = &stored {
                if self.is_fresh(t, unix_now()) {
                    return Ok(t.clone());
                }
            }
            if let Some(lock_id) = store.try_lock(key, policy.lock_ttl).await? {
                let result = self.fetch_and_save_locked().await;
                if let Err(e) = store.unlock(key, &lock_id).await {
                    tracing::warn!(error = %e, "could not release the access-token refresh lock");
                }
                return result;
            }
            // Another process is refreshing. A token that still works is good enough meanwhile.
            if let Some(t) = stored.filter(|t| t.remaining(unix_now()) > USABLE_MARGIN_SECS) {
                return Ok(t);
            }
            if Instant::now() >= deadline {
                return Err(Error::Http(
                    "timed out waiting for another process to refresh the access token".into(),
                ));
            }
            tokio::time::sleep(policy.poll_interval).await;
        }
    }

    async fn fetch_and_save_locked(&self) -> Result<AccessToken> {
        let store = &self.inner.store;
        let key = self.store_key();
        // The previous holder may have saved a token between our load and our lock.
        if let Some(t) = store.load(key).await? {
            if self.is_fresh(&t, unix_now()) {
                return Ok(t);
            }
        }
        let before = unix_now();
        let resp = if self.inner.config.use_stable_token {
            self.get_stable_token(false).await?
        } else {
            self.get_token().await?
        };
        let t = AccessToken {
            token: resp.access_token,
            expires_at: before + resp.expires_in,
        };
        store.save(key, &t).await?;
        tracing::info!(app_id = %self.inner.config.app_id, expires_in = resp.expires_in, "refreshed the access token");
        Ok(t)
    }

    /// Forget `failed` here and in the store, unless it has already been replaced.
    async fn invalidate_token(&self, failed: &str) -> Result<()> {
        {
            let mut cached = self.inner.cached.lock().unwrap_or_else(|p| p.into_inner());
            if cached.as_ref().is_some_and(|t| t.token == failed) {
                *cached = None;
            }
        }
        self.inner.store.invalidate(self.store_key(), failed).await
    }

    // ---- the one way every endpoint is called ----

    async fn call_json<T: DeserializeOwned>(&self, call: Call) -> Result<T> {
        let raw = self.execute(&call).await?;
        serde_json::from_slice(&raw.body)
            .map_err(|e| Error::Decode(format!("{}: unexpected response: {e}", call.api)))
    }

    async fn call_ok(&self, call: Call) -> Result<()> {
        self.execute(&call).await.map(|_| ())
    }

    async fn execute(&self, call: &Call) -> Result<Raw> {
        let policy = &self.inner.config.retry;
        let mut attempt: u32 = 1;
        let mut token_retried = false;
        loop {
            let token = match call.auth {
                Auth::Token => Some(self.access_token_boxed().await?),
                Auth::None => None,
            };
            let failure = match self.send_once(call, token.as_deref()).await {
                Ok(raw) => return Ok(raw),
                Err(f) => f,
            };
            let code = failure.error.errcode();
            if let (Some(token), Some(code)) = (&token, code) {
                if errcode::is_token_error(code) && !token_retried {
                    token_retried = true;
                    tracing::warn!(
                        api = call.api,
                        errcode = code,
                        "access token rejected; refreshing it and retrying once"
                    );
                    self.invalidate_token(token).await?;
                    continue;
                }
            }
            if failure.transient && attempt < policy.max_attempts {
                let delay = policy.delay(attempt);
                tracing::warn!(api = call.api, attempt, error = %failure.error, delay_ms = delay.as_millis() as u64, "transient WeChat failure; retrying");
                tokio::time::sleep(delay).await;
                attempt += 1;
                continue;
            }
            match code {
                Some(c) if errcode::is_quota(c) => {
                    tracing::warn!(
                        api = call.api,
                        errcode = c,
                        "WeChat quota or frequency limit reached; not retried"
                    )
                }
                _ => tracing::debug!(api = call.api, error = %failure.error, "WeChat call failed"),
            }
            return Err(failure.error);
        }
    }

    async fn send_once(&self, call: &Call, token: Option<&str>) -> Result<Raw, Failure> {
        let url = format!("{}/{}", self.inner.base, call.api);
        let mut req = self.inner.http.request(call.method.clone(), url);
        if let Some(token) = token {
            req = req.query(&[("access_token", token)]);
        }
        if !call.query.is_empty() {
            req = req.query(&call.query);
        }
        req = match &call.payload {
            Payload::None => req,
            Payload::Json(body) => req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone()),
            Payload::Multipart { content_type, body } => req
                .header(reqwest::header::CONTENT_TYPE, content_type.as_str())
                .body(body.clone()),
        };
        let resp = req.send().await.map_err(|e| {
            let transient = e.is_connect() || (e.is_timeout() && call.idempotent);
            Failure {
                transient,
                error: Error::from(e),
            }
        })?;
        let status = resp.status();
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body: Vec<u8> = match resp.bytes().await {
            Ok(b) => b.into(),
            Err(e) => {
                return Err(Failure {
                    transient: call.idempotent,
                    error: Error::from(e),
                })
            }
        };
        if status.is_server_error() {
            return Err(Failure {
                transient: true,
                error: Error::Http(format!("{}: HTTP {status}", call.api)),
            });
        }
        let looks_json = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
        if looks_json {
            if let Ok(probe) = serde_json::from_slice::<ErrProbe>(&body) {
                if probe.errcode != 0 {
                    return Err(Failure {
                        transient: probe.errcode == errcode::SYSTEM_BUSY,
                        error: Error::Api {
                            errcode: probe.errcode,
                            errmsg: probe.errmsg,
                        },
                    });
                }
            }
        }
        if !status.is_success() {
            return Err(Failure {
                transient: false,
                error: Error::Http(format!("{}: HTTP {status}", call.api)),
            });
        }
        Ok(Raw { content_type, body })
    }
}

#[derive(Deserialize)]
struct ErrProbe {
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    errmsg: String,
}

struct Failure {
    transient: bool,
    error: Error,
}

struct Raw {
    content_type: Option<String>,
    body: Vec<u8>,
}

enum Auth {
    Token,
    None,
}

enum Payload {
    None,
    Json(Vec<u8>),
    Multipart { content_type: String, body: Vec<u8> },
}

/// One API call, described once and sent as often as the retry policy says.
struct Call {
    method: reqwest::Method,
    api: &'static str,
    query: Vec<(&'static str, String)>,
    payload: Payload,
    auth: Auth,
    /// Safe to send again after a timeout (the first may have been processed).
    idempotent: bool,
}

impl Call {
    fn get(api: &'static str) -> Self {
        Self {
            method: reqwest::Method::GET,
            api,
            query: Vec::new(),
            payload: Payload::None,
            auth: Auth::Token,
            idempotent: true,
        }
    }

    /// A POST of JSON; not idempotent unless said so.
    fn post<B: Serialize + ?Sized>(api: &'static str, body: &B) -> Result<Self> {
        let json = serde_json::to_vec(body)
            .map_err(|e| Error::Decode(format!("{api}: cannot encode request: {e}")))?;
        Ok(Self {
            method: reqwest::Method::POST,
            api,
            query: Vec::new(),
            payload: Payload::Json(json),
            auth: Auth::Token,
            idempotent: false,
        })
    }

    fn multipart(api: &'static str, field: &str, filename: &str, mime: &str, data: &[u8]) -> Self {
        let boundary = format!("----dangjian{}", crate::token::random_id());
        let mut body = Vec::with_capacity(data.len() + 256);
        // Quotes and line breaks in a file name would break the part header.
        let filename: String = filename
            .chars()
            .filter(|c| !matches!(c, '"' | '\r' | '\n' | '\\'))
            .collect();
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\nContent-Type: {mime}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        Self {
            method: reqwest::Method::POST,
            api,
            query: Vec::new(),
            payload: Payload::Multipart {
                content_type: format!("multipart/form-data; boundary={boundary}"),
                body,
            },
            auth: Auth::Token,
            idempotent: false,
        }
    }

    fn query(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.query.push((key, value.into()));
        self
    }

    fn without_token(mut self) -> Self {
        self.auth = Auth::None;
        self
    }

    fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }
}

/// For responses that are `{"errcode":0,"errmsg":"ok"}` and nothing else worth keeping.
#[derive(Deserialize)]
struct Ignored {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
        };
        for _ in 0..50 {
            let d1 = p.delay(1);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
            let d3 = p.delay(3);
            assert!(d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400));
            let d9 = p.delay(9);
            assert!(d9 >= Duration::from_millis(500) && d9 <= Duration::from_millis(1000));
        }
    }

    #[test]
    fn config_debug_hides_the_secret() {
        let c = ClientConfig::new("http://x", "wxid", "TOPSECRET");
        assert!(!format!("{c:?}").contains("TOPSECRET"));
    }
}
