//! `/api/admin/development`: records and their timelines, steps (recorded, submitted, corrected),
//! the upper committee's queue and decisions, documents, thought reports, overdue items, the
//! pipeline (JSON or CSV) and statistics. Secretaries see and change only their org-unit subtree
//! (anything else is "not found"); decisions need `ApproveDevelopment` (administrators).

use std::collections::BTreeMap;

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, Path, State},
    http::{header, HeaderMap, Method, StatusCode},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::Date;

use super::{
    rules::{self, DeadlineStatus, Details, Stage},
    service::{
        self, deadline_out, reports_summary, DeadlineOut, DecisionInput, DevResult, Loaded,
        NewRecordInput, NextStepOut, Reporter, ReportsSummary, StageOut, StepInput, Upload,
    },
    store::{self, DocumentRow, RecordRow, StepRow},
};
use crate::{
    app::AppState,
    auth::{AdminSession, Permission},
    http::{
        extract::{blank_to_none, IdKey},
        page_of,
        routes::AdminRoutes,
        AppJson, AppQuery, Id, ListOut,
    },
    platform::{
        audit,
        db::sealed,
        error::{AppError, AppResult},
        org::{self, OrgScope},
        pii,
        time::rfc3339_shanghai,
    },
};

pub fn routes(r: AdminRoutes) -> AdminRoutes {
    let m = Permission::ManageDevelopment;
    let a = Permission::ApproveDevelopment;
    r.post("/api/admin/development", m, create)
        .get("/api/admin/development", m, list)
        .get("/api/admin/development/queue", m, queue)
        .get("/api/admin/development/overdue", m, overdue)
        .get("/api/admin/development/pipeline", m, pipeline)
        .get("/api/admin/development/stats", m, stats)
        .get("/api/admin/development/reminders", m, reminders)
        .get("/api/admin/development/{id}", m, show)
        .post("/api/admin/development/{id}/steps", m, add_step)
        .post(
            "/api/admin/development/{id}/steps/{step}/approve",
            a,
            approve,
        )
        .post(
            "/api/admin/development/{id}/steps/{step}/return",
            a,
            return_step,
        )
        .route_with_limit(
            Method::POST,
            "/api/admin/development/{id}/documents",
            m,
            Some(service::MAX_DOCUMENT_BYTES),
            upload,
        )
        .documented(|op, _| {
            let file = || json!({"schema": {"type": "string", "format": "binary"}});
            op.body = Some(
                json!({"required": true, "description": "The file itself, at most 5 MiB.",
                "content": {"application/pdf": file(), "image/jpeg": file(), "image/png": file()}}),
            )
        })
        .get("/api/admin/development/{id}/documents/{doc}", m, download)
        .post("/api/admin/development/{id}/reports", m, add_report)
        .get("/api/admin/development/{id}/reports", m, list_reports)
}

