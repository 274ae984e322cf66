//! The public portal (`/portal`, the source system's "Web service"): mobile-first pages for
//! anyone — the focus banners and each category's newest articles, a page per category, the
//! 党务公开 notices, and the approved message-board posts with the editors' answers. Read-only,
//! through the articles' and submissions' stores; no personal data (never a poster's name or
//! openid); cached for a minute (`http::public`).
//!
//! 党务公开 (open Party affairs) are the published articles tagged [`NOTICE_TAG`], whatever their
//! category, so a notice can also sit in 党建动态 without being written twice.

pub mod page;

use axum::{routing::get, Router};

use crate::app::AppState;

/// The article tag that makes an article a 党务公开 notice.
pub const NOTICE_TAG: &str = "党务公开";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/portal", get(page::index))
        .route("/portal/categories/{id}", get(page::category))
        .route("/portal/notices", get(page::notices))
        .route("/portal/board", get(page::board))
}
