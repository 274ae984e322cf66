//! Mini-program sessions and the [`MpSession`] extractor.
//!
//! `POST /api/mp/login` hands out an opaque bearer token (32 random bytes, base64url). Only its
//! SHA-256 is kept, as a cache key (Redis when configured, so every replica sees the session)
//! holding `{openid, member_id, expires_at}` for `mp_session_ttl_secs`. WeChat's `session_key` is
//! not kept: nothing here decrypts `wx.getUserInfo` data, and the phone number comes from
//! `getuserphonenumber` with its own code.

use std::time::Duration;

use axum::{extract::FromRequestParts, http::request::Parts};
use serde::{Deserialize, Serialize};

use crate::{
    app::AppState,
    auth::{session::bearer, token_store as tokens},
    platform::error::{AppError, AppResult},
};

/// The caller of an `/api/mp` route that requires login. Rejects with 401 `unauthorized` when the
/// `Authorization: Bearer` token is missing, unknown or expired.
#[derive(Clone)]
pub struct MpSession {
    pub openid: String,
    /// The roster entry bound to this openid when the session was created or last bound.
    pub member_id: Option<i64>,
    /// Unix milliseconds.
    pub expires_at: i64,
    token_hash: String,
}

impl std::fmt::Debug for MpSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The openid is a pseudonymous identifier, but still not for logs at debug level.
        f.debug_struct("MpSession")
            .field("member_id", &self.member_id)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
struct Stored {
    openid: String,
    member_id: Option<i64>,
    expires_at: i64,
}

fn cache_key(token_hash: &str) -> String {
    format!("mp_session:{token_hash}")
}

/// Sessions live only in the cache: while it is unavailable, a clear 503 (never a hang: cache
/// calls are bounded) rather than a 500 or a wrong 401.
fn cache_error(e: anyhow::Error) -> AppError {
    tracing::warn!(error = %e, "mini-program session cache unavailable");
    AppError::rejected(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "cache_unavailable",
        "sessions are temporarily unavailable; try again shortly",
    )
}

/// A freshly created session: the token is shown to the client once and never stored.
pub struct Issued {
    pub token: String,
    pub session: MpSession,
}

impl MpSession {
    /// Create a session for `openid`, valid for `mp_session_ttl_secs` from now.
    pub async fn create(st: &AppState, openid: &str, member_id: Option<i64>) -> AppResult<Issued> {
        let token = tokens::random_token();
        let ttl_secs = st.settings.mp_session_ttl_secs;
        let session = MpSession {
            openid: openid.to_owned(),
            member_id,
            expires_at: st.clock.unix_ms() + (ttl_secs as i64) * 1000,
            token_hash: tokens::hash_token(&token),
        };
        session.store(st, Duration::from_secs(ttl_secs)).await?;
        Ok(Issued { token, session })
    }

    /// Resolve a bearer token; `None` when unknown or expired.
    pub async fn resolve(st: &AppState, token: &str) -> AppResult<Option<MpSession>> {
        let token_hash = tokens::hash_token(token);
        let Some(raw) = st
            .cache
            .get(&cache_key(&token_hash))
            .await
            .map_err(cache_error)?
        else {
            return Ok(None);
        };
        let Ok(s) = serde_json::from_str::<Stored>(&raw) else {
            tracing::warn!("unreadable mini-program session in the cache; treated as absent");
            return Ok(None);
        };
        // The cache expires entries on its own clock; the app's clock decides too.
        if s.expires_at <= st.clock.unix_ms() {
            return Ok(None);
        }
        Ok(Some(MpSession {
            openid: s.openid,
            member_id: s.member_id,
            expires_at: s.expires_at,
            token_hash,
        }))
    }

    /// Record the bound member in this session, keeping its expiry.
    pub async fn set_member(&mut self, st: &AppState, member_id: Option<i64>) -> AppResult<()> {
        self.member_id = member_id;
        let left = self.expires_at - st.clock.unix_ms();
        if left <= 0 {
            return Err(AppError::Unauthorized);
        }
        self.store(st, Duration::from_millis(left as u64)).await
    }

    async fn store(&self, st: &AppState, ttl: Duration) -> AppResult<()> {
        let value = serde_json::to_string(&Stored {
            openid: self.openid.clone(),
            member_id: self.member_id,
            expires_at: self.expires_at,
        })
        .map_err(|e| AppError::Internal(e.into()))?;
        st.cache
            .set(&cache_key(&self.token_hash), &value, ttl)
            .await
            .map_err(cache_error)
    }
}

impl FromRequestParts<AppState> for MpSession {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(s) = parts.extensions.get::<MpSession>() {
            return Ok(s.clone());
        }
        let token = bearer(&parts.headers).ok_or(AppError::Unauthorized)?;
        let s = MpSession::resolve(st, token)
            .await?
            .ok_or(AppError::Unauthorized)?;
        parts.extensions.insert(s.clone());
        Ok(s)
    }
}

/// The route takes a mini-program session's bearer token.
impl crate::http::doc::DocArg for MpSession {
    fn document(op: &mut crate::http::doc::OpDoc, _gen: &mut schemars::SchemaGenerator) {
        op.secured = true;
    }
}
