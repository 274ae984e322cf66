//! Articles' work shared by the editors' API, the mini-program and the public page: links and
//! category filters.

use crate::{
    app::AppState,
    articles::store,
    platform::error::{AppError, AppResult},
};

/// The public page of an article.
pub fn article_url(st: &AppState, id: i64) -> String {
    format!(
        "{}/articles/{id}",
        st.settings.public_url.trim_end_matches('/')
    )
}

pub fn unknown_category(name: &str) -> AppError {
    AppError::Validation(format!("category: no category named {name}"))
}

/// `?category=` by name or id; an unknown one is a validation error, not an empty list.
pub async fn category_filter(st: &AppState, category: &Option<String>) -> AppResult<Option<i64>> {
    match crate::http::extract::blank_to_none(category) {
        None => Ok(None),
        Some(c) => store::category_id(&st.db, c)
            .await?
            .map(Some)
            .ok_or_else(|| unknown_category(c)),
    }
}

// ---- editors' writes (the admin API and the console share these) -------------------------------

use serde_json::json;

use crate::{
    articles::rules::{self, Action, TransitionRefused, ValidArticle},
    auth::AdminSession,
    platform::audit,
};

pub fn refused(e: TransitionRefused) -> AppError {
    AppError::rejected(
        axum::http::StatusCode::CONFLICT,
        "invalid_transition",
        e.to_string(),
    )
}

fn not_found() -> AppError {
    AppError::NotFound("article".into())
}

/// A foreign-key violation is a conflict with other data, not a server fault.
pub fn fk_conflict(e: sqlx::Error, message: &str) -> AppError {
    match &e {
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
            AppError::Conflict(message.into())
        }
        _ => AppError::Db(e),
    }
}

fn article_audit(a: &ValidArticle) -> serde_json::Value {
    json!({"title": a.title, "category": a.category, "tags": a.tags, "cover_url": a.cover_url})
}

/// A new draft, audited `article.create`.
pub async fn create(st: &AppState, session: &AdminSession, a: &ValidArticle) -> AppResult<i64> {
    let html = crate::platform::markdown::render(&a.body_md);
    let mut tx = st.db.begin_write().await?;
    let id = store::create_draft(&mut tx, a, &html, session.now)
        .await?
        .ok_or_else(|| unknown_category(&a.category))?;
    let entry = session
        .audit("article.create", "article", id)
        .details(json!({"after": article_audit(a)}));
    audit::record(&mut *tx, &entry).await?;
    tx.commit().await?;
    Ok(id)
}

/// Full replacement of the editable fields; the status and the publish time stay.
pub async fn update(
    st: &AppState,
    session: &AdminSession,
    id: i64,
    a: &ValidArticle,
) -> AppResult<()> {
    let html = crate::platform::markdown::render(&a.body_md);
    let before = store::get(&st.db, id).await?.ok_or_else(not_found)?;
    let mut tx = st.db.begin_write().await?;
    let status = store::status_for_update(&st.db, &mut tx, id)
        .await?
        .ok_or_else(not_found)?;
    rules::next(status, Action::Edit).map_err(refused)?;
    let category_id = store::category_id_tx(&mut tx, &a.category)
        .await?
        .ok_or_else(|| unknown_category(&a.category))?;
    store::update_fields(&mut tx, id, category_id, a, &html, session.now).await?;
    let entry = session.audit("article.update", "article", id).details(json!({
        "before": {"title": before.title, "category": before.category, "tags": before.tags, "cover_url": before.cover_url},
        "after": article_audit(a),
        "status": status,
    }));
    audit::record(&mut *tx, &entry).await?;
    tx.commit().await?;
    Ok(())
}

/// Apply one status-machine action in a write transaction, audited as `article.<action>`.
pub async fn change_status(
    st: &AppState,
    session: &AdminSession,
    id: i64,
    action: Action,
    publish_at: Option<i64>,
) -> AppResult<()> {
    let now = session.now;
    let mut tx = st.db.begin_write().await?;
    let from = store::status_for_update(&st.db, &mut tx, id)
        .await?
        .ok_or_else(not_found)?;
    let to = rules::next(from, action).map_err(refused)?;
    let mut details = json!({"from": from, "to": to});
    if action == Action::Schedule {
        let at = publish_at.unwrap_or(now);
        store::schedule(&mut tx, id, at, now).await?;
        details["publish_at"] = json!(rules::rfc3339_shanghai(at));
    } else if !store::set_status(&mut tx, id, from, to, now, now).await? {
        return Err(AppError::Conflict(
            "the article changed meanwhile; reload and retry".into(),
        ));
    }
    let entry = session
        .audit(&format!("article.{}", action.as_str()), "article", id)
        .details(details);
    audit::record(&mut *tx, &entry).await?;
    tx.commit().await?;
    tracing::info!(article = id, action = action.as_str(), from = %from, to = %to, "article status");
    Ok(())
}

