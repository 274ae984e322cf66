//! `/admin/dues`: the treasurer's monthly cycle in the console — the months with their state and
//! reconciliation numbers, opening (assessing) and settling a month, the bills with filters and
//! adjustments, a member's dues profile (income masked; a reveal is audited), the collection rate
//! per org unit, incidents and the trade-bill comparison, and the printable monthly ledger
//! (电子台账). Everything goes through `dues::service` with `Permission::ManageDues`, as the admin
//! API does; secretaries see their subtree only. Money is shown with `Fen::yuan` and typed in yuan
//! (`Fen::parse_yuan`).

use std::collections::{BTreeMap, HashMap};

use axum::{
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::Response,
    Form,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{
    rules::{self, Fen, Month, MonthPhase},
    service::{self, parse_month},
    store::{self, BillFilter},
};
use crate::{
    app::AppState,
    auth::{ConsoleSession, Permission},
    http::console::{self, field_errors, human, pager, redirect_error, redirect_flash},
    http::{extract::blank_to_none, page_of, Id},
    platform::{
        audit,
        error::{AppError, AppResult},
        org::{self, OrgScope},
        time::{local_minute, parse_rfc3339},
    },
};

const NAV: &str = "dues";
/// Months shown on the cycle page (two years).
const MONTHS_SHOWN: usize = 24;

// ---------------------------------------------------------------- labels

fn bill_status_label(s: &str) -> &'static str {
    match s {
        "unpaid" => "未缴",
        "paying" => "支付中",
        "paid" => "已缴",
        "exempt" => "免缴",
        _ => "未知",
    }
}

fn phase_label(p: MonthPhase) -> &'static str {
    match p {
        MonthPhase::Open => "已开账",
        MonthPhase::Collecting => "收缴中",
        MonthPhase::Settled => "已结账",
    }
}

fn rule_label(code: &str) -> &'static str {
    match code {
        "employed_0_5pct" => "在职 0.5%",
        "employed_1pct" => "在职 1%",
        "employed_1_5pct" => "在职 1.5%",
        "employed_2pct" => "在职 2%",
        "retired_0_5pct" => "离退休 0.5%",
        "retired_1pct" => "离退休 1%",
        "student_flat" => "学生 0.20 元",
        "unemployed_flat" => "无固定收入 0.20 元",
        "low_income_flat" => "低收入 0.20 元",
        "voluntary" => "自愿多缴",
        "exempt" => "免缴",
        "adjusted" => "人工调整",
        _ => "其他",
    }
}

fn category_label(c: &str) -> &'static str {
    match c {
        "employed" => "在职",
        "retired" => "离退休",
        "student" => "学生",
        "unemployed" => "无固定收入",
        "other" => "低收入及其他",
        _ => "未知",
    }
}

fn incident_label(kind: &str) -> &'static str {
    match kind {
        "unknown_order" => "未知订单",
        "merchant_mismatch" => "商户号不符",
        "app_mismatch" => "AppID 不符",
        "out_trade_no_mismatch" => "订单号不符",
        "amount_mismatch" => "金额不符",
        "currency_mismatch" => "币种不符",
        "duplicate_payment" => "重复支付",
        "refunded" => "已在微信支付退款",
        "tradebill_amount_mismatch" => "对账单金额不符",
        "tradebill_missing_ours" => "对账单有、本系统无",
        "tradebill_missing_wechat" => "本系统有、对账单无",
        _ => "其他异常",
    }
}

/// The services' field errors in Chinese, keyed by the form's field names (amounts are typed in
/// yuan, so `amount_fen` is the form's `amount`).
fn zh_errors(e: &AppError) -> BTreeMap<String, String> {
    field_errors(e)
        .into_iter()
        .map(|(field, text)| {
            let (field, zh) = match field.as_str() {
                "amount_fen" => ("amount", "金额应在 0 至 10000.00 元之间"),
                "reason" => ("reason", "请填写调整原因（不超过 200 字）"),
                "exempt_reason" => ("exempt_reason", "免缴须填写原因（不超过 200 字）"),
                "voluntary_fen" => ("voluntary", "自愿多缴金额应在 0.01 至 1000.00 元之间"),
                "resolution" => ("resolution", "请填写处理结果（不超过 500 字）"),
                _ => return (field, text),
            };
            (field.to_owned(), zh.to_owned())
        })
        .collect()
}

