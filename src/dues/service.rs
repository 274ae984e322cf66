//! Dues transactions, audit entries and WeChat Pay calls: assessment, adjustment, settlement,
//! ordering and paying, the one credit path, notifications, the order checks the worker runs,
//! reconciliation, trade bills and ledgers.

use std::collections::{HashMap, HashSet};

use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;
use serde_json::json;
use wechat::pay::{
    self, JsapiOrder, MiniProgramPayParams, Notification, PayClient, PayError, SignatureHeaders,
    TradeState, Transaction,
};

use super::{
    rules::{self, Fen, MemberFacts, Month},
    store::{self, BillFilter, BillRow, NewBill, NewIncident, NewOrder, NewPayment, OrderRow},
};
use crate::{
    app::AppState,
    auth::AdminSession,
    members,
    platform::{
        audit::{self, AuditEntry},
        db::{sealed, Tx},
        error::{AppError, AppResult},
        org::{self, OrgScope},
        time::rfc3339_shanghai,
    },
};

/// A prepay id lives 2 hours at WeChat Pay.
const PREPAY_LIFE_MS: i64 = 2 * 3600 * 1000;
/// A prepay id is handed out again only if the payer still has this long to pay with it.
const PREPAY_REUSE_MARGIN_MS: i64 = 5 * 60 * 1000;
/// Longest wait between two checks of an unpaid order.
const MAX_CHECK_INTERVAL_MS: i64 = 30 * 60 * 1000;
/// Lease of a claimed order check.
pub const CHECK_LEASE_MS: i64 = 60_000;

pub(crate) fn pay_client(st: &AppState) -> AppResult<&PayClient> {
    st.pay.as_ref().ok_or_else(|| {
        AppError::rejected(
            StatusCode::SERVICE_UNAVAILABLE,
            "pay_disabled",
            "online payment of dues is not configured",
        )
    })
}

fn pay_unavailable(what: &str, e: &PayError) -> AppError {
    tracing::warn!(error = %e, "WeChat Pay {what}: outcome unknown");
    AppError::rejected(
        StatusCode::SERVICE_UNAVAILABLE,
        "pay_unavailable",
        "WeChat Pay did not answer clearly; try again in a moment",
    )
}

fn pay_refused(what: &str, e: &PayError) -> AppError {
    tracing::error!(error = %e, "WeChat Pay {what} refused");
    AppError::rejected(
        StatusCode::BAD_GATEWAY,
        "pay_refused",
        format!(
            "WeChat Pay refused the {what}{}",
            e.code().map(|c| format!(" ({c})")).unwrap_or_default()
        ),
    )
}

fn internal(e: impl std::fmt::Display) -> AppError {
    AppError::Internal(anyhow::anyhow!("{e}"))
}

pub(crate) fn parse_month(s: &str) -> AppResult<Month> {
    Month::parse(s.trim())
        .ok_or_else(|| AppError::Validation("month must be YYYY-MM (e.g. 2026-11)".into()))
}

pub(crate) fn now_month(st: &AppState) -> Month {
    Month::of_unix_ms(st.clock.unix_ms())
}

/// An org unit given by id or name, as the scope of its subtree. 404 when unknown, 403 when
/// outside the session's scope.
pub async fn unit_filter(
    st: &AppState,
    scope: &OrgScope,
    unit: Option<&str>,
) -> AppResult<Option<OrgScope>> {
    let Some(unit) = unit.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let found = match unit.parse::<i64>() {
        Ok(id) => org::get(&st.db, id).await?,
        Err(_) => org::find_by_name(st.db.pool(), unit).await?,
    };
    let found = found.ok_or_else(|| AppError::NotFound("org unit".into()))?;
    scope.require(found.id)?;
    Ok(Some(OrgScope::Units(
        org::subtree_ids(&st.db, found.id).await?,
    )))
}

/// The roster's income (or pension) of `m` in clear, for the rules; never logged.
fn decrypt_base(st: &AppState, m: &members::store::MemberRow) -> AppResult<Option<Fen>> {
    let Some(enc) = m.monthly_income_enc.as_deref() else {
        return Ok(None);
    };
    let slot = members::store::INCOME.at(m.id);
    let clear = st
        .cipher
        .open(slot, enc)
        .map_err(|e| AppError::Internal(sealed::refused(slot, e)))?;
    clear
        .trim()
        .parse::<i64>()
        .map(|v| Some(Fen(v)))
        .map_err(|_| internal(format!("member {} income is not a number of fen", m.id)))
}

// ---------------------------------------------------------------- assessment

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Skipped {
    pub member_id: i64,
    pub reason: &'static str,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct AssessOut {
    pub month: String,
    /// Bills made by this run.
    pub created: i64,
    /// Eligible members who already had a bill for the month (nothing changed for them).
    pub existing: i64,
    /// Of the created bills, those exempt (amount 0 with a reason).
    pub exempt: i64,
    /// Sum of the created bills.
    pub created_total_fen: i64,
    /// Members without a bill and why (joined later, no income on the roster).
    pub skipped: Vec<Skipped>,
}

/// Make one bill per eligible member in the session's scope for `month` (idempotent).
pub async fn assess(st: &AppState, session: &AdminSession, month: &str) -> AppResult<AssessOut> {
    let month = parse_month(month)?;
    match rules::assessable(month, now_month(st)) {
        Ok(()) => {}
        Err(rules::MonthRefused::TooOld) => {
            return Err(AppError::Validation(format!(
                "month is more than {} months back (back payment is limited to {} months)",
                rules::BACK_PAYMENT_MONTHS,
                rules::BACK_PAYMENT_MONTHS
            )))
        }
        Err(rules::MonthRefused::TooFarAhead) => {
            return Err(AppError::Validation(format!(
                "month is more than {} month ahead",
                rules::ASSESS_AHEAD_MONTHS
            )))
        }
    }
    let key = month.to_string();
    if let Some(m) = store::month_get(st.db.pool(), &key).await? {
        if m.status == "settled" {
            return Err(AppError::rejected(
                StatusCode::CONFLICT,
                "month_settled",
                "the month is settled: it changes only by adjustments",
            ));
        }
    }
    let scope = session.org_scope(&st.db).await?;
    let roster = members::store::all_in_scope(&st.db, &scope).await?;
    let profiles: HashMap<i64, store::ProfileRow> = store::profiles_all(st.db.pool())
        .await?
        .into_iter()
        .map(|p| (p.member_id, p))
        .collect();
    let mut skipped = Vec::new();
    let mut bills = Vec::with_capacity(roster.len());
    for m in &roster {
        let base = decrypt_base(st, m)?;
        let profile = profiles.get(&m.id);
        let facts = MemberFacts {
            category: &m.category,
            base,
            probationary: m.party_status == "probationary",
            joined_at: m.joined_at,
            exempt_reason: profile.and_then(|p| p.exempt_reason.as_deref()),
            voluntary: profile.and_then(|p| p.voluntary_fen).map(Fen),
        };
        match rules::assess(month, &facts) {
            Ok(a) => bills.push((m, a)),
            Err(why) => skipped.push(Skipped {
                member_id: m.id,
                reason: why.code(),
            }),
        }
    }
    let now = st.clock.unix_ms();
    let mut tx = st.db.begin_write().await?;
    // Settled in between? The month row is read again under the write transaction.
    if let Some(m) = store::month_get(&mut *tx, &key).await? {
        if m.status == "settled" {
            return Err(AppError::rejected(
                StatusCode::CONFLICT,
                "month_settled",
                "the month is settled: it changes only by adjustments",
            ));
        }
    }
    store::month_open(&mut *tx, &key, &session.username, now).await?;
    let (mut created, mut existing, mut exempt, mut total) = (0, 0, 0, 0);
    for (m, a) in &bills {
        let base = a.standard.base.map(|b| b.0.to_string());
        let is_exempt = a.rule == rules::Rule::Exempt;
        let new = NewBill {
            member_id: m.id,
            month: &key,
            org_unit_id: m.org_unit_id,
            amount_fen: a.amount.0,
            standard_fen: a.standard.amount.0,
            rule: a.rule.code(),
            standard_rule: a.standard.rule.code(),
            note: a.note.as_deref(),
            status: if is_exempt || a.amount.0 == 0 {
                "exempt"
            } else {
                "unpaid"
            },
        };
        match store::bill_insert(&mut *tx, &new, now).await? {
            Some(id) => {
                // The base is personal data (the income): sealed to the bill's row.
                sealed::write(&mut tx, &st.cipher, store::BASE, id, base.as_deref()).await?;
                created += 1;
                total += a.amount.0;
                if is_exempt {
                    exempt += 1;
                }
            }
            None => existing += 1,
        }
    }
    let entry = session
        .audit("dues_month.assess", "dues_month", &key)
        .details(json!({
            "created": created, "existing": existing, "exempt": exempt,
            "created_total_fen": total, "skipped": skipped.len(),
        }));
    audit::record(&mut *tx, &entry).await?;
    tx.commit().await?;
    Ok(AssessOut {
        month: key,
        created,
        existing,
        exempt,
        created_total_fen: total,
        skipped,
    })
}

