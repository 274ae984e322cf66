//! Org units (the tree of party committee → general branch → branch → Party group): list,
//! create, rename / re-kind / move (no cycles, kinds where they belong), delete when empty.
//! Secretaries see and change their own subtree only.

use std::collections::HashMap;

use axum::{extract::State, http::StatusCode};
use serde::Serialize;

use super::service::{self, NewUnit, UnitPatch};
use crate::http::{routes::AdminRoutes, AppJson, Id};
use crate::{
    app::AppState,
    auth::{AdminSession, Permission},
    platform::error::AppResult,
    platform::org::{self, OrgKind, OrgUnit},
};

pub fn routes(r: AdminRoutes) -> AdminRoutes {
    r.get("/api/admin/org-units", Permission::ReadMembers, list)
        .post("/api/admin/org-units", Permission::ManageOrgUnits, create)
        .patch(
            "/api/admin/org-units/{id}",
            Permission::ManageOrgUnits,
            update,
        )
        .delete(
            "/api/admin/org-units/{id}",
            Permission::ManageOrgUnits,
            delete,
        )
}

/// An org unit as the admin API shows it.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct UnitOut {
    pub id: i64,
    pub name: String,
    pub parent_id: Option<i64>,
    pub kind: OrgKind,
    /// 党委 / 党总支 / 党支部 / 党小组.
    pub kind_label: &'static str,
    /// Active members directly in this unit (`GET` list only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_members: Option<i64>,
}

impl UnitOut {
    fn of(u: OrgUnit, active_members: Option<i64>) -> UnitOut {
        UnitOut {
            id: u.id,
            name: u.name,
            parent_id: u.parent_id,
            kind_label: u.kind.label(),
            kind: u.kind,
            active_members,
        }
    }
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
struct UnitsOut {
    org_units: Vec<UnitOut>,
}

/// The units in the caller's scope (secretaries: their subtree), by id, each with its parent.
async fn list(State(st): State<AppState>, session: AdminSession) -> AppResult<AppJson<UnitsOut>> {
    let scope = session.org_scope(&st.db).await?;
    let counts: HashMap<i64, i64> = super::store::active_counts_by_unit(&st.db)
        .await?
        .into_iter()
        .collect();
    let units = org::list(&st.db)
        .await?
        .into_iter()
        .filter(|u| scope.contains(u.id))
        .map(|u| {
            let n = counts.get(&u.id).copied().unwrap_or(0);
            UnitOut::of(u, Some(n))
        })
        .collect();
    Ok(AppJson(UnitsOut { org_units: units }))
}

/// `POST /api/admin/org-units {"name","parent"|"parent_id","kind"}` → 201.
async fn create(
    State(st): State<AppState>,
    session: AdminSession,
    AppJson(body): AppJson<NewUnit>,
) -> AppResult<(StatusCode, AppJson<UnitOut>)> {
    let unit = service::create_unit(&st, &session, &body).await?;
    Ok((StatusCode::CREATED, AppJson(UnitOut::of(unit, None))))
}

/// `PATCH /api/admin/org-units/{id} {"name"?,"kind"?,"parent_id"?}`.
async fn update(
    State(st): State<AppState>,
    session: AdminSession,
    Id(id): Id,
    AppJson(body): AppJson<UnitPatch>,
) -> AppResult<AppJson<UnitOut>> {
    let unit = service::update_unit(&st, &session, id, &body).await?;
    Ok(AppJson(UnitOut::of(unit, None)))
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
struct Deleted {
    deleted: UnitOut,
}

/// `DELETE /api/admin/org-units/{id}`: only an empty unit (409 `org_unit_not_empty`).
async fn delete(
    State(st): State<AppState>,
    session: AdminSession,
    Id(id): Id,
) -> AppResult<AppJson<Deleted>> {
    let unit = service::delete_unit(&st, &session, id).await?;
    Ok(AppJson(Deleted {
        deleted: UnitOut::of(unit, None),
    }))
}
