//! `/admin/articles/categories`: the editors' page of article categories (栏目) — the list with
//! article counts, create, rename, reorder, delete (only an empty category that the menu does not
//! name). Writes go through `articles::service`, the same code the admin API uses, with the same
//! permission (`ManageArticles`).

use std::collections::BTreeMap;

use axum::{extract::State, http::HeaderMap, response::Response, Form};
use serde::{Deserialize, Serialize};

use crate::{
    app::AppState,
    articles::{service, store},
    auth::{ConsoleSession, Permission},
    http::console::{field_errors, form_page, redirect_error, redirect_flash},
    http::Id,
    platform::error::{AppError, AppResult},
};

const LIST: &str = "/admin/articles/categories";

#[derive(Serialize)]
struct Row {
    id: i64,
    name: String,
    position: i64,
    article_count: i64,
    published_count: i64,
    from_menu: bool,
}

/// The create form (and each row's rename/reorder form): every field a string.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct CategoryForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub position: String,
}

impl CategoryForm {
    /// The position: blank → None; anything but a whole number is a field error.
    fn position(&self) -> Result<Option<i64>, AppError> {
        let p = self.position.trim();
        if p.is_empty() {
            return Ok(None);
        }
        p.parse::<i64>()
            .ok()
            .filter(|n| (0..=1_000_000).contains(n))
            .map(Some)
            .ok_or_else(|| AppError::Validation("position: 排序应为0到1000000的整数".into()))
    }
}

async fn render(
    st: &AppState,
    headers: &HeaderMap,
    session: &ConsoleSession,
    form: &CategoryForm,
    errors: BTreeMap<String, String>,
) -> AppResult<Response> {
    let rows: Vec<Row> = store::list_categories(&st.db)
        .await?
        .into_iter()
        .map(|c| Row {
            from_menu: service::is_menu_category(st, &c.name),
            id: c.id,
            name: c.name,
            position: c.position,
            article_count: c.article_count,
            published_count: c.published_count,
        })
        .collect();
    form_page(
        headers,
        "console/articles/categories.html",
        &session.chrome("articles"),
        minijinja::context! { rows, form, errors },
        &errors,
    )
}

/// `GET /admin/articles/categories`
pub async fn list(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
) -> AppResult<Response> {
    session.require(Permission::ManageArticles)?;
    render(
        &st,
        &headers,
        &session,
        &CategoryForm::default(),
        BTreeMap::new(),
    )
    .await
}

/// A duplicate name is the name field's error, not a page-level one.
fn errors_of(e: &AppError) -> BTreeMap<String, String> {
    if e.code() == "conflict" {
        return BTreeMap::from([("name".to_owned(), "已有同名栏目".to_owned())]);
    }
    field_errors(e)
}

/// `POST /admin/articles/categories`
pub async fn create(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
    Form(form): Form<CategoryForm>,
) -> AppResult<Response> {
    session.require(Permission::ManageArticles)?;
    let result = match form.position() {
        Ok(position) => service::create_category(&st, &session, &form.name, position).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => Ok(redirect_flash(LIST, true, "栏目已创建")),
        Err(e) if e.status().is_client_error() => {
            render(&st, &headers, &session, &form, errors_of(&e)).await
        }
        Err(e) => Err(e),
    }
}

/// `POST /admin/articles/categories/{id}`: rename and/or reorder.
pub async fn update(
    State(st): State<AppState>,
    session: ConsoleSession,
    Id(id): Id,
    Form(form): Form<CategoryForm>,
) -> AppResult<Response> {
    session.require(Permission::ManageArticles)?;
    let name = Some(form.name.as_str()).filter(|n| !n.trim().is_empty());
    let result = match form.position() {
        Ok(position) => service::update_category(&st, &session, id, name, position).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => Ok(redirect_flash(LIST, true, "栏目已保存")),
        Err(e) if e.code() == "menu_category" => Ok(redirect_flash(
            LIST,
            false,
            "该栏目由公众号菜单（content/menu.toml）定义，不能在此改名",
        )),
        Err(e) if e.code() == "conflict" => Ok(redirect_flash(LIST, false, "已有同名栏目")),
        Err(e) => redirect_error(LIST, e),
    }
}

/// `POST /admin/articles/categories/{id}/delete`: only an empty category.
pub async fn delete(
    State(st): State<AppState>,
    session: ConsoleSession,
    Id(id): Id,
) -> AppResult<Response> {
    session.require(Permission::ManageArticles)?;
    match service::delete_category(&st, &session, id).await {
        Ok(()) => Ok(redirect_flash(LIST, true, "栏目已删除")),
        Err(e) if e.code() == "menu_category" => Ok(redirect_flash(
            LIST,
            false,
            "该栏目由公众号菜单（content/menu.toml）定义，不能在此删除",
        )),
        Err(AppError::Conflict(_)) => {
            let c = store::category_by_id(&st.db, id).await?;
            let text = match c {
                Some(c) => format!(
                    "栏目「{}」下还有 {} 篇文章，不能删除：请先把文章移到其他栏目或删除",
                    c.name, c.article_count
                ),
                None => "栏目下还有文章，不能删除".to_owned(),
            };
            Ok(redirect_flash(LIST, false, &text))
        }
        Err(e) => redirect_error(LIST, e),
    }
}
