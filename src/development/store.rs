//! The SQL of 发展党员: development records, their step entries, documents, thought reports and
//! reminders. The only place these tables are read or written. Personal data stays encrypted
//! here (`*_enc`); dates are `YYYY-MM-DD` text.

use sqlx::{Any, Executor, Row};

use crate::platform::{
    db::{Db, Tx},
    org::OrgScope,
    pii::Column,
};

// ---------------------------------------------------------------- records

#[derive(Debug, Clone)]
pub struct RecordRow {
    pub id: i64,
    pub member_id: Option<i64>,
    pub name: String,
    pub id_number_enc: Option<String>,
    pub birth_date_enc: Option<String>,
    pub org_unit_id: i64,
    pub org_unit: String,
    pub stage: String,
    pub stage_since: Option<String>,
    pub full_member_since: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const RECORD: &str = "SELECT r.id, r.member_id, r.name, r.id_number_enc, r.birth_date_enc, \
     r.org_unit_id, o.name, r.stage, r.stage_since, r.full_member_since, r.created_by, \
     r.created_at, r.updated_at FROM development_records r JOIN org_units o ON o.id = r.org_unit_id";

fn record_row(r: &sqlx::any::AnyRow) -> RecordRow {
    RecordRow {
        id: r.get(0),
        member_id: r.get(1),
        name: r.get(2),
        id_number_enc: r.get(3),
        birth_date_enc: r.get(4),
        org_unit_id: r.get(5),
        org_unit: r.get(6),
        stage: r.get(7),
        stage_since: r.get(8),
        full_member_since: r.get(9),
        created_by: r.get(10),
        created_at: r.get(11),
        updated_at: r.get(12),
    }
}

pub struct NewRecord<'a> {
    pub member_id: Option<i64>,
    pub name: &'a str,
    pub id_number_idx: Option<&'a str>,
    pub org_unit_id: i64,
    pub created_by: &'a str,
}

pub async fn insert_record(tx: &mut Tx, r: &NewRecord<'_>, now: i64) -> sqlx::Result<i64> {
    Ok(sqlx::query(
        "INSERT INTO development_records (member_id, name, id_number_idx, \
         org_unit_id, stage, created_by, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 'applicant', $5, $6, $6) RETURNING id",
    )
    .bind(r.member_id)
    .bind(r.name)
    .bind(r.id_number_idx)
    .bind(r.org_unit_id)
    .bind(r.created_by)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?
    .get(0))
}

pub async fn record<'c, E>(exec: E, id: i64) -> sqlx::Result<Option<RecordRow>>
where
    E: Executor<'c, Database = Any>,
{
    let sql = format!("{RECORD} WHERE r.id = $1");
    Ok(sqlx::query(&sql)
        .bind(id)
        .fetch_optional(exec)
        .await?
        .as_ref()
        .map(record_row))
}

