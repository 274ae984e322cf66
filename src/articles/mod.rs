//! Articles: categories, articles (draft → review → published → archived), banners, the public
//! article page and scheduled publishing.

pub mod admin;
pub mod banner_store;
pub mod banners_console;
pub mod categories_console;
pub mod console;
pub mod mp;
pub mod page;
pub mod rules;
pub mod service;
pub mod store;
pub mod worker;

use axum::{
    routing::{get, post},
    Router,
};

use crate::{app::AppState, http::routes::MpRoutes};

/// The public article page.
pub fn router() -> Router<AppState> {
    Router::new().route("/articles/{id}", get(page::article))
}

/// The mini-program's content reads.
pub fn mp_routes(r: MpRoutes) -> MpRoutes {
    r.get(
        "/api/mp/articles",
        "Published articles, newest first (?category=&page=)",
        mp::list_articles,
    )
    .get(
        "/api/mp/articles/{id}",
        "One published article with body_html",
        mp::get_article,
    )
    .get(
        "/api/mp/categories",
        "Article categories in menu order",
        mp::list_categories,
    )
    .get(
        "/api/mp/banners",
        "Focus banners valid now, in order",
        mp::list_banners,
    )
}

/// The editors' console pages (`/admin/articles...`); startup wraps them in the console's layers.
pub fn console_router() -> Router<AppState> {
    Router::new()
        .route("/admin/articles", get(console::list))
        .route(
            "/admin/articles/categories",
            get(categories_console::list).post(categories_console::create),
        )
        .route(
            "/admin/articles/categories/{id}",
            post(categories_console::update),
        )
        .route(
            "/admin/articles/categories/{id}/delete",
            post(categories_console::delete),
        )
        .route("/admin/articles/banners", get(banners_console::list))
        .route(
            "/admin/articles/banners/new",
            get(banners_console::new_page).post(banners_console::create),
        )
        .route(
            "/admin/articles/banners/{id}",
            get(banners_console::edit_page).post(banners_console::update),
        )
        .route(
            "/admin/articles/banners/{id}/delete",
            post(banners_console::delete),
        )
        .route(
            "/admin/articles/new",
            get(console::new_page).post(console::create),
        )
        .route(
            "/admin/articles/{id}",
            get(console::edit_page).post(console::update),
        )
        .route("/admin/articles/{id}/{action}", post(console::act))
}
