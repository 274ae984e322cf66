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
