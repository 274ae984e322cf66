//! `TestApp`: the same `Application` as production, on port 0, with a fresh database per test.

use std::time::{Duration, Instant};

use dangjian::articles::store::NewArticle;
use dangjian::{
    platform::config::Settings,
    {
        app::AppState,
        startup::{Application, Overrides, Role},
    },
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::{Connection, Row};
use wechat::{client::TemplateInfo, crypto::MessageCrypto, signature};

pub const TOKEN: &str = "dangjiandemotoken";
pub const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
pub const APP_ID: &str = "wxdemo0000000000";
pub const ACCOUNT: &str = "gh_demo_account";

#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    Postgres {
        admin_url: String,
        redis_url: Option<String>,
    },
}

impl Backend {
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite+memory-cache",
            Backend::Postgres { .. } => "postgres+redis",
        }
    }
}

tokio::task_local! {
    /// The backend the running generated test (`backend_tests!`) is for.
    static CURRENT: Backend;
}

/// The PostgreSQL (+ Redis) backend the CI variables describe, if they are set.
pub fn postgres_backend() -> Option<Backend> {
    let url = std::env::var("DANGJIAN_TEST_DATABASE_URL").ok()?;
    Some(Backend::Postgres {
        admin_url: url,
        redis_url: std::env::var("DANGJIAN_TEST_REDIS_URL").ok(),
    })
}

/// The backends a test body runs on: inside a generated test, exactly that test's backend;
/// elsewhere the embedded backend and, when the CI variables are set, PostgreSQL (+ Redis).
pub fn backends() -> Vec<Backend> {
    if let Ok(current) = CURRENT.try_with(Backend::clone) {
        return vec![current];
    }
    let mut v = vec![Backend::Sqlite];
    v.extend(postgres_backend());
    v
}

/// Which backend a generated test runs on.
pub enum On {
    Sqlite,
    Postgres,
}

/// Run one generated test's body with `backends()` (and so `each_backend!`) bound to one backend,
/// under a deadline: a hung test fails in minutes instead of holding CI for its whole budget.
pub async fn run_on<F: std::future::Future<Output = ()>>(on: On, body: F) {
    let backend = match on {
        On::Sqlite => Backend::Sqlite,
        On::Postgres => postgres_backend().expect(
            "this test is compiled for PostgreSQL (DANGJIAN_TEST_DATABASE_URL was set at build \
             time) but the variable is not set now",
        ),
    };
    tokio::time::timeout(TEST_DEADLINE, CURRENT.scope(backend, body))
        .await
        .unwrap_or_else(|_| panic!("test did not finish within {TEST_DEADLINE:?}"));
}

/// The longest any one integration test may run.
pub const TEST_DEADLINE: Duration = Duration::from_secs(240);

pub fn random_suffix() -> String {
    use rand::Rng;
    let n: u64 = rand::thread_rng().gen();
    format!("{n:016x}")
}

pub struct TestApp {
    pub base: String,
    pub state: AppState,
    pub http: reqwest::Client,
    /// The fake WeChat this app talks to over real HTTP.
    pub fake: wechat::fake::FakeWechat,
    _fake_server: wechat::fake::FakeServer,
    pub backend: Backend,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pg_database: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

#[derive(Default)]
pub struct Spawn {
    pub overrides: Vec<(&'static str, String)>,
    pub write_content: Vec<(&'static str, String)>,
    /// The app's clock (e.g. a `ManualClock` for scheduled work); the system clock when None.
    pub clock: Option<std::sync::Arc<dyn dangjian::platform::clock::Clock>>,
}

impl TestApp {
    pub async fn spawn_with(backend: &Backend, spawn: Spawn) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let content_dir = dir.path().join("content");
        std::fs::create_dir_all(&content_dir).unwrap();
        for (name, text) in &spawn.write_content {
            std::fs::write(content_dir.join(name), text).unwrap();
        }
        let fake = wechat::fake::FakeWechat::new(wechat::fake::FakeConfig {
            app_id: APP_ID.into(),
            app_secret: "demo-app-secret-not-for-production".into(),
            mp_app_id: "wxdemomp000000000".into(),
            mp_app_secret: "demo-mp-secret-not-for-production".into(),
        });
        let fake_server = fake.spawn().await;
        let mut pg_database = None;
        let mut overrides: Vec<(&str, String)> = vec![
            ("bind", "127.0.0.1:0".into()),
            // A known first administrator (see `admin_token`); logins are not rate limited here
            // unless a test sets the limit itself.
            ("admin_user", ADMIN_USER.into()),
            ("admin_password", ADMIN_PASSWORD.into()),
            ("rate_limit_login_per_minute", "10000".into()),
            ("content_dir", content_dir.display().to_string()),
            ("data_dir", dir.path().join("data").display().to_string()),
            ("wechat_api_base", fake_server.base_url.clone()),
        ];
        match backend {
            Backend::Sqlite => {
                overrides.push((
                    "database_url",
                    format!("sqlite://{}/t.db?mode=rwc", dir.path().display()),
                ));
            }
            Backend::Postgres {
                admin_url,
                redis_url,
            } => {
                let name = format!("dj_test_{}", random_suffix());
                let mut admin = sqlx::PgConnection::connect(admin_url)
                    .await
                    .expect("DANGJIAN_TEST_DATABASE_URL reachable");
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut admin)
                    .await
                    .unwrap();
                admin.close().await.ok();
                let (prefix, _) = admin_url
                    .rsplit_once('/')
                    .expect("postgres URL with a database");
                overrides.push(("database_url", format!("{prefix}/{name}")));
                pg_database = Some((admin_url.clone(), name));
                if let Some(r) = redis_url {
                    overrides.push(("redis_url", r.clone()));
                    overrides.push(("redis_prefix", format!("dj_test:{}:", random_suffix())));
                }
            }
        }
        overrides.extend(spawn.overrides);
        let settings = Settings::with_overrides(overrides).expect("test settings");
        let app = Application::build_with(
            settings,
            Overrides {
                clock: spawn.clock,
                ..Default::default()
            },
            Role::All,
            true,
        )
        .await
        .expect("application builds");
        let addr = app.local_addr();
        let state = app.state();
        let server = tokio::spawn(app.run());
        TestApp {
            base: format!("http://{addr}"),
            state,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            fake,
            _fake_server: fake_server,
            backend: backend.clone(),
            server: Some(server),
            pg_database,
            _dir: dir,
        }
    }

    pub fn fake_base(&self) -> String {
        self._fake_server.base_url.clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Stop the server (graceful) and drop the per-test PostgreSQL database.
    pub async fn stop(mut self) {
        self.state.shutdown.cancel();
        if let Some(h) = self.server.take() {
            h.await.expect("server task").expect("server ran cleanly");
        }
        if let Some((admin_url, name)) = self.pg_database.take() {
            if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await;
            }
        }
    }

