//! Builds the whole application from `Settings`: storage, cache, content, router, workers.
//! `main` and the tests build the same `Application` (tests on port 0).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use axum::{middleware, Router};

use crate::{
    activities,
    app::{AppState, Services, WebhookKeys},
    articles, auth, development, dues,
    http::{
        self,
        routes::{AdminRoutes, MpRoutes},
    },
    members, official_account,
    platform::cache::{Cache, MemoryCache, RedisCache},
    platform::clock::{Clock, SystemClock},
    platform::config::Settings,
    platform::content::{ContentFile, ContentStore},
    platform::db::{self, Db},
    platform::dedup::Dedup,
    platform::interactions::Interactions,
    platform::metrics::Metrics,
    platform::outbound::Outbound,
    platform::pii::Column,
    portal, push, stats, submissions,
};

/// Seams that tests (and the dev mode) replace.
#[derive(Default)]
pub struct Overrides {
    pub clock: Option<Arc<dyn Clock>>,
    pub outbound: Option<Arc<dyn Outbound>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// HTTP server and background workers (the default: one binary is the whole product).
    All,
    /// HTTP only (`serve --no-workers`).
    HttpOnly,
}

pub struct Application {
    listener: TcpListener,
    state: AppState,
    role: Role,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        Self::build_with(settings, Overrides::default(), Role::All, true).await
    }

    pub async fn build_with(
        settings: Settings,
        overrides: Overrides,
        role: Role,
        migrate: bool,
    ) -> anyhow::Result<Application> {
        let state = build_state(settings, overrides, migrate).await?;
        let listener = TcpListener::bind(state.settings.bind)
            .await
            .with_context(|| format!("DANGJIAN_BIND: cannot listen on {}", state.settings.bind))?;
        Ok(Application {
            listener,
            state,
            role,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener")
    }

    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serve until SIGINT/SIGTERM, then drain.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let stop = self.state.shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown signal received; draining");
            stop.cancel();
        });
        self.run().await
    }

    /// Serve until `state().shutdown` is cancelled, then drain requests, tasks and workers.
    pub async fn run(self) -> anyhow::Result<()> {
        let Application {
            listener,
            state,
            role,
        } = self;
        let workers = TaskTracker::new();
        spawn_housekeeping(&state, &workers);
        if role == Role::All {
            spawn_workers(&state, &workers);
        }
        let router = router(state.clone());
        let stop = state.shutdown.clone();
        tracing::info!(addr = %listener.local_addr()?, "listening");
        axum::serve(
            listener,
            axum::ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<
                SocketAddr,
            >(router),
        )
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await?;
        state.shutdown.cancel();
        let grace = Duration::from_secs(state.settings.shutdown_grace_secs);
        state.tasks.close();
        workers.close();
        let drained = tokio::time::timeout(grace, async {
            state.tasks.wait().await;
            // The answers of the last messages, for WeChat's retries after the restart.
            state.dedup.flush().await;
            workers.wait().await;
        })
        .await;
        if drained.is_err() {
            tracing::warn!("shutdown grace period over; some background work was abandoned");
        }
        state.db.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Content files that features define (parsed and validated on every load, like the menu).
const FEATURE_CONTENT: &[ContentFile] = &[development::CONTENT_FILE];

/// Every encrypted column of every feature: the re-seal pass (key rotation, and the migration of
/// values written before they were bound to their rows) walks exactly these.
pub fn sealed_columns() -> Vec<Column> {
    [members::SEALED, dues::SEALED, development::SEALED].concat()
}

/// Once per worker process: seal to their rows the values written before the binding (and any
/// under an old key). Conditional rewrites, so replicas starting together do no harm.
async fn reseal_at_start(st: AppState) {
    match db::sealed::reseal_all(&st.db, &st.cipher, &sealed_columns()).await {
        Ok(r) if r.rewritten > 0 => {
            tracing::info!(
                checked = r.checked,
                rewritten = r.rewritten,
                "personal data re-sealed to its rows under the current key"
            );
            let entry = crate::platform::audit::AuditEntry::system(
                st.clock.unix_ms(),
                "worker",
                "pii.reseal",
                "data_key",
                Some(st.cipher.current_key_id().to_owned()),
            )
            .details(
                serde_json::json!({"values_checked": r.checked, "values_rewritten": r.rewritten}),
            );
            if let Err(e) = crate::platform::audit::record(st.db.pool(), &entry).await {
                tracing::warn!(error = %e, "could not audit the re-seal pass");
            }
        }
        Ok(_) => {}
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "re-sealing personal data failed; `dangjian admin rotate-key` retries it")
        }
    }
}

/// The admin route table: every feature's `/api/admin` routes, each behind its permission.
pub fn admin_routes(state: &AppState) -> AdminRoutes {
    let r = AdminRoutes::new(state.clone(), auth::admin_guard);
    let r = auth::admin_routes(r);
    let r = members::admin_routes(r);
    let r = articles::admin::routes(r);
    let r = official_account::admin::routes(r);
    let r = push::admin::routes(r);
    let r = development::admin_routes(r);
    let r = activities::admin_routes(r);
    let r = dues::admin_routes(r);
    let r = stats::admin_routes(r);
    submissions::admin::routes(r)
}

