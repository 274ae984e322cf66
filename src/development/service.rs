//! 发展党员 transactions: creating a record, recording / submitting / correcting a step, the upper
//! committee's decisions, documents and thought reports — each in one transaction with its
//! audit entry, after the record's row lock, validated by `rules` against the current content
//! definitions. A refused step changes nothing (the transaction is dropped).

use std::{collections::HashMap, sync::Arc};

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use time::Date;

use super::{
    rules::{
        self, Deadline, Definitions, Details, Done, NextStep, Person, Proposal, RuleViolation,
        Stage,
    },
    store::{self, DocumentRow, NewDocument, NewRecord, NewStep, RecordRow, StepRow},
};
use crate::{
    app::AppState,
    auth::{AdminSession, Role},
    members::store as members,
    platform::{
        audit::{self, AuditEntry},
        content::ContentSet,
        db::{sealed, Db, Tx},
        error::{AppError, AppResult},
        org::{self, OrgScope},
        pii::{self, DataCipher},
    },
};

/// Uploads above this are refused with 413.
pub const MAX_DOCUMENT_BYTES: usize = 5 * 1024 * 1024;
pub const MAX_REPORT_CHARS: usize = 20_000;
pub const MAX_TEXT_CHARS: usize = 2_000;
const MAX_NAME_CHARS: usize = 50;

/// What the development handlers answer with: the one error shape, and for a broken time rule
/// `{"error":{"code":"rule_violation","message","rule","limit"?}}` (422).
#[derive(Debug)]
pub enum DevError {
    App(AppError),
    Rule(RuleViolation),
}

impl From<AppError> for DevError {
    fn from(e: AppError) -> Self {
        DevError::App(e)
    }
}

impl From<sqlx::Error> for DevError {
    fn from(e: sqlx::Error) -> Self {
        DevError::App(e.into())
    }
}

impl From<RuleViolation> for DevError {
    fn from(v: RuleViolation) -> Self {
        DevError::Rule(v)
    }
}

impl IntoResponse for DevError {
    fn into_response(self) -> Response {
        match self {
            DevError::App(e) => e.into_response(),
            DevError::Rule(v) => {
                tracing::debug!(rule = %v.rule, "development step refused");
                let mut error =
                    json!({"code": "rule_violation", "message": v.message, "rule": v.rule});
                if let Some(limit) = v.limit {
                    error["limit"] = json!(rules::format_date(limit));
                }
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Json(json!({"error": error})),
                )
                    .into_response()
            }
        }
    }
}

pub type DevResult<T> = Result<T, DevError>;

fn conflict(code: &'static str, message: impl Into<String>) -> AppError {
    AppError::rejected(StatusCode::CONFLICT, code, message)
}

fn internal(e: impl std::fmt::Display) -> AppError {
    AppError::Internal(anyhow::anyhow!("development: {e}"))
}

/// A text field: trimmed, `None` when blank, at most `max` characters.
pub fn text(v: &Option<String>, field: &str, max: usize) -> AppResult<Option<String>> {
    match v.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) if s.chars().count() > max => Err(AppError::Validation(format!(
            "{field}: at most {max} characters"
        ))),
        Some(s) => Ok(Some(s.to_owned())),
    }
}

pub fn date_field(v: &str, field: &str) -> AppResult<Date> {
    rules::parse_date(v)
        .ok_or_else(|| AppError::Validation(format!("{field}: a date is YYYY-MM-DD")))
}

// ---------------------------------------------------------------- a loaded record

/// A record with everything the rules look at.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub record: RecordRow,
    pub steps: Vec<StepRow>,
    pub reports: Vec<Date>,
}

/// The facts and what the rules derive from them, for one record on one day.
#[derive(Debug, Clone)]
pub struct Computed {
    pub done: Vec<Done>,
    pub stage: Stage,
    pub deadlines: Vec<Deadline>,
    pub next: Option<NextStep>,
    pub probation_end: Option<Date>,
}

pub fn details_of(s: &StepRow) -> Details {
    let mut d: Details = serde_json::from_str(&s.details).unwrap_or_default();
    if let Some(r) = &s.decision_delay_reason {
        d.delay_reason = Some(r.clone());
    }
    d
}

pub fn documents_of(s: &StepRow) -> Vec<i64> {
    serde_json::from_str(&s.documents).unwrap_or_default()
}

