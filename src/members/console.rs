//! `/admin/members`: the roster pages of the console — the list (search by name or phone, filters,
//! pages; phone and ID number masked), a member's page (reveal once, audited; edit; remove;
//! unbind; transfer within or out, with the printable letter), the transfers list with closing a
//! letter, registering an arrival, and the CSV import with its row report. Everything goes through
//! `members::service`, as the admin API does, with the same permissions and org scope.

use std::collections::BTreeMap;

use axum::{
    extract::{Query, State},
    http::HeaderMap,
    response::Response,
    Form,
};
use serde::{Deserialize, Serialize};

use super::{
    admin::{MemberOut, TransferOut},
    rules::{self, ImportError, RowError},
    service::{self, CloseTransfer, IncomingRefused, IncomingTransfer, MemberPatch, Outcome},
    store,
};
use crate::{
    app::AppState,
    auth::{ConsoleSession, Permission},
    http::console::{self, field_errors_of, form_page, pager, redirect_error, redirect_flash},
    http::{extract::blank_to_none, page_of, Id},
    platform::db::Page,
    platform::error::AppResult,
    platform::org::{self, OrgUnit},
    platform::time::{local_date, local_minute},
};

const NAV: &str = "members";

/// 党员类别, Party status, roster and transfer states as people read them.
fn label(v: &str) -> &'static str {
    match v {
        "employed" => "在职",
        "retired" => "离退休",
        "student" => "学生",
        "unemployed" => "无业",
        "other" => "其他",
        "full" => "正式党员",
        "probationary" => "预备党员",
        "active" => "在册",
        "transferred_out" => "已转出",
        "left" => "已移出",
        "within" => "内部转接",
        "out" => "转出",
        "in" => "转入",
        "completed" => "已完成",
        "issued" => "介绍信已开具",
        "received" => "已接收",
        "returned" => "已退回",
        _ => "未知",
    }
}