/// The mini-program's route table: every feature's `/api/mp` routes.
pub fn mp_routes() -> MpRoutes {
    let r = MpRoutes::new();
    let r = members::mp_routes(r);
    let r = articles::mp_routes(r);
    let r = submissions::mp_routes(r);
    let r = development::mp_routes(r);
    let r = activities::mp_routes(r);
    dues::mp_routes(r)
}

/// The whole HTTP surface: each feature's router, the admin table, the console, operators'
/// endpoints and OpenAPI, inside the shared layers.
pub fn router(state: AppState) -> http::edge::Edge<Router> {
    let admin = admin_routes(&state);
    let table = admin.table().to_vec();
    let mp = mp_routes();
    let mp_table = mp.table().to_vec();
    let features = Router::new()
        .merge(official_account::router())
        .merge(articles::router())
        .merge(members::router())
        // Per-IP limit on the mini-program's API (rate_limit_mp_per_minute), on its routes only:
        // the webhook and the console do not pay for it.
        .merge(mp.into_router().layer(middleware::from_fn_with_state(
            state.clone(),
            auth::ratelimit::mp_limit,
        )))
        .merge(dues::router())
        .merge(portal::router())
        .merge(http::public::static_router())
        .merge(http::health::router())
        .merge(http::openapi::router(table, mp_table))
        .merge(admin.into_router())
        .merge(auth::console::router(state.clone(), console_pages()))
        .fallback(http::not_found);
    http::layers(features, &state)
}

/// Every feature's console pages (`/admin/...`), wrapped by the console's CSRF layer and headers.
fn console_pages() -> Router<AppState> {
    Router::new()
        .merge(articles::console_router())
        .merge(submissions::console_router())
        .merge(push::console_router())
        .merge(dues::console_router())
        .merge(stats::console_router())
        .merge(official_account::console_router())
        .merge(activities::console_router())
        .merge(development::console_router())
        .merge(members::console_router())
        .merge(auth::console_router())
}

/// Every feature's background workers (`serve` and `worker` run them; `serve --no-workers` not).
fn spawn_workers(state: &AppState, workers: &TaskTracker) {
    workers.spawn(official_account::service::follower_sync_loop(state.clone()));
    workers.spawn(articles::worker::scheduled_publishing_loop(state.clone()));
    workers.spawn(members::worker::link_loop(state.clone()));
    workers.spawn(reseal_at_start(state.clone()));
    push::worker::spawn(state, workers);
    workers.spawn(development::worker::reminder_loop(state.clone()));
    workers.spawn(activities::worker::reminder_loop(state.clone()));
    dues::worker::spawn(state, workers);
}

/// Housekeeping every instance runs: interaction batches and content reloads.
/// `dangjian worker`: the background workers (pushes, syncs, housekeeping) without the HTTP
/// server, until SIGINT/SIGTERM; then drain like `run`.
pub async fn run_workers_until_stopped(settings: Settings, migrate: bool) -> anyhow::Result<()> {
    let state = build_state(settings, Overrides::default(), migrate).await?;
    let workers = TaskTracker::new();
    spawn_housekeeping(&state, &workers);
    spawn_workers(&state, &workers);
    tracing::info!("workers running (no HTTP server)");
    tokio::select! {
        _ = wait_for_signal() => tracing::info!("shutdown signal received; draining"),
        _ = state.shutdown.cancelled() => {}
    }
    state.shutdown.cancel();
    state.tasks.close();
    workers.close();
    let grace = Duration::from_secs(state.settings.shutdown_grace_secs);
    if tokio::time::timeout(grace, async {
        state.tasks.wait().await;
        workers.wait().await;
    })
    .await
    .is_err()
    {
        tracing::warn!("shutdown grace period over; some background work was abandoned");
    }
    state.db.close().await;
    Ok(())
}

fn spawn_housekeeping(state: &AppState, workers: &TaskTracker) {
    workers.spawn(official_account::service::interactions_loop(state.clone()));
    let st = state.clone();
    workers.spawn(async move { reload_content_loop(st).await });
    let st = state.clone();
    workers.spawn(auth::worker::retention_loop(st));
}

async fn reload_content_loop(st: AppState) {
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        #[cfg(unix)]
        let hup_fired = async {
            match hup.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let hup_fired = std::future::pending::<()>();
        let forced = tokio::select! {
            _ = st.shutdown.cancelled() => return,
            _ = hup_fired => true,
            _ = tokio::time::sleep(Duration::from_secs(2)) => false,
        };
        let result = if forced {
            st.content.reload().map(|_| true)
        } else {
            st.content.reload_if_changed()
        };
        if let Err(e) = result {
            tracing::error!(error = %format!("{e:#}"), "content files invalid; keeping the previous version");
        }
    }
}

async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

