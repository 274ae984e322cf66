//! Login, logout, the current user, password change.

use axum::{extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::http::{routes::AdminRoutes, AppJson};
use crate::platform::time::rfc3339;
use crate::{
    app::AppState,
    auth::{
        login, password, ratelimit, store as users, token_store as tokens, AdminSession, ClientIp,
        Permission,
    },
    platform::audit,
    platform::error::{AppError, AppResult},
};

pub fn routes(r: AdminRoutes) -> AdminRoutes {
    r.post("/api/admin/login", Permission::Public, login)
        .post("/api/admin/logout", Permission::Authenticated, logout)
        .get("/api/admin/me", Permission::Authenticated, me)
        .post(
            "/api/admin/password",
            Permission::Authenticated,
            change_password,
        )
}

#[derive(Deserialize, schemars::JsonSchema)]
struct LoginBody {
    username: String,
    password: String,
}

/// An admin account as the API shows it (never the password hash).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct UserOut {
    pub id: i64,
    pub username: String,
    pub role: crate::auth::Role,
    pub org_unit_id: Option<i64>,
    pub org_unit: Option<String>,
    pub status: String,
    pub last_login_at: Option<String>,
    pub created_at: String,
}

pub(super) fn public_user(u: &users::AdminUser) -> UserOut {
    UserOut {
        id: u.id,
        username: u.username.clone(),
        role: u.role,
        org_unit_id: u.org_unit_id,
        org_unit: u.org_unit.clone(),
        status: u.status.clone(),
        last_login_at: u.last_login_at.map(rfc3339),
        created_at: rfc3339(u.created_at),
    }
}

#[derive(Serialize, schemars::JsonSchema)]
struct LoginOut {
    token: String,
    expires_at: String,
    user: UserOut,
}

#[derive(Serialize, schemars::JsonSchema)]
struct MeOut {
    user: UserOut,
    permissions: Vec<Permission>,
    expires_at: String,
}

#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct RevokedOut {
    pub sessions_revoked: u64,
}

async fn login(
    State(st): State<AppState>,
    ip: ClientIp,
    AppJson(body): AppJson<LoginBody>,
) -> AppResult<AppJson<LoginOut>> {
    let done = login::login(
        &st,
        &body.username,
        &body.password,
        ip,
        tokens::TokenKind::Api,
    )
    .await?;
    Ok(AppJson(LoginOut {
        token: done.issued.token,
        expires_at: rfc3339(done.issued.expires_at),
        user: public_user(&done.user),
    }))
}

async fn logout(State(st): State<AppState>, session: AdminSession) -> AppResult<StatusCode> {
    tokens::revoke(&st.db, session.token_hash(), session.now).await?;
    audit::record(
        st.db.pool(),
        &session.audit("auth.logout", "admin_user", session.user_id),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn me(State(st): State<AppState>, session: AdminSession) -> AppResult<AppJson<MeOut>> {
    let creds = users::by_id(&st.db, session.user_id)
        .await?
        .ok_or(AppError::Unauthorized)?;
    let permissions: Vec<_> = Permission::ALL
        .into_iter()
        .filter(|p| session.can(*p))
        .collect();
    Ok(AppJson(MeOut {
        user: public_user(&creds.user),
        permissions,
        expires_at: rfc3339(session.expires_at),
    }))
}

#[derive(Deserialize, schemars::JsonSchema)]
struct PasswordBody {
    old_password: String,
    new_password: String,
}

async fn change_password(
    State(st): State<AppState>,
    session: AdminSession,
    AppJson(body): AppJson<PasswordBody>,
) -> AppResult<AppJson<RevokedOut>> {
    // A stolen session must not become a way to guess the account's password.
    ratelimit::hit_in(
        &st,
        &format!("password:{}", session.user_id),
        st.settings.password_change_max_attempts,
        std::time::Duration::from_secs(st.settings.login_ip_window_secs),
    )
    .await?;
    let creds = users::by_id(&st.db, session.user_id)
        .await?
        .ok_or(AppError::Unauthorized)?;
    if !password::verify_blocking(body.old_password, creds.password_hash).await {
        audit::record(
            st.db.pool(),
            &session.audit("auth.password_change_failed", "admin_user", session.user_id),
        )
        .await?;
        return Err(AppError::rejected(
            StatusCode::FORBIDDEN,
            "invalid_credentials",
            "the old password is wrong",
        ));
    }
    password::check_policy(&session.username, &body.new_password).map_err(AppError::Validation)?;
    let hash = password::hash_blocking(body.new_password).await?;
    let mut tx = st.db.begin_write().await?;
    users::set_password(&mut *tx, session.user_id, &hash, session.now).await?;
    let revoked = tokens::revoke_all_for_user(
        &mut *tx,
        session.user_id,
        Some(session.token_hash()),
        session.now,
    )
    .await?;
    let entry = session
        .audit("admin_user.password_change", "admin_user", session.user_id)
        .details(json!({"sessions_revoked": revoked}));
    audit::record(&mut *tx, &entry).await?;
    tx.commit().await?;
    Ok(AppJson(RevokedOut {
        sessions_revoked: revoked,
    }))
}