// ---------------------------------------------------------------- views

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct OrgUnitOut {
    pub id: i64,
    pub name: String,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct RecordOut {
    pub id: i64,
    pub name: String,
    pub member_id: Option<i64>,
    pub org_unit: OrgUnitOut,
    /// Masked.
    pub id_number: Option<String>,
    pub stage: StageOut,
    pub stage_since: Option<String>,
    pub probation_end: Option<String>,
    /// 党龄 counts from this date (the end of probation).
    pub full_member_since: Option<String>,
    pub next_step: Option<NextStepOut>,
    pub overdue: usize,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct EntryOut {
    pub id: i64,
    pub step: String,
    pub name: String,
    pub stage: Option<&'static str>,
    /// The date given (for approval steps: the date it was submitted).
    pub date: String,
    pub status: String,
    /// The date it counts from (approval steps: the decision), when it counts.
    pub effective_date: Option<String>,
    pub opinion: Option<String>,
    pub opinion_of: Option<String>,
    pub details: Details,
    pub documents: Vec<i64>,
    pub corrects: Option<i64>,
    pub correction_reason: Option<String>,
    pub recorded_by: String,
    pub recorded_at: String,
    pub decided_on: Option<String>,
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
    pub decision_opinion: Option<String>,
    pub decision_delay_reason: Option<String>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct DocumentOut {
    pub id: i64,
    pub kind: String,
    pub file_name: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub uploaded_by: String,
    pub uploaded_at: String,
}

fn document_out(d: DocumentRow) -> DocumentOut {
    DocumentOut {
        id: d.id,
        kind: d.kind,
        file_name: d.file_name,
        content_type: d.content_type,
        size_bytes: d.size_bytes,
        sha256: d.sha256,
        uploaded_by: d.uploaded_by,
        uploaded_at: rfc3339_shanghai(d.uploaded_at),
    }
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct TimelineOut {
    pub record: RecordOut,
    pub steps: Vec<EntryOut>,
    pub deadlines: Vec<DeadlineOut>,
    pub documents: Vec<DocumentOut>,
    pub reports: ReportsSummary,
}

/// A write's answer: the entry it made and the record's timeline after it.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ChangedOut {
    pub entry_id: i64,
    #[serde(flatten)]
    pub timeline: TimelineOut,
}

fn record_out(st: &AppState, l: &Loaded, today: Date) -> AppResult<RecordOut> {
    let content = service::content(st);
    let c = service::compute(crate::development::definitions(&content), l, today);
    let r = &l.record;
    let slot = store::ID_NUMBER.at(r.id);
    let id_number = st
        .cipher
        .open_opt(slot, r.id_number_enc.as_deref())
        .map_err(|e| AppError::Internal(sealed::refused(slot, e)))?
        .map(|v| pii::mask_id_number(&v));
    Ok(RecordOut {
        id: r.id,
        name: r.name.clone(),
        member_id: r.member_id,
        org_unit: OrgUnitOut {
            id: r.org_unit_id,
            name: r.org_unit.clone(),
        },
        id_number,
        stage: Stage::parse(&r.stage).unwrap_or(c.stage).into(),
        stage_since: r.stage_since.clone(),
        probation_end: c.probation_end.map(rules::format_date),
        full_member_since: r.full_member_since.clone(),
        next_step: c.next.as_ref().map(NextStepOut::from),
        overdue: c
            .deadlines
            .iter()
            .filter(|d| d.status(today) == DeadlineStatus::Overdue)
            .count(),
        created_by: r.created_by.clone(),
        created_at: rfc3339_shanghai(r.created_at),
        updated_at: rfc3339_shanghai(r.updated_at),
    })
}

fn entry_out(st: &AppState, s: &StepRow) -> EntryOut {
    let content = service::content(st);
    let def = crate::development::definitions(&content).step(&s.step);
    EntryOut {
        id: s.id,
        step: s.step.clone(),
        name: def
            .map(|d| d.name.clone())
            .unwrap_or_else(|| s.step.clone()),
        stage: def.map(|d| d.stage.as_str()),
        date: s.step_on.clone(),
        status: s.status.clone(),
        effective_date: service::effective_date(s).map(rules::format_date),
        opinion: s.opinion.clone(),
        opinion_of: s.opinion_of.clone(),
        details: serde_json::from_str(&s.details).unwrap_or_default(),
        documents: service::documents_of(s),
        corrects: s.corrects,
        correction_reason: s.correction_reason.clone(),
        recorded_by: s.recorded_by.clone(),
        recorded_at: rfc3339_shanghai(s.recorded_at),
        decided_on: s.decided_on.clone(),
        decided_by: s.decided_by.clone(),
        decided_at: s.decided_at.map(rfc3339_shanghai),
        decision_opinion: s.decision_opinion.clone(),
        decision_delay_reason: s.decision_delay_reason.clone(),
    }
}

pub(super) async fn timeline(st: &AppState, id: i64, today: Date) -> AppResult<TimelineOut> {
    let record = store::record(st.db.pool(), id)
        .await?
        .ok_or_else(|| AppError::NotFound("development record".into()))?;
    let documents = store::documents_of(st.db.pool(), id).await?;
    let l = service::load(&st.db, record).await?;
    let content = service::content(st);
    let c = service::compute(crate::development::definitions(&content), &l, today);
    Ok(TimelineOut {
        record: record_out(st, &l, today)?,
        steps: l.steps.iter().map(|s| entry_out(st, s)).collect(),
        deadlines: c.deadlines.iter().map(|d| deadline_out(d, today)).collect(),
        documents: documents.into_iter().map(document_out).collect(),
        reports: reports_summary(&l),
    })
}

pub(super) fn today(session: &AdminSession) -> Date {
    rules::today(session.now)
}

/// `?org_unit=<name>`: that unit's subtree (within the caller's scope).
async fn unit_filter(st: &AppState, name: &Option<String>) -> AppResult<Option<OrgScope>> {
    match blank_to_none(name) {
        Some(name) => {
            let unit = org::find_by_name(st.db.pool(), name)
                .await?
                .ok_or_else(|| AppError::NotFound("org unit".into()))?;
            Ok(Some(OrgScope::Units(
                org::subtree_ids(&st.db, unit.id).await?,
            )))
        }
        None => Ok(None),
    }
}

// ---------------------------------------------------------------- records

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateIn {
    member_id: Option<i64>,
    name: Option<String>,
    id_number: Option<String>,
    birth_date: Option<String>,
    org_unit: Option<String>,
}

async fn create(
    State(st): State<AppState>,
    session: AdminSession,
    AppJson(body): AppJson<CreateIn>,
) -> DevResult<(StatusCode, AppJson<TimelineOut>)> {
    let id = service::create_record(
        &st,
        &session,
        NewRecordInput {
            member_id: body.member_id,
            name: body.name,
            id_number: body.id_number,
            birth_date: body.birth_date,
            org_unit: body.org_unit,
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        AppJson(timeline(&st, id, today(&session)).await?),
    ))
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub struct ListQuery {
    org_unit: Option<String>,
    #[schemars(extend("enum" = ["applicant", "activist", "target", "probationary", "full", "cancelled"]))]
    stage: Option<String>,
    /// `true`: only records with an overdue item.
    #[serde(default)]
    #[schemars(schema_with = "crate::http::doc::boolean")]
    overdue: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "crate::http::doc::page")]
    page: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "crate::http::doc::page_size_100")]
    page_size: Option<String>,
}

