//! Password login shared by the API and the console.
//!
//! Every failed login gets the same answer — 401 `invalid_credentials`, "wrong username or
//! password" — after the same work (one Argon2 verification, against a dummy hash when the user is
//! unknown), whether the user is unknown, the password wrong, the account locked or disabled: the
//! answer tells an outsider nothing about which usernames exist. Administrators see the real
//! reason in the audit log (`auth.login_failed` with `reason`, `auth.ip_throttled`,
//! `auth.lockout`).
//!
//! Guessing is slowed first at the guesser's address: after `login_ip_max_failures` failures
//! within `login_ip_window_secs` that address gets 429 until the window ends (before any
//! password work). Only failures from many addresses reach `login_lockout_threshold` (set well
//! above the per-address limit) and lock the account itself, with exponential backoff; attempts
//! while it is locked do not extend the lock. Plus the per-minute limits per address and per
//! account name.

use std::time::Duration;

use axum::http::StatusCode;

use crate::{
    app::AppState,
    auth::{
        password, ratelimit,
        store::{self as users, AdminUser},
        token_store::{self as tokens, Issued, TokenKind},
        ClientIp,
    },
    platform::audit::{self, AuditEntry},
    platform::error::{AppError, AppResult},
};

pub struct LoggedIn {
    pub user: AdminUser,
    pub issued: Issued,
}

const MAX_LOCK_MS: i64 = 24 * 3600 * 1000;

/// The one answer to every failed login.
fn bad_credentials() -> AppError {
    AppError::rejected(
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
        "wrong username or password",
    )
}

fn address_throttled(window_secs: u64) -> AppError {
    AppError::TooManyRequests(format!(
        "too many failed logins from this address; try again within {} minutes",
        window_secs.div_ceil(60)
    ))
}

/// Lock duration after `failures` consecutive failures (none below the threshold).
pub fn lock_ms(failures: i64, threshold: i64, base_secs: u64) -> Option<i64> {
    if failures < threshold {
        return None;
    }
    let doublings = (failures - threshold).min(20) as u32;
    Some(
        ((base_secs as i64) * 1000)
            .saturating_mul(1 << doublings)
            .min(MAX_LOCK_MS),
    )
}

/// Why a login failed (for the audit log only; the caller always gets [`bad_credentials`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    UnknownUser,
    BadPassword,
    Locked,
    Disabled,
}

impl Failure {
    fn reason(self) -> &'static str {
        match self {
            Failure::UnknownUser => "unknown_user",
            Failure::BadPassword => "bad_password",
            Failure::Locked => "locked",
            Failure::Disabled => "disabled",
        }
    }
}

