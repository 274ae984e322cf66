//! Admin accounts, roles and sessions.
//!
//! - [`Role`] and [`Permission`]: what each role may do is data ([`Role::allows`]).
//! - [`AdminSession`]: the extractor every `/api/admin` handler and console page uses; resolved from
//!   `Authorization: Bearer <token>` or the console session cookie.
//! - [`ClientIp`]: the caller's address (X-Forwarded-For only from `DANGJIAN_TRUSTED_PROXIES`).
//! - [`login`]: password check with lockout and rate limits; [`tokens`]: hashed, expiring tokens.

pub mod admin;
pub mod audit_admin;
pub mod audit_console;
pub mod cli;
pub mod console;
pub mod login;
pub mod mp_session;
pub mod password;
pub mod ratelimit;
pub mod session;
pub mod store;
pub mod token_store;
pub mod users;
pub mod users_admin;
pub mod users_console;
pub mod worker;

pub use crate::platform::org::OrgScope;
pub use crate::platform::roles::{Permission, Role};
pub use console::ConsoleSession;
pub use session::{admin_guard, AdminSession, ClientIp, SessionKind};

/// This feature's admin routes: login and own account, admin users, the audit log.
pub fn admin_routes(r: crate::http::routes::AdminRoutes) -> crate::http::routes::AdminRoutes {
    audit_admin::routes(users_admin::routes(admin::routes(r)))
}

/// The administrators' console pages: accounts (`/admin/users`) and the audit log (`/admin/audit`).
pub fn console_router() -> axum::Router<crate::app::AppState> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/admin/audit", get(audit_console::list))
        .route("/admin/users", get(users_console::list))
        .route("/admin/users/new", post(users_console::create))
        .route("/admin/users/{id}/{action}", post(users_console::act))
}