/// Publish now, or schedule when `at` is in the future.
pub async fn publish(
    st: &AppState,
    session: &AdminSession,
    id: i64,
    at: Option<i64>,
) -> AppResult<()> {
    match at {
        Some(at) if at > session.now => {
            change_status(st, session, id, Action::Schedule, Some(at)).await
        }
        _ => change_status(st, session, id, Action::Publish, None).await,
    }
}

/// Drafts only; refused while a banner links to the draft.
pub async fn delete_draft(st: &AppState, session: &AdminSession, id: i64) -> AppResult<()> {
    let before = store::get(&st.db, id).await?.ok_or_else(not_found)?;
    let mut tx = st.db.begin_write().await?;
    let status = store::status_for_update(&st.db, &mut tx, id)
        .await?
        .ok_or_else(not_found)?;
    rules::next(status, Action::Delete).map_err(refused)?;
    if store::banner_links(&mut tx, id).await? > 0 {
        return Err(AppError::Conflict(
            "a banner links to this article; change the banner first".into(),
        ));
    }
    let deleted = store::delete_draft(&mut tx, id)
        .await
        .map_err(|e| fk_conflict(e, "other records refer to this article"))?;
    if !deleted {
        return Err(AppError::Conflict(
            "the article changed meanwhile; reload and retry".into(),
        ));
    }
    let entry = session
        .audit("article.delete", "article", id)
        .details(json!({"before": {"title": before.title, "category": before.category}}));
    audit::record(&mut *tx, &entry).await?;
    tx.commit().await?;
    Ok(())
}

// ---- categories (the admin API and the console share these) ------------------------------------

use crate::articles::banner_store as banners;

/// Named in content/menu.toml: the menu and the start-up seeding refer to it by name, so it
/// can't be renamed or deleted from the API or the console.
pub fn is_menu_category(st: &AppState, name: &str) -> bool {
    st.content.get().menu.categories.iter().any(|c| c == name)
}

pub fn menu_category(verb: &str) -> AppError {
    AppError::rejected(
        axum::http::StatusCode::CONFLICT,
        "menu_category",
        format!("this category is defined in content/menu.toml; {verb} it there"),
    )
}

fn invalid(e: rules::FieldError) -> AppError {
    AppError::Validation(e.to_string())
}

/// A new category (last unless `position` is given), audited `category.create`.
pub async fn create_category(
    st: &AppState,
    session: &AdminSession,
    name: &str,
    position: Option<i64>,
) -> AppResult<i64> {
    let name = rules::check_category_name(name).map_err(invalid)?;
    let mut tx = st.db.begin_write().await?;
    let id = store::create_category(&mut tx, &name, position, session.now).await?;
    let entry = session
        .audit("category.create", "category", id)
        .details(json!({"after": {"name": name, "position": position}}));
    audit::record(&mut *tx, &entry).await?;
    tx.commit().await?;
    Ok(id)
}

/// Rename and/or reorder, audited `category.update`. Menu categories keep their name.
pub async fn update_category(
    st: &AppState,
    session: &AdminSession,
    id: i64,
    name: Option<&str>,
    position: Option<i64>,
) -> AppResult<()> {
    let name = name
        .map(rules::check_category_name)
        .transpose()
        .map_err(invalid)?;
    let current = store::category_by_id(&st.db, id)
        .await?
        .ok_or_else(|| AppError::NotFound("category".into()))?;
    if name.as_ref().is_some_and(|n| *n != current.name) && is_menu_category(st, &current.name) {
        return Err(menu_category("rename"));
    }
    let mut tx = st.db.begin_write().await?;
    if !store::update_category(&mut tx, id, name.as_deref(), position).await? {
        return Err(AppError::NotFound("category".into()));
    }
    let entry = session.audit("category.update", "category", id).details(json!({
        "before": {"name": current.name, "position": current.position},
        "after": {"name": name.as_deref().unwrap_or(&current.name), "position": position.unwrap_or(current.position)},
    }));
    audit::record(&mut *tx, &entry).await?;
    tx.commit().await?;
    Ok(())
}