/// Take the record's row lock for the rest of the transaction (PostgreSQL: the UPDATE holds it;
/// SQLite: the write transaction already serialises writers). False: no such record.
pub async fn lock_record(tx: &mut Tx, id: i64, now: i64) -> sqlx::Result<bool> {
    Ok(
        sqlx::query("UPDATE development_records SET updated_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&mut **tx)
            .await?
            .rows_affected()
            == 1,
    )
}

pub async fn by_member(db: &Db, member_id: i64) -> sqlx::Result<Option<RecordRow>> {
    let sql = format!("{RECORD} WHERE r.member_id = $1");
    Ok(sqlx::query(&sql)
        .bind(member_id)
        .fetch_optional(db.pool())
        .await?
        .as_ref()
        .map(record_row))
}

/// Record ids with this ID-number blind index (any key during a rotation).
pub async fn ids_by_id_number(db: &Db, indexes: &[String]) -> sqlx::Result<Vec<i64>> {
    let mut out = Vec::new();
    for idx in indexes {
        if let Some(r) = sqlx::query("SELECT id FROM development_records WHERE id_number_idx = $1")
            .bind(idx)
            .fetch_optional(db.pool())
            .await?
        {
            out.push(r.get(0));
        }
    }
    Ok(out)
}

pub async fn set_stage(
    tx: &mut Tx,
    id: i64,
    stage: &str,
    stage_since: Option<&str>,
    full_member_since: Option<&str>,
    now: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE development_records SET stage = $1, stage_since = $2, full_member_since = $3, \
         updated_at = $4 WHERE id = $5",
    )
    .bind(stage)
    .bind(stage_since)
    .bind(full_member_since)
    .bind(now)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn record_filter(
    scope: &OrgScope,
    units: Option<&OrgScope>,
    stage: Option<&str>,
) -> (String, Vec<String>) {
    let mut cond = vec![scope.sql_condition("r.org_unit_id")];
    if let Some(u) = units {
        cond.push(u.sql_condition("r.org_unit_id"));
    }
    let mut args = Vec::new();
    if let Some(s) = stage {
        args.push(s.to_owned());
        cond.push(format!("r.stage = ${}", args.len()));
    }
    (cond.join(" AND "), args)
}

/// One page of records in scope (optionally one org-unit subtree and one stage), by id.
pub async fn list_records(
    db: &Db,
    scope: &OrgScope,
    units: Option<&OrgScope>,
    stage: Option<&str>,
    limit: i64,
    offset: i64,
) -> sqlx::Result<(Vec<RecordRow>, i64)> {
    let (where_, args) = record_filter(scope, units, stage);
    let count_sql = format!("SELECT COUNT(*) FROM development_records r WHERE {where_}");
    let mut q = sqlx::query(&count_sql);
    for a in &args {
        q = q.bind(a);
    }
    let total: i64 = q.fetch_one(db.pool()).await?.get(0);
    let sql = format!("{RECORD} WHERE {where_} ORDER BY r.id LIMIT {limit} OFFSET {offset}");
    let mut q = sqlx::query(&sql);
    for a in &args {
        q = q.bind(a);
    }
    let rows = q.fetch_all(db.pool()).await?;
    Ok((rows.iter().map(record_row).collect(), total))
}

/// Every record in scope (pipeline, statistics, overdue lists); `open_only`: not full/cancelled.
pub async fn all_records(
    db: &Db,
    scope: &OrgScope,
    units: Option<&OrgScope>,
    open_only: bool,
) -> sqlx::Result<Vec<RecordRow>> {
    let (mut where_, _) = record_filter(scope, units, None);
    if open_only {
        where_.push_str(" AND r.stage NOT IN ('full', 'cancelled')");
    }
    let sql = format!("{RECORD} WHERE {where_} ORDER BY r.id");
    Ok(sqlx::query(&sql)
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(record_row)
        .collect())
}

// ---------------------------------------------------------------- step entries

#[derive(Debug, Clone)]
pub struct StepRow {
    pub id: i64,
    pub record_id: i64,
    pub step: String,
    pub step_on: String,
    pub status: String,
    pub opinion: Option<String>,
    pub opinion_of: Option<String>,
    pub details: String,
    pub documents: String,
    pub corrects: Option<i64>,
    pub correction_reason: Option<String>,
    pub recorded_by: String,
    pub recorded_at: i64,
    pub decided_on: Option<String>,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub decision_opinion: Option<String>,
    pub decision_delay_reason: Option<String>,
}

const STEP: &str = "SELECT id, record_id, step, step_on, status, opinion, opinion_of, details, \
     documents, corrects, correction_reason, recorded_by, recorded_at, decided_on, decided_by, \
     decided_at, decision_opinion, decision_delay_reason FROM development_steps";

fn step_row(r: &sqlx::any::AnyRow) -> StepRow {
    StepRow {
        id: r.get(0),
        record_id: r.get(1),
        step: r.get(2),
        step_on: r.get(3),
        status: r.get(4),
        opinion: r.get(5),
        opinion_of: r.get(6),
        details: r.get(7),
        documents: r.get(8),
        corrects: r.get(9),
        correction_reason: r.get(10),
        recorded_by: r.get(11),
        recorded_at: r.get(12),
        decided_on: r.get(13),
        decided_by: r.get(14),
        decided_at: r.get(15),
        decision_opinion: r.get(16),
        decision_delay_reason: r.get(17),
    }
}

pub struct NewStep<'a> {
    pub record_id: i64,
    pub step: &'a str,
    pub step_on: &'a str,
    /// `recorded` or `submitted`.
    pub status: &'a str,
    pub opinion: Option<&'a str>,
    pub opinion_of: Option<&'a str>,
    pub details: &'a str,
    pub documents: &'a str,
    pub corrects: Option<i64>,
    pub correction_reason: Option<&'a str>,
    pub recorded_by: &'a str,
    pub recorded_by_id: Option<i64>,
}