// ---------------------------------------------------------------- months, profiles, adjustments

/// Settle (close) an open month: admins only (months are the whole organisation's).
pub async fn settle(
    st: &AppState,
    session: &AdminSession,
    month: &str,
) -> AppResult<store::MonthRow> {
    let month = parse_month(month)?.to_string();
    if session.org_scope(&st.db).await? != OrgScope::All {
        return Err(AppError::Forbidden(
            "only administrators settle a month".into(),
        ));
    }
    let now = st.clock.unix_ms();
    let mut tx = st.db.begin_write().await?;
    let Some(row) = store::month_get(&mut *tx, &month).await? else {
        return Err(AppError::NotFound("dues month".into()));
    };
    if !store::month_settle(&mut *tx, &month, &session.username, now).await? {
        return Err(AppError::rejected(
            StatusCode::CONFLICT,
            "month_settled",
            "the month is already settled",
        ));
    }
    audit::record(
        &mut *tx,
        &session
            .audit("dues_month.settle", "dues_month", &month)
            .details(json!({"before": {"status": row.status}, "after": {"status": "settled"}})),
    )
    .await?;
    let settled = store::month_get(&mut *tx, &month)
        .await?
        .ok_or_else(|| internal("settled month vanished"))?;
    tx.commit().await?;
    Ok(settled)
}

/// A member's exemption and voluntary amount (used by later assessments; existing bills change
/// only by adjustment).
pub async fn set_profile(
    st: &AppState,
    session: &AdminSession,
    member_id: i64,
    exempt_reason: Option<&str>,
    voluntary_fen: Option<i64>,
) -> AppResult<store::ProfileRow> {
    let reason = exempt_reason.map(str::trim).filter(|s| !s.is_empty());
    if reason.is_some_and(|r| r.chars().count() > 200) {
        return Err(AppError::Validation(
            "exempt_reason: at most 200 characters".into(),
        ));
    }
    if exempt_reason.is_some() && reason.is_none() {
        return Err(AppError::Validation(
            "exempt_reason: an exemption needs a reason (null removes it)".into(),
        ));
    }
    if let Some(v) = voluntary_fen {
        if !(1..=rules::MAX_VOLUNTARY_FEN).contains(&v) {
            return Err(AppError::Validation(format!(
                "voluntary_fen: 1 to {} fen (null removes it)",
                rules::MAX_VOLUNTARY_FEN
            )));
        }
    }
    let member = members::store::by_id(&st.db, member_id)
        .await?
        .ok_or_else(|| AppError::NotFound("member".into()))?;
    session
        .org_scope(&st.db)
        .await?
        .require(member.org_unit_id)?;
    let now = st.clock.unix_ms();
    let mut tx = st.db.begin_write().await?;
    let before = store::profile_get(&mut *tx, member_id).await?;
    store::profile_upsert(
        &mut *tx,
        member_id,
        reason,
        voluntary_fen,
        &session.username,
        now,
    )
    .await?;
    // The reason may describe a hardship (illness): the audit keeps only that there is one.
    let entry = session
        .audit("dues_profile.update", "member", member_id)
        .details(json!({
            "before": before.as_ref().map(|p| json!({"exempt": p.exempt_reason.is_some(), "voluntary_fen": p.voluntary_fen})),
            "after": {"exempt": reason.is_some(), "voluntary_fen": voluntary_fen},
        }));
    audit::record(&mut *tx, &entry).await?;
    let row = store::profile_get(&mut *tx, member_id)
        .await?
        .ok_or_else(|| internal("profile vanished"))?;
    tx.commit().await?;
    Ok(row)
}

/// Largest amount an adjustment may set (10,000 yuan): anything above is a typo.
const MAX_ADJUST_FEN: i64 = 1_000_000;

/// Set a bill's amount by hand, with a reason (audited). Not on a paid bill; a live order is
/// closed at WeChat Pay first (if it turns out paid, the bill is credited and the adjustment
/// refused).
pub async fn adjust(
    st: &AppState,
    session: &AdminSession,
    bill_id: i64,
    amount_fen: i64,
    reason: &str,
) -> AppResult<BillRow> {
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > 200 {
        return Err(AppError::Validation(
            "reason: required, at most 200 characters".into(),
        ));
    }
    if !(0..=MAX_ADJUST_FEN).contains(&amount_fen) {
        return Err(AppError::Validation(format!(
            "amount_fen: 0 to {MAX_ADJUST_FEN}"
        )));
    }
    let bill = store::bill_get(st.db.pool(), bill_id)
        .await?
        .ok_or_else(|| AppError::NotFound("bill".into()))?;
    session.org_scope(&st.db).await?.require(bill.org_unit_id)?;
    let paid_conflict = || {
        AppError::rejected(
            StatusCode::CONFLICT,
            "bill_paid",
            "the bill is paid: a paid bill is not adjusted",
        )
    };
    if bill.status == "paid" {
        return Err(paid_conflict());
    }
    if let Some(order) = store::order_live_for_bill(st.db.pool(), bill.id).await? {
        if close_live(st, pay_client(st)?, &order).await? == Closed::Paid {
            return Err(paid_conflict());
        }
    }
    let now = st.clock.unix_ms();
    let status = if amount_fen == 0 { "exempt" } else { "unpaid" };
    let mut tx = st.db.begin_write().await?;
    if !store::bill_adjust(
        &mut *tx,
        bill.id,
        amount_fen,
        rules::Rule::Adjusted.code(),
        Some(reason),
        status,
        now,
    )
    .await?
    {
        // Paid or being paid in the meantime.
        return Err(AppError::rejected(
            StatusCode::CONFLICT,
            "bill_busy",
            "the bill is paid or being paid; try again",
        ));
    }
    store::adjustment_insert(
        &mut *tx,
        bill.id,
        bill.amount_fen,
        amount_fen,
        reason,
        &session.username,
        now,
    )
    .await?;
    let entry = session
        .audit("dues_bill.adjust", "dues_bill", bill.id)
        .details(json!({
            "before": {"amount_fen": bill.amount_fen, "rule": bill.rule, "status": bill.status},
            "after": {"amount_fen": amount_fen, "rule": rules::Rule::Adjusted.code(), "status": status},
            "reason": reason,
            "month": bill.month,
        }));
    audit::record(&mut *tx, &entry).await?;
    let after = store::bill_get(&mut *tx, bill.id)
        .await?
        .ok_or_else(|| internal("bill vanished"))?;
    tx.commit().await?;
    Ok(after)
}

// ---------------------------------------------------------------- paying

fn jsapi_order(o: &OrderRow) -> AppResult<JsapiOrder> {
    let expire = time::OffsetDateTime::from_unix_timestamp(o.time_expire.div_euclid(1000))
        .map_err(internal)?;
    Ok(JsapiOrder {
        description: o.description.clone(),
        out_trade_no: o.out_trade_no.clone(),
        time_expire: Some(expire),
        attach: Some(format!("bill:{}", o.bill_id)),
        notify_url: o.notify_url.clone(),
        total_fen: o.amount_fen,
        payer_openid: o.payer_openid.clone(),
    })
}

