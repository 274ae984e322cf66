//! The HTTP toolkit every feature shares, importing none of them: the JSON extractors with the
//! one error shape (`json`), the id extractor, pagination and list envelope (`extract`), the
//! admin route table with permissions (`routes`), OpenAPI, health, the public pages' headers
//! (`public`), and the edge every request passes (`edge`).
//! `startup` assembles the features' routers and wraps them with [`layers`].

pub mod console;
pub mod doc;
pub mod edge;
pub mod extract;
pub mod health;
pub mod json;
pub mod openapi;
pub mod public;
pub mod routes;

use std::time::Duration;

use axum::{http::StatusCode, response::Response, Router};

pub use extract::{page_number, page_of, Id, ItemsOut, ListOut, MAX_PAGE};
pub use json::{AppJson, AppQuery, OptionalJson};

use crate::{app::AppState, platform::error::error_response};

/// The answer for a path no route matches, in the one error shape.
pub async fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "not_found", "no such route")
}

/// The layers every request passes: around the finished router, the [`edge::Edge`] (request
/// id, tracing span, request timeout, panic → 500 in the one shape); inside it, where the matched
/// route is known, metrics and CORS (closed unless configured).
pub fn layers(router: Router<AppState>, state: &AppState) -> edge::Edge<Router> {
    let timeout = Duration::from_secs(state.settings.request_timeout_secs);
    // CORS innermost, so that the preflights it answers are counted too.
    let router = match routes::cors_layer(&state.settings) {
        Some(cors) => router.layer(cors),
        None => router,
    };
    let router = router.layer(crate::platform::metrics::TrackLayer(state.metrics.clone()));
    edge::Edge::new(router.with_state(state.clone()), timeout)
}
