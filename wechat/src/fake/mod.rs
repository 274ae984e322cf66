//! An in-process fake of the WeChat HTTP APIs (feature `fake`), for tests, benchmarks and the
//! app's dev mode.
//!
//! It serves every endpoint the [`Client`](crate::client::Client) calls, under WeChat's real paths,
//! with WeChat's JSON shapes and errcodes: it issues and checks access tokens (41001 missing,
//! 40001 unknown, 42001 expired, 48001 token of the other app), checks credentials (40013 AppId,
//! 40125 secret), required fields (47001 bad JSON or shape, 40003 OpenID, 40037 template id,
//! 40007 media id, 40029 code) and keeps the state that makes answers consistent: followers, tags
//! and their members, templates, the menu, uploaded media and drafts.
//!
//! Every call is recorded as a [`RecordedCall`]; `api` is the path without the leading slash, as
//! in [`client::api`](crate::client::api) (e.g. `cgi-bin/message/custom/send`,
//! `sns/jscode2session`), with `access_token` and `secret` redacted. Sends (custom, template,
//! subscribe, bizsend, mass, preview) also go to an outbox with increasing message ids.
//!
//! WeChat Pay v3 (微信支付) is faked too, under `/v3/...` on the same router: see [`pay`] for its
//! endpoints, test keys and control methods ([`FakeWechat::pay_order`],
//! [`FakeWechat::notification_for`], ...).
//!
//! Failures are injected per API with [`FakeWechat::inject`] and per recipient with
//! [`FakeWechat::fail_openid`].
//!
//! Hot path (≥ 5,000 sends/s): one JSON parse, one hash lookup for the token under a short lock, and
//! an `Arc` of the body shared by the call log and the outbox.

mod handlers;
pub mod pay;

pub use pay::{test_keys, FakeNotification, FakeOrder, NotificationTamper, PayFault};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::Query;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Serialize;
use serde_json::Value;

use crate::client::TemplateInfo;
use handlers::{Reply, Route, State, ROUTES};

/// Credentials the fake accepts: one official account and one mini-program.
#[derive(Clone)]
pub struct FakeConfig {
    pub app_id: String,
    pub app_secret: String,
    pub mp_app_id: String,
    pub mp_app_secret: String,
}

impl Default for FakeConfig {
    /// Demo credentials for dev mode and tests.
    fn default() -> Self {
        Self {
            app_id: "wxfakeofficial0001".into(),
            app_secret: "fake-official-secret-0000000000000".into(),
            mp_app_id: "wxfakeminiprog0001".into(),
            mp_app_secret: "fake-miniprogram-secret-0000000000".into(),
        }
    }
}

impl std::fmt::Debug for FakeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeConfig")
            .field("app_id", &self.app_id)
            .field("mp_app_id", &self.mp_app_id)
            .finish_non_exhaustive()
    }
}

/// One request the fake received.
#[derive(Clone, Debug, Serialize)]
pub struct RecordedCall {
    /// Path without the leading slash, e.g. `cgi-bin/message/template/send`.
    pub api: String,
    /// Query parameters; `access_token` and `secret` are replaced by `***`.
    pub query: BTreeMap<String, String>,
    /// The JSON body (`secret` redacted); `null` for GET; `{"multipart_bytes": n}` for uploads;
    /// a JSON string holding the text when the body was not JSON.
    pub body: Value,
    pub at: SystemTime,
}

/// A message the fake "delivered".
#[derive(Clone, Debug, Serialize)]
pub struct OutboxMessage {
    /// `custom`, `template`, `subscribe`, `bizsend` (公众号 订阅通知), `mass` or `preview`.
    pub channel: &'static str,
    /// The recipient; None for a mass send (see `body.filter`).
    pub to_user: Option<String>,
    /// Increasing across channels. For `template` it is the `msgid` WeChat answered, for `mass`
    /// the `msg_id`; the real API returns none for `custom` and `subscribe`.
    pub msgid: i64,
    /// The request body as sent.
    pub body: Value,
    pub at: SystemTime,
}

/// A failure to inject into the next calls of an API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this HTTP status and a non-JSON body (a gateway error).
    Status(u16),
    /// Answer 200 with `{"errcode": n, "errmsg": ...}`.
    Errcode(i64),
    /// Handle the call (recorded, sent) and answer after this delay: a client timing out in
    /// between cannot know that the call succeeded.
    Latency(Duration),
}