pub async fn insert_step(tx: &mut Tx, s: &NewStep<'_>, now: i64) -> sqlx::Result<i64> {
    Ok(sqlx::query(
        "INSERT INTO development_steps (record_id, step, step_on, status, opinion, opinion_of, \
         details, documents, corrects, correction_reason, recorded_by, recorded_by_id, \
         recorded_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13) \
         RETURNING id",
    )
    .bind(s.record_id)
    .bind(s.step)
    .bind(s.step_on)
    .bind(s.status)
    .bind(s.opinion)
    .bind(s.opinion_of)
    .bind(s.details)
    .bind(s.documents)
    .bind(s.corrects)
    .bind(s.correction_reason)
    .bind(s.recorded_by)
    .bind(s.recorded_by_id)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?
    .get(0))
}

/// A record's entries in the order they were made.
pub async fn steps_of<'c, E>(exec: E, record_id: i64) -> sqlx::Result<Vec<StepRow>>
where
    E: Executor<'c, Database = Any>,
{
    let sql = format!("{STEP} WHERE record_id = $1 ORDER BY id");
    Ok(sqlx::query(&sql)
        .bind(record_id)
        .fetch_all(exec)
        .await?
        .iter()
        .map(step_row)
        .collect())
}

/// The entries of many records (ids from the database, inlined), in order.
pub async fn steps_of_records(db: &Db, ids: &[i64]) -> sqlx::Result<Vec<StepRow>> {
    let mut out = Vec::new();
    for chunk in ids.chunks(500) {
        let list: Vec<String> = chunk.iter().map(i64::to_string).collect();
        let sql = format!(
            "{STEP} WHERE record_id IN ({}) ORDER BY record_id, id",
            list.join(",")
        );
        out.extend(
            sqlx::query(&sql)
                .fetch_all(db.pool())
                .await?
                .iter()
                .map(step_row),
        );
    }
    Ok(out)
}

/// The upper committee's decision on a `submitted` entry; false when it was decided meanwhile.
pub struct Decision<'a> {
    /// `approved` or `returned`.
    pub status: &'a str,
    pub decided_on: Option<&'a str>,
    pub decided_by: &'a str,
    pub opinion: Option<&'a str>,
    pub delay_reason: Option<&'a str>,
}

pub async fn decide(tx: &mut Tx, entry_id: i64, d: &Decision<'_>, now: i64) -> sqlx::Result<bool> {
    Ok(sqlx::query(
        "UPDATE development_steps SET status = $1, decided_on = $2, decided_by = $3, \
         decided_at = $4, decision_opinion = $5, decision_delay_reason = $6, updated_at = $4 \
         WHERE id = $7 AND status = 'submitted'",
    )
    .bind(d.status)
    .bind(d.decided_on)
    .bind(d.decided_by)
    .bind(now)
    .bind(d.opinion)
    .bind(d.delay_reason)
    .bind(entry_id)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1)
}

