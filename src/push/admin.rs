//! `/api/admin/pushes`: create, list, report, cancel/pause/resume, preview. Every route needs
//! `Permission::ManagePushes` (admins and editors); every write is in the audit log.

use axum::{extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};

use super::{
    service::{self, CreatePush, PreviewPush},
    store,
    templates::Rendered,
    Action, PushStatus,
};
use crate::{
    app::AppState,
    auth::{AdminSession, Permission},
    http::{routes::AdminRoutes, AppJson, AppQuery, Id},
    platform::error::{AppError, AppResult},
};

#[derive(Serialize, schemars::JsonSchema)]
struct PushList {
    pushes: Vec<service::PushView>,
    page: i64,
    per_page: i64,
}

#[derive(Serialize, schemars::JsonSchema)]
struct PushStatusOut {
    id: i64,
    status: PushStatus,
}

#[derive(Serialize, schemars::JsonSchema)]
struct PreviewOut {
    preview: Rendered,
}

pub fn routes(r: AdminRoutes) -> AdminRoutes {
    r.post("/api/admin/pushes", Permission::ManagePushes, create)
        .get("/api/admin/pushes", Permission::ManagePushes, list)
        .post(
            "/api/admin/pushes/preview",
            Permission::ManagePushes,
            preview,
        )
        .get("/api/admin/pushes/{id}", Permission::ManagePushes, get)
        .post(
            "/api/admin/pushes/{id}/cancel",
            Permission::ManagePushes,
            cancel,
        )
        .post(
            "/api/admin/pushes/{id}/pause",
            Permission::ManagePushes,
            pause,
        )
        .post(
            "/api/admin/pushes/{id}/resume",
            Permission::ManagePushes,
            resume,
        )
}

async fn create(
    State(st): State<AppState>,
    session: AdminSession,
    AppJson(body): AppJson<CreatePush>,
) -> AppResult<(StatusCode, AppJson<service::Created>)> {
    let created = service::create_audited(&st, &session, &body).await?;
    Ok((StatusCode::CREATED, AppJson(created)))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct ListQuery {
    #[schemars(extend("enum" = ["scheduled", "running", "paused", "completed", "cancelled", "failed"]))]
    status: Option<String>,
    #[schemars(range(min = 1, max = crate::http::MAX_PAGE))]
    page: Option<i64>,
    per_page: Option<i64>,
}

async fn list(
    State(st): State<AppState>,
    AppQuery(q): AppQuery<ListQuery>,
) -> AppResult<AppJson<PushList>> {
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(
            PushStatus::parse(s)
                .ok_or_else(|| AppError::Validation(format!("status: unknown state {s:?}")))?,
        ),
    };
    let per_page = q.per_page.unwrap_or(20).clamp(1, 100);
    let page = crate::http::page_number(q.page)?;
    let rows = store::list(&st.db, status, per_page, (page - 1) * per_page).await?;
    let mut pushes = Vec::with_capacity(rows.len());
    for row in rows {
        pushes.push(service::view(&st, row).await?);
    }
    Ok(AppJson(PushList {
        pushes,
        page,
        per_page,
    }))
}

async fn get(State(st): State<AppState>, Id(id): Id) -> AppResult<AppJson<service::PushView>> {
    let push = store::get(&st.db, id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("push {id}")))?;
    Ok(AppJson(service::view(&st, push).await?))
}

async fn act(
    st: AppState,
    session: AdminSession,
    id: i64,
    action: Action,
) -> AppResult<AppJson<PushStatusOut>> {
    let status = service::act_audited(&st, &session, id, action).await?;
    Ok(AppJson(PushStatusOut { id, status }))
}

/// A handler for one push action (no body).
macro_rules! action_handler {
    ($name:ident, $action:expr) => {
        async fn $name(
            State(st): State<AppState>,
            session: AdminSession,
            Id(id): Id,
        ) -> AppResult<AppJson<PushStatusOut>> {
            act(st, session, id, $action).await
        }
    };
}

action_handler!(cancel, Action::Cancel);
action_handler!(pause, Action::Pause);
action_handler!(resume, Action::Resume);

/// Render what one recipient would get, without sending.
async fn preview(
    State(st): State<AppState>,
    AppJson(body): AppJson<PreviewPush>,
) -> AppResult<AppJson<PreviewOut>> {
    let rendered = service::preview(&st, &body).await?;
    Ok(AppJson(PreviewOut { preview: rendered }))
}