/// `(value, label)` pairs for a `<select>`.
fn labels(values: &[&'static str]) -> Vec<(&'static str, &'static str)> {
    values.iter().map(|v| (*v, label(v))).collect()
}

/// Yuan as typed (`8500`, `8500.5`, `8500.50`) → fen.
fn yuan_to_fen(s: &str) -> Option<i64> {
    let s = s.trim().replace([',', '，'], "");
    let (whole, frac) = s.split_once('.').unwrap_or((&s, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 2 {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let yuan: i64 = whole.parse().ok()?;
    let cents: i64 = format!("{frac:0<2}").parse().ok()?;
    yuan.checked_mul(100)?.checked_add(cents)
}

fn fen_to_yuan(fen: i64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

/// The org units in the caller's scope, in tree order, each with its depth.
pub(super) async fn units_in_scope(
    st: &AppState,
    session: &ConsoleSession,
) -> AppResult<Vec<(OrgUnit, usize)>> {
    let scope = session.org_scope(&st.db).await?;
    let all = org::list(&st.db).await?;
    let visible: Vec<OrgUnit> = all.into_iter().filter(|u| scope.contains(u.id)).collect();
    let ids: Vec<i64> = visible.iter().map(|u| u.id).collect();
    // Roots: units whose parent is not visible (a secretary's own unit).
    let mut out = Vec::new();
    fn walk(
        units: &[OrgUnit],
        parent: Option<i64>,
        depth: usize,
        ids: &[i64],
        out: &mut Vec<(OrgUnit, usize)>,
    ) {
        for u in units.iter().filter(|u| match parent {
            None => u.parent_id.is_none_or(|p| !ids.contains(&p)),
            Some(p) => u.parent_id == Some(p),
        }) {
            out.push((u.clone(), depth));
            walk(units, Some(u.id), depth + 1, ids, out);
        }
    }
    walk(&visible, None, 0, &ids, &mut out);
    Ok(out)
}

#[derive(Serialize)]
struct UnitChoice {
    id: i64,
    name: String,
    /// The name indented by depth, for `<select>`.
    indented: String,
}

fn choices(units: &[(OrgUnit, usize)]) -> Vec<UnitChoice> {
    units
        .iter()
        .map(|(u, d)| UnitChoice {
            id: u.id,
            name: u.name.clone(),
            indented: format!("{}{}", "\u{3000}".repeat(*d), u.name),
        })
        .collect()
}

// ---------------------------------------------------------------- the list

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    pub q: Option<String>,
    #[serde(default)]
    pub org_unit: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub party_status: Option<String>,
    #[serde(default)]
    pub page: Option<String>,
}

#[derive(Serialize)]
struct Row {
    id: i64,
    name: String,
    phone: String,
    org_unit: String,
    category: &'static str,
    party_status: &'static str,
    status: &'static str,
    status_key: String,
    bound: bool,
}

pub async fn list(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
    Query(q): Query<ListQuery>,
) -> AppResult<Response> {
    session.require(Permission::ReadMembers)?;
    let page = page_of(&q.page, &None, 100_000)?;
    let query = service::RosterQuery {
        org_unit: blank_to_none(&q.org_unit),
        q: blank_to_none(&q.q),
        status: blank_to_none(&q.status),
        party_status: blank_to_none(&q.party_status),
        page: page.number,
    };
    let (found, total) = service::roster_page(&st, &session, &query).await?;
    let rows = found
        .iter()
        .map(|m| {
            let out = MemberOut::of(m, &st.cipher, false)?;
            Ok(Row {
                id: out.id,
                name: out.name,
                phone: out.phone,
                org_unit: out.org_unit.name,
                category: label(&out.category),
                party_status: label(&out.party_status),
                status: label(&out.status),
                status_key: out.status,
                bound: out.bindings.mp || out.bindings.oa,
            })
        })
        .collect::<AppResult<Vec<_>>>()?;
    let s = |v: &Option<String>| v.clone().unwrap_or_default();
    let (q_s, unit_s, status_s, party_s) =
        (s(&q.q), s(&q.org_unit), s(&q.status), s(&q.party_status));
    let pager = pager(
        Page {
            number: page.number,
            size: store::PAGE_SIZE,
        },
        total,
        &[
            ("q", &q_s),
            ("org_unit", &unit_s),
            ("status", &status_s),
            ("party_status", &party_s),
        ],
    );
    let units = choices(&units_in_scope(&st, &session).await?);
    console::page(
        &headers,
        "console/members/list.html",
        &session.chrome(NAV),
        minijinja::context! {
            rows, pager, units,
            q => q_s, org_unit => unit_s, status => status_s, party_status => party_s,
            statuses => labels(&rules::MEMBER_STATUSES),
            party_statuses => labels(&rules::PARTY_STATUSES),
            may_write => session.can(Permission::WriteMembers),
        },
    )
}

// ---------------------------------------------------------------- one member

/// The edit form; income in yuan (blank: unchanged).
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct EditForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub monthly_income_yuan: String,
    #[serde(default)]
    pub party_status: String,
    #[serde(default)]
    pub joined_at: String,
    #[serde(default)]
    pub full_at: String,
}

impl EditForm {
    fn of(m: &store::MemberRow) -> EditForm {
        EditForm {
            name: m.name.clone(),
            category: m.category.clone(),
            monthly_income_yuan: String::new(),
            party_status: m.party_status.clone(),
            joined_at: m.joined_at.map(local_date).unwrap_or_default(),
            full_at: m.full_at.map(local_date).unwrap_or_default(),
        }
    }

    /// Only what differs from `m` (the audit entry names the fields that changed).
    fn patch(&self, m: &store::MemberRow) -> Result<MemberPatch, BTreeMap<String, String>> {
        let date = |typed: &str, current: Option<i64>| {
            let typed = typed.trim();
            let was = current.map(local_date).unwrap_or_default();
            (typed != was).then(|| (!typed.is_empty()).then(|| typed.to_owned()))
        };
        let income = match self.monthly_income_yuan.trim() {
            "" => None,
            s => match yuan_to_fen(s) {
                Some(fen) => Some(Some(fen)),
                None => {
                    return Err(BTreeMap::from([(
                        "monthly_income_fen".to_owned(),
                        "月收入应为金额（元），最多两位小数".to_owned(),
                    )]))
                }
            },
        };
        let changed = |typed: &str, was: &str| (typed.trim() != was).then(|| typed.to_owned());
        Ok(MemberPatch {
            name: changed(&self.name, &m.name),
            category: changed(&self.category, &m.category),
            monthly_income_fen: income,
            party_status: changed(&self.party_status, &m.party_status),
            joined_at: date(&self.joined_at, m.joined_at),
            full_at: date(&self.full_at, m.full_at),
        })
    }
}

const EDIT_FIELDS: [&str; 6] = [
    "name",
    "category",
    "monthly_income_fen",
    "party_status",
    "joined_at",
    "full_at",
];

#[derive(Serialize)]
struct TransferView {
    #[serde(flatten)]
    t: TransferOut,
    direction_label: &'static str,
    status_label: &'static str,
    created: String,
    expires: Option<String>,
}

impl TransferView {
    fn of(t: &store::TransferRow, now: i64) -> TransferView {
        TransferView {
            direction_label: label(&t.direction),
            status_label: label(&t.status),
            created: local_minute(t.created_at),
            expires: t.expires_at.map(local_date),
            t: TransferOut::of(t, now),
        }
    }
}

/// What a member's page shows besides the member.
struct Detail<'a> {
    revealed: bool,
    form: Option<EditForm>,
    errors: BTreeMap<String, String>,
    transfer_errors: BTreeMap<String, String>,
    transfer_form: Option<&'a TransferForm>,
}

async fn member_page(
    st: &AppState,
    headers: &HeaderMap,
    session: &ConsoleSession,
    m: &store::MemberRow,
    d: Detail<'_>,
) -> AppResult<Response> {
    let member = MemberOut::of(m, &st.cipher, d.revealed)?;
    let income = member.monthly_income_fen.map(fen_to_yuan);
    let transfers: Vec<TransferView> = store::transfers_of(&st.db, m.id)
        .await?
        .iter()
        .map(|t| TransferView::of(t, session.now))
        .collect();
    let units = choices(&units_in_scope(st, session).await?);
    let form = d.form.unwrap_or_else(|| EditForm::of(m));
    let tf = d.transfer_form.map(|f| {
        minijinja::context! {
            to_org_unit_id => f.to_org_unit_id, destination => f.destination,
            dues_paid_until => f.dues_paid_until, validity_days => f.validity_days,
            reason => f.reason, kind => f.kind,
        }
    });
    let mut errors = d.errors;
    errors.extend(
        d.transfer_errors
            .into_iter()
            .map(|(k, v)| (format!("t.{k}"), v)),
    );
    form_page(
        headers,
        "console/members/detail.html",
        &session.chrome(NAV),
        minijinja::context! {
            member, income, transfers, units, form, errors => &errors, tf,
            revealed => d.revealed,
            labels => minijinja::context! {
                category => label(&m.category), party_status => label(&m.party_status),
                status => label(&m.status),
            },
            joined => m.joined_at.map(local_date), full => m.full_at.map(local_date),
            categories => labels(&rules::CATEGORIES),
            party_statuses => labels(&rules::PARTY_STATUSES),
            may_write => session.can(Permission::WriteMembers),
            may_reveal => session.can(Permission::RevealPersonalData),
            active => m.is_active(),
            default_validity => rules::DEFAULT_LETTER_VALIDITY_DAYS,
        },
        &errors,
    )
}

fn plain(revealed: bool) -> Detail<'static> {
    Detail {
        revealed,
        form: None,
        errors: BTreeMap::new(),
        transfer_errors: BTreeMap::new(),
        transfer_form: None,
    }
}

pub async fn show(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
    Id(id): Id,
) -> AppResult<Response> {
    session.require(Permission::ReadMembers)?;
    let m = service::read(&st, &session, id, false).await?;
    member_page(&st, &headers, &session, &m, plain(false)).await
}

/// `POST /admin/members/{id}/reveal`: the page once with phone, ID number and income in clear
/// (audited as `member.reveal` before it is rendered; nothing is cached: `no-store`).
pub async fn reveal(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
    Id(id): Id,
) -> AppResult<Response> {
    session.require(Permission::ReadMembers)?;
    let m = service::read(&st, &session, id, true).await?;
    member_page(&st, &headers, &session, &m, plain(true)).await
}

pub async fn update(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
    Id(id): Id,
    Form(form): Form<EditForm>,
) -> AppResult<Response> {
    session.require(Permission::WriteMembers)?;
    let scope = session.org_scope(&st.db).await?;
    let m = service::member_in_scope(&st, &scope, id).await?;
    let errors = match form.patch(&m) {
        Err(errors) => errors,
        Ok(patch) => match service::edit(&st, &session, id, &patch).await {
            Ok(_) => {
                return Ok(redirect_flash(
                    &format!("/admin/members/{id}"),
                    true,
                    "已保存",
                ))
            }
            Err(e) if e.status().is_client_error() => field_errors_of(&e, &EDIT_FIELDS),
            Err(e) => return Err(e),
        },
    };
    let d = Detail {
        form: Some(form),
        errors,
        ..plain(false)
    };
    member_page(&st, &headers, &session, &m, d).await
}

/// `POST /admin/members/{id}/delete`: off the roster (status `left`), history kept.
pub async fn remove(
    State(st): State<AppState>,
    session: ConsoleSession,
    Id(id): Id,
) -> AppResult<Response> {
    session.require(Permission::WriteMembers)?;
    match service::remove(&st, &session, id).await {
        Ok(_) => Ok(redirect_flash("/admin/members", true, "已移出名册")),
        Err(e) => redirect_error(&format!("/admin/members/{id}"), e),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct UnbindForm {
    #[serde(default)]
    pub app: String,
}

/// `POST /admin/members/{id}/unbind` with `app=mp|oa`.
pub async fn unbind(
    State(st): State<AppState>,
    session: ConsoleSession,
    Id(id): Id,
    Form(f): Form<UnbindForm>,
) -> AppResult<Response> {
    session.require(Permission::WriteMembers)?;
    let to = format!("/admin/members/{id}");
    let app = match f.app.as_str() {
        "mp" => service::UnbindApp::Mp,
        "oa" => service::UnbindApp::Oa,
        _ => return Ok(redirect_flash(&to, false, "请选择要解绑的应用")),
    };
    match service::unbind(&st, &session, id, app).await {
        Ok(_) => Ok(redirect_flash(&to, true, "已解除绑定")),
        Err(e) => redirect_error(&to, e),
    }
}

/// Both transfer forms: `kind=within` (to_org_unit_id) or `kind=out` (destination, dues month,
/// validity).
#[derive(Debug, Default, Deserialize)]
pub struct TransferForm {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub to_org_unit_id: String,
    #[serde(default)]
    pub destination: String,
    #[serde(default)]
    pub dues_paid_until: String,
    #[serde(default)]
    pub validity_days: String,
    #[serde(default)]
    pub reason: String,
}

impl TransferForm {
    fn request(&self) -> Result<service::TransferRequest, BTreeMap<String, String>> {
        let one = |k: &str, v: &str| BTreeMap::from([(k.to_owned(), v.to_owned())]);
        let reason = blank_to_none(&Some(self.reason.clone())).map(str::to_owned);
        match self.kind.as_str() {
            "within" => {
                let to = self
                    .to_org_unit_id
                    .trim()
                    .parse()
                    .map_err(|_| one("to_org_unit_id", "请选择转入的组织"))?;
                Ok(service::TransferRequest::Within {
                    to_org_unit_id: to,
                    reason,
                })
            }
            "out" => {
                let validity_days = match self.validity_days.trim() {
                    "" => None,
                    v => Some(
                        v.parse()
                            .map_err(|_| one("validity_days", "有效期应为天数"))?,
                    ),
                };
                Ok(service::TransferRequest::Out {
                    destination: self.destination.clone(),
                    dues_paid_until: self.dues_paid_until.clone(),
                    validity_days,
                    reason,
                })
            }
            _ => Err(one("", "请选择转接方式")),
        }
    }
}

const TRANSFER_FIELDS: [&str; 5] = [
    "to_org_unit_id",
    "destination",
    "dues_paid_until",
    "validity_days",
    "reason",
];

/// `POST /admin/members/{id}/transfer`: within → back to the member; out → the letter's link.
pub async fn transfer(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
    Id(id): Id,
    Form(f): Form<TransferForm>,
) -> AppResult<Response> {
    session.require(Permission::WriteMembers)?;
    let scope = session.org_scope(&st.db).await?;
    let m = service::member_in_scope(&st, &scope, id).await?;
    let errors = match f.request() {
        Err(errors) => errors,
        Ok(req) => match service::transfer(&st, &session, id, &req).await {
            Ok((t, _)) => {
                let msg = if t.direction == "out" {
                    format!(
                        "已开具介绍信 {}，请打印介绍信",
                        t.letter_no.as_deref().unwrap_or_default()
                    )
                } else {
                    "已转入新的组织".to_owned()
                };
                return Ok(redirect_flash(&format!("/admin/members/{id}"), true, &msg));
            }
            Err(e) if e.status().is_client_error() => field_errors_of(&e, &TRANSFER_FIELDS),
            Err(e) => return Err(e),
        },
    };
    let d = Detail {
        transfer_errors: errors,
        transfer_form: Some(&f),
        ..plain(false)
    };
    member_page(&st, &headers, &session, &m, d).await
}

// ---------------------------------------------------------------- transfers

#[derive(Debug, Default, Deserialize)]
pub struct TransfersQuery {
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub page: Option<String>,
}

const TRANSFER_STATES: [&str; 4] = ["completed", "issued", "received", "returned"];

pub async fn transfers(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
    Query(q): Query<TransfersQuery>,
) -> AppResult<Response> {
    session.require(Permission::ReadMembers)?;
    let status =
        blank_to_none(&q.status).and_then(|s| TRANSFER_STATES.into_iter().find(|x| *x == s));
    let page = page_of(&q.page, &None, 100)?;
    let scope = session.org_scope(&st.db).await?;
    let (rows, total) =
        store::list_transfers(&st.db, &scope, status, page.size, page.offset()).await?;
    let items: Vec<TransferView> = rows
        .iter()
        .map(|t| TransferView::of(t, session.now))
        .collect();
    let status_s = status.unwrap_or("");
    console::page(
        &headers,
        "console/members/transfers.html",
        &session.chrome(NAV),
        minijinja::context! {
            items, status => status_s,
            pager => pager(page, total, &[("status", status_s)]),
            statuses => TRANSFER_STATES.iter().map(|s| (*s, label(s))).collect::<Vec<_>>(),
            may_write => session.can(Permission::WriteMembers),
        },
    )
}

#[derive(Debug, Default, Deserialize)]
pub struct CloseForm {
    #[serde(default)]
    pub outcome: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub back: String,
}

/// `POST /admin/members/transfers/{id}/close`: the receipt came back, or the letter did.
pub async fn close(
    State(st): State<AppState>,
    session: ConsoleSession,
    Id(id): Id,
    Form(f): Form<CloseForm>,
) -> AppResult<Response> {
    session.require(Permission::WriteMembers)?;
    let to = if f.back.starts_with("/admin/members") && !f.back.contains("//") {
        f.back.clone()
    } else {
        "/admin/members/transfers".to_owned()
    };
    let outcome = match f.outcome.as_str() {
        "received" => Outcome::Received,
        "returned" => Outcome::Returned,
        _ => return Ok(redirect_flash(&to, false, "请选择接收或退回")),
    };
    let req = CloseTransfer {
        outcome,
        reason: blank_to_none(&Some(f.reason.clone())).map(str::to_owned),
    };
    match service::close_transfer(&st, &session, id, &req).await {
        Ok(_) => Ok(redirect_flash(
            &to,
            true,
            if outcome == Outcome::Received {
                "已登记接收回执"
            } else {
                "介绍信已退回，党员已恢复在册"
            },
        )),
        Err(e) => redirect_error(&to, e),
    }
}

/// The arrival form; income in yuan.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct IncomingForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub phone: String,
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub monthly_income_yuan: String,
    #[serde(default)]
    pub id_number: String,
    #[serde(default)]
    pub org_unit_id: String,
    #[serde(default)]
    pub party_status: String,
    #[serde(default)]
    pub joined_at: String,
    #[serde(default)]
    pub origin: String,
    #[serde(default)]
    pub letter_no: String,
    #[serde(default)]
    pub dues_paid_until: String,
    #[serde(default)]
    pub reason: String,
}

const INCOMING_FIELDS: [&str; 12] = [
    "name",
    "phone",
    "category",
    "monthly_income_fen",
    "id_number",
    "org_unit_id",
    "party_status",
    "joined_at",
    "origin",
    "letter_no",
    "dues_paid_until",
    "reason",
];

impl IncomingForm {
    fn request(&self) -> Result<IncomingTransfer, BTreeMap<String, String>> {
        let opt = |v: &str| (!v.trim().is_empty()).then(|| v.trim().to_owned());
        let mut errors = BTreeMap::new();
        let income = match self.monthly_income_yuan.trim() {
            "" => None,
            s => yuan_to_fen(s).or_else(|| {
                errors.insert(
                    "monthly_income_fen".to_owned(),
                    "月收入应为金额（元），最多两位小数".to_owned(),
                );
                None
            }),
        };
        let unit = self.org_unit_id.trim().parse().unwrap_or_else(|_| {
            errors.insert("org_unit_id".to_owned(), "请选择转入的组织".to_owned());
            0
        });
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(IncomingTransfer {
            name: self.name.clone(),
            phone: self.phone.clone(),
            category: self.category.clone(),
            monthly_income_fen: income,
            id_number: opt(&self.id_number),
            org_unit_id: unit,
            party_status: opt(&self.party_status),
            joined_at: opt(&self.joined_at),
            origin: self.origin.clone(),
            letter_no: opt(&self.letter_no),
            dues_paid_until: opt(&self.dues_paid_until),
            reason: opt(&self.reason),
        })
    }
}

async fn incoming_page(
    st: &AppState,
    headers: &HeaderMap,
    session: &ConsoleSession,
    form: &IncomingForm,
    errors: BTreeMap<String, String>,
) -> AppResult<Response> {
    let units = choices(&units_in_scope(st, session).await?);
    form_page(
        headers,
        "console/members/incoming.html",
        &session.chrome(NAV),
        minijinja::context! {
            form, units, errors => &errors,
            categories => labels(&rules::CATEGORIES),
            party_statuses => labels(&rules::PARTY_STATUSES),
        },
        &errors,
    )
}

pub async fn incoming_form(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
) -> AppResult<Response> {
    session.require(Permission::WriteMembers)?;
    let form = IncomingForm {
        category: "employed".into(),
        party_status: "full".into(),
        ..Default::default()
    };
    incoming_page(&st, &headers, &session, &form, BTreeMap::new()).await
}

fn row_errors(errors: &[RowError]) -> BTreeMap<String, String> {
    errors
        .iter()
        .map(|e| (e.field.to_owned(), e.message.clone()))
        .collect()
}

pub async fn incoming(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
    Form(form): Form<IncomingForm>,
) -> AppResult<Response> {
    session.require(Permission::WriteMembers)?;
    let errors = match form.request() {
        Err(errors) => errors,
        Ok(req) => match service::register_incoming(&st, &session, &req).await {
            Ok(Ok((_, m))) => {
                return Ok(redirect_flash(
                    &format!("/admin/members/{}", m.id),
                    true,
                    "已登记转入",
                ))
            }
            Ok(Err(IncomingRefused::Invalid(rows))) => row_errors(&rows),
            Err(e) if e.status().is_client_error() => field_errors_of(&e, &INCOMING_FIELDS),
            Err(e) => return Err(e),
        },
    };
    incoming_page(&st, &headers, &session, &form, errors).await
}

// ---------------------------------------------------------------- import

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct ImportForm {
    #[serde(default)]
    pub csv: String,
}

#[derive(Serialize)]
struct RowErrorView {
    row: usize,
    field: &'static str,
    field_label: &'static str,
    message: String,
}

fn column_label(field: &str) -> &'static str {
    match field {
        "name" => "姓名",
        "phone" => "手机号",
        "category" => "类别",
        "monthly_income_fen" => "月收入（分）",
        "org_unit" => "所属组织",
        "id_number" => "身份证号",
        "party_status" => "党员状态",
        "joined_at" => "入党日期",
        "columns" => "列名",
        _ => "整行",
    }
}

async fn import_page(
    headers: &HeaderMap,
    session: &ConsoleSession,
    form: &ImportForm,
    outcome: minijinja::Value,
    errors: BTreeMap<String, String>,
) -> AppResult<Response> {
    form_page(
        headers,
        "console/members/import.html",
        &session.chrome(NAV),
        minijinja::context! { form, errors => &errors, ..outcome },
        &errors,
    )
}

pub async fn import_form(headers: HeaderMap, session: ConsoleSession) -> AppResult<Response> {
    session.require(Permission::WriteMembers)?;
    import_page(
        &headers,
        &session,
        &ImportForm::default(),
        minijinja::Value::UNDEFINED,
        BTreeMap::new(),
    )
    .await
}

/// `POST /admin/members/import`: the CSV of the form, through the admin API's import — all rows
/// or none; the report lists every invalid row.
pub async fn import(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
    Form(form): Form<ImportForm>,
) -> AppResult<Response> {
    session.require(Permission::WriteMembers)?;
    let general = |m: String| BTreeMap::from([(String::new(), m)]);
    let raw = match rules::csv_rows(form.csv.as_bytes()) {
        Ok(raw) => raw,
        Err(e) => {
            let m = match e {
                ImportError::Invalid(m) => m,
                ImportError::BadJson => "CSV 无法读取".to_owned(),
            };
            return import_page(
                &headers,
                &session,
                &form,
                minijinja::Value::UNDEFINED,
                general(m),
            )
            .await;
        }
    };
    match service::import(&st, &session, &raw, service::ImportFormat::Csv).await {
        Ok(Ok(done)) => {
            let outcome = minijinja::context! { done };
            import_page(
                &headers,
                &session,
                &ImportForm::default(),
                outcome,
                BTreeMap::new(),
            )
            .await
        }
        Ok(Err(rows)) => {
            let bad: std::collections::BTreeSet<usize> = rows.iter().map(|e| e.row).collect();
            let report: Vec<RowErrorView> = rows
                .into_iter()
                .map(|e| RowErrorView {
                    row: e.row,
                    field: e.field,
                    field_label: column_label(e.field),
                    message: e.message,
                })
                .collect();
            let summary = format!("{} 行有误，未导入任何记录；请修改后重新提交", bad.len());
            let outcome = minijinja::context! { report, rows_total => raw.len() };
            import_page(&headers, &session, &form, outcome, general(summary)).await
        }
        Err(e) if e.status().is_client_error() => {
            import_page(
                &headers,
                &session,
                &form,
                minijinja::Value::UNDEFINED,
                general(console::human(&e)),
            )
            .await
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuan_become_fen() {
        assert_eq!(yuan_to_fen("8500"), Some(850_000));
        assert_eq!(yuan_to_fen("8500.5"), Some(850_050));
        assert_eq!(yuan_to_fen("8,500.05"), Some(850_005));
        assert_eq!(yuan_to_fen("8500.123"), None);
        assert_eq!(yuan_to_fen("-1"), None);
        assert_eq!(yuan_to_fen("abc"), None);
        assert_eq!(fen_to_yuan(850_005), "8500.05");
    }
}
