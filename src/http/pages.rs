//! Public pages: the article page that news cards link to.

use axum::{
    extract::{Path, State},
    response::Html,
};

use crate::{db::articles, error::{AppError, AppResult}, startup::AppState};

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

pub async fn article(State(st): State<AppState>, Path(id): Path<i64>) -> AppResult<Html<String>> {
    let a = articles::published_by_id(&st.db, id).await?.ok_or_else(|| AppError::NotFound("article".into()))?;
    let date = a
        .published_at
        .and_then(|ms| time::OffsetDateTime::from_unix_timestamp(ms / 1000).ok())
        .map(|t| t.to_offset(time::macros::offset!(+8)))
        .map(|t| format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()))
        .unwrap_or_default();
    // body_html was sanitised when the article was saved.
    Ok(Html(format!(
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{title}</title>\
         <style>body{{max-width:42rem;margin:auto;padding:1rem;font-family:sans-serif;line-height:1.7}}\
         .meta{{color:#888}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3rem}}</style>\
         </head><body><article><h1>{title}</h1><p class=\"meta\">{category} · {date} · {author}</p>{body}</article></body></html>",
        title = escape(&a.title),
        category = escape(&a.category),
        author = escape(a.author.as_deref().unwrap_or("")),
        body = a.body_html,
    )))
}