/// The effective date of an entry: approved entries count from the decision.
pub fn effective_date(s: &StepRow) -> Option<Date> {
    match s.status.as_str() {
        "recorded" => rules::parse_date(&s.step_on),
        "approved" => s.decided_on.as_deref().and_then(rules::parse_date),
        _ => None,
    }
}

/// Effective entries (recorded or approved), skipping `except`.
pub fn done_of(steps: &[StepRow], except: Option<i64>) -> Vec<Done> {
    steps
        .iter()
        .filter(|s| Some(s.id) != except)
        .filter_map(|s| {
            effective_date(s).map(|date| Done {
                step: s.step.clone(),
                date,
                details: details_of(s),
            })
        })
        .collect()
}

pub fn person_of(cipher: &DataCipher, r: &RecordRow) -> AppResult<Person> {
    let slot = store::BIRTH_DATE.at(r.id);
    let birth_date = cipher
        .open_opt(slot, r.birth_date_enc.as_deref())
        .map_err(|e| AppError::Internal(sealed::refused(slot, e)))?
        .and_then(|s| rules::parse_date(&s));
    Ok(Person { birth_date })
}

pub fn compute(defs: &Definitions, l: &Loaded, today: Date) -> Computed {
    let done = done_of(&l.steps, None);
    let stage = rules::stage_of(defs, &done);
    let submitted: Vec<String> = l
        .steps
        .iter()
        .filter(|s| s.status == "submitted")
        .map(|s| s.step.clone())
        .collect();
    Computed {
        deadlines: rules::deadlines(defs, &done, &l.reports, stage, today),
        next: rules::next_step(defs, &done, &submitted, stage),
        probation_end: rules::probation_end(defs, &done),
        stage,
        done,
    }
}

/// The record `id` if the session may see it (out of scope is "not found", like the roster).
pub async fn visible_record(db: &Db, scope: &OrgScope, id: i64) -> AppResult<RecordRow> {
    store::record(db.pool(), id)
        .await?
        .filter(|r| scope.contains(r.org_unit_id))
        .ok_or_else(|| AppError::NotFound("development record".into()))
}

pub async fn load(db: &Db, record: RecordRow) -> AppResult<Loaded> {
    let steps = store::steps_of(db.pool(), record.id).await?;
    let reports = store::report_dates(db, &[record.id])
        .await?
        .iter()
        .filter_map(|(_, d)| rules::parse_date(d))
        .collect();
    Ok(Loaded {
        record,
        steps,
        reports,
    })
}

/// Many records with their entries and report dates (pipeline, statistics, reminders).
pub async fn load_many(db: &Db, records: Vec<RecordRow>) -> AppResult<Vec<Loaded>> {
    let ids: Vec<i64> = records.iter().map(|r| r.id).collect();
    let mut steps: HashMap<i64, Vec<StepRow>> = HashMap::new();
    for s in store::steps_of_records(db, &ids).await? {
        steps.entry(s.record_id).or_default().push(s);
    }
    let mut reports: HashMap<i64, Vec<Date>> = HashMap::new();
    for (record, d) in store::report_dates(db, &ids).await? {
        if let Some(d) = rules::parse_date(&d) {
            reports.entry(record).or_default().push(d);
        }
    }
    Ok(records
        .into_iter()
        .map(|record| Loaded {
            steps: steps.remove(&record.id).unwrap_or_default(),
            reports: reports.remove(&record.id).unwrap_or_default(),
            record,
        })
        .collect())
}

pub fn content(st: &AppState) -> Arc<ContentSet> {
    st.content.get()
}

// ---------------------------------------------------------------- records

pub struct NewRecordInput {
    pub member_id: Option<i64>,
    pub name: Option<String>,
    pub id_number: Option<String>,
    pub birth_date: Option<String>,
    pub org_unit: Option<String>,
}

/// The birth date in a resident ID number (characters 7–14, YYYYMMDD).
pub fn birth_date_of_id(id: &str) -> Option<Date> {
    let s = id.get(6..14)?;
    rules::parse_date(&format!("{}-{}-{}", &s[..4], &s[4..6], &s[6..8]))
}