    pub async fn count(&self, sql: &str) -> i64 {
        use sqlx::Row;
        sqlx::query(sql)
            .fetch_one(self.state.db.pool())
            .await
            .unwrap()
            .get::<i64, _>(0)
    }
}

pub const ADMIN_USER: &str = "admin";
pub const ADMIN_PASSWORD: &str = "test-admin-password-0";

impl TestApp {
    /// `POST /api/admin/login`; panics unless it succeeds. Returns the bearer token.
    pub async fn login(&self, username: &str, password: &str) -> String {
        let resp = self
            .http
            .post(self.url("/api/admin/login"))
            .json(&serde_json::json!({"username": username, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            reqwest::StatusCode::OK,
            "login of {username}"
        );
        let v: serde_json::Value = resp.json().await.unwrap();
        v["token"].as_str().expect("token").to_owned()
    }

    /// A bearer token of the first administrator.
    pub async fn admin_token(&self) -> String {
        self.login(ADMIN_USER, ADMIN_PASSWORD).await
    }

    /// Create an account through the API (as the first admin) and return its bearer token.
    /// `org_unit` (secretaries) must exist: see `create_org_unit`.
    pub async fn user_token(&self, username: &str, role: &str, org_unit: Option<&str>) -> String {
        let password = format!("{username}-password-1");
        let resp = self
            .http
            .post(self.url("/api/admin/users"))
            .bearer_auth(self.admin_token().await)
            .json(&serde_json::json!({"username": username, "role": role, "org_unit": org_unit, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            reqwest::StatusCode::CREATED,
            "create {username}"
        );
        self.login(username, &password).await
    }

    /// Create an org unit (as the first admin), optionally under `parent` (by name).
    pub async fn create_org_unit(&self, name: &str, parent: Option<&str>) -> i64 {
        let resp = self
            .http
            .post(self.url("/api/admin/org-units"))
            .bearer_auth(self.admin_token().await)
            .json(&serde_json::json!({"name": name, "parent": parent}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            reqwest::StatusCode::CREATED,
            "create org unit {name}"
        );
        resp.json::<serde_json::Value>().await.unwrap()["id"]
            .as_i64()
            .unwrap()
    }
}

/// Run `body` on the current backend (see `backend_tests!`), on a fresh app.
#[macro_export]
macro_rules! each_backend {
    (|$app:ident| $body:block) => {
        $crate::each_backend!(spawn = $crate::helpers::Spawn::default(), |$app| $body)
    };
    (spawn = $spawn:expr, |$app:ident| $body:block) => {
        for backend in $crate::helpers::backends() {
            eprintln!("backend: {}", backend.name());
            let $app = $crate::helpers::TestApp::spawn_with(&backend, $spawn).await;
            $body
            $app.stop().await;
        }
    };
}

/// Under `.ci/run` (which sets `DANGJIAN_CI_REQUIRE_BACKENDS=1`), the production backends are not
/// optional: a missing variable would silently shrink every integration test to SQLite only.
/// Keyed on our own variable, not `CI=true`, so the README's test command still passes on any
/// CI system that has no PostgreSQL.
#[test]
fn ci_runs_every_test_on_postgres_and_redis_too() {
    if std::env::var("DANGJIAN_CI_REQUIRE_BACKENDS").as_deref() == Ok("1") {
        let backends = backends();
        assert!(
            backends.iter().any(|b| matches!(
                b,
                Backend::Postgres {
                    redis_url: Some(_),
                    ..
                }
            )),
            "CI must set DANGJIAN_TEST_DATABASE_URL and DANGJIAN_TEST_REDIS_URL"
        );
    }
}

// ---- signed webhook messages -------------------------------------------------------------------

pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A text message from `from` created at `ts` (unix seconds).
pub fn text_xml_at(from: &str, content: &str, msg_id: i64, ts: i64) -> String {
    format!(
        "<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><FromUserName><![CDATA[{from}]]></FromUserName>\
         <CreateTime>{ts}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{content}]]></Content>\
         <MsgId>{msg_id}</MsgId></xml>"
    )
}

/// A text message from `from` created now.
pub fn text_xml(from: &str, content: &str, msg_id: i64) -> String {
    text_xml_at(from, content, msg_id, now())
}

pub fn image_xml(from: &str, pic_url: &str, media_id: &str, msg_id: i64, ts: i64) -> String {
    format!(
        "<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><FromUserName><![CDATA[{from}]]></FromUserName>\
         <CreateTime>{ts}</CreateTime><MsgType><![CDATA[image]]></MsgType><PicUrl><![CDATA[{pic_url}]]></PicUrl>\
         <MediaId><![CDATA[{media_id}]]></MediaId><MsgId>{msg_id}</MsgId></xml>"
    )
}

pub fn event_xml(from: &str, event: &str, key: &str, create_time: i64) -> String {
    format!(
        "<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><FromUserName><![CDATA[{from}]]></FromUserName>\
         <CreateTime>{create_time}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[{event}]]></Event>\
         <EventKey><![CDATA[{key}]]></EventKey></xml>"
    )
}

/// The query string WeChat signs (plaintext mode): signature over token, timestamp and nonce.
pub fn signed_query(ts: i64, nonce: &str) -> String {
    let ts = ts.to_string();
    format!(
        "signature={}&timestamp={ts}&nonce={nonce}&openid=o_test",
        signature::signature(TOKEN, &ts, nonce)
    )
}

/// One field of a flat XML reply.
pub fn field(xml: &str, name: &str) -> Option<String> {
    wechat::xml::parse_flat(xml)
        .ok()?
        .get(name)
        .map(str::to_owned)
}

/// A random MsgId.
pub fn msg_id() -> i64 {
    use rand::Rng;
    rand::thread_rng().gen_range(1_000_000_000..i64::MAX / 2)
}

// ---- helpers of tests/it/admin.rs
impl TestApp {
    pub fn adm_req(&self, method: Method, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth(token)
    }

    pub async fn adm_get(&self, path: &str, token: &str) -> Value {
        let resp = self.adm_req(Method::GET, path, token).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
        resp.json().await.unwrap()
    }

    pub async fn adm_import_json(&self, token: &str, rows: Value) -> reqwest::Response {
        self.adm_req(Method::POST, "/api/admin/members", token)
            .json(&rows)
            .send()
            .await
            .unwrap()
    }

    pub async fn adm_import_csv(&self, token: &str, csv: &str) -> reqwest::Response {
        self.adm_req(Method::POST, "/api/admin/members", token)
            .header("content-type", "text/csv; charset=utf-8")
            .body(csv.to_owned())
            .send()
            .await
            .unwrap()
    }

    pub async fn adm_audit_actions(&self, token: &str, query: &str) -> Vec<String> {
        let v = self
            .adm_get(&format!("/api/admin/audit?page_size=500&{query}"), token)
            .await;
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap().to_owned())
            .collect()
    }
}

// ---- helpers of tests/it/members.rs
impl TestApp {
    pub fn accept_news_template(&self) {
        self.fake.add_template(TemplateInfo {
            template_id: self.state.settings.wechat_news_template_id.clone(),
            title: "新闻发布提醒".into(),
            ..Default::default()
        });
    }

    /// One person on both apps: the fake gives `mp_<code>` and `oa_openid` the same UnionID.
    pub fn same_person(&self, code: &str, oa_openid: &str) {
        let unionid = format!("u_{code}");
        self.fake.set_unionid(&format!("mp_{code}"), Some(&unionid));
        self.fake.set_unionid(oa_openid, Some(&unionid));
    }

    /// `oa_openid` follows the account (the fake lists them; the webhook gets the subscribe event).
    pub async fn follows(&self, oa_openid: &str) {
        self.fake.add_followers(&[oa_openid.to_owned()]);
        self.account_event(
            oa_openid,
            "<Event><![CDATA[subscribe]]></Event><EventKey><![CDATA[]]></EventKey>",
        )
        .await;
    }

    /// Wait until member `name` has the account openid `oa_openid` (the follower's `user/info`
    /// runs after the webhook has answered).
    pub async fn linked(&self, name: &str, oa_openid: &str) {
        self.eventually(&format!(
            "SELECT COUNT(*) FROM members WHERE name = '{name}' AND oa_openid = '{oa_openid}'"
        ))
        .await;
    }

    pub async fn oa_openid_of(&self, name: &str) -> Option<String> {
        sqlx::query("SELECT oa_openid FROM members WHERE name = $1")
            .bind(name)
            .fetch_one(self.state.db.pool())
            .await
            .unwrap()
            .get(0)
    }

    pub async fn admin_view(&self, path: &str) -> Value {
        let (status, v) = self
            .json_call(Some(&self.admin_token().await), Method::GET, path, None)
            .await;
        assert_eq!(status, StatusCode::OK, "{path}: {v}");
        v
    }

    pub async fn audit_count(&self, action: &str) -> i64 {
        sqlx::query("SELECT COUNT(*) FROM audit_log WHERE action = $1")
            .bind(action)
            .fetch_one(self.state.db.pool())
            .await
            .unwrap()
            .get(0)
    }

    pub async fn audit_details(&self, action: &str) -> Vec<Value> {
        sqlx::query("SELECT details FROM audit_log WHERE action = $1 ORDER BY id")
            .bind(action)
            .fetch_all(self.state.db.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| serde_json::from_str(&r.get::<String, _>(0)).unwrap())
            .collect()
    }

    pub async fn grant_mp(&self, code: &str, template: &str) {
        let token = self.mini_login(code).await;
        let (status, v) = self
            .json_call(
                Some(&token),
                Method::POST,
                "/api/mp/subscriptions",
                Some(json!({"template_ids": [template], "results": {template: "accept"}})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }

    pub async fn grant_oa(&self, oa_openid: &str, template: &str) {
        self.account_event(
            oa_openid,
            &format!(
                "<Event><![CDATA[subscribe_msg_popup_event]]></Event><SubscribeMsgPopupEvent><List>\
                 <TemplateId><![CDATA[{template}]]></TemplateId><SubscribeStatusString><![CDATA[accept]]></SubscribeStatusString>\
                 <PopupScene>2</PopupScene></List></SubscribeMsgPopupEvent>"
            ),
        )
        .await;
    }

    pub fn sent_to(&self, channel: &str) -> Vec<String> {
        self.fake
            .outbox()
            .into_iter()
            .filter(|m| m.channel == channel)
            .filter_map(|m| m.to_user)
            .collect()
    }
}

// ---- helpers of tests/it/mp.rs
impl TestApp {
    pub async fn mp_post(
        &self,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> (StatusCode, Value) {
        self.json_call(token, Method::POST, path, Some(body)).await
    }

    pub async fn mp_get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.json_call(token, Method::GET, path, None).await
    }

    /// `POST /api/mp/login` with `code` (the fake's openid is `mp_<code>`); panics unless 200.
    pub async fn mp_login(&self, code: &str) -> (String, Value) {
        let (status, v) = self
            .mp_post("/api/mp/login", None, json!({"code": code}))
            .await;
        assert_eq!(status, StatusCode::OK, "login {code}: {v}");
        (v["token"].as_str().expect("token").to_owned(), v)
    }

    /// The roster through the admin import: 张三 13912340001, 李四 13912340002.
    pub async fn mp_roster(&self) {
        let rows = json!([
            {"name": "张三", "phone": "13912340001", "category": "employed", "monthly_income_fen": 812_345, "org_unit": "第一党支部"},
            {"name": "李四", "phone": "13912340002", "category": "student", "org_unit": "第二党支部", "party_status": "probationary"},
        ]);
        let resp = self
            .http
            .post(self.url("/api/admin/members"))
            .bearer_auth(self.admin_token().await)
            .json(&rows)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "roster import");
    }

    pub async fn mp_bind(&self, token: &str, name: &str, phone_code: &str) -> (StatusCode, Value) {
        self.mp_post(
            "/api/mp/bind",
            Some(token),
            json!({"name": name, "phone_code": phone_code}),
        )
        .await
    }

    pub async fn openid_of(&self, phone_name: &str) -> Option<String> {
        sqlx::query("SELECT openid FROM members WHERE name = $1")
            .bind(phone_name)
            .fetch_one(self.state.db.pool())
            .await
            .unwrap()
            .get(0)
    }
}

// ---- helpers of tests/it/push.rs
impl TestApp {
    pub async fn admin(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, self.url(path)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        (status, r.json::<Value>().await.unwrap_or(Value::Null))
    }

    /// `n` subscribed followers in the database and the fake; `interacted_at` for the 48-hour rule.
    pub async fn seed_followers(
        &self,
        prefix: &str,
        n: usize,
        interacted_at: Option<i64>,
    ) -> Vec<String> {
        let openids: Vec<String> = (0..n).map(|i| format!("o{prefix}{i:07}")).collect();
        let now = self.state.clock.unix_ms();
        let mut tx = self.state.db.begin_write().await.unwrap();
        for chunk in openids.chunks(500) {
            let mut sql = String::from(
                "INSERT INTO followers (openid, status, subscribed_at, last_interaction_at, created_at, updated_at) VALUES ",
            );
            let values: Vec<String> = (0..chunk.len())
                .map(|i| format!("(${}, 'subscribed', $1, $2, $1, $1)", i + 3))
                .collect();
            sql.push_str(&values.join(", "));
            let mut q = sqlx::query(&sql).bind(now).bind(interacted_at);
            for o in chunk {
                q = q.bind(o);
            }
            q.execute(&mut *tx).await.unwrap();
        }
        tx.commit().await.unwrap();
        self.fake.add_followers(&openids);
        openids
    }

    pub async fn article(&self, title: &str) -> i64 {
        let a = NewArticle {
            category: "党建动态",
            title,
            summary: "全校党员干部认真学习",
            body_md: "正文",
            body_html: "<p>正文</p>",
            cover_url: None,
            author: Some("党委宣传部"),
        };
        dangjian::articles::store::insert_published(&self.state.db, &a, self.state.clock.unix_ms())
            .await
            .unwrap()
    }

    pub fn register_template(&self) {
        self.fake.add_template(TemplateInfo {
            template_id: self.state.settings.wechat_news_template_id.clone(),
            title: "新闻发布提醒".into(),
            ..Default::default()
        });
    }

    pub async fn create_push(&self, token: &str, body: Value) -> i64 {
        let (status, v) = self
            .admin(
                token,
                reqwest::Method::POST,
                "/api/admin/pushes",
                Some(body),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        v["id"].as_i64().unwrap()
    }

    pub async fn push(&self, token: &str, id: i64) -> Value {
        let (status, v) = self
            .admin(
                token,
                reqwest::Method::GET,
                &format!("/api/admin/pushes/{id}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v
    }

    pub async fn wait_status(&self, token: &str, id: i64, want: &str, within: Duration) -> Value {
        let start = Instant::now();
        loop {
            let v = self.push(token, id).await;
            if v["status"] == want {
                return v;
            }
            assert!(
                start.elapsed() < within,
                "push {id} not {want} after {within:?}: {v}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Post an event to the webhook as WeChat would (encrypted: safe mode is the default).
    pub async fn post_event(&self, xml: &str) {
        let r = self.wechat_post(xml).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
}

// ---- helpers of tests/it/submissions.rs
impl TestApp {
    /// The app clock's now (a test may run a manual clock): the webhook checks timestamps with it.
    pub fn chat_now(&self) -> i64 {
        self.state.clock.now().unix_timestamp()
    }

    /// POST a message as WeChat does (encrypted, signed at the app's clock); the passive reply's
    /// text (or "success").
    pub async fn chat_xml(&self, xml: &str) -> String {
        let resp = self.wechat_post(xml).await;
        assert_eq!(resp.status(), StatusCode::OK, "{}", self.backend.name());
        let body = TestApp::wechat_reply(resp).await;
        if body == "success" {
            return body;
        }
        wechat::xml::parse_flat(&body)
            .unwrap()
            .get("Content")
            .map(str::to_owned)
            .unwrap_or(body)
    }

    pub async fn say(&self, from: &str, content: &str, msg_id: i64) -> String {
        self.chat_xml(&text_xml_at(from, content, msg_id, self.chat_now()))
            .await
    }

    pub async fn admin_get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        let resp = self
            .http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        (resp.status(), resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn admin_post(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        (resp.status(), resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn mp_token(&self, code: &str) -> String {
        let resp = self
            .http
            .post(self.url("/api/mp/login"))
            .json(&json!({"code": code}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let v: Value = resp.json().await.unwrap();
        v["token"].as_str().unwrap().to_owned()
    }

    /// Rows of `submissions` in `status` (drafts included when asked).
    pub async fn submissions_in(&self, status: &str) -> i64 {
        self.count(&format!(
            "SELECT COUNT(*) FROM submissions WHERE status = '{status}'"
        ))
        .await
    }
}

// ---- helpers of tests/it/webhook.rs
impl TestApp {
    /// A plaintext body (plaintext mode only; safe mode, the default, refuses it). The nonce comes
    /// from the body: one signed URL carries one body.
    pub async fn post_plain(&self, xml: &str) -> reqwest::Response {
        use sha2::Digest;
        let nonce = hex::encode(&sha2::Sha256::digest(xml.as_bytes())[..6]);
        self.http
            .post(self.url(&format!("/wechat?{}", signed_query(now(), &nonce))))
            .body(xml.to_owned())
            .send()
            .await
            .unwrap()
    }

    pub async fn post_encrypted_with(
        &self,
        crypto: &MessageCrypto,
        xml: &str,
        ts: i64,
    ) -> reqwest::Response {
        let encrypt = crypto.encrypt(xml.as_bytes());
        let tss = ts.to_string();
        let nonce = "98765";
        let msg_sig = signature::msg_signature(TOKEN, &tss, nonce, &encrypt);
        let body = format!("<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>");
        let url = format!(
            "/wechat?{}&encrypt_type=aes&msg_signature={msg_sig}",
            signed_query(ts, nonce)
        );
        self.http
            .post(self.url(&url))
            .body(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_encrypted(&self, xml: &str) -> reqwest::Response {
        self.post_encrypted_with(&MessageCrypto::new(AES_KEY, APP_ID).unwrap(), xml, now())
            .await
    }

    /// A message as WeChat sends it in safe mode (the default): encrypted and signed.
    pub async fn post_msg(&self, xml: &str) -> reqwest::Response {
        self.wechat_post(xml).await
    }

    /// The clear reply XML (decrypted when the reply is encrypted), or "success".
    pub async fn reply_of(&self, resp: reqwest::Response) -> String {
        assert_eq!(
            resp.status(),
            StatusCode::OK,
            "backend {}",
            self.backend.name()
        );
        TestApp::wechat_reply(resp).await
    }

    /// The reply body as sent (an encrypted envelope in safe mode).
    pub async fn raw_of(&self, resp: reqwest::Response) -> String {
        assert_eq!(resp.status(), StatusCode::OK, "{}", self.backend.name());
        resp.text().await.unwrap()
    }

    /// Wait (bounded) until the fake's outbox holds `n` messages; returns them.
    pub async fn wait_outbox(&self, n: usize) -> Vec<wechat::fake::OutboxMessage> {
        for _ in 0..200 {
            if self.fake.outbox_len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.fake.outbox()
    }

    pub async fn flush(&self) {
        dangjian::official_account::service::flush_interactions(&self.state)
            .await
            .unwrap();
    }
}

// ---- development
impl TestApp {
    /// A JSON request with a bearer token; the status and the JSON answer (Null when none).
    pub async fn dev_call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.json_call(Some(token), method, path, body).await
    }

    /// `POST /api/admin/development/{record}/documents?kind=` with raw bytes.
    pub async fn dev_upload(
        &self,
        token: &str,
        record: i64,
        kind: &str,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let resp = self
            .http
            .post(self.url(&format!("/api/admin/development/{record}/documents")))
            .query(&[("kind", kind), ("file_name", "scan.pdf")])
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(bytes)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// A mini-program session (`wx.login` code `code` → openid `mp_<code>`), bound to the roster
    /// entry with this name and phone (which must exist), whose account openid is `oa_<code>`.
    pub async fn dev_mp_bound(&self, code: &str, name: &str, phone: &str) -> String {
        let (token, v) = self.mp_login(code).await;
        if v["member"].is_null() {
            let phone_code = format!("phone_{code}");
            self.fake.set_phone(&phone_code, phone);
            let (status, v) = self.mp_bind(&token, name, &phone_code).await;
            assert_eq!(status, StatusCode::OK, "mp bind: {v}");
        }
        // The same person follows the official account (linked by UnionID in real WeChat; the
        // identity tests in members.rs cover that path): account openid `oa_<code>`.
        sqlx::query("UPDATE members SET oa_openid = $1 WHERE name = $2 AND oa_openid IS NULL")
            .bind(format!("oa_{code}"))
            .bind(name)
            .execute(self.state.db.pool())
            .await
            .unwrap();
        token
    }

    /// A mini-program session (`wx.login` code → openid `mp_<code>`) not bound to the roster.
    pub async fn dev_mp_bound_none(&self, code: &str) -> String {
        self.mp_login(code).await.0
    }
}

// ---- members
impl TestApp {
    /// A JSON request with a bearer token (or none); the status and the JSON body (Null if none).
    pub async fn json_call(
        &self,
        token: Option<&str>,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// `POST /api/mp/login` with `code` (the fake's openid is `mp_<code>`): the session token.
    pub async fn mini_login(&self, code: &str) -> String {
        self.mp_login(code).await.0
    }

    /// Log in as `mp_<code>` and bind to the roster entry with `name` and `phone`; the bind answer.
    pub async fn mini_bind(&self, code: &str, name: &str, phone: &str) -> serde_json::Value {
        let token = self.mini_login(code).await;
        let phone_code = format!("pc_{code}");
        self.fake.set_phone(&phone_code, phone);
        let (status, v) = self
            .json_call(
                Some(&token),
                reqwest::Method::POST,
                "/api/mp/bind",
                Some(serde_json::json!({"name": name, "phone_code": phone_code})),
            )
            .await;
        assert_eq!(status, reqwest::StatusCode::OK, "bind {name}: {v}");
        v
    }

    /// Import roster rows (as the first admin); panics unless 200.
    pub async fn import_roster(&self, rows: serde_json::Value) {
        let (status, v) = self
            .json_call(
                Some(&self.admin_token().await),
                reqwest::Method::POST,
                "/api/admin/members",
                Some(rows),
            )
            .await;
        assert_eq!(status, reqwest::StatusCode::OK, "import: {v}");
    }

    /// The id of the (first) member named `name`.
    pub async fn member_id(&self, name: &str) -> i64 {
        use sqlx::Row;
        sqlx::query("SELECT id FROM members WHERE name = $1 ORDER BY id")
            .bind(name)
            .fetch_one(self.state.db.pool())
            .await
            .unwrap()
            .get(0)
    }

    /// The id of the org unit named `name`.
    pub async fn org_unit_id(&self, name: &str) -> i64 {
        use sqlx::Row;
        sqlx::query("SELECT id FROM org_units WHERE name = $1")
            .bind(name)
            .fetch_one(self.state.db.pool())
            .await
            .unwrap()
            .get(0)
    }

    /// A published article in 党建动态.
    pub async fn published_article(&self, title: &str) -> i64 {
        let a = dangjian::articles::store::NewArticle {
            category: "党建动态",
            title,
            summary: "摘要",
            body_md: "正文",
            body_html: "<p>正文</p>",
            cover_url: None,
            author: Some("党委宣传部"),
        };
        dangjian::articles::store::insert_published(&self.state.db, &a, self.state.clock.unix_ms())
            .await
            .unwrap()
    }

    /// Create a push (as the first admin) and wait until it is `completed`; its report.
    pub async fn push_to_completion(&self, body: serde_json::Value) -> serde_json::Value {
        let token = self.admin_token().await;
        let (status, v) = self
            .json_call(
                Some(&token),
                reqwest::Method::POST,
                "/api/admin/pushes",
                Some(body),
            )
            .await;
        assert_eq!(status, reqwest::StatusCode::CREATED, "{v}");
        let id = v["id"].as_i64().unwrap();
        let start = std::time::Instant::now();
        loop {
            let (_, v) = self
                .json_call(
                    Some(&token),
                    reqwest::Method::GET,
                    &format!("/api/admin/pushes/{id}"),
                    None,
                )
                .await;
            if v["status"] == "completed" {
                return v;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "push {id} not completed: {v}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Post an official-account event from `openid` to the webhook (plaintext, compatible mode).
    pub async fn account_event(&self, openid: &str, event_body: &str) {
        let ts = time::OffsetDateTime::now_utc().unix_timestamp();
        let xml = format!(
            "<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>\
             <CreateTime>{ts}</CreateTime><MsgType><![CDATA[event]]></MsgType>{event_body}</xml>"
        );
        // As WeChat sends it in safe mode (the default): encrypted and signed.
        let r = self.wechat_post(&xml).await;
        assert_eq!(r.status(), reqwest::StatusCode::OK);
    }

    /// Wait (bounded) until `sql` counts at least one row.
    pub async fn eventually(&self, sql: &str) {
        let start = std::time::Instant::now();
        while self.count(sql).await == 0 {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "never true: {sql}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

// ---- activities
static SEEDED_PHONES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A second instance of a test app on the same database and cache: HTTP only, no migration.
pub struct Sibling {
    pub base: String,
    pub state: AppState,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Sibling {
    pub async fn stop(self) {
        self.state.shutdown.cancel();
        self.server
            .await
            .expect("sibling task")
            .expect("sibling ran cleanly");
    }
}

impl TestApp {
    /// `n` roster members of org unit `unit`, inserted directly through the members store, each
    /// bound to the mini-program openid `mp_<prefix><i>`: (member id, openid).
    pub async fn seed_bound_members(
        &self,
        prefix: &str,
        n: usize,
        unit: i64,
    ) -> Vec<(i64, String)> {
        use dangjian::members::store::{self, MemberWrite};
        let now = self.state.clock.unix_ms();
        let mut out = Vec::with_capacity(n);
        for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
            let mut tx = self.state.db.begin_write().await.unwrap();
            for i in chunk {
                let seq = SEEDED_PHONES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let phone = format!("137{seq:08}");
                let name = format!("{prefix}{i}");
                let phone_idx = self.state.cipher.phone_index(&phone);
                let id = store::insert(
                    &mut tx,
                    &self.state.cipher,
                    &MemberWrite {
                        name: &name,
                        phone: &phone,
                        phone_idx,
                        id_number: None,
                        category: "employed",
                        income: None,
                        org_unit_id: unit,
                        party_status: "full",
                        joined_at: None,
                    },
                    now,
                )
                .await
                .unwrap();
                let openid = format!("mp_{prefix}{i}");
                assert!(store::bind_openid(&mut tx, id, &openid, now).await.unwrap());
                out.push((id, openid));
            }
            tx.commit().await.unwrap();
        }
        out
    }

    /// A mini-program bearer token for `openid`, made as `POST /api/mp/login` makes it.
    pub async fn mp_session_token(&self, openid: &str, member_id: Option<i64>) -> String {
        dangjian::auth::mp_session::MpSession::create(&self.state, openid, member_id)
            .await
            .unwrap()
            .token
    }

    /// Another instance on this app's database, cache, clock and data key (a second replica).
    pub async fn sibling(&self) -> Sibling {
        let mut settings = (*self.state.settings).clone();
        settings.bind = "127.0.0.1:0".parse().unwrap();
        let app = Application::build_with(
            settings,
            Overrides {
                clock: Some(self.state.clock.clone()),
                ..Default::default()
            },
            Role::HttpOnly,
            false,
        )
        .await
        .expect("second instance builds");
        let base = format!("http://{}", app.local_addr());
        let state = app.state();
        Sibling {
            base,
            state,
            server: tokio::spawn(app.run()),
        }
    }

    /// Any JSON request against `base` (this app or a sibling): (status, body or null).
    pub async fn call(
        &self,
        method: reqwest::Method,
        base: &str,
        path: &str,
        token: &str,
        body: Option<serde_json::Value>,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let mut req = self
            .http
            .request(method, format!("{base}{path}"))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }
}

// ---- dues

/// A second app instance on the same database (and Redis) as a `TestApp`: HTTP only, no
/// migrations, no workers — a replica behind the same load balancer.
pub struct Replica {
    pub base: String,
    pub state: AppState,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Replica {
    pub async fn stop(mut self) {
        self.state.shutdown.cancel();
        if let Some(h) = self.server.take() {
            h.await.expect("replica task").expect("replica ran cleanly");
        }
    }
}

impl TestApp {
    /// Settings for dues tests: orders notify an https URL (WeChat Pay and its fake refuse
    /// others), and the order checks run often but only when a test wants them.
    pub fn dues_spawn(extra: &[(&'static str, &str)]) -> Spawn {
        let mut overrides: Vec<(&'static str, String)> = vec![
            ("pay_notify_url", "https://dangjian.test/pay/notify".into()),
            ("dues_requery_after_secs", "3600".into()),
            ("dues_poll_ms", "50".into()),
            ("rate_limit_mp_per_minute", "100000".into()),
        ];
        for (k, v) in extra {
            overrides.retain(|(key, _)| key != k);
            overrides.push((k, (*v).to_owned()));
        }
        Spawn {
            overrides,
            ..Default::default()
        }
    }

    /// Another instance of this app on the same database: see [`Replica`].
    pub async fn dues_replica(&self) -> Replica {
        let mut settings = (*self.state.settings).clone();
        settings.bind = "127.0.0.1:0".parse().unwrap();
        let app = Application::build_with(settings, Overrides::default(), Role::HttpOnly, false)
            .await
            .expect("replica builds");
        let addr = app.local_addr();
        let state = app.state();
        let server = tokio::spawn(app.run());
        Replica {
            base: format!("http://{addr}"),
            state,
            server: Some(server),
        }
    }

    /// `POST /api/admin/members` as the first admin; panics unless 200.
    pub async fn dues_import(&self, rows: serde_json::Value) {
        let resp = self
            .http
            .post(self.url("/api/admin/members"))
            .bearer_auth(self.admin_token().await)
            .json(&rows)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        assert_eq!(status, reqwest::StatusCode::OK, "roster import: {body}");
    }

    /// A mini-program session bound to the roster member `name` with `phone`; returns the token.
    pub async fn dues_member_token(&self, code: &str, name: &str, phone: &str) -> String {
        let resp = self
            .http
            .post(self.url("/api/mp/login"))
            .json(&serde_json::json!({"code": code}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), reqwest::StatusCode::OK, "mp login {code}");
        let v: serde_json::Value = resp.json().await.unwrap();
        let token = v["token"].as_str().expect("token").to_owned();
        let phone_code = format!("phone_{code}");
        self.fake.set_phone(&phone_code, phone);
        let resp = self
            .http
            .post(self.url("/api/mp/bind"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"name": name, "phone_code": phone_code}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), reqwest::StatusCode::OK, "bind {name}");
        token
    }

    /// A JSON request with an optional bearer token: (status, body or Null).
    pub async fn dues_call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// POST a (possibly tampered) WeChat Pay notification to `base` + `/pay/notify`.
    pub async fn dues_notify(
        &self,
        base: &str,
        headers: &[(String, String)],
        body: &str,
    ) -> (reqwest::StatusCode, String) {
        let mut req = self
            .http
            .post(format!("{base}/pay/notify"))
            .body(body.to_owned());
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        (status, resp.text().await.unwrap_or_default())
    }
}

// ---- hardening
impl TestApp {
    /// A message as WeChat sends it in safe mode (the default): encrypted, signed at the app's
    /// clock, with a nonce derived from the body so that a retry repeats the same URL and body.
    /// Returns (path and query, body).
    pub fn wechat_request(&self, xml: &str) -> (String, String) {
        use sha2::Digest;
        let ts = self.state.clock.now().unix_timestamp().to_string();
        let nonce = hex::encode(&sha2::Sha256::digest(xml.as_bytes())[..6]);
        let crypto = wechat::crypto::MessageCrypto::new(AES_KEY, APP_ID).unwrap();
        // The cipher's random prefix makes each encryption differ; a retry resends these bytes.
        let encrypt = crypto.encrypt(xml.as_bytes());
        let msg_sig = wechat::signature::msg_signature(TOKEN, &ts, &nonce, &encrypt);
        let path = format!(
            "/wechat?signature={}&timestamp={ts}&nonce={nonce}&openid=o&encrypt_type=aes&msg_signature={msg_sig}",
            wechat::signature::signature(TOKEN, &ts, &nonce)
        );
        let body = format!(
            "<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
        );
        (path, body)
    }

    /// POST `xml` to the webhook as WeChat would (see [`TestApp::wechat_request`]).
    pub async fn wechat_post(&self, xml: &str) -> reqwest::Response {
        let (path, body) = self.wechat_request(xml);
        self.http
            .post(self.url(&path))
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// The clear reply of an (encrypted) webhook answer, or "success".
    pub async fn wechat_reply(resp: reqwest::Response) -> String {
        assert_eq!(resp.status(), reqwest::StatusCode::OK, "webhook answer");
        let text = resp.text().await.unwrap();
        match wechat::xml::parse_flat(&text)
            .ok()
            .and_then(|f| f.get("Encrypt").map(str::to_owned))
        {
            Some(enc) => {
                let crypto = wechat::crypto::MessageCrypto::new(AES_KEY, APP_ID).unwrap();
                String::from_utf8(crypto.decrypt(&enc).unwrap()).unwrap()
            }
            None => text,
        }
    }
}

/// A TCP proxy in front of a service (Redis, PostgreSQL, the fake WeChat) that a test can break
/// on demand: `let p = FaultProxy::start(target).await; ... p.cut(); ... p.restore();`.
///
/// - [`cut`](Self::cut): closes every open connection and refuses new ones (the service is gone);
/// - [`reset`](Self::reset): closes only the connections open now and keeps accepting new ones
///   (a connection reset a pool must recover from; the mode does not change);
/// - [`blackhole`](Self::blackhole): nothing answers: open connections stall (bytes held, not
///   dropped) and new ones are accepted but never connected (a hung server or a partition);
/// - [`slow`](Self::slow): every forwarded chunk, both ways, is delayed by the given duration;
/// - [`restore`](Self::restore): forwards again (stalled connections resume with what they held).
///
/// [`retarget`](Self::retarget) points new connections elsewhere (a service whose address is
/// known only after the app that must use the proxy was configured, e.g. the test's fake WeChat).
pub struct FaultProxy {
    pub addr: std::net::SocketAddr,
    target: std::sync::Arc<std::sync::Mutex<String>>,
    control: tokio::sync::watch::Sender<FaultControl>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultMode {
    Forward,
    Refuse,
    Blackhole,
    Slow(Duration),
}

/// The mode, and how many [`FaultProxy::reset`]s happened: a connection opened before the latest
/// reset is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FaultControl {
    mode: FaultMode,
    resets: u64,
}

impl FaultControl {
    /// Whether a connection accepted at reset count `born` must close now.
    fn closes(&self, born: u64) -> bool {
        self.mode == FaultMode::Refuse || self.resets > born
    }
}

impl FaultProxy {
    /// Listen on 127.0.0.1:0 and forward to `target` ("host:port").
    pub async fn start(target: &str) -> FaultProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (control, _) = tokio::sync::watch::channel(FaultControl {
            mode: FaultMode::Forward,
            resets: 0,
        });
        let controls = control.clone();
        let target = std::sync::Arc::new(std::sync::Mutex::new(target.to_owned()));
        let targets = target.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                let mut rx = controls.subscribe();
                let target = targets.lock().unwrap().clone();
                tokio::spawn(async move {
                    let now = *rx.borrow_and_update();
                    let born = now.resets;
                    match now.mode {
                        FaultMode::Refuse => return, // dropped: the client sees a reset/EOF
                        FaultMode::Blackhole => {
                            // Hold the socket, answer nothing, until the mode changes or a reset.
                            let _ = rx
                                .wait_for(|c| c.mode != FaultMode::Blackhole || c.closes(born))
                                .await;
                            drop(inbound);
                            return;
                        }
                        FaultMode::Forward | FaultMode::Slow(_) => {}
                    }
                    let Ok(outbound) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    let (in_r, in_w) = inbound.into_split();
                    let (out_r, out_w) = outbound.into_split();
                    // When either direction ends, both sockets are dropped (closed).
                    tokio::select! {
                        _ = Self::pump(in_r, out_w, rx.clone(), born) => {}
                        _ = Self::pump(out_r, in_w, rx, born) => {}
                    }
                });
            }
        });
        FaultProxy {
            addr,
            target,
            control,
            task,
        }
    }

    /// Copy one direction chunk by chunk, obeying the mode before each chunk is passed on.
    async fn pump(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        mut rx: tokio::sync::watch::Receiver<FaultControl>,
        born: u64,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = tokio::select! {
                r = from.read(&mut buf) => match r {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                },
                _ = rx.wait_for(|c| c.closes(born)) => return,
            };
            loop {
                let now = *rx.borrow_and_update();
                if now.closes(born) {
                    return;
                }
                match now.mode {
                    FaultMode::Blackhole => {
                        if rx.changed().await.is_err() {
                            return;
                        }
                        continue;
                    }
                    FaultMode::Slow(delay) => tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = rx.wait_for(|c| c.closes(born)) => return,
                    },
                    FaultMode::Forward | FaultMode::Refuse => {}
                }
                break;
            }
            if to.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    }

    /// The target of a `scheme://[user@]host:port[/db]` URL, for [`FaultProxy::start`].
    pub fn target_of(url: &str) -> String {
        let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
        let rest = rest.rsplit_once('@').map(|(_, r)| r).unwrap_or(rest);
        rest.split('/').next().unwrap().to_owned()
    }

    /// The same URL, pointed at this proxy.
    pub fn url_for(&self, url: &str) -> String {
        url.replacen(&Self::target_of(url), &self.addr.to_string(), 1)
    }

    fn set_mode(&self, mode: FaultMode) {
        self.control.send_modify(|c| c.mode = mode);
    }

    pub fn cut(&self) {
        self.set_mode(FaultMode::Refuse);
    }

    pub fn blackhole(&self) {
        self.set_mode(FaultMode::Blackhole);
    }

    pub fn slow(&self, per_chunk: Duration) {
        self.set_mode(FaultMode::Slow(per_chunk));
    }

    pub fn restore(&self) {
        self.set_mode(FaultMode::Forward);
    }

    /// Forward connections accepted from now on to `target` ("host:port").
    pub fn retarget(&self, target: &str) {
        *self.target.lock().unwrap() = target.to_owned();
    }

    /// Close the connections open now; new ones are accepted in the current mode.
    pub fn reset(&self) {
        self.control.send_modify(|c| c.resets += 1);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---- console

/// A browser-like console login: the session cookie and the page's CSRF token.
pub struct Console {
    pub cookie: String,
    pub csrf: String,
    pub http: reqwest::Client,
}

impl TestApp {
    /// Log into the console form as `username` (follows the login CSRF dance like a browser).
    pub async fn console_login(&self, username: &str, password: &str) -> Console {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let cookie_of = |r: &reqwest::Response, name: &str| {
            r.headers()
                .get_all(reqwest::header::SET_COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(|c| {
                    c.strip_prefix(&format!("{name}="))
                        .map(|v| v.split(';').next().unwrap().to_owned())
                })
        };
        let r = http.get(self.url("/admin/login")).send().await.unwrap();
        let login_csrf = cookie_of(&r, "dj_login_csrf").expect("login csrf cookie");
        let r = http
            .post(self.url("/admin/login"))
            .header(
                reqwest::header::COOKIE,
                format!("dj_login_csrf={login_csrf}"),
            )
            .form(&[
                ("username", username),
                ("password", password),
                ("csrf", &login_csrf),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::SEE_OTHER, "console login");
        let session = cookie_of(&r, "dj_session").expect("session cookie");
        let cookie = format!("dj_session={session}");
        let html = http
            .get(self.url("/admin/"))
            .header(reqwest::header::COOKIE, &cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let marker = "name=\"csrf\" value=\"";
        let at = html.find(marker).expect("csrf field") + marker.len();
        let csrf = html[at..].split('"').next().unwrap().to_owned();
        Console { cookie, csrf, http }
    }
}

impl Console {
    pub async fn get(&self, app: &TestApp, path: &str) -> reqwest::Response {
        self.http
            .get(app.url(path))
            .header(reqwest::header::COOKIE, &self.cookie)
            .send()
            .await
            .unwrap()
    }

    /// A form POST carrying the CSRF field (add `("csrf", "")` yourself to test refusals: use `post_raw`).
    pub async fn post(
        &self,
        app: &TestApp,
        path: &str,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut fields: Vec<(&str, &str)> = form.to_vec();
        fields.push(("csrf", &self.csrf));
        self.post_raw(app, path, &fields).await
    }

    pub async fn post_raw(
        &self,
        app: &TestApp,
        path: &str,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        self.http
            .post(app.url(path))
            .header(reqwest::header::COOKIE, &self.cookie)
            .form(form)
            .send()
            .await
            .unwrap()
    }
}

// ---- dues console ----

/// A trade bill CSV in WeChat Pay's layout: (out_trade_no, transaction_id, yuan).
pub fn dues_trade_bill_csv(rows: &[(String, String, String)]) -> String {
    let mut s = String::from("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注\n");
    for (no, tid, yuan) in rows {
        s.push_str(&format!("`2026-11-04 12:00:05,`wxdemomp000000000,`{},`0,`,`{tid},`{no},`mp_x,`JSAPI,`SUCCESS,`OTHERS,`CNY,`{yuan},`0.00,`0,`0,`0.00,`0.00,`,`,`党费,`,`0.00000,`0.60%,`{yuan},`0.00,`\n", wechat::fake::test_keys::MCH_ID));
    }
    s.push_str("总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额\n");
    s.push_str(&format!(
        "`{},`0.00,`0.00,`0.00,`0.00000,`0.00,`0.00\n",
        rows.len()
    ));
    s
}

impl TestApp {
    /// Pay dues bill `bill_id` now, as the bound member `member_token`: the mini-program's pay
    /// call, then WeChat Pay's (fake, correctly signed) notification; panics unless credited.
    pub async fn dues_pay_now(&self, member_token: &str, bill_id: i64) {
        let (status, v) = self
            .dues_call(
                reqwest::Method::POST,
                &format!("/api/mp/dues/{bill_id}/pay"),
                Some(member_token),
                None,
            )
            .await;
        assert_eq!(status, reqwest::StatusCode::OK, "pay bill {bill_id}: {v}");
        let no: String =
            sqlx::query("SELECT out_trade_no FROM dues_orders WHERE bill_id = $1 ORDER BY id DESC")
                .bind(bill_id)
                .fetch_one(self.state.db.pool())
                .await
                .unwrap()
                .get(0);
        let n = self
            .fake
            .notification_for(&no, &wechat::fake::NotificationTamper::default())
            .expect("the fake knows the order");
        let (status, body) = self.dues_notify(&self.base, &n.headers, &n.body).await;
        assert_eq!(status, reqwest::StatusCode::NO_CONTENT, "notify: {body}");
    }

    /// The id of `name`'s dues bill for `month` (YYYY-MM).
    pub async fn dues_bill_of(&self, name: &str, month: &str) -> i64 {
        sqlx::query(
            "SELECT b.id FROM dues_bills b JOIN members m ON m.id = b.member_id \
             WHERE m.name = $1 AND b.month = $2",
        )
        .bind(name)
        .bind(month)
        .fetch_one(self.state.db.pool())
        .await
        .unwrap_or_else(|e| panic!("bill of {name} for {month}: {e}"))
        .get(0)
    }
}

impl Console {
    /// Follow a console redirect (303) like a browser: GET its target with the flash cookie it
    /// set; returns the page's HTML.
    pub async fn follow(&self, app: &TestApp, r: reqwest::Response) -> String {
        assert_eq!(r.status(), reqwest::StatusCode::SEE_OTHER, "a redirect");
        let to = r.headers()[reqwest::header::LOCATION]
            .to_str()
            .unwrap()
            .to_owned();
        let flash = r
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with("dj_flash="))
            .map(|c| c.split(';').next().unwrap().to_owned());
        let cookie = match flash {
            Some(f) => format!("{}; {f}", self.cookie),
            None => self.cookie.clone(),
        };
        let r = self
            .http
            .get(app.url(&to))
            .header(reqwest::header::COOKIE, cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::OK, "{to}");
        r.text().await.unwrap()
    }
}

// ---- activities console ----

/// One file of a `multipart/form-data` body.
pub struct FilePart<'a> {
    pub name: &'a str,
    pub file_name: &'a str,
    pub content_type: &'a str,
    pub bytes: &'a [u8],
}

/// A `multipart/form-data` body: the text fields first (the console's `csrf` must come before
/// the files, as a browser sends a form whose hidden field comes first), then the files.
/// Returns (content type, body).
pub fn multipart_body(fields: &[(&str, &str)], files: &[FilePart<'_>]) -> (String, Vec<u8>) {
    let boundary = format!("----dangjian{}", random_suffix());
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
    }
    for f in files {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\nContent-Type: {}\r\n\r\n",
                f.name, f.file_name, f.content_type
            )
            .as_bytes(),
        );
        body.extend_from_slice(f.bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

impl Console {
    /// A multipart form POST with the session's CSRF field first.
    pub async fn post_multipart(
        &self,
        app: &TestApp,
        path: &str,
        files: &[FilePart<'_>],
    ) -> reqwest::Response {
        let (content_type, body) = multipart_body(&[("csrf", &self.csrf)], files);
        self.http
            .post(app.url(path))
            .header(reqwest::header::COOKIE, &self.cookie)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .unwrap()
    }
}

impl TestApp {
    /// A multipart POST to the admin API with a bearer token: (status, JSON or Null).
    pub async fn multipart_call(
        &self,
        path: &str,
        token: &str,
        files: &[FilePart<'_>],
    ) -> (StatusCode, Value) {
        let (content_type, body) = multipart_body(&[], files);
        let resp = self
            .http
            .post(self.url(path))
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

// ---- notices ----
impl TestApp {
    /// A second instance on this app's database, cache and clock that runs the background workers
    /// (HTTP too), with `push_workers` senders: a replacement worker process after a crash.
    pub async fn worker_replica(&self, push_workers: usize) -> Sibling {
        let mut settings = (*self.state.settings).clone();
        settings.bind = "127.0.0.1:0".parse().unwrap();
        settings.push_workers = push_workers;
        let app = Application::build_with(
            settings,
            Overrides {
                clock: Some(self.state.clock.clone()),
                ..Default::default()
            },
            Role::All,
            false,
        )
        .await
        .expect("worker instance builds");
        let base = format!("http://{}", app.local_addr());
        let state = app.state();
        Sibling {
            base,
            state,
            server: tokio::spawn(app.run()),
        }
    }

    /// Give member `member_id` the account openid `oa_openid` (as UnionID linking does).
    pub async fn set_oa_openid(&self, member_id: i64, oa_openid: &str) {
        sqlx::query("UPDATE members SET oa_openid = $1 WHERE id = $2")
            .bind(oa_openid)
            .bind(member_id)
            .execute(self.state.db.pool())
            .await
            .unwrap();
    }
}

// ---- lead: the binary ----

impl TestApp {
    /// `dangjian` (the binary cargo built for these tests) configured exactly as this app: its
    /// database, Redis and prefix, content and data directories, the fake WeChat, warnings only;
    /// nothing else from this process's environment. Callers add the arguments and what differs.
    pub fn dangjian_binary(&self) -> std::process::Command {
        use secrecy::ExposeSecret;
        let s = &self.state.settings;
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_dangjian"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DANGJIAN_DATABASE_URL", s.database_url.expose_secret())
            .env("DANGJIAN_WECHAT_API_BASE", self.fake_base())
            .env("DANGJIAN_CONTENT_DIR", &s.content_dir)
            .env("DANGJIAN_DATA_DIR", &s.data_dir)
            .env("DANGJIAN_LOG", "warn");
        if let Some(r) = &s.redis_url {
            cmd.env("DANGJIAN_REDIS_URL", r.expose_secret())
                .env("DANGJIAN_REDIS_PREFIX", &s.redis_prefix);
        }
        cmd
    }
}

// ---- lead: raw answers for fault tests ----

impl TestApp {
    /// `GET /metrics` as text.
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// `POST /api/mp/login` with `code`, the answer as it came (for tests of 503s and limits).
    pub async fn mp_login_response(&self, code: &str) -> reqwest::Response {
        self.http
            .post(self.url("/api/mp/login"))
            .json(&json!({"code": code}))
            .send()
            .await
            .unwrap()
    }
}

// ---- lead: bounded waits ----

impl TestApp {
    /// Wait until the fake WeChat has delivered at least `n` messages, failing after `within`.
    pub async fn wait_for_outbox(&self, n: usize, within: Duration) {
        let start = Instant::now();
        while self.fake.outbox_len() < n {
            assert!(
                start.elapsed() < within,
                "the fake WeChat delivered {} messages in {within:?}, expected at least {n}",
                self.fake.outbox_len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// For a test that installs process-wide state (a global trace-level log subscriber): in the test
/// process, run this very test again in a child process of its own and check that it passed there
/// (returns false: the caller returns at once); in that child, returns true and the test goes on.
/// So the state never reaches the other tests that `cargo test` runs in the same process.
pub fn in_a_process_of_its_own() -> bool {
    const CHILD: &str = "DANGJIAN_TEST_OWN_PROCESS";
    if std::env::var_os(CHILD).is_some() {
        return true;
    }
    let name = std::thread::current()
        .name()
        .expect("the test harness names each test's thread after the test")
        .to_owned();
    let out = tokio::task::block_in_place(|| {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([name.as_str(), "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .output()
            .expect("the test binary runs")
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{name}, run in a process of its own, failed:\n{text}"
    );
    assert!(
        text.contains("1 passed"),
        "{name} did not run in its child process:\n{text}"
    );
    false
}

// ---- console16 helpers ----

/// The flash message a console redirect sets (`ok:…` or `error:…`), decoded; empty if none.
pub fn flash_of(r: &reqwest::Response) -> String {
    let raw = r
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("dj_flash="))
        .map(|v| v.split(';').next().unwrap().to_owned())
        .unwrap_or_default();
    form_urlencoded::parse(format!("m={raw}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// The `Location` of a redirect.
pub fn location_of(r: &reqwest::Response) -> String {
    r.headers()[reqwest::header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned()
}
