//! Public HTML pages (the article page, the portal): the headers they all carry.

use axum::{
    http::{header, HeaderValue},
    response::{Html, IntoResponse, Response},
};

/// No scripts, no frames, no forms; images from anywhere over http(s) (covers and banners live
/// on CDNs); inline styles only (each page carries its own small stylesheet).
pub const CSP: &str = "default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline'; \
                       base-uri 'none'; form-action 'none'; frame-ancestors 'self'";

/// `html` with the public pages' headers: the CSP above, `nosniff`, a strict referrer policy
/// and `Cache-Control: public, max-age=60` (short: an archived article or a withdrawn post
/// should disappear from caches soon).
pub fn page(html: String) -> Response {
    let mut resp = Html(html).into_response();
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
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    resp
}