/// `POST /api/admin/development`: a roster member (`member_id`), or a person off the roster
/// (`name`, `org_unit`, and `id_number` or `birth_date` for the age rule).
pub async fn create_record(
    st: &AppState,
    session: &AdminSession,
    input: NewRecordInput,
) -> DevResult<i64> {
    let scope = session.org_scope(&st.db).await?;
    let name_in = text(&input.name, "name", MAX_NAME_CHARS)?;
    let unit_in = text(&input.org_unit, "org_unit", 100)?;
    let (name, org_unit_id, roster_id_number) = match input.member_id {
        Some(member_id) => {
            if name_in.is_some() || unit_in.is_some() {
                return Err(AppError::Validation(
                    "with member_id, the name and org unit come from the roster".into(),
                )
                .into());
            }
            let m = members::by_id(&st.db, member_id)
                .await?
                .filter(|m| scope.contains(m.org_unit_id))
                .ok_or_else(|| AppError::NotFound("member".into()))?;
            let slot = members::ID_NUMBER.at(m.id);
            let id_number = st
                .cipher
                .open_opt(slot, m.id_number_enc.as_deref())
                .map_err(|e| AppError::Internal(sealed::refused(slot, e)))?;
            (m.name, m.org_unit_id, id_number)
        }
        None => {
            let name = name_in.ok_or_else(|| {
                AppError::Validation("name is required (or member_id for a roster member)".into())
            })?;
            let unit =
                unit_in.ok_or_else(|| AppError::Validation("org_unit is required".into()))?;
            let unit = org::find_by_name(st.db.pool(), &unit)
                .await?
                .ok_or_else(|| AppError::NotFound("org unit".into()))?;
            scope.require(unit.id)?;
            (name, unit.id, None)
        }
    };
    let id_number = match text(&input.id_number, "id_number", 30)? {
        Some(raw) => Some(pii::normalize_id_number(&raw).ok_or_else(|| {
            AppError::Validation("id_number: not a valid resident ID number".into())
        })?),
        None => roster_id_number,
    };
    let mut birth = id_number.as_deref().and_then(birth_date_of_id);
    if let Some(b) = text(&input.birth_date, "birth_date", 10)? {
        let given = date_field(&b, "birth_date")?;
        if birth.is_some_and(|d| d != given) {
            return Err(
                AppError::Validation("birth_date does not match the ID number".into()).into(),
            );
        }
        birth = Some(given);
    }
    if let Some(member_id) = input.member_id {
        if store::by_member(&st.db, member_id).await?.is_some() {
            return Err(conflict(
                "record_exists",
                "this member already has a development record",
            )
            .into());
        }
    }
    if let Some(id) = &id_number {
        let idx = st.cipher.blind_index_candidates("id_number", id);
        if !store::ids_by_id_number(&st.db, &idx).await?.is_empty() {
            return Err(conflict(
                "record_exists",
                "this person already has a development record",
            )
            .into());
        }
    }
    let id_idx = id_number
        .as_deref()
        .map(|v| st.cipher.blind_index("id_number", v));
    let birth_text = birth.map(rules::format_date);
    let now = session.now;
    let mut tx = st.db.begin_write().await?;
    let id = store::insert_record(
        &mut tx,
        &NewRecord {
            member_id: input.member_id,
            name: &name,
            id_number_idx: id_idx.as_deref(),
            org_unit_id,
            created_by: &session.username,
        },
        now,
    )
    .await
    .map_err(|e| match e {
        sqlx::Error::Database(d) if d.is_unique_violation() => DevError::App(conflict(
            "record_exists",
            "this person already has a development record",
        )),
        e => e.into(),
    })?;
    let cipher = &st.cipher;
    sealed::write(&mut tx, cipher, store::ID_NUMBER, id, id_number.as_deref()).await?;
    sealed::write(
        &mut tx,
        cipher,
        store::BIRTH_DATE,
        id,
        birth_text.as_deref(),
    )
    .await?;
    let entry = session
        .audit("development.create", "development_record", id)
        .details(json!({
            "member_id": input.member_id, "org_unit_id": org_unit_id,
            "id_number": id_number.is_some(), "birth_date": birth.is_some(),
        }));
    audit::record(&mut *tx, &entry).await?;
    tx.commit().await?;
    Ok(id)
}

// ---------------------------------------------------------------- steps

pub struct StepInput {
    pub step: String,
    pub date: String,
    pub opinion: Option<String>,
    pub documents: Vec<i64>,
    pub details: Details,
    pub corrects: Option<i64>,
    pub reason: Option<String>,
}