/// `POST /api/mp/dues/{id}/pay`: the `wx.requestPayment` parameters for the member's bill. One
/// order per bill: a live order's prepay id is reused while valid; an order whose prepay result
/// is unknown is placed again with identical parameters (WeChat Pay answers the same prepay id);
/// an expired one is closed first.
pub async fn pay(st: &AppState, openid: &str, bill_id: i64) -> AppResult<MiniProgramPayParams> {
    let client = pay_client(st)?;
    let not_found = || AppError::NotFound("bill".into());
    let member = members::store::bound_to(&st.db, openid)
        .await?
        .ok_or_else(not_found)?;
    for _ in 0..3 {
        let bill = store::bill_get(st.db.pool(), bill_id)
            .await?
            .filter(|b| b.member_id == member.id)
            .ok_or_else(not_found)?;
        match bill.status.as_str() {
            "paid" => {
                return Err(AppError::rejected(
                    StatusCode::CONFLICT,
                    "bill_paid",
                    "the bill is already paid",
                ))
            }
            "exempt" => {
                return Err(AppError::rejected(
                    StatusCode::CONFLICT,
                    "nothing_to_pay",
                    "the bill is exempt: nothing to pay",
                ))
            }
            _ => {}
        }
        let month = parse_month(&bill.month)?;
        if !rules::payable_in(month, now_month(st)) {
            return Err(AppError::rejected(
                StatusCode::UNPROCESSABLE_ENTITY,
                "back_payment_window",
                format!(
                    "dues more than {} months old are paid to the branch, not online",
                    rules::BACK_PAYMENT_MONTHS
                ),
            ));
        }
        let now = st.clock.unix_ms();
        if let Some(order) = store::order_live_for_bill(st.db.pool(), bill.id).await? {
            let same = order.payer_openid == openid && order.amount_fen == bill.amount_fen;
            if same {
                if let (Some(pp), Some(until)) = (&order.prepay_id, order.prepay_expires_at) {
                    if until > now {
                        return client
                            .request_payment(pp)
                            .map_err(|e| pay_refused("payment signature", &e));
                    }
                }
                if order.prepay_id.is_none() && order.time_expire > now + PREPAY_REUSE_MARGIN_MS {
                    // The first prepay's result is unknown: the same order again.
                    return prepay(st, client, &order).await;
                }
            }
            if close_live(st, client, &order).await? == Closed::Paid {
                continue; // the next round answers 409
            }
            continue;
        }
        // A new order: bill → paying and the order row in one transaction; the partial unique
        // index lets only one live order per bill exist, whoever races.
        let no = rules::out_trade_no(bill.id, &pay::random_nonce());
        let description = format!("党费 {}", month.label_zh());
        let ttl_ms = (st.settings.dues_order_ttl_secs as i64) * 1000;
        let notify_url = notify_url(st);
        let new = NewOrder {
            bill_id: bill.id,
            out_trade_no: &no,
            amount_fen: bill.amount_fen,
            payer_openid: openid,
            description: &description,
            notify_url: &notify_url,
            time_expire: now + ttl_ms,
            next_check_at: now + (st.settings.dues_requery_after_secs as i64) * 1000,
        };
        let mut tx = st.db.begin_write().await?;
        if !store::bill_start_paying(&mut *tx, bill.id, now).await? {
            continue; // paid or exempt meanwhile: the next round says so
        }
        let id = match store::order_insert(&mut *tx, &new, now).await {
            Ok(id) => id,
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => continue,
            Err(e) => return Err(e.into()),
        };
        tx.commit().await?;
        let order = store::order_get(st.db.pool(), id)
            .await?
            .ok_or_else(|| internal("order vanished"))?;
        return prepay(st, client, &order).await;
    }
    Err(AppError::rejected(
        StatusCode::CONFLICT,
        "bill_busy",
        "the bill is being paid; try again",
    ))
}

/// The notify URL orders carry. WeChat Pay (and its fake) refuse a non-https one; in dev the
/// fake never calls it, so a plain-http default is sent as https.
fn notify_url(st: &AppState) -> String {
    let url = st.settings.pay_notify_url();
    match url.strip_prefix("http://") {
        Some(rest)
            if st.settings.pay_setup() == crate::platform::config::PaySetup::TestMerchant =>
        {
            format!("https://{rest}")
        }
        _ => url,
    }
}

/// JSAPI下单 for a live order and the payment parameters.
async fn prepay(
    st: &AppState,
    client: &PayClient,
    order: &OrderRow,
) -> AppResult<MiniProgramPayParams> {
    let req = jsapi_order(order)?;
    match client.jsapi_prepay(&req).await {
        Ok(prepay_id) => {
            let now = st.clock.unix_ms();
            let until = (now + PREPAY_LIFE_MS).min(order.time_expire) - PREPAY_REUSE_MARGIN_MS;
            store::order_prepaid(st.db.pool(), order.id, &prepay_id, until, now).await?;
            client
                .request_payment(&prepay_id)
                .map_err(|e| pay_refused("payment signature", &e))
        }
        Err(PayError::OrderPaid { .. }) => {
            query_and_credit(st, client, order).await?;
            Err(AppError::rejected(
                StatusCode::CONFLICT,
                "bill_paid",
                "the bill is already paid",
            ))
        }
        // Unknown: the order stays `created`; the next attempt places it again unchanged and the
        // re-query job looks at it.
        Err(e) if e.outcome_unknown() => Err(pay_unavailable("order", &e)),
        Err(e) => {
            let now = st.clock.unix_ms();
            let mut tx = st.db.begin_write().await?;
            if store::order_end(
                &mut *tx,
                order.id,
                "failed",
                None,
                Some(&e.to_string()),
                now,
            )
            .await?
            {
                store::bill_stop_paying(&mut *tx, order.bill_id, now).await?;
            }
            tx.commit().await?;
            Err(pay_refused("order", &e))
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closed {
    /// Closed at WeChat Pay (or never there); the bill is unpaid again.
    Closed,
    /// It was paid: credited now.
    Paid,
}

/// Close a live order at WeChat Pay (关闭订单). `ORDER_PAID` → query and credit.
pub(crate) async fn close_live(
    st: &AppState,
    client: &PayClient,
    order: &OrderRow,
) -> AppResult<Closed> {
    match client.close_order(&order.out_trade_no).await {
        Ok(()) => {
            end_unpaid(st, order, "closed", Some("CLOSED"), None).await?;
            Ok(Closed::Closed)
        }
        Err(PayError::OrderPaid { .. }) => match query_and_credit(st, client, order).await? {
            Credit::Credited | Credit::AlreadyPaid | Credit::DuplicateNotification => {
                Ok(Closed::Paid)
            }
            Credit::Incident(_) => {
                // Paid at WeChat Pay but not creditable: a person takes over; the order is
                // not live any more.
                end_unpaid(st, order, "closed", Some("SUCCESS"), Some("incident")).await?;
                Ok(Closed::Paid)
            }
            Credit::NotPaid => Err(AppError::rejected(
                StatusCode::SERVICE_UNAVAILABLE,
                "pay_unavailable",
                "WeChat Pay says the order is paid but not yet in its query; try again",
            )),
        },
        Err(PayError::Api { code, .. }) if code == pay::code::ORDER_NOT_EXIST => {
            end_unpaid(st, order, "closed", None, Some("ORDER_NOT_EXIST")).await?;
            Ok(Closed::Closed)
        }
        Err(e) if e.outcome_unknown() => Err(pay_unavailable("close", &e)),
        Err(e) => Err(pay_refused("close", &e)),
    }
}

async fn end_unpaid(
    st: &AppState,
    order: &OrderRow,
    status: &str,
    trade_state: Option<&str>,
    error: Option<&str>,
) -> AppResult<()> {
    let now = st.clock.unix_ms();
    let mut tx = st.db.begin_write().await?;
    if store::order_end(&mut *tx, order.id, status, trade_state, error, now).await? {
        store::bill_stop_paying(&mut *tx, order.bill_id, now).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// 查询订单 and, when paid, the credit path.
async fn query_and_credit(
    st: &AppState,
    client: &PayClient,
    order: &OrderRow,
) -> AppResult<Credit> {
    match client.query_by_out_trade_no(&order.out_trade_no).await {
        Ok(t) if t.is_paid() => apply_transaction(st, client, &t, Source::Query, None).await,
        Ok(_) => Ok(Credit::NotPaid),
        Err(e) if e.outcome_unknown() => Err(pay_unavailable("query", &e)),
        Err(e) => Err(pay_refused("query", &e)),
    }
}

// ---------------------------------------------------------------- the credit path

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Notification,
    Query,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Notification => "notification",
            Source::Query => "query",
        }
    }
}

/// What one credit attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credit {
    /// This attempt recorded the payment and marked the bill paid.
    Credited,
    /// The same payment was recorded before (a duplicate notification or query).
    AlreadyPaid,
    /// Not creditable: recorded as an incident of this kind.
    Incident(String),
    /// The transaction is not paid (NOTPAY, CLOSED, ...).
    NotPaid,
    /// The same notification id was stored (and handled) before.
    DuplicateNotification,
}

impl Credit {
    fn outcome(&self) -> &str {
        match self {
            Credit::Credited => "credited",
            Credit::AlreadyPaid => "duplicate",
            Credit::Incident(_) => "incident",
            Credit::NotPaid => "not_paid",
            Credit::DuplicateNotification => "duplicate",
        }
    }
}

/// A verified notification to store with what it caused.
pub struct StoredNotification<'a> {
    pub id: &'a str,
    pub event_type: &'a str,
    pub body: &'a str,
}

