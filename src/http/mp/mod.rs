//! `/api/mp`: the mini-program's JSON API.
//!
//! Login (`POST /api/mp/login`) gives a bearer token; routes that need the user take the
//! [`MpSession`] extractor (401 `unauthorized` without a valid token). The content reads are
//! public reads of published content.

mod account;
mod board;
mod content;
pub mod session;

use axum::{
    routing::{get, post},
    Router,
};

pub use session::MpSession;

use crate::startup::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/mp/login", post(account::login))
        .route("/api/mp/bind", post(account::bind))
        .route("/api/mp/me", get(account::me))
        .route("/api/mp/subscriptions", post(account::subscriptions))
        .route("/api/mp/articles", get(content::list_articles))
        .route("/api/mp/articles/{id}", get(content::get_article))
        .route("/api/mp/categories", get(content::list_categories))
        .route("/api/mp/banners", get(content::list_banners))
        .route(
            "/api/mp/board",
            get(board::list_board).post(board::create_post),
        )
        .route(
            "/api/mp/submissions",
            get(board::list_submissions).post(board::create_submission),
        )
}
