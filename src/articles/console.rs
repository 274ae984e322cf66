//! `/admin/articles`: the editors' pages — the list with filters, the editor with a server-rendered
//! Markdown preview, and the editorial buttons (submit, publish or schedule, archive, restore,
//! delete). Writes go through `articles::service`, the same code the admin API uses.

use std::collections::BTreeMap;

use axum::{
    extract::{Path, Query, State},
    http::HeaderMap,
    response::Response,
    Form,
};
use serde::{Deserialize, Serialize};

use crate::{
    app::AppState,
    articles::rules::{Action, ArticleInput, Status},
    articles::{service, store},
    auth::{ConsoleSession, Permission},
    http::console::{
        self, field_errors, local_input, pager, parse_local, redirect_error, redirect_flash,
    },
    http::{extract::blank_to_none, page_of, Id},
    platform::error::{AppError, AppResult},
    platform::{markdown, time},
};

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub q: Option<String>,
    #[serde(default)]
    pub page: Option<String>,
}

#[derive(Serialize)]
struct Row {
    id: i64,
    title: String,
    category: String,
    status: &'static str,
    updated: String,
    published: Option<String>,
    scheduled: Option<String>,
}

pub async fn list(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
    Query(q): Query<ListQuery>,
) -> AppResult<Response> {
    session.require(Permission::ManageArticles)?;
    let page = page_of(&q.page, &None, 100)?;
    let status = blank_to_none(&q.status).and_then(Status::parse);
    let categories = store::list_categories(&st.db).await?;
    let category_id = blank_to_none(&q.category)
        .and_then(|c| {
            categories
                .iter()
                .find(|k| k.name == c || k.id.to_string() == c)
        })
        .map(|c| c.id);
    let filter = store::ArticleFilter {
        status,
        category_id,
        tag: None,
        q: blank_to_none(&q.q).map(str::to_owned),
    };
    let (items, total) = store::list_admin(&st.db, &filter, page).await?;
    let rows: Vec<Row> = items
        .into_iter()
        .map(|a| Row {
            id: a.id,
            title: a.title,
            category: a.category,
            status: a.status.as_str(),
            updated: time::local_minute(a.updated_at),
            published: a.published_at.map(time::local_minute),
            scheduled: a.publish_at.map(time::local_minute),
        })
        .collect();
    let status_s = q.status.clone().unwrap_or_default();
    let category_s = q.category.clone().unwrap_or_default();
    let q_s = q.q.clone().unwrap_or_default();
    let pager = pager(
        page,
        total,
        &[
            ("status", &status_s),
            ("category", &category_s),
            ("q", &q_s),
        ],
    );
    let names: Vec<&str> = categories.iter().map(|c| c.name.as_str()).collect();
    console::page(
        &headers,
        "console/articles/list.html",
        &session.chrome("articles"),
        minijinja::context! { rows, pager, categories => names, status => status_s, category => category_s, q => q_s },
    )
}

/// The editor's form (every field a string; tags comma-separated).
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct ArticleForm {
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub summary: String,
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub body_md: String,
    #[serde(default)]
    pub cover_url: String,
    #[serde(default)]
    pub author: String,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub tags: String,
    /// `save` or `preview`.
    #[serde(default, skip_serializing)]
    pub action: String,
}

