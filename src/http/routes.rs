//! The admin route table: every `/api/admin` route is declared once with the [`Permission`] it
//! needs; the table both builds the router and is enumerable ([`AdminRoutes::table`]), so a test
//! proves every route refuses users without the permission, and the OpenAPI document lists them.
//!
//! Each feature declares its own routes in its `admin.rs`:
//! ```text
//! pub fn routes(r: AdminRoutes) -> AdminRoutes {
//!     r.post("/api/admin/pushes", Permission::ManagePushes, create_push)
//!      .get("/api/admin/pushes/{id}", Permission::ManagePushes, get_push)
//! }
//! ```
//! and `startup::admin_routes` chains them. Handlers take `session: AdminSession` (already
//! permission-checked), take bodies as `AppJson<T>`, and write an audit entry for every write.
//!
//! The permission itself is checked by a [`Guard`] the auth feature supplies (this toolkit knows
//! no feature): 401 without a valid session, 403 without the permission, before the handler or any
//! body extractor runs.

use std::{future::Future, pin::Pin};

use axum::{
    extract::{DefaultBodyLimit, Request, State},
    handler::Handler,
    http::{header, HeaderValue, Method},
    middleware::{self, Next},
    response::Response,
    routing::{on, MethodFilter},
    Router,
};
use serde::Serialize;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::{app::AppState, platform::roles::Permission};

/// Checks a request against the permission its route declared; answers the rejection itself.
pub type Guard = fn(
    AppState,
    Permission,
    Request,
    Next,
) -> Pin<Box<dyn Future<Output = Response> + Send + 'static>>;

/// One row of the route table.
#[derive(Debug, Clone, Serialize)]
pub struct RouteSpec {
    #[serde(serialize_with = "ser_method")]
    pub method: Method,
    pub path: &'static str,
    pub permission: Permission,
}

fn ser_method<S: serde::Serializer>(m: &Method, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(m.as_str())
}

/// Builder that registers a route *and* its permission; the permission is enforced by a layer on
/// the route itself (401 without a valid session, 403 without the permission) before the
/// handler or any body extractor runs.
pub struct AdminRoutes {
    state: AppState,
    guard: Guard,
    router: Router<AppState>,
    table: Vec<RouteSpec>,
}

/// `r.get(path, permission, handler)` and its siblings: [`AdminRoutes::route`] with the method.
macro_rules! method {
    ($name:ident, $method:ident) => {
        pub fn $name<H: Handler<T, AppState>, T: 'static>(
            self,
            path: &'static str,
            p: Permission,
            h: H,
        ) -> AdminRoutes {
            self.route(Method::$method, path, p, h)
        }
    };
}

impl AdminRoutes {
    pub fn new(state: AppState, guard: Guard) -> AdminRoutes {
        AdminRoutes {
            state,
            guard,
            router: Router::new(),
            table: Vec::new(),
        }
    }

    pub fn route<H, T>(
        self,
        method: Method,
        path: &'static str,
        permission: Permission,
        handler: H,
    ) -> AdminRoutes
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.route_with_limit(method, path, permission, None, handler)
    }

    /// Like [`route`](Self::route) with its own body limit (the roster import takes 5 MiB).
    pub fn route_with_limit<H, T>(
        mut self,
        method: Method,
        path: &'static str,
        permission: Permission,
        body_limit: Option<usize>,
        handler: H,
    ) -> AdminRoutes
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        assert!(
            path.starts_with("/api/admin/"),
            "admin routes live under /api/admin/: {path}"
        );
        assert!(
            !self
                .table
                .iter()
                .any(|r| r.method == method && r.path == path),
            "route declared twice: {method} {path}"
        );
        let filter = MethodFilter::try_from(method.clone()).expect("a standard HTTP method");
        let mut mr = on(filter, handler);
        if let Some(limit) = body_limit {
            mr = mr.layer(DefaultBodyLimit::max(limit));
        }
        let mr = mr.route_layer(middleware::from_fn_with_state(
            (self.state.clone(), permission, self.guard),
            enforce,
        ));
        self.router = self.router.route(path, mr);
        self.table.push(RouteSpec {
            method,
            path,
            permission,
        });
        self
    }

    method!(get, GET);
    method!(post, POST);
    method!(put, PUT);
    method!(patch, PATCH);
    method!(delete, DELETE);

    pub fn state(&self) -> &AppState {
        &self.state
    }

    pub fn table(&self) -> &[RouteSpec] {
        &self.table
    }

    pub fn into_router(self) -> Router<AppState> {
        let limit = self.state.settings.admin_max_body_bytes;
        self.router
            // Route-level limits (set above) take precedence over this default.
            .layer(DefaultBodyLimit::max(limit))
            .layer(SetResponseHeaderLayer::if_not_present(
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-store"),
            ))
            .layer(SetResponseHeaderLayer::if_not_present(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ))
    }
}

async fn enforce(
    State((st, permission, guard)): State<(AppState, Permission, Guard)>,
    req: Request,
    next: Next,
) -> Response {
    if permission == Permission::Public {
        return next.run(req).await;
    }
    guard(st, permission, req, next).await
}

/// CORS is closed by default (no CORS headers at all); `cors_allowed_origins` opens the API to
/// the listed origins (no credentials: the API uses bearer tokens).
pub fn cors_layer(
    settings: &crate::platform::config::Settings,
) -> tower::util::Either<tower_http::cors::CorsLayer, tower::layer::util::Identity> {
    let origins: Vec<HeaderValue> = settings
        .cors_allowed_origins
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .filter_map(|s| HeaderValue::from_str(s).ok())
        .collect();
    if origins.is_empty() {
        return tower::util::Either::Right(tower::layer::util::Identity::new());
    }
    tower::util::Either::Left(
        tower_http::cors::CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .max_age(std::time::Duration::from_secs(600)),
    )
}