#[derive(Serialize)]
struct UnitChoice {
    id: i64,
    name: String,
}

/// The org units a session may pick in a filter.
async fn unit_choices(st: &AppState, scope: &OrgScope) -> AppResult<Vec<UnitChoice>> {
    Ok(org::list(&st.db)
        .await?
        .into_iter()
        .filter(|u| scope.contains(u.id))
        .map(|u| UnitChoice {
            id: u.id,
            name: u.name,
        })
        .collect())
}

async fn unit_names(st: &AppState) -> AppResult<HashMap<i64, String>> {
    Ok(org::list(&st.db)
        .await?
        .into_iter()
        .map(|u| (u.id, u.name))
        .collect())
}

fn month_or_now(st: &AppState, m: &Option<String>) -> AppResult<Month> {
    match blank_to_none(m) {
        Some(m) => parse_month(m),
        None => Ok(service::now_month(st)),
    }
}

// ---------------------------------------------------------------- the months

#[derive(Serialize)]
struct MonthRow {
    month: String,
    label: String,
    phase: &'static str,
    phase_label: &'static str,
    bill_count: i64,
    paid_count: i64,
    paid_total: String,
    unpaid_count: i64,
    incidents: i64,
    rate: String,
    settled: bool,
}

/// `GET /admin/dues`: the months (newest first) with their state and reconciliation numbers in
/// the session's scope, the form that opens a month, and settling (administrators).
pub async fn months(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
) -> AppResult<Response> {
    session.require(Permission::ManageDues)?;
    let scope = session.org_scope(&st.db).await?;
    let mut rows = Vec::new();
    for m in store::months_list(st.db.pool())
        .await?
        .into_iter()
        .take(MONTHS_SHOWN)
    {
        let month = parse_month(&m.month)?;
        let r = service::reconciliation(&st, &scope, None, month).await?;
        let phase = MonthPhase::of(&m.status, r.paid_count);
        rows.push(MonthRow {
            month: r.month,
            label: month.label_zh(),
            phase: phase.code(),
            phase_label: phase_label(phase),
            bill_count: r.bill_count,
            paid_count: r.paid_count,
            paid_total: Fen(r.paid_total_fen).yuan(),
            unpaid_count: r.unpaid_count,
            incidents: r.incidents,
            rate: rules::percent_label(rules::collection_rate_permille(
                r.paid_count,
                r.paid_count + r.unpaid_count,
            )),
            settled: m.status == "settled",
        });
    }
    console::page(
        &headers,
        "console/dues/months.html",
        &session.chrome(NAV),
        minijinja::context! {
            tab => "months",
            rows,
            this_month => service::now_month(&st).to_string(),
            is_admin => scope == OrgScope::All,
        },
    )
}

#[derive(Debug, Default, Deserialize)]
pub struct MonthForm {
    #[serde(default)]
    pub month: String,
}

/// `POST /admin/dues/assess {month}`: open the month — one bill per eligible member in scope,
/// idempotent (a second run makes none and says so).
pub async fn assess(
    State(st): State<AppState>,
    session: ConsoleSession,
    Form(form): Form<MonthForm>,
) -> AppResult<Response> {
    session.require(Permission::ManageDues)?;
    match service::assess(&st, &session, &form.month).await {
        Ok(out) => {
            let label = parse_month(&out.month)?.label_zh();
            let mut text = format!(
                "{label}已开账：新生成 {} 张账单（合计 {} 元），已有 {} 张未变",
                out.created,
                Fen(out.created_total_fen).yuan(),
                out.existing
            );
            if !out.skipped.is_empty() {
                text.push_str(&format!(
                    "；{} 人未生成（未登记收入或尚未入党）",
                    out.skipped.len()
                ));
            }
            Ok(redirect_flash(
                &format!("/admin/dues/bills?month={}", out.month),
                true,
                &text,
            ))
        }
        Err(e) => redirect_error("/admin/dues", e),
    }
}

/// `POST /admin/dues/months/{month}/settle` (administrators; the page asks for confirmation).
pub async fn settle(
    State(st): State<AppState>,
    session: ConsoleSession,
    Path(month): Path<String>,
) -> AppResult<Response> {
    session.require(Permission::ManageDues)?;
    match service::settle(&st, &session, &month).await {
        Ok(m) => Ok(redirect_flash(
            "/admin/dues",
            true,
            &format!("{}已结账", parse_month(&m.month)?.label_zh()),
        )),
        Err(e) => redirect_error("/admin/dues", e),
    }
}

