//! Fixed windows (one minute unless a caller says otherwise) in the shared cache (Redis across
//! replicas, in-process otherwise).

use std::time::Duration;

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::{
    app::AppState,
    auth::ClientIp,
    platform::error::{AppError, AppResult},
};

const WINDOW: Duration = Duration::from_secs(60);

/// Count one hit on `key`; `Err(429)` once the window holds more than `limit`. While the shared
/// cache (Redis) is unavailable the windows are counted in this process instead (warning +
/// `dangjian_cache_fallbacks_total{component="rate_limit"}`): limits stay in force per replica,
/// and nothing waits for Redis (its calls are bounded).
pub async fn hit(st: &AppState, key: &str, limit: i64) -> AppResult<()> {
    hit_in(st, key, limit, WINDOW).await
}

/// [`hit`] with a longer fixed window (e.g. one hour for mini-program roster binding).
pub async fn hit_in(st: &AppState, key: &str, limit: i64, window: Duration) -> AppResult<()> {
    let key = format!("rl:{key}");
    let counted = match st.cache.incr(&key, window).await {
        Ok(n) => Ok(n),
        Err(e) => match st.cache.local() {
            Some(local) => {
                tracing::debug!(error = %e, "rate limit cache unavailable; counting in this process");
                st.metrics.cache_fallback("rate_limit");
                crate::platform::cache::Cache::incr(local, &key, window).await
            }
            None => Err(e),
        },
    };
    match counted {
        Ok(n) if n > limit => Err(AppError::TooManyRequests(if window <= WINDOW {
            "too many requests; try again in a minute".into()
        } else {
            format!(
                "too many requests; try again within {} minutes",
                window.as_secs().div_ceil(60)
            )
        })),
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::warn!(error = %e, "rate limit cache unavailable; not limiting");
            Ok(())
        }
    }
}

/// Count one event on `key` in a fixed `window` (e.g. failed logins of an address) and return
/// the count; in process while the shared cache is unavailable. 0 if nothing can count.
pub async fn count(st: &AppState, key: &str, window: Duration) -> i64 {
    let key = format!("rl:{key}");
    match st.cache.incr(&key, window).await {
        Ok(n) => n,
        Err(e) => match st.cache.local() {
            Some(local) => {
                tracing::debug!(error = %e, "rate limit cache unavailable; counting in this process");
                st.metrics.cache_fallback("rate_limit");
                crate::platform::cache::Cache::incr(local, &key, window)
                    .await
                    .unwrap_or(0)
            }
            None => 0,
        },
    }
}

/// The current count of `key` (see [`count`]), without counting.
pub async fn current(st: &AppState, key: &str) -> i64 {
    let key = format!("rl:{key}");
    let value = match st.cache.get(&key).await {
        Ok(v) => v,
        Err(_) => match st.cache.local() {
            Some(local) => crate::platform::cache::Cache::get(local, &key)
                .await
                .ok()
                .flatten(),
            None => None,
        },
    };
    value.and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Per-IP limit for the mini-program API (`rate_limit_mp_per_minute`): `startup` puts it on the
/// router of `MpRoutes`, the one table every `/api/mp` route is registered in.
pub async fn mp_limit(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let ip = ClientIp::resolve(&parts, &st.trusted_proxies).label();
    if let Err(e) = hit(
        &st,
        &format!("mp:{ip}"),
        st.settings.rate_limit_mp_per_minute,
    )
    .await
    {
        return e.into_response();
    }
    next.run(Request::from_parts(parts, body)).await
}
