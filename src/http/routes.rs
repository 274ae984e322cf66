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
    routing::{on, MethodFilter, MethodRouter},
    Router,
};
use serde::Serialize;
use tower_http::set_header::SetResponseHeaderLayer;

use super::doc::{DocArgs, DocFn, DocHandler};
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
    /// Documents the handler's arguments (see [`super::doc`]).
    #[serde(skip)]
    pub doc: DocFn,
    /// Documents the handler's answer.
    #[serde(skip)]
    pub response_doc: DocFn,
    /// More documentation the feature gives by hand ([`AdminRoutes::documented`]): a body the
    /// handler reads itself (CSV or JSON, multipart, raw bytes).
    #[serde(skip)]
    pub extra_doc: Option<DocFn>,
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
        pub fn $name<H: Handler<T, AppState> + DocHandler<T>, T: DocArgs + 'static>(
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
        H: Handler<T, AppState> + DocHandler<T>,
        T: DocArgs + 'static,
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
        H: Handler<T, AppState> + DocHandler<T>,
        T: DocArgs + 'static,
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
            doc: <T as DocArgs>::document,
            response_doc: <H as DocHandler<T>>::document,
            extra_doc: None,
        });
        self
    }

    /// Adds hand-written documentation to the route declared last: for a body its handler
    /// reads itself, which its argument types cannot describe.
    pub fn documented(mut self, doc: DocFn) -> AdminRoutes {
        self.table
            .last_mut()
            .expect("documented() follows a route")
            .extra_doc = Some(doc);
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

/// One mini-program route: what the OpenAPI document says of it.
#[derive(Debug, Clone)]
pub struct MpRouteSpec {
    pub method: Method,
    pub path: &'static str,
    pub summary: &'static str,
    pub doc: DocFn,
    pub response_doc: DocFn,
}

/// Builder of the `/api/mp` routes: registers a route with its one-line summary and its
/// handler's documentation (login is not a permission here: a handler that takes an
/// `MpSession` needs the bearer token, and the document says so).
#[derive(Default)]
pub struct MpRoutes {
    router: Router<AppState>,
    table: Vec<MpRouteSpec>,
}

macro_rules! mp_method {
    ($name:ident, $method:ident) => {
        pub fn $name<H: Handler<T, AppState> + DocHandler<T>, T: DocArgs + 'static>(
            self,
            path: &'static str,
            summary: &'static str,
            h: H,
        ) -> MpRoutes {
            self.route(Method::$method, path, summary, h, |mr| mr)
        }
    };
}

impl MpRoutes {
    pub fn new() -> MpRoutes {
        MpRoutes::default()
    }

    /// A route; `wrap` may add layers to its method router (an `Extension`, say).
    pub fn route<H, T>(
        mut self,
        method: Method,
        path: &'static str,
        summary: &'static str,
        handler: H,
        wrap: impl FnOnce(MethodRouter<AppState>) -> MethodRouter<AppState>,
    ) -> MpRoutes
    where
        H: Handler<T, AppState> + DocHandler<T>,
        T: DocArgs + 'static,
    {
        assert!(
            path.starts_with("/api/mp/"),
            "mini-program routes live under /api/mp/: {path}"
        );
        let filter = MethodFilter::try_from(method.clone()).expect("a standard HTTP method");
        self.router = self.router.route(path, wrap(on(filter, handler)));
        self.table.push(MpRouteSpec {
            method,
            path,
            summary,
            doc: <T as DocArgs>::document,
            response_doc: <H as DocHandler<T>>::document,
        });
        self
    }

    mp_method!(get, GET);
    mp_method!(post, POST);
    mp_method!(delete, DELETE);

    pub fn table(&self) -> &[MpRouteSpec] {
        &self.table
    }

    pub fn into_router(self) -> Router<AppState> {
        self.router
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
) -> Option<tower_http::cors::CorsLayer> {
    let origins: Vec<HeaderValue> = settings
        .cors_allowed_origins
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .filter_map(|s| HeaderValue::from_str(s).ok())
        .collect();
    if origins.is_empty() {
        return None;
    }
    Some(
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