// ---------------------------------------------------------------- bills

#[derive(Debug, Default, Deserialize)]
pub struct BillsQuery {
    #[serde(default)]
    pub month: Option<String>,
    #[serde(default)]
    pub org_unit: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub q: Option<String>,
    #[serde(default)]
    pub page: Option<String>,
}

#[derive(Serialize)]
struct BillRow {
    id: i64,
    member_id: i64,
    member: String,
    org_unit: String,
    month: String,
    amount: String,
    standard: Option<String>,
    rule: &'static str,
    status: String,
    status_label: &'static str,
    paid: Option<String>,
    paid_at: Option<String>,
    note: Option<String>,
}

fn bill_row(
    b: store::BillRow,
    names: &HashMap<i64, String>,
    units: &HashMap<i64, String>,
) -> BillRow {
    BillRow {
        id: b.id,
        member_id: b.member_id,
        member: names.get(&b.member_id).cloned().unwrap_or_default(),
        org_unit: units.get(&b.org_unit_id).cloned().unwrap_or_default(),
        month: b.month,
        amount: Fen(b.amount_fen).yuan(),
        standard: (b.standard_fen != b.amount_fen).then(|| Fen(b.standard_fen).yuan()),
        rule: rule_label(&b.rule),
        status_label: bill_status_label(&b.status),
        status: b.status,
        paid: b.paid_fen.map(|f| Fen(f).yuan()),
        paid_at: b.paid_at.map(local_minute),
        note: b.note,
    }
}

const BILL_STATUSES: [(&str, &str); 4] = [
    ("unpaid", "未缴"),
    ("paying", "支付中"),
    ("paid", "已缴"),
    ("exempt", "免缴"),
];