async fn list(
    State(st): State<AppState>,
    session: AdminSession,
    AppQuery(q): AppQuery<ListQuery>,
) -> AppResult<AppJson<ListOut<RecordOut>>> {
    let page = page_of(&q.page, &q.page_size, 100)?;
    let overdue = match blank_to_none(&q.overdue) {
        None | Some("false" | "0") => false,
        Some("true" | "1") => true,
        Some(_) => return Err(AppError::Validation("overdue: true or false".into())),
    };
    let (items, total) = records(&st, &session, &q.org_unit, &q.stage, overdue, page).await?;
    Ok(AppJson(ListOut {
        items,
        page: page.number,
        page_size: page.size,
        total,
    }))
}

/// One page of the records in the session's scope (an audited read): in an org unit's subtree,
/// at a stage, only those with an overdue item; with the total.
pub(super) async fn records(
    st: &AppState,
    session: &AdminSession,
    org_unit: &Option<String>,
    stage: &Option<String>,
    overdue: bool,
    page: crate::platform::db::Page,
) -> AppResult<(Vec<RecordOut>, i64)> {
    let stage = match blank_to_none(stage) {
        Some(s) => Some(Stage::parse(s).ok_or_else(|| {
            AppError::Validation(
                "stage: applicant, activist, target, probationary, full or cancelled".into(),
            )
        })?),
        None => None,
    };
    let scope = session.org_scope(&st.db).await?;
    let units = unit_filter(st, org_unit).await?;
    let today = today(session);
    let (loaded, total) = if overdue {
        // Overdue is computed from the rules, not stored: filter the open records, then page.
        let rows = store::all_records(&st.db, &scope, units.as_ref(), true).await?;
        let content = service::content(st);
        let defs = crate::development::definitions(&content);
        let late: Vec<Loaded> = service::load_many(&st.db, rows)
            .await?
            .into_iter()
            .filter(|l| stage.is_none_or(|s| l.record.stage == s.as_str()))
            .filter(|l| {
                service::compute(defs, l, today)
                    .deadlines
                    .iter()
                    .any(|d| d.status(today) == DeadlineStatus::Overdue)
            })
            .collect();
        let total = late.len() as i64;
        let skip = usize::try_from(page.offset()).unwrap_or(usize::MAX);
        let size = usize::try_from(page.size).unwrap_or(usize::MAX);
        (late.into_iter().skip(skip).take(size).collect(), total)
    } else {
        let (rows, total) = store::list_records(
            &st.db,
            &scope,
            units.as_ref(),
            stage.map(Stage::as_str),
            page.size,
            page.offset(),
        )
        .await?;
        (service::load_many(&st.db, rows).await?, total)
    };
    let entry = session
        .audit("development.list", "development_record", "")
        .details(json!({
            "org_unit": org_unit, "stage": stage.map(Stage::as_str), "overdue": overdue,
            "page": page.number,
            "record_ids": loaded.iter().map(|l| l.record.id).collect::<Vec<_>>(),
        }));
    audit::record(st.db.pool(), &entry).await?;
    let items = loaded
        .iter()
        .map(|l| record_out(st, l, today))
        .collect::<AppResult<Vec<_>>>()?;
    Ok((items, total))
}

