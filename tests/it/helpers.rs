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
