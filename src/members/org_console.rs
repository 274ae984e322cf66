//! `/admin/org`: the org-unit tree (party committee → general branch → branch → Party group) with
//! create, rename / re-kind, move and delete-when-empty, through the service the admin API uses
//! (`members::service::{create_unit, update_unit, delete_unit}`): the same placement rules, the
//! same scope for secretaries, the same audit entries.

use std::collections::HashMap;

use axum::{
    extract::{Path, State},
    http::HeaderMap,
    response::Response,
    Form,
};
use serde::{Deserialize, Serialize};

use super::{
    console::units_in_scope,
    service::{self, NewUnit, UnitPatch},
    store,
};
use crate::{
    app::AppState,
    auth::{ConsoleSession, Permission},
    http::console::{self, redirect_error, redirect_flash},
    platform::error::{AppError, AppResult},
    platform::org::OrgKind,
};

const BACK: &str = "/admin/org";

#[derive(Serialize)]
struct Node {
    id: i64,
    name: String,
    kind: &'static str,
    kind_label: &'static str,
    parent_id: Option<i64>,
    depth: usize,
    /// Indent for the tree and the parent `<select>`.
    indented: String,
    members: i64,
}

pub async fn tree(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
) -> AppResult<Response> {
    session.require(Permission::ReadMembers)?;
    let counts: HashMap<i64, i64> = store::active_counts_by_unit(&st.db)
        .await?
        .into_iter()
        .collect();
    let nodes: Vec<Node> = units_in_scope(&st, &session)
        .await?
        .into_iter()
        .map(|(u, depth)| Node {
            id: u.id,
            indented: format!("{}{}", "\u{3000}".repeat(depth), u.name),
            name: u.name,
            kind: u.kind.as_str(),
            kind_label: u.kind.label(),
            parent_id: u.parent_id,
            depth,
            members: counts.get(&u.id).copied().unwrap_or(0),
        })
        .collect();
    let kinds: Vec<(&str, &str)> = OrgKind::ALL
        .iter()
        .map(|k| (k.as_str(), k.label()))
        .collect();
    console::page(
        &headers,
        "console/org/tree.html",
        &session.chrome("members"),
        minijinja::context! {
            nodes, kinds,
            may_write => session.can(Permission::ManageOrgUnits),
            at_top => session.org_scope(&st.db).await? == crate::auth::OrgScope::All,
        },
    )
}

/// The fields of every org form (each form sends the ones it has).
#[derive(Debug, Default, Deserialize)]
pub struct UnitForm {
    #[serde(default)]
    pub name: String,
    /// Blank: the default for where it sits.
    #[serde(default)]
    pub kind: String,
    /// Blank: the top of the tree.
    #[serde(default)]
    pub parent_id: String,
}

fn kind_of(s: &str) -> Result<Option<OrgKind>, AppError> {
    match s.trim() {
        "" => Ok(None),
        k => OrgKind::parse(k)
            .map(Some)
            .ok_or_else(|| AppError::Validation("kind: unknown kind".into())),
    }
}

fn parent_of(s: &str) -> Result<Option<i64>, AppError> {
    match s.trim() {
        "" => Ok(None),
        p => p
            .parse()
            .map(Some)
            .map_err(|_| AppError::Validation("parent_id: unknown parent".into())),
    }
}

/// `POST /admin/org/new`.
pub async fn create(
    State(st): State<AppState>,
    session: ConsoleSession,
    Form(f): Form<UnitForm>,
) -> AppResult<Response> {
    session.require(Permission::ManageOrgUnits)?;
    let result = async {
        let req = NewUnit {
            name: f.name.clone(),
            parent: None,
            parent_id: parent_of(&f.parent_id)?,
            kind: kind_of(&f.kind)?,
        };
        service::create_unit(&st, &session, &req).await
    }
    .await;
    match result {
        Ok(u) => Ok(redirect_flash(BACK, true, &format!("已创建{}", u.name))),
        Err(e) => redirect_error(BACK, e),
    }
}

/// `POST /admin/org/{id}/{rename|move|delete}`.
pub async fn act(
    State(st): State<AppState>,
    session: ConsoleSession,
    Path((id, action)): Path<(String, String)>,
    Form(f): Form<UnitForm>,
) -> AppResult<Response> {
    session.require(Permission::ManageOrgUnits)?;
    let id: i64 = id
        .parse()
        .map_err(|_| AppError::NotFound("org unit".into()))?;
    let result = match action.as_str() {
        "rename" => {
            async {
                let patch = UnitPatch {
                    name: Some(f.name.clone()),
                    kind: kind_of(&f.kind)?,
                    parent_id: None,
                };
                service::update_unit(&st, &session, id, &patch)
                    .await
                    .map(|_| "已保存")
            }
            .await
        }
        "move" => {
            async {
                let patch = UnitPatch {
                    name: None,
                    kind: None,
                    parent_id: Some(parent_of(&f.parent_id)?),
                };
                service::update_unit(&st, &session, id, &patch)
                    .await
                    .map(|_| "已移动")
            }
            .await
        }
        "delete" => service::delete_unit(&st, &session, id)
            .await
            .map(|_| "已删除"),
        _ => return Err(AppError::NotFound("action".into())),
    };
    match result {
        Ok(msg) => Ok(redirect_flash(BACK, true, msg)),
        Err(e) => redirect_error(BACK, e),
    }
}
