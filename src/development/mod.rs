//! 发展党员 (member development): one record per person through 入党申请人 → 入党积极分子 →
//! 发展对象 → 预备党员 → 正式党员, every step dated, with who recorded it, the opinions and the
//! documents, after 《中国共产党发展党员工作细则》.
//!
//! - The steps, their order, roles, documents and time rules are content
//!   (`content/development.toml`, reloaded like the menu); [`rules`] checks a proposed date
//!   against them and names the broken rule, and computes each person's deadlines.
//! - A step is *recorded* by the branch secretary, or — when the upper committee decides it — is
//!   *submitted* and waits in the admins' queue until approved (dated by the decision) or returned
//!   with a reason. Entries are never edited (a database trigger refuses it): a correction is a
//!   new, audited entry that supersedes the old one once it counts.
//! - The record's stage follows from its effective entries; admission and confirmation update the
//!   roster member's Party status (`members::store::set_party_status`).
//! - [`worker`] reminds the applicant and the secretary before each deadline and once it is
//!   missed — once each, whatever runs the pass how often.

pub mod admin;
pub mod console;
pub mod mp;
pub mod rules;
pub mod service;
pub mod store;
pub mod worker;

use axum::{routing::get, routing::post, Router};

use crate::{
    app::AppState,
    http::routes::{AdminRoutes, MpRoutes},
    platform::content::{ContentFile, ContentSet},
    platform::pii::Column,
};

/// This feature's encrypted columns (for the re-seal pass).
pub const SEALED: &[Column] = &[
    store::ID_NUMBER,
    store::BIRTH_DATE,
    store::DOCUMENT_CONTENT,
    store::REPORT_CONTENT,
];

/// This feature's admin routes.
pub fn admin_routes(r: AdminRoutes) -> AdminRoutes {
    admin::routes(r)
}

/// The mini-program's development routes.
pub fn mp_routes(r: MpRoutes) -> MpRoutes {
    r
        .get(
            "/api/mp/development",
            "发展党员: my stage, the next step (earliest, due) and open deadlines; 403 not_bound, 404 without a record",
            mp::mine,
        )
        .post(
            "/api/mp/development/reports",
            "Submit a thought report (思想汇报): {content} → 201 {id, date}; counts for the quarterly rule in probation",
            mp::report,
        )
}

/// The 发展党员 console pages (`/admin/development...`); startup wraps them in the console's layers.
pub fn console_router() -> Router<AppState> {
    Router::new()
        .route("/admin/development", get(console::list))
        .route("/admin/development/deadlines", get(console::deadlines))
        .route("/admin/development/{id}", get(console::record))
        .route("/admin/development/{id}/steps", post(console::add_step))
}

/// `content/development.toml`: the step definitions, registered with the content store in
/// `startup.rs` (parsed and validated on every load; a broken edit keeps the previous version).
pub const CONTENT_FILE: ContentFile = ContentFile {
    name: "development.toml",
    builtin: include_str!("../../content/development.toml"),
    parse: |src| Ok(std::sync::Arc::new(rules::Definitions::parse(src)?)),
};

/// The step definitions in force.
pub fn definitions(content: &ContentSet) -> &rules::Definitions {
    content
        .file(CONTENT_FILE.name)
        .expect("development.toml is registered in startup.rs")
}
