//! Activities (活动) and the 三会一课 meetings: capacity, a sign-up window, a waitlist promoted in
//! order, check-in with the venue's rotating QR code, attendance, minutes, the meeting rhythm,
//! reminders.
//!
//! **Sign-up and the waitlist.** `POST /api/mp/activities/{id}/signup` answers
//! `{"status":"confirmed","position":null}` or `{"status":"waitlisted","position":n}`, where `n`
//! is the 1-based place in the waitlist at that moment (the detail route shows the current
//! place). A sign-up is confirmed only while a place is free *and nobody is waiting*; places
//! freed later (a withdrawal, a larger capacity) go to the first waitlisted member, who is told.
//!
//! **Correct under any concurrency, across replicas** — held by the database, not memory:
//! - every sign-up, withdrawal, capacity change and cancellation of an activity is one
//!   transaction that first locks the activity row (`SELECT … FOR UPDATE` on PostgreSQL;
//!   SQLite's `BEGIN IMMEDIATE` serialises writers), so they run one at a time per activity;
//! - a place is taken by `UPDATE activities SET confirmed_count = confirmed_count + 1 WHERE …
//!   confirmed_count < capacity AND NOT EXISTS (waitlisted)` in the same transaction as the
//!   sign-up's INSERT, and a CHECK (`confirmed_count <= capacity`) backs it;
//! - the waitlist order is a per-activity monotonic sequence (`activities.signup_seq`, taken
//!   under the lock; UNIQUE(activity_id, seq));
//! - no member twice: a partial unique index on (activity_id, member_id) over confirmed and
//!   waitlisted sign-ups;
//! - a withdrawal promotes the sign-up with the lowest sequence, with state guards on both
//!   UPDATEs, in the withdrawal's transaction: exactly once per freed place;
//! - one check-in per member: the attendance row's primary key and an upsert that only fills an
//!   empty `checked_in_at`.
//!
//! **Check-in.** The console shows `GET /api/admin/activities/{id}/checkin-code`: a ticket
//! `<activity>.<window>.<base64url HMAC-SHA256>` over the activity and the 30-second window,
//! under a key derived from the data key (`DataCipher::derive_key`), as an SVG QR code. The
//! mini-program posts it back; the current and the previous window pass, so a forwarded photo
//! expires within a minute. Check-in runs from 30 minutes before the start until `ends_at` (or
//! start + 3 h), for confirmed members or, for meetings, the audience; `late` after start + 5 min.
//!
//! **Meetings** (branch general meeting, branch committee meeting, Party group meeting, Party
//! lecture, theme day) have an audience (org units, with their subtrees) that is expected to
//! attend: each audience member gets an attendance record (absent until checked in or marked),
//! on creation and whenever the sheet is read; secretaries mark present / late / absent /
//! leave (sick, official, personal, with a reason) and record host, recorder and minutes. The
//! rhythm report counts meetings per audience org unit and quarter against the 三会一课 rules.
//!
//! **Telling members.** Cancellations, promotions and reminders are recorded once each in
//! `activity_notices` (unique per member, activity, kind and sign-up), in the transaction that
//! caused them. Delivering them over WeChat is left to the push machinery once it resolves each
//! member's openid per channel (issue 10 §1); until then they stay `pending`.
//!
//! **Who manages what.** Administrators every activity; a secretary creates activities for org
//! units in their subtree and manages those whose audience lies entirely inside it.

pub mod admin;
pub mod mp;
pub mod rules;
pub mod service;
pub mod store;
pub mod worker;

use std::sync::Arc;

use axum::{
    routing::{get, post},
    Extension, Router,
};

use crate::{app::AppState, http::routes::AdminRoutes};

/// This feature's admin routes.
pub fn admin_routes(r: AdminRoutes) -> AdminRoutes {
    admin::routes(r)
}

/// The mini-program's activity routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/mp/activities", get(mp::list))
        .route("/api/mp/activities/{id}", get(mp::detail))
        .route(
            "/api/mp/activities/{id}/signup",
            post(mp::sign_up).delete(mp::withdraw),
        )
        .route("/api/mp/activities/{id}/checkin", post(mp::check_in))
        // This instance's sign-up queue (group commit, see `service::SignupQueue`).
        .layer(Extension(Arc::new(service::SignupQueue::default())))
}
