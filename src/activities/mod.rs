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
//! - a sign-up is decided by one conditional UPDATE of the activity row — next sequence number;
//!   `confirmed_count + 1` only `WHERE confirmed_count < capacity AND waitlisted_count = 0`, else
//!   `waitlisted_count + 1`; only while open and inside the window — and the sign-up row is
//!   inserted in the same transaction (on PostgreSQL one data-modifying CTE statement). The UPDATE
//!   takes the row lock (SQLite: `BEGIN IMMEDIATE` serialises writers), so sign-ups of an
//!   activity are decided one at a time, in every replica; CHECKs (`confirmed_count <=
//!   capacity`, counts ≥ 0) back the conditions;
//! - withdrawals, capacity changes and cancellation lock the row first (`SELECT … FOR UPDATE`
//!   on PostgreSQL) and keep the counters with the rows in the same transaction;
//! - the waitlist order is the per-activity monotonic sequence (`activities.signup_seq`;
//!   UNIQUE(activity_id, seq)); a waitlisted answer's position is the waitlist count right
//!   after its own increment, so positions are distinct and in sequence order;
//! - no member twice: a partial unique index on (activity_id, member_id) over confirmed and
//!   waitlisted sign-ups;
//! - a withdrawal promotes the sign-up with the lowest sequence, with state guards on both
//!   UPDATEs, in the withdrawal's transaction: exactly once per freed place;
//! - one check-in per member: the attendance row's primary key and an upsert that only fills an
//!   empty `checked_in_at`.
//!
//! Group commit: concurrent sign-ups for one activity on one instance share a transaction
//! ([`service::SignupQueue`]): each is still its own conditional UPDATE + INSERT, but the row is
//! locked and the WAL flushed once per batch; nobody is answered before their batch commits, and
//! a batch that fails (say a member signing up twice at once) is retried one sign-up per
//! transaction. It only amortises the commit; correctness does not depend on it.
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
//! leave (sick, official, personal, with a reason) and record host, recorder and minutes, with
//! photos (`activity_photos`: the bytes in the database, so every replica serves them; the type
//! read from the magic bytes; checked whole before anything is stored). The rhythm report counts meetings per audience org unit and quarter against the 三会一课 rules.
//!
//! **Telling members.** Cancellations, promotions and reminders are recorded once each in
//! `activity_notices` (unique per member, activity, kind and sign-up), `pending`, in the
//! transaction that caused them. The worker ([`worker::deliver_notices`]) hands them to the push
//! machinery: per (activity, kind) one notice push for each channel used — the channels of
//! `DANGJIAN_ACTIVITY_NOTICE_CHANNELS` in order (default: the mini-program's subscribe message
//! when the member has consent left for the kind's template, else a customer-service message
//! inside the 48-hour window; the rest are `skipped` with a reason such as `outside_48h` or
//! `no_account_openid`), texts in Chinese (活动取消 / 候补转正 / 活动提醒 with title, time and
//! place; [`rules::notice`]). In the same transaction each notice becomes `queued` with its
//! `push_id` and `delivery_id`, so a crash or two replicas never send one twice nor lose one;
//! the delivery row then says how it ended (sent, skipped and why, failed, unknown).
//!
//! **Who manages what.** Administrators every activity; a secretary creates activities for org
//! units in their subtree and manages those whose audience lies entirely inside it. The console
//! pages (`console.rs`) apply the same rules through the same service.

pub mod admin;
pub mod console;
pub mod mp;
pub mod rules;
pub mod service;
pub mod store;
pub mod worker;

use std::sync::Arc;

use axum::{
    extract::DefaultBodyLimit,
    http::Method,
    routing::{get, post},
    Extension, Router,
};

use crate::{
    app::AppState,
    http::routes::{AdminRoutes, MpRoutes},
};

/// This feature's admin routes.
pub fn admin_routes(r: AdminRoutes) -> AdminRoutes {
    admin::routes(r)
}

/// The mini-program's activity routes.
pub fn mp_routes(r: MpRoutes) -> MpRoutes {
    // This instance's sign-up queue (group commit, see `service::SignupQueue`).
    let queue = Extension(Arc::new(service::SignupQueue::default()));
    r
        .get(
            "/api/mp/activities",
            "Activities open to me (my org units, or everyone) that have not ended: remaining places, my_signup",
            mp::list,
        )
        .get(
            "/api/mp/activities/{id}",
            "One activity with my_signup: {status, position}|null (position: 1-based waitlist place, null when confirmed)",
            mp::detail,
        )
        .route(
            Method::POST,
            "/api/mp/activities/{id}/signup",
            "Sign up → {status: confirmed|waitlisted, position: waitlist place|null}; 403 not_bound, 409 signup_not_open|signup_closed|activity_cancelled|already_signed_up",
            mp::sign_up,
            |mr| mr.layer(queue),
        )
        .delete(
            "/api/mp/activities/{id}/signup",
            "Withdraw → {status: cancelled}; a confirmed place goes to the first waitlisted member",
            mp::withdraw,
        )
        .post(
            "/api/mp/activities/{id}/checkin",
            "Check in with the venue's QR ticket: {ticket} → {status: present|late, checked_in_at}; 422 ticket_invalid|ticket_expired|ticket_other_activity, 409 checkin_not_open|checkin_closed|already_checked_in",
            mp::check_in,
        )
}

/// The secretaries' console pages (`/admin/activities...`); startup wraps them in the console's
/// layers.
pub fn console_router() -> Router<AppState> {
    Router::new()
        .route("/admin/activities", get(console::list))
        .route(
            "/admin/activities/new",
            get(console::new_page).post(console::create),
        )
        .route("/admin/activities/rhythm", get(console::rhythm))
        .route("/admin/activities/{id}", get(console::detail))
        .route(
            "/admin/activities/{id}/edit",
            get(console::edit_page).post(console::update),
        )
        .route("/admin/activities/{id}/checkin", get(console::checkin))
        .route(
            "/admin/activities/{id}/photos",
            post(console::upload_photo).layer(DefaultBodyLimit::max(admin::PHOTO_REQUEST_LIMIT)),
        )
        .route("/admin/activities/{id}/photos/{photo}", get(console::photo))
        .route(
            "/admin/activities/{id}/photos/{photo}/delete",
            post(console::delete_photo),
        )
        .route("/admin/activities/{id}/{action}", post(console::act))
}
