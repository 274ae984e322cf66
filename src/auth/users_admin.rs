//! Admin accounts (admins only).

use axum::{extract::State, http::StatusCode};
use serde::Serialize;
use serde_json::json;

use super::admin::{public_user, UserOut};
use crate::http::{routes::AdminRoutes, AppJson, Id};
use crate::{
    app::AppState,
    auth::users::{self as accounts, NewUser, RoleChange},
    auth::{password, store as users, token_store as tokens, AdminSession, Permission},
    platform::audit,
    platform::error::{AppError, AppResult},
};

pub fn routes(r: AdminRoutes) -> AdminRoutes {
    r.get("/api/admin/users", Permission::ManageUsers, list)
        .post("/api/admin/users", Permission::ManageUsers, create)
        .patch("/api/admin/users/{id}", Permission::ManageUsers, update)
        .post(
            "/api/admin/users/{id}/disable",
            Permission::ManageUsers,
            disable,
        )
        .post(
            "/api/admin/users/{id}/enable",
            Permission::ManageUsers,
            enable,
        )
        .post(
            "/api/admin/users/{id}/reset-password",
            Permission::ManageUsers,
            reset_password,
        )
}

#[derive(Serialize, schemars::JsonSchema)]
struct UsersOut {
    users: Vec<UserOut>,
}

#[derive(Serialize, schemars::JsonSchema)]
struct OneUserOut {
    user: UserOut,
    /// Only when the server generated it: shown once, never stored in clear.
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<String>,
}

#[derive(Serialize, schemars::JsonSchema)]
struct PasswordResetOut {
    password: String,
    sessions_revoked: u64,
}

async fn list(State(st): State<AppState>) -> AppResult<AppJson<UsersOut>> {
    let all = users::list(&st.db).await?;
    Ok(AppJson(UsersOut {
        users: all.iter().map(public_user).collect(),
    }))
}

async fn create(
    State(st): State<AppState>,
    session: AdminSession,
    AppJson(body): AppJson<NewUser>,
) -> AppResult<(StatusCode, AppJson<OneUserOut>)> {
    let (user, password) = accounts::create(&st, &session, &body).await?;
    let out = OneUserOut {
        user: public_user(&user),
        password,
    };
    Ok((StatusCode::CREATED, AppJson(out)))
}

/// `PATCH /api/admin/users/{id} {"role","org_unit"}`: the account's sessions end.
async fn update(
    State(st): State<AppState>,
    session: AdminSession,
    Id(id): Id,
    AppJson(body): AppJson<RoleChange>,
) -> AppResult<AppJson<OneUserOut>> {
    let user = accounts::change_role(&st, &session, id, &body).await?;
    Ok(AppJson(OneUserOut {
        user: public_user(&user),
        password: None,
    }))
}

async fn set_status(
    st: &AppState,
    session: &AdminSession,
    id: i64,
    status: &str,
) -> AppResult<AppJson<OneUserOut>> {
    let user = accounts::set_status(st, session, id, status).await?;
    Ok(AppJson(OneUserOut {
        user: public_user(&user),
        password: None,
    }))
}

async fn disable(
    State(st): State<AppState>,
    session: AdminSession,
    Id(id): Id,
) -> AppResult<AppJson<OneUserOut>> {
    set_status(&st, &session, id, "disabled").await
}

async fn enable(
    State(st): State<AppState>,
    session: AdminSession,
    Id(id): Id,
) -> AppResult<AppJson<OneUserOut>> {
    set_status(&st, &session, id, "active").await
}

/// A new random password (returned once), unlock, end all sessions of that account.
async fn reset_password(
    State(st): State<AppState>,
    session: AdminSession,
    Id(id): Id,
) -> AppResult<AppJson<PasswordResetOut>> {
    users::by_id(&st.db, id)
        .await?
        .ok_or_else(|| AppError::NotFound("user".into()))?;
    let pw = password::generate();
    let hash = password::hash_blocking(pw.clone()).await?;
    let mut tx = st.db.begin_write().await?;
    users::set_password(&mut *tx, id, &hash, session.now).await?;
    let revoked = tokens::revoke_all_for_user(&mut *tx, id, None, session.now).await?;
    let entry = session
        .audit("admin_user.reset_password", "admin_user", id)
        .details(json!({"sessions_revoked": revoked}));
    audit::record(&mut *tx, &entry).await?;
    tx.commit().await?;
    Ok(AppJson(PasswordResetOut {
        password: pw,
        sessions_revoked: revoked,
    }))
}
