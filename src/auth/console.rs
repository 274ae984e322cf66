//! `/admin`: the editors' web console (server-rendered). Session cookie `dj_session` (HttpOnly,
//! SameSite=Lax), a CSRF synchroniser token checked on every unsafe request by [`csrf_layer`],
//! and security headers on every response.
//!
//! When `DANGJIAN_PUBLIC_URL` is https, both cookies are `__Host-` prefixed (`__Host-dj_session`,
//! `__Host-dj_login_csrf`), `Secure` and `Path=/`, so no sibling subdomain can set or fix them. On a
//! plain-http URL (development only) browsers would drop such cookies, so the plain names are used.
//!
//! Console pages of each feature live in its `console.rs` and `console_router()`, merged by startup
//! into [`router`] (so they get the CSRF layer and headers); handlers take [`ConsoleSession`] and
//! render through `http::console::page`. Forms carry the session's token as a hidden field `csrf`
//! (`{{ m.csrf(chrome) }}`); scripts calling `/api/admin` send header `X-CSRF-Token`.

use std::collections::HashMap;

use axum::{
    body::Body,
    extract::{Request, State},
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    middleware::{self, Next},
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
    Form, Router,
};
use serde::Deserialize;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::{
    app::AppState,
    auth::{
        login,
        session::{
            cookie, ct_eq, https_public_url, session_cookie_name, CsrfVerified, CSRF_HEADER,
        },
        token_store::{self as tokens, TokenKind},
        AdminSession, ClientIp,
    },
    http::console::{self, Chrome},
    platform::error::{AppError, AppResult},
    platform::{audit, pages},
};

const LOGIN_CSRF_COOKIE: &str = "dj_login_csrf";
const LOGIN_CSRF_COOKIE_HOST: &str = "__Host-dj_login_csrf";
const FORM_LIMIT: usize = 64 * 1024;

const CSP: &str =
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: https:; \
                   object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The console: login, logout, the dashboard, the shell's static files and every feature's console
/// `pages` (merged by startup), all behind the CSRF layer and the security headers.
pub fn router(state: AppState, pages: Router<AppState>) -> Router<AppState> {
    let hdr = |name: &'static str, value: &'static str| {
        SetResponseHeaderLayer::overriding(
            header::HeaderName::from_static(name),
            HeaderValue::from_static(value),
        )
    };
    Router::new()
        .route("/admin", get(|| async { Redirect::to("/admin/") }))
        .route("/admin/", get(dashboard))
        .route("/admin/login", get(login_page).post(login_submit))
        .route("/admin/logout", post(logout))
        .merge(pages)
        .merge(crate::http::console::static_router())
        .layer(middleware::from_fn_with_state(state, csrf_layer))
        .layer(hdr("content-security-policy", CSP))
        .layer(hdr("x-frame-options", "DENY"))
        .layer(hdr("x-content-type-options", "nosniff"))
        .layer(hdr("referrer-policy", "same-origin"))
        .layer(hdr("cache-control", "no-store"))
}

/// The attributes every console cookie shares: `Secure` on https.
fn secure(st: &AppState) -> &'static str {
    if https_public_url(&st.settings) {
        "; Secure"
    } else {
        ""
    }
}

/// The login-CSRF cookie: `__Host-` (hence `Path=/`) on https, scoped to the login page otherwise.
fn login_csrf_cookie_name(st: &AppState) -> (&'static str, &'static str) {
    if https_public_url(&st.settings) {
        (LOGIN_CSRF_COOKIE_HOST, "/")
    } else {
        (LOGIN_CSRF_COOKIE, "/admin/login")
    }
}

/// The fields of an `application/x-www-form-urlencoded` body (the last of a repeated name wins).
fn parse_form(body: &[u8]) -> HashMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}

fn csrf_failed() -> Response {
    AppError::rejected(
        StatusCode::FORBIDDEN,
        "csrf_failed",
        "missing or wrong CSRF token; reload the page",
    )
    .into_response()
}

