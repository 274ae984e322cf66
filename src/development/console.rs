//! `/admin/development`: the 发展党员 pages — the pipeline (people per stage), the list of records
//! with filters (stage, org unit, overdue), a record's page (its steps in order with dates, who
//! recorded them, opinions and documents; its deadlines), the form to record the next step (a
//! date that breaks a time rule is refused naming the rule, beside the date), and the list of
//! overdue and coming deadlines. The same service, permissions and scope as the admin API
//! (`Permission::ManageDevelopment`; secretaries see their subtree only, and every read of
//! records is audited there too).

use std::collections::BTreeMap;

use axum::{
    extract::{Query, State},
    http::HeaderMap,
    response::Response,
};
use serde::{Deserialize, Serialize};

use super::{
    admin,
    rules::{self, DeadlineStatus, Details, Stage},
    service::{self, DevError, StepInput},
    store,
};
use crate::{
    app::AppState,
    auth::{ConsoleSession, Permission},
    http::console::{self, field_errors, pager, redirect_flash},
    http::{extract::blank_to_none, page_of, Id},
    platform::{audit, error::AppResult, org},
};

const NAV: &str = "development";

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    pub stage: Option<String>,
    #[serde(default)]
    pub org_unit: Option<String>,
    #[serde(default)]
    pub overdue: Option<String>,
    #[serde(default)]
    pub page: Option<String>,
}

#[derive(Serialize)]
struct StageChoice {
    key: &'static str,
    name: &'static str,
}

fn stages() -> Vec<StageChoice> {
    Stage::ALL
        .iter()
        .map(|s| StageChoice {
            key: s.as_str(),
            name: s.name(),
        })
        .collect()
}

/// Names of the org units in the session's scope (for the filter).
async fn unit_names(st: &AppState, session: &ConsoleSession) -> AppResult<Vec<String>> {
    let scope = session.org_scope(&st.db).await?;
    Ok(org::list(&st.db)
        .await?
        .into_iter()
        .filter(|u| scope.contains(u.id))
        .map(|u| u.name)
        .collect())
}

/// `GET /admin/development`: the pipeline and the filtered list.
pub async fn list(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
    Query(q): Query<ListQuery>,
) -> AppResult<Response> {
    session.require(Permission::ManageDevelopment)?;
    let page = page_of(&q.page, &None, 100)?;
    let overdue = blank_to_none(&q.overdue).is_some_and(|v| v == "1" || v == "true");
    let stage = blank_to_none(&q.stage).map(str::to_owned);
    let unit = blank_to_none(&q.org_unit).map(str::to_owned);
    let (rows, total) = admin::records(&st, &session, &unit, &stage, overdue, page).await?;
    let scope = session.org_scope(&st.db).await?;
    let units = match &unit {
        Some(name) => match org::find_by_name(st.db.pool(), name).await? {
            Some(u) => Some(org::OrgScope::Units(org::subtree_ids(&st.db, u.id).await?)),
            None => Some(org::OrgScope::Units(Vec::new())),
        },
        None => None,
    };
    let all = store::all_records(&st.db, &scope, units.as_ref(), false).await?;
    let (per_unit, totals) = admin::by_unit(
        all.iter()
            .map(|r| (r, Stage::parse(&r.stage).unwrap_or(Stage::Applicant))),
    );
    let (stage_s, unit_s) = (stage.unwrap_or_default(), unit.unwrap_or_default());
    let overdue_s = if overdue { "1" } else { "" };
    let pager = pager(
        page,
        total,
        &[
            ("stage", &stage_s),
            ("org_unit", &unit_s),
            ("overdue", overdue_s),
        ],
    );
    console::page(
        &headers,
        "console/development/list.html",
        &session.chrome(NAV),
        minijinja::context! {
            rows, pager, per_unit, totals, stages => stages(),
            units => unit_names(&st, &session).await?,
            stage => stage_s, org_unit => unit_s, overdue,
        },
    )
}

// ---------------------------------------------------------------- a record

/// The step form; every field a string, documents one checkbox each.
#[derive(Debug, Default, Serialize)]
pub struct StepForm {
    pub step: String,
    pub date: String,
    pub opinion: String,
    pub contacts: String,
    pub class_hours: String,
    pub end_date: String,
    pub extension_months: String,
    pub delay_reason: String,
    pub documents: Vec<i64>,
}

impl StepForm {
    fn parse(body: &[u8]) -> StepForm {
        let mut f = StepForm::default();
        for (k, v) in form_urlencoded::parse(body) {
            let v = v.into_owned();
            match &*k {
                "step" => f.step = v,
                "date" => f.date = v,
                "opinion" => f.opinion = v,
                "contacts" => f.contacts = v,
                "class_hours" => f.class_hours = v,
                "end_date" => f.end_date = v,
                "extension_months" => f.extension_months = v,
                "delay_reason" => f.delay_reason = v,
                "document" => f.documents.extend(v.parse::<i64>().ok()),
                _ => {}
            }
        }
        f
    }

    /// The service's input, or the fields that do not parse.
    fn input(&self) -> Result<StepInput, BTreeMap<String, String>> {
        let mut errors = BTreeMap::new();
        let opt = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_owned());
        let mut number = |field: &str, v: &str| match v.trim() {
            "" => None,
            v => v.parse::<u32>().ok().or_else(|| {
                errors.insert(field.to_owned(), "应为整数".to_owned());
                None
            }),
        };
        let class_hours = number("class_hours", &self.class_hours);
        let extension_months = number("extension_months", &self.extension_months);
        let end_date = match self.end_date.trim() {
            "" => None,
            v => rules::parse_date(v).or_else(|| {
                errors.insert("end_date".into(), "日期格式应为 2026-07-01".into());
                None
            }),
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(StepInput {
            step: self.step.clone(),
            date: self.date.trim().to_owned(),
            opinion: opt(&self.opinion),
            documents: self.documents.clone(),
            details: Details {
                contacts: self
                    .contacts
                    .split([',', '，', '、'])
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect(),
                class_hours,
                end_date,
                extension_months,
                delay_reason: opt(&self.delay_reason),
            },
            corrects: None,
            reason: None,
        })
    }
}

