//! What every request passes on its way in and out, as one service around the router: its
//! request id, its tracing span, the request timeout, and a panic turned into the one error
//! shape.
//!
//! One service rather than a stack of tower-http layers (`SetRequestId`, `Trace`,
//! `PropagateRequestId`, `CatchPanic`, a timeout middleware): each layer wraps the response
//! future in one more future and some box theirs, and on the webhook's hot path the stack of
//! five cost about 6,700 instructions a message, 6% of all (`bench/README.md`). This one
//! allocates one box per request.
//!
//! - **Request id** (`x-request-id`): kept when the client sent one, else a fresh random
//!   (version 4) UUID; the handler sees it in the request headers and the client gets it back.
//! - **Tracing**: a span `http` with the method, the path (never the query: it carries
//!   signatures and openids) and the request id; a 5xx answer is logged as an error with its
//!   latency, every other answer at debug level.
//! - **Timeout** (`request_timeout_secs`): a request not answered in time is dropped and answered
//!   503 `request_timeout`.
//! - **Panics**: a handler that panics is answered 500 `internal` and logged; the connection and
//!   the server carry on.

use std::{
    convert::Infallible,
    future::Future,
    panic::AssertUnwindSafe,
    pin::Pin,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{
    extract::Request,
    http::{HeaderName, HeaderValue, StatusCode},
    response::Response,
};
use futures_util::FutureExt;
use tower::Service;
use tracing::Instrument;

use axum::response::IntoResponse;

use crate::platform::error::{error_response, AppError};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The edge around `inner` (the finished router).
#[derive(Clone)]
pub struct Edge<S> {
    inner: S,
    timeout: Duration,
}

impl<S> Edge<S> {
    pub fn new(inner: S, timeout: Duration) -> Edge<S> {
        Edge { inner, timeout }
    }
}

impl<S> Service<Request> for Edge<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let started = Instant::now();
        let id = match req.headers().get(REQUEST_ID) {
            Some(v) => v.clone(),
            None => {
                let id = random_request_id();
                req.headers_mut().insert(REQUEST_ID, id.clone());
                id
            }
        };
        let span = tracing::info_span!(
            "http",
            method = %req.method(),
            path = %req.uri().path(),
            request_id = %id.to_str().unwrap_or(""),
        );
        let timeout = self.timeout;
        // A panic while the router sets the request up counts like one in the handler.
        let call = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let _entered = span.enter();
            self.inner.call(req)
        }));
        Box::pin(
            async move {
                let outcome = match call {
                    Ok(future) => {
                        AssertUnwindSafe(tokio::time::timeout(timeout, future))
                            .catch_unwind()
                            .await
                    }
                    Err(panic) => Err(panic),
                };
                let mut response = match outcome {
                    Ok(Ok(Ok(response))) => response,
                    Ok(Ok(Err(never))) => match never {},
                    Ok(Err(_elapsed)) => {
                        tracing::warn!(limit = ?timeout, "request timed out");
                        error_response(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "request_timeout",
                            "the request took too long; try again shortly",
                        )
                    }
                    // The one mapping of internal errors: 500 `internal`, the cause logged.
                    Err(panic) => AppError::Internal(anyhow::anyhow!(
                        "request handler panicked: {}",
                        panic_message(&*panic)
                    ))
                    .into_response(),
                };
                let status = response.status();
                let latency_ms = || started.elapsed().as_secs_f64() * 1000.0;
                if status.is_server_error() {
                    tracing::error!(
                        status = status.as_u16(),
                        latency_ms = latency_ms(),
                        "response failed"
                    );
                } else {
                    // Fields are evaluated only when the event is enabled: no clock read otherwise.
                    tracing::debug!(
                        status = status.as_u16(),
                        latency_ms = latency_ms(),
                        "finished processing request"
                    );
                }
                response.headers_mut().entry(REQUEST_ID).or_insert(id);
                Ok(response)
            }
            .instrument(span),
        )
    }
}

/// A request id in the shape of a random (version 4) UUID, from the thread's generator: a fresh
/// UUID from the operating system costs a system call per request (`bench/README.md`).
fn random_request_id() -> HeaderValue {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let id = uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .hyphenated()
        .encode_lower(&mut buf);
    HeaderValue::from_str(id).expect("a UUID is a valid header value")
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not a string)")
}

#[cfg(test)]
mod tests {
    use axum::{body::Body, routing::get, Router};
    use tower::ServiceExt;

    use super::*;

    fn app() -> Edge<Router> {
        let router = Router::new()
            .route(
                "/echo-id",
                get(|req: Request| async move {
                    req.headers()
                        .get(REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("none")
                        .to_owned()
                }),
            )
            .route(
                "/panic",
                get(|| async {
                    if true {
                        panic!("a handler bug");
                    }
                    "unreachable"
                }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    "late"
                }),
            );
        Edge::new(router, Duration::from_secs(5))
    }

    async fn send(
        app: &Edge<Router>,
        path: &str,
        id: Option<&str>,
    ) -> (StatusCode, String, String) {
        let mut req = Request::get(path);
        if let Some(id) = id {
            req = req.header(REQUEST_ID, id);
        }
        let resp = app
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let id = resp
            .headers()
            .get(REQUEST_ID)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, id, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn a_request_gets_an_id_that_the_handler_and_the_client_both_see() {
        let app = app();
        let (status, id, seen) = send(&app, "/echo-id", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(id, seen, "the handler saw the id the client got");
        let groups: Vec<&str> = id.split('-').collect();
        assert_eq!(
            groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12],
            "{id}"
        );
        assert!(
            id.chars().all(|c| c == '-' || c.is_ascii_hexdigit()),
            "{id}"
        );
        assert!(groups[2].starts_with('4'), "version 4: {id}");
        assert!(
            matches!(groups[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'),
            "variant: {id}"
        );
        let (_, other, _) = send(&app, "/echo-id", None).await;
        assert_ne!(id, other, "each request its own id");
    }

    #[tokio::test]
    async fn an_id_the_client_sent_is_kept() {
        let (_, id, seen) = send(&app(), "/echo-id", Some("trace-from-the-proxy")).await;
        assert_eq!(id, "trace-from-the-proxy");
        assert_eq!(seen, "trace-from-the-proxy");
    }

    #[tokio::test]
    async fn a_panicking_handler_is_answered_500_in_the_one_shape_and_the_next_request_is_served() {
        let app = app();
        let (status, id, body) = send(&app, "/panic", None).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!id.is_empty(), "the error carries the request id too");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["code"], "internal", "{body}");
        assert!(
            !body.contains("a handler bug"),
            "no panic text to the client: {body}"
        );
        let (status, _, _) = send(&app, "/echo-id", None).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_past_the_timeout_is_answered_503_request_timeout() {
        let (status, id, body) = send(&app(), "/slow", None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!id.is_empty());
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["code"], "request_timeout", "{body}");
    }

    #[tokio::test]
    async fn an_unknown_path_keeps_the_routers_answer() {
        let (status, id, _) = send(&app(), "/nowhere", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(!id.is_empty());
    }
}
