//! The official account (公众号): the webhook (`webhook.rs`), reply routing (`rules.rs`),
//! followers and their sync with WeChat (`store.rs`, `service.rs`), the menu and follower-sync
//! admin API (`admin.rs`) and the dev-mode outbox page (`dev.rs`).

pub mod admin;
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