#[derive(Serialize)]
struct StepChoice {
    key: String,
    name: String,
    stage: &'static str,
}

async fn record_page(
    st: &AppState,
    headers: &HeaderMap,
    session: &ConsoleSession,
    id: i64,
    form: Option<StepForm>,
    errors: BTreeMap<String, String>,
) -> AppResult<Response> {
    let scope = session.org_scope(&st.db).await?;
    service::visible_record(&st.db, &scope, id).await?;
    audit::record(
        st.db.pool(),
        &session.audit("development.read", "development_record", id),
    )
    .await?;
    let timeline = admin::timeline(st, id, admin::today(session)).await?;
    let content = service::content(st);
    let steps: Vec<StepChoice> = crate::development::definitions(&content)
        .steps
        .iter()
        .map(|d| StepChoice {
            key: d.key.clone(),
            name: d.name.clone(),
            stage: d.stage.name(),
        })
        .collect();
    let form = form.unwrap_or_else(|| StepForm {
        step: timeline
            .record
            .next_step
            .as_ref()
            .map(|n| n.step.clone())
            .unwrap_or_default(),
        date: timeline
            .record
            .next_step
            .as_ref()
            .and_then(|n| n.earliest.clone())
            .unwrap_or_default(),
        ..Default::default()
    });
    console::form_page(
        headers,
        "console/development/record.html",
        &session.chrome(NAV),
        minijinja::context! { t => timeline, steps, form, errors },
        &errors,
    )
}

pub async fn record(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
    Id(id): Id,
) -> AppResult<Response> {
    session.require(Permission::ManageDevelopment)?;
    record_page(&st, &headers, &session, id, None, BTreeMap::new()).await
}

/// A refused step for the form: a broken time rule beside the date, naming the rule.
fn step_errors(e: &DevError) -> BTreeMap<String, String> {
    match e {
        DevError::Rule(v) => {
            let limit = v
                .limit
                .map(|d| format!("（界限日期 {}）", rules::format_date(d)))
                .unwrap_or_default();
            BTreeMap::from([(
                "date".to_owned(),
                format!("不符合规则「{}」：{}{limit}", v.rule, v.message),
            )])
        }
        DevError::App(e) => field_errors(e),
    }
}

/// `POST /admin/development/{id}/steps`
pub async fn add_step(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
    Id(id): Id,
    body: axum::body::Bytes,
) -> AppResult<Response> {
    session.require(Permission::ManageDevelopment)?;
    let form = StepForm::parse(&body);
    let input = match form.input() {
        Ok(i) => i,
        Err(errors) => return record_page(&st, &headers, &session, id, Some(form), errors).await,
    };
    match service::add_step(&st, &session, id, input).await {
        Ok(_) => Ok(redirect_flash(
            &format!("/admin/development/{id}"),
            true,
            "步骤已记录",
        )),
        Err(DevError::App(e)) if !e.status().is_client_error() => Err(e),
        Err(e) => {
            let errors = step_errors(&e);
            record_page(&st, &headers, &session, id, Some(form), errors).await
        }
    }
}

// ---------------------------------------------------------------- deadlines

#[derive(Debug, Default, Deserialize)]
pub struct DeadlineQuery {
    #[serde(default)]
    pub org_unit: Option<String>,
}

#[derive(Serialize)]
struct DeadlineRow {
    record_id: i64,
    name: String,
    org_unit: String,
    stage: &'static str,
    rule: String,
    label: String,
    due: String,
    overdue: bool,
    /// Days past the due date (overdue) or left until it.
    days: i64,
}

/// `GET /admin/development/deadlines`: every overdue item, then the open deadlines by date.
pub async fn deadlines(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
    Query(q): Query<DeadlineQuery>,
) -> AppResult<Response> {
    session.require(Permission::ManageDevelopment)?;
    let today = admin::today(&session);
    let unit_q = admin::UnitQuery {
        org_unit: blank_to_none(&q.org_unit).map(str::to_owned),
        ..Default::default()
    };
    let content = service::content(&st);
    let defs = crate::development::definitions(&content);
    let mut rows = Vec::new();
    for l in admin::loaded_in_scope(&st, &session, &unit_q, true).await? {
        let c = service::compute(defs, &l, today);
        for d in &c.deadlines {
            let status = d.status(today);
            if status == DeadlineStatus::Met {
                continue;
            }
            let overdue = status == DeadlineStatus::Overdue;
            rows.push(DeadlineRow {
                record_id: l.record.id,
                name: l.record.name.clone(),
                org_unit: l.record.org_unit.clone(),
                stage: c.stage.name(),
                rule: d.rule.clone(),
                label: d.label.clone(),
                due: rules::format_date(d.due),
                overdue,
                days: if overdue {
                    rules::days_between(d.due, today)
                } else {
                    rules::days_between(today, d.due)
                },
            });
        }
    }
    rows.sort_by(|a, b| (!a.overdue, &a.due, a.record_id).cmp(&(!b.overdue, &b.due, b.record_id)));
    let overdue_count = rows.iter().filter(|r| r.overdue).count();
    console::page(
        &headers,
        "console/development/deadlines.html",
        &session.chrome(NAV),
        minijinja::context! {
            rows, overdue_count,
            units => unit_names(&st, &session).await?,
            org_unit => q.org_unit.unwrap_or_default(),
        },
    )
}
