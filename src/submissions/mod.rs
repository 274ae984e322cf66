//! Member submissions (投稿) and message-board posts (留言), moderated before anyone sees them.

pub mod admin;
pub mod console;
pub mod moderation;
pub mod mp;
pub mod rules;
pub mod service;
pub mod store;

use axum::Router;

use crate::{app::AppState, http::routes::MpRoutes};

/// The mini-program's board and submissions.
pub fn mp_routes(r: MpRoutes) -> MpRoutes {
    r
        .get(
            "/api/mp/board",
            "The message board: approved posts with the editors' answers, newest first (?page=)",
            mp::list_board,
        )
        .post(
            "/api/mp/board",
            "Post on the board: {content} → 201 {id, status: pending|rejected}; public only after an editor approves",
            mp::create_post,
        )
        .get(
            "/api/mp/submissions",
            "The member's own submissions (投稿), newest first, with status and receipt_no",
            mp::list_submissions,
        )
        .post(
            "/api/mp/submissions",
            "Submit: {title, content, images: [url]} → 201 {id, receipt_no, status: pending|rejected}",
            mp::create_submission,
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