/// THE credit path, for notifications and queries alike: in one transaction, store the
/// notification (once per id; a repeat is answered at once), check the transaction against our
/// order, and record the payment and the paid bill — or an incident. Concurrent duplicates
/// serialise on the unique keys and find the first one's payment.
pub async fn apply_transaction(
    st: &AppState,
    client: &PayClient,
    t: &Transaction,
    source: Source,
    notification: Option<StoredNotification<'_>>,
) -> AppResult<Credit> {
    let now = st.clock.unix_ms();
    let mut tx = st.db.begin_write().await?;
    if let Some(n) = &notification {
        let fresh = store::notification_insert(
            &mut *tx,
            &store::NewNotification {
                notification_id: n.id,
                event_type: n.event_type,
                out_trade_no: Some(&t.out_trade_no),
                transaction_id: t.transaction_id.as_deref(),
                outcome: "pending",
                body: n.body,
            },
            now,
        )
        .await?;
        if !fresh {
            tx.commit().await?;
            return Ok(Credit::DuplicateNotification);
        }
    }
    let credit = credit_in(&mut tx, client, t, source, now).await?;
    if let Some(n) = &notification {
        store::notification_set_outcome(&mut *tx, n.id, credit.outcome()).await?;
    }
    tx.commit().await?;
    match &credit {
        Credit::Credited => {
            tracing::info!(out_trade_no = %t.out_trade_no, source = source.as_str(), "dues payment credited")
        }
        Credit::Incident(kind) => {
            tracing::warn!(out_trade_no = %t.out_trade_no, kind = %kind, "dues payment NOT credited: incident recorded")
        }
        _ => {}
    }
    Ok(credit)
}

async fn credit_in(
    tx: &mut Tx,
    client: &PayClient,
    t: &Transaction,
    source: Source,
    now: i64,
) -> AppResult<Credit> {
    if !t.is_paid() {
        return Ok(Credit::NotPaid);
    }
    let tid = t.transaction_id.as_deref().unwrap_or_default();
    let cfg = client.config();
    let Some(order) = store::order_by_out_trade_no(&mut **tx, &t.out_trade_no).await? else {
        let kind = "unknown_order";
        incident(
            tx,
            NewIncident {
                kind,
                dedup_key: &format!("{kind}:{}:{tid}", t.out_trade_no),
                bill_id: None,
                org_unit_id: None,
                out_trade_no: Some(&t.out_trade_no),
                transaction_id: Some(tid),
                expected_fen: None,
                actual_fen: Some(t.amount.total),
                details: &json!({"source": source.as_str(), "mchid": t.mchid, "appid": t.appid})
                    .to_string(),
            },
            now,
        )
        .await?;
        return Ok(Credit::Incident(kind.into()));
    };
    let bill = store::bill_get(&mut **tx, order.bill_id)
        .await?
        .ok_or_else(|| internal("order without its bill"))?;
    let mut mismatches = rules::check_transaction(
        &rules::Expected {
            mch_id: &cfg.mch_id,
            app_id: &cfg.app_id,
            out_trade_no: &order.out_trade_no,
            amount_fen: order.amount_fen,
        },
        &rules::Reported {
            mch_id: &t.mchid,
            app_id: &t.appid,
            out_trade_no: &t.out_trade_no,
            total_fen: t.amount.total,
            currency: t.amount.currency.as_deref(),
        },
    );
    if tid.is_empty() {
        mismatches.push(rules::Mismatch::OutTradeNo);
    }
    if let Some(first) = mismatches.first() {
        let kind = first.code();
        let codes: Vec<&str> = mismatches.iter().map(|m| m.code()).collect();
        incident(
            tx,
            NewIncident {
                kind,
                dedup_key: &format!("{kind}:{}:{tid}", order.out_trade_no),
                bill_id: Some(bill.id),
                org_unit_id: Some(bill.org_unit_id),
                out_trade_no: Some(&order.out_trade_no),
                transaction_id: Some(tid),
                expected_fen: Some(order.amount_fen),
                actual_fen: Some(t.amount.total),
                details: &json!({
                    "source": source.as_str(), "mismatches": codes,
                    "mchid": t.mchid, "appid": t.appid, "currency": t.amount.currency,
                })
                .to_string(),
            },
            now,
        )
        .await?;
        return Ok(Credit::Incident(kind.into()));
    }
    let paid_at = t
        .success_time
        .as_deref()
        .and_then(rules::parse_success_time)
        .unwrap_or(now);
    let payment = NewPayment {
        bill_id: bill.id,
        order_id: order.id,
        out_trade_no: &order.out_trade_no,
        transaction_id: tid,
        amount_fen: t.amount.total,
        payer_total_fen: t.amount.payer_total,
        bill_month: &bill.month,
        org_unit_id: bill.org_unit_id,
        success_time: t.success_time.as_deref(),
        paid_at,
        source: source.as_str(),
    };
    if store::payment_insert(&mut **tx, &payment, now)
        .await?
        .is_some()
    {
        store::bill_mark_paid(&mut **tx, bill.id, t.amount.total, paid_at, now).await?;
        store::order_mark_paid(&mut **tx, order.id, tid, now).await?;
        let entry = AuditEntry::system(
            now,
            "wechat_pay",
            "dues_bill.paid",
            "dues_bill",
            Some(bill.id.to_string()),
        )
        .details(json!({
            "amount_fen": t.amount.total, "out_trade_no": order.out_trade_no,
            "transaction_id": tid, "source": source.as_str(), "month": bill.month,
        }));
        audit::record(&mut **tx, &entry).await?;
        return Ok(Credit::Credited);
    }
    let existing = store::payment_conflicting(&mut **tx, bill.id, &order.out_trade_no, tid)
        .await?
        .ok_or_else(|| internal("payment conflict without a payment"))?;
    if existing.transaction_id == tid && existing.out_trade_no == order.out_trade_no {
        return Ok(Credit::AlreadyPaid);
    }
    // Money arrived a second time for a paid bill (another order of it was paid too): a person
    // refunds it.
    store::order_mark_paid(&mut **tx, order.id, tid, now).await?;
    let kind = "duplicate_payment";
    incident(
        tx,
        NewIncident {
            kind,
            dedup_key: &format!("{kind}:{}:{tid}", order.out_trade_no),
            bill_id: Some(bill.id),
            org_unit_id: Some(bill.org_unit_id),
            out_trade_no: Some(&order.out_trade_no),
            transaction_id: Some(tid),
            expected_fen: Some(order.amount_fen),
            actual_fen: Some(t.amount.total),
            details: &json!({
                "source": source.as_str(),
                "credited_out_trade_no": existing.out_trade_no,
                "credited_transaction_id": existing.transaction_id,
            })
            .to_string(),
        },
        now,
    )
    .await?;
    Ok(Credit::Incident(kind.into()))
}

async fn incident(tx: &mut Tx, i: NewIncident<'_>, now: i64) -> AppResult<i64> {
    Ok(store::incident_upsert(&mut **tx, &i, now).await?.0)
}

// ---------------------------------------------------------------- incidents

/// An incident the session may see: tied to an org unit in its scope, or (untied, e.g. an
/// unknown order) only for administrators. Anything else is "not found".
pub async fn incident_in_scope(
    st: &AppState,
    session: &AdminSession,
    id: i64,
) -> AppResult<store::IncidentRow> {
    let found = store::incident_get(st.db.pool(), id)
        .await?
        .ok_or_else(|| AppError::NotFound("incident".into()))?;
    let scope = session.org_scope(&st.db).await?;
    let visible = match found.org_unit_id {
        Some(u) => scope.contains(u),
        None => scope == OrgScope::All,
    };
    if !visible {
        return Err(AppError::NotFound("incident".into()));
    }
    Ok(found)
}

