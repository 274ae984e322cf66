//! Queries of pushes, delivery rows and subscribe consent. Same SQL on SQLite and PostgreSQL,
//! except the claim (`FOR UPDATE SKIP LOCKED` on PostgreSQL) and the mass-quota lock.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::Row;

use super::{
    audience_store::{self, Materialise},
    Action, App, Audience, AudienceKind, Channel, DeliveryStatus, Notice, Outcome, PushStatus,
};
use crate::platform::db::{Backend, Db, Tx};

/// An arbitrary constant: the PostgreSQL advisory-lock id that serialises mass-quota reservations.
const MASS_QUOTA_LOCK: i64 = 0x00da_691a_0004;

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct PushRow {
    pub id: i64,
    pub channel: Channel,
    pub audience: Audience,
    pub article_ids: Vec<i64>,
    /// What a notice push says (None for an article push).
    pub notice: Option<Notice>,
    pub template_id: Option<String>,
    pub status: PushStatus,
    pub status_reason: Option<String>,
    pub scheduled_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub total: i64,
    pub mass_state: Option<String>,
    pub mass_msg_id: Option<i64>,
    pub mass_msg_data_id: Option<i64>,
    pub mass_report: Option<serde_json::Value>,
    pub created_by: Option<String>,
    pub created_at: i64,
}

const PUSH_COLUMNS: &str = "id, channel, audience_kind, audience_ids, article_ids, template_id, status, status_reason, \
    scheduled_at, started_at, finished_at, total, mass_state, mass_msg_id, mass_msg_data_id, mass_report, created_by, created_at, app, notice";

fn push_of(r: &sqlx::any::AnyRow) -> PushRow {
    let ids = |s: String| serde_json::from_str::<Vec<i64>>(&s).unwrap_or_default();
    PushRow {
        id: r.get(0),
        channel: Channel::from_db(
            &r.get::<String, _>(1),
            r.get::<Option<String>, _>(18).as_deref(),
        )
        .unwrap_or(Channel::Template),
        audience: Audience {
            kind: AudienceKind::parse(&r.get::<String, _>(2)).unwrap_or(AudienceKind::All),
            ids: ids(r.get(3)),
        },
        article_ids: ids(r.get(4)),
        notice: r
            .get::<Option<String>, _>(19)
            .and_then(|s| serde_json::from_str(&s).ok()),
        template_id: r.get(5),
        status: PushStatus::parse(&r.get::<String, _>(6)).unwrap_or(PushStatus::Failed),
        status_reason: r.get(7),
        scheduled_at: r.get(8),
        started_at: r.get(9),
        finished_at: r.get(10),
        total: r.get(11),
        mass_state: r.get(12),
        mass_msg_id: r.get(13),
        mass_msg_data_id: r.get(14),
        mass_report: r
            .get::<Option<String>, _>(15)
            .and_then(|s| serde_json::from_str(&s).ok()),
        created_by: r.get(16),
        created_at: r.get(17),
    }
}

pub struct NewPush<'a> {
    pub channel: Channel,
    pub audience: &'a Audience,
    pub article_ids: &'a [i64],
    pub notice: Option<&'a Notice>,
    pub template_id: Option<&'a str>,
    pub scheduled_at: i64,
    pub created_by: Option<&'a str>,
}

pub async fn insert(db: &Db, p: &NewPush<'_>, now: i64) -> sqlx::Result<i64> {
    let mut conn = db.pool().acquire().await?;
    insert_on(&mut conn, p, now).await
}

/// [`insert`] on a connection or inside the caller's transaction.
pub async fn insert_on(
    conn: &mut sqlx::AnyConnection,
    p: &NewPush<'_>,
    now: i64,
) -> sqlx::Result<i64> {
    let row = sqlx::query(
        "INSERT INTO pushes (channel, audience_kind, audience_ids, article_ids, template_id, status, scheduled_at, \
         created_by, created_at, updated_at, app, notice) VALUES ($1, $2, $3, $4, $5, 'scheduled', $6, $7, $8, $8, $9, $10) RETURNING id",
    )
    .bind(p.channel.db_channel())
    .bind(p.audience.kind.as_str())
    .bind(serde_json::to_string(&p.audience.ids).unwrap_or_else(|_| "[]".into()))
    .bind(serde_json::to_string(p.article_ids).unwrap_or_else(|_| "[]".into()))
    .bind(p.template_id)
    .bind(p.scheduled_at)
    .bind(p.created_by)
    .bind(now)
    .bind(p.channel.app().as_str())
    .bind(p.notice.and_then(|n| serde_json::to_string(n).ok()))
    .fetch_one(&mut *conn)
    .await?;
    Ok(row.get(0))
}

