//! The HTTP surface: one router, tower-http layers, one error shape.

pub mod admin;
pub mod console;
pub mod content_admin;
mod health;
pub mod moderation_admin;
pub mod mp;
pub mod openapi;
mod pages;
pub mod wechat;
pub mod wechat_admin;

use std::time::Duration;

use axum::{
    http::{HeaderName, StatusCode},
    middleware,
    response::Response,
    routing::get,
    Router,
};
use tower::ServiceBuilder;
use tower_http::{
    catch_panic::CatchPanicLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    timeout::TimeoutLayer,
    trace::TraceLayer,
};

pub use admin::{AppJson, AppQuery};

use crate::{error::error_response, startup::AppState};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn router(state: AppState) -> Router {
    let timeout = Duration::from_secs(state.settings.request_timeout_secs);
    Router::new()
        .route("/wechat", get(wechat::verify_url).post(wechat::receive))
        .route("/articles/{id}", get(pages::article))
        .merge(mp::router())
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/api/openapi.json", get(openapi::openapi))
        .route("/dev/wechat/outbox", get(crate::devtools::outbox))
        .merge(admin::router(state.clone()))
        .merge(console::router(state.clone()))
        .fallback(|| async { error_response(StatusCode::NOT_FOUND, "not_found", "no such route") })
        // Per-IP limit on /api/mp (rate_limit_mp_per_minute); CORS only when configured.
        .layer(middleware::from_fn_with_state(state.clone(), crate::auth::ratelimit::mp_limit))
        .layer(admin::cors_layer(&state.settings))
        .layer(middleware::from_fn_with_state(state.metrics.clone(), crate::metrics::track))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                        let id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
                        // The path only: query strings carry signatures and openids.
                        tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id)
                    }),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(CatchPanicLayer::custom(|_| -> Response {
                    error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; the incident has been logged")
                }))
                .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, timeout)),
        )
        .with_state(state)
}