/// Within the record's transaction: the record, its entries and documents.
async fn lock_and_load(
    tx: &mut Tx,
    id: i64,
    now: i64,
) -> AppResult<(RecordRow, Vec<StepRow>, Vec<DocumentRow>)> {
    if !store::lock_record(tx, id, now).await? {
        return Err(AppError::NotFound("development record".into()));
    }
    let record = store::record(&mut **tx, id)
        .await?
        .ok_or_else(|| AppError::NotFound("development record".into()))?;
    let steps = store::steps_of(&mut **tx, id).await?;
    let documents = store::documents_of(&mut **tx, id).await?;
    Ok((record, steps, documents))
}

/// After a correction of `step`, the effective entries that depend on it must still hold.
fn revalidate_dependents(
    defs: &Definitions,
    person: &Person,
    done: &[Done],
    step: &str,
    today: Date,
) -> Result<(), RuleViolation> {
    for (i, d) in done.iter().enumerate() {
        let Some(def) = defs.step(&d.step) else {
            continue;
        };
        let depends = def.requires.iter().any(|r| r == step)
            || def.rules.iter().any(|r| match &r.kind {
                rules::RuleKind::MinAfter { after, .. }
                | rules::RuleKind::WithinAfter { after, .. } => after == step,
                rules::RuleKind::MinCount { step: s, .. } => s == step,
                rules::RuleKind::AfterProbationEnd => defs.probation.from == step,
                _ => false,
            });
        if !depends {
            continue;
        }
        let others: Vec<Done> = done
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, d)| d.clone())
            .collect();
        rules::validate(
            defs,
            person,
            &others,
            &Proposal {
                step: def,
                date: d.date,
                details: &d.details,
                document_kinds: None,
                today,
            },
        )
        .map_err(|v| RuleViolation {
            message: format!("the correction would break 「{}」: {}", def.name, v.message),
            ..v
        })?;
    }
    Ok(())
}

