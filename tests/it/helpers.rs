//! `TestApp`: the same `Application` as production, on port 0, with a fresh database per test.

use std::time::Duration;

use dangjian::{
    platform::config::Settings,
    {
        app::AppState,
        startup::{Application, Overrides, Role},
    },
};
use sqlx::Connection;

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

/// The embedded backend always; PostgreSQL (+ Redis) as well when the CI variables are set.
pub fn backends() -> Vec<Backend> {
    let mut v = vec![Backend::Sqlite];
    if let Ok(url) = std::env::var("DANGJIAN_TEST_DATABASE_URL") {
        let redis_url = std::env::var("DANGJIAN_TEST_REDIS_URL").ok();
        v.push(Backend::Postgres {
            admin_url: url,
            redis_url,
        });
    }
    v
}

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

/// Run `body` once per available backend, each on a fresh app.
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

/// In CI (`CI=true`), the production backends are not optional: a missing variable would
/// silently shrink every integration test to SQLite only.
#[test]
fn ci_runs_every_test_on_postgres_and_redis_too() {
    if std::env::var("CI").as_deref() == Ok("true") {
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

// ---- development
impl TestApp {
    /// A JSON request with a bearer token; the status and the JSON answer (Null when none).
    pub async fn dev_call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<serde_json::Value>,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let mut req = self.http.request(method, self.url(path)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
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
        let resp = self
            .http
            .post(self.url("/api/mp/login"))
            .json(&serde_json::json!({"code": code}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), reqwest::StatusCode::OK, "mp login");
        let v: serde_json::Value = resp.json().await.unwrap();
        let token = v["token"].as_str().expect("token").to_owned();
        if v["member"].is_null() {
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
            assert_eq!(resp.status(), reqwest::StatusCode::OK, "mp bind");
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
        let resp = self
            .http
            .post(self.url("/api/mp/login"))
            .json(&serde_json::json!({"code": code}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), reqwest::StatusCode::OK, "mp login");
        let v: serde_json::Value = resp.json().await.unwrap();
        v["token"].as_str().expect("token").to_owned()
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
        let (status, v) = self
            .json_call(
                None,
                reqwest::Method::POST,
                "/api/mp/login",
                Some(serde_json::json!({"code": code})),
            )
            .await;
        assert_eq!(status, reqwest::StatusCode::OK, "login {code}: {v}");
        v["token"].as_str().unwrap().to_owned()
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
        let ts = time::OffsetDateTime::now_utc().unix_timestamp().to_string();
        let q = format!(
            "signature={}&timestamp={ts}&nonce=n1&openid={openid}",
            wechat::signature::signature(TOKEN, &ts, "n1")
        );
        let xml = format!(
            "<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>\
             <CreateTime>{ts}</CreateTime><MsgType><![CDATA[event]]></MsgType>{event_body}</xml>"
        );
        let r = self
            .http
            .post(self.url(&format!("/wechat?{q}")))
            .body(xml)
            .send()
            .await
            .unwrap();
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
