//! Published articles, categories and the focus banners currently shown, for readers.

use axum::{extract::State, Json};
use serde::{Deserialize, Serialize};

use crate::{
    app::AppState,
    articles::rules::rfc3339_shanghai,
    articles::service::{article_url, category_filter},
    articles::{banner_store as banners, store as articles},
    http::{page_of, AppQuery, Id, ItemsOut, ListOut},
    platform::error::{AppError, AppResult},
};

/// Mini-program pages are small; a page holds at most this many articles.
const MAX_PAGE_SIZE: i64 = 50;

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub struct ArticlesQuery {
    pub category: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "crate::http::doc::page")]
    pub page: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "crate::http::doc::page_size_50")]
    pub page_size: Option<String>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ArticleItem {
    pub id: i64,
    pub title: String,
    pub summary: String,
    pub cover_url: Option<String>,
    pub category: String,
    /// RFC 3339 in Asia/Shanghai (+08:00).
    pub published_at: Option<String>,
    pub tags: Vec<String>,
}

pub async fn list_articles(
    State(st): State<AppState>,
    AppQuery(q): AppQuery<ArticlesQuery>,
) -> AppResult<Json<ListOut<ArticleItem>>> {
    let page = page_of(&q.page, &q.page_size, MAX_PAGE_SIZE)?;
    let category_id = category_filter(&st, &q.category).await?;
    let (items, total) = articles::list_published(&st.db, category_id, page).await?;
    let items = items
        .into_iter()
        .map(|a| ArticleItem {
            id: a.id,
            title: a.title,
            summary: a.summary,
            cover_url: a.cover_url,
            category: a.category,
            published_at: a.published_at.map(rfc3339_shanghai),
            tags: a.tags,
        })
        .collect();
    Ok(Json(ListOut {
        items,
        page: page.number,
        page_size: page.size,
        total,
    }))
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ArticleDetail {
    pub id: i64,
    pub title: String,
    pub summary: String,
    pub cover_url: Option<String>,
    pub category: String,
    pub published_at: Option<String>,
    pub author: Option<String>,
    pub source: Option<String>,
    pub tags: Vec<String>,
    /// Sanitised when the article was saved (`markdown::render`): safe for `rich-text`.
    pub body_html: String,
    /// The public page (for sharing and `web-view`).
    pub url: String,
}

/// Only published articles; drafts, articles under review and archived ones are 404.
pub async fn get_article(State(st): State<AppState>, Id(id): Id) -> AppResult<Json<ArticleDetail>> {
    let a = articles::published_by_id(&st.db, id)
        .await?
        .ok_or_else(|| AppError::NotFound("article".into()))?;
    Ok(Json(ArticleDetail {
        url: article_url(&st, a.id),
        id: a.id,
        title: a.title,
        summary: a.summary,
        cover_url: a.cover_url,
        category: a.category,
        published_at: a.published_at.map(rfc3339_shanghai),
        author: a.author,
        source: a.source,
        tags: a.tags,
        body_html: a.body_html,
    }))
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct CategoryItem {
    pub id: i64,
    pub name: String,
    pub published_count: i64,
}

/// Categories in menu order, for the mini-program's tabs.
pub async fn list_categories(
    State(st): State<AppState>,
) -> AppResult<Json<ItemsOut<CategoryItem>>> {
    let items = articles::list_categories(&st.db)
        .await?
        .into_iter()
        .map(|c| CategoryItem {
            id: c.id,
            name: c.name,
            published_count: c.published_count,
        })
        .collect();
    Ok(Json(ItemsOut { items }))
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct BannerItem {
    pub id: i64,
    pub title: String,
    pub image_url: String,
    /// Open this article in the mini-program…
    pub article_id: Option<i64>,
    /// …or this URL / mini-program page path.
    pub link_url: Option<String>,
}

/// The banners valid now (by the app's clock), in display order.
pub async fn list_banners(State(st): State<AppState>) -> AppResult<Json<ItemsOut<BannerItem>>> {
    let items = banners::list_valid(&st.db, st.clock.unix_ms())
        .await?
        .into_iter()
        .map(|b| BannerItem {
            id: b.id,
            title: b.title,
            image_url: b.image_url,
            article_id: b.article_id,
            link_url: b.link_url,
        })
        .collect();
    Ok(Json(ItemsOut { items }))
}
