//! Public HTML pages (the article page, the portal): the headers they all carry, and the dev
//! mode's demo banner images.

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

const DEMO_BANNERS: [&str; 2] = [
    include_str!("../../static/banner-1.svg"),
    include_str!("../../static/banner-2.svg"),
];

/// `GET /static/banner-1.svg` and `/static/banner-2.svg`: the dev mode's demo focus banners (the
/// demo articles' banners point here), served by the binary like the console's assets.
pub fn static_router<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    let banner = |svg: &'static str| {
        move || async move {
            (
                [
                    (header::CONTENT_TYPE, "image/svg+xml"),
                    (header::CACHE_CONTROL, "public, max-age=3600"),
                ],
                svg,
            )
        }
    };
    axum::Router::new()
        .route(
            "/static/banner-1.svg",
            axum::routing::get(banner(DEMO_BANNERS[0])),
        )
        .route(
            "/static/banner-2.svg",
            axum::routing::get(banner(DEMO_BANNERS[1])),
        )
}
