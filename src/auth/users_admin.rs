//! Admin accounts (admins only).

use axum::{extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::admin::{public_user, UserOut};
use crate::http::{routes::AdminRoutes, AppJson, Id};
use crate::{
    app::AppState,
    auth::{password, store as users, token_store as tokens, AdminSession, Permission, Role},
    platform::audit,
    platform::error::{AppError, AppResult},
    platform::org,
};

pub fn routes(r: AdminRoutes) -> AdminRoutes {
    r.get("/api/admin/users", Permission::ManageUsers, list)
        .post("/api/admin/users", Permission::ManageUsers, create)
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

#[derive(Serialize)]
struct UsersOut {
    users: Vec<UserOut>,
}

#[derive(Serialize)]
struct OneUserOut {
    user: UserOut,
    /// Only when the server generated it: shown once, never stored in clear.
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<String>,
}

#[derive(Serialize)]
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    username: String,
    role: Role,
    /// Org unit by name (secretaries).
    org_unit: Option<String>,
    /// Omitted: a random password is generated and returned once.
    password: Option<String>,
}

async fn create(
    State(st): State<AppState>,
    session: AdminSession,
    AppJson(body): AppJson<NewUser>,
) -> AppResult<(StatusCode, AppJson<OneUserOut>)> {
    users::check_username(&body.username).map_err(AppError::Validation)?;
    if body.role == Role::Secretary && body.org_unit.is_none() {
        return Err(AppError::Validation("a secretary needs an org_unit".into()));
    }
    let (pw, generated) = match body.password {
        Some(p) => {
            password::check_policy(&body.username, &p).map_err(AppError::Validation)?;
            (p, false)
        }
        None => (password::generate(), true),
    };
    let hash = password::hash_blocking(pw.clone()).await?;
    let mut tx = st.db.begin_write().await?;
    let unit_id = match &body.org_unit {
        None => None,
        Some(name) => Some(
            org::find_by_name(&mut *tx, name)
                .await?
                .ok_or_else(|| AppError::Validation("unknown org_unit".into()))?
                .id,
        ),
    };
    let id = users::insert(
        &mut *tx,
        &body.username,
        body.role,
        unit_id,
        &hash,
        session.now,
    )
    .await?
    .ok_or_else(|| AppError::Conflict("username is taken".into()))?;
    let entry = session
        .audit("admin_user.create", "admin_user", id)
        .details(json!({"after": {"username": body.username, "role": body.role, "org_unit_id": unit_id}}));
    audit::record(&mut *tx, &entry).await?;
    tx.commit().await?;
    let user = users::by_id(&st.db, id)
        .await?
        .ok_or_else(|| AppError::NotFound("user".into()))?
        .user;
    let out = OneUserOut {
        user: public_user(&user),
        password: generated.then_some(pw),
    };
    Ok((StatusCode::CREATED, AppJson(out)))
}

async fn set_status(
    st: &AppState,
    session: &AdminSession,
    id: i64,
    status: &str,
) -> AppResult<AppJson<OneUserOut>> {
    if id == session.user_id && status == "disabled" {
        return Err(AppError::Conflict(
            "you cannot disable your own account".into(),
        ));
    }
    let before = users::by_id(&st.db, id)
        .await?
        .ok_or_else(|| AppError::NotFound("user".into()))?
        .user;
    let mut tx = st.db.begin_write().await?;
    users::set_status(&mut *tx, id, status, session.now).await?;
    let revoked = if status == "disabled" {
        tokens::revoke_all_for_user(&mut *tx, id, None, session.now).await?
    } else {
        0
    };
    let entry = session
        .audit(&format!("admin_user.{}", if status == "disabled" { "disable" } else { "enable" }), "admin_user", id)
        .details(
            json!({"before": {"status": before.status}, "after": {"status": status}, "sessions_revoked": revoked}),
        );
    audit::record(&mut *tx, &entry).await?;
    tx.commit().await?;
    let user = users::by_id(&st.db, id)
        .await?
        .ok_or_else(|| AppError::NotFound("user".into()))?
        .user;
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