struct FaultRule {
    api: String,
    fault: Fault,
    remaining: usize,
}

struct CallRec {
    api: &'static str,
    query: BTreeMap<String, String>,
    body: Arc<Value>,
    at: SystemTime,
}

struct OutboxRec {
    channel: &'static str,
    to_user: Option<String>,
    msgid: i64,
    body: Arc<Value>,
    at: SystemTime,
}

#[derive(Default)]
struct Log {
    calls: Vec<CallRec>,
    outbox: Vec<OutboxRec>,
}

pub(crate) struct Shared {
    config: FakeConfig,
    state: Mutex<State>,
    log: Mutex<Log>,
    faults: Mutex<Vec<FaultRule>>,
    has_faults: AtomicBool,
    /// The fake WeChat Pay (its own lock: pay calls never wait for the WeChat API state).
    pay: Mutex<pay::PayState>,
    token_fetches: AtomicUsize,
    next_msgid: AtomicI64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking handler cannot leave the fake's maps in a state worth refusing.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The fake WeChat. Cheap to clone; all clones share state.
#[derive(Clone)]
pub struct FakeWechat {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for FakeWechat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeWechat")
            .field("config", &self.shared.config)
            .finish()
    }
}

/// A running fake on `127.0.0.1`. Dropping it stops the server.
pub struct FakeServer {
    /// `http://127.0.0.1:PORT`: the `base_url` of a [`ClientConfig`](crate::client::ClientConfig).
    pub base_url: String,
    /// The bound address.
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl FakeServer {
    /// Stop accepting, finish in-flight requests, and wait for the server task.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn normalize_api(api: &str) -> &str {
    api.trim_start_matches('/')
}

impl FakeWechat {
    /// A fake with no followers, tags, templates or tokens yet.
    pub fn new(config: FakeConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                config,
                state: Mutex::new(State::new()),
                log: Mutex::new(Log::default()),
                faults: Mutex::new(Vec::new()),
                has_faults: AtomicBool::new(false),
                pay: Mutex::new(pay::PayState::default()),
                token_fetches: AtomicUsize::new(0),
                next_msgid: AtomicI64::new(1_000_000),
            }),
        }
    }

    /// The credentials it accepts.
    pub fn config(&self) -> &FakeConfig {
        &self.shared.config
    }

    /// The fake as an axum router, with WeChat's paths at its root (mount it with `nest` for dev
    /// mode, and point the client's base URL there).
    pub fn router(&self) -> Router {
        let mut router = Router::new();
        for route in ROUTES {
            let shared = self.shared.clone();
            let handler = move |q: Query<BTreeMap<String, String>>, h: HeaderMap, b: Bytes| {
                let shared = shared.clone();
                async move { dispatch(shared, route, q.0, h, b).await }
            };
            let path = format!("/{}", route.api);
            router = if route.post {
                router.route(&path, post(handler))
            } else {
                router.route(&path, get(handler))
            };
        }
        router = pay::routes(router, &self.shared);
        router
            .layer(axum::extract::DefaultBodyLimit::max(16 << 20))
            .with_state(())
    }

    /// Serve on `127.0.0.1:0` in a tokio task. Panics if no local port can be bound.
    pub async fn spawn(&self) -> FakeServer {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind the fake WeChat on 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("local address of the fake WeChat");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let router = self.router();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        FakeServer {
            base_url: format!("http://{addr}"),
            addr,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    // ---- state knobs ----

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.shared.state)
    }

    /// Add followers (in follow order) for `user/get` and `user/info/batchget`.
    pub fn add_followers(&self, openids: &[String]) {
        let mut st = self.state();
        for o in openids {
            st.add_follower(o);
        }
    }

    /// The follower unsubscribes: gone from `user/get`, `subscribe: 0` in batchget, and sends to
    /// them fail with 43004.
    pub fn remove_follower(&self, openid: &str) {
        self.state().remove_follower(openid);
    }

    /// Current followers in follow order.
    pub fn followers(&self) -> Vec<String> {
        self.state().followers.clone()
    }

    /// Page size of `user/get` and `user/tag/get` (WeChat: 10,000).
    pub fn set_user_page_size(&self, n: usize) {
        self.state().page_size = n.max(1);
    }

    /// Register a template (获取模板列表; `template/send` rejects unknown ids with 40037).
    pub fn add_template(&self, template: TemplateInfo) {
        self.state().templates.push(template);
    }

    /// `getuserphonenumber` with `code` answers `phone` (country code 86).
    pub fn set_phone(&self, code: &str, phone: &str) {
        self.state()
            .phones
            .insert(code.to_owned(), phone.to_owned());
    }

    /// `msg_sec_check`: content containing a `risky` word → risky (label 20006), else a `review`
    /// word → review (label 21000), else pass (label 100).
    pub fn set_sec_words(&self, review: Vec<String>, risky: Vec<String>) {
        let mut st = self.state();
        st.sec_review = review;
        st.sec_risky = risky;
    }

    /// `expires_in` of tokens issued from now on (WeChat: 7200).
    pub fn set_token_expires_in(&self, secs: i64) {
        self.state().token_expires_in = secs;
    }

    /// Every issued token expires now: calls get 42001.
    pub fn expire_tokens(&self) {
        self.state().expire_tokens();
    }

    /// Forget every issued token: calls get 40001.
    pub fn revoke_tokens(&self) {
        self.state().tokens.clear();
    }

    /// Sends to `openid` (custom, template, subscribe, bizsend, preview, batchtagging) fail with `errcode`
    /// (43004 unsubscribed, 40003 invalid OpenID, 43101 subscription refused, ...).
    pub fn fail_openid(&self, openid: &str, errcode: i64) {
        self.state()
            .failing_openids
            .insert(openid.to_owned(), errcode);
    }

    /// Undo [`fail_openid`](Self::fail_openid).
    pub fn unfail_openid(&self, openid: &str) {
        self.state().failing_openids.remove(openid);
    }

    /// The menu last created, if any.
    pub fn menu(&self) -> Option<Value> {
        self.state().menu.clone()
    }

    /// Members of tag `tagid`, sorted by OpenID.
    pub fn tag_members(&self, tagid: i64) -> Vec<String> {
        self.state()
            .tags
            .get(&tagid)
            .map(|t| t.members.iter().cloned().collect())
            .unwrap_or_default()
    }

    // ---- failure injection ----

    /// The next `times` calls of `api` (a path as in [`RecordedCall::api`], or `"*"` for any)
    /// get `fault`. Rules apply in the order they were added, one per call.
    pub fn inject(&self, api: &str, fault: Fault, times: usize) {
        if times == 0 {
            return;
        }
        let mut faults = lock(&self.shared.faults);
        faults.push(FaultRule {
            api: normalize_api(api).to_owned(),
            fault,
            remaining: times,
        });
        self.shared.has_faults.store(true, Ordering::Release);
    }

    /// Drop all injected faults not yet used (WeChat Pay's [`pay_inject`](Self::pay_inject) ones
    /// too).
    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
        lock(&self.shared.pay).clear_faults();
        self.shared.has_faults.store(false, Ordering::Release);
    }

    // ---- recording ----

    /// Every call so far, oldest first.
    pub fn calls(&self) -> Vec<RecordedCall> {
        lock(&self.shared.log)
            .calls
            .iter()
            .map(CallRec::to_public)
            .collect()
    }

    /// The calls of one API (`"cgi-bin/message/custom/send"`; a leading slash is ignored).
    pub fn calls_to(&self, api: &str) -> Vec<RecordedCall> {
        let api = normalize_api(api);
        lock(&self.shared.log)
            .calls
            .iter()
            .filter(|c| c.api == api)
            .map(CallRec::to_public)
            .collect()
    }

    /// How many calls of one API, without copying them.
    pub fn count_calls(&self, api: &str) -> usize {
        let api = normalize_api(api);
        lock(&self.shared.log)
            .calls
            .iter()
            .filter(|c| c.api == api)
            .count()
    }

    /// Requests to `cgi-bin/token` and `cgi-bin/stable_token`, failed ones included.
    pub fn token_fetches(&self) -> usize {
        self.shared.token_fetches.load(Ordering::Acquire)
    }

    /// Forget recorded calls and reset [`token_fetches`](Self::token_fetches) (not the outbox).
    pub fn clear_calls(&self) {
        lock(&self.shared.log).calls.clear();
        self.shared.token_fetches.store(0, Ordering::Release);
    }

    /// Everything sent, oldest first.
    pub fn outbox(&self) -> Vec<OutboxMessage> {
        lock(&self.shared.log)
            .outbox
            .iter()
            .map(OutboxRec::to_public)
            .collect()
    }

    /// The last `n` messages sent, oldest first (for a dev page).
    pub fn outbox_recent(&self, n: usize) -> Vec<OutboxMessage> {
        let log = lock(&self.shared.log);
        let start = log.outbox.len().saturating_sub(n);
        log.outbox[start..]
            .iter()
            .map(OutboxRec::to_public)
            .collect()
    }

    /// How many messages were sent.
    pub fn outbox_len(&self) -> usize {
        lock(&self.shared.log).outbox.len()
    }

    /// Forget sent messages.
    pub fn clear_outbox(&self) {
        lock(&self.shared.log).outbox.clear();
    }
}

