//! `/api/admin`: the admin API. Every route is declared in ONE table with the [`Permission`] it
//! needs; the table both builds the router and is enumerable (`routes(state).table()`), so a test
//! proves every route refuses users without the permission.
//!
//! Adding routes from another module:
//! ```text
//! pub fn routes(r: AdminRoutes) -> AdminRoutes {
//!     r.post("/api/admin/pushes", Permission::ManagePushes, create_push)
//!      .get("/api/admin/pushes/{id}", Permission::ManagePushes, get_push)
//! }
//! ```
//! and one line in [`routes`] below. Handlers take `session: AdminSession` (already
//! permission-checked), use `session.org_scope(&st.db)` for secretaries' org-unit limits, take
//! bodies as `AppJson<T>`, and call `audit::record(&mut *tx, &session.audit(..).details(..))` for
//! every write.

mod audit_log;
mod auth;
pub mod json;
pub mod members;
mod org_units;
mod users;

use axum::{
    extract::{DefaultBodyLimit, Request, State},
    handler::Handler,
    http::{header, HeaderValue, Method},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{on, MethodFilter},
    Router,
};
use serde::Serialize;
use tower_http::set_header::SetResponseHeaderLayer;

pub use json::{AppJson, AppQuery};

use crate::{
    auth::{AdminSession, Permission},
    startup::AppState,
};

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
    router: Router<AppState>,
    table: Vec<RouteSpec>,
}

impl AdminRoutes {
    pub fn new(state: AppState) -> AdminRoutes {
        AdminRoutes {
            state,
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
            (self.state.clone(), permission),
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

    pub fn get<H: Handler<T, AppState>, T: 'static>(
        self,
        path: &'static str,
        p: Permission,
        h: H,
    ) -> AdminRoutes {
        self.route(Method::GET, path, p, h)
    }

    pub fn post<H: Handler<T, AppState>, T: 'static>(
        self,
        path: &'static str,
        p: Permission,
        h: H,
    ) -> AdminRoutes {
        self.route(Method::POST, path, p, h)
    }

    pub fn put<H: Handler<T, AppState>, T: 'static>(
        self,
        path: &'static str,
        p: Permission,
        h: H,
    ) -> AdminRoutes {
        self.route(Method::PUT, path, p, h)
    }

    pub fn patch<H: Handler<T, AppState>, T: 'static>(
        self,
        path: &'static str,
        p: Permission,
        h: H,
    ) -> AdminRoutes {
        self.route(Method::PATCH, path, p, h)
    }

    pub fn delete<H: Handler<T, AppState>, T: 'static>(
        self,
        path: &'static str,
        p: Permission,
        h: H,
    ) -> AdminRoutes {
        self.route(Method::DELETE, path, p, h)
    }

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
    State((st, permission)): State<(AppState, Permission)>,
    req: Request,
    next: Next,
) -> Response {
    if permission == Permission::Public {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let session = match AdminSession::resolve(&parts, &st).await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = session.require(permission) {
        return e.into_response();
    }
    parts.extensions.insert(session);
    next.run(Request::from_parts(parts, body)).await
}

/// The whole admin route table. Other areas add theirs here, one line each.
pub fn routes(state: AppState) -> AdminRoutes {
    let r = AdminRoutes::new(state);
    let r = auth::routes(r);
    let r = users::routes(r);
    let r = org_units::routes(r);
    let r = members::routes(r);
    let r = crate::http::content_admin::routes(r);
    let r = crate::http::wechat_admin::routes(r);
    let r = crate::push::http::routes(r);
    let r = crate::http::moderation_admin::routes(r);
    audit_log::routes(r)
}

/// The `/api/admin` router, mounted by `http::router`.
pub fn router(state: AppState) -> Router<AppState> {
    routes(state).into_router()
}

/// Unix milliseconds → RFC 3339 (UTC) for responses.
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// RFC 3339 or unix milliseconds → unix milliseconds.
pub fn parse_time(s: &str) -> Option<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Some(ms);
    }
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(crate::db::unix_ms)
}

/// CORS is closed by default (no CORS headers at all); `cors_allowed_origins` opens the API to
/// the listed origins (no credentials: the API uses bearer tokens).
pub fn cors_layer(
    settings: &crate::config::Settings,
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