/// `GET /admin/dues/bills?month=&org_unit=&status=&q=&page=`: the bills in scope, filtered by
/// month, org unit (with its sub-units), status and member name.
pub async fn bills(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
    Query(q): Query<BillsQuery>,
) -> AppResult<Response> {
    session.require(Permission::ManageDues)?;
    let month = blank_to_none(&q.month)
        .map(|m| parse_month(m).map(|m| m.to_string()))
        .transpose()?;
    let status = blank_to_none(&q.status).filter(|s| BILL_STATUSES.iter().any(|(k, _)| k == s));
    let page = page_of(&q.page, &None, 100)?;
    let scope = session.org_scope(&st.db).await?;
    let unit = service::unit_filter(&st, &scope, blank_to_none(&q.org_unit)).await?;
    let search = blank_to_none(&q.q).map(str::trim);
    let members = match search {
        Some(text) => Some(service::members_named(&st, &scope, text).await?),
        None => None,
    };
    let filter = BillFilter {
        month: month.as_deref(),
        status,
        scope: &scope,
        unit: unit.as_ref(),
        members: members.as_deref(),
    };
    let (items, total, names) = service::bills(&st, &filter, page.size, page.offset()).await?;
    let units = unit_names(&st).await?;
    let rows: Vec<BillRow> = items
        .into_iter()
        .map(|b| bill_row(b, &names, &units))
        .collect();
    let (month_s, unit_s, status_s, q_s) = (
        month.clone().unwrap_or_default(),
        q.org_unit.clone().unwrap_or_default(),
        status.unwrap_or_default().to_owned(),
        search.unwrap_or_default().to_owned(),
    );
    let pager = pager(
        page,
        total,
        &[
            ("month", &month_s),
            ("org_unit", &unit_s),
            ("status", &status_s),
            ("q", &q_s),
        ],
    );
    console::page(
        &headers,
        "console/dues/bills.html",
        &session.chrome(NAV),
        minijinja::context! {
            tab => "bills",
            rows,
            pager,
            units => unit_choices(&st, &scope).await?,
            statuses => BILL_STATUSES,
            month => month_s,
            org_unit => unit_s,
            status => status_s,
            q => q_s,
        },
    )
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct AdjustForm {
    /// Yuan, as typed.
    #[serde(default)]
    pub amount: String,
    #[serde(default)]
    pub reason: String,
}

#[derive(Serialize)]
struct Adjustment {
    at: String,
    by: String,
    before: String,
    after: String,
    reason: String,
}

/// A bill in the session's scope, or "not found".
async fn bill_in_scope(
    st: &AppState,
    session: &ConsoleSession,
    id: i64,
) -> AppResult<store::BillRow> {
    let scope = session.org_scope(&st.db).await?;
    match store::bill_get(st.db.pool(), id).await? {
        Some(b) if scope.contains(b.org_unit_id) => Ok(b),
        _ => Err(AppError::NotFound("bill".into())),
    }
}

async fn bill_page(
    st: &AppState,
    headers: &HeaderMap,
    session: &ConsoleSession,
    bill: store::BillRow,
    form: &AdjustForm,
    errors: BTreeMap<String, String>,
) -> AppResult<Response> {
    let names = service::member_names(st, &[bill.member_id]).await?;
    let units = unit_names(st).await?;
    let settled = store::month_get(st.db.pool(), &bill.month)
        .await?
        .is_some_and(|m| m.status == "settled");
    let adjustments: Vec<Adjustment> = store::adjustments_of_bill(st.db.pool(), bill.id)
        .await?
        .into_iter()
        .map(|a| Adjustment {
            at: local_minute(a.created_at),
            by: a.actor,
            before: Fen(a.old_amount_fen).yuan(),
            after: Fen(a.new_amount_fen).yuan(),
            reason: a.reason,
        })
        .collect();
    let row = bill_row(bill, &names, &units);
    console::form_page(
        headers,
        "console/dues/bill.html",
        &session.chrome(NAV),
        minijinja::context! { bill => row, form, errors, settled, adjustments },
        &errors,
    )
}

/// `GET /admin/dues/bills/{id}`: the bill, its adjustments and the adjustment form.
pub async fn bill(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
    Id(id): Id,
) -> AppResult<Response> {
    session.require(Permission::ManageDues)?;
    let bill = bill_in_scope(&st, &session, id).await?;
    let form = AdjustForm {
        amount: Fen(bill.amount_fen).yuan(),
        reason: String::new(),
    };
    bill_page(&st, &headers, &session, bill, &form, BTreeMap::new()).await
}

/// `POST /admin/dues/bills/{id}/adjust {amount (yuan), reason}`: a refused adjustment shows the
/// form again with the error next to its field and changes nothing.
pub async fn adjust(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
    Id(id): Id,
    Form(form): Form<AdjustForm>,
) -> AppResult<Response> {
    session.require(Permission::ManageDues)?;
    let bill = bill_in_scope(&st, &session, id).await?;
    let Some(amount) = Fen::parse_yuan(&form.amount) else {
        let errors = BTreeMap::from([(
            "amount".to_owned(),
            "请输入金额（元），如 12.50，最多两位小数".to_owned(),
        )]);
        return bill_page(&st, &headers, &session, bill, &form, errors).await;
    };
    match service::adjust(&st, &session, id, amount.get(), &form.reason).await {
        Ok(b) => Ok(redirect_flash(
            &format!("/admin/dues/bills/{}", b.id),
            true,
            &format!("账单已调整为 {} 元", Fen(b.amount_fen).yuan()),
        )),
        Err(e) if e.status().is_client_error() => {
            let errors = match e {
                AppError::Validation(_) => zh_errors(&e),
                _ => BTreeMap::from([(String::new(), human(&e))]),
            };
            bill_page(&st, &headers, &session, bill, &form, errors).await
        }
        Err(e) => Err(e),
    }
}

// ---------------------------------------------------------------- a member's dues profile

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct ProfileForm {
    /// Empty: no exemption.
    #[serde(default)]
    pub exempt_reason: String,
    /// Yuan; empty: no voluntary amount.
    #[serde(default)]
    pub voluntary: String,
}

async fn member_page(
    st: &AppState,
    headers: &HeaderMap,
    session: &ConsoleSession,
    p: service::DuesProfile,
    form: Option<ProfileForm>,
    errors: BTreeMap<String, String>,
) -> AppResult<Response> {
    let form = form.unwrap_or_else(|| ProfileForm {
        exempt_reason: p
            .profile
            .as_ref()
            .and_then(|x| x.exempt_reason.clone())
            .unwrap_or_default(),
        voluntary: p
            .profile
            .as_ref()
            .and_then(|x| x.voluntary_fen)
            .map(|v| Fen(v).yuan())
            .unwrap_or_default(),
    });
    let names = HashMap::from([(p.member.id, p.member.name.clone())]);
    let units = unit_names(st).await?;
    let bills: Vec<BillRow> = store::bills_of_member(st.db.pool(), p.member.id)
        .await?
        .into_iter()
        .take(24)
        .map(|b| bill_row(b, &names, &units))
        .collect();
    console::form_page(
        headers,
        "console/dues/member.html",
        &session.chrome(NAV),
        minijinja::context! {
            member => json!({
                "id": p.member.id,
                "name": p.member.name,
                "org_unit": p.member.org_unit,
                "category": category_label(&p.member.category),
                "party_status": if p.member.party_status == "probationary" { "预备党员" } else { "正式党员" },
            }),
            has_base => p.has_base,
            base => p.base.map(Fen::yuan),
            can_reveal => session.can(Permission::RevealPersonalData),
            updated => p.profile.as_ref().map(|x| format!("{} · {}", local_minute(x.updated_at), x.updated_by)),
            form,
            errors,
            bills,
        },
        &errors,
    )
}

/// `GET /admin/dues/members/{id}`: category, base (masked), exemption, voluntary amount, bills.
pub async fn member(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
    Id(id): Id,
) -> AppResult<Response> {
    session.require(Permission::ManageDues)?;
    let p = service::dues_profile(&st, &session, id, false).await?;
    member_page(&st, &headers, &session, p, None, BTreeMap::new()).await
}

/// `POST /admin/dues/members/{id}/reveal`: the same page with the base in clear (needs
/// `RevealPersonalData`; audited before it is shown; a POST, so no link or prefetch reveals it).
pub async fn reveal(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
    Id(id): Id,
) -> AppResult<Response> {
    session.require(Permission::ManageDues)?;
    let p = service::dues_profile(&st, &session, id, true).await?;
    member_page(&st, &headers, &session, p, None, BTreeMap::new()).await
}

/// The profile form again with its errors (nothing was written).
async fn profile_refused(
    st: &AppState,
    headers: &HeaderMap,
    session: &ConsoleSession,
    id: i64,
    form: ProfileForm,
    errors: BTreeMap<String, String>,
) -> AppResult<Response> {
    let p = service::dues_profile(st, session, id, false).await?;
    member_page(st, headers, session, p, Some(form), errors).await
}

/// `POST /admin/dues/members/{id}/profile {exempt_reason, voluntary}`: as
/// `PUT /api/admin/dues/members/{id}/profile`; used by the next assessments (existing bills
/// change only by adjustment).
pub async fn set_profile(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
    Id(id): Id,
    Form(form): Form<ProfileForm>,
) -> AppResult<Response> {
    session.require(Permission::ManageDues)?;
    let reason = Some(form.exempt_reason.trim()).filter(|r| !r.is_empty());
    let voluntary = match form.voluntary.trim() {
        "" => None,
        v => match Fen::parse_yuan(v) {
            Some(f) => Some(f.get()),
            None => {
                let errors = BTreeMap::from([(
                    "voluntary".to_owned(),
                    "请输入金额（元），如 50.00，最多两位小数".to_owned(),
                )]);
                return profile_refused(&st, &headers, &session, id, form, errors).await;
            }
        },
    };
    match service::set_profile(&st, &session, id, reason, voluntary).await {
        Ok(_) => Ok(redirect_flash(
            &format!("/admin/dues/members/{id}"),
            true,
            "党费设置已保存，下次开账时生效",
        )),
        Err(e @ AppError::Validation(_)) => {
            profile_refused(&st, &headers, &session, id, form, zh_errors(&e)).await
        }
        Err(e) => Err(e),
    }
}

// ---------------------------------------------------------------- collection

#[derive(Debug, Default, Deserialize)]
pub struct MonthQuery {
    #[serde(default)]
    pub month: Option<String>,
    #[serde(default)]
    pub org_unit: Option<String>,
}

#[derive(Serialize)]
struct UnitRow {
    org_unit_id: i64,
    org_unit: String,
    bill_count: i64,
    due_count: i64,
    paid_count: i64,
    due_total: String,
    paid_total: String,
    rate: String,
    /// 0–100, for the bar.
    pct: i64,
}

fn unit_row(
    org_unit_id: i64,
    org_unit: String,
    (bill_count, due_count, paid_count): (i64, i64, i64),
    (due_fen, paid_fen): (i64, i64),
) -> UnitRow {
    let permille = rules::collection_rate_permille(paid_count, due_count);
    UnitRow {
        org_unit_id,
        org_unit,
        bill_count,
        due_count,
        paid_count,
        due_total: Fen(due_fen).yuan(),
        paid_total: Fen(paid_fen).yuan(),
        rate: rules::percent_label(permille),
        pct: permille.unwrap_or(0) / 10,
    }
}

/// `GET /admin/dues/collection?month=`: the collection rate per org unit (as
/// `GET /api/admin/dues/collection`), with the total of the session's scope.
pub async fn collection(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
    Query(q): Query<MonthQuery>,
) -> AppResult<Response> {
    session.require(Permission::ManageDues)?;
    let month = month_or_now(&st, &q.month)?;
    let scope = session.org_scope(&st.db).await?;
    let r = service::reconciliation(&st, &scope, None, month).await?;
    let rows: Vec<UnitRow> = r
        .collection
        .iter()
        .map(|u| {
            unit_row(
                u.org_unit_id,
                u.org_unit.clone(),
                (u.bill_count, u.due_count, u.paid_count),
                (u.due_total_fen, u.paid_total_fen),
            )
        })
        .collect();
    let total = unit_row(
        0,
        "合计".into(),
        (r.bill_count, r.paid_count + r.unpaid_count, r.paid_count),
        (r.due_total_fen, r.paid_total_fen),
    );
    let phase = MonthPhase::of(&r.month_status, r.paid_count);
    console::page(
        &headers,
        "console/dues/collection.html",
        &session.chrome(NAV),
        minijinja::context! {
            tab => "collection",
            month => month.to_string(),
            label => month.label_zh(),
            assessed => r.month_status != "none",
            phase_label => phase_label(phase),
            incidents => r.incidents,
            rows,
            total,
        },
    )
}

// ---------------------------------------------------------------- incidents and trade bills

#[derive(Debug, Default, Deserialize)]
pub struct IncidentsQuery {
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub page: Option<String>,
}

#[derive(Serialize)]
struct IncidentRow {
    id: i64,
    kind: &'static str,
    code: String,
    open: bool,
    bill_id: Option<i64>,
    org_unit: String,
    out_trade_no: Option<String>,
    transaction_id: Option<String>,
    expected: Option<String>,
    actual: Option<String>,
    occurrences: i64,
    created: String,
    resolution: Option<String>,
    resolved: Option<String>,
}

/// `GET /admin/dues/incidents?status=open|resolved|all`: what a person must look at, each open
/// one with a resolve form; administrators also get the trade-bill form.
pub async fn incidents(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
    Query(q): Query<IncidentsQuery>,
) -> AppResult<Response> {
    session.require(Permission::ManageDues)?;
    let status = match blank_to_none(&q.status) {
        None | Some("open") => Some("open"),
        Some("resolved") => Some("resolved"),
        Some(_) => None,
    };
    let page = page_of(&q.page, &None, 100)?;
    let scope = session.org_scope(&st.db).await?;
    let items =
        store::incidents_list(st.db.pool(), &scope, status, page.size, page.offset()).await?;
    let total = store::incidents_count(st.db.pool(), &scope, status).await?;
    let units = unit_names(&st).await?;
    let rows: Vec<IncidentRow> = items
        .into_iter()
        .map(|i| IncidentRow {
            id: i.id,
            kind: incident_label(&i.kind),
            code: i.kind,
            open: i.status == "open",
            bill_id: i.bill_id,
            org_unit: i
                .org_unit_id
                .and_then(|u| units.get(&u).cloned())
                .unwrap_or_default(),
            out_trade_no: i.out_trade_no,
            transaction_id: i.transaction_id,
            expected: i.expected_fen.map(|f| Fen(f).yuan()),
            actual: i.actual_fen.map(|f| Fen(f).yuan()),
            occurrences: i.occurrences,
            created: local_minute(i.created_at),
            resolution: i.resolution,
            resolved: i.resolved_at.map(|at| {
                format!(
                    "{} · {}",
                    local_minute(at),
                    i.resolved_by.unwrap_or_default()
                )
            }),
        })
        .collect();
    let status_s = status.unwrap_or("all");
    let pager = pager(page, total, &[("status", status_s)]);
    console::page(
        &headers,
        "console/dues/incidents.html",
        &session.chrome(NAV),
        minijinja::context! {
            tab => "incidents",
            rows,
            pager,
            status => status_s,
            is_admin => scope == OrgScope::All,
        },
    )
}

#[derive(Debug, Default, Deserialize)]
pub struct ResolveForm {
    #[serde(default)]
    pub resolution: String,
}

/// `POST /admin/dues/incidents/{id}/resolve {resolution}` (audited).
pub async fn resolve(
    State(st): State<AppState>,
    session: ConsoleSession,
    Id(id): Id,
    Form(form): Form<ResolveForm>,
) -> AppResult<Response> {
    session.require(Permission::ManageDues)?;
    let back = "/admin/dues/incidents";
    match service::resolve_incident(&st, &session, id, &form.resolution).await {
        Ok(_) => Ok(redirect_flash(back, true, &format!("异常 #{id} 已处理"))),
        Err(e @ AppError::Validation(_)) => {
            let text = zh_errors(&e).into_values().next().unwrap_or_default();
            Ok(redirect_flash(back, false, &text))
        }
        Err(e) => redirect_error(back, e),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct TradebillForm {
    #[serde(default)]
    pub date: String,
}

#[derive(Serialize)]
struct TradebillRow {
    id: i64,
    kind: &'static str,
    out_trade_no: String,
    transaction_id: String,
    expected: Option<String>,
    actual: Option<String>,
}

/// `POST /admin/dues/tradebill {date}`: fetch WeChat Pay's trade bill of that day, compare it
/// with our payments (as `POST /api/admin/dues/tradebill`) and show the result.
pub async fn tradebill(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
    Form(form): Form<TradebillForm>,
) -> AppResult<Response> {
    session.require(Permission::ManageDues)?;
    let out = match service::tradebill(&st, &session, &form.date).await {
        Ok(out) => out,
        // Payment not configured or WeChat Pay unclear (503/502) is news for the treasurer,
        // not a broken page.
        Err(e) if e.status() != StatusCode::INTERNAL_SERVER_ERROR => {
            return Ok(redirect_flash(
                "/admin/dues/incidents",
                false,
                &format!("对账单获取失败：{e}"),
            ))
        }
        Err(e) => return Err(e),
    };
    let rows: Vec<TradebillRow> = out
        .incidents
        .iter()
        .map(|i| TradebillRow {
            id: i.id,
            kind: incident_label(i.kind),
            out_trade_no: i.out_trade_no.clone(),
            transaction_id: i.transaction_id.clone(),
            expected: i.expected_fen.map(|f| Fen(f).yuan()),
            actual: i.actual_fen.map(|f| Fen(f).yuan()),
        })
        .collect();
    console::page(
        &headers,
        "console/dues/tradebill.html",
        &session.chrome(NAV),
        minijinja::context! {
            tab => "incidents",
            date => out.date,
            count => out.rows,
            matched => out.matched,
            total => Fen(out.total_fen).yuan(),
            our_payments => out.our_payments,
            rows,
        },
    )
}

// ---------------------------------------------------------------- the printable ledger

#[derive(Serialize)]
struct LedgerRow {
    no: usize,
    member: String,
    org_unit: String,
    month_label: String,
    rule: &'static str,
    amount: String,
    paid: Option<String>,
    paid_at: Option<String>,
    status_label: &'static str,
    late: bool,
    note: Option<String>,
}

/// Sums of the ledger's lines, shown as its totals rows.
#[derive(Debug, Default, Serialize)]
struct LedgerTotals {
    bills: i64,
    /// Bills that are due (not exempt) and their amounts.
    due_count: i64,
    due: String,
    paid_count: i64,
    /// What was paid for this month's bills (whenever it arrived).
    paid: String,
    unpaid_count: i64,
    late_count: i64,
    /// Payments received this month for earlier months' bills (补交).
    back_count: i64,
    back: String,
    /// Received this month: this month's bills paid within it plus the back payments.
    received: String,
}

fn ledger_rows(lines: &[service::LedgerLine]) -> (Vec<LedgerRow>, Vec<LedgerRow>, LedgerTotals) {
    let (mut bills, mut back) = (Vec::new(), Vec::new());
    let mut t = LedgerTotals::default();
    let (mut due, mut paid, mut back_fen, mut received) = (0, 0, 0, 0);
    for l in lines {
        let month = Month::parse(&l.month);
        let row = |no: usize| LedgerRow {
            no,
            member: l.member.clone(),
            org_unit: l.org_unit.clone(),
            month_label: month
                .map(Month::label_zh)
                .unwrap_or_else(|| l.month.clone()),
            rule: rule_label(&l.rule),
            amount: Fen(l.amount_fen).yuan(),
            paid: l.paid_fen.map(|f| Fen(f).yuan()),
            paid_at: l
                .paid_at
                .as_deref()
                .and_then(parse_rfc3339)
                .map(local_minute),
            status_label: bill_status_label(&l.status),
            late: l.late,
            note: l.note.clone(),
        };
        let paid_fen = l.paid_fen.unwrap_or(0);
        if l.kind == "back_payment" {
            t.back_count += 1;
            back_fen += paid_fen;
            received += paid_fen;
            back.push(row(back.len() + 1));
            continue;
        }
        t.bills += 1;
        if l.status != "exempt" {
            t.due_count += 1;
            due += l.amount_fen;
        }
        match l.paid_fen {
            Some(f) => {
                t.paid_count += 1;
                paid += f;
                if l.late {
                    t.late_count += 1;
                } else {
                    received += f;
                }
            }
            None if l.status != "exempt" => t.unpaid_count += 1,
            None => {}
        }
        bills.push(row(bills.len() + 1));
    }
    t.due = Fen(due).yuan();
    t.paid = Fen(paid).yuan();
    t.back = Fen(back_fen).yuan();
    t.received = Fen(received).yuan();
    (bills, back, t)
}

/// `GET /admin/dues/ledger?month=&org_unit=`: the month's ledger (电子台账) of an org unit (with
/// its sub-units; secretaries: their subtree), ready to print on A4 — title, one line per bill,
/// totals, the late payments received for earlier months marked as such, signature lines — and
/// the CSV of the admin API. Audited like the API's ledger read.
pub async fn ledger(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
    Query(q): Query<MonthQuery>,
) -> AppResult<Response> {
    session.require(Permission::ManageDues)?;
    let month = month_or_now(&st, &q.month)?;
    let scope = session.org_scope(&st.db).await?;
    let unit_q = blank_to_none(&q.org_unit);
    let unit = service::unit_filter(&st, &scope, unit_q).await?;
    let lines = service::ledger(&st, &scope, unit.as_ref(), month).await?;
    let entry = session
        .audit("dues_ledger.read", "dues_month", month)
        .details(json!({"org_unit": unit_q, "format": "print", "lines": lines.len()}));
    audit::record(st.db.pool(), &entry).await?;
    let units = unit_choices(&st, &scope).await?;
    // The title names the unit asked for; without one, a secretary's own unit or the whole
    // organisation.
    let root = match unit_q {
        Some(u) => units
            .iter()
            .find(|c| c.id.to_string() == u || c.name == u)
            .map(|c| c.id),
        None => session.org_unit_id,
    };
    let unit_name = root
        .and_then(|id| units.iter().find(|c| c.id == id))
        .map(|c| c.name.clone())
        .unwrap_or_else(|| "全部党组织".into());
    let (bills, back, totals) = ledger_rows(&lines);
    let unit_s = unit_q.unwrap_or_default().to_owned();
    let csv = {
        let mut s = form_urlencoded::Serializer::new(String::new());
        s.append_pair("month", &month.to_string());
        if !unit_s.is_empty() {
            s.append_pair("org_unit", &unit_s);
        }
        s.append_pair("format", "csv");
        format!("/api/admin/dues/ledger?{}", s.finish())
    };
    console::page(
        &headers,
        "console/dues/ledger.html",
        &session.chrome(NAV),
        minijinja::context! {
            tab => "ledger",
            month => month.to_string(),
            label => month.label_zh(),
            unit_name,
            org_unit => unit_s,
            units,
            bills,
            back,
            totals,
            csv,
            printed => local_minute(st.clock.unix_ms()),
        },
    )
}