impl CallRec {
    fn to_public(&self) -> RecordedCall {
        RecordedCall {
            api: self.api.to_owned(),
            query: self.query.clone(),
            body: (*self.body).clone(),
            at: self.at,
        }
    }
}

impl OutboxRec {
    fn to_public(&self) -> OutboxMessage {
        OutboxMessage {
            channel: self.channel,
            to_user: self.to_user.clone(),
            msgid: self.msgid,
            body: (*self.body).clone(),
            at: self.at,
        }
    }
}

fn take_fault(shared: &Shared, api: &str) -> Option<Fault> {
    if !shared.has_faults.load(Ordering::Acquire) {
        return None;
    }
    let mut faults = lock(&shared.faults);
    let i = faults.iter().position(|r| r.api == "*" || r.api == api)?;
    let fault = faults[i].fault.clone();
    faults[i].remaining -= 1;
    if faults[i].remaining == 0 {
        faults.remove(i);
    }
    if faults.is_empty() {
        shared.has_faults.store(false, Ordering::Release);
    }
    Some(fault)
}

const REDACTED: &str = "***";

/// What a handler asks the dispatcher to put in the outbox.
pub(crate) struct Sent {
    channel: &'static str,
    to_user: Option<String>,
    msgid: i64,
}

async fn dispatch(
    shared: Arc<Shared>,
    route: &'static Route,
    mut query: BTreeMap<String, String>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    if route.token_endpoint {
        shared.token_fetches.fetch_add(1, Ordering::AcqRel);
    }
    let fault = take_fault(&shared, route.api);

    let mut body = handlers::parse_body(route, &headers, &raw);
    let mut sent = None;
    let reply = match fault {
        Some(Fault::Status(code)) => {
            Reply::Status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        }
        Some(Fault::Errcode(code)) => Reply::Err(code),
        _ => {
            let mut st = lock(&shared.state);
            handlers::handle(&shared, &mut st, route, &query, &body, &mut sent)
        }
    };

    // Record after handling, so the handler could read the body without a copy.
    for key in ["access_token", "secret"] {
        if let Some(v) = query.get_mut(key) {
            *v = REDACTED.to_owned();
        }
    }
    if let Value::Object(map) = &mut body.json {
        if let Some(v) = map.get_mut("secret") {
            *v = Value::String(REDACTED.to_owned());
        }
    }
    let body = Arc::new(body.json);
    let at = SystemTime::now();
    {
        let mut log = lock(&shared.log);
        if let Some(s) = sent {
            log.outbox.push(OutboxRec {
                channel: s.channel,
                to_user: s.to_user,
                msgid: s.msgid,
                body: body.clone(),
                at,
            });
        }
        log.calls.push(CallRec {
            api: route.api,
            query,
            body,
            at,
        });
    }
    // The call is handled and recorded before the delay: a client that times out meanwhile sees
    // what WeChat's slow answers look like, a call whose outcome it cannot know.
    if let Some(Fault::Latency(d)) = fault {
        tokio::time::sleep(d).await;
    }
    reply.into_response()
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        const JSON: &str = "application/json; encoding=utf-8";
        match self {
            Reply::Json(v) => ([(header::CONTENT_TYPE, JSON)], v.to_string()).into_response(),
            Reply::Err(code) => {
                let v = serde_json::json!({
                    "errcode": code,
                    "errmsg": format!("{} rid: fake", handlers::errmsg(code)),
                });
                ([(header::CONTENT_TYPE, JSON)], v.to_string()).into_response()
            }
            Reply::Image(ct, bytes) => ([(header::CONTENT_TYPE, ct)], bytes).into_response(),
            Reply::Status(status) => (status, "fake WeChat: injected HTTP failure").into_response(),
        }
    }
}