pub async fn get(db: &Db, id: i64) -> sqlx::Result<Option<PushRow>> {
    let row = sqlx::query(&format!("SELECT {PUSH_COLUMNS} FROM pushes WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.as_ref().map(push_of))
}

pub async fn list(
    db: &Db,
    status: Option<PushStatus>,
    limit: i64,
    offset: i64,
) -> sqlx::Result<Vec<PushRow>> {
    let rows = match status {
        Some(s) => {
            sqlx::query(&format!("SELECT {PUSH_COLUMNS} FROM pushes WHERE status = $1 ORDER BY id DESC LIMIT $2 OFFSET $3"))
                .bind(s.as_str())
                .bind(limit)
                .bind(offset)
                .fetch_all(db.pool())
                .await?
        }
        None => {
            sqlx::query(&format!("SELECT {PUSH_COLUMNS} FROM pushes ORDER BY id DESC LIMIT $1 OFFSET $2"))
                .bind(limit)
                .bind(offset)
                .fetch_all(db.pool())
                .await?
        }
    };
    Ok(rows.iter().map(push_of).collect())
}

/// Delivery rows per state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Counts {
    pub pending: i64,
    /// Claimed by a worker (not sent yet) or sending (the call has started).
    pub in_flight: i64,
    pub sent: i64,
    pub failed: i64,
    pub unknown: i64,
    pub skipped: i64,
}

pub async fn counts(db: &Db, push_id: i64) -> sqlx::Result<Counts> {
    let rows = sqlx::query(
        "SELECT status, COUNT(*) FROM push_deliveries WHERE push_id = $1 GROUP BY status",
    )
    .bind(push_id)
    .fetch_all(db.pool())
    .await?;
    let mut c = Counts::default();
    for r in rows {
        let n: i64 = r.get(1);
        match DeliveryStatus::parse(&r.get::<String, _>(0)) {
            Some(DeliveryStatus::Pending) => c.pending = n,
            Some(DeliveryStatus::InFlight) => c.in_flight = n,
            Some(DeliveryStatus::Sent) => c.sent = n,
            Some(DeliveryStatus::Failed) => c.failed = n,
            Some(DeliveryStatus::Unknown) => c.unknown = n,
            Some(DeliveryStatus::Skipped) => c.skipped = n,
            None => {}
        }
    }
    Ok(c)
}

/// Why rows were skipped (`no_account_openid`, `no_mp_openid`, `no_consent`, `not_following`,
/// `outside_48h`, `cancelled`, WeChat's `43004` / `43101`, ...), with how many each.
pub async fn skipped_reasons(db: &Db, push_id: i64) -> sqlx::Result<BTreeMap<String, i64>> {
    let rows = sqlx::query(
        "SELECT COALESCE(error_code, 'unknown'), COUNT(*) FROM push_deliveries WHERE push_id = $1 \
         AND status = 'skipped' GROUP BY COALESCE(error_code, 'unknown')",
    )
    .bind(push_id)
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
        .collect())
}

/// Reasons of failed, unknown and skipped rows (WeChat errcodes or words such as `outside_48h`).
pub async fn errors_by_code(db: &Db, push_id: i64) -> sqlx::Result<BTreeMap<String, i64>> {
    let rows = sqlx::query(
        "SELECT error_code, COUNT(*) FROM push_deliveries WHERE push_id = $1 AND error_code IS NOT NULL \
         AND status IN ('failed', 'unknown', 'skipped', 'pending') GROUP BY error_code",
    )
    .bind(push_id)
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
        .collect())
}

/// Rows finished (sent or failed) since `since`.
pub async fn finished_since(db: &Db, push_id: i64, since: i64) -> sqlx::Result<i64> {
    sqlx::query(
        "SELECT COUNT(*) FROM push_deliveries WHERE push_id = $1 AND status IN ('sent', 'failed') AND updated_at >= $2",
    )
    .bind(push_id)
    .bind(since)
    .fetch_one(db.pool())
    .await
    .map(|r| r.get(0))
}

