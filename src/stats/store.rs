//! The statistics' SQL: read-only, grouped counts over other features' tables (meeting
//! attendance, the follower event log, push delivery rows, submissions and board posts).
//! Reporting is the one reader allowed to look across features this way: it writes nothing, and
//! every query here is a `SELECT` whose groups `rules.rs` folds into the report. Where a
//! feature's store already answers (dues' month totals, the follower count) the service asks that
//! store instead.
//! Org-unit limits come as an `OrgScope` and are inlined as integer lists.

use sqlx::Row;

use crate::activities::rules::Kind;
use crate::platform::{db::Db, org::OrgScope};
use crate::stats::rules::{AttendanceGroup, Moderated, Period};

/// Whom attendance is counted for: the member's org unit, or the member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttendanceKey {
    OrgUnit,
    Member,
}

/// Attendance rows of the 三会一课 held in the period (not cancelled, started by `now_ms`), of
/// members whose org unit is in scope, grouped by meeting, key and status.
pub async fn attendance_groups(
    db: &Db,
    period: Period,
    now_ms: i64,
    scope: &OrgScope,
    key: AttendanceKey,
) -> sqlx::Result<Vec<AttendanceGroup>> {
    let kinds: Vec<String> = Kind::RHYTHM
        .iter()
        .map(|k| format!("'{}'", k.as_str()))
        .collect();
    let key_col = match key {
        AttendanceKey::OrgUnit => "m.org_unit_id",
        AttendanceKey::Member => "m.id",
    };
    let sql = format!(
        "SELECT a.id, a.starts_at, {key_col}, t.status, COUNT(*)
         FROM activity_attendance t
         JOIN activities a ON a.id = t.activity_id
         JOIN members m ON m.id = t.member_id
         WHERE a.kind IN ({kinds}) AND a.status <> 'cancelled'
           AND a.starts_at >= $1 AND a.starts_at < $2 AND a.starts_at <= $3 AND {scope}
         GROUP BY a.id, a.starts_at, {key_col}, t.status
         ORDER BY a.id",
        kinds = kinds.join(", "),
        scope = scope.sql_condition("m.org_unit_id"),
    );
    let rows = sqlx::query(&sql)
        .bind(period.start_ms())
        .bind(period.end_ms())
        .bind(now_ms)
        .fetch_all(db.pool())
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| AttendanceGroup {
            activity_id: r.get(0),
            starts_at: r.get(1),
            key: r.get(2),
            status: r.get(3),
            count: r.get(4),
        })
        .collect())
}

/// (member id, name, org unit id) of the given members.
pub async fn member_names(db: &Db, ids: &[i64]) -> sqlx::Result<Vec<(i64, String, i64)>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let list: Vec<String> = ids.iter().map(i64::to_string).collect();
    let rows = sqlx::query(&format!(
        "SELECT id, name, org_unit_id FROM members WHERE id IN ({}) ORDER BY org_unit_id, id",
        list.join(",")
    ))
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// Follower events in the period: (Shanghai day number, kind, count).
pub async fn follower_event_groups(
    db: &Db,
    period: Period,
) -> sqlx::Result<Vec<(i64, String, i64)>> {
    let rows = sqlx::query(
        "SELECT (at + 28800000) / 86400000 AS day, kind, COUNT(*) FROM follower_events
         WHERE at >= $1 AND at < $2 GROUP BY (at + 28800000) / 86400000, kind ORDER BY day, kind",
    )
    .bind(period.start_ms())
    .bind(period.end_ms())
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// A push scheduled in the period, with its delivery rows counted per state.
#[derive(Debug, Clone, PartialEq, schemars::JsonSchema)]
pub struct PushRow {
    pub id: i64,
    pub channel: String,
    pub status: String,
    pub scheduled_at: i64,
    /// (delivery state, rows).
    pub counts: Vec<(String, i64)>,
}

pub async fn push_rows(db: &Db, period: Period) -> sqlx::Result<Vec<PushRow>> {
    let pushes = sqlx::query(
        "SELECT id, channel, status, scheduled_at FROM pushes
         WHERE scheduled_at >= $1 AND scheduled_at < $2 ORDER BY scheduled_at, id",
    )
    .bind(period.start_ms())
    .bind(period.end_ms())
    .fetch_all(db.pool())
    .await?;
    let counts = sqlx::query(
        "SELECT d.push_id, d.status, COUNT(*) FROM push_deliveries d
         JOIN pushes p ON p.id = d.push_id
         WHERE p.scheduled_at >= $1 AND p.scheduled_at < $2
         GROUP BY d.push_id, d.status",
    )
    .bind(period.start_ms())
    .bind(period.end_ms())
    .fetch_all(db.pool())
    .await?;
    let mut out: Vec<PushRow> = pushes
        .into_iter()
        .map(|r| PushRow {
            id: r.get(0),
            channel: r.get(1),
            status: r.get(2),
            scheduled_at: r.get(3),
            counts: Vec::new(),
        })
        .collect();
    for r in counts {
        let id: i64 = r.get(0);
        if let Some(p) = out.iter_mut().find(|p| p.id == id) {
            p.counts.push((r.get(1), r.get(2)));
        }
    }
    Ok(out)
}

/// Which moderated table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeratedKind {
    Submissions,
    BoardPosts,
}

impl ModeratedKind {
    pub const ALL: [ModeratedKind; 2] = [ModeratedKind::Submissions, ModeratedKind::BoardPosts];

    pub fn as_str(self) -> &'static str {
        match self {
            ModeratedKind::Submissions => "submissions",
            ModeratedKind::BoardPosts => "board_posts",
        }
    }
}

/// Submissions (not drafts) or board posts that came in during the period.
pub async fn moderated(
    db: &Db,
    kind: ModeratedKind,
    period: Period,
) -> sqlx::Result<Vec<Moderated>> {
    let table = kind.as_str();
    let rows = sqlx::query(&format!(
        "SELECT created_at, status, decided_at FROM {table}
         WHERE status <> 'draft' AND created_at >= $1 AND created_at < $2 ORDER BY created_at"
    ))
    .bind(period.start_ms())
    .bind(period.end_ms())
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Moderated {
            created_at: r.get(0),
            status: r.get(1),
            decided_at: r.get(2),
        })
        .collect())
}