async fn show(
    State(st): State<AppState>,
    session: AdminSession,
    Id(id): Id,
) -> AppResult<AppJson<TimelineOut>> {
    let scope = session.org_scope(&st.db).await?;
    service::visible_record(&st.db, &scope, id).await?;
    audit::record(
        st.db.pool(),
        &session.audit("development.read", "development_record", id),
    )
    .await?;
    Ok(AppJson(timeline(&st, id, today(&session)).await?))
}

// ---------------------------------------------------------------- steps and decisions

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepIn {
    step: String,
    date: String,
    opinion: Option<String>,
    #[serde(default)]
    documents: Vec<i64>,
    #[serde(default)]
    contacts: Vec<String>,
    class_hours: Option<u32>,
    end_date: Option<String>,
    extension_months: Option<u32>,
    delay_reason: Option<String>,
    corrects: Option<i64>,
    reason: Option<String>,
}

async fn add_step(
    State(st): State<AppState>,
    session: AdminSession,
    Id(id): Id,
    AppJson(body): AppJson<StepIn>,
) -> DevResult<(StatusCode, AppJson<ChangedOut>)> {
    let end_date = match blank_to_none(&body.end_date) {
        Some(d) => Some(service::date_field(d, "end_date")?),
        None => None,
    };
    let entry_id = service::add_step(
        &st,
        &session,
        id,
        StepInput {
            step: body.step,
            date: body.date,
            opinion: body.opinion,
            documents: body.documents,
            details: Details {
                contacts: body.contacts,
                class_hours: body.class_hours,
                end_date,
                extension_months: body.extension_months,
                delay_reason: body.delay_reason,
            },
            corrects: body.corrects,
            reason: body.reason,
        },
    )
    .await?;
    let timeline = timeline(&st, id, today(&session)).await?;
    Ok((
        StatusCode::CREATED,
        AppJson(ChangedOut { entry_id, timeline }),
    ))
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveIn {
    date: Option<String>,
    opinion: Option<String>,
    delay_reason: Option<String>,
}

async fn approve(
    State(st): State<AppState>,
    session: AdminSession,
    IdKey(id, step): IdKey,
    AppJson(body): AppJson<ApproveIn>,
) -> DevResult<AppJson<ChangedOut>> {
    let entry_id = service::decide(
        &st,
        &session,
        id,
        &step,
        DecisionInput {
            approve: true,
            date: body.date,
            opinion: body.opinion,
            delay_reason: body.delay_reason,
        },
    )
    .await?;
    let timeline = timeline(&st, id, today(&session)).await?;
    Ok(AppJson(ChangedOut { entry_id, timeline }))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReturnIn {
    #[schemars(length(min = 1, max = 500), regex(pattern = r"\S"))]
    reason: String,
}

async fn return_step(
    State(st): State<AppState>,
    session: AdminSession,
    IdKey(id, step): IdKey,
    AppJson(body): AppJson<ReturnIn>,
) -> DevResult<AppJson<ChangedOut>> {
    let entry_id = service::decide(
        &st,
        &session,
        id,
        &step,
        DecisionInput {
            approve: false,
            date: None,
            opinion: Some(body.reason),
            delay_reason: None,
        },
    )
    .await?;
    let timeline = timeline(&st, id, today(&session)).await?;
    Ok(AppJson(ChangedOut { entry_id, timeline }))
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct QueueItemOut {
    pub entry_id: i64,
    pub record_id: i64,
    pub name: String,
    pub org_unit: OrgUnitOut,
    pub step: String,
    pub step_name: String,
    pub date: String,
    pub submitted_by: String,
    pub submitted_at: String,
    pub documents: Vec<i64>,
    pub corrects: Option<i64>,
    pub delay_reason: Option<String>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ItemsOut<T> {
    pub items: Vec<T>,
    pub total: usize,
}

/// Entries waiting for the upper committee, oldest first.
async fn queue(
    State(st): State<AppState>,
    session: AdminSession,
) -> AppResult<AppJson<ItemsOut<QueueItemOut>>> {
    let scope = session.org_scope(&st.db).await?;
    let content = service::content(&st);
    let items: Vec<QueueItemOut> = store::submitted(&st.db, &scope)
        .await?
        .into_iter()
        .map(|(s, r)| QueueItemOut {
            entry_id: s.id,
            record_id: r.id,
            name: r.name,
            org_unit: OrgUnitOut {
                id: r.org_unit_id,
                name: r.org_unit,
            },
            step_name: crate::development::definitions(&content)
                .step(&s.step)
                .map(|d| d.name.clone())
                .unwrap_or_else(|| s.step.clone()),
            documents: service::documents_of(&s),
            delay_reason: service::details_of(&s).delay_reason,
            step: s.step,
            date: s.step_on,
            submitted_by: s.recorded_by,
            submitted_at: rfc3339_shanghai(s.recorded_at),
            corrects: s.corrects,
        })
        .collect();
    Ok(AppJson(ItemsOut {
        total: items.len(),
        items,
    }))
}

// ---------------------------------------------------------------- overdue, pipeline, stats

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub struct UnitQuery {
    pub(super) org_unit: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "crate::http::doc::json_or_csv")]
    pub(super) format: Option<String>,
    #[schemars(regex(pattern = r"^(1949|19[5-9][0-9]|2[01][0-9]{2}|2200)$"))]
    pub(super) year: Option<String>,
}

impl UnitQuery {
    /// `format`: json (default) or csv.
    fn csv(&self) -> AppResult<bool> {
        match blank_to_none(&self.format) {
            None | Some("json") => Ok(false),
            Some("csv") => Ok(true),
            Some(_) => Err(AppError::Validation("format: json or csv".into())),
        }
    }

    /// `year`: 1949 to 2200, `default` when absent.
    fn year(&self, default: i32) -> AppResult<i32> {
        match blank_to_none(&self.year) {
            None => Ok(default),
            Some(y) => y
                .parse::<i32>()
                .ok()
                .filter(|y| (1949..=2200).contains(y))
                .ok_or_else(|| AppError::Validation("year: a year such as 2025".into())),
        }
    }

    /// Every value is checked wherever the query is read, also by a handler that ignores it.
    fn check(&self) -> AppResult<(bool, i32)> {
        Ok((self.csv()?, self.year(0)?))
    }
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct OverdueOut {
    pub record_id: i64,
    pub name: String,
    pub org_unit: OrgUnitOut,
    pub stage: StageOut,
    pub rule: String,
    pub label: String,
    pub step: Option<String>,
    pub due: String,
    pub days_overdue: i64,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct UnitCountOut {
    pub org_unit: OrgUnitOut,
    pub count: usize,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct OverdueListOut {
    pub items: Vec<OverdueOut>,
    pub total: usize,
    pub by_org_unit: Vec<UnitCountOut>,
}

pub(super) async fn loaded_in_scope(
    st: &AppState,
    session: &AdminSession,
    q: &UnitQuery,
    open_only: bool,
) -> AppResult<Vec<Loaded>> {
    let scope = session.org_scope(&st.db).await?;
    let units = unit_filter(st, &q.org_unit).await?;
    let rows = store::all_records(&st.db, &scope, units.as_ref(), open_only).await?;
    service::load_many(&st.db, rows).await
}

fn unit_of(r: &RecordRow) -> OrgUnitOut {
    OrgUnitOut {
        id: r.org_unit_id,
        name: r.org_unit.clone(),
    }
}

/// Overdue items of open records, per branch then by due date.
async fn overdue(
    State(st): State<AppState>,
    session: AdminSession,
    AppQuery(q): AppQuery<UnitQuery>,
) -> AppResult<AppJson<OverdueListOut>> {
    q.check()?;
    let today = today(&session);
    let content = service::content(&st);
    let mut items = Vec::new();
    for l in loaded_in_scope(&st, &session, &q, true).await? {
        let c = service::compute(crate::development::definitions(&content), &l, today);
        for d in c
            .deadlines
            .iter()
            .filter(|d| d.status(today) == DeadlineStatus::Overdue)
        {
            items.push(OverdueOut {
                record_id: l.record.id,
                name: l.record.name.clone(),
                org_unit: unit_of(&l.record),
                stage: c.stage.into(),
                rule: d.rule.clone(),
                label: d.label.clone(),
                step: d.step.clone(),
                due: rules::format_date(d.due),
                days_overdue: rules::days_between(d.due, today),
            });
        }
    }
    items.sort_by(|a, b| {
        (&a.org_unit.name, &a.due, a.record_id).cmp(&(&b.org_unit.name, &b.due, b.record_id))
    });
    let mut by_unit: BTreeMap<(String, i64), usize> = BTreeMap::new();
    for i in &items {
        *by_unit
            .entry((i.org_unit.name.clone(), i.org_unit.id))
            .or_default() += 1;
    }
    Ok(AppJson(OverdueListOut {
        total: items.len(),
        items,
        by_org_unit: by_unit
            .into_iter()
            .map(|((name, id), count)| UnitCountOut {
                org_unit: OrgUnitOut { id, name },
                count,
            })
            .collect(),
    }))
}

/// People per stage in one branch.
#[derive(Debug, Default, Clone, Serialize, schemars::JsonSchema)]
pub struct StageCounts {
    pub applicant: usize,
    pub activist: usize,
    pub target: usize,
    pub probationary: usize,
    pub full: usize,
    pub cancelled: usize,
    pub total: usize,
}

impl StageCounts {
    fn add(&mut self, s: Stage) {
        *match s {
            Stage::Applicant => &mut self.applicant,
            Stage::Activist => &mut self.activist,
            Stage::Target => &mut self.target,
            Stage::Probationary => &mut self.probationary,
            Stage::Full => &mut self.full,
            Stage::Cancelled => &mut self.cancelled,
        } += 1;
        self.total += 1;
    }
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct UnitStagesOut {
    pub org_unit: OrgUnitOut,
    #[serde(flatten)]
    pub counts: StageCounts,
}

#[derive(Debug, Serialize)]
pub struct PipelineOut {
    pub rows: Vec<UnitStagesOut>,
    pub totals: StageCounts,
}

pub(super) fn by_unit<'a>(
    items: impl Iterator<Item = (&'a RecordRow, Stage)>,
) -> (Vec<UnitStagesOut>, StageCounts) {
    let mut map: BTreeMap<(String, i64), StageCounts> = BTreeMap::new();
    let mut totals = StageCounts::default();
    for (r, s) in items {
        map.entry((r.org_unit.clone(), r.org_unit_id))
            .or_default()
            .add(s);
        totals.add(s);
    }
    let rows = map
        .into_iter()
        .map(|((name, id), counts)| UnitStagesOut {
            org_unit: OrgUnitOut { id, name },
            counts,
        })
        .collect();
    (rows, totals)
}

/// How many people are at each stage, per branch; `?format=csv` for a spreadsheet.
async fn pipeline(
    State(st): State<AppState>,
    session: AdminSession,
    AppQuery(q): AppQuery<UnitQuery>,
) -> AppResult<Response> {
    let (csv, _) = q.check()?;
    let scope = session.org_scope(&st.db).await?;
    let units = unit_filter(&st, &q.org_unit).await?;
    let records = store::all_records(&st.db, &scope, units.as_ref(), false).await?;
    let (rows, totals) = by_unit(
        records
            .iter()
            .map(|r| (r, Stage::parse(&r.stage).unwrap_or(Stage::Applicant))),
    );
    if !csv {
        return Ok(AppJson(PipelineOut { rows, totals }).into_response());
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    let header: Vec<String> = ["org_unit".to_owned()]
        .into_iter()
        .chain(
            Stage::ALL
                .iter()
                .map(|s| format!("{} {}", s.as_str(), s.name())),
        )
        .chain(["total".to_owned()])
        .collect();
    let line = |name: &str, c: &StageCounts| -> Vec<String> {
        [
            name.to_owned(),
            c.applicant.to_string(),
            c.activist.to_string(),
            c.target.to_string(),
            c.probationary.to_string(),
            c.full.to_string(),
            c.cancelled.to_string(),
            c.total.to_string(),
        ]
        .into()
    };
    let err = |e: csv::Error| AppError::Internal(anyhow::anyhow!("pipeline csv: {e}"));
    w.write_record(&header).map_err(err)?;
    for r in &rows {
        w.write_record(line(&r.org_unit.name, &r.counts))
            .map_err(err)?;
    }
    w.write_record(line("合计", &totals)).map_err(err)?;
    let body = w
        .into_inner()
        .map_err(|e| AppError::Internal(anyhow::anyhow!("pipeline csv: {e}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"development-pipeline.csv\"",
            ),
        ],
        body,
    )
        .into_response())
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct MeanDaysOut {
    pub stage: StageOut,
    /// Records that left this stage during the year.
    pub records: usize,
    pub mean_days: Option<f64>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct StatsOut {
    pub year: i32,
    /// People who entered each stage during the year, per branch.
    pub entered: Vec<UnitStagesOut>,
    pub entered_totals: StageCounts,
    /// Mean days spent in each stage, over stays that ended during the year.
    pub mean_days: Vec<MeanDaysOut>,
    /// Overdue items today, per branch.
    pub overdue: Vec<UnitCountOut>,
    pub overdue_total: usize,
}

async fn stats(
    State(st): State<AppState>,
    session: AdminSession,
    AppQuery(q): AppQuery<UnitQuery>,
) -> AppResult<AppJson<StatsOut>> {
    let today = today(&session);
    q.check()?;
    let year = q.year(today.year())?;
    let content = service::content(&st);
    let defs = crate::development::definitions(&content);
    let loaded = loaded_in_scope(&st, &session, &q, false).await?;
    let mut entered: Vec<(&RecordRow, Stage)> = Vec::new();
    let mut durations: BTreeMap<Stage, Vec<i64>> = BTreeMap::new();
    let mut overdue: BTreeMap<(String, i64), usize> = BTreeMap::new();
    for l in &loaded {
        let c = service::compute(defs, l, today);
        let entries = rules::stage_entries(defs, &c.done);
        for (s, d) in &entries {
            if d.year() == year {
                entered.push((&l.record, *s));
            }
        }
        for (s, left, days) in rules::stage_durations(&entries) {
            if left.year() == year {
                durations.entry(s).or_default().push(days);
            }
        }
        let n = c
            .deadlines
            .iter()
            .filter(|d| d.status(today) == DeadlineStatus::Overdue)
            .count();
        if n > 0 {
            *overdue
                .entry((l.record.org_unit.clone(), l.record.org_unit_id))
                .or_default() += n;
        }
    }
    let (entered, entered_totals) = by_unit(entered.into_iter());
    let mean_days = Stage::ALL[..4]
        .iter()
        .map(|s| {
            let v = durations.get(s).map(Vec::as_slice).unwrap_or(&[]);
            MeanDaysOut {
                stage: (*s).into(),
                records: v.len(),
                mean_days: (!v.is_empty())
                    .then(|| (v.iter().sum::<i64>() as f64 / v.len() as f64 * 10.0).round() / 10.0),
            }
        })
        .collect();
    let overdue: Vec<UnitCountOut> = overdue
        .into_iter()
        .map(|((name, id), count)| UnitCountOut {
            org_unit: OrgUnitOut { id, name },
            count,
        })
        .collect();
    Ok(AppJson(StatsOut {
        year,
        entered,
        entered_totals,
        mean_days,
        overdue_total: overdue.iter().map(|o| o.count).sum(),
        overdue,
    }))
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub struct RemindersQuery {
    audience: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "crate::http::doc::page")]
    page: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "crate::http::doc::page_size_100")]
    page_size: Option<String>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ReminderOut {
    pub id: i64,
    pub record_id: i64,
    pub kind: String,
    pub due: String,
    pub audience: String,
    pub channel: String,
    pub status: String,
    pub message: String,
    pub error: Option<String>,
    pub created_at: String,
}

/// Reminders about records in scope, newest first: the secretaries' inbox (`?audience=secretary`).
async fn reminders(
    State(st): State<AppState>,
    session: AdminSession,
    AppQuery(q): AppQuery<RemindersQuery>,
) -> AppResult<AppJson<ListOut<ReminderOut>>> {
    let page = page_of(&q.page, &q.page_size, 100)?;
    let audience = match blank_to_none(&q.audience) {
        None => None,
        Some(a @ ("applicant" | "secretary")) => Some(a),
        Some(_) => {
            return Err(AppError::Validation(
                "audience: applicant or secretary".into(),
            ))
        }
    };
    let scope = session.org_scope(&st.db).await?;
    let (rows, total) =
        store::list_reminders(&st.db, &scope, audience, page.size, page.offset()).await?;
    Ok(AppJson(ListOut {
        items: rows
            .into_iter()
            .map(|r| ReminderOut {
                id: r.id,
                record_id: r.record_id,
                kind: r.kind,
                due: r.due_on,
                audience: r.audience,
                channel: r.channel,
                status: r.status,
                message: r.message,
                error: r.error,
                created_at: rfc3339_shanghai(r.created_at),
            })
            .collect(),
        page: page.number,
        page_size: page.size,
        total,
    }))
}

// ---------------------------------------------------------------- documents

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub struct UploadQuery {
    #[schemars(length(min = 1, max = 50), regex(pattern = r"\S"))]
    #[schemars(required)]
    kind: Option<String>,
    #[schemars(length(max = 200))]
    file_name: Option<String>,
}

/// `POST …/{id}/documents?kind=入党申请书&file_name=…` with the file as the body
/// (`Content-Type: application/pdf | image/jpeg | image/png`, at most 5 MiB).
async fn upload(
    State(st): State<AppState>,
    session: AdminSession,
    Id(id): Id,
    AppQuery(q): AppQuery<UploadQuery>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> AppResult<(StatusCode, AppJson<DocumentOut>)> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::PayloadTooLarge
        } else {
            AppError::BadRequest("could not read the body".into())
        }
    })?;
    let kind = service::text(&q.kind, "kind", 50)?
        .ok_or_else(|| AppError::Validation("kind: the document kind, e.g. 入党申请书".into()))?;
    let file_name =
        service::text(&q.file_name, "file_name", 200)?.unwrap_or_else(|| "document".into());
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let content_type = service::check_document(declared, &body)?;
    let doc = service::upload_document(
        &st,
        &session,
        id,
        Upload {
            kind: &kind,
            file_name: &file_name,
            content_type,
            bytes: &body,
        },
    )
    .await?;
    Ok((StatusCode::CREATED, AppJson(document_out(doc))))
}

async fn download(
    State(st): State<AppState>,
    session: AdminSession,
    path: Result<Path<(i64, i64)>, axum::extract::rejection::PathRejection>,
) -> AppResult<Response> {
    let Path((id, doc)) = path.map_err(|_| AppError::NotFound("document".into()))?;
    let (meta, bytes) = service::read_document(&st, &session, id, doc).await?;
    Ok((
        [
            (header::CONTENT_TYPE, meta.content_type),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"document-{}\"", meta.id),
            ),
        ],
        bytes,
    )
        .into_response())
}

// ---------------------------------------------------------------- thought reports

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportIn {
    content: String,
    /// The report's date (a paper report handed in earlier); default today.
    date: Option<String>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ReportCreatedOut {
    pub id: i64,
    pub date: String,
}

/// Record a paper thought report (counted like the mini-program's).
async fn add_report(
    State(st): State<AppState>,
    session: AdminSession,
    Id(id): Id,
    AppJson(body): AppJson<ReportIn>,
) -> DevResult<(StatusCode, AppJson<ReportCreatedOut>)> {
    let scope = session.org_scope(&st.db).await?;
    service::visible_record(&st.db, &scope, id).await?;
    let date = match blank_to_none(&body.date) {
        Some(d) => service::date_field(d, "date")?,
        None => today(&session),
    };
    let rid = service::add_report(&st, id, date, &body.content, Reporter::Admin(&session)).await?;
    Ok((
        StatusCode::CREATED,
        AppJson(ReportCreatedOut {
            id: rid,
            date: rules::format_date(date),
        }),
    ))
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ReportOut {
    pub id: i64,
    pub date: String,
    pub source: String,
    pub content: String,
    pub created_by: String,
    pub created_at: String,
}

/// The record's thought reports in full (an audited read).
async fn list_reports(
    State(st): State<AppState>,
    session: AdminSession,
    Id(id): Id,
) -> AppResult<AppJson<ItemsOut<ReportOut>>> {
    let scope = session.org_scope(&st.db).await?;
    service::visible_record(&st.db, &scope, id).await?;
    let rows = store::reports_of(&st.db, id).await?;
    audit::record(
        st.db.pool(),
        &session
            .audit("development.report.read", "development_record", id)
            .details(json!({"report_ids": rows.iter().map(|r| r.id).collect::<Vec<_>>()})),
    )
    .await?;
    let items = rows
        .into_iter()
        .map(|r| {
            Ok(ReportOut {
                id: r.id,
                date: r.report_on,
                source: r.source,
                content: st
                    .cipher
                    .open(store::REPORT_CONTENT.at(r.id), &r.content_enc)
                    .map_err(|e| {
                        AppError::Internal(sealed::refused(store::REPORT_CONTENT.at(r.id), e))
                    })?,
                created_by: r.created_by,
                created_at: rfc3339_shanghai(r.created_at),
            })
        })
        .collect::<AppResult<Vec<_>>>()?;
    Ok(AppJson(ItemsOut {
        total: items.len(),
        items,
    }))
}
