//! Request-side identity: the client's IP and the admin session.

use std::net::{IpAddr, SocketAddr};

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::{header, request::Parts, HeaderMap, Method},
};
use ipnet::IpNet;
use subtle::ConstantTimeEq;

use crate::{
    app::AppState,
    auth::{token_store as tokens, Permission, Role},
    platform::audit::AuditEntry,
    platform::db::Db,
    platform::error::{AppError, AppResult},
    platform::org::{self, OrgScope},
};

/// Name of the console session cookie on a plain-http public URL (development).
pub const SESSION_COOKIE: &str = "dj_session";
/// Its name whenever `DANGJIAN_PUBLIC_URL` is https: browsers accept a `__Host-` cookie only with
/// `Secure`, `Path=/` and no `Domain`, so a sibling subdomain can neither set nor fix it.
pub const SESSION_COOKIE_HOST: &str = "__Host-dj_session";

/// Whether the public URL is https (then cookies are `__Host-` prefixed and `Secure`). On a plain
/// http URL (local development) browsers refuse `Secure` and `__Host-` cookies from an http
/// origin, so the console could not log in at all: the plain names are used there.
pub fn https_public_url(settings: &crate::platform::config::Settings) -> bool {
    settings.public_url.starts_with("https://")
}

/// The console session cookie's name for this deployment; only that name is read, so on https an
/// unprefixed `dj_session` planted by a sibling subdomain is ignored.
pub fn session_cookie_name(settings: &crate::platform::config::Settings) -> &'static str {
    if https_public_url(settings) {
        SESSION_COOKIE_HOST
    } else {
        SESSION_COOKIE
    }
}
/// Header carrying the CSRF token when a cookie session calls `/api/admin` with an unsafe method.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The client's address: the TCP peer, or — only when the peer is one of
/// `DANGJIAN_TRUSTED_PROXIES` — the nearest untrusted hop of `X-Forwarded-For`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub Option<IpAddr>);

impl ClientIp {
    pub fn resolve(parts: &Parts, trusted: &[IpNet]) -> ClientIp {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        ClientIp(peer.map(|p| from_forwarded(p, &parts.headers, trusted)))
    }

    pub fn label(&self) -> String {
        self.0
            .map(|ip| ip.to_string())
            .unwrap_or_else(|| "unknown".into())
    }
}