pub async fn login(
    st: &AppState,
    username: &str,
    password: &str,
    ip: ClientIp,
    kind: TokenKind,
) -> AppResult<LoggedIn> {
    let s = &st.settings;
    let ip_label = ip.label();
    ratelimit::hit(
        st,
        &format!("login:ip:{ip_label}"),
        s.rate_limit_login_per_minute,
    )
    .await?;
    // An address that failed too often waits for its window to end, whatever it sends now.
    let failures_key = format!("login:failures:{ip_label}");
    if ratelimit::current(st, &failures_key).await >= s.login_ip_max_failures {
        return Err(address_throttled(s.login_ip_window_secs));
    }
    let username = username.trim();
    // Hashed: a mistyped password in the username field must not land in Redis keys.
    let account_key = tokens::hash_token(&username.to_lowercase());
    ratelimit::hit(
        st,
        &format!("login:user:{}", &account_key[..32]),
        s.rate_limit_login_per_minute,
    )
    .await?;

    let now = st.clock.unix_ms();
    let creds = users::by_username(&st.db, username).await?;
    // The same work for every attempt: one verification, against a dummy hash for unknown users.
    let hash = creds
        .as_ref()
        .map(|c| c.password_hash.clone())
        .unwrap_or_else(|| password::dummy_hash().to_owned());
    let password_ok = password::verify_blocking(password.to_owned(), hash).await;
    let failure = match &creds {
        None => Some(Failure::UnknownUser),
        Some(c) if c.user.locked_until.is_some_and(|t| t > now) => Some(Failure::Locked),
        Some(_) if !password_ok => Some(Failure::BadPassword),
        Some(c) if c.user.status != "active" => Some(Failure::Disabled),
        Some(_) => None,
    };
    let entry = |user: Option<&AdminUser>, action: &str, details: serde_json::Value| {
        let base = match user {
            Some(u) => AuditEntry {
                actor_id: Some(u.id),
                ..AuditEntry::system(
                    now,
                    &u.username,
                    action,
                    "admin_user",
                    Some(u.id.to_string()),
                )
            },
            // The attempted name is not recorded: it is sometimes a password typed in the wrong
            // field.
            None => AuditEntry::system(now, "anonymous", action, "admin_user", None),
        };
        AuditEntry {
            ip: ip.0.map(|i| i.to_string()),
            ..base
        }
        .details(details)
    };
    let Some(failure) = failure else {
        let user = creds.expect("a successful login has an account").user;
        return succeed(st, user, ip, kind, now).await;
    };

    let user = creds.as_ref().map(|c| &c.user);
    audit::record(
        st.db.pool(),
        &entry(
            user,
            "auth.login_failed",
            serde_json::json!({"reason": failure.reason(), "kind": kind.as_str()}),
        ),
    )
    .await?;
    let window = Duration::from_secs(s.login_ip_window_secs);
    let from_here = ratelimit::count(st, &failures_key, window).await;
    if from_here == s.login_ip_max_failures {
        audit::record(
            st.db.pool(),
            &entry(
                None,
                "auth.ip_throttled",
                serde_json::json!({"failures": from_here, "throttled_for_secs": s.login_ip_window_secs}),
            ),
        )
        .await?;
        tracing::warn!(ip = %ip_label, failures = from_here, "login address throttled after failed logins");
    }
    if failure == Failure::BadPassword {
        let user = user.expect("a bad password has an account");
        let failures = users::record_failed_login(&st.db, user.id).await?;
        if let Some(ms) = lock_ms(
            failures,
            s.login_lockout_threshold,
            s.login_lockout_base_secs,
        ) {
            users::lock_until(&st.db, user.id, now + ms).await?;
            audit::record(
                st.db.pool(),
                &entry(
                    Some(user),
                    "auth.lockout",
                    serde_json::json!({"reason": "too_many_failures", "failures": failures, "locked_for_secs": ms / 1000}),
                ),
            )
            .await?;
            tracing::warn!(
                user_id = user.id,
                failures,
                locked_for_secs = ms / 1000,
                "admin account locked after failed logins"
            );
        }
    }
    Err(bad_credentials())
}

async fn succeed(
    st: &AppState,
    user: AdminUser,
    ip: ClientIp,
    kind: TokenKind,
    now: i64,
) -> AppResult<LoggedIn> {
    let s = &st.settings;
    let ttl = match kind {
        TokenKind::Api => s.admin_token_ttl_secs,
        TokenKind::Console => s.console_session_ttl_secs,
    };
    let ip_text = ip.0.map(|i| i.to_string());
    let issued = tokens::issue(&st.db, user.id, kind, now, ttl, ip_text.as_deref()).await?;
    users::record_login(&st.db, user.id, now).await?;
    let entry = AuditEntry {
        actor_id: Some(user.id),
        ip: ip_text,
        ..AuditEntry::system(
            now,
            &user.username,
            "auth.login",
            "admin_user",
            Some(user.id.to_string()),
        )
    }
    .details(serde_json::json!({"reason": "ok", "kind": kind.as_str()}));
    audit::record(st.db.pool(), &entry).await?;
    tracing::info!(user_id = user.id, kind = kind.as_str(), "admin login");
    Ok(LoggedIn {
        user: AdminUser {
            last_login_at: Some(now),
            locked_until: None,
            ..user
        },
        issued,
    })
}

#[cfg(test)]
mod tests {
    use super::lock_ms;

    #[test]
    fn lockout_grows_with_each_failure_and_is_capped() {
        assert_eq!(lock_ms(4, 5, 60), None);
        assert_eq!(lock_ms(5, 5, 60), Some(60_000));
        assert_eq!(lock_ms(6, 5, 60), Some(120_000));
        assert_eq!(lock_ms(8, 5, 60), Some(480_000));
        assert_eq!(lock_ms(60, 5, 60), Some(24 * 3600 * 1000));
    }
}
