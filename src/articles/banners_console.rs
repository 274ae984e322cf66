//! `/admin/articles/banners`: the editors' page of focus banners (横幅焦点) — the list, create,
//! edit, delete (after a confirmation) and a preview of what the portal and the mini-program
//! show right now. Writes go through `articles::service`, the same code the admin API uses, with
//! the same permission (`ManageArticles`). Images are given by URL (the feature stores no uploads).

use std::collections::BTreeMap;

use axum::{extract::State, http::HeaderMap, response::Response, Form};
use serde::{Deserialize, Serialize};

use crate::{
    app::AppState,
    articles::banner_store::{self as banners, Banner},
    articles::rules::BannerInput,
    articles::{service, store},
    auth::{ConsoleSession, Permission},
    http::console::{
        self, field_errors, form_page, local_input, parse_local, redirect_error, redirect_flash,
    },
    http::Id,
    platform::db::Page,
    platform::error::{AppError, AppResult},
    platform::time,
};

const LIST: &str = "/admin/articles/banners";

/// The banner form: every field a string (times are `datetime-local`, Asia/Shanghai).
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct BannerForm {
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub image_url: String,
    #[serde(default)]
    pub article_id: String,
    #[serde(default)]
    pub link_url: String,
    #[serde(default)]
    pub position: String,
    #[serde(default)]
    pub valid_from: String,
    #[serde(default)]
    pub valid_until: String,
}

fn field(name: &str, reason: &str) -> AppError {
    AppError::Validation(format!("{name}: {reason}"))
}

impl BannerForm {
    fn of(b: &Banner) -> BannerForm {
        BannerForm {
            title: b.title.clone(),
            image_url: b.image_url.clone(),
            article_id: b.article_id.map(|i| i.to_string()).unwrap_or_default(),
            link_url: b.link_url.clone().unwrap_or_default(),
            position: b.position.to_string(),
            valid_from: b.valid_from.map(local_input).unwrap_or_default(),
            valid_until: b.valid_until.map(local_input).unwrap_or_default(),
        }
    }

    /// The API's input from the form; a malformed number or time is that field's error.
    fn input(&self) -> Result<BannerInput, AppError> {
        let article_id = match self.article_id.trim() {
            "" => None,
            s => Some(
                s.parse::<i64>()
                    .map_err(|_| field("article_id", "请选择文章"))?,
            ),
        };
        let position = match self.position.trim() {
            "" => None,
            s => Some(
                s.parse::<i64>()
                    .ok()
                    .filter(|n| (0..=1_000_000).contains(n))
                    .ok_or_else(|| field("position", "排序应为0到1000000的整数"))?,
            ),
        };
        let when = |name: &str, v: &str| {
            parse_local(v)
                .map(|ms| ms.map(time::rfc3339))
                .map_err(|_| field(name, "时间格式应为 2026-07-01T08:00"))
        };
        Ok(BannerInput {
            title: self.title.clone(),
            image_url: self.image_url.clone(),
            article_id,
            link_url: Some(self.link_url.clone()).filter(|l| !l.trim().is_empty()),
            position,
            valid_from: when("valid_from", &self.valid_from)?,
            valid_until: when("valid_until", &self.valid_until)?,
        })
    }
}

/// The rules' reasons in the editors' words where they are about the window.
fn errors_of(e: &AppError) -> BTreeMap<String, String> {
    let mut errors = field_errors(e);
    for v in errors.values_mut() {
        if v == "must be after valid_from" {
            *v = "结束时间必须晚于开始时间".into();
        } else if v == "must be an http:// or https:// URL" {
            *v = "应为 http:// 或 https:// 开头的网址".into();
        } else if v == "give article_id or link_url, not both" {
            *v = "链接文章和链接网址只能选一个".into();
        } else if v == "no such article" {
            *v = "文章不存在".into();
        }
    }
    errors
}

#[derive(Serialize)]
struct Row {
    id: i64,
    title: String,
    image_url: String,
    link: String,
    position: i64,
    window: String,
    active: bool,
}

/// What a reader sees: the portal's link for the banner (an article page or an http(s) URL;
/// a mini-program page path is not a web link).
#[derive(Serialize)]
struct Shown {
    title: String,
    image_url: String,
    href: Option<String>,
    target: String,
}

fn link_of(b: &Banner, titles: &BTreeMap<i64, String>) -> String {
    match (b.article_id, &b.link_url) {
        (Some(id), _) => format!(
            "文章：{}",
            titles.get(&id).cloned().unwrap_or_else(|| format!("#{id}"))
        ),
        (None, Some(u)) => u.clone(),
        (None, None) => "（无链接）".into(),
    }
}

fn window_of(b: &Banner) -> String {
    match (b.valid_from, b.valid_until) {
        (None, None) => "长期".into(),
        (Some(f), None) => format!("{} 起", time::local_minute(f)),
        (None, Some(u)) => format!("至 {}", time::local_minute(u)),
        (Some(f), Some(u)) => format!("{} 至 {}", time::local_minute(f), time::local_minute(u)),
    }
}

#[derive(Serialize)]
struct Choice {
    id: i64,
    title: String,
    status: &'static str,
}

