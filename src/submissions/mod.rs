//! Member submissions (投稿) and message-board posts (留言), moderated before anyone sees them.

pub mod admin;
pub mod console;
pub mod moderation;
pub mod mp;
pub mod rules;
pub mod service;
pub mod store;

use axum::{routing::get, Router};

use crate::app::AppState;

/// The mini-program's board and submissions.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/mp/board", get(mp::list_board).post(mp::create_post))
        .route(
            "/api/mp/submissions",
            get(mp::list_submissions).post(mp::create_submission),
        )
}

/// The editors' moderation pages (`/admin/moderation...`); startup wraps them in the console's layers.
pub fn console_router() -> Router<AppState> {
    use axum::routing::{get, post};
    Router::new()
        .route("/admin/moderation", get(console::queue))
        .route(
            "/admin/moderation/{kind}/{id}/decision",
            post(console::decide),
        )
        .route("/admin/moderation/board/{id}/answer", post(console::answer))
        .route(
            "/admin/moderation/submissions/{id}/draft",
            post(console::to_draft),
        )
}