/// `POST /api/admin/development/{id}/steps`: record a step (or submit it for the upper
/// committee's approval), or correct an effective entry (`corrects` + `reason`). Returns the
/// new entry's id.
pub async fn add_step(
    st: &AppState,
    session: &AdminSession,
    id: i64,
    input: StepInput,
) -> DevResult<i64> {
    let content = content(st);
    let defs = crate::development::definitions(&content);
    let def = defs.step(input.step.trim()).ok_or_else(|| {
        AppError::Validation(format!("step: unknown step `{}`", input.step.trim()))
    })?;
    let date = date_field(&input.date, "date")?;
    let opinion = text(&input.opinion, "opinion", MAX_TEXT_CHARS)?;
    let reason = text(&input.reason, "reason", MAX_TEXT_CHARS)?;
    let mut details = input.details;
    details.delay_reason = text(&details.delay_reason, "delay_reason", MAX_TEXT_CHARS)?;
    details.contacts = details
        .contacts
        .iter()
        .map(|c| c.trim().to_owned())
        .collect();
    if details.contacts.len() > 10
        || details
            .contacts
            .iter()
            .any(|c| c.chars().count() > MAX_NAME_CHARS)
    {
        return Err(AppError::Validation(
            "contacts: at most 10 names of at most 50 characters".into(),
        )
        .into());
    }
    if input.documents.len() > 20 {
        return Err(AppError::Validation("documents: at most 20".into()).into());
    }
    let scope = session.org_scope(&st.db).await?;
    visible_record(&st.db, &scope, id).await?;
    if def.role == rules::Recorder::Admin && session.role != Role::Admin {
        return Err(AppError::Forbidden(format!(
            "「{}」 is recorded by the upper committee (an administrator)",
            def.name
        ))
        .into());
    }
    if input.corrects.is_some() && reason.is_none() {
        return Err(AppError::Validation("a correction needs a `reason`".into()).into());
    }

    let now = session.now;
    let today = rules::today(now);
    let mut tx = st.db.begin_write().await?;
    let (record, steps, documents) = lock_and_load(&mut tx, id, now).await?;
    let stage = Stage::parse(&record.stage).unwrap_or(Stage::Applicant);
    if !stage.is_open() {
        return Err(conflict(
            "record_closed",
            format!("the record is closed ({})", stage.name()),
        )
        .into());
    }
    let mut kinds = Vec::new();
    for doc in &input.documents {
        let d = documents.iter().find(|d| d.id == *doc).ok_or_else(|| {
            AppError::Validation(format!("documents: {doc} is not a document of this record"))
        })?;
        kinds.push(d.kind.clone());
    }
    let corrected = match input.corrects {
        Some(eid) => {
            let old = steps
                .iter()
                .find(|s| s.id == eid && s.step == def.key && effective_date(s).is_some())
                .ok_or_else(|| {
                    AppError::Validation(format!(
                        "corrects: {eid} is not an effective entry of this step"
                    ))
                })?;
            Some(old.id)
        }
        None => {
            if !def.repeatable
                && steps
                    .iter()
                    .any(|s| s.step == def.key && effective_date(s).is_some())
            {
                return Err(conflict(
                    "step_already_recorded",
                    format!("「{}」 is already recorded; send a correction (`corrects`, `reason`) to change it", def.name),
                )
                .into());
            }
            if def.stage < stage {
                return Err(RuleViolation {
                    rule: "stage_already_passed".into(),
                    message: format!("{}: the record is already at {}", def.name, stage.name()),
                    limit: None,
                }
                .into());
            }
            None
        }
    };
    if steps
        .iter()
        .any(|s| s.step == def.key && s.status == "submitted")
    {
        return Err(conflict(
            "awaiting_approval",
            format!("「{}」 is waiting for the upper committee", def.name),
        )
        .into());
    }
    let person = person_of(&st.cipher, &record)?;
    let done = done_of(&steps, corrected);
    rules::validate(
        defs,
        &person,
        &done,
        &Proposal {
            step: def,
            date,
            details: &details,
            document_kinds: Some(&kinds),
            today,
        },
    )?;
    if corrected.is_some() {
        let mut after = done.clone();
        after.push(Done {
            step: def.key.clone(),
            date,
            details: details.clone(),
        });
        revalidate_dependents(defs, &person, &after, &def.key, today)?;
    }
    let status = if def.approval {
        "submitted"
    } else {
        "recorded"
    };
    let details_json = serde_json::to_string(&details).map_err(internal)?;
    let documents_json = serde_json::to_string(&input.documents).map_err(internal)?;
    let step_on = rules::format_date(date);
    let entry_id = store::insert_step(
        &mut tx,
        &NewStep {
            record_id: id,
            step: &def.key,
            step_on: &step_on,
            status,
            opinion: opinion.as_deref(),
            opinion_of: def.opinion_of.map(|o| o.as_str()),
            details: &details_json,
            documents: &documents_json,
            corrects: corrected,
            correction_reason: reason.as_deref(),
            recorded_by: &session.username,
            recorded_by_id: Some(session.user_id),
        },
        now,
    )
    .await
    .map_err(|e| match e {
        sqlx::Error::Database(d) if d.is_unique_violation() => DevError::App(conflict(
            "awaiting_approval",
            format!("「{}」 is waiting for the upper committee", def.name),
        )),
        e => e.into(),
    })?;
    if let (Some(old), "recorded") = (corrected, status) {
        store::supersede(&mut tx, old, now).await?;
    }
    let action = match (corrected, def.approval) {
        (Some(_), _) => "development.step.correct",
        (None, true) => "development.step.submit",
        (None, false) => "development.step.record",
    };
    let entry = session
        .audit(action, "development_record", id)
        .details(json!({
            "entry_id": entry_id, "step": def.key, "date": step_on, "status": status,
            "corrects": corrected, "reason": reason, "documents": input.documents,
            "opinion": opinion.is_some(),
        }));
    audit::record(&mut *tx, &entry).await?;
    apply_stage(&mut tx, session, defs, &record).await?;
    tx.commit().await?;
    Ok(entry_id)
}

pub struct DecisionInput {
    pub approve: bool,
    pub date: Option<String>,
    pub opinion: Option<String>,
    pub delay_reason: Option<String>,
}

