//! `/api/admin/dues/...`: assessments, bills and adjustments, months, member dues profiles,
//! reconciliation and collection rates, the ledger (JSON or CSV), WeChat Pay trade bills and
//! incidents. Every route needs `Permission::ManageDues` (admins, and secretaries within their
//! org-unit subtree); settling a month and importing the trade bill are the whole
//! organisation's, so administrators only. Every write is in the audit log.

use axum::{
    extract::State,
    http::{header, HeaderMap},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{
    service::{self, parse_month},
    store::{self, BillFilter, BillRow},
};
use crate::{
    app::AppState,
    auth::{AdminSession, Permission},
    http::{
        extract::{blank_to_none, page_of, MonthKey},
        routes::AdminRoutes,
        AppJson, AppQuery, Id, ListOut,
    },
    platform::{
        audit,
        error::{AppError, AppResult},
        time::rfc3339,
    },
};

pub fn routes(r: AdminRoutes) -> AdminRoutes {
    let p = Permission::ManageDues;
    r.post("/api/admin/dues/assessments", p, assess)
        .get("/api/admin/dues/bills", p, list_bills)
        .post("/api/admin/dues/bills/{id}/adjust", p, adjust)
        .get("/api/admin/dues/months", p, months)
        .post("/api/admin/dues/months/{month}/settle", p, settle)
        .post("/api/admin/dues/months/{month}/remind", p, remind)
        .put("/api/admin/dues/members/{id}/profile", p, set_profile)
        .get("/api/admin/dues/reconciliation", p, reconciliation)
        .get("/api/admin/dues/collection", p, collection)
        .get("/api/admin/dues/ledger", p, ledger)
        .post("/api/admin/dues/tradebill", p, tradebill)
        .get("/api/admin/dues/incidents", p, incidents)
        .post("/api/admin/dues/incidents/{id}/resolve", p, resolve)
}

// ---------------------------------------------------------------- assessments and bills

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct AssessIn {
    #[schemars(schema_with = "crate::http::doc::month")]
    month: String,
}

/// `POST /api/admin/dues/assessments {"month":"2026-11"}` → 200 with the counts (a second run
/// creates nothing: `created` 0, `existing` = the eligible members).
async fn assess(
    State(st): State<AppState>,
    session: AdminSession,
    AppJson(body): AppJson<AssessIn>,
) -> AppResult<AppJson<service::AssessOut>> {
    Ok(AppJson(service::assess(&st, &session, &body.month).await?))
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct BillOut {
    pub id: i64,
    pub member_id: i64,
    pub member: String,
    pub month: String,
    pub org_unit_id: i64,
    pub amount_fen: i64,
    /// What the rule says (differs from `amount_fen` when voluntary, exempt or adjusted).
    pub standard_fen: i64,
    /// The rule applied (`employed_1_5pct`, `student_flat`, `voluntary`, `exempt`, `adjusted`, ...).
    pub rule: String,
    /// The rule the roster's category and base gave.
    pub standard_rule: String,
    pub status: String,
    pub paid_fen: Option<i64>,
    pub paid_at: Option<String>,
    pub note: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

fn bill_out(b: BillRow, member: String) -> BillOut {
    BillOut {
        id: b.id,
        member_id: b.member_id,
        member,
        month: b.month,
        org_unit_id: b.org_unit_id,
        amount_fen: b.amount_fen,
        standard_fen: b.standard_fen,
        rule: b.rule,
        standard_rule: b.standard_rule,
        status: b.status,
        paid_fen: b.paid_fen,
        paid_at: b.paid_at.map(rfc3339),
        note: b.note,
        created_at: rfc3339(b.created_at),
        updated_at: rfc3339(b.updated_at),
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct BillsQuery {
    #[serde(default)]
    #[schemars(schema_with = "crate::http::doc::query_month")]
    month: Option<String>,
    org_unit: Option<String>,
    #[schemars(extend("enum" = ["unpaid", "paying", "paid", "exempt"]))]
    status: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "crate::http::doc::page")]
    page: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "crate::http::doc::page_size_500")]
    page_size: Option<String>,
}

const BILL_STATUSES: [&str; 4] = ["unpaid", "paying", "paid", "exempt"];

/// `GET /api/admin/dues/bills?month=&org_unit=&status=&page=&page_size=` (secretaries: their
/// subtree; `org_unit` by id or name, with its sub-units).
async fn list_bills(
    State(st): State<AppState>,
    session: AdminSession,
    AppQuery(q): AppQuery<BillsQuery>,
) -> AppResult<AppJson<ListOut<BillOut>>> {
    let month = blank_to_none(&q.month)
        .map(|m| parse_month(m).map(|m| m.to_string()))
        .transpose()?;
    let status = blank_to_none(&q.status);
    if status.is_some_and(|s| !BILL_STATUSES.contains(&s)) {
        return Err(AppError::Validation(
            "status: unpaid, paying, paid or exempt".into(),
        ));
    }
    let page = page_of(&q.page, &q.page_size, 500)?;
    let scope = session.org_scope(&st.db).await?;
    let unit = service::unit_filter(&st, &scope, blank_to_none(&q.org_unit)).await?;
    let filter = BillFilter {
        month: month.as_deref(),
        status,
        scope: &scope,
        unit: unit.as_ref(),
        members: None,
    };
    let (rows, total, names) = service::bills(&st, &filter, page.size, page.offset()).await?;
    Ok(AppJson(ListOut {
        items: rows
            .into_iter()
            .map(|b| {
                let name = names.get(&b.member_id).cloned().unwrap_or_default();
                bill_out(b, name)
            })
            .collect(),
        page: page.number,
        page_size: page.size,
        total,
    }))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct AdjustIn {
    #[schemars(range(min = 0, max = 1000000))]
    amount_fen: i64,
    #[schemars(length(min = 1, max = 200), regex(pattern = r"\S"))]
    reason: String,
}

/// `POST /api/admin/dues/bills/{id}/adjust {"amount_fen","reason"}` (audited; not on a paid
/// bill; 0 makes the bill exempt).
async fn adjust(
    State(st): State<AppState>,
    session: AdminSession,
    Id(id): Id,
    AppJson(body): AppJson<AdjustIn>,
) -> AppResult<AppJson<BillOut>> {
    let bill = service::adjust(&st, &session, id, body.amount_fen, &body.reason).await?;
    let names = service::member_names(&st, &[bill.member_id]).await?;
    let name = names.get(&bill.member_id).cloned().unwrap_or_default();
    Ok(AppJson(bill_out(bill, name)))
}

// ---------------------------------------------------------------- months and profiles

#[derive(Debug, Serialize, schemars::JsonSchema)]
struct MonthOut {
    month: String,
    status: String,
    opened_at: String,
    opened_by: String,
    settled_at: Option<String>,
    settled_by: Option<String>,
}

fn month_out(m: store::MonthRow) -> MonthOut {
    MonthOut {
        month: m.month,
        status: m.status,
        opened_at: rfc3339(m.opened_at),
        opened_by: m.opened_by,
        settled_at: m.settled_at.map(rfc3339),
        settled_by: m.settled_by,
    }
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
struct MonthsOut {
    months: Vec<MonthOut>,
}

async fn months(State(st): State<AppState>) -> AppResult<AppJson<MonthsOut>> {
    Ok(AppJson(MonthsOut {
        months: store::months_list(st.db.pool())
            .await?
            .into_iter()
            .map(month_out)
            .collect(),
    }))
}

/// `POST /api/admin/dues/months/{month}/settle`: no new bills afterwards; changes only by
/// adjustments (administrators only).
async fn settle(
    State(st): State<AppState>,
    session: AdminSession,
    MonthKey(month): MonthKey,
) -> AppResult<AppJson<MonthOut>> {
    Ok(AppJson(month_out(
        service::settle(&st, &session, &month).await?,
    )))
}

/// `POST /api/admin/dues/months/{month}/remind`: remind now the members of an open month with an
/// unpaid bill in the caller's scope (not those reminded within the interval) → `{"month",
/// "queued","push_ids"}`; audited.
async fn remind(
    State(st): State<AppState>,
    session: AdminSession,
    MonthKey(month): MonthKey,
) -> AppResult<AppJson<service::RemindOut>> {
    Ok(AppJson(service::remind(&st, &session, &month).await?))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct ProfileIn {
    /// A hardship exemption and its reason; null removes it.
    #[serde(default)]
    #[schemars(length(max = 200))]
    exempt_reason: Option<String>,
    /// A voluntary monthly amount above the rule; null removes it.
    #[serde(default)]
    #[schemars(range(min = 1, max = 100000))]
    voluntary_fen: Option<i64>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
struct ProfileOut {
    member_id: i64,
    exempt_reason: Option<String>,
    voluntary_fen: Option<i64>,
    updated_at: String,
    updated_by: String,
}

/// `PUT /api/admin/dues/members/{id}/profile {"exempt_reason","voluntary_fen"}`: used by the
/// next assessments (existing bills change only by adjustment).
async fn set_profile(
    State(st): State<AppState>,
    session: AdminSession,
    Id(id): Id,
    AppJson(body): AppJson<ProfileIn>,
) -> AppResult<AppJson<ProfileOut>> {
    let p = service::set_profile(
        &st,
        &session,
        id,
        body.exempt_reason.as_deref(),
        body.voluntary_fen,
    )
    .await?;
    Ok(AppJson(ProfileOut {
        member_id: p.member_id,
        exempt_reason: p.exempt_reason,
        voluntary_fen: p.voluntary_fen,
        updated_at: rfc3339(p.updated_at),
        updated_by: p.updated_by,
    }))
}

// ---------------------------------------------------------------- reconciliation and ledgers

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct MonthQuery {
    #[serde(default)]
    #[schemars(schema_with = "crate::http::doc::month", required)]
    month: Option<String>,
    org_unit: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "crate::http::doc::json_or_csv")]
    format: Option<String>,
}

fn required_month(q: &MonthQuery) -> AppResult<super::rules::Month> {
    let m = blank_to_none(&q.month)
        .ok_or_else(|| AppError::Validation("month is required (YYYY-MM)".into()))?;
    parse_month(m)
}

/// `GET /api/admin/dues/reconciliation?month=&org_unit=` → `bill_count`, `paid_count`,
/// `paid_total_fen`, `unpaid_count`, `incidents`, … and the collection per org unit.
async fn reconciliation(
    State(st): State<AppState>,
    session: AdminSession,
    AppQuery(q): AppQuery<MonthQuery>,
) -> AppResult<AppJson<service::Reconciliation>> {
    let month = required_month(&q)?;
    let scope = session.org_scope(&st.db).await?;
    let unit = service::unit_filter(&st, &scope, blank_to_none(&q.org_unit)).await?;
    Ok(AppJson(
        service::reconciliation(&st, &scope, unit.as_ref(), month).await?,
    ))
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
struct CollectionOut {
    month: String,
    collection_rate: Option<f64>,
    org_units: Vec<service::UnitCollection>,
}

/// `GET /api/admin/dues/collection?month=`: the collection rate per org unit (statistics).
async fn collection(
    State(st): State<AppState>,
    session: AdminSession,
    AppQuery(q): AppQuery<MonthQuery>,
) -> AppResult<AppJson<CollectionOut>> {
    let month = required_month(&q)?;
    let scope = session.org_scope(&st.db).await?;
    let unit = service::unit_filter(&st, &scope, blank_to_none(&q.org_unit)).await?;
    let r = service::reconciliation(&st, &scope, unit.as_ref(), month).await?;
    Ok(AppJson(CollectionOut {
        month: r.month,
        collection_rate: r.collection_rate,
        org_units: r.collection,
    }))
}

#[derive(Debug, Serialize)]
struct LedgerOut {
    month: String,
    lines: Vec<service::LedgerLine>,
}

/// `GET /api/admin/dues/ledger?month=&org_unit=&format=json|csv` (or `Accept: text/csv`): the
/// month's bills per member with payment and paid-at, and the payments received this month for
/// earlier months (`kind: back_payment`, `late: true`).
async fn ledger(
    State(st): State<AppState>,
    session: AdminSession,
    headers: HeaderMap,
    AppQuery(q): AppQuery<MonthQuery>,
) -> AppResult<Response> {
    let month = required_month(&q)?;
    let csv = match blank_to_none(&q.format) {
        Some("csv") => true,
        Some("json") => false,
        Some(_) => return Err(AppError::Validation("format: json or csv".into())),
        None => headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/csv")),
    };
    let scope = session.org_scope(&st.db).await?;
    let unit = service::unit_filter(&st, &scope, blank_to_none(&q.org_unit)).await?;
    let lines = service::ledger(&st, &scope, unit.as_ref(), month).await?;
    let entry = session
        .audit("dues_ledger.read", "dues_month", month)
        .details(json!({"org_unit": q.org_unit, "format": if csv { "csv" } else { "json" }, "lines": lines.len()}));
    audit::record(st.db.pool(), &entry).await?;
    if !csv {
        return Ok(AppJson(LedgerOut {
            month: month.to_string(),
            lines,
        })
        .into_response());
    }
    // A BOM so spreadsheet programs read the Chinese names as UTF-8.
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend(service::ledger_csv(&lines)?);
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"dues-ledger-{month}.csv\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct TradebillIn {
    #[schemars(schema_with = "crate::http::doc::date")]
    date: String,
}

/// `POST /api/admin/dues/tradebill {"date":"2026-11-30"}`: fetch WeChat Pay's trade bill of
/// that day and compare it with our payments (differences become incidents).
async fn tradebill(
    State(st): State<AppState>,
    session: AdminSession,
    AppJson(body): AppJson<TradebillIn>,
) -> AppResult<AppJson<service::TradebillOut>> {
    Ok(AppJson(
        service::tradebill(&st, &session, &body.date).await?,
    ))
}

// ---------------------------------------------------------------- incidents

#[derive(Debug, Serialize, schemars::JsonSchema)]
struct IncidentOut {
    id: i64,
    kind: String,
    status: String,
    bill_id: Option<i64>,
    org_unit_id: Option<i64>,
    out_trade_no: Option<String>,
    transaction_id: Option<String>,
    expected_fen: Option<i64>,
    actual_fen: Option<i64>,
    occurrences: i64,
    details: Value,
    resolved_by: Option<String>,
    resolution: Option<String>,
    resolved_at: Option<String>,
    created_at: String,
    updated_at: String,
}

fn incident_out(i: store::IncidentRow) -> IncidentOut {
    IncidentOut {
        id: i.id,
        kind: i.kind,
        status: i.status,
        bill_id: i.bill_id,
        org_unit_id: i.org_unit_id,
        out_trade_no: i.out_trade_no,
        transaction_id: i.transaction_id,
        expected_fen: i.expected_fen,
        actual_fen: i.actual_fen,
        occurrences: i.occurrences,
        details: serde_json::from_str(&i.details).unwrap_or(Value::Null),
        resolved_by: i.resolved_by,
        resolution: i.resolution,
        resolved_at: i.resolved_at.map(rfc3339),
        created_at: rfc3339(i.created_at),
        updated_at: rfc3339(i.updated_at),
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct IncidentsQuery {
    #[schemars(extend("enum" = ["open", "resolved"]))]
    status: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "crate::http::doc::page")]
    page: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "crate::http::doc::page_size_200")]
    page_size: Option<String>,
}

/// `GET /api/admin/dues/incidents?status=open|resolved&page=`: what a person must look at
/// (incidents not tied to an org unit, e.g. an unknown order, only for administrators).
async fn incidents(
    State(st): State<AppState>,
    session: AdminSession,
    AppQuery(q): AppQuery<IncidentsQuery>,
) -> AppResult<AppJson<ListOut<IncidentOut>>> {
    let status = blank_to_none(&q.status);
    if status.is_some_and(|s| s != "open" && s != "resolved") {
        return Err(AppError::Validation("status: open or resolved".into()));
    }
    let page = page_of(&q.page, &q.page_size, 200)?;
    let scope = session.org_scope(&st.db).await?;
    let rows =
        store::incidents_list(st.db.pool(), &scope, status, page.size, page.offset()).await?;
    let total = store::incidents_count(st.db.pool(), &scope, status).await?;
    Ok(AppJson(ListOut {
        items: rows.into_iter().map(incident_out).collect(),
        page: page.number,
        page_size: page.size,
        total,
    }))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct ResolveIn {
    #[schemars(length(min = 1, max = 500), regex(pattern = r"\S"))]
    resolution: String,
}

/// `POST /api/admin/dues/incidents/{id}/resolve {"resolution"}` (audited).
async fn resolve(
    State(st): State<AppState>,
    session: AdminSession,
    Id(id): Id,
    AppJson(body): AppJson<ResolveIn>,
) -> AppResult<AppJson<IncidentOut>> {
    Ok(AppJson(incident_out(
        service::resolve_incident(&st, &session, id, &body.resolution).await?,
    )))
}
