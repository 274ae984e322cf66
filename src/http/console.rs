//! The console's shell, shared by every feature's `console.rs`: rendering a page inside the
//! layout (navigation, flash message), flash messages (a short-lived cookie set on the redirect
//! after a POST and cleared by the next page), field errors from a validation error, pagination,
//! `datetime-local` form values, and the vendored stylesheet and script (served by the binary:
//! the CSP allows only our own origin). Knows no feature: handlers pass who is signed in.

use std::collections::BTreeMap;

use axum::{
    http::{header, HeaderMap, HeaderValue},
    response::{Html, IntoResponse, Redirect, Response},
    routing::get,
    Router,
};
use serde::Serialize;

use crate::platform::{
    db::Page,
    error::{AppError, AppResult},
    pages,
};

pub const FLASH_COOKIE: &str = "dj_flash";
/// The largest console request: a multipart upload form (the CSRF layer reads it whole; each
/// upload route sets its own, smaller, limit).
pub const UPLOAD_LIMIT: usize = 6 * 1024 * 1024;
const CSS: &str = include_str!("../../static/console.css");
const JS: &str = include_str!("../../static/console.js");

/// Who is signed in and which navigation item is active; every console template gets it as
/// `chrome` (the layout prints the user and puts `chrome.csrf` into every form).
#[derive(Debug, Clone, Serialize)]
pub struct Chrome {
    pub user: String,
    /// The role as people read it (管理员, 支部书记, 编辑).
    pub role: String,
    /// The role's key (`admin`, `secretary`, `editor`): the layout shows each role its links.
    pub role_key: &'static str,
    pub csrf: String,
    pub nav: &'static str,
}

/// `GET /admin/static/console.css` and `/admin/static/console.js`.
pub fn static_router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let asset = |ct: &'static str, body: &'static str| {
        (
            [
                (header::CONTENT_TYPE, ct),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            body,
        )
    };
    Router::new()
        .route(
            "/admin/static/console.css",
            get(move || async move { asset("text/css; charset=utf-8", CSS) }),
        )
        .route(
            "/admin/static/console.js",
            get(move || async move { asset("text/javascript; charset=utf-8", JS) }),
        )
}

fn flash_of(headers: &HeaderMap) -> Option<Flash> {
    let raw = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == FLASH_COOKIE)
        .map(|(_, v)| v.trim().to_owned())?;
    let decoded: String = form_urlencoded::parse(format!("m={raw}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())?;
    let (kind, text) = decoded.split_once(':')?;
    let kind = if kind == "error" { "error" } else { "ok" };
    Some(Flash {
        kind,
        text: text.chars().take(300).collect(),
    })
}

/// A message shown once at the top of the next page.
#[derive(Debug, Clone, Serialize)]
pub struct Flash {
    pub kind: &'static str,
    pub text: String,
}

/// Render `templates/<name>` inside the layout with `chrome`, the pending flash message and `ctx`.
pub fn page<C: Serialize>(
    headers: &HeaderMap,
    name: &str,
    chrome: &Chrome,
    ctx: C,
) -> AppResult<Response> {
    let flash = flash_of(headers);
    let html = pages::render(
        name,
        minijinja::context! { chrome => chrome, flash => flash, ..minijinja::Value::from_serialize(&ctx) },
    )
    .map_err(|e| AppError::Internal(e.into()))?;
    let mut resp = Html(html).into_response();
    if flash.is_some() {
        resp.headers_mut().append(
            header::SET_COOKIE,
            HeaderValue::from_static(
                "dj_flash=; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=0",
            ),
        );
    }
    Ok(resp)
}

/// 303 to `to` with a message for the next page (`ok` or error).
pub fn redirect_flash(to: &str, ok: bool, text: &str) -> Response {
    let value: String = form_urlencoded::byte_serialize(
        format!("{}:{text}", if ok { "ok" } else { "error" }).as_bytes(),
    )
    .collect();
    let mut resp = Redirect::to(to).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{FLASH_COOKIE}={value}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=60"
    )) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// The error of a failed write as a flash message (4xx: the message; 5xx: returned as is).
pub fn redirect_error(to: &str, e: AppError) -> AppResult<Response> {
    if e.status().is_server_error() {
        return Err(e);
    }
    Ok(redirect_flash(to, false, &human(&e)))
}

/// A short Chinese explanation of a refused request, for flash messages.
pub fn human(e: &AppError) -> String {
    let what = match e.code() {
        "not_found" => "记录不存在",
        "conflict" | "invalid_transition" => "当前状态不允许此操作",
        "forbidden" => "无权执行此操作",
        "validation_failed" => "输入有误",
        _ => "操作失败",
    };
    format!("{what}：{e}")
}

