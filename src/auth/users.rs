//! Admin accounts as use cases, shared by `/api/admin/users` and the console's `/admin/users`:
//! create (a password given, or generated and shown once), change role / org unit, disable and
//! enable. Every write is one transaction with its audit entry; a change that alters what an
//! account may do ends that account's sessions.

use serde::Deserialize;
use serde_json::json;

use crate::{
    app::AppState,
    auth::{password, store as users, token_store as tokens, AdminSession, Role},
    platform::audit,
    platform::db::Tx,
    platform::error::{AppError, AppResult},
    platform::org,
};

/// `POST /api/admin/users`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub username: String,
    pub role: Role,
    /// Org unit by name (secretaries).
    pub org_unit: Option<String>,
    /// Omitted: a random password is generated and returned once.
    pub password: Option<String>,
}

/// `PATCH /api/admin/users/{id}`: the role and the org unit (by name; a secretary needs one).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleChange {
    pub role: Role,
    #[serde(default)]
    pub org_unit: Option<String>,
}

async fn unit_id(tx: &mut Tx, name: Option<&str>) -> AppResult<Option<i64>> {
    match name.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(n) => Ok(Some(
            org::find_by_name(&mut **tx, n)
                .await?
                .ok_or_else(|| AppError::Validation("org_unit: unknown org_unit".into()))?
                .id,
        )),
    }
}

fn needs_unit(role: Role, unit: Option<&str>) -> AppResult<()> {
    if role == Role::Secretary && unit.map(str::trim).is_none_or(str::is_empty) {
        return Err(AppError::Validation(
            "org_unit: a secretary needs an org_unit".into(),
        ));
    }
    Ok(())
}

async fn account(st: &AppState, id: i64) -> AppResult<users::AdminUser> {
    Ok(users::by_id(&st.db, id)
        .await?
        .ok_or_else(|| AppError::NotFound("user".into()))?
        .user)
}

/// Create an account. The password when the server generated it (show it once; it is never
/// stored in clear).
pub async fn create(
    st: &AppState,
    session: &AdminSession,
    req: &NewUser,
) -> AppResult<(users::AdminUser, Option<String>)> {
    users::check_username(&req.username)
        .map_err(|m| AppError::Validation(format!("username: {m}")))?;
    needs_unit(req.role, req.org_unit.as_deref())?;
    let (pw, generated) = match req.password.as_deref().filter(|p| !p.is_empty()) {
        Some(p) => {
            password::check_policy(&req.username, p)
                .map_err(|m| AppError::Validation(format!("password: {m}")))?;
            (p.to_owned(), false)
        }
        None => (password::generate(), true),
    };
    let hash = password::hash_blocking(pw.clone()).await?;
    let mut tx = st.db.begin_write().await?;
    let unit = unit_id(&mut tx, req.org_unit.as_deref()).await?;
    let id = users::insert(&mut *tx, &req.username, req.role, unit, &hash, session.now)
        .await?
        .ok_or_else(|| AppError::Conflict("username is taken".into()))?;
    let entry = session
        .audit("admin_user.create", "admin_user", id)
        .details(
            json!({"after": {"username": req.username, "role": req.role, "org_unit_id": unit}}),
        );
    audit::record(&mut *tx, &entry).await?;
    tx.commit().await?;
    Ok((account(st, id).await?, generated.then_some(pw)))
}

/// Change an account's role and org unit; its sessions end (they carried the old permissions).
/// Nobody changes their own role: the last administrator could lock everyone out.
pub async fn change_role(
    st: &AppState,
    session: &AdminSession,
    id: i64,
    req: &RoleChange,
) -> AppResult<users::AdminUser> {
    if id == session.user_id {
        return Err(AppError::Conflict("you cannot change your own role".into()));
    }
    needs_unit(req.role, req.org_unit.as_deref())?;
    let before = account(st, id).await?;
    let mut tx = st.db.begin_write().await?;
    let unit = unit_id(&mut tx, req.org_unit.as_deref()).await?;
    users::set_role(&mut *tx, id, req.role, unit, session.now).await?;
    let revoked = tokens::revoke_all_for_user(&mut *tx, id, None, session.now).await?;
    let entry = session
        .audit("admin_user.update", "admin_user", id)
        .details(json!({
            "before": {"role": before.role, "org_unit_id": before.org_unit_id},
            "after": {"role": req.role, "org_unit_id": unit},
            "sessions_revoked": revoked,
        }));
    audit::record(&mut *tx, &entry).await?;
    tx.commit().await?;
    account(st, id).await
}

/// Disable (`disabled`, sessions end) or enable (`active`) an account; not one's own.
pub async fn set_status(
    st: &AppState,
    session: &AdminSession,
    id: i64,
    status: &str,
) -> AppResult<users::AdminUser> {
    if id == session.user_id && status == "disabled" {
        return Err(AppError::Conflict(
            "you cannot disable your own account".into(),
        ));
    }
    let before = account(st, id).await?;
    let mut tx = st.db.begin_write().await?;
    users::set_status(&mut *tx, id, status, session.now).await?;
    let revoked = if status == "disabled" {
        tokens::revoke_all_for_user(&mut *tx, id, None, session.now).await?
    } else {
        0
    };
    let verb = if status == "disabled" {
        "disable"
    } else {
        "enable"
    };
    let entry = session
        .audit(&format!("admin_user.{verb}"), "admin_user", id)
        .details(json!({
            "before": {"status": before.status},
            "after": {"status": status},
            "sessions_revoked": revoked,
        }));
    audit::record(&mut *tx, &entry).await?;
    tx.commit().await?;
    account(st, id).await
}