/// Apply an editor's action if the push is in a state that allows it; the new state, or None.
/// Cancelling skips what is still pending (sends in flight finish and are recorded).
pub async fn apply(db: &Db, id: i64, action: Action, now: i64) -> sqlx::Result<Option<PushStatus>> {
    let sources = action
        .sources()
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let mut tx = db.begin_write().await?;
    let current: Option<String> = sqlx::query(&format!(
        "SELECT status FROM pushes WHERE id = $1 AND status IN ({sources})"
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .map(|r| r.get(0));
    let Some(to) = current
        .and_then(|s| PushStatus::parse(&s))
        .and_then(|s| action.transition(s))
    else {
        tx.rollback().await?;
        return Ok(None);
    };
    let finished = matches!(to, PushStatus::Cancelled).then_some(now);
    let changed = sqlx::query(&format!(
        "UPDATE pushes SET status = $1, status_reason = NULL, finished_at = COALESCE($2, finished_at), updated_at = $3 \
         WHERE id = $4 AND status IN ({sources})"
    ))
    .bind(to.as_str())
    .bind(finished)
    .bind(now)
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if changed == 0 {
        tx.rollback().await?;
        return Ok(None);
    }
    if to == PushStatus::Cancelled {
        sqlx::query(
            "UPDATE push_deliveries SET status = 'skipped', error_code = 'cancelled', updated_at = $1 \
             WHERE push_id = $2 AND status = 'pending'",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(Some(to))
}

/// Scheduled pushes whose time has come.
pub async fn due(db: &Db, now: i64) -> sqlx::Result<Vec<i64>> {
    let rows = sqlx::query("SELECT id FROM pushes WHERE status = 'scheduled' AND scheduled_at <= $1 ORDER BY scheduled_at, id LIMIT 20")
        .bind(now)
        .fetch_all(db.pool())
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Start a scheduled push: mark it running and materialise its audience, in one transaction (so
/// a crash leaves either a scheduled push without rows or a running push with all of them).
/// False when someone else started (or cancelled) it first.
pub async fn start(db: &Db, id: i64, now: i64, custom_cutoff_ms: i64) -> sqlx::Result<bool> {
    let mut tx = db.begin_write().await?;
    if start_in(&mut tx, id, now, custom_cutoff_ms).await? {
        tx.commit().await?;
        Ok(true)
    } else {
        tx.rollback().await?;
        Ok(false)
    }
}

/// [`start`] inside the caller's transaction (a notice's pushes start in the transaction that
/// records which delivery row each notice went into).
pub async fn start_in(tx: &mut Tx, id: i64, now: i64, custom_cutoff_ms: i64) -> sqlx::Result<bool> {
    let row = sqlx::query(
        "UPDATE pushes SET status = 'running', started_at = $1, updated_at = $1 WHERE id = $2 AND status = 'scheduled' \
         RETURNING channel, audience_kind, audience_ids, template_id, app",
    )
    .bind(now)
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else {
        return Ok(false);
    };
    let channel = Channel::from_db(
        &row.get::<String, _>(0),
        row.get::<Option<String>, _>(4).as_deref(),
    )
    .unwrap_or(Channel::Template);
    if channel != Channel::Mass {
        let kind = AudienceKind::parse(&row.get::<String, _>(1)).unwrap_or(AudienceKind::All);
        let ids: Vec<i64> = serde_json::from_str(&row.get::<String, _>(2)).unwrap_or_default();
        let template_id: Option<String> = row.get(3);
        let sql = audience_store::materialise_sql(&Materialise {
            push_id: id,
            channel,
            kind,
            ids: &ids,
            now_ms: now,
            custom_cutoff_ms,
            subscribe_template_id: template_id.as_deref().unwrap_or(""),
        });
        let n = sql.query().execute(&mut **tx).await?.rows_affected();
        sqlx::query("UPDATE pushes SET total = $1 WHERE id = $2")
            .bind(n as i64)
            .bind(id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(true)
}

/// Of `members`, those `channel` reaches now (openid of its app, following, consent left for
/// `template_id`, inside the 48-hour window): the rows a push would make `pending`.
pub async fn reachable_members(
    tx: &mut Tx,
    channel: Channel,
    template_id: Option<&str>,
    members: &[i64],
    now: i64,
    custom_cutoff_ms: i64,
) -> sqlx::Result<Vec<i64>> {
    if members.is_empty() {
        return Ok(Vec::new());
    }
    let sql = audience_store::reachable_sql(&Materialise {
        push_id: 0,
        channel,
        kind: AudienceKind::Members,
        ids: members,
        now_ms: now,
        custom_cutoff_ms,
        subscribe_template_id: template_id.unwrap_or(""),
    });
    Ok(sql
        .query()
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// The delivery row made for each member of a started push: (member id, delivery id).
pub async fn member_deliveries(tx: &mut Tx, push_id: i64) -> sqlx::Result<Vec<(i64, i64)>> {
    Ok(sqlx::query(
        "SELECT member_id, id FROM push_deliveries WHERE push_id = $1 AND member_id IS NOT NULL ORDER BY id",
    )
    .bind(push_id)
    .fetch_all(&mut **tx)
    .await?
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect())
}

/// Running pushes that send row by row.
pub async fn running_row_pushes(db: &Db) -> sqlx::Result<Vec<(i64, Channel)>> {
    let rows = sqlx::query(
        "SELECT id, channel, app FROM pushes WHERE status = 'running' AND channel <> 'mass' ORDER BY id",
    )
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            Channel::from_db(
                &r.get::<String, _>(1),
                r.get::<Option<String>, _>(2).as_deref(),
            )
            .map(|c| (r.get(0), c))
        })
        .collect())
}

#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: i64,
    pub openid: String,
    pub attempts: i64,
}

/// Claim up to `n` due rows of a running push: they become `in_flight` under this worker's lease
/// (committed before anything is sent), *claimed* but not yet sending (`sending_at` NULL): if the
/// lease runs out before [`mark_sending`], they go back to `pending` (see [`reap_expired`]).
pub async fn claim(
    db: &Db,
    push_id: i64,
    worker: &str,
    n: i64,
    now: i64,
    lease_until: i64,
) -> sqlx::Result<Vec<Claimed>> {
    let due = "SELECT id FROM push_deliveries WHERE push_id = $4 AND status = 'pending' \
         AND openid IS NOT NULL AND next_attempt_at <= $3 AND EXISTS (SELECT 1 FROM pushes WHERE id = $4 AND status = 'running') \
         ORDER BY id LIMIT $5";
    let set = "SET status = 'in_flight', worker_id = $1, lease_until = $2, sending_at = NULL, attempts = attempts + 1, updated_at = $3";
    let sql = match db.backend() {
        // The batch is chosen once (a materialised CTE): a sub-select under `IN` may be rescanned
        // during the UPDATE and, with SKIP LOCKED, hand out more than `n` rows.
        Backend::Postgres => format!(
            "WITH batch AS MATERIALIZED ({due} FOR UPDATE SKIP LOCKED) \
             UPDATE push_deliveries {set} FROM batch WHERE push_deliveries.id = batch.id \
             AND push_deliveries.status = 'pending' RETURNING push_deliveries.id, push_deliveries.openid, push_deliveries.attempts"
        ),
        // The UPDATE holds SQLite's one write lock for its duration: no other claim interleaves.
        Backend::Sqlite => format!(
            "UPDATE push_deliveries {set} WHERE status = 'pending' AND id IN ({due}) RETURNING id, openid, attempts"
        ),
    };
    let mut tx = db.begin_write().await?;
    let rows = sqlx::query(&sql)
        .bind(worker)
        .bind(lease_until)
        .bind(now)
        .bind(push_id)
        .bind(n)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    let mut claimed: Vec<Claimed> = rows
        .iter()
        .map(|r| Claimed {
            id: r.get(0),
            openid: r.get(1),
            attempts: r.get(2),
        })
        .collect();
    claimed.sort_by_key(|c| c.id);
    Ok(claimed)
}

/// Of the rows `ids` this worker claimed, mark those it still holds *sending*, in one statement,
/// just before their WeChat calls start: from now on a crash makes them `unknown`, never resent.
/// Returns the ids marked; a row not returned was taken back (its lease expired) and must not be
/// sent.
pub async fn mark_sending(db: &Db, worker: &str, ids: &[i64], now: i64) -> sqlx::Result<Vec<i64>> {
    let mut conn = db.pool().acquire().await?;
    mark_sending_on(&mut conn, worker, ids, now).await
}

/// [`mark_sending`] on a connection or inside the caller's transaction.
async fn mark_sending_on(
    conn: &mut sqlx::AnyConnection,
    worker: &str,
    ids: &[i64],
    now: i64,
) -> sqlx::Result<Vec<i64>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = audience_store::Sql::default();
    let now_p = sql.bind(audience_store::Bind::I64(now));
    let worker_p = sql.bind(audience_store::Bind::Str(worker.to_owned()));
    let list = sql.list(ids);
    sql.text = format!(
        "UPDATE push_deliveries SET sending_at = {now_p}, updated_at = {now_p} \
         WHERE id IN ({list}) AND worker_id = {worker_p} AND status = 'in_flight' RETURNING id"
    );
    let mut marked: Vec<i64> = sql
        .query()
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    marked.sort_unstable();
    Ok(marked)
}

/// What the worker learned about one claimed row.
pub struct Result_<'a> {
    pub row: &'a Claimed,
    pub outcome: &'a Outcome,
}

/// Retry policy for transient errors.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base_ms: i64,
    pub max_attempts: i64,
}

impl Backoff {
    /// Delay before attempt `attempts + 1`: base · 2^(attempts−1), at most 10 minutes.
    pub fn delay_ms(&self, attempts: i64) -> i64 {
        let exp = (attempts - 1).clamp(0, 16) as u32;
        self.base_ms.saturating_mul(1 << exp).min(600_000)
    }
}

/// Record the outcomes of one group of sends in one transaction, and in the same commit mark the
/// next group `next` sending (see [`mark_sending`]; its calls start right after): one write per
/// group. Only rows still leased by this worker are written (`unknown` included: a lease that
/// expired during a slow batch loses to what we know). 43004 marks the follower unsubscribed; a
/// subscribe send (either app) uses one consent credit of that app, and 43101 (no consent left)
/// zeroes it. Returns the ids of `next` marked.
#[allow(clippy::too_many_arguments)]
pub async fn record(
    db: &Db,
    worker: &str,
    channel: Channel,
    template_id: Option<&str>,
    results: &[Result_<'_>],
    backoff: Backoff,
    now: i64,
    next: &[i64],
) -> sqlx::Result<Vec<i64>> {
    let mut tx = db.begin_write().await?;
    // The common case, sent, in one statement per chunk (one round trip instead of hundreds).
    let sent: Vec<(i64, Option<i64>)> = results
        .iter()
        .filter_map(|r| match r.outcome {
            Outcome::Sent { msgid } => Some((r.row.id, *msgid)),
            _ => None,
        })
        .collect();
    for chunk in sent.chunks(500) {
        let mut sql = audience_store::Sql::default();
        let now_p = sql.bind(audience_store::Bind::I64(now));
        let worker_p = sql.bind(audience_store::Bind::Str(worker.to_owned()));
        let mut values = Vec::with_capacity(chunk.len());
        for (id, msgid) in chunk {
            let id = sql.bind(audience_store::Bind::I64(*id));
            let msgid = match msgid {
                Some(m) => sql.bind(audience_store::Bind::I64(*m)),
                None => "CAST(NULL AS BIGINT)".to_owned(),
            };
            values.push(format!("({id}, {msgid})"));
        }
        // VALUES columns are `column1, column2` on both engines.
        sql.text = format!(
            "UPDATE push_deliveries SET status = 'sent', msgid = v.column2, error_code = NULL, error = NULL, \
             lease_until = NULL, sent_at = {now_p}, updated_at = {now_p} FROM (VALUES {}) AS v \
             WHERE push_deliveries.id = v.column1 AND push_deliveries.worker_id = {worker_p} \
             AND push_deliveries.status IN ('in_flight', 'unknown')",
            values.join(", ")
        );
        sql.query().execute(&mut *tx).await?;
    }
    for r in results {
        if let (Outcome::Sent { .. }, Channel::Template | Channel::Custom | Channel::Mass) =
            (r.outcome, channel)
        {
            continue;
        }
        let (status, msgid, code, error, next_at, attempts_delta): (
            &str,
            Option<i64>,
            Option<&str>,
            Option<&str>,
            i64,
            i64,
        ) = match r.outcome {
            Outcome::Sent { msgid } => ("sent", *msgid, None, None, 0, 0),
            Outcome::Retry { code, error } if r.row.attempts < backoff.max_attempts => (
                "pending",
                None,
                Some(code),
                Some(error),
                now + backoff.delay_ms(r.row.attempts),
                0,
            ),
            Outcome::Retry { code, error } | Outcome::Failed { code, error } => {
                ("failed", None, Some(code), Some(error), 0, 0)
            }
            Outcome::Skipped { code, error } => ("skipped", None, Some(code), Some(error), 0, 0),
            // Not sent: back to pending, the attempt not counted; the push stops.
            Outcome::Quota { code, error } => ("pending", None, Some(code), Some(error), now, -1),
            Outcome::Unknown { code, error } => ("unknown", None, Some(code), Some(error), 0, 0),
        };
        let error = error.map(|e| super::limits::truncate(e, 200));
        sqlx::query(
            "UPDATE push_deliveries SET status = $1, msgid = $2, error_code = $3, error = $4, next_attempt_at = $5, \
             attempts = attempts + $6, lease_until = NULL, sent_at = CASE WHEN $1 = 'sent' THEN $7 ELSE sent_at END, \
             updated_at = $7 WHERE id = $8 AND worker_id = $9 AND status IN ('in_flight', 'unknown')",
        )
        .bind(status)
        .bind(msgid)
        .bind(code)
        .bind(error)
        .bind(next_at)
        .bind(attempts_delta)
        .bind(now)
        .bind(r.row.id)
        .bind(worker)
        .execute(&mut *tx)
        .await?;
        match (r.outcome, channel) {
            (
                Outcome::Skipped { code, .. },
                Channel::Template | Channel::Custom | Channel::SubscribeOa,
            ) if code == "43004" => {
                sqlx::query(
                    "UPDATE followers SET status = 'unsubscribed', unsubscribed_at = $1, updated_at = $1 \
                     WHERE openid = $2 AND status = 'subscribed'",
                )
                .bind(now)
                .bind(&r.row.openid)
                .execute(&mut *tx)
                .await?;
            }
            (Outcome::Skipped { code, .. }, c) if c.needs_consent() && code == "43101" => {
                // WeChat has no grant left: used up, or withdrawn without us hearing of it.
                sqlx::query(
                    "UPDATE subscribe_grants SET credits = 0, updated_at = $1 \
                     WHERE app = $2 AND openid = $3 AND template_id = $4",
                )
                .bind(now)
                .bind(c.app().as_str())
                .bind(&r.row.openid)
                .bind(template_id.unwrap_or(""))
                .execute(&mut *tx)
                .await?;
            }
            (Outcome::Sent { .. }, c) if c.needs_consent() => {
                sqlx::query(
                    "UPDATE subscribe_grants SET credits = credits - 1, updated_at = $1 \
                     WHERE app = $2 AND openid = $3 AND template_id = $4 AND credits > 0",
                )
                .bind(now)
                .bind(c.app().as_str())
                .bind(&r.row.openid)
                .bind(template_id.unwrap_or(""))
                .execute(&mut *tx)
                .await?;
            }
            _ => {}
        }
    }
    let marked = mark_sending_on(&mut tx, worker, next, now).await?;
    tx.commit().await?;
    Ok(marked)
}

/// What [`reap_expired`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reaped {
    /// Claimed rows whose worker stopped before their call started: `pending` again, to be sent.
    pub returned: u64,
    /// Rows (and mass calls) whose call had started: `unknown`, never resent automatically.
    pub unknown: u64,
}

/// Rows in flight whose lease expired: their worker died (or hung). A row only claimed was never
/// sent: it goes back to `pending` (the attempt not counted). A row marked sending may have
/// reached WeChat: it becomes `unknown` and is never resent automatically. A mass call in flight
/// is likewise `unknown`.
pub async fn reap_expired(db: &Db, now: i64) -> sqlx::Result<Reaped> {
    let mut tx = db.begin_write().await?;
    let returned = sqlx::query(
        "UPDATE push_deliveries SET status = 'pending', attempts = attempts - 1, lease_until = NULL, updated_at = $1 \
         WHERE status = 'in_flight' AND lease_until < $1 AND sending_at IS NULL",
    )
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let rows = sqlx::query(
        "UPDATE push_deliveries SET status = 'unknown', error_code = 'lease_expired', \
         error = 'the worker stopped while this send was in flight', updated_at = $1 \
         WHERE status = 'in_flight' AND lease_until < $1 AND sending_at IS NOT NULL",
    )
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let mass = sqlx::query(
        "UPDATE pushes SET mass_state = 'unknown', status = 'failed', \
         status_reason = 'the worker stopped during the mass send: its outcome is unknown (check the WeChat console)', \
         finished_at = $1, updated_at = $1 WHERE mass_state = 'in_flight' AND mass_lease_until < $1",
    )
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(Reaped {
        returned,
        unknown: rows + mass,
    })
}

/// Running row-by-row pushes with nothing pending or in flight are complete.
pub async fn complete_finished(db: &Db, now: i64) -> sqlx::Result<u64> {
    sqlx::query(
        "UPDATE pushes SET status = 'completed', finished_at = $1, updated_at = $1 \
         WHERE status = 'running' AND channel <> 'mass' AND NOT EXISTS (SELECT 1 FROM push_deliveries d \
         WHERE d.push_id = pushes.id AND d.status IN ('pending', 'in_flight'))",
    )
    .bind(now)
    .execute(db.pool())
    .await
    .map(|r| r.rows_affected())
}

/// Stop a running push (quota, template error), saying why. Pending rows stay pending: `resume`
/// continues once the cause is gone.
pub async fn fail(db: &Db, id: i64, reason: &str, now: i64) -> sqlx::Result<bool> {
    sqlx::query(
        "UPDATE pushes SET status = 'failed', status_reason = $1, finished_at = $2, updated_at = $2 \
         WHERE id = $3 AND status = 'running'",
    )
    .bind(reason)
    .bind(now)
    .bind(id)
    .execute(db.pool())
    .await
    .map(|r| r.rows_affected() > 0)
}

/// Give claimed rows back untouched (nothing was sent), e.g. when the push can't be rendered.
pub async fn release(db: &Db, worker: &str, ids: &[i64], now: i64) -> sqlx::Result<()> {
    let mut tx = db.begin_write().await?;
    for id in ids {
        sqlx::query(
            "UPDATE push_deliveries SET status = 'pending', attempts = attempts - 1, lease_until = NULL, sending_at = NULL, \
             updated_at = $1 WHERE id = $2 AND worker_id = $3 AND status = 'in_flight'",
        )
        .bind(now)
        .bind(id)
        .bind(worker)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

// ---- mass sends ----

/// Running mass pushes whose one call has not been made (or failed for good and was resumed).
pub async fn mass_ready(db: &Db, now: i64) -> sqlx::Result<Vec<i64>> {
    let rows = sqlx::query(
        "SELECT id FROM pushes WHERE status = 'running' AND channel = 'mass' \
         AND (mass_state IS NULL OR mass_state = 'failed') AND (mass_lease_until IS NULL OR mass_lease_until < $1) ORDER BY id",
    )
    .bind(now)
    .fetch_all(db.pool())
    .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Mass sends that count against the quota since `window_start`.
pub async fn mass_used_since(db: &Db, window_start: i64) -> sqlx::Result<i64> {
    sqlx::query(
        "SELECT COUNT(*) FROM pushes WHERE mass_reserved_at >= $1 AND mass_state IN ('in_flight', 'sent', 'unknown')",
    )
    .bind(window_start)
    .fetch_one(db.pool())
    .await
    .map(|r| r.get(0))
}

pub enum Reservation {
    Reserved,
    QuotaUsed(i64),
    NotReady,
}

/// Reserve one mass send of the quota for push `id` and mark the call in flight, atomically with
/// the count (a PostgreSQL advisory lock / SQLite's write lock serialise reservations).
pub async fn reserve_mass(
    db: &Db,
    id: i64,
    window_start: i64,
    quota: i64,
    now: i64,
    lease_until: i64,
) -> sqlx::Result<Reservation> {
    let mut tx = db.begin_write().await?;
    if db.backend() == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MASS_QUOTA_LOCK)
            .execute(&mut *tx)
            .await?;
    }
    let used: i64 = sqlx::query(
        "SELECT COUNT(*) FROM pushes WHERE mass_reserved_at >= $1 AND mass_state IN ('in_flight', 'sent', 'unknown')",
    )
    .bind(window_start)
    .fetch_one(&mut *tx)
    .await?
    .get(0);
    if used >= quota {
        tx.rollback().await?;
        return Ok(Reservation::QuotaUsed(used));
    }
    let n = sqlx::query(
        "UPDATE pushes SET mass_state = 'in_flight', mass_reserved_at = $1, mass_lease_until = $2, updated_at = $1 \
         WHERE id = $3 AND status = 'running' AND (mass_state IS NULL OR mass_state = 'failed')",
    )
    .bind(now)
    .bind(lease_until)
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(if n == 1 {
        Reservation::Reserved
    } else {
        Reservation::NotReady
    })
}

/// Record the result of the mass call: `sent` completes the push; `failed` / `unknown` fail it
/// with `reason`; `retry` gives the reservation back and tries again after `retry_at`.
pub async fn mass_result(
    db: &Db,
    id: i64,
    state: &str,
    msg: Option<(i64, Option<i64>)>,
    reason: Option<&str>,
    retry_at: Option<i64>,
    now: i64,
) -> sqlx::Result<()> {
    let (push_status, mass_state) = match state {
        "sent" => ("completed", Some("sent")),
        "retry" => ("running", None),
        other => ("failed", Some(other)),
    };
    sqlx::query(
        "UPDATE pushes SET mass_state = $1, mass_msg_id = $2, mass_msg_data_id = $3, status = $4, status_reason = $5, \
         mass_lease_until = $6, finished_at = CASE WHEN $4 = 'running' THEN finished_at ELSE $7 END, updated_at = $7 \
         WHERE id = $8 AND mass_state = 'in_flight'",
    )
    .bind(mass_state)
    .bind(msg.map(|m| m.0))
    .bind(msg.and_then(|m| m.1))
    .bind(push_status)
    .bind(reason)
    .bind(retry_at)
    .bind(now)
    .bind(id)
    .execute(db.pool())
    .await?;
    Ok(())
}

// ---- delivery reports and consent ----

/// TEMPLATESENDJOBFINISH: WeChat's final word on one template message. Rows matched: 0 when the
/// report came before we recorded the msgid.
pub async fn template_report(db: &Db, msgid: i64, status: &str, now: i64) -> sqlx::Result<u64> {
    let failed = status != "success";
    let code = match status {
        "success" => None,
        s if s.contains("block") => Some("user_block"),
        _ => Some("system_failed"),
    };
    sqlx::query(
        "UPDATE push_deliveries SET report = $1, status = CASE WHEN $2 = 1 THEN 'failed' ELSE status END, \
         error_code = COALESCE($3, error_code), updated_at = $4 WHERE msgid = $5 AND status IN ('sent', 'unknown')",
    )
    .bind(status)
    .bind(failed as i64)
    .bind(code)
    .bind(now)
    .bind(msgid)
    .execute(db.pool())
    .await
    .map(|r| r.rows_affected())
}

/// MASSSENDJOBFINISH: the counts of one mass send.
pub async fn mass_report(
    db: &Db,
    msg_id: i64,
    report: &serde_json::Value,
    now: i64,
) -> sqlx::Result<u64> {
    sqlx::query("UPDATE pushes SET mass_report = $1, updated_at = $2 WHERE mass_msg_id = $3")
        .bind(report.to_string())
        .bind(now)
        .bind(msg_id)
        .execute(db.pool())
        .await
        .map(|r| r.rows_affected())
}

async fn set_grant_status(
    tx: &mut crate::platform::db::Tx,
    app: App,
    openid: &str,
    template_id: &str,
    status: &str,
    now: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO subscribe_grants (app, openid, template_id, status, credits, updated_at) VALUES ($1, $2, $3, $4, 0, $5) \
         ON CONFLICT (app, openid, template_id) DO UPDATE SET status = excluded.status, credits = 0, updated_at = excluded.updated_at",
    )
    .bind(app.as_str())
    .bind(openid)
    .bind(template_id)
    .bind(status)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A mini-program user's answer to `wx.requestSubscribeMessage` (see [`record_consent`]).
pub async fn record_grant(
    db: &Db,
    openid: &str,
    template_id: &str,
    status: &str,
    now: i64,
) -> sqlx::Result<()> {
    record_consent(db, App::Mp, openid, template_id, status, now).await
}

/// One answer to a subscribe request that carries no identity (see [`record_consents`]).
pub async fn record_consent(
    db: &Db,
    app: App,
    openid: &str,
    template_id: &str,
    status: &str,
    now: i64,
) -> sqlx::Result<()> {
    record_consents(db, app, openid, None, &[(template_id, status)], now)
        .await
        .map(|_| ())
}

/// A user's answers `(template id, status)` to one subscribe request of `app` (the mini-program's
/// 订阅消息 or the account's 订阅通知 popup), in one transaction: `accept` adds one send credit
/// (one-time subscription); `reject` / `ban` stop sends until accepted again.
///
/// `event_id` is the identity of what carried the answers (the account's event:
/// `FromUserName:CreateTime:Event`; a mini-program request id). An answer already recorded under
/// that identity and template is not applied again, so an event WeChat delivers twice — a retry
/// after a partial failure, or after the de-duplication window — adds one credit, not two.
/// Returns the answers applied.
pub async fn record_consents(
    db: &Db,
    app: App,
    openid: &str,
    event_id: Option<&str>,
    answers: &[(&str, &str)],
    now: i64,
) -> sqlx::Result<usize> {
    let mut tx = db.begin_write().await?;
    let mut applied = 0;
    for (template_id, status) in answers {
        if let Some(event_id) = event_id {
            let first = sqlx::query(
                "INSERT INTO subscribe_grant_events (app, event_id, template_id, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (app, event_id, template_id) DO NOTHING",
            )
            .bind(app.as_str())
            .bind(event_id)
            .bind(*template_id)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if !first {
                continue;
            }
        }
        if *status == "accept" {
            sqlx::query(
                "INSERT INTO subscribe_grants (app, openid, template_id, status, credits, updated_at) VALUES ($1, $2, $3, 'accept', 1, $4) \
                 ON CONFLICT (app, openid, template_id) DO UPDATE SET status = 'accept', \
                 credits = CASE WHEN subscribe_grants.status = 'accept' THEN subscribe_grants.credits + 1 ELSE 1 END, \
                 updated_at = excluded.updated_at",
            )
            .bind(app.as_str())
            .bind(openid)
            .bind(*template_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        } else {
            let status = if *status == "ban" { "ban" } else { "reject" };
            set_grant_status(&mut tx, app, openid, template_id, status, now).await?;
        }
        applied += 1;
    }
    tx.commit().await?;
    Ok(applied)
}

/// Sends `openid` may still receive on `app`'s subscribe template `template_id`.
pub async fn consent_credits(
    db: &Db,
    app: App,
    openid: &str,
    template_id: &str,
) -> sqlx::Result<i64> {
    Ok(sqlx::query(
        "SELECT credits FROM subscribe_grants WHERE app = $1 AND openid = $2 AND template_id = $3 AND status = 'accept'",
    )
    .bind(app.as_str())
    .bind(openid)
    .bind(template_id)
    .fetch_optional(db.pool())
    .await?
    .map_or(0, |r| r.get(0)))
}

/// Published articles of a push, in the order given; missing or unpublished ids are returned apart.
pub struct ArticleRow {
    pub id: i64,
    pub title: String,
    pub summary: String,
    pub cover_url: Option<String>,
    pub body_html: String,
    pub author: Option<String>,
    pub category: String,
    pub status: String,
    pub published_at: Option<i64>,
}

pub async fn articles(db: &Db, ids: &[i64]) -> sqlx::Result<Vec<ArticleRow>> {
    let mut sql = audience_store::Sql::default();
    let list = sql.list(ids);
    sql.text = format!(
        "SELECT a.id, a.title, a.summary, a.cover_url, a.body_html, a.author, c.name, a.status, a.published_at \
         FROM articles a JOIN categories c ON c.id = a.category_id WHERE a.id IN ({list})"
    );
    let rows = sql.query().fetch_all(db.pool()).await?;
    let mut found: Vec<ArticleRow> = rows
        .iter()
        .map(|r| ArticleRow {
            id: r.get(0),
            title: r.get(1),
            summary: r.get(2),
            cover_url: r.get(3),
            body_html: r.get(4),
            author: r.get(5),
            category: r.get(6),
            status: r.get(7),
            published_at: r.get(8),
        })
        .collect();
    found.sort_by_key(|a| ids.iter().position(|i| *i == a.id));
    Ok(found)
}
