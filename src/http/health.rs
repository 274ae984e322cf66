//! Operators' endpoints: liveness, readiness (database and cache), Prometheus metrics.

use axum::{
    extract::State,
    http::{header, StatusCode},
    response::IntoResponse,
    Json,
};
use serde::Serialize;

use crate::app::AppState;

#[derive(Serialize)]
struct Live {
    status: &'static str,
}

#[derive(Serialize)]
struct CacheStatus {
    kind: &'static str,
    status: &'static str,
}

#[derive(Serialize)]
struct Ready {
    status: &'static str,
    database: &'static str,
    cache: CacheStatus,
}

pub async fn healthz() -> impl IntoResponse {
    Json(Live { status: "ok" })
}

pub async fn readyz(State(st): State<AppState>) -> impl IntoResponse {
    let db = st.db.ping().await.is_ok();
    let cache = st.cache.ping().await.is_ok();
    let status = if db && cache && !st.shutdown.is_cancelled() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = |ok: bool| if ok { "ok" } else { "unavailable" };
    (
        status,
        Json(Ready {
            status: word(status == StatusCode::OK),
            database: word(db),
            cache: CacheStatus {
                kind: st.cache.kind(),
                status: word(cache),
            },
        }),
    )
}

pub async fn metrics(State(st): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.metrics.render(),
    )
}

/// `/healthz`, `/readyz`, `/metrics`.
pub fn router() -> axum::Router<AppState> {
    use axum::routing::get;
    axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}
