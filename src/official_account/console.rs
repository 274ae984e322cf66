//! `/admin/wechat`: the official account's housekeeping in the console — the custom menu as it
//! would be sent (or why WeChat would refuse it) with a button to push it, and the follower sync
//! with a progress bar that `console.js` keeps current by polling
//! `GET /api/admin/wechat/followers/sync`. Both go through `official_account::service`, as the
//! admin API does.

use axum::{extract::State, http::HeaderMap, response::Response};
use serde::Serialize;

use super::service;
use crate::{
    app::AppState,
    auth::{ConsoleSession, Permission},
    http::console::{self, redirect_error, redirect_flash},
    platform::error::AppResult,
};

#[derive(Serialize)]
struct ButtonRow {
    top: String,
    name: String,
    kind: String,
    target: String,
}

fn rows(menu: &wechat::client::Menu) -> Vec<ButtonRow> {
    let row = |top: &str, b: &wechat::client::Button| ButtonRow {
        top: top.to_owned(),
        name: b.name.clone(),
        kind: b.kind.clone().unwrap_or_default(),
        target: b
            .key
            .clone()
            .or_else(|| b.url.clone())
            .or_else(|| b.pagepath.clone())
            .unwrap_or_default(),
    };
    let mut out = Vec::new();
    for top in &menu.button {
        if top.sub_button.is_empty() {
            out.push(row("", top));
        }
        for sub in &top.sub_button {
            out.push(row(&top.name, sub));
        }
    }
    out
}

/// `GET /admin/wechat`.
pub async fn show(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
) -> AppResult<Response> {
    let menu_ok = session.can(Permission::ManageArticles);
    let sync_ok = session.can(Permission::ManagePushes);
    if !menu_ok {
        session.require(Permission::ManagePushes)?;
    }
    let content = st.content.get();
    let (buttons, menu_error) = match service::build_menu(&content.menu) {
        Ok(menu) => (rows(&menu), None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let progress = service::sync_progress(&st).await?;
    let pct = match progress.total {
        Some(t) if t > 0 => (progress.seen * 100 / t).min(100),
        _ => 0,
    };
    console::page(
        &headers,
        "console/wechat/index.html",
        &session.chrome("wechat"),
        minijinja::context! { menu_ok, sync_ok, buttons, menu_error, progress, pct },
    )
}

/// `POST /admin/wechat/menu/sync`.
pub async fn sync_menu(State(st): State<AppState>, session: ConsoleSession) -> AppResult<Response> {
    session.require(Permission::ManageArticles)?;
    match service::sync_menu_audited(&st, &session).await {
        Ok(n) => Ok(redirect_flash(
            "/admin/wechat",
            true,
            &format!("菜单已同步到微信（{n} 个按钮）"),
        )),
        Err(e) => redirect_error("/admin/wechat", e),
    }
}

/// `POST /admin/wechat/followers/sync`.
pub async fn sync_followers(
    State(st): State<AppState>,
    session: ConsoleSession,
) -> AppResult<Response> {
    session.require(Permission::ManagePushes)?;
    match service::start_follower_sync(&st, &session).await {
        Ok(()) => Ok(redirect_flash("/admin/wechat", true, "粉丝同步已开始")),
        Err(e) => redirect_error("/admin/wechat", e),
    }
}
