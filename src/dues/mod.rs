//! Party dues (党费): the rules of 中组发〔2008〕3号, monthly bills, WeChat Pay v3 payment,
//! notifications counted once, re-query and close jobs, reconciliation, trade bills and ledgers.
//!
//! The monthly cycle: a treasurer **opens** a month by assessing it
//! (`POST /api/admin/dues/assessments {"month"}`: one bill per eligible member, each with a
//! snapshot of the rule, the rule's amount and the base — the income, encrypted like the
//! roster's), members **pay** in the mini-program, and the month is **settled**
//! (`POST /api/admin/dues/months/{month}/settle`): no new bills, changes only by an adjustment
//! with a reason.
//!
//! A bill and its orders:
//!
//! ```text
//! bill:   unpaid ──pay (order live)──▶ paying ──credit──▶ paid
//!           ▲                             │
//!           └──── order closed/failed ────┘        exempt (0, with a reason; never paid)
//!
//! order:  created ──JSAPI prepay_id──▶ prepaid ──credit──▶ paid
//!            │                            │
//!            └── closed (expired, adjusted), failed (refused by WeChat Pay) ◀──┘
//! ```
//!
//! Exactly-once: every credit — from a notification (`POST /pay/notify`) or from the re-query
//! job — goes through [`service::apply_transaction`]: one transaction that inserts the payment
//! (UNIQUE on bill, order, `out_trade_no` and `transaction_id`; a concurrent duplicate waits and
//! then does nothing) and marks the bill paid with a conditional `UPDATE ... WHERE status <>
//! 'paid'`. A verified notification is stored (once per WeChat notification id) in that same
//! transaction, before the answer. Anything that does not match our order (amount — `total`,
//! not `payer_total` —, currency, merchant, app, an unknown order, a second payment of a paid
//! bill) becomes an incident for a person and is never credited.
//!
//! Notification answers (WeChat Pay's rules: 2xx accepted, else retried up to 15 times over
//! about 24 hours): a verified notification that we credited, had credited already, or recorded
//! as an incident gets 204 — resending a mismatch changes nothing, so it must not be retried
//! forever; an unverifiable one (signature, serial, timestamp, missing header) 401, one that is
//! not JSON or not a transaction 400, one we cannot decrypt or store 500 — always with
//! `{"code":"FAIL","message":...}`; with payment off (no merchant) 503.

pub mod admin;
pub mod console;
pub mod mp;
pub mod notify;
pub mod rules;
pub mod service;
pub mod store;
pub mod worker;

use axum::{
    extract::DefaultBodyLimit,
    routing::{get, post},
    Router,
};

use crate::{
    app::AppState,
    http::routes::{AdminRoutes, MpRoutes},
    platform::pii::Column,
};

/// This feature's encrypted columns (for the re-seal pass).
pub const SEALED: &[Column] = &[store::BASE];

/// WeChat Pay notifications are small; anything bigger is not one.
const NOTIFY_MAX_BODY_BYTES: usize = 64 * 1024;

/// The admin routes: assessments, bills, months, profiles, reconciliation, ledgers, incidents.
pub fn admin_routes(r: AdminRoutes) -> AdminRoutes {
    admin::routes(r)
}

/// The treasurer's console pages (`/admin/dues...`); startup wraps them in the console's layers.
pub fn console_router() -> Router<AppState> {
    Router::new()
        .route("/admin/dues", get(console::months))
        .route("/admin/dues/assess", post(console::assess))
        .route("/admin/dues/months/{month}/settle", post(console::settle))
        .route("/admin/dues/bills", get(console::bills))
        .route("/admin/dues/bills/{id}", get(console::bill))
        .route("/admin/dues/bills/{id}/adjust", post(console::adjust))
        .route("/admin/dues/members/{id}", get(console::member))
        .route("/admin/dues/members/{id}/reveal", post(console::reveal))
        .route(
            "/admin/dues/members/{id}/profile",
            post(console::set_profile),
        )
        .route("/admin/dues/collection", get(console::collection))
        .route("/admin/dues/incidents", get(console::incidents))
        .route("/admin/dues/incidents/{id}/resolve", post(console::resolve))
        .route("/admin/dues/tradebill", post(console::tradebill))
        .route("/admin/dues/ledger", get(console::ledger))
}

/// The mini-program's dues routes.
pub fn mp_routes(r: MpRoutes) -> MpRoutes {
    r
        .get(
            "/api/mp/dues",
            "My dues bills, newest month first: {bills: [{id, month, amount_fen, status: unpaid|paying|paid, paid_at}]}",
            mp::bills,
        )
        .post(
            "/api/mp/dues/{id}/pay",
            "Pay a bill with WeChat Pay: → {timeStamp, nonceStr, package, signType: RSA, paySign} for wx.requestPayment; someone else's or unknown → 404, paid → 409",
            mp::pay,
        )
}

/// WeChat Pay's notification endpoint.
pub fn router() -> Router<AppState> {
    Router::new().route(
        "/pay/notify",
        post(notify::notify).layer(DefaultBodyLimit::max(NOTIFY_MAX_BODY_BYTES)),
    )
}