/// Close an open incident with what a person decided (audited).
pub async fn resolve_incident(
    st: &AppState,
    session: &AdminSession,
    id: i64,
    resolution: &str,
) -> AppResult<store::IncidentRow> {
    let resolution = resolution.trim();
    if resolution.is_empty() || resolution.chars().count() > 500 {
        return Err(AppError::Validation(
            "resolution: required, at most 500 characters".into(),
        ));
    }
    let found = incident_in_scope(st, session, id).await?;
    let now = st.clock.unix_ms();
    let mut tx = st.db.begin_write().await?;
    if !store::incident_resolve(&mut *tx, id, &session.username, resolution, now).await? {
        return Err(AppError::rejected(
            StatusCode::CONFLICT,
            "incident_resolved",
            "the incident is already resolved",
        ));
    }
    let entry = session
        .audit("dues_incident.resolve", "dues_incident", id)
        .details(json!({"kind": found.kind, "resolution": resolution}));
    audit::record(&mut *tx, &entry).await?;
    let row = store::incident_get(&mut *tx, id)
        .await?
        .ok_or_else(|| AppError::NotFound("incident".into()))?;
    tx.commit().await?;
    Ok(row)
}

// ---------------------------------------------------------------- notifications

/// Why a notification is refused, and how to answer (`{"code":"FAIL","message"}`).
#[derive(Debug)]
pub struct Refused {
    pub status: StatusCode,
    pub message: String,
}

fn refused(status: StatusCode, message: impl Into<String>) -> Refused {
    Refused {
        status,
        message: message.into(),
    }
}

/// `POST /pay/notify`: verify over the raw body (always: a missing header is a refusal),
/// timestamp within 5 minutes of the app clock, serial known; then decrypt and credit (or
/// record an incident). Ok: answer 204.
pub async fn receive_notification(
    st: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Credit, Refused> {
    let Some(client) = st.pay.as_ref() else {
        return Err(refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "online payment is not configured",
        ));
    };
    let now = st.clock.now().unix_timestamp();
    let sig = SignatureHeaders::from_header_map(headers).map_err(|e| {
        tracing::warn!(error = %e, "WeChat Pay notification refused");
        refused(StatusCode::UNAUTHORIZED, format!("signature headers: {e}"))
    })?;
    let keys = client.platform_keys();
    let notification: Notification = match pay::parse_notification(&keys, &sig, body, now) {
        Ok(n) => n,
        Err(PayError::Verify(e)) => {
            tracing::warn!(error = %e, serial = %sig.serial, "WeChat Pay notification signature refused");
            return Err(refused(
                StatusCode::UNAUTHORIZED,
                format!("signature verification failed: {e}"),
            ));
        }
        Err(e) => {
            tracing::warn!(error = %e, "verified WeChat Pay notification is not a notification");
            return Err(refused(StatusCode::BAD_REQUEST, "not a notification"));
        }
    };
    let body_text =
        std::str::from_utf8(body).map_err(|_| refused(StatusCode::BAD_REQUEST, "not UTF-8"))?;
    // A resent notification (same id) that is already stored was handled: answer at once,
    // without the write lock. (Not yet stored: the transaction below decides, once.)
    match store::notification_seen(st.db.pool(), &notification.id).await {
        Ok(true) => return Ok(Credit::DuplicateNotification),
        Ok(false) => {}
        Err(e) => {
            tracing::error!(error = %e, "reading WeChat Pay notifications failed");
            return Err(refused(StatusCode::INTERNAL_SERVER_ERROR, "storage failed"));
        }
    }
    if notification.event_type != Notification::TRANSACTION_SUCCESS {
        // Verified, but not a payment (e.g. a refund event on the same URL): stored, accepted.
        let stored = async {
            let mut tx = st.db.begin_write().await?;
            store::notification_insert(
                &mut *tx,
                &store::NewNotification {
                    notification_id: &notification.id,
                    event_type: &notification.event_type,
                    out_trade_no: None,
                    transaction_id: None,
                    outcome: "ignored",
                    body: body_text,
                },
                st.clock.unix_ms(),
            )
            .await?;
            tx.commit().await
        };
        stored.await.map_err(|e| {
            tracing::error!(error = %e, "storing a WeChat Pay notification failed");
            refused(StatusCode::INTERNAL_SERVER_ERROR, "storage failed")
        })?;
        return Ok(Credit::NotPaid);
    }
    let transaction = match notification.transaction(&client.config().api_v3_key) {
        Ok(t) => t,
        Err(PayError::Crypto(e)) => {
            // Signed by WeChat Pay yet undecryptable: our API v3 key is wrong. Refused, so that
            // WeChat Pay resends once the key is fixed.
            tracing::error!(error = %e, "WeChat Pay notification cannot be decrypted: check DANGJIAN_PAY_API_V3_KEY");
            return Err(refused(
                StatusCode::INTERNAL_SERVER_ERROR,
                "resource decryption failed",
            ));
        }
        Err(e) => {
            tracing::warn!(error = %e, "WeChat Pay notification resource is not a transaction");
            return Err(refused(
                StatusCode::BAD_REQUEST,
                "resource is not a transaction",
            ));
        }
    };
    apply_transaction(
        st,
        client,
        &transaction,
        Source::Notification,
        Some(StoredNotification {
            id: &notification.id,
            event_type: &notification.event_type,
            body: body_text,
        }),
    )
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "crediting a WeChat Pay notification failed");
        refused(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error; resend later",
        )
    })
}

// ---------------------------------------------------------------- the order checks (worker)

/// Next check of an unpaid order: doubling from `dues_requery_after_secs`, at most 30 min, and
/// never later than its expiry (then it is closed).
fn next_check(st: &AppState, order: &OrderRow, now: i64) -> i64 {
    let base = (st.settings.dues_requery_after_secs as i64 * 1000).max(1000);
    let factor = 1i64 << order.attempts.clamp(0, 10);
    let next = now + (base.saturating_mul(factor)).min(MAX_CHECK_INTERVAL_MS);
    if now < order.time_expire {
        next.min(order.time_expire)
    } else {
        next
    }
}

