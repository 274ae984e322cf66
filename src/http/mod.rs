//! The HTTP toolkit every feature shares, importing none of them: the JSON extractors with the
//! one error shape (`json`), the id extractor, pagination and list envelope (`extract`), the
//! admin route table with permissions (`routes`), OpenAPI, health, the public pages' headers
//! (`public`), and the tower-http layers.
//! `startup` assembles the features' routers and wraps them with [`layers`].

pub mod console;
pub mod doc;
pub mod extract;
pub mod health;
pub mod json;
pub mod openapi;
pub mod public;
pub mod routes;

use std::time::Duration;

use axum::{
    extract::{Request, State},
    http::{HeaderName, StatusCode},
    middleware::{self, Next},
    response::Response,
    Router,
};
use tower::ServiceBuilder;
use tower_http::{
    catch_panic::CatchPanicLayer,
    request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer},
    trace::TraceLayer,
};

pub use extract::{page_number, page_of, Id, ItemsOut, ListOut, MAX_PAGE};
pub use json::{AppJson, AppQuery, OptionalJson};

use crate::{app::AppState, platform::error::error_response};

/// The request timeout (`request_timeout_secs`): a request not answered by then (e.g. its
/// database connection hung) is dropped and answered 503 `request_timeout` in the one shape.
async fn request_deadline(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            tracing::warn!(limit = ?limit, "request timed out");
            error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "request_timeout",
                "the request took too long; try again shortly",
            )
        }
    }
}

/// The answer for a path no route matches, in the one error shape.
pub async fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "not_found", "no such route")
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Request ids in the shape of a random (version 4) UUID, from the thread's generator: a fresh
/// UUID from the operating system costs a system call per request (`bench/README.md`).
#[derive(Clone, Copy, Default)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let id = uuid::Builder::from_random_bytes(rand::random())
            .into_uuid()
            .hyphenated()
            .encode_lower(&mut buf);
        axum::http::HeaderValue::from_str(id)
            .ok()
            .map(RequestId::new)
    }
}

/// The layers every request passes: around the finished router, request id, tracing (the
/// path only: query strings carry signatures and openids), panic → 500 in the one shape, and the
/// request timeout; inside it, where the matched route is known, metrics and CORS (closed unless
/// configured).
///
/// The outer ones wrap the router once, as one service: a layer added with `Router::layer`
/// wraps every route in a boxed service of its own, and every request clones those boxes, one
/// allocation per layer (`bench/README.md`).
pub fn layers(router: Router<AppState>, state: &AppState) -> Router {
    let timeout = Duration::from_secs(state.settings.request_timeout_secs);
    // CORS innermost, so that the preflights it answers are counted too.
    let router = match routes::cors_layer(&state.settings) {
        Some(cors) => router.layer(cors),
        None => router,
    };
    let router = router.layer(middleware::from_fn_with_state(
        state.metrics.clone(),
        crate::platform::metrics::track,
    ));
    let around = ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(REQUEST_ID, RandomRequestId))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                let id = req
                    .headers()
                    .get(REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id)
            }),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(CatchPanicLayer::custom(|_| -> Response {
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error; the incident has been logged",
            )
        }))
        .layer(middleware::from_fn_with_state(timeout, request_deadline))
        .service(router.with_state(state.clone()));
    Router::new().fallback_service(around)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_version_4_uuids() {
        let req = axum::http::Request::new(());
        let mut make = RandomRequestId;
        let a = make.make_request_id(&req).unwrap();
        let b = make.make_request_id(&req).unwrap();
        let a = a.header_value().to_str().unwrap().to_owned();
        assert_ne!(a, b.header_value().to_str().unwrap());
        let groups: Vec<&str> = a.split('-').collect();
        assert_eq!(
            groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12],
            "{a}"
        );
        assert!(a.chars().all(|c| c == '-' || c.is_ascii_hexdigit()), "{a}");
        assert!(groups[2].starts_with('4'), "version 4: {a}");
        assert!(
            matches!(groups[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'),
            "variant: {a}"
        );
    }
}
