//! Org units (the branch tree).

use axum::{extract::State, http::StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::http::{routes::AdminRoutes, AppJson};
use crate::{
    app::AppState,
    auth::{AdminSession, Permission},
    platform::audit,
    platform::error::{AppError, AppResult},
    platform::org,
};

pub fn routes(r: AdminRoutes) -> AdminRoutes {
    r.get("/api/admin/org-units", Permission::ReadMembers, list)
        .post("/api/admin/org-units", Permission::ManageOrgUnits, create)
}

/// The units in the caller's scope (secretaries: their subtree).
async fn list(State(st): State<AppState>, session: AdminSession) -> AppResult<AppJson<Value>> {
    let scope = session.org_scope(&st.db).await?;
    let units: Vec<_> = org::list(&st.db)
        .await?
        .into_iter()
        .filter(|u| scope.contains(u.id))
        .collect();
    Ok(AppJson(json!({"org_units": units})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUnit {
    name: String,
    /// Parent by name.
    parent: Option<String>,
}

async fn create(
    State(st): State<AppState>,
    session: AdminSession,
    AppJson(body): AppJson<NewUnit>,
) -> AppResult<(StatusCode, AppJson<Value>)> {
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(AppError::Validation(
            "name must have 1-100 characters".into(),
        ));
    }
    let mut tx = st.db.begin_write().await?;
    let parent_id = match body.parent.as_deref() {
        None => None,
        Some(p) => Some(
            org::find_by_name(&mut *tx, p)
                .await?
                .ok_or_else(|| AppError::Validation("unknown parent".into()))?
                .id,
        ),
    };
    if org::find_by_name(&mut *tx, name).await?.is_some() {
        return Err(AppError::Conflict(
            "an org unit with this name exists".into(),
        ));
    }
    let id = org::create(&mut *tx, name, parent_id, session.now).await?;
    let entry = session
        .audit("org_unit.create", "org_unit", id)
        .details(json!({"after": {"name": name, "parent_id": parent_id}}));
    audit::record(&mut *tx, &entry).await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        AppJson(json!({"id": id, "name": name, "parent_id": parent_id})),
    ))
}