/// One claimed order: query it at WeChat Pay; credit a paid one (same path as notifications),
/// close an expired unpaid one (ORDER_PAID on close → query and credit), else check again later.
pub async fn check_order(st: &AppState, order: &OrderRow, owner: &str) -> AppResult<()> {
    let client = pay_client(st)?;
    let now = st.clock.unix_ms();
    let release = |state: Option<String>, error: Option<String>| async move {
        store::order_release(
            st.db.pool(),
            order.id,
            owner,
            next_check(st, order, st.clock.unix_ms()),
            state.as_deref(),
            error.as_deref(),
            st.clock.unix_ms(),
        )
        .await
    };
    match client.query_by_out_trade_no(&order.out_trade_no).await {
        Ok(t) if t.is_paid() => {
            if let Credit::Incident(_) =
                apply_transaction(st, client, &t, Source::Query, None).await?
            {
                // Paid at WeChat Pay, but not creditable: a person takes over; stop checking.
                end_unpaid(st, order, "closed", Some("SUCCESS"), Some("incident")).await?;
            }
        }
        Ok(t) => match t.trade_state {
            TradeState::Closed | TradeState::Revoked | TradeState::Payerror => {
                end_unpaid(st, order, "closed", Some(t.trade_state.as_str()), None).await?;
            }
            TradeState::Refund => {
                // Paid and refunded at WeChat Pay without us: for a person.
                let bill = store::bill_get(st.db.pool(), order.bill_id).await?;
                let mut tx = st.db.begin_write().await?;
                incident(
                    &mut tx,
                    NewIncident {
                        kind: "refunded",
                        dedup_key: &format!("refunded:{}", order.out_trade_no),
                        bill_id: Some(order.bill_id),
                        org_unit_id: bill.map(|b| b.org_unit_id),
                        out_trade_no: Some(&order.out_trade_no),
                        transaction_id: t.transaction_id.as_deref(),
                        expected_fen: Some(order.amount_fen),
                        actual_fen: Some(t.amount.total),
                        details: "{\"source\":\"query\"}",
                    },
                    now,
                )
                .await?;
                tx.commit().await?;
                end_unpaid(st, order, "closed", Some("REFUND"), None).await?;
            }
            _ if now >= order.time_expire => {
                if let Err(e) = close_live(st, client, order).await {
                    release(Some(t.trade_state.as_str().to_owned()), Some(e.to_string())).await?;
                }
            }
            _ => release(Some(t.trade_state.as_str().to_owned()), None).await?,
        },
        Err(PayError::Api { code, .. }) if code == pay::code::ORDER_NOT_EXIST => {
            // Never reached WeChat Pay (our prepay call failed before it): past its expiry
            // nobody can pay it any more.
            if now >= order.time_expire {
                end_unpaid(st, order, "closed", None, Some("ORDER_NOT_EXIST")).await?;
            } else {
                release(None, Some("ORDER_NOT_EXIST".into())).await?;
            }
        }
        Err(e) => {
            tracing::warn!(out_trade_no = %order.out_trade_no, error = %e, "dues order query failed; will retry");
            release(None, Some(e.to_string())).await?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- reconciliation

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct UnitCollection {
    pub org_unit_id: i64,
    pub org_unit: String,
    pub bill_count: i64,
    /// Bills that are due (not exempt).
    pub due_count: i64,
    pub paid_count: i64,
    pub due_total_fen: i64,
    pub paid_total_fen: i64,
    /// paid_count / due_count, three decimals; null without due bills.
    pub collection_rate: Option<f64>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Reconciliation {
    pub month: String,
    /// `open`, `settled`, or `none` (never assessed).
    pub month_status: String,
    pub bill_count: i64,
    pub paid_count: i64,
    /// Sum of the credited payments of the month's bills.
    pub paid_total_fen: i64,
    /// Not yet paid (`unpaid` and `paying`).
    pub unpaid_count: i64,
    pub paying_count: i64,
    pub exempt_count: i64,
    /// Sum of the amounts of the bills that are due (not exempt).
    pub due_total_fen: i64,
    pub unpaid_total_fen: i64,
    /// Open incidents about this month.
    pub incidents: i64,
    pub collection_rate: Option<f64>,
    /// Collection per org unit.
    pub collection: Vec<UnitCollection>,
}

fn rate(paid: i64, due: i64) -> Option<f64> {
    rules::collection_rate_permille(paid, due).map(|p| p as f64 / 1000.0)
}

pub async fn reconciliation(
    st: &AppState,
    scope: &OrgScope,
    unit: Option<&OrgScope>,
    month: Month,
) -> AppResult<Reconciliation> {
    let key = month.to_string();
    let totals = store::month_totals(st.db.pool(), &key, scope, unit).await?;
    let names: HashMap<i64, String> = org::list(&st.db)
        .await?
        .into_iter()
        .map(|u| (u.id, u.name))
        .collect();
    let mut r = Reconciliation {
        month: key.clone(),
        month_status: store::month_get(st.db.pool(), &key)
            .await?
            .map(|m| m.status)
            .unwrap_or_else(|| "none".into()),
        bill_count: 0,
        paid_count: 0,
        paid_total_fen: 0,
        unpaid_count: 0,
        paying_count: 0,
        exempt_count: 0,
        due_total_fen: 0,
        unpaid_total_fen: 0,
        incidents: store::open_incidents_for_month(
            st.db.pool(),
            &key,
            scope,
            month.start_ms(),
            month.end_ms(),
        )
        .await?,
        collection_rate: None,
        collection: Vec::new(),
    };
    let mut units: Vec<UnitCollection> = Vec::new();
    for t in &totals {
        if units.last().map(|u| u.org_unit_id) != Some(t.org_unit_id) {
            units.push(UnitCollection {
                org_unit_id: t.org_unit_id,
                org_unit: names.get(&t.org_unit_id).cloned().unwrap_or_default(),
                bill_count: 0,
                due_count: 0,
                paid_count: 0,
                due_total_fen: 0,
                paid_total_fen: 0,
                collection_rate: None,
            });
        }
        let u = units.last_mut().expect("pushed above");
        u.bill_count += t.bills;
        r.bill_count += t.bills;
        match t.status.as_str() {
            "exempt" => r.exempt_count += t.bills,
            s => {
                u.due_count += t.bills;
                u.due_total_fen += t.amount_fen;
                r.due_total_fen += t.amount_fen;
                match s {
                    "paid" => {
                        u.paid_count += t.bills;
                        u.paid_total_fen += t.paid_fen;
                        r.paid_count += t.bills;
                        r.paid_total_fen += t.paid_fen;
                    }
                    other => {
                        r.unpaid_count += t.bills;
                        r.unpaid_total_fen += t.amount_fen;
                        if other == "paying" {
                            r.paying_count += t.bills;
                        }
                    }
                }
            }
        }
    }
    for u in &mut units {
        u.collection_rate = rate(u.paid_count, u.due_count);
    }
    r.collection_rate = rate(r.paid_count, r.paid_count + r.unpaid_count);
    r.collection = units;
    Ok(r)
}

// ---------------------------------------------------------------- trade bills

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct TradebillIncident {
    pub id: i64,
    pub kind: &'static str,
    pub out_trade_no: String,
    pub transaction_id: String,
    pub expected_fen: Option<i64>,
    pub actual_fen: Option<i64>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct TradebillOut {
    pub date: String,
    /// Trade rows (SUCCESS) in WeChat Pay's bill.
    pub rows: i64,
    /// Rows that match one of our payments in order number, transaction and amount.
    pub matched: i64,
    /// Sum of the bill's trade rows.
    pub total_fen: i64,
    /// Our payments of that day.
    pub our_payments: i64,
    pub incidents: Vec<TradebillIncident>,
}

/// `POST /api/admin/dues/tradebill {"date"}`: fetch WeChat Pay's trade bill of a (Beijing) day
/// and compare it with our payments: missing on either side or a different amount → incidents.
pub async fn tradebill(
    st: &AppState,
    session: &AdminSession,
    date: &str,
) -> AppResult<TradebillOut> {
    if session.org_scope(&st.db).await? != OrgScope::All {
        return Err(AppError::Forbidden(
            "only administrators import the merchant's trade bill".into(),
        ));
    }
    let day = rules::parse_date(date.trim())
        .ok_or_else(|| AppError::Validation("date must be YYYY-MM-DD".into()))?;
    let today = rules::shanghai_date(st.clock.unix_ms());
    if day >= today {
        return Err(AppError::Validation(
            "a day's trade bill exists from 10:00 (Beijing) the next day".into(),
        ));
    }
    let client = pay_client(st)?;
    let bill = match client.fetch_trade_bill(day).await {
        Ok(b) => b,
        Err(PayError::Api { code, .. }) if code == pay::code::NO_STATEMENT_EXIST => {
            return Err(AppError::rejected(
                StatusCode::NOT_FOUND,
                "no_statement",
                "WeChat Pay has no trade bill for that day (no trade, or not generated yet)",
            ))
        }
        Err(e) if e.outcome_unknown() => return Err(pay_unavailable("trade bill", &e)),
        Err(e) => return Err(pay_refused("trade bill", &e)),
    };
    let start = time::PrimitiveDateTime::new(day, time::Time::MIDNIGHT)
        .assume_offset(crate::platform::time::SHANGHAI);
    let from = crate::platform::time::unix_ms(start);
    let to = from + 86_400_000;
    let ours = store::payments_between(st.db.pool(), from, to).await?;
    let trades: Vec<&pay::TradeBillRow> = bill
        .rows
        .iter()
        .filter(|r| r.trade_state == "SUCCESS")
        .collect();
    let nos: Vec<String> = trades.iter().map(|r| r.out_trade_no.clone()).collect();
    // Payments credited under another day (a success time near midnight) still match.
    let known: HashMap<String, store::PaymentRow> =
        store::payments_by_out_trade_nos(st.db.pool(), &nos)
            .await?
            .into_iter()
            .chain(ours.iter().cloned())
            .map(|p| (p.out_trade_no.clone(), p))
            .collect();
    let now = st.clock.unix_ms();
    let date_s = day.to_string();
    let mut out = TradebillOut {
        date: date_s.clone(),
        rows: trades.len() as i64,
        matched: 0,
        total_fen: trades.iter().map(|r| r.total_fen).sum(),
        our_payments: ours.len() as i64,
        incidents: Vec::new(),
    };
    let mut tx = st.db.begin_write().await?;
    let mut in_bill = HashSet::new();
    for row in &trades {
        in_bill.insert(row.out_trade_no.clone());
        let found = known.get(&row.out_trade_no);
        let kind = match found {
            Some(p) if p.amount_fen == row.total_fen && p.transaction_id == row.transaction_id => {
                out.matched += 1;
                continue;
            }
            Some(_) => "tradebill_amount_mismatch",
            None => "tradebill_missing_ours",
        };
        let order = store::order_by_out_trade_no(&mut *tx, &row.out_trade_no).await?;
        let bill_row = match &order {
            Some(o) => store::bill_get(&mut *tx, o.bill_id).await?,
            None => None,
        };
        let (id, _) = store::incident_upsert(
            &mut *tx,
            &NewIncident {
                kind,
                dedup_key: &format!("{kind}:{date_s}:{}:{}", row.out_trade_no, row.transaction_id),
                bill_id: bill_row.as_ref().map(|b| b.id),
                org_unit_id: bill_row.as_ref().map(|b| b.org_unit_id),
                out_trade_no: Some(&row.out_trade_no),
                transaction_id: Some(&row.transaction_id),
                expected_fen: found.map(|p| p.amount_fen),
                actual_fen: Some(row.total_fen),
                details: &json!({"bill_date": date_s, "trade_time": row.trade_time, "order_known": order.is_some()}).to_string(),
            },
            now,
        )
        .await?;
        out.incidents.push(TradebillIncident {
            id,
            kind,
            out_trade_no: row.out_trade_no.clone(),
            transaction_id: row.transaction_id.clone(),
            expected_fen: found.map(|p| p.amount_fen),
            actual_fen: Some(row.total_fen),
        });
    }
    for p in ours.iter().filter(|p| !in_bill.contains(&p.out_trade_no)) {
        let kind = "tradebill_missing_wechat";
        let (id, _) = store::incident_upsert(
            &mut *tx,
            &NewIncident {
                kind,
                dedup_key: &format!("{kind}:{date_s}:{}:{}", p.out_trade_no, p.transaction_id),
                bill_id: Some(p.bill_id),
                org_unit_id: Some(p.org_unit_id),
                out_trade_no: Some(&p.out_trade_no),
                transaction_id: Some(&p.transaction_id),
                expected_fen: Some(p.amount_fen),
                actual_fen: None,
                details: &json!({"bill_date": date_s, "source": p.source}).to_string(),
            },
            now,
        )
        .await?;
        out.incidents.push(TradebillIncident {
            id,
            kind,
            out_trade_no: p.out_trade_no.clone(),
            transaction_id: p.transaction_id.clone(),
            expected_fen: Some(p.amount_fen),
            actual_fen: None,
        });
    }
    store::tradebill_upsert(
        &mut *tx,
        &store::TradebillRecord {
            bill_date: &date_s,
            row_count: out.rows,
            matched: out.matched,
            total_fen: out.total_fen,
            incident_count: out.incidents.len() as i64,
            by: &session.username,
        },
        now,
    )
    .await?;
    let entry = session
        .audit("dues_tradebill.import", "dues_tradebill", &date_s)
        .details(
            json!({"rows": out.rows, "matched": out.matched, "incidents": out.incidents.len()}),
        );
    audit::record(&mut *tx, &entry).await?;
    tx.commit().await?;
    Ok(out)
}

// ---------------------------------------------------------------- ledger

/// One line of the monthly ledger (电子台账).
#[derive(Debug, Serialize)]
pub struct LedgerLine {
    /// `bill` (a bill of the month) or `back_payment` (a payment received this month for an
    /// earlier month's bill).
    pub kind: &'static str,
    pub bill_id: i64,
    pub member_id: i64,
    pub member: String,
    pub org_unit_id: i64,
    pub org_unit: String,
    /// The bill's month.
    pub month: String,
    pub rule: String,
    pub amount_fen: i64,
    pub status: String,
    pub paid_fen: Option<i64>,
    /// RFC 3339, Beijing time.
    pub paid_at: Option<String>,
    pub transaction_id: Option<String>,
    /// Paid after the end of the bill's month (补交).
    pub late: bool,
    pub note: Option<String>,
}

pub async fn ledger(
    st: &AppState,
    scope: &OrgScope,
    unit: Option<&OrgScope>,
    month: Month,
) -> AppResult<Vec<LedgerLine>> {
    let key = month.to_string();
    let mut rows = store::ledger_bills(st.db.pool(), &key, scope, unit).await?;
    let back = store::ledger_back_payments(
        st.db.pool(),
        &key,
        month.start_ms(),
        month.end_ms(),
        scope,
        unit,
    )
    .await?;
    let n_bills = rows.len();
    rows.extend(back);
    let ids: Vec<i64> = rows.iter().map(|r| r.bill.member_id).collect();
    let names = members::store::names_by_ids(&st.db, &ids).await?;
    let units: HashMap<i64, String> = org::list(&st.db)
        .await?
        .into_iter()
        .map(|u| (u.id, u.name))
        .collect();
    Ok(rows
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let b = r.bill;
            let bill_month = Month::parse(&b.month).unwrap_or(month);
            let (paid_fen, paid_at, tid) = match r.payment {
                Some((amount, at, tid, _no)) => (Some(amount), Some(at), Some(tid)),
                None => (None, None, None),
            };
            LedgerLine {
                kind: if i < n_bills { "bill" } else { "back_payment" },
                bill_id: b.id,
                member_id: b.member_id,
                member: names.get(&b.member_id).cloned().unwrap_or_default(),
                org_unit_id: b.org_unit_id,
                org_unit: units.get(&b.org_unit_id).cloned().unwrap_or_default(),
                month: b.month,
                rule: b.rule,
                amount_fen: b.amount_fen,
                status: b.status,
                paid_fen,
                paid_at: paid_at.map(rfc3339_shanghai),
                transaction_id: tid,
                late: paid_at.is_some_and(|at| rules::is_late(bill_month, at)),
                note: b.note,
            }
        })
        .collect())
}

/// The ledger as CSV (the `csv` crate), one line per [`LedgerLine`], amounts in fen and yuan.
pub fn ledger_csv(lines: &[LedgerLine]) -> AppResult<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "kind",
        "bill_id",
        "member_id",
        "member",
        "org_unit",
        "month",
        "rule",
        "amount_fen",
        "amount_yuan",
        "status",
        "paid_fen",
        "paid_at",
        "transaction_id",
        "late",
        "note",
    ])
    .map_err(internal)?;
    for l in lines {
        w.write_record([
            l.kind.to_owned(),
            l.bill_id.to_string(),
            l.member_id.to_string(),
            l.member.clone(),
            l.org_unit.clone(),
            l.month.clone(),
            l.rule.clone(),
            l.amount_fen.to_string(),
            Fen(l.amount_fen).yuan(),
            l.status.clone(),
            l.paid_fen.map(|v| v.to_string()).unwrap_or_default(),
            l.paid_at.clone().unwrap_or_default(),
            l.transaction_id.clone().unwrap_or_default(),
            l.late.to_string(),
            l.note.clone().unwrap_or_default(),
        ])
        .map_err(internal)?;
    }
    w.into_inner().map_err(internal)
}