impl ArticleForm {
    fn input(&self) -> ArticleInput {
        let opt = |s: &str| (!s.trim().is_empty()).then(|| s.to_owned());
        ArticleInput {
            title: self.title.clone(),
            summary: self.summary.clone(),
            body_md: self.body_md.clone(),
            category: self.category.clone(),
            cover_url: opt(&self.cover_url),
            author: opt(&self.author),
            source: opt(&self.source),
            tags: self
                .tags
                .split([',', '，'])
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }
}

#[derive(Serialize)]
struct Current {
    id: i64,
    status: &'static str,
    url: String,
    published: Option<String>,
    scheduled: Option<String>,
    scheduled_input: String,
}

async fn editor(
    st: &AppState,
    headers: &HeaderMap,
    session: &ConsoleSession,
    current: Option<Current>,
    form: &ArticleForm,
    errors: BTreeMap<String, String>,
    preview: Option<String>,
) -> AppResult<Response> {
    let categories: Vec<String> = store::list_categories(&st.db)
        .await?
        .into_iter()
        .map(|c| c.name)
        .collect();
    console::form_page(
        headers,
        "console/articles/edit.html",
        &session.chrome("articles"),
        minijinja::context! { article => current, form, errors, preview, categories },
        &errors,
    )
}

pub async fn new_page(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
) -> AppResult<Response> {
    session.require(Permission::ManageArticles)?;
    editor(
        &st,
        &headers,
        &session,
        None,
        &ArticleForm::default(),
        BTreeMap::new(),
        None,
    )
    .await
}

pub async fn create(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
    Form(form): Form<ArticleForm>,
) -> AppResult<Response> {
    session.require(Permission::ManageArticles)?;
    if form.action == "preview" {
        let html = markdown::render(&form.body_md);
        return editor(
            &st,
            &headers,
            &session,
            None,
            &form,
            BTreeMap::new(),
            Some(html),
        )
        .await;
    }
    let valid = match form.input().validate() {
        Ok(v) => v,
        Err(e) => {
            let errors = field_errors(&AppError::Validation(e.to_string()));
            return editor(&st, &headers, &session, None, &form, errors, None).await;
        }
    };
    match service::create(&st, &session, &valid).await {
        Ok(id) => Ok(redirect_flash(
            &format!("/admin/articles/{id}"),
            true,
            "草稿已保存",
        )),
        Err(e @ AppError::Validation(_)) => {
            editor(&st, &headers, &session, None, &form, field_errors(&e), None).await
        }
        Err(e) => Err(e),
    }
}

async fn current(st: &AppState, id: i64) -> AppResult<(Current, ArticleForm)> {
    let a = store::get(&st.db, id)
        .await?
        .ok_or_else(|| AppError::NotFound("article".into()))?;
    let cur = Current {
        id,
        status: a.status.as_str(),
        url: format!("/articles/{id}"),
        published: a.published_at.map(time::local_minute),
        scheduled: a.publish_at.map(time::local_minute),
        scheduled_input: a.publish_at.map(local_input).unwrap_or_default(),
    };
    let form = ArticleForm {
        title: a.title,
        summary: a.summary,
        category: a.category,
        body_md: a.body_md,
        cover_url: a.cover_url.unwrap_or_default(),
        author: a.author.unwrap_or_default(),
        source: a.source.unwrap_or_default(),
        tags: a.tags.join(", "),
        action: String::new(),
    };
    Ok((cur, form))
}

pub async fn edit_page(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
    Id(id): Id,
) -> AppResult<Response> {
    session.require(Permission::ManageArticles)?;
    let (cur, form) = current(&st, id).await?;
    editor(
        &st,
        &headers,
        &session,
        Some(cur),
        &form,
        BTreeMap::new(),
        None,
    )
    .await
}

pub async fn update(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
    Id(id): Id,
    Form(form): Form<ArticleForm>,
) -> AppResult<Response> {
    session.require(Permission::ManageArticles)?;
    let (cur, _) = current(&st, id).await?;
    if form.action == "preview" {
        let html = markdown::render(&form.body_md);
        return editor(
            &st,
            &headers,
            &session,
            Some(cur),
            &form,
            BTreeMap::new(),
            Some(html),
        )
        .await;
    }
    let valid = match form.input().validate() {
        Ok(v) => v,
        Err(e) => {
            let errors = field_errors(&AppError::Validation(e.to_string()));
            return editor(&st, &headers, &session, Some(cur), &form, errors, None).await;
        }
    };
    let to = format!("/admin/articles/{id}");
    match service::update(&st, &session, id, &valid).await {
        Ok(()) => Ok(redirect_flash(&to, true, "已保存")),
        Err(e @ AppError::Validation(_)) => {
            editor(
                &st,
                &headers,
                &session,
                Some(cur),
                &form,
                field_errors(&e),
                None,
            )
            .await
        }
        Err(e) => redirect_error(&to, e),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    pub publish_at: String,
}

/// `POST /admin/articles/{id}/{action}`: submit, reject, publish (or schedule), archive, restore,
/// delete.
pub async fn act(
    State(st): State<AppState>,
    session: ConsoleSession,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<ActionForm>,
) -> AppResult<Response> {
    session.require(Permission::ManageArticles)?;
    let id: i64 = id
        .parse()
        .map_err(|_| AppError::NotFound("article".into()))?;
    let to = format!("/admin/articles/{id}");
    let result = match action.as_str() {
        "submit" => service::change_status(&st, &session, id, Action::Submit, None)
            .await
            .map(|_| "已提交审核"),
        "reject" => service::change_status(&st, &session, id, Action::Reject, None)
            .await
            .map(|_| "已退回草稿"),
        "archive" => service::change_status(&st, &session, id, Action::Archive, None)
            .await
            .map(|_| "已归档"),
        "restore" => service::change_status(&st, &session, id, Action::Restore, None)
            .await
            .map(|_| "已恢复为草稿"),
        "publish" => match parse_local(&form.publish_at) {
            Err(_) => Err(AppError::Validation(
                "publish_at: 时间格式应为 2026-07-01T08:00".into(),
            )),
            Ok(at) => {
                let scheduled = at.is_some_and(|t| t > session.now);
                service::publish(&st, &session, id, at).await.map(|_| {
                    if scheduled {
                        "已设置定时发布"
                    } else {
                        "已发布"
                    }
                })
            }
        },
        "delete" => {
            return match service::delete_draft(&st, &session, id).await {
                Ok(()) => Ok(redirect_flash("/admin/articles", true, "草稿已删除")),
                Err(e) => redirect_error(&to, e),
            }
        }
        _ => return Err(AppError::NotFound("action".into())),
    };
    match result {
        Ok(msg) => Ok(redirect_flash(&to, true, msg)),
        Err(e) => redirect_error(&to, e),
    }
}
