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

/// A TCP proxy in front of a service (Redis today; PostgreSQL or WeChat later) that a test can
/// cut and restore: `let p = FaultProxy::start(target).await; ... p.cut(); ... p.restore();`.
/// `cut` closes every open connection and refuses new ones at once; `blackhole` keeps accepting
/// but never answers (a hung server); `restore` forwards again.
pub struct FaultProxy {
    pub addr: std::net::SocketAddr,
    mode: tokio::sync::watch::Sender<FaultMode>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultMode {
    Forward,
    Refuse,
    Blackhole,
}

impl FaultProxy {
    /// Listen on 127.0.0.1:0 and forward to `target` ("host:port").
    pub async fn start(target: &str) -> FaultProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mode, _) = tokio::sync::watch::channel(FaultMode::Forward);
        let modes = mode.clone();
        let target = target.to_owned();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let mut rx = modes.subscribe();
                let target = target.clone();
                tokio::spawn(async move {
                    let now = *rx.borrow_and_update();
                    match now {
                        FaultMode::Refuse => return, // dropped: the client sees a reset/EOF
                        FaultMode::Blackhole => {
                            // Hold the socket, answer nothing, until restored or cut.
                            let _ = rx.wait_for(|m| *m != FaultMode::Blackhole).await;
                            return;
                        }
                        FaultMode::Forward => {}
                    }
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = rx.wait_for(|m| *m != FaultMode::Forward) => {}
                    }
                });
            }
        });
        FaultProxy { addr, mode, task }
    }

    /// The target of a `redis://host:port[/db]` URL, for [`FaultProxy::start`].
    pub fn target_of(url: &str) -> String {
        let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
        let rest = rest.rsplit_once('@').map(|(_, r)| r).unwrap_or(rest);
        rest.split('/').next().unwrap().to_owned()
    }

    /// The same URL, pointed at this proxy.
    pub fn url_for(&self, url: &str) -> String {
        url.replacen(&Self::target_of(url), &self.addr.to_string(), 1)
    }

    pub fn cut(&self) {
        self.mode.send_replace(FaultMode::Refuse);
    }

    pub fn blackhole(&self) {
        self.mode.send_replace(FaultMode::Blackhole);
    }

    pub fn restore(&self) {
        self.mode.send_replace(FaultMode::Forward);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
