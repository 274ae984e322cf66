//! Statistics for decisions (统计): Party-dues collection per org unit and month, attendance of
//! the 三会一课 per org unit (and per member), follower growth and unsubscribes per day and
//! month, push delivery and failure rates per push and month, and moderation volume and
//! turnaround. `GET /api/admin/stats` answers JSON or, with `format=csv&section=...`, one table
//! as CSV; `/admin/stats` draws the same figures as SVG charts (`chart.rs`).
//!
//! A read model: `store.rs` only reads (other features' tables among them, grouped); `rules.rs`
//! does the arithmetic; `service.rs` decides which sections a session sees (see there).

pub mod admin;
pub mod chart;
pub mod console;
pub mod rules;
pub mod service;
pub mod store;

use axum::{routing::get, Router};

use crate::{app::AppState, http::routes::AdminRoutes};

pub fn admin_routes(r: AdminRoutes) -> AdminRoutes {
    admin::routes(r)
}

/// The console's statistics page; startup wraps it in the console's layers.
pub fn console_router() -> Router<AppState> {
    Router::new().route("/admin/stats", get(console::page))
}