/// Checks the CSRF token of every unsafe console request before any handler runs: the login form
/// against its pre-session cookie (login CSRF), everything else against the session's token.
pub async fn csrf_layer(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let multipart = parts
        .headers
        .get(header::CONTENT_TYPE)
        .filter(|v| {
            v.to_str()
                .is_ok_and(|t| t.to_ascii_lowercase().starts_with("multipart/form-data"))
        })
        .cloned();
    let limit = if multipart.is_some() {
        console::UPLOAD_LIMIT
    } else {
        FORM_LIMIT
    };
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => return AppError::PayloadTooLarge.into_response(),
    };
    let header_token = parts
        .headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let sent = match (header_token, multipart) {
        (Some(t), _) => t,
        (None, Some(ct)) => multipart_csrf(ct, &bytes).await.unwrap_or_default(),
        (None, None) => parse_form(&bytes).remove("csrf").unwrap_or_default(),
    };
    let expected = if parts.uri.path() == "/admin/login" {
        cookie(&parts.headers, login_csrf_cookie_name(&st).0).map(str::to_owned)
    } else {
        match AdminSession::resolve_without_csrf(&parts, &st).await {
            Ok(s) if s.csrf.is_some() => {
                let expected = s.csrf.clone();
                parts.extensions.insert(s);
                expected
            }
            Ok(_) => None,
            Err(AppError::Unauthorized) => return Redirect::to("/admin/login").into_response(),
            Err(e) => return e.into_response(),
        }
    };
    match expected {
        Some(e) if !e.is_empty() && ct_eq(&sent, &e) => {
            parts.extensions.insert(CsrfVerified);
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        _ => csrf_failed(),
    }
}

/// The `csrf` field of a multipart upload form. It comes before the file inputs (the form puts it
/// first, and browsers send fields in document order), so only the start of the body is parsed.
async fn multipart_csrf(content_type: HeaderValue, bytes: &axum::body::Bytes) -> Option<String> {
    use axum::extract::FromRequest;
    let head = bytes.slice(..bytes.len().min(FORM_LIMIT));
    let req = Request::builder()
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(head))
        .ok()?;
    let mut form = axum::extract::Multipart::from_request(req, &())
        .await
        .ok()?;
    while let Ok(Some(field)) = form.next_field().await {
        if field.name() == Some("csrf") {
            return field.text().await.ok();
        }
        if field.file_name().is_some() {
            return None;
        }
    }
    None
}

fn login_form(csrf: &str, error: Option<&str>) -> String {
    pages::render(
        "console/login.html",
        minijinja::context! { csrf => csrf, error => error },
    )
    .unwrap_or_else(|e| {
        tracing::error!(error = %e, "console login template failed");
        String::new()
    })
}

fn login_csrf_cookie(st: &AppState, value: &str) -> HeaderValue {
    let (name, path) = login_csrf_cookie_name(st);
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; HttpOnly; SameSite=Strict; Max-Age=3600{}",
        secure(st)
    ))
    .expect("cookie header")
}

async fn login_page(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let csrf = match cookie(&headers, login_csrf_cookie_name(&st).0) {
        Some(c)
            if c.len() == 43
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            c.to_owned()
        }
        _ => tokens::random_token(),
    };
    (
        [(header::SET_COOKIE, login_csrf_cookie(&st, &csrf))],
        Html(login_form(&csrf, None)),
    )
        .into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