/// The upper committee approves (dated `date`, default today) or returns (with a reason) the
/// entry of `step` waiting in its queue.
pub async fn decide(
    st: &AppState,
    session: &AdminSession,
    id: i64,
    step: &str,
    input: DecisionInput,
) -> DevResult<i64> {
    let content = content(st);
    let defs = crate::development::definitions(&content);
    let opinion = text(
        &input.opinion,
        if input.approve { "opinion" } else { "reason" },
        MAX_TEXT_CHARS,
    )?;
    let delay_reason = text(&input.delay_reason, "delay_reason", MAX_TEXT_CHARS)?;
    if !input.approve && opinion.is_none() {
        return Err(AppError::Validation("reason: say why the step is returned".into()).into());
    }
    let scope = session.org_scope(&st.db).await?;
    visible_record(&st.db, &scope, id).await?;
    let now = session.now;
    let today = rules::today(now);
    let date = match input
        .date
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        Some(d) => date_field(d, "date")?,
        None => today,
    };
    let mut tx = st.db.begin_write().await?;
    let (record, steps, _) = lock_and_load(&mut tx, id, now).await?;
    let entry = steps
        .iter()
        .find(|s| s.step == step && s.status == "submitted")
        .ok_or_else(|| AppError::NotFound(format!("an entry of `{step}` awaiting approval")))?
        .clone();
    let def = defs
        .step(&entry.step)
        .ok_or_else(|| AppError::Validation(format!("step `{step}` is no longer defined")))?;
    let decided_on = rules::format_date(date);
    if input.approve {
        let submitted_on = rules::parse_date(&entry.step_on).unwrap_or(date);
        if date < submitted_on {
            return Err(RuleViolation {
                rule: "decision_not_before_submission".into(),
                message: format!(
                    "{}: the decision may not be dated before the submission ({})",
                    def.name, entry.step_on
                ),
                limit: Some(submitted_on),
            }
            .into());
        }
        let mut details = details_of(&entry);
        if delay_reason.is_some() {
            details.delay_reason = delay_reason.clone();
        }
        let person = person_of(&st.cipher, &record)?;
        let done = done_of(&steps, entry.corrects);
        rules::validate(
            defs,
            &person,
            &done,
            &Proposal {
                step: def,
                date,
                details: &details,
                document_kinds: None,
                today,
            },
        )?;
        if entry.corrects.is_some() {
            let mut after = done.clone();
            after.push(Done {
                step: def.key.clone(),
                date,
                details,
            });
            revalidate_dependents(defs, &person, &after, &def.key, today)?;
        }
    }
    let decision = store::Decision {
        status: if input.approve {
            "approved"
        } else {
            "returned"
        },
        decided_on: Some(&decided_on),
        decided_by: &session.username,
        opinion: opinion.as_deref(),
        delay_reason: delay_reason.as_deref().filter(|_| input.approve),
    };
    if !store::decide(&mut tx, entry.id, &decision, now).await? {
        return Err(conflict("already_decided", "this entry was decided meanwhile").into());
    }
    if let (true, Some(old)) = (input.approve, entry.corrects) {
        store::supersede(&mut tx, old, now).await?;
    }
    let action = if input.approve {
        "development.step.approve"
    } else {
        "development.step.return"
    };
    let audit_entry = session
        .audit(action, "development_record", id)
        .details(json!({
            "entry_id": entry.id, "step": entry.step, "decided_on": decided_on,
            "opinion": opinion, "delay_reason": delay_reason,
        }));
    audit::record(&mut *tx, &audit_entry).await?;
    apply_stage(&mut tx, session, defs, &record).await?;
    tx.commit().await?;
    Ok(entry.id)
}

/// Recompute the record's stage from its entries (in `tx`); on admission and on confirmation,
/// the roster member's Party status follows (audited).
async fn apply_stage(
    tx: &mut Tx,
    session: &AdminSession,
    defs: &Definitions,
    before: &RecordRow,
) -> AppResult<()> {
    let steps = store::steps_of(&mut **tx, before.id).await?;
    let done = done_of(&steps, None);
    let stage = rules::stage_of(defs, &done);
    let since = rules::stage_entries(defs, &done)
        .into_iter()
        .find(|(s, _)| *s == stage)
        .map(|(_, d)| rules::format_date(d));
    let full_since = (stage == Stage::Full)
        .then(|| rules::probation_end(defs, &done))
        .flatten()
        .map(rules::format_date);
    store::set_stage(
        tx,
        before.id,
        stage.as_str(),
        since.as_deref(),
        full_since.as_deref(),
        session.now,
    )
    .await?;
    let old = Stage::parse(&before.stage).unwrap_or(Stage::Applicant);
    if old == stage {
        return Ok(());
    }
    let entry = session
        .audit("development.stage", "development_record", before.id)
        .details(json!({"from": old.as_str(), "to": stage.as_str(), "since": since}));
    audit::record(&mut **tx, &entry).await?;
    let party_status = match stage {
        Stage::Probationary => "probationary",
        Stage::Full => "full",
        _ => return Ok(()),
    };
    let Some(member_id) = before.member_id else {
        return Ok(());
    };
    // 入党时间: the branch meeting that admitted the member.
    let joined = rules::first_date(&done, &defs.probation.from).map(rules::start_of_day_ms);
    if members::set_party_status(tx, member_id, party_status, joined, session.now).await? {
        let entry = session
            .audit("member.party_status", "member", member_id)
            .details(
                json!({"party_status": party_status, "via": "development", "record_id": before.id}),
            );
        audit::record(&mut **tx, &entry).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------- documents

/// The content types accepted, with the bytes each must start with.
const ACCEPTED: [(&str, &[u8]); 3] = [
    ("application/pdf", b"%PDF-"),
    ("image/jpeg", &[0xFF, 0xD8, 0xFF]),
    (
        "image/png",
        &[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A],
    ),
];

/// `Ok(content type)` when `declared` is accepted and the bytes look like it.
pub fn check_document(declared: &str, bytes: &[u8]) -> AppResult<&'static str> {
    let declared = declared
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let (ctype, magic) = ACCEPTED
        .iter()
        .find(|(t, _)| *t == declared)
        .ok_or_else(|| {
            AppError::rejected(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "documents are application/pdf, image/jpeg or image/png",
            )
        })?;
    if bytes.is_empty() {
        return Err(AppError::Validation("the document is empty".into()));
    }
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(AppError::PayloadTooLarge);
    }
    if !bytes.starts_with(magic) {
        return Err(AppError::rejected(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("the content is not {ctype}"),
        ));
    }
    Ok(ctype)
}

