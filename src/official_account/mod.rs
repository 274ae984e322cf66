//! The official account (公众号): the webhook (`webhook.rs`), reply routing (`rules.rs`),
//! followers and their sync with WeChat (`store.rs`, `service.rs`), the menu and follower-sync
//! admin API (`admin.rs`) and its console page (`console.rs`), and the dev-mode outbox page
//! (`dev.rs`).

pub mod admin;
pub mod console;
pub mod dev;
pub mod rules;
pub mod service;
pub mod store;
pub mod webhook;

use axum::{routing::get, Router};

use crate::app::AppState;

/// The webhook WeChat calls, and the dev-mode outbox page.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/wechat", get(webhook::verify_url).post(webhook::receive))
        .route("/dev/wechat/outbox", get(dev::outbox))
}

/// The console's `/admin/wechat` page (menu and follower sync).
pub fn console_router() -> Router<AppState> {
    use axum::routing::post;
    Router::new()
        .route("/admin/wechat", get(console::show))
        .route("/admin/wechat/menu/sync", post(console::sync_menu))
        .route(
            "/admin/wechat/followers/sync",
            post(console::sync_followers),
        )
}