/// The articles a banner may link to (the most recently changed first).
async fn choices(st: &AppState) -> AppResult<Vec<Choice>> {
    let (items, _) = store::list_admin(
        &st.db,
        &store::ArticleFilter::default(),
        Page {
            number: 1,
            size: 200,
        },
    )
    .await?;
    Ok(items
        .into_iter()
        .map(|a| Choice {
            id: a.id,
            title: a.title,
            status: a.status.as_str(),
        })
        .collect())
}

/// `GET /admin/articles/banners`: every banner, and the preview of those shown now.
pub async fn list(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
) -> AppResult<Response> {
    session.require(Permission::ManageArticles)?;
    let titles: BTreeMap<i64, String> = choices(&st)
        .await?
        .into_iter()
        .map(|c| (c.id, c.title))
        .collect();
    let valid = banners::list_valid(&st.db, st.clock.unix_ms()).await?;
    let rows: Vec<Row> = banners::list_all(&st.db)
        .await?
        .into_iter()
        .map(|b| Row {
            active: valid.iter().any(|v| v.id == b.id),
            link: link_of(&b, &titles),
            window: window_of(&b),
            id: b.id,
            title: b.title,
            image_url: b.image_url,
            position: b.position,
        })
        .collect();
    let shown: Vec<Shown> = valid
        .iter()
        .map(|b| Shown {
            href: match (b.article_id, &b.link_url) {
                (Some(id), _) => Some(format!("/articles/{id}")),
                (None, Some(u)) if u.starts_with("https://") || u.starts_with("http://") => {
                    Some(u.clone())
                }
                _ => None,
            },
            target: link_of(b, &titles),
            title: b.title.clone(),
            image_url: b.image_url.clone(),
        })
        .collect();
    console::page(
        &headers,
        "console/articles/banners.html",
        &session.chrome("articles"),
        minijinja::context! { rows, shown },
    )
}

async fn editor(
    st: &AppState,
    headers: &HeaderMap,
    session: &ConsoleSession,
    id: Option<i64>,
    form: &BannerForm,
    errors: BTreeMap<String, String>,
) -> AppResult<Response> {
    let articles = choices(st).await?;
    form_page(
        headers,
        "console/articles/banner.html",
        &session.chrome("articles"),
        minijinja::context! { id, form, errors, articles },
        &errors,
    )
}

/// `GET /admin/articles/banners/new`
pub async fn new_page(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
) -> AppResult<Response> {
    session.require(Permission::ManageArticles)?;
    let form = BannerForm {
        position: "0".into(),
        ..Default::default()
    };
    editor(&st, &headers, &session, None, &form, BTreeMap::new()).await
}

/// Validate the form like the API does (a linked article must exist).
async fn valid(st: &AppState, form: &BannerForm) -> AppResult<crate::articles::rules::ValidBanner> {
    let input = form.input()?;
    service::valid_banner(st, &input).await
}

/// `POST /admin/articles/banners/new`
pub async fn create(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
    Form(form): Form<BannerForm>,
) -> AppResult<Response> {
    session.require(Permission::ManageArticles)?;
    let result = match valid(&st, &form).await {
        Ok(b) => service::create_banner(&st, &session, &b).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => Ok(redirect_flash(LIST, true, "横幅已创建")),
        Err(e) if e.status().is_client_error() => {
            editor(&st, &headers, &session, None, &form, errors_of(&e)).await
        }
        Err(e) => Err(e),
    }
}

/// `GET /admin/articles/banners/{id}`
pub async fn edit_page(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
    Id(id): Id,
) -> AppResult<Response> {
    session.require(Permission::ManageArticles)?;
    let b = banners::get(&st.db, id)
        .await?
        .ok_or_else(|| AppError::NotFound("banner".into()))?;
    editor(
        &st,
        &headers,
        &session,
        Some(id),
        &BannerForm::of(&b),
        BTreeMap::new(),
    )
    .await
}

/// `POST /admin/articles/banners/{id}`: full replacement.
pub async fn update(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
    Id(id): Id,
    Form(form): Form<BannerForm>,
) -> AppResult<Response> {
    session.require(Permission::ManageArticles)?;
    let result = match valid(&st, &form).await {
        Ok(b) => service::update_banner(&st, &session, id, &b).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => Ok(redirect_flash(LIST, true, "横幅已保存")),
        Err(e @ AppError::NotFound(_)) => redirect_error(LIST, e),
        Err(e) if e.status().is_client_error() => {
            editor(&st, &headers, &session, Some(id), &form, errors_of(&e)).await
        }
        Err(e) => Err(e),
    }
}

/// `POST /admin/articles/banners/{id}/delete` (the page asks for a confirmation first).
pub async fn delete(
    State(st): State<AppState>,
    session: ConsoleSession,
    Id(id): Id,
) -> AppResult<Response> {
    session.require(Permission::ManageArticles)?;
    match service::delete_banner(&st, &session, id).await {
        Ok(()) => Ok(redirect_flash(LIST, true, "横幅已删除")),
        Err(e) => redirect_error(LIST, e),
    }
}
