//! Password login shared by the API and the console: per-IP and per-account rate limits, then
//! lockout with exponential backoff after `login_lockout_threshold` failures.

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

fn bad_credentials() -> AppError {
    AppError::rejected(
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
        "wrong username or password",
    )
}

fn locked() -> AppError {
    AppError::rejected(
        StatusCode::TOO_MANY_REQUESTS,
        "account_locked",
        "too many failed logins; the account is locked for a while",
    )
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
    let Some(creds) = users::by_username(&st.db, username).await? else {
        // Same work as a real check, so timing does not reveal which usernames exist. The
        // attempted name is not recorded: it is sometimes a password typed in the wrong field.
        password::verify_blocking(password.to_owned(), password::dummy_hash().to_owned()).await;
        let entry = AuditEntry {
            ip: ip.0.map(|i| i.to_string()),
            ..AuditEntry::system(now, "anonymous", "auth.login_failed", "admin_user", None)
        }
        .details(serde_json::json!({"reason": "unknown_user"}));
        audit::record(st.db.pool(), &entry).await?;
        return Err(bad_credentials());
    };
    let user = creds.user;
    let audit_entry = |action: &str, reason: &str| {
        AuditEntry {
            actor_id: Some(user.id),
            ip: ip.0.map(|i| i.to_string()),
            ..AuditEntry::system(
                now,
                &user.username,
                action,
                "admin_user",
                Some(user.id.to_string()),
            )
        }
        .details(serde_json::json!({"reason": reason, "kind": kind.as_str()}))
    };
    if user.locked_until.is_some_and(|t| t > now) {
        audit::record(st.db.pool(), &audit_entry("auth.login_failed", "locked")).await?;
        return Err(locked());
    }
    if !password::verify_blocking(password.to_owned(), creds.password_hash).await {
        let failures = users::record_failed_login(&st.db, user.id).await?;
        audit::record(
            st.db.pool(),
            &audit_entry("auth.login_failed", "bad_password"),
        )
        .await?;
        if let Some(ms) = lock_ms(
            failures,
            s.login_lockout_threshold,
            s.login_lockout_base_secs,
        ) {
            users::lock_until(&st.db, user.id, now + ms).await?;
            let entry = audit_entry("auth.lockout", "too_many_failures")
                .details(serde_json::json!({"failures": failures, "locked_for_secs": ms / 1000}));
            audit::record(st.db.pool(), &entry).await?;
            tracing::warn!(
                user_id = user.id,
                failures,
                locked_for_secs = ms / 1000,
                "admin account locked after failed logins"
            );
            return Err(locked());
        }
        return Err(bad_credentials());
    }
    if user.status != "active" {
        audit::record(st.db.pool(), &audit_entry("auth.login_failed", "disabled")).await?;
        return Err(AppError::rejected(
            StatusCode::FORBIDDEN,
            "account_disabled",
            "this account is disabled",
        ));
    }
    let ttl = match kind {
        TokenKind::Api => s.admin_token_ttl_secs,
        TokenKind::Console => s.console_session_ttl_secs,
    };
    let ip_text = ip.0.map(|i| i.to_string());
    let issued = tokens::issue(&st.db, user.id, kind, now, ttl, ip_text.as_deref()).await?;
    users::record_login(&st.db, user.id, now).await?;
    audit::record(st.db.pool(), &audit_entry("auth.login", "ok")).await?;
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