/// Mark an effective entry replaced by its correction.
pub async fn supersede(tx: &mut Tx, entry_id: i64, now: i64) -> sqlx::Result<bool> {
    Ok(sqlx::query(
        "UPDATE development_steps SET status = 'superseded', updated_at = $1 \
         WHERE id = $2 AND status IN ('recorded', 'approved')",
    )
    .bind(now)
    .bind(entry_id)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1)
}

/// Entries waiting for the upper committee, oldest first, for records in scope.
pub async fn submitted(db: &Db, scope: &OrgScope) -> sqlx::Result<Vec<(StepRow, RecordRow)>> {
    let sql = format!(
        "SELECT s.id FROM development_steps s JOIN development_records r ON r.id = s.record_id \
         WHERE s.status = 'submitted' AND {} ORDER BY s.id",
        scope.sql_condition("r.org_unit_id")
    );
    let ids: Vec<i64> = sqlx::query(&sql)
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut out = Vec::new();
    for id in ids {
        let sql = format!("{STEP} WHERE id = $1");
        let Some(s) = sqlx::query(&sql).bind(id).fetch_optional(db.pool()).await? else {
            continue;
        };
        let s = step_row(&s);
        if let Some(r) = record(db.pool(), s.record_id).await? {
            out.push((s, r));
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------- documents

#[derive(Debug, Clone)]
pub struct DocumentRow {
    pub id: i64,
    pub record_id: i64,
    pub kind: String,
    pub file_name: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub uploaded_by: String,
    pub uploaded_at: i64,
}

const DOCUMENT: &str = "SELECT id, record_id, kind, file_name, content_type, size_bytes, sha256, \
     uploaded_by, uploaded_at FROM development_documents";

fn document_row(r: &sqlx::any::AnyRow) -> DocumentRow {
    DocumentRow {
        id: r.get(0),
        record_id: r.get(1),
        kind: r.get(2),
        file_name: r.get(3),
        content_type: r.get(4),
        size_bytes: r.get(5),
        sha256: r.get(6),
        uploaded_by: r.get(7),
        uploaded_at: r.get(8),
    }
}

pub struct NewDocument<'a> {
    pub record_id: i64,
    pub kind: &'a str,
    pub file_name: &'a str,
    pub content_type: &'a str,
    pub size_bytes: i64,
    pub sha256: &'a str,
    pub uploaded_by: &'a str,
}

/// This feature's encrypted columns: each value sealed to its row once the row exists.
pub const ID_NUMBER: Column = Column::new("development_records", "id_number_enc");
pub const BIRTH_DATE: Column = Column::new("development_records", "birth_date_enc");
pub const DOCUMENT_CONTENT: Column = Column::new("development_documents", "content_enc");
pub const REPORT_CONTENT: Column = Column::new("development_reports", "content_enc");

pub async fn insert_document(tx: &mut Tx, d: &NewDocument<'_>, now: i64) -> sqlx::Result<i64> {
    Ok(sqlx::query(
        "INSERT INTO development_documents (record_id, kind, file_name, content_type, size_bytes, \
         sha256, content_enc, uploaded_by, uploaded_at) VALUES ($1, $2, $3, $4, $5, $6, '', $7, $8) \
         RETURNING id",
    )
    .bind(d.record_id)
    .bind(d.kind)
    .bind(d.file_name)
    .bind(d.content_type)
    .bind(d.size_bytes)
    .bind(d.sha256)
    .bind(d.uploaded_by)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?
    .get(0))
}

/// A record's documents, without their content.
pub async fn documents_of<'c, E>(exec: E, record_id: i64) -> sqlx::Result<Vec<DocumentRow>>
where
    E: Executor<'c, Database = Any>,
{
    let sql = format!("{DOCUMENT} WHERE record_id = $1 ORDER BY id");
    Ok(sqlx::query(&sql)
        .bind(record_id)
        .fetch_all(exec)
        .await?
        .iter()
        .map(document_row)
        .collect())
}

/// One document of a record with its encrypted content.
pub async fn document(
    db: &Db,
    record_id: i64,
    id: i64,
) -> sqlx::Result<Option<(DocumentRow, String)>> {
    let sql = "SELECT id, record_id, kind, file_name, content_type, size_bytes, sha256, \
         uploaded_by, uploaded_at, content_enc FROM development_documents \
         WHERE id = $1 AND record_id = $2";
    Ok(sqlx::query(sql)
        .bind(id)
        .bind(record_id)
        .fetch_optional(db.pool())
        .await?
        .map(|r| (document_row(&r), r.get(9))))
}

// ---------------------------------------------------------------- thought reports

#[derive(Debug, Clone)]
pub struct ReportRow {
    pub id: i64,
    pub record_id: i64,
    pub report_on: String,
    pub content_enc: String,
    pub source: String,
    pub created_by: String,
    pub created_at: i64,
}

pub async fn insert_report(
    tx: &mut Tx,
    record_id: i64,
    report_on: &str,
    source: &str,
    created_by: &str,
    now: i64,
) -> sqlx::Result<i64> {
    Ok(sqlx::query(
        "INSERT INTO development_reports (record_id, report_on, content_enc, source, created_by, \
         created_at) VALUES ($1, $2, '', $3, $4, $5) RETURNING id",
    )
    .bind(record_id)
    .bind(report_on)
    .bind(source)
    .bind(created_by)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?
    .get(0))
}

pub async fn reports_of(db: &Db, record_id: i64) -> sqlx::Result<Vec<ReportRow>> {
    Ok(sqlx::query(
        "SELECT id, record_id, report_on, content_enc, source, created_by, created_at \
         FROM development_reports WHERE record_id = $1 ORDER BY report_on, id",
    )
    .bind(record_id)
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(|r| ReportRow {
        id: r.get(0),
        record_id: r.get(1),
        report_on: r.get(2),
        content_enc: r.get(3),
        source: r.get(4),
        created_by: r.get(5),
        created_at: r.get(6),
    })
    .collect())
}

/// (record id, report date) of many records.
pub async fn report_dates(db: &Db, ids: &[i64]) -> sqlx::Result<Vec<(i64, String)>> {
    let mut out = Vec::new();
    for chunk in ids.chunks(500) {
        let list: Vec<String> = chunk.iter().map(i64::to_string).collect();
        let sql = format!(
            "SELECT record_id, report_on FROM development_reports WHERE record_id IN ({}) \
             ORDER BY record_id, report_on",
            list.join(",")
        );
        out.extend(
            sqlx::query(&sql)
                .fetch_all(db.pool())
                .await?
                .iter()
                .map(|r| (r.get(0), r.get(1))),
        );
    }
    Ok(out)
}

// ---------------------------------------------------------------- reminders

pub struct NewReminder<'a> {
    pub record_id: i64,
    pub kind: &'a str,
    pub due_on: &'a str,
    pub audience: &'a str,
    pub channel: &'a str,
    pub openid: Option<&'a str>,
    /// `pending` (to send), `sent` (console inbox) or `skipped` (no way to reach them).
    pub status: &'a str,
    pub message: &'a str,
    pub error: Option<&'a str>,
}

/// Queue a reminder unless this (record, kind, due date, audience) was queued before: `true`
/// when this call queued it.
pub async fn queue_reminder(tx: &mut Tx, r: &NewReminder<'_>, now: i64) -> sqlx::Result<bool> {
    Ok(sqlx::query(
        "INSERT INTO development_reminders (record_id, kind, due_on, audience, channel, openid, \
         status, message, error, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) \
         ON CONFLICT (record_id, kind, due_on, audience) DO NOTHING",
    )
    .bind(r.record_id)
    .bind(r.kind)
    .bind(r.due_on)
    .bind(r.audience)
    .bind(r.channel)
    .bind(r.openid)
    .bind(r.status)
    .bind(r.message)
    .bind(r.error)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1)
}

#[derive(Debug, Clone)]
pub struct ReminderRow {
    pub id: i64,
    pub record_id: i64,
    pub kind: String,
    pub due_on: String,
    pub audience: String,
    pub channel: String,
    pub openid: Option<String>,
    pub status: String,
    pub message: String,
    pub error: Option<String>,
    pub created_at: i64,
}

const REMINDER: &str = "SELECT m.id, m.record_id, m.kind, m.due_on, m.audience, m.channel, \
     m.openid, m.status, m.message, m.error, m.created_at FROM development_reminders m";

fn reminder_row(r: &sqlx::any::AnyRow) -> ReminderRow {
    ReminderRow {
        id: r.get(0),
        record_id: r.get(1),
        kind: r.get(2),
        due_on: r.get(3),
        audience: r.get(4),
        channel: r.get(5),
        openid: r.get(6),
        status: r.get(7),
        message: r.get(8),
        error: r.get(9),
        created_at: r.get(10),
    }
}

/// Reminders queued for WeChat and not yet claimed, oldest first.
pub async fn pending_reminders(db: &Db, limit: i64) -> sqlx::Result<Vec<ReminderRow>> {
    let sql = format!("{REMINDER} WHERE m.status = 'pending' ORDER BY m.id LIMIT {limit}");
    Ok(sqlx::query(&sql)
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(reminder_row)
        .collect())
}

/// Claim a pending reminder before calling WeChat; false when another worker has it.
pub async fn claim_reminder(db: &Db, id: i64, lease_until: i64, now: i64) -> sqlx::Result<bool> {
    Ok(sqlx::query(
        "UPDATE development_reminders SET status = 'sending', lease_until = $1, updated_at = $2 \
         WHERE id = $3 AND status = 'pending'",
    )
    .bind(lease_until)
    .bind(now)
    .bind(id)
    .execute(db.pool())
    .await?
    .rows_affected()
        == 1)
}

/// `sent` or `failed` (with WeChat's errcode) after the call.
pub async fn finish_reminder(
    db: &Db,
    id: i64,
    status: &str,
    error: Option<&str>,
    now: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE development_reminders SET status = $1, error = $2, lease_until = NULL, \
         updated_at = $3 WHERE id = $4 AND status = 'sending'",
    )
    .bind(status)
    .bind(error)
    .bind(now)
    .bind(id)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Claims whose worker never reported back: their outcome is unknown; they are not resent.
pub async fn reap_reminders(db: &Db, now: i64) -> sqlx::Result<u64> {
    Ok(sqlx::query(
        "UPDATE development_reminders SET status = 'unknown', error = 'lease expired', \
         updated_at = $1 WHERE status = 'sending' AND lease_until < $1",
    )
    .bind(now)
    .execute(db.pool())
    .await?
    .rows_affected())
}

/// One page of reminders for records in scope, newest first (the console inbox).
pub async fn list_reminders(
    db: &Db,
    scope: &OrgScope,
    audience: Option<&str>,
    limit: i64,
    offset: i64,
) -> sqlx::Result<(Vec<ReminderRow>, i64)> {
    let mut cond = vec![scope.sql_condition("r.org_unit_id")];
    if audience.is_some() {
        cond.push("m.audience = $1".into());
    }
    let where_ = cond.join(" AND ");
    let count_sql = format!(
        "SELECT COUNT(*) FROM development_reminders m JOIN development_records r \
         ON r.id = m.record_id WHERE {where_}"
    );
    let mut q = sqlx::query(&count_sql);
    if let Some(a) = audience {
        q = q.bind(a);
    }
    let total: i64 = q.fetch_one(db.pool()).await?.get(0);
    let sql = format!(
        "{REMINDER} JOIN development_records r ON r.id = m.record_id WHERE {where_} \
         ORDER BY m.id DESC LIMIT {limit} OFFSET {offset}"
    );
    let mut q = sqlx::query(&sql);
    if let Some(a) = audience {
        q = q.bind(a);
    }
    Ok((
        q.fetch_all(db.pool())
            .await?
            .iter()
            .map(reminder_row)
            .collect(),
        total,
    ))
}
