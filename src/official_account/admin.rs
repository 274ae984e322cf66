//! `/api/admin/wechat/...`: the official account's housekeeping from the console — show and push
//! the custom menu (content/menu.toml → `menu/create`), and start a follower sync.

use axum::{extract::State, http::StatusCode, response::IntoResponse};
use serde::Serialize;
use serde_json::json;
use wechat::client::Menu;

use crate::{
    app::AppState,
    auth::{AdminSession, Permission},
    http::{routes::AdminRoutes, AppJson},
    official_account::service,
    platform::audit,
    platform::error::{AppError, AppResult},
};

#[derive(Serialize)]
struct MenuCheck {
    valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    menu: Option<Menu>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
struct MenuSynced {
    synced: bool,
    buttons: usize,
}

#[derive(Serialize)]
struct Started {
    status: &'static str,
}

pub fn routes(r: AdminRoutes) -> AdminRoutes {
    r.get(
        "/api/admin/wechat/menu",
        Permission::ManageArticles,
        show_menu,
    )
    .post(
        "/api/admin/wechat/menu/sync",
        Permission::ManageArticles,
        sync_menu,
    )
    .post(
        "/api/admin/wechat/followers/sync",
        Permission::ManagePushes,
        sync_followers,
    )
}

/// The menu as it would be sent, or why WeChat would refuse it.
async fn show_menu(State(st): State<AppState>) -> AppResult<AppJson<MenuCheck>> {
    let content = st.content.get();
    Ok(AppJson(match service::build_menu(&content.menu) {
        Ok(menu) => MenuCheck {
            valid: true,
            menu: Some(menu),
            error: None,
        },
        Err(e) => MenuCheck {
            valid: false,
            menu: None,
            error: Some(e.to_string()),
        },
    }))
}

/// Validate content/menu.toml against WeChat's limits (422 when it breaks one), then `menu/create`.
async fn sync_menu(
    State(st): State<AppState>,
    session: AdminSession,
) -> AppResult<AppJson<MenuSynced>> {
    let content = st.content.get();
    let menu =
        service::build_menu(&content.menu).map_err(|e| AppError::Validation(e.to_string()))?;
    st.wechat.menu_create(&menu).await?;
    let buttons = content.menu.buttons().count();
    let entry = session
        .audit("wechat.menu_sync", "menu", "")
        .details(json!({"buttons": buttons}));
    audit::record(st.db.pool(), &entry).await?;
    Ok(AppJson(MenuSynced {
        synced: true,
        buttons,
    }))
}

/// Start a follower sync in the background (it pages through every follower); 409 while one runs.
async fn sync_followers(
    State(st): State<AppState>,
    session: AdminSession,
) -> AppResult<impl IntoResponse> {
    let lock = hex::encode(rand::random::<[u8; 8]>());
    if !st
        .cache
        .set_nx(
            service::FOLLOWER_SYNC_LOCK,
            &lock,
            std::time::Duration::from_secs(3600),
        )
        .await?
    {
        return Err(AppError::Conflict(
            "a follower sync is already running".into(),
        ));
    }
    audit::record(
        st.db.pool(),
        &session.audit("wechat.follower_sync", "followers", ""),
    )
    .await?;
    let task_state = st.clone();
    st.tasks.spawn(async move {
        let st = task_state;
        if let Err(e) = service::sync_followers(&st, None).await {
            tracing::warn!(error = %format!("{e:#}"), "follower sync failed; the next run resumes it");
        }
        let _ = st.cache.del_if_eq(service::FOLLOWER_SYNC_LOCK, &lock).await;
    });
    Ok((StatusCode::ACCEPTED, AppJson(Started { status: "started" })))
}
