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
