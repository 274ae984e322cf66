//! Members: org units, the roster (import, search, reveal), and binding a mini-program user to
//! the roster.

pub mod admin;
pub mod cli;
pub mod mp;
pub mod org_admin;
pub mod rules;
pub mod store;

use axum::{
    routing::{get, post},
    Router,
};

use crate::{app::AppState, http::routes::AdminRoutes};

/// This feature's admin routes: org units and the roster.
pub fn admin_routes(r: AdminRoutes) -> AdminRoutes {
    admin::routes(org_admin::routes(r))
}

/// The mini-program's account routes: login, bind, me, subscribe consent.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/mp/login", post(mp::login))
        .route("/api/mp/bind", post(mp::bind))
        .route("/api/mp/me", get(mp::me))
        .route("/api/mp/subscriptions", post(mp::subscriptions))
}
