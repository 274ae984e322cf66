//! Public pages: the article page that news cards and shares link to (`/articles/{id}`).
//!
//! Only published articles are served; anything else is 404 in the one error shape. The body was
//! sanitised when it was saved, and the page's Content-Security-Policy forbids scripts anyway.

use axum::{extract::State, response::Response};

use crate::{
    app::AppState,
    articles::store::{self, PublicArticle},
    http::{public, Id},
    platform::error::{AppError, AppResult},
    platform::{pages, time::local_minute},
};

fn render(a: &PublicArticle) -> Result<String, minijinja::Error> {
    pages::render(
        "article.html",
        minijinja::context! {
            a => a,
            published => a.published_at.map(local_minute),
        },
    )
}

pub async fn article(State(st): State<AppState>, Id(id): Id) -> AppResult<Response> {
    let a = store::published_by_id(&st.db, id)
        .await?
        .ok_or_else(|| AppError::NotFound("article".into()))?;
    let html = render(&a).map_err(|e| AppError::Internal(e.into()))?;
    Ok(public::page(html))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn article() -> PublicArticle {
        PublicArticle {
            id: 1,
            title: "<b>标题</b>".into(),
            category: "党建动态".into(),
            body_html: "<p>正文</p>".into(),
            published_at: Some(1_782_864_000_000),
            author: Some("宣传部\"".into()),
            summary: "摘要".into(),
            cover_url: Some("https://img.example.com/a.jpg?a=1&b=2".into()),
            source: None,
            tags: vec!["学习".into()],
        }
    }

    #[test]
    fn page_escapes_fields_and_shows_shanghai_time() {
        let html = render(&article()).unwrap();
        assert!(
            html.contains("<h1>&lt;b&gt;标题&lt;&#x2f;b&gt;</h1>"),
            "{html}"
        );
        assert!(html.contains("宣传部&quot;"));
        assert!(html.contains("a=1&amp;b=2"));
        assert!(html.contains("2026-07-01 08:00"), "{html}");
        assert!(html.contains("name=\"viewport\""));
        assert!(!html.contains("来源"));
    }
}
