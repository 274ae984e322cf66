//! Operators' endpoints: liveness, readiness (database and cache), Prometheus metrics.
//!
//! `/metrics` is not public: it answers a request with `Authorization: Bearer <metrics_token>`
//! (`DANGJIAN_METRICS_TOKEN`, when set), or one whose TCP peer is in `DANGJIAN_METRICS_NETWORKS`
//! (default loopback) and that did not come through a proxy — a request carrying
//! `X-Forwarded-For`, `Forwarded` or `X-Real-IP` was relayed for someone else, so a reverse proxy on
//! the same host does not make the metrics public. Anything else gets 403 in the one shape.

use std::net::{IpAddr, SocketAddr};

use axum::{
    extract::{ConnectInfo, State},
    http::{header, Extensions, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use secrecy::ExposeSecret;
use serde::Serialize;
use subtle::ConstantTimeEq;

use crate::{app::AppState, platform::error::AppError};

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

fn metrics_allowed(st: &AppState, headers: &HeaderMap, peer: Option<IpAddr>) -> bool {
    if let Some(expected) = &st.settings.metrics_token {
        let sent = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
            .unwrap_or("");
        let expected = expected.expose_secret().as_bytes();
        if !sent.is_empty()
            && sent.len() == expected.len()
            && bool::from(sent.as_bytes().ct_eq(expected))
        {
            return true;
        }
    }
    let proxied = ["x-forwarded-for", "forwarded", "x-real-ip"]
        .iter()
        .any(|h| headers.contains_key(*h));
    let networks = st.settings.metrics_network_list().unwrap_or_default();
    !proxied && peer.is_some_and(|ip| networks.iter().any(|n| n.contains(&ip)))
}

pub async fn metrics(
    State(st): State<AppState>,
    headers: HeaderMap,
    extensions: Extensions,
) -> Response {
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if !metrics_allowed(&st, &headers, peer) {
        return AppError::Forbidden(
            "metrics need the metrics token or an address in DANGJIAN_METRICS_NETWORKS".into(),
        )
        .into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.metrics.render(),
    )
        .into_response()
}

/// `/healthz`, `/readyz`, `/metrics`.
pub fn router() -> axum::Router<AppState> {
    use axum::routing::get;
    axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}