fn from_forwarded(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let mut client = peer;
    // Right to left: each trusted proxy vouches for the hop before it; stop at the first
    // address no trusted proxy added (anything further left is client-controlled).
    for hop in hops.iter().rev() {
        match hop
            .parse::<IpAddr>()
            .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        {
            Ok(ip) => {
                client = ip;
                if !is_trusted(&ip) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client
}

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Self::Rejection> {
        Ok(ClientIp::resolve(parts, &st.trusted_proxies))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// `Authorization: Bearer` (API clients, scripts).
    Bearer,
    /// The console's session cookie.
    Cookie,
}

/// Marker the console layer puts on a request whose form CSRF token it has verified.
#[derive(Debug, Clone, Copy)]
pub struct CsrfVerified;

/// A signed-in console/API user. Extract it in any handler; the `/api/admin` route table has
/// already checked the route's permission, so most handlers only use it for scoping and auditing.
#[derive(Debug, Clone)]
pub struct AdminSession {
    pub user_id: i64,
    pub username: String,
    pub role: Role,
    /// Secretaries: the root of the org-unit subtree they act on.
    pub org_unit_id: Option<i64>,
    pub kind: SessionKind,
    pub ip: ClientIp,
    pub expires_at: i64,
    /// CSRF synchroniser token of a console session.
    pub csrf: Option<String>,
    pub(crate) token_hash: String,
    /// Request time (unix ms) from the app clock.
    pub now: i64,
}

impl AdminSession {
    pub fn can(&self, p: Permission) -> bool {
        self.role.allows(p)
    }

    /// `session.require(Permission::ManageDues)?`
    pub fn require(&self, p: Permission) -> AppResult<()> {
        if self.can(p) {
            Ok(())
        } else {
            Err(AppError::Forbidden(format!(
                "the {} role may not do this",
                self.role
            )))
        }
    }

    /// The org units this session may act on for member/dues/activity data: admins everything,
    /// secretaries their unit and its descendants, anyone else nothing.
    pub async fn org_scope(&self, db: &Db) -> AppResult<OrgScope> {
        Ok(match (self.role, self.org_unit_id) {
            (Role::Admin, _) => OrgScope::All,
            (Role::Secretary, Some(root)) => OrgScope::Units(org::subtree_ids(db, root).await?),
            _ => OrgScope::Units(Vec::new()),
        })
    }

    /// An audit entry by this session's user, from its IP, at request time.
    pub fn audit(&self, action: &str, target_type: &str, target_id: impl ToString) -> AuditEntry {
        let target_id = target_id.to_string();
        AuditEntry {
            at: self.now,
            actor_id: Some(self.user_id),
            actor: self.username.clone(),
            action: action.to_owned(),
            target_type: target_type.to_owned(),
            target_id: (!target_id.is_empty()).then_some(target_id),
            ip: self.ip.0.map(|i| i.to_string()),
            details: serde_json::Value::Object(Default::default()),
        }
    }

    pub fn token_hash(&self) -> &str {
        &self.token_hash
    }
}

pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

pub fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl AdminSession {
    /// Resolve without the extension shortcut (used by the route table's permission layer).
    pub async fn resolve(parts: &Parts, st: &AppState) -> AppResult<AdminSession> {
        Self::resolve_inner(parts, st, true).await
    }

    /// For the console's CSRF layer, which checks the form field itself.
    pub(crate) async fn resolve_without_csrf(
        parts: &Parts,
        st: &AppState,
    ) -> AppResult<AdminSession> {
        Self::resolve_inner(parts, st, false).await
    }

    async fn resolve_inner(
        parts: &Parts,
        st: &AppState,
        check_csrf: bool,
    ) -> AppResult<AdminSession> {
        let now = st.clock.unix_ms();
        let (token, kind) = match (
            bearer(&parts.headers),
            cookie(&parts.headers, session_cookie_name(&st.settings)),
        ) {
            (Some(t), _) => (t, SessionKind::Bearer),
            (None, Some(c)) => (c, SessionKind::Cookie),
            (None, None) => return Err(AppError::Unauthorized),
        };
        let r = tokens::resolve(&st.db, token, now)
            .await?
            .ok_or(AppError::Unauthorized)?;
        if kind == SessionKind::Cookie {
            if r.kind != tokens::TokenKind::Console {
                return Err(AppError::Unauthorized);
            }
            // A browser sends the cookie on cross-site requests too: unsafe methods must prove
            // they come from our own pages (form field, checked by the console layer, or header).
            let unsafe_method =
                !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
            if check_csrf && unsafe_method && parts.extensions.get::<CsrfVerified>().is_none() {
                let sent = parts
                    .headers
                    .get(CSRF_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let expected = r.csrf.as_deref().unwrap_or("");
                if expected.is_empty() || !ct_eq(sent, expected) {
                    return Err(AppError::rejected(
                        axum::http::StatusCode::FORBIDDEN,
                        "csrf_failed",
                        "missing or wrong CSRF token",
                    ));
                }
            }
        }
        Ok(AdminSession {
            user_id: r.user_id,
            username: r.username,
            role: r.role,
            org_unit_id: r.org_unit_id,
            kind,
            ip: ClientIp::resolve(parts, &st.trusted_proxies),
            expires_at: r.expires_at,
            csrf: r.csrf,
            token_hash: r.token_hash,
            now,
        })
    }
}

impl FromRequestParts<AppState> for AdminSession {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(s) = parts.extensions.get::<AdminSession>() {
            return Ok(s.clone());
        }
        let s = AdminSession::resolve(parts, st).await?;
        parts.extensions.insert(s.clone());
        Ok(s)
    }
}

/// The admin route table's [`Guard`](crate::http::routes::Guard): resolves the session from the
/// bearer token or console cookie, checks the route's permission, and hands the session to the
/// handler as a request extension.
pub fn admin_guard(
    st: AppState,
    permission: Permission,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = axum::response::Response> + Send>> {
    use axum::response::IntoResponse;
    Box::pin(async move {
        let (mut parts, body) = req.into_parts();
        let session = match AdminSession::resolve(&parts, &st).await {
            Ok(s) => s,
            Err(e) => return e.into_response(),
        };
        if let Err(e) = session.require(permission) {
            return e.into_response();
        }
        parts.extensions.insert(session);
        next.run(axum::extract::Request::from_parts(parts, body))
            .await
    })
}

/// The route takes an admin session's bearer token.
impl crate::http::doc::DocArg for AdminSession {
    fn document(op: &mut crate::http::doc::OpDoc, _gen: &mut schemars::SchemaGenerator) {
        op.secured = true;
    }
}

impl crate::http::doc::DocArg for ClientIp {}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().unwrap());
        h
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // Untrusted peer: header ignored.
        assert_eq!(
            from_forwarded(ip("203.0.113.9"), &headers("1.2.3.4"), &trusted),
            ip("203.0.113.9")
        );
        // Trusted peer: the nearest untrusted hop, not a spoofed leftmost value.
        assert_eq!(
            from_forwarded(
                ip("10.0.0.2"),
                &headers("6.6.6.6, 198.51.100.7, 10.0.0.5"),
                &trusted
            ),
            ip("198.51.100.7")
        );
        // Garbage stops the walk at the proxy.
        assert_eq!(
            from_forwarded(ip("10.0.0.2"), &headers("nonsense"), &trusted),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn scope_conditions() {
        assert_eq!(OrgScope::All.sql_condition("x"), "1=1");
        assert_eq!(OrgScope::Units(vec![]).sql_condition("x"), "1=0");
        assert_eq!(
            OrgScope::Units(vec![1, 2]).sql_condition("m.org_unit_id"),
            "m.org_unit_id IN (1,2)"
        );
        assert!(OrgScope::Units(vec![3]).require(4).is_err());
    }
}