// ---------------------------------------------------------------- bills list

/// Roster names of `ids` (through the members store).
pub async fn member_names(st: &AppState, ids: &[i64]) -> AppResult<HashMap<i64, String>> {
    Ok(members::store::names_by_ids(&st.db, ids).await?)
}

pub async fn bills(
    st: &AppState,
    f: &BillFilter<'_>,
    limit: i64,
    offset: i64,
) -> AppResult<(Vec<BillRow>, i64, HashMap<i64, String>)> {
    let rows = store::bills_list(st.db.pool(), f, limit, offset).await?;
    let total = store::bills_count(st.db.pool(), f).await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.member_id).collect();
    let names = members::store::names_by_ids(&st.db, &ids).await?;
    Ok((rows, total, names))
}

/// Roster members in `scope` whose name contains `text` (the console's bill search). The roster
/// is read through the members store; names are not personal data the way phones are.
pub async fn members_named(st: &AppState, scope: &OrgScope, text: &str) -> AppResult<Vec<i64>> {
    Ok(members::store::in_scope(&st.db, scope)
        .await?
        .into_iter()
        .filter(|m| m.name.contains(text))
        .map(|m| m.id)
        .collect())
}

// ---------------------------------------------------------------- a member's dues profile

/// What dues know of a member: the roster's category and base (income or pension; in clear only
/// when revealed), and the exemption / voluntary amount of the dues profile.
pub struct DuesProfile {
    pub member: members::store::MemberRow,
    pub profile: Option<store::ProfileRow>,
    /// The roster has a base for this member.
    pub has_base: bool,
    /// The base in clear: only when revealed.
    pub base: Option<Fen>,
}