/// Only an empty category that content/menu.toml doesn't name; audited `category.delete`.
pub async fn delete_category(st: &AppState, session: &AdminSession, id: i64) -> AppResult<()> {
    let current = store::category_by_id(&st.db, id)
        .await?
        .ok_or_else(|| AppError::NotFound("category".into()))?;
    if is_menu_category(st, &current.name) {
        return Err(menu_category("remove"));
    }
    let mut tx = st.db.begin_write().await?;
    if !store::delete_empty_category(&mut tx, id).await? {
        return Err(AppError::Conflict(
            "the category has articles; move or delete them first".into(),
        ));
    }
    let entry = session
        .audit("category.delete", "category", id)
        .details(json!({"before": {"name": current.name}}));
    audit::record(&mut *tx, &entry).await?;
    tx.commit().await?;
    Ok(())
}

// ---- banners (the admin API and the console share these) ---------------------------------------

fn time_opt(ms: Option<i64>) -> Option<String> {
    ms.map(rules::rfc3339_shanghai)
}

fn banner_audit(b: &rules::ValidBanner) -> serde_json::Value {
    json!({
        "title": b.title, "image_url": b.image_url, "article_id": b.article_id, "link_url": b.link_url,
        "position": b.position, "valid_from": time_opt(b.valid_from), "valid_until": time_opt(b.valid_until),
    })
}

/// Validate a banner; a linked article must exist.
pub async fn valid_banner(
    st: &AppState,
    input: &rules::BannerInput,
) -> AppResult<rules::ValidBanner> {
    let b = input.validate().map_err(invalid)?;
    if let Some(article_id) = b.article_id {
        if !banners::article_exists(&st.db, article_id).await? {
            return Err(AppError::Validation("article_id: no such article".into()));
        }
    }
    Ok(b)
}

/// A new banner, audited `banner.create`.
pub async fn create_banner(
    st: &AppState,
    session: &AdminSession,
    b: &rules::ValidBanner,
) -> AppResult<i64> {
    let mut tx = st.db.begin_write().await?;
    let id = banners::create(&mut tx, b, session.now)
        .await
        .map_err(|e| fk_conflict(e, "the linked article was deleted meanwhile"))?;
    let entry = session
        .audit("banner.create", "banner", id)
        .details(json!({"after": banner_audit(b)}));
    audit::record(&mut *tx, &entry).await?;
    tx.commit().await?;
    Ok(id)
}

/// Full replacement, audited `banner.update`.
pub async fn update_banner(
    st: &AppState,
    session: &AdminSession,
    id: i64,
    b: &rules::ValidBanner,
) -> AppResult<()> {
    let before = banners::get(&st.db, id)
        .await?
        .ok_or_else(|| AppError::NotFound("banner".into()))?;
    let mut tx = st.db.begin_write().await?;
    let found = banners::update(&mut tx, id, b, session.now)
        .await
        .map_err(|e| fk_conflict(e, "the linked article was deleted meanwhile"))?;
    if !found {
        return Err(AppError::NotFound("banner".into()));
    }
    let entry = session.audit("banner.update", "banner", id).details(json!({
        "before": {"title": before.title, "article_id": before.article_id, "link_url": before.link_url,
                   "position": before.position, "valid_from": time_opt(before.valid_from),
                   "valid_until": time_opt(before.valid_until)},
        "after": banner_audit(b),
    }));
    audit::record(&mut *tx, &entry).await?;
    tx.commit().await?;
    Ok(())
}

/// Audited `banner.delete`.
pub async fn delete_banner(st: &AppState, session: &AdminSession, id: i64) -> AppResult<()> {
    let before = banners::get(&st.db, id)
        .await?
        .ok_or_else(|| AppError::NotFound("banner".into()))?;
    let mut tx = st.db.begin_write().await?;
    if !banners::delete(&mut tx, id).await? {
        return Err(AppError::NotFound("banner".into()));
    }
    let entry = session
        .audit("banner.delete", "banner", id)
        .details(json!({"before": {"title": before.title}}));
    audit::record(&mut *tx, &entry).await?;
    tx.commit().await?;
    Ok(())
}
