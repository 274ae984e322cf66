//! `/api/admin` content routes: articles (with the editorial status machine), categories, banners.
//! All need `Permission::ManageArticles` (editors and admins); every write is audited in the same
//! transaction, so a refused request leaves nothing behind — not even an audit entry.

use axum::{extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};

use crate::{
    app::AppState,
    articles::banner_store::{self as banners, Banner},
    articles::rules::{self as rules, Action, ArticleInput, BannerInput, FieldError, Status},
    articles::store::{self as articles, Article, ArticleFilter, ArticleListItem, Category},
    auth::{AdminSession, Permission},
    http::{page_of, Id, ItemsOut, ListOut},
    http::{routes::AdminRoutes, AppJson, AppQuery, OptionalJson},
    platform::error::{AppError, AppResult},
};

pub fn routes(r: AdminRoutes) -> AdminRoutes {
    let p = Permission::ManageArticles;
    r.get("/api/admin/articles", p, list_articles)
        .post("/api/admin/articles", p, create_article)
        .get("/api/admin/articles/{id}", p, get_article)
        .put("/api/admin/articles/{id}", p, update_article)
        .delete("/api/admin/articles/{id}", p, delete_article)
        .post("/api/admin/articles/{id}/submit", p, submit_article)
        .post("/api/admin/articles/{id}/reject", p, reject_article)
        .post("/api/admin/articles/{id}/publish", p, publish_article)
        .post("/api/admin/articles/{id}/archive", p, archive_article)
        .post("/api/admin/articles/{id}/restore", p, restore_article)
        .get("/api/admin/categories", p, list_categories)
        .post("/api/admin/categories", p, create_category)
        .put("/api/admin/categories/{id}", p, update_category)
        .delete("/api/admin/categories/{id}", p, delete_category)
        .get("/api/admin/banners", p, list_banners)
        .post("/api/admin/banners", p, create_banner)
        .put("/api/admin/banners/{id}", p, update_banner)
        .delete("/api/admin/banners/{id}", p, delete_banner)
}

// ---- shapes ------------------------------------------------------------------------------------

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ArticleOut {
    pub id: i64,
    pub title: String,
    pub summary: String,
    pub body_md: String,
    pub body_html: String,
    pub category: String,
    pub category_id: i64,
    pub cover_url: Option<String>,
    pub author: Option<String>,
    pub source: Option<String>,
    pub tags: Vec<String>,
    pub status: Status,
    /// RFC 3339 (+08:00); set when published, kept through edits.
    pub published_at: Option<String>,
    /// A scheduled publication (draft/review only).
    pub publish_at: Option<String>,
    pub archived_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// The public page (the URL in news cards); served only while published.
    pub url: String,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ArticleItemOut {
    pub id: i64,
    pub title: String,
    pub summary: String,
    pub category: String,
    pub cover_url: Option<String>,
    pub author: Option<String>,
    pub tags: Vec<String>,
    pub status: Status,
    pub published_at: Option<String>,
    pub publish_at: Option<String>,
    pub updated_at: String,
}

fn time_opt(ms: Option<i64>) -> Option<String> {
    ms.map(rules::rfc3339_shanghai)
}

fn article_out(st: &AppState, a: Article) -> ArticleOut {
    ArticleOut {
        url: article_url(st, a.id),
        id: a.id,
        title: a.title,
        summary: a.summary,
        body_md: a.body_md,
        body_html: a.body_html,
        category: a.category,
        category_id: a.category_id,
        cover_url: a.cover_url,
        author: a.author,
        source: a.source,
        tags: a.tags,
        status: a.status,
        published_at: time_opt(a.published_at),
        publish_at: time_opt(a.publish_at),
        archived_at: time_opt(a.archived_at),
        created_at: rules::rfc3339_shanghai(a.created_at),
        updated_at: rules::rfc3339_shanghai(a.updated_at),
    }
}

fn item_out(a: ArticleListItem) -> ArticleItemOut {
    ArticleItemOut {
        id: a.id,
        title: a.title,
        summary: a.summary,
        category: a.category,
        cover_url: a.cover_url,
        author: a.author,
        tags: a.tags,
        status: a.status,
        published_at: time_opt(a.published_at),
        publish_at: time_opt(a.publish_at),
        updated_at: rules::rfc3339_shanghai(a.updated_at),
    }
}

fn invalid(e: FieldError) -> AppError {
    AppError::Validation(e.to_string())
}

use super::service::{self, article_url, category_filter};

fn not_found(what: &str) -> AppError {
    AppError::NotFound(what.into())
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub struct ListQuery {
    #[schemars(extend("enum" = ["draft", "review", "published", "archived"]))]
    pub status: Option<String>,
    pub category: Option<String>,
    pub tag: Option<String>,
    pub q: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "crate::http::doc::page")]
    pub page: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "crate::http::doc::page_size_100")]
    pub page_size: Option<String>,
}

