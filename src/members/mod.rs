//! Members: org units (the tree), the roster (import, search, reveal, edit, remove), transfers
//! of Party relations with their introduction letter, and a member's two WeChat identities — the
//! mini-program binding (`members.openid`) and the official-account openid (`members.oa_openid`)
//! found through the UnionID — so that each push channel reaches the openid of its app.

pub mod admin;
pub mod cli;
pub mod console;
pub mod letter;
pub mod mp;
pub mod org_admin;
pub mod org_console;
pub mod rules;
pub mod service;
pub mod store;
pub mod worker;

use axum::{
    routing::{get, post},
    Router,
};

use crate::{
    app::AppState,
    http::routes::{AdminRoutes, MpRoutes},
    platform::pii::Column,
};

/// This feature's encrypted columns (for the re-seal pass).
pub const SEALED: &[Column] = &[store::PHONE, store::ID_NUMBER, store::INCOME];

/// This feature's admin routes: org units and the roster.
pub fn admin_routes(r: AdminRoutes) -> AdminRoutes {
    admin::routes(org_admin::routes(r))
}

/// The mini-program's account routes (login, bind, me, subscribe consent).
pub fn mp_routes(r: MpRoutes) -> MpRoutes {
    r.post(
        "/api/mp/login",
        "wx.login code → {token, expires_at, member|null} (code2Session)",
        mp::login,
    )
    .post(
        "/api/mp/bind",
        "Bind to the roster: {name, phone_code} (getPhoneNumber) → {member}",
        mp::bind,
    )
    .get(
        "/api/mp/me",
        "The logged-in user: {openid_bound, member|null}",
        mp::me,
    )
    .post(
        "/api/mp/subscriptions",
        "Record wx.requestSubscribeMessage results: {template_ids, results}",
        mp::subscriptions,
    )
}

/// The printable introduction letter (an admin page: console session or bearer token,
/// permission checked in the handler).
pub fn router() -> Router<AppState> {
    Router::new().route("/admin/members/transfers/{id}/letter", get(admin::letter))
}

/// The roster and org-tree console pages (`/admin/members...`, `/admin/org...`); startup wraps
/// them in the console's layers.
pub fn console_router() -> Router<AppState> {
    Router::new()
        .route("/admin/members", get(console::list))
        .route(
            "/admin/members/import",
            get(console::import_form).post(console::import),
        )
        .route("/admin/members/transfers", get(console::transfers))
        .route(
            "/admin/members/transfers/incoming",
            get(console::incoming_form).post(console::incoming),
        )
        .route("/admin/members/transfers/{id}/close", post(console::close))
        .route(
            "/admin/members/{id}",
            get(console::show).post(console::update),
        )
        .route("/admin/members/{id}/reveal", post(console::reveal))
        .route("/admin/members/{id}/delete", post(console::remove))
        .route("/admin/members/{id}/unbind", post(console::unbind))
        .route("/admin/members/{id}/transfer", post(console::transfer))
        .route("/admin/org", get(org_console::tree))
        .route("/admin/org/new", post(org_console::create))
        .route("/admin/org/{id}/{action}", post(org_console::act))
}