async fn login_submit(
    State(st): State<AppState>,
    ip: ClientIp,
    Form(form): Form<LoginForm>,
) -> Response {
    match login::login(&st, &form.username, &form.password, ip, TokenKind::Console).await {
        Ok(done) => {
            let ttl = st.settings.console_session_ttl_secs;
            let cookie = format!(
                "{}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={ttl}{}",
                session_cookie_name(&st.settings),
                done.issued.token,
                secure(&st)
            );
            let (csrf_name, csrf_path) = login_csrf_cookie_name(&st);
            let clear = format!(
                "{csrf_name}=; Path={csrf_path}; HttpOnly; SameSite=Strict; Max-Age=0{}",
                secure(&st)
            );
            let mut resp = Redirect::to("/admin/").into_response();
            let h = resp.headers_mut();
            h.append(
                header::SET_COOKIE,
                HeaderValue::from_str(&cookie).expect("cookie"),
            );
            h.append(
                header::SET_COOKIE,
                HeaderValue::from_str(&clear).expect("cookie"),
            );
            resp
        }
        Err(e) => {
            let status = e.status();
            let msg = match e.code() {
                "invalid_credentials" => "用户名或密码错误",
                "account_locked" => "登录失败次数过多，账号已暂时锁定，请稍后再试",
                "rate_limited" => "尝试过于频繁，请一分钟后再试",
                "account_disabled" => "账号已停用",
                _ => "登录失败，请稍后再试",
            };
            if status.is_server_error() {
                tracing::error!(error = %e, "console login failed");
            }
            (status, Html(login_form(&form.csrf, Some(msg)))).into_response()
        }
    }
}

/// A signed-in console user for page handlers: without a valid session cookie the request is
/// redirected to the login page (an API caller gets the JSON error from `AdminSession`).
pub struct ConsoleSession(pub AdminSession);

impl ConsoleSession {
    /// The shell's values for the layout; `nav` names the active navigation item.
    pub fn chrome(&self, nav: &'static str) -> Chrome {
        Chrome {
            user: self.0.username.clone(),
            role: role_label(self.0.role).to_owned(),
            role_key: self.0.role.as_str(),
            csrf: self.0.csrf.clone().unwrap_or_default(),
            nav,
        }
    }

    /// A console page needs the same permission as the admin API behind it.
    pub fn require(&self, p: crate::auth::Permission) -> AppResult<()> {
        self.0.require(p)
    }
}

fn role_label(r: crate::auth::Role) -> &'static str {
    match r.as_str() {
        "admin" => "管理员",
        "editor" => "编辑",
        "secretary" => "支部书记",
        _ => "只读",
    }
}

impl std::ops::Deref for ConsoleSession {
    type Target = AdminSession;
    fn deref(&self) -> &AdminSession {
        &self.0
    }
}

impl axum::extract::FromRequestParts<AppState> for ConsoleSession {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        st: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match AdminSession::from_request_parts(parts, st).await {
            Ok(s) => Ok(ConsoleSession(s)),
            Err(AppError::Unauthorized) => Err(Redirect::to("/admin/login").into_response()),
            Err(e) => Err(e.into_response()),
        }
    }
}

async fn dashboard(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
) -> AppResult<Response> {
    let user = crate::auth::store::by_id(&st.db, session.user_id)
        .await?
        .ok_or(AppError::Unauthorized)?
        .user;
    console::page(
        &headers,
        "console/dashboard.html",
        &session.chrome("home"),
        minijinja::context! {
            username => session.username,
            role => session.role.as_str(),
            org_unit => user.org_unit,
        },
    )
}

async fn logout(State(st): State<AppState>, session: AdminSession) -> AppResult<Response> {
    tokens::revoke(&st.db, session.token_hash(), session.now).await?;
    audit::record(
        st.db.pool(),
        &session.audit("auth.logout", "admin_user", session.user_id),
    )
    .await?;
    let clear = format!(
        "{}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{}",
        session_cookie_name(&st.settings),
        secure(&st)
    );
    let mut resp = Redirect::to("/admin/login").into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_str(&clear).expect("cookie"),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::parse_form;

    #[test]
    fn form_decoding() {
        let f = parse_form(b"username=a%20b+c&password=p%26q%3D&csrf=x&empty");
        assert_eq!(f["username"], "a b c");
        assert_eq!(f["password"], "p&q=");
        assert_eq!(f["csrf"], "x");
        assert_eq!(f["empty"], "");
        assert_eq!(parse_form(b"a=%zz%")["a"], "%zz%");
    }
}