// ---- articles ----------------------------------------------------------------------------------

async fn article_response(st: &AppState, id: i64) -> AppResult<AppJson<ArticleOut>> {
    let a = articles::get(&st.db, id)
        .await?
        .ok_or_else(|| not_found("article"))?;
    Ok(AppJson(article_out(st, a)))
}

async fn create_article(
    State(st): State<AppState>,
    session: AdminSession,
    AppJson(input): AppJson<ArticleInput>,
) -> AppResult<(StatusCode, AppJson<ArticleOut>)> {
    let a = input.validate().map_err(invalid)?;
    let id = service::create(&st, &session, &a).await?;
    Ok((StatusCode::CREATED, article_response(&st, id).await?))
}

async fn get_article(State(st): State<AppState>, Id(id): Id) -> AppResult<AppJson<ArticleOut>> {
    article_response(&st, id).await
}

/// Full replacement of the editable fields (omitted optional fields become empty); the status and
/// the publish time stay.
async fn update_article(
    State(st): State<AppState>,
    session: AdminSession,
    Id(id): Id,
    AppJson(input): AppJson<ArticleInput>,
) -> AppResult<AppJson<ArticleOut>> {
    let a = input.validate().map_err(invalid)?;
    service::update(&st, &session, id, &a).await?;
    article_response(&st, id).await
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishBody {
    /// RFC 3339; a future time schedules the publication, a past one (or none) publishes now.
    #[serde(default)]
    #[schemars(schema_with = "crate::http::doc::date_time")]
    pub publish_at: Option<String>,
}

/// A handler that moves an article through one editorial transition (no body).
macro_rules! transition_handler {
    ($name:ident, $action:expr) => {
        async fn $name(
            State(st): State<AppState>,
            session: AdminSession,
            Id(id): Id,
        ) -> AppResult<AppJson<ArticleOut>> {
            service::change_status(&st, &session, id, $action, None).await?;
            article_response(&st, id).await
        }
    };
}

transition_handler!(submit_article, Action::Submit);
transition_handler!(reject_article, Action::Reject);
transition_handler!(archive_article, Action::Archive);
transition_handler!(restore_article, Action::Restore);

/// Publish now (no body, or `{}`), or schedule with `{"publish_at": RFC 3339}` in the future.
async fn publish_article(
    State(st): State<AppState>,
    session: AdminSession,
    Id(id): Id,
    OptionalJson(b): OptionalJson<PublishBody>,
) -> AppResult<AppJson<ArticleOut>> {
    let b = b.unwrap_or_default();
    let at = rules::parse_time_field("publish_at", b.publish_at.as_deref()).map_err(invalid)?;
    service::publish(&st, &session, id, at).await?;
    article_response(&st, id).await
}

/// Drafts only; refused while a banner links to the draft.
async fn delete_article(
    State(st): State<AppState>,
    session: AdminSession,
    Id(id): Id,
) -> AppResult<StatusCode> {
    service::delete_draft(&st, &session, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_articles(
    State(st): State<AppState>,
    AppQuery(q): AppQuery<ListQuery>,
) -> AppResult<AppJson<ListOut<ArticleItemOut>>> {
    let page = page_of(&q.page, &q.page_size, 100)?;
    let status = match crate::http::extract::blank_to_none(&q.status) {
        None => None,
        Some(s) => Some(Status::parse(s).ok_or_else(|| {
            AppError::Validation("status: one of draft, review, published, archived".into())
        })?),
    };
    let filter = ArticleFilter {
        status,
        category_id: category_filter(&st, &q.category).await?,
        tag: crate::http::extract::blank_to_none(&q.tag).map(str::to_owned),
        q: crate::http::extract::blank_to_none(&q.q).map(str::to_owned),
    };
    let (items, total) = articles::list_admin(&st.db, &filter, page).await?;
    Ok(AppJson(ListOut {
        items: items.into_iter().map(item_out).collect(),
        page: page.number,
        page_size: page.size,
        total,
    }))
}

// ---- categories --------------------------------------------------------------------------------

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct CategoryOut {
    pub id: i64,
    pub name: String,
    pub position: i64,
    pub menu_key: Option<String>,
    /// Named in content/menu.toml: can't be renamed or deleted here (the menu refers to it by name).
    pub from_menu: bool,
    pub article_count: i64,
    pub published_count: i64,
}

fn category_out(st: &AppState, c: Category) -> CategoryOut {
    CategoryOut {
        from_menu: service::is_menu_category(st, &c.name),
        id: c.id,
        name: c.name,
        position: c.position,
        menu_key: c.menu_key,
        article_count: c.article_count,
        published_count: c.published_count,
    }
}

async fn list_categories(State(st): State<AppState>) -> AppResult<AppJson<ItemsOut<CategoryOut>>> {
    let items = articles::list_categories(&st.db)
        .await?
        .into_iter()
        .map(|c| category_out(&st, c))
        .collect();
    Ok(AppJson(ItemsOut { items }))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CategoryBody {
    #[serde(default)]
    #[schemars(
        length(min = 1, max = 32),
        regex(
            pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f0-9+-][^\x00-\x1f\x7f-\x9f]*$"
        )
    )]
    pub name: Option<String>,
    #[serde(default)]
    pub position: Option<i64>,
}

async fn category_response(st: &AppState, id: i64) -> AppResult<AppJson<CategoryOut>> {
    let c = articles::category_by_id(&st.db, id)
        .await?
        .ok_or_else(|| not_found("category"))?;
    Ok(AppJson(category_out(st, c)))
}

async fn create_category(
    State(st): State<AppState>,
    session: AdminSession,
    AppJson(b): AppJson<CategoryBody>,
) -> AppResult<(StatusCode, AppJson<CategoryOut>)> {
    let name = b.name.as_deref().unwrap_or_default();
    let id = service::create_category(&st, &session, name, b.position).await?;
    Ok((StatusCode::CREATED, category_response(&st, id).await?))
}

/// Rename and/or reorder. Categories named in content/menu.toml keep their name: the menu and
/// the start-up seeding refer to them by it.
async fn update_category(
    State(st): State<AppState>,
    session: AdminSession,
    Id(id): Id,
    AppJson(b): AppJson<CategoryBody>,
) -> AppResult<AppJson<CategoryOut>> {
    service::update_category(&st, &session, id, b.name.as_deref(), b.position).await?;
    category_response(&st, id).await
}

/// Only an empty category that content/menu.toml doesn't name.
async fn delete_category(
    State(st): State<AppState>,
    session: AdminSession,
    Id(id): Id,
) -> AppResult<StatusCode> {
    service::delete_category(&st, &session, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- banners -----------------------------------------------------------------------------------

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct BannerOut {
    pub id: i64,
    pub title: String,
    pub image_url: String,
    pub article_id: Option<i64>,
    pub link_url: Option<String>,
    pub position: i64,
    pub valid_from: Option<String>,
    pub valid_until: Option<String>,
    /// Shown to readers right now (window; a linked article must be published too).
    pub active: bool,
    pub created_at: String,
    pub updated_at: String,
}

fn banner_out(b: Banner, active: bool) -> BannerOut {
    BannerOut {
        id: b.id,
        title: b.title,
        image_url: b.image_url,
        article_id: b.article_id,
        link_url: b.link_url,
        position: b.position,
        valid_from: time_opt(b.valid_from),
        valid_until: time_opt(b.valid_until),
        active,
        created_at: rules::rfc3339_shanghai(b.created_at),
        updated_at: rules::rfc3339_shanghai(b.updated_at),
    }
}

async fn list_banners(State(st): State<AppState>) -> AppResult<AppJson<ItemsOut<BannerOut>>> {
    let active: Vec<i64> = banners::list_valid(&st.db, st.clock.unix_ms())
        .await?
        .iter()
        .map(|b| b.id)
        .collect();
    let items = banners::list_all(&st.db).await?.into_iter().map(|b| {
        let on = active.contains(&b.id);
        banner_out(b, on)
    });
    Ok(AppJson(ItemsOut {
        items: items.collect(),
    }))
}

async fn banner_response(st: &AppState, id: i64) -> AppResult<AppJson<BannerOut>> {
    let b = banners::get(&st.db, id)
        .await?
        .ok_or_else(|| not_found("banner"))?;
    let active = banners::list_valid(&st.db, st.clock.unix_ms())
        .await?
        .iter()
        .any(|v| v.id == id);
    Ok(AppJson(banner_out(b, active)))
}

async fn create_banner(
    State(st): State<AppState>,
    session: AdminSession,
    AppJson(input): AppJson<BannerInput>,
) -> AppResult<(StatusCode, AppJson<BannerOut>)> {
    let b = service::valid_banner(&st, &input).await?;
    let id = service::create_banner(&st, &session, &b).await?;
    Ok((StatusCode::CREATED, banner_response(&st, id).await?))
}

/// Full replacement.
async fn update_banner(
    State(st): State<AppState>,
    session: AdminSession,
    Id(id): Id,
    AppJson(input): AppJson<BannerInput>,
) -> AppResult<AppJson<BannerOut>> {
    let b = service::valid_banner(&st, &input).await?;
    service::update_banner(&st, &session, id, &b).await?;
    banner_response(&st, id).await
}

async fn delete_banner(
    State(st): State<AppState>,
    session: AdminSession,
    Id(id): Id,
) -> AppResult<StatusCode> {
    service::delete_banner(&st, &session, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