pub struct Upload<'a> {
    pub kind: &'a str,
    pub file_name: &'a str,
    pub content_type: &'static str,
    pub bytes: &'a [u8],
}

/// Store an uploaded document, encrypted like other personal data; returns its metadata.
pub async fn upload_document(
    st: &AppState,
    session: &AdminSession,
    id: i64,
    u: Upload<'_>,
) -> AppResult<DocumentRow> {
    let scope = session.org_scope(&st.db).await?;
    visible_record(&st.db, &scope, id).await?;
    let sha = hex::encode(Sha256::digest(u.bytes));
    let now = session.now;
    let mut tx = st.db.begin_write().await?;
    if !store::lock_record(&mut tx, id, now).await? {
        return Err(AppError::NotFound("development record".into()));
    }
    let doc_id = store::insert_document(
        &mut tx,
        &NewDocument {
            record_id: id,
            kind: u.kind,
            file_name: u.file_name,
            content_type: u.content_type,
            size_bytes: u.bytes.len() as i64,
            sha256: &sha,
            uploaded_by: &session.username,
        },
        now,
    )
    .await?;
    let content = B64.encode(u.bytes);
    sealed::write(
        &mut tx,
        &st.cipher,
        store::DOCUMENT_CONTENT,
        doc_id,
        Some(&content),
    )
    .await?;
    let entry = session
        .audit("development.document.upload", "development_record", id)
        .details(json!({
            "document_id": doc_id, "kind": u.kind, "content_type": u.content_type,
            "size_bytes": u.bytes.len(), "sha256": sha,
        }));
    audit::record(&mut *tx, &entry).await?;
    tx.commit().await?;
    Ok(DocumentRow {
        id: doc_id,
        record_id: id,
        kind: u.kind.to_owned(),
        file_name: u.file_name.to_owned(),
        content_type: u.content_type.to_owned(),
        size_bytes: u.bytes.len() as i64,
        sha256: sha,
        uploaded_by: session.username.clone(),
        uploaded_at: now,
    })
}

/// A document's bytes (the read is audited first).
pub async fn read_document(
    st: &AppState,
    session: &AdminSession,
    id: i64,
    doc_id: i64,
) -> AppResult<(DocumentRow, Vec<u8>)> {
    let scope = session.org_scope(&st.db).await?;
    visible_record(&st.db, &scope, id).await?;
    let (meta, enc) = store::document(&st.db, id, doc_id)
        .await?
        .ok_or_else(|| AppError::NotFound("document".into()))?;
    let slot = store::DOCUMENT_CONTENT.at(doc_id);
    let b64 = st
        .cipher
        .open(slot, &enc)
        .map_err(|e| AppError::Internal(sealed::refused(slot, e)))?;
    let bytes = B64.decode(b64).map_err(internal)?;
    let entry = session
        .audit("development.document.read", "development_record", id)
        .details(json!({"document_id": doc_id}));
    audit::record(st.db.pool(), &entry).await?;
    Ok((meta, bytes))
}

