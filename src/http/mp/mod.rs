//! `/api/mp`: the mini-program's JSON API.
//!
//! The content reads below are public reads of published content for now. When the mini-program
//! session (`POST /api/mp/login`) lands, its `MpSession` extractor is added as a handler argument
//! (or a `route_layer` on this router) without changing the response shapes.

mod content;

use axum::{routing::get, Router};

use crate::startup::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/mp/articles", get(content::list_articles))
        .route("/api/mp/articles/{id}", get(content::get_article))
        .route("/api/mp/categories", get(content::list_categories))
        .route("/api/mp/banners", get(content::list_banners))
}
