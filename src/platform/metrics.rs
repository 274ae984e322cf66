//! Prometheus metrics: HTTP requests by route and status, latency, WeChat messages by type.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use axum::{
    extract::{MatchedPath, Request},
    response::Response,
};
use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder},
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// One of [`method_label`]'s values.
    pub method: &'static str,
    pub route: RouteLabel,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: RouteLabel,
}

/// A route template as a label value: the router's own shared string, so counting a request
/// copies nothing (`unmatched` when no route matched).
#[derive(Clone, Debug)]
pub enum RouteLabel {
    Matched(MatchedPath),
    Unmatched,
}

impl RouteLabel {
    pub fn as_str(&self) -> &str {
        match self {
            RouteLabel::Matched(p) => p.as_str(),
            RouteLabel::Unmatched => "unmatched",
        }
    }
}

impl PartialEq for RouteLabel {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for RouteLabel {}

impl std::hash::Hash for RouteLabel {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl EncodeLabelValue for RouteLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MessageLabels {
    /// [`InboundMessage::msg_type_label`](wechat::message::InboundMessage::msg_type_label).
    pub msg_type: &'static str,
    /// [`InboundMessage::event_label`](wechat::message::InboundMessage::event_label), `""` for
    /// a message.
    pub event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_latency: Family<RouteLabels, Histogram>,
    pub wechat_messages: Family<MessageLabels, Counter>,
    /// How webhook deliveries ended: replied, retry_replayed, deferred (answered `success`,
    /// followed up by customer-service message), rejected.
    pub webhook_outcomes: Family<OutcomeLabels, Counter>,
    /// Push sends by channel and outcome (sent, retry, failed, skipped, quota, unknown).
    pub push_sends: Family<PushLabels, Counter>,
    /// Push send errors by channel and code (WeChat errcode, `http_5xx`, `transport`).
    pub push_errors: Family<PushErrorLabels, Counter>,
    /// Rows found in flight after their worker's lease expired (crash or hang): marked `unknown`.
    pub push_unknown: Counter,
    /// Calls that could not use the shared cache (Redis down) and degraded, by component
    /// (`dedup`, `rate_limit`, `session`, ...).
    pub cache_fallbacks: Family<ComponentLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ComponentLabels {
    pub component: String,
}

/// The methods a time series may be labelled with; anything else is `OTHER`, so an invented
/// method cannot create a new series.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method as M;
    match *method {
        M::GET => "GET",
        M::HEAD => "HEAD",
        M::POST => "POST",
        M::PUT => "PUT",
        M::PATCH => "PATCH",
        M::DELETE => "DELETE",
        M::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PushLabels {
    pub channel: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PushErrorLabels {
    pub channel: String,
    pub code: String,
}

fn latency_histogram() -> Histogram {
    // 0.25 ms .. ~8 s
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.00025, 2.0, 16,
    ))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("dangjian");
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_latency = Family::<RouteLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let wechat_messages = Family::<MessageLabels, Counter>::default();
        let webhook_outcomes = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            http_latency.clone(),
        );
        registry.register(
            "wechat_messages",
            "WeChat messages received, by type and event",
            wechat_messages.clone(),
        );
        registry.register(
            "webhook_outcomes",
            "How webhook deliveries were answered",
            webhook_outcomes.clone(),
        );
        let push_sends = Family::<PushLabels, Counter>::default();
        let push_errors = Family::<PushErrorLabels, Counter>::default();
        let push_unknown = Counter::default();
        registry.register(
            "push_sends",
            "Push sends by channel and outcome",
            push_sends.clone(),
        );
        registry.register(
            "push_errors",
            "Push send errors by channel and WeChat errcode",
            push_errors.clone(),
        );
        registry.register(
            "push_unknown",
            "Push sends found in flight after a worker stopped",
            push_unknown.clone(),
        );
        let cache_fallbacks = Family::<ComponentLabels, Counter>::default();
        registry.register(
            "cache_fallbacks",
            "Calls that degraded because the shared cache (Redis) was unavailable",
            cache_fallbacks.clone(),
        );
        Metrics {
            cache_fallbacks,
            registry,
            http_requests,
            http_latency,
            wechat_messages,
            webhook_outcomes,
            push_sends,
            push_errors,
            push_unknown,
        }
    }
}

impl Metrics {
    pub fn register<M: prometheus_client::registry::Metric>(
        &mut self,
        name: &str,
        help: &str,
        metric: M,
    ) {
        self.registry.register(name, help, metric);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }

    /// Count one received message under its fixed type and event names (unknown ones as
    /// `unknown`, so a new name cannot create a series).
    pub fn message(&self, msg: &wechat::message::InboundMessage) {
        self.wechat_messages
            .get_or_create(&MessageLabels {
                msg_type: msg.msg_type_label(),
                event: msg.event_label().unwrap_or(""),
            })
            .inc();
    }

    /// Count one push send: its outcome (`sent`, `retry`, `failed`, ...) and WeChat's error code.
    pub fn push_outcome(&self, channel: &str, outcome: &str, code: Option<&str>) {
        self.push_sends
            .get_or_create(&PushLabels {
                channel: channel.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        if let Some(code) = code {
            self.push_errors
                .get_or_create(&PushErrorLabels {
                    channel: channel.to_owned(),
                    code: code.to_owned(),
                })
                .inc();
        }
    }

    /// One call of `component` that could not use the shared cache and degraded.
    pub fn cache_fallback(&self, component: &str) {
        self.cache_fallbacks
            .get_or_create(&ComponentLabels {
                component: component.to_owned(),
            })
            .inc();
    }

    pub fn outcome(&self, outcome: &'static str) {
        self.webhook_outcomes
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }
}

/// Layer: count and time every request by its route template (never the raw path). Added with
/// `Router::layer`, so it runs where the matched route is known. A service of its own rather than
/// a `from_fn` middleware, which boxes two futures per request.
#[derive(Clone)]
pub struct TrackLayer(pub Arc<Metrics>);

impl<S> tower::Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Track<S> {
        Track {
            inner,
            metrics: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Track<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S> tower::Service<Request> for Track<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = TrackFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let route = match req.extensions().get::<MatchedPath>() {
            Some(p) => RouteLabel::Matched(p.clone()),
            None => RouteLabel::Unmatched,
        };
        let done = Tracked {
            metrics: self.metrics.clone(),
            method: method_label(req.method()),
            route,
            start: Instant::now(),
        };
        TrackFuture {
            inner: self.inner.call(req),
            done: Some(done),
        }
    }
}

/// What a finished request is counted under.
struct Tracked {
    metrics: Arc<Metrics>,
    method: &'static str,
    route: RouteLabel,
    start: Instant,
}

pin_project_lite::pin_project! {
    pub struct TrackFuture<F> {
        #[pin]
        inner: F,
        done: Option<Tracked>,
    }
}

impl<F, E> Future for TrackFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        if let (Some(t), Ok(response)) = (this.done.take(), &result) {
            t.metrics
                .http_latency
                .get_or_create(&RouteLabels {
                    route: t.route.clone(),
                })
                .observe(t.start.elapsed().as_secs_f64());
            t.metrics
                .http_requests
                .get_or_create(&HttpLabels {
                    method: t.method,
                    route: t.route,
                    status: response.status().as_u16(),
                })
                .inc();
        }
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_outcome_is_counted_under_its_label_once_it_happened() {
        let m = Metrics::default();
        assert!(
            !m.render().contains("outcome=\"replied\""),
            "created with the first"
        );
        m.outcome("replied");
        m.outcome("deferred");
        m.outcome("replied");
        let text = m.render();
        assert!(
            text.contains("dangjian_webhook_outcomes_total{outcome=\"replied\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("dangjian_webhook_outcomes_total{outcome=\"deferred\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn invented_methods_are_labelled_other() {
        let m = |s: &str| axum::http::Method::from_bytes(s.as_bytes()).unwrap();
        assert_eq!(method_label(&m("GET")), "GET");
        assert_eq!(method_label(&m("DELETE")), "DELETE");
        for invented in ["FOO", "BREW", "get", "PROPFIND", "X1234567"] {
            assert_eq!(method_label(&m(invented)), "OTHER", "{invented}");
        }
    }

    #[tokio::test]
    async fn requests_are_counted_by_route_template_or_as_unmatched() {
        use tower::ServiceExt;
        let metrics = std::sync::Arc::new(Metrics::default());
        let app = axum::Router::new()
            .route("/items/{id}", axum::routing::get(|| async { "ok" }))
            .layer(TrackLayer(metrics.clone()));
        for path in ["/items/1", "/items/2", "/nowhere/3"] {
            let req = axum::http::Request::get(path)
                .body(axum::body::Body::empty())
                .unwrap();
            app.clone().oneshot(req).await.unwrap();
        }
        let text = metrics.render();
        assert!(
            text.contains(
                r#"dangjian_http_requests_total{method="GET",route="/items/{id}",status="200"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"dangjian_http_requests_total{method="GET",route="unmatched",status="404"} 1"#
            ),
            "{text}"
        );
        assert!(
            !text.contains("/items/1") && !text.contains("/nowhere"),
            "{text}"
        );
    }
}