// ---------------------------------------------------------------- thought reports

/// Who wrote a thought report into the record.
pub enum Reporter<'a> {
    /// The member, from the mini-program.
    Member {
        member_id: i64,
    },
    Admin(&'a AdminSession),
}

/// Add a thought report dated `date` (the mini-program: today) to an open record.
pub async fn add_report(
    st: &AppState,
    record_id: i64,
    date: Date,
    content: &str,
    by: Reporter<'_>,
) -> DevResult<i64> {
    let content = content.trim();
    if content.is_empty() || content.chars().count() > MAX_REPORT_CHARS {
        return Err(
            AppError::Validation(format!("content: 1 to {MAX_REPORT_CHARS} characters")).into(),
        );
    }
    let now = st.clock.unix_ms();
    let today = rules::today(now);
    if date > today {
        return Err(RuleViolation {
            rule: "date_not_in_future".into(),
            message: format!(
                "the report date {} is after today",
                rules::format_date(date)
            ),
            limit: Some(today),
        }
        .into());
    }
    let mut tx = st.db.begin_write().await?;
    if !store::lock_record(&mut tx, record_id, now).await? {
        return Err(AppError::NotFound("development record".into()).into());
    }
    let record = store::record(&mut *tx, record_id)
        .await?
        .ok_or_else(|| AppError::NotFound("development record".into()))?;
    if !Stage::parse(&record.stage).is_some_and(Stage::is_open) {
        return Err(conflict("record_closed", "the development record is closed").into());
    }
    let (source, created_by) = match &by {
        Reporter::Member { member_id } => ("mp", format!("member:{member_id}")),
        Reporter::Admin(s) => ("admin", s.username.clone()),
    };
    let report_on = rules::format_date(date);
    let rid =
        store::insert_report(&mut tx, record_id, &report_on, source, &created_by, now).await?;
    sealed::write(
        &mut tx,
        &st.cipher,
        store::REPORT_CONTENT,
        rid,
        Some(content),
    )
    .await?;
    let details = json!({"report_id": rid, "date": report_on, "source": source, "chars": content.chars().count()});
    let entry = match by {
        Reporter::Member { .. } => AuditEntry::system(
            now,
            &created_by,
            "development.report.submit",
            "development_record",
            Some(record_id.to_string()),
        )
        .details(details),
        Reporter::Admin(s) => s
            .audit("development.report.add", "development_record", record_id)
            .details(details),
    };
    audit::record(&mut *tx, &entry).await?;
    tx.commit().await?;
    Ok(rid)
}

// ---------------------------------------------------------------- views shared by the handlers

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct StageOut {
    pub key: &'static str,
    pub name: &'static str,
}

impl From<Stage> for StageOut {
    fn from(s: Stage) -> Self {
        StageOut {
            key: s.as_str(),
            name: s.name(),
        }
    }
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct NextStepOut {
    pub step: String,
    pub name: String,
    /// The first date the rules allow (YYYY-MM-DD), when they set one.
    pub earliest: Option<String>,
    /// The last date the rules allow, when they set one.
    pub due: Option<String>,
    pub awaiting_approval: bool,
}

impl From<&NextStep> for NextStepOut {
    fn from(n: &NextStep) -> Self {
        NextStepOut {
            step: n.step.clone(),
            name: n.name.clone(),
            earliest: n.earliest.map(rules::format_date),
            due: n.due.map(rules::format_date),
            awaiting_approval: n.awaiting_approval,
        }
    }
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct DeadlineOut {
    pub rule: String,
    pub label: String,
    pub step: Option<String>,
    pub period_start: Option<String>,
    pub due: String,
    pub status: rules::DeadlineStatus,
    pub met_on: Option<String>,
}

pub fn deadline_out(d: &Deadline, today: Date) -> DeadlineOut {
    DeadlineOut {
        rule: d.rule.clone(),
        label: d.label.clone(),
        step: d.step.clone(),
        period_start: d.period_start.map(rules::format_date),
        due: rules::format_date(d.due),
        status: d.status(today),
        met_on: d.met_on.map(rules::format_date),
    }
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ReportsSummary {
    pub count: usize,
    pub last_on: Option<String>,
}

pub fn reports_summary(l: &Loaded) -> ReportsSummary {
    ReportsSummary {
        count: l.reports.len(),
        last_on: l.reports.iter().max().copied().map(rules::format_date),
    }
}