/// A validation error `field: reason` as `{field: reason}` for the form (other errors: empty
/// field name `""`).
pub fn field_errors(e: &AppError) -> BTreeMap<String, String> {
    let msg = match e {
        AppError::Validation(m) => m.clone(),
        other => human(other),
    };
    let mut out = BTreeMap::new();
    match msg.split_once(": ") {
        Some((f, r))
            if !f.is_empty() && f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
        {
            out.insert(f.to_owned(), r.to_owned());
        }
        _ => {
            out.insert(String::new(), msg);
        }
    }
    out
}

/// Like [`field_errors`], and a message that starts with one of `fields` (the rules' own wording:
/// "phone must be ...") goes next to that field too.
pub fn field_errors_of(e: &AppError, fields: &[&str]) -> BTreeMap<String, String> {
    let mut out = field_errors(e);
    if let Some(msg) = out.remove("") {
        let field = fields
            .iter()
            .find(|f| msg.starts_with(&format!("{f} ")))
            .map_or_else(String::new, |f| (*f).to_owned());
        out.insert(field, msg);
    }
    out
}

/// A form page: like [`page`], answered 422 when `errors` is not empty.
pub fn form_page<C: Serialize>(
    headers: &HeaderMap,
    name: &str,
    chrome: &Chrome,
    ctx: C,
    errors: &BTreeMap<String, String>,
) -> AppResult<Response> {
    let resp = page(headers, name, chrome, ctx)?;
    if errors.is_empty() {
        return Ok(resp);
    }
    Ok((axum::http::StatusCode::UNPROCESSABLE_ENTITY, resp).into_response())
}

/// The pagination partial's values: page links keep the other query parameters.
#[derive(Debug, Serialize)]
pub struct Pager {
    pub page: i64,
    pub pages: i64,
    pub total: i64,
    pub prev: Option<String>,
    pub next: Option<String>,
}

/// `query` are the list's filters (without `page`), already as pairs.
pub fn pager(page: Page, total: i64, query: &[(&str, &str)]) -> Pager {
    let pages = ((total + page.size - 1) / page.size).max(1);
    let link = |n: i64| {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in query.iter().filter(|(_, v)| !v.is_empty()) {
            s.append_pair(k, v);
        }
        s.append_pair("page", &n.to_string());
        format!("?{}", s.finish())
    };
    Pager {
        page: page.number,
        pages,
        total,
        prev: (page.number > 1).then(|| link(page.number - 1)),
        next: (page.number < pages).then(|| link(page.number + 1)),
    }
}

/// A `datetime-local` value (`2026-07-01T08:00`, Asia/Shanghai) or RFC 3339 → unix ms; blank → None.
/// A form time that is neither `datetime-local` nor RFC 3339.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadTime;

pub fn parse_local(value: &str) -> Result<Option<i64>, BadTime> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(None);
    }
    if let Some(ms) = crate::platform::time::parse_rfc3339(v) {
        return Ok(Some(ms));
    }
    let full = match v.len() {
        16 => format!("{v}:00+08:00"),
        19 => format!("{v}+08:00"),
        _ => return Err(BadTime),
    };
    crate::platform::time::parse_rfc3339(&full)
        .map(Some)
        .ok_or(BadTime)
}

/// Unix ms → the `datetime-local` value in Asia/Shanghai.
pub fn local_input(ms: i64) -> String {
    crate::platform::time::local_minute(ms).replace(' ', "T")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_times_parse_in_shanghai() {
        let ms = parse_local("2026-07-01T08:00").unwrap().unwrap();
        assert_eq!(crate::platform::time::rfc3339(ms), "2026-07-01T00:00:00Z");
        assert_eq!(local_input(ms), "2026-07-01T08:00");
        assert_eq!(parse_local(" "), Ok(None));
        assert!(parse_local("tomorrow").is_err());
    }

    #[test]
    fn field_errors_split_on_the_field_name() {
        let e = field_errors(&AppError::Validation("title: must not be empty".into()));
        assert_eq!(e["title"], "must not be empty");
        let e = field_errors(&AppError::Validation("something odd".into()));
        assert_eq!(e[""], "something odd");
        let e = field_errors_of(
            &AppError::Validation("phone must be 11 digits".into()),
            &["name", "phone"],
        );
        assert_eq!(e["phone"], "phone must be 11 digits");
    }

    #[test]
    fn pager_links_keep_filters() {
        let p = pager(
            Page {
                number: 2,
                size: 20,
            },
            45,
            &[("status", "draft"), ("q", "")],
        );
        assert_eq!(p.pages, 3);
        assert_eq!(p.prev.as_deref(), Some("?status=draft&page=1"));
        assert_eq!(p.next.as_deref(), Some("?status=draft&page=3"));
    }
}
