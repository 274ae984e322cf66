//! `/api/admin/wechat/...`: the official account's housekeeping from the console — show and push
//! the custom menu (content/menu.toml → `menu/create`), and start a follower sync.

use axum::{extract::State, http::StatusCode};
use serde::Serialize;
use wechat::client::Menu;

use crate::{
    app::AppState,
    auth::{AdminSession, Permission},
    http::{routes::AdminRoutes, AppJson},
    official_account::service,
    platform::error::AppResult,
};

#[derive(Serialize, schemars::JsonSchema)]
pub struct MenuCheck {
    valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    menu: Option<Menu>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize, schemars::JsonSchema)]
struct MenuSynced {
    synced: bool,
    buttons: usize,
}

#[derive(Serialize, schemars::JsonSchema)]
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
    .get(
        "/api/admin/wechat/followers/sync",
        Permission::ManagePushes,
        follower_sync_progress,
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
    let buttons = service::sync_menu_audited(&st, &session).await?;
    Ok(AppJson(MenuSynced {
        synced: true,
        buttons,
    }))
}

/// Start a follower sync in the background (it pages through every follower); 409 while one runs.
async fn sync_followers(
    State(st): State<AppState>,
    session: AdminSession,
) -> AppResult<(StatusCode, AppJson<Started>)> {
    service::start_follower_sync(&st, &session).await?;
    Ok((StatusCode::ACCEPTED, AppJson(Started { status: "started" })))
}

/// `GET /api/admin/wechat/followers/sync`: whether a sync runs, followers seen and WeChat's total.
async fn follower_sync_progress(
    State(st): State<AppState>,
) -> AppResult<AppJson<service::SyncProgress>> {
    Ok(AppJson(service::sync_progress(&st).await?))
}