/// A member in the session's scope (404 otherwise) with their dues profile. Every read is in the
/// audit log like the members API's (`member.read`); `reveal` needs `RevealPersonalData` and is
/// recorded as `member.reveal` before the income is decrypted. The income is never logged.
pub async fn dues_profile(
    st: &AppState,
    session: &AdminSession,
    member_id: i64,
    reveal: bool,
) -> AppResult<DuesProfile> {
    let scope = session.org_scope(&st.db).await?;
    let member = members::service::member_in_scope(st, &scope, member_id).await?;
    let has_base = member.monthly_income_enc.is_some();
    let base = if reveal {
        session.require(crate::auth::Permission::RevealPersonalData)?;
        let entry = session
            .audit("member.reveal", "member", member.id)
            .details(json!({"fields": ["monthly_income_fen"], "via": "dues"}));
        audit::record(st.db.pool(), &entry).await?;
        decrypt_base(st, &member)?
    } else {
        let entry = session
            .audit("member.read", "member", member.id)
            .details(json!({"via": "dues"}));
        audit::record(st.db.pool(), &entry).await?;
        None
    };
    let profile = store::profile_get(st.db.pool(), member.id).await?;
    Ok(DuesProfile {
        member,
        profile,
        has_base,
        base,
    })
}

// ---------------------------------------------------------------- reminders

/// Reminders queued in one transaction at most (a notice push takes 10,000 members).
const REMINDER_BATCH: i64 = 5_000;
const DAY_MS: i64 = 24 * 3600 * 1000;

/// The reminder of an unpaid bill of `month` (Chinese), the same for every member of the month:
/// template data `thing1` the month's dues, `thing2` what to do; the mini-program's dues page.
pub fn reminder_notice(month: Month) -> crate::push::Notice {
    let label = format!("{}年{}月党费", month.year(), month.month());
    crate::push::Notice {
        kind: "dues_reminder".into(),
        title: "党费缴纳提醒".into(),
        text: format!("您的{label}尚未缴纳，请在小程序“党费”页面缴纳。"),
        url: None,
        page: Some("pages/dues/index".into()),
        data: [
            ("thing1".to_owned(), label),
            ("thing2".to_owned(), "请在小程序中缴纳党费".to_owned()),
        ]
        .into_iter()
        .collect(),
    }
}

/// `POST /api/admin/dues/months/{month}/remind`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct RemindOut {
    pub month: String,
    /// Bills whose member was sent a reminder now (each one delivery row of `push_ids`; the
    /// push report says which were sent or skipped and why).
    pub queued: usize,
    pub push_ids: Vec<i64>,
}

/// The channels of `dues_reminder_channels` this account can use with the configured template.
fn reminder_channels(st: &AppState) -> (Vec<crate::push::Channel>, Option<&str>) {
    let s = &st.settings;
    let template_id = Some(s.dues_reminder_template_id.trim()).filter(|t| !t.is_empty());
    let order = crate::push::Channel::parse_list(&s.dues_reminder_channels);
    (
        crate::push::service::usable_channels(s, &order, template_id),
        template_id,
    )
}

/// Claim the due reminders of `claim` and queue them as notice pushes, in `tx`: each claimed
/// bill's `reminded_at` and its `dues_reminders` row are written with the delivery rows, so a
/// crash leaves either nothing or all of it, and no bill is reminded twice inside the interval.
async fn queue_reminders(
    st: &AppState,
    tx: &mut Tx,
    claim: &store::ReminderClaim<'_>,
    created_by: &str,
) -> AppResult<(usize, Vec<i64>)> {
    let (channels, template_id) = reminder_channels(st);
    if channels.is_empty() {
        return Err(AppError::rejected(
            StatusCode::CONFLICT,
            "no_reminder_channel",
            "no channel can carry dues reminders: set DANGJIAN_DUES_REMINDER_TEMPLATE_ID or add custom to DANGJIAN_DUES_REMINDER_CHANNELS",
        ));
    }
    let now = st.clock.unix_ms();
    let claimed = store::claim_reminders(&mut **tx, st.db.backend(), claim, now).await?;
    let mut by_month: std::collections::BTreeMap<&str, Vec<&store::Reminded>> =
        std::collections::BTreeMap::new();
    for r in &claimed {
        by_month.entry(r.month.as_str()).or_default().push(r);
    }
    let mut push_ids = Vec::new();
    for (month, bills) in by_month {
        let notice = reminder_notice(parse_month(month)?);
        let members: Vec<i64> = bills.iter().map(|b| b.member_id).collect();
        let deliveries = crate::push::service::create_notice_in(
            st,
            tx,
            &crate::push::service::NoticeRequest {
                member_ids: &members,
                channels: &channels,
                template_id,
                notice: &notice,
                created_by,
            },
        )
        .await?;
        let by_member: HashMap<i64, (i64, i64)> = deliveries
            .iter()
            .map(|d| (d.member_id, (d.push_id, d.delivery_id)))
            .collect();
        for b in bills {
            let Some(&(push_id, delivery_id)) = by_member.get(&b.member_id) else {
                continue;
            };
            store::insert_reminder(
                &mut **tx,
                &store::NewReminder {
                    bill_id: b.bill_id,
                    member_id: b.member_id,
                    month,
                    push_id,
                    delivery_id: Some(delivery_id),
                },
                created_by,
                now,
            )
            .await?;
        }
        let mut ids: Vec<i64> = deliveries.iter().map(|d| d.push_id).collect();
        ids.sort_unstable();
        ids.dedup();
        push_ids.extend(ids);
    }
    Ok((claimed.len(), push_ids))
}

/// Remind now the members of `month` (open) with an unpaid bill in the caller's scope, except
/// bills reminded within `dues_reminder_interval_days`; audited `dues_month.remind`.
pub async fn remind(st: &AppState, session: &AdminSession, month: &str) -> AppResult<RemindOut> {
    let month = parse_month(month)?.to_string();
    let Some(row) = store::month_get(st.db.pool(), &month).await? else {
        return Err(AppError::NotFound("dues month".into()));
    };
    if row.status != "open" {
        return Err(AppError::rejected(
            StatusCode::CONFLICT,
            "month_settled",
            "the month is settled: its members are not reminded",
        ));
    }
    let scope = session.org_scope(&st.db).await?;
    let now = st.clock.unix_ms();
    let interval = st.settings.dues_reminder_interval_days as i64 * DAY_MS;
    let mut tx = st.db.begin_write().await?;
    let (queued, push_ids) = queue_reminders(
        st,
        &mut tx,
        &store::ReminderClaim {
            month: Some(&month),
            scope: &scope,
            cutoff: now - interval,
            wait_after_creation: false,
            limit: REMINDER_BATCH,
        },
        &session.username,
    )
    .await?;
    audit::record(
        &mut *tx,
        &session
            .audit("dues_month.remind", "dues_month", &month)
            .details(json!({"after": {"queued": queued, "push_ids": push_ids}})),
    )
    .await?;
    tx.commit().await?;
    Ok(RemindOut {
        month,
        queued,
        push_ids,
    })
}

/// The automatic round (`dues_reminder_auto`): every unpaid bill of an open month one interval
/// after it was made or last reminded. The number of bills reminded.
pub async fn remind_due(st: &AppState) -> AppResult<usize> {
    let interval = st.settings.dues_reminder_interval_days as i64 * DAY_MS;
    let mut total = 0;
    loop {
        let now = st.clock.unix_ms();
        let mut tx = st.db.begin_write().await?;
        let (n, _) = queue_reminders(
            st,
            &mut tx,
            &store::ReminderClaim {
                month: None,
                scope: &OrgScope::All,
                cutoff: now - interval,
                wait_after_creation: true,
                limit: REMINDER_BATCH,
            },
            crate::push::service::CREATED_BY_DUES,
        )
        .await?;
        tx.commit().await?;
        total += n;
        if (n as i64) < REMINDER_BATCH || st.shutdown.is_cancelled() {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reminder_names_the_month_and_renders_on_every_channel() {
        let n = reminder_notice(Month::new(2026, 11).unwrap());
        assert_eq!(n.title, "党费缴纳提醒");
        assert_eq!(
            n.text,
            "您的2026年11月党费尚未缴纳，请在小程序“党费”页面缴纳。"
        );
        assert_eq!(n.data["thing1"], "2026年11月党费");
        use crate::push::{templates::render_notice, Channel};
        for c in [
            Channel::Template,
            Channel::Subscribe,
            Channel::SubscribeOa,
            Channel::Custom,
        ] {
            assert!(
                render_notice(c, &n, "o1", Some("tpl"), "wxmp").is_ok(),
                "{c:?}"
            );
        }
    }
}