pub async fn build_state(
    settings: Settings,
    overrides: Overrides,
    migrate: bool,
) -> anyhow::Result<AppState> {
    let settings = Arc::new(settings);
    if settings.dev_mode() {
        // Demo values only (production refuses them), printed so a newcomer can sign requests.
        tracing::warn!(
            app_id = %settings.wechat_app_id,
            token = %settings.wechat_token.expose_secret(),
            aes_key = %settings.wechat_aes_key.expose_secret(),
            mode = ?settings.wechat_message_mode,
            "DEV MODE: demo WeChat credentials and the built-in fake WeChat API are in use; \
             set DANGJIAN_ENV=production with real credentials for a deployment"
        );
    }
    let db = Db::connect_with_acquire_timeout(
        &settings.database_url,
        Duration::from_millis(settings.database_acquire_timeout_ms),
    )
    .await
    .context("DANGJIAN_DATABASE_URL: cannot connect")?;
    if migrate {
        db.migrate().await.context("applying migrations")?;
    }
    let redis = match &settings.redis_url {
        Some(url) => Some(
            RedisCache::connect(
                url.expose_secret(),
                &settings.redis_prefix,
                Duration::from_millis(settings.redis_timeout_ms),
            )
            .await
            .context("DANGJIAN_REDIS_URL: cannot connect")?,
        ),
        None => None,
    };
    let clients = crate::platform::wechat::build_clients(&settings, redis.as_ref()).await?;
    let cache: Arc<dyn Cache> = match redis {
        Some(r) => Arc::new(r),
        None => {
            if settings.env == crate::platform::config::Environment::Production {
                tracing::warn!(
                    "no DANGJIAN_REDIS_URL: in-process cache; run a single instance only"
                );
            }
            // Half the bound for sessions and rate limits (TinyLFU keeps what is read), half for
            // de-duplication records in a store of their own (below).
            Arc::new(MemoryCache::with_capacity_bytes(
                settings.memory_cache_max_bytes / 2,
            ))
        }
    };
    // De-duplication records: in Redis when there is one (shared by the replicas), else in a
    // store of their own (the oldest unread record evicted first), so that a flood of messages
    // never evicts a session and the newest answers (what a retry asks for) are the ones kept.
    let (dedup_store, dedup_local_bytes): (Arc<dyn Cache>, u64) = if cache.as_memory().is_some() {
        let half = settings.memory_cache_max_bytes / 2;
        (
            Arc::new(MemoryCache::records_with_capacity_bytes(half)),
            half,
        )
    } else {
        (cache.clone(), settings.memory_cache_max_bytes / 8)
    };
    if db.backend() == db::Backend::Sqlite
        && settings.env == crate::platform::config::Environment::Production
    {
        tracing::warn!(
            "SQLite backend: a valid single-instance deployment; use PostgreSQL to scale out"
        );
    }
    let content = Arc::new(
        ContentStore::load_with(&settings.content_dir, FEATURE_CONTENT).with_context(|| {
            format!(
                "DANGJIAN_CONTENT_DIR: content in {} is invalid",
                settings.content_dir.display()
            )
        })?,
    );
    let clock: Arc<dyn Clock> = overrides.clock.unwrap_or_else(|| Arc::new(SystemClock));
    let webhook = Arc::new(WebhookKeys {
        token: settings.wechat_token.clone(),
        crypto: wechat::crypto::MessageCrypto::new(
            settings.wechat_aes_key.expose_secret(),
            &settings.wechat_app_id,
        )
        .context("DANGJIAN_WECHAT_AES_KEY")?,
    });
    let outbound: Arc<dyn Outbound> = match overrides.outbound {
        Some(o) => o,
        None => Arc::new(crate::platform::wechat::ClientOutbound(
            clients.wechat.clone(),
        )),
    };
    let (dev_fake, dev_fake_server) = match clients.dev_fake {
        Some((fake, server)) => (Some(fake), Some(server)),
        None => (None, None),
    };
    articles::store::seed_categories(&db, &content.get().menu.categories, clock.unix_ms()).await?;
    let cipher = Arc::new(crate::platform::pii::DataCipher::from_settings(&settings)?);
    let trusted_proxies = Arc::new(settings.trusted_proxy_list()?);
    crate::auth::store::ensure_first_admin(&db, &settings, clock.unix_ms())
        .await
        .context("creating the first administrator")?;
    let metrics = Arc::new(Metrics::default());
    let state = AppState::new(Services {
        cipher,
        trusted_proxies,
        dedup: Arc::new(Dedup::new(
            dedup_store,
            Duration::from_secs(settings.dedup_ttl_secs),
            Duration::from_secs(settings.dedup_pending_ttl_secs),
            dedup_local_bytes,
            metrics.clone(),
        )),
        settings,
        db,
        cache,
        content,
        metrics,
        clock,
        webhook,
        interactions: Arc::new(Interactions::default()),
        outbound,
        wechat: clients.wechat,
        mp: clients.mp,
        pay: clients.pay,
        dev_fake,
        dev_fake_server,
        tasks: TaskTracker::new(),
        shutdown: CancellationToken::new(),
    });
    if state.settings.dev_mode() {
        crate::articles::worker::load_demo_articles(&state).await?;
        crate::official_account::service::load_demo_followers(&state).await?;
    }
    Ok(state)
}
