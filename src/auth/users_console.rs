//! `/admin/users`: admin accounts for administrators — the list, create (a generated password is
//! shown once), change role and org unit, disable / enable — through `auth::users`, the same
//! rules as `/api/admin/users`.

use std::collections::BTreeMap;

use axum::{
    extract::{Path, State},
    http::HeaderMap,
    response::Response,
    Form,
};
use serde::{Deserialize, Serialize};

use crate::{
    app::AppState,
    auth::users::{self as accounts, NewUser, RoleChange},
    auth::{store as users, ConsoleSession, Permission, Role},
    http::console::{field_errors_of, form_page, redirect_error, redirect_flash},
    platform::error::{AppError, AppResult},
    platform::org,
    platform::time::local_minute,
};

const BACK: &str = "/admin/users";
const ROLES: [(&str, &str); 3] = [
    ("admin", "管理员"),
    ("secretary", "支部书记"),
    ("editor", "编辑"),
];

#[derive(Serialize)]
struct UserView {
    id: i64,
    username: String,
    role: &'static str,
    role_label: &'static str,
    org_unit: String,
    status: String,
    last_login: String,
    me: bool,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct CreateForm {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub org_unit: String,
    /// Blank: generated and shown once.
    #[serde(default, skip_serializing)]
    pub password: String,
}

async fn users_page(
    st: &AppState,
    headers: &HeaderMap,
    session: &ConsoleSession,
    form: &CreateForm,
    errors: BTreeMap<String, String>,
    created: Option<(String, String)>,
) -> AppResult<Response> {
    let list: Vec<UserView> = users::list(&st.db)
        .await?
        .into_iter()
        .map(|u| UserView {
            me: u.id == session.user_id,
            id: u.id,
            username: u.username,
            role: u.role.as_str(),
            role_label: ROLES
                .iter()
                .find(|(k, _)| *k == u.role.as_str())
                .map_or("", |(_, l)| *l),
            org_unit: u.org_unit.unwrap_or_default(),
            status: u.status,
            last_login: u.last_login_at.map(local_minute).unwrap_or_default(),
        })
        .collect();
    let units: Vec<String> = org::list(&st.db)
        .await?
        .into_iter()
        .map(|u| u.name)
        .collect();
    let roles = ROLES;
    form_page(
        headers,
        "console/users/list.html",
        &session.chrome("users"),
        minijinja::context! { users => list, units, roles, form, errors => &errors, created },
        &errors,
    )
}

pub async fn list(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
) -> AppResult<Response> {
    session.require(Permission::ManageUsers)?;
    let form = CreateForm {
        role: "secretary".into(),
        ..Default::default()
    };
    users_page(&st, &headers, &session, &form, BTreeMap::new(), None).await
}

fn role_of(s: &str) -> AppResult<Role> {
    Role::parse(s.trim()).ok_or_else(|| AppError::Validation("role: 请选择角色".into()))
}

fn blank(s: &str) -> Option<String> {
    (!s.trim().is_empty()).then(|| s.trim().to_owned())
}

const FIELDS: [&str; 4] = ["username", "role", "org_unit", "password"];

/// `POST /admin/users/new`: on success the page shows a generated password once.
pub async fn create(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
    Form(f): Form<CreateForm>,
) -> AppResult<Response> {
    session.require(Permission::ManageUsers)?;
    let result = async {
        let req = NewUser {
            username: f.username.trim().to_owned(),
            role: role_of(&f.role)?,
            org_unit: blank(&f.org_unit),
            password: blank(&f.password),
        };
        accounts::create(&st, &session, &req).await
    }
    .await;
    match result {
        Ok((user, password)) => {
            let created = password.map(|p| (user.username.clone(), p));
            if created.is_none() {
                return Ok(redirect_flash(
                    BACK,
                    true,
                    &format!("已创建账号 {}", user.username),
                ));
            }
            let form = CreateForm {
                role: "secretary".into(),
                ..Default::default()
            };
            users_page(&st, &headers, &session, &form, BTreeMap::new(), created).await
        }
        Err(e) if e.status().is_client_error() => {
            let errors = field_errors_of(&e, &FIELDS);
            users_page(&st, &headers, &session, &f, errors, None).await
        }
        Err(e) => Err(e),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct ActForm {
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub org_unit: String,
}

/// `POST /admin/users/{id}/{role|disable|enable}`.
pub async fn act(
    State(st): State<AppState>,
    session: ConsoleSession,
    Path((id, action)): Path<(String, String)>,
    Form(f): Form<ActForm>,
) -> AppResult<Response> {
    session.require(Permission::ManageUsers)?;
    let id: i64 = id.parse().map_err(|_| AppError::NotFound("user".into()))?;
    let result = match action.as_str() {
        "role" => async {
            let req = RoleChange {
                role: role_of(&f.role)?,
                org_unit: blank(&f.org_unit),
            };
            accounts::change_role(&st, &session, id, &req).await
        }
        .await
        .map(|u| format!("已更新 {} 的角色", u.username)),
        "disable" => accounts::set_status(&st, &session, id, "disabled")
            .await
            .map(|u| format!("已停用 {}", u.username)),
        "enable" => accounts::set_status(&st, &session, id, "active")
            .await
            .map(|u| format!("已启用 {}", u.username)),
        _ => return Err(AppError::NotFound("action".into())),
    };
    match result {
        Ok(msg) => Ok(redirect_flash(BACK, true, &msg)),
        Err(e) => redirect_error(BACK, e),
    }
}
