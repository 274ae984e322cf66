//! Public pages: the article page that news cards and shares link to (`/articles/{id}`).
//!
//! Only published articles are served; anything else is 404 in the one error shape. The body was
//! sanitised when it was saved, and the page's Content-Security-Policy forbids scripts anyway.

use axum::{
    extract::State,
    http::{header, HeaderValue},
    response::{Html, IntoResponse, Response},
};

use crate::{
    app::AppState,
    articles::store::{self, PublicArticle},
    http::Id,
    platform::error::{AppError, AppResult},
};

/// No scripts, no frames, no forms; images from anywhere over http(s) (covers live on CDNs).
const CSP: &str = "default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline'; \
                   base-uri 'none'; form-action 'none'; frame-ancestors 'self'";

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `2026-07-01 08:00` in Asia/Shanghai.
fn shanghai_date(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map(|t| t.to_offset(time::macros::offset!(+8)))
        .map(|t| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            )
        })
        .unwrap_or_default()
}

const STYLE: &str = "\
*{box-sizing:border-box}\
html{-webkit-text-size-adjust:100%}\
body{margin:0;background:#f5f5f5;color:#222;font:17px/1.75 -apple-system,BlinkMacSystemFont,\"PingFang SC\",\"Hiragino Sans GB\",\"Microsoft YaHei\",sans-serif}\
article{max-width:42rem;margin:0 auto;background:#fff;padding:1.25rem 1rem 2rem;min-height:100vh}\
h1{font-size:1.4rem;line-height:1.4;margin:0 0 .6rem}\
.meta{color:#888;font-size:.85rem;margin:0 0 1rem}\
.meta span+span:before{content:\"·\";margin:0 .4em}\
.cover{width:100%;border-radius:4px;margin-bottom:1rem}\
.summary{color:#555;background:#f7f7f7;border-left:3px solid #c8102e;padding:.6rem .8rem;margin:0 0 1.2rem;font-size:.95rem}\
.body img{max-width:100%;height:auto}\
.body h2,.body h3{color:#c8102e;line-height:1.4}\
.body table{border-collapse:collapse;width:100%;display:block;overflow-x:auto;font-size:.9rem}\
.body td,.body th{border:1px solid #ddd;padding:.35rem .5rem}\
.body blockquote{margin:0;padding:0 1rem;color:#666;border-left:3px solid #ddd}\
.body pre{overflow-x:auto;background:#f7f7f7;padding:.75rem}\
.tags{margin-top:1.5rem}\
.tags span{display:inline-block;background:#fdeaea;color:#c8102e;border-radius:1rem;padding:0 .7rem;margin:0 .4rem .4rem 0;font-size:.8rem}\
footer{color:#aaa;font-size:.8rem;margin-top:2rem;border-top:1px solid #eee;padding-top:.8rem}";

fn render(a: &PublicArticle) -> String {
    let mut meta = vec![format!("<span>{}</span>", escape(&a.category))];
    if let Some(ms) = a.published_at {
        meta.push(format!("<span><time>{}</time></span>", shanghai_date(ms)));
    }
    if let Some(author) = a.author.as_deref().filter(|s| !s.is_empty()) {
        meta.push(format!("<span>{}</span>", escape(author)));
    }
    let cover = a
        .cover_url
        .as_deref()
        .map(|u| format!("<img class=\"cover\" src=\"{}\" alt=\"\">", escape(u)))
        .unwrap_or_default();
    let summary = if a.summary.is_empty() {
        String::new()
    } else {
        format!("<p class=\"summary\">{}</p>", escape(&a.summary))
    };
    let tags = if a.tags.is_empty() {
        String::new()
    } else {
        let spans: String = a
            .tags
            .iter()
            .map(|t| format!("<span>{}</span>", escape(t)))
            .collect();
        format!("<div class=\"tags\">{spans}</div>")
    };
    let source = a
        .source
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| format!("<footer>来源：{}</footer>", escape(s)))
        .unwrap_or_default();
    format!(
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1,viewport-fit=cover\">\
         <meta name=\"description\" content=\"{description}\">\
         <meta property=\"og:title\" content=\"{title}\">\
         <title>{title}</title><style>{STYLE}</style></head><body>\
         <article><h1>{title}</h1><p class=\"meta\">{meta}</p>{cover}{summary}\
         <div class=\"body\">{body}</div>{tags}{source}</article></body></html>",
        title = escape(&a.title),
        description = escape(&a.summary),
        meta = meta.join(""),
        // body_html was sanitised by `markdown::render` when the article was saved.
        body = a.body_html,
    )
}

pub async fn article(State(st): State<AppState>, Id(id): Id) -> AppResult<Response> {
    let a = store::published_by_id(&st.db, id)
        .await?
        .ok_or_else(|| AppError::NotFound("article".into()))?;
    let mut resp = Html(render(&a)).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("strict-origin-when-cross-origin"),
    );
    // Short: an archived article should disappear from caches soon.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    Ok(resp)
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
        let html = render(&article());
        assert!(html.contains("<h1>&lt;b&gt;标题&lt;/b&gt;</h1>"));
        assert!(html.contains("宣传部&quot;"));
        assert!(html.contains("a=1&amp;b=2"));
        assert!(html.contains("2026-07-01 08:00"), "{html}");
        assert!(html.contains("name=\"viewport\""));
        assert!(!html.contains("来源"));
    }
}
