//! The activities' SQL: activities, their audiences, sign-ups, attendance and notices. The only
//! place these tables are read or written. Functions that must see a consistent activity take the
//! transaction that locked it ([`lock`]).

use std::collections::HashMap;

use sqlx::Row;

use super::rules::{Attendance, Kind, LeaveKind, Times};
use crate::platform::{
    db::{Backend, Db, Page, Tx},
    org::OrgScope,
};

#[derive(Debug, Clone)]
pub struct ActivityRow {
    pub id: i64,
    pub title: String,
    pub kind: Kind,
    pub description: String,
    pub location: String,
    pub capacity: i64,
    pub confirmed_count: i64,
    pub starts_at: i64,
    pub ends_at: Option<i64>,
    pub signup_opens_at: i64,
    pub signup_closes_at: i64,
    pub status: String,
    pub cancelled_at: Option<i64>,
    pub cancel_reason: Option<String>,
    pub host: Option<String>,
    pub recorder: Option<String>,
    pub minutes: Option<String>,
    pub photos: Vec<String>,
    pub minutes_at: Option<i64>,
    pub remind_minutes: i64,
    pub reminded_at: Option<i64>,
    pub created_by: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl ActivityRow {
    pub fn times(&self) -> Times {
        Times {
            cancelled: self.status == "cancelled",
            starts_at: self.starts_at,
            ends_at: self.ends_at,
            signup_opens_at: self.signup_opens_at,
            signup_closes_at: self.signup_closes_at,
        }
    }
}

const COLUMNS: &str = "id, title, kind, description, location, capacity, confirmed_count, starts_at, \
     ends_at, signup_opens_at, signup_closes_at, status, cancelled_at, cancel_reason, host, recorder, \
     minutes, photos, minutes_at, remind_minutes, reminded_at, created_by, created_at, updated_at";

fn activity(r: &sqlx::any::AnyRow) -> ActivityRow {
    let kind: String = r.get(2);
    let photos: String = r.get(17);
    ActivityRow {
        id: r.get(0),
        title: r.get(1),
        kind: Kind::parse(&kind).unwrap_or(Kind::Activity),
        description: r.get(3),
        location: r.get(4),
        capacity: r.get(5),
        confirmed_count: r.get(6),
        starts_at: r.get(7),
        ends_at: r.get(8),
        signup_opens_at: r.get(9),
        signup_closes_at: r.get(10),
        status: r.get(11),
        cancelled_at: r.get(12),
        cancel_reason: r.get(13),
        host: r.get(14),
        recorder: r.get(15),
        minutes: r.get(16),
        photos: serde_json::from_str(&photos).unwrap_or_default(),
        minutes_at: r.get(18),
        remind_minutes: r.get(19),
        reminded_at: r.get(20),
        created_by: r.get(21),
        created_at: r.get(22),
        updated_at: r.get(23),
    }
}

/// The writable fields of an activity (validated by `rules::Fields`).
pub struct ActivityWrite<'a> {
    pub title: &'a str,
    pub kind: Kind,
    pub description: &'a str,
    pub location: &'a str,
    pub capacity: i64,
    pub starts_at: i64,
    pub ends_at: Option<i64>,
    pub signup_opens_at: i64,
    pub signup_closes_at: i64,
    pub remind_minutes: i64,
}

pub async fn insert(
    tx: &mut Tx,
    a: &ActivityWrite<'_>,
    created_by: &str,
    now: i64,
) -> sqlx::Result<i64> {
    Ok(sqlx::query(
        "INSERT INTO activities (title, kind, description, location, capacity, starts_at, ends_at, \
         signup_opens_at, signup_closes_at, remind_minutes, created_by, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) RETURNING id",
    )
    .bind(a.title)
    .bind(a.kind.as_str())
    .bind(a.description)
    .bind(a.location)
    .bind(a.capacity)
    .bind(a.starts_at)
    .bind(a.ends_at)
    .bind(a.signup_opens_at)
    .bind(a.signup_closes_at)
    .bind(a.remind_minutes)
    .bind(created_by)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?
    .get(0))
}

/// Overwrite the fields. The CHECK on `confirmed_count <= capacity` refuses a capacity below the
/// confirmed count even if a caller forgot to check; the reminder is re-armed when the start moves.
pub async fn update(tx: &mut Tx, id: i64, a: &ActivityWrite<'_>, now: i64) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE activities SET title = $1, kind = $2, description = $3, location = $4, capacity = $5, \
         reminded_at = CASE WHEN starts_at = $6 AND remind_minutes = $10 THEN reminded_at ELSE NULL END, \
         starts_at = $6, ends_at = $7, signup_opens_at = $8, signup_closes_at = $9, remind_minutes = $10, \
         updated_at = $11 WHERE id = $12",
    )
    .bind(a.title)
    .bind(a.kind.as_str())
    .bind(a.description)
    .bind(a.location)
    .bind(a.capacity)
    .bind(a.starts_at)
    .bind(a.ends_at)
    .bind(a.signup_opens_at)
    .bind(a.signup_closes_at)
    .bind(a.remind_minutes)
    .bind(now)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn set_audience(tx: &mut Tx, id: i64, units: &[i64]) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM activity_audience WHERE activity_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    for unit in units {
        sqlx::query("INSERT INTO activity_audience (activity_id, org_unit_id) VALUES ($1, $2)")
            .bind(id)
            .bind(unit)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

pub async fn get(db: &Db, id: i64) -> sqlx::Result<Option<ActivityRow>> {
    let sql = format!("SELECT {COLUMNS} FROM activities WHERE id = $1");
    Ok(sqlx::query(&sql)
        .bind(id)
        .fetch_optional(db.pool())
        .await?
        .as_ref()
        .map(activity))
}

/// [`get`] inside `tx` (no lock).
pub async fn get_in(tx: &mut Tx, id: i64) -> sqlx::Result<Option<ActivityRow>> {
    let sql = format!("SELECT {COLUMNS} FROM activities WHERE id = $1");
    Ok(sqlx::query(&sql)
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .as_ref()
        .map(activity))
}

/// Read the activity inside `tx` and, on PostgreSQL, lock its row until the transaction ends:
/// withdrawals, capacity changes and cancellation of one activity run one at a time, and after
/// any sign-up in flight ([`sign_up_in`] takes the same row lock with its UPDATE). (SQLite:
/// `begin_write` already serialises writers.)
pub async fn lock(tx: &mut Tx, backend: Backend, id: i64) -> sqlx::Result<Option<ActivityRow>> {
    let lock = if backend == Backend::Postgres {
        " FOR UPDATE"
    } else {
        ""
    };
    let sql = format!("SELECT {COLUMNS} FROM activities WHERE id = $1{lock}");
    Ok(sqlx::query(&sql)
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .as_ref()
        .map(activity))
}

/// Audience org units of each activity (absent = everyone).
pub async fn audiences(db: &Db, ids: &[i64]) -> sqlx::Result<HashMap<i64, Vec<i64>>> {
    let mut out: HashMap<i64, Vec<i64>> = HashMap::new();
    for chunk in ids.chunks(500) {
        let list: Vec<String> = chunk.iter().map(i64::to_string).collect();
        let sql = format!(
            "SELECT activity_id, org_unit_id FROM activity_audience WHERE activity_id IN ({}) \
             ORDER BY activity_id, org_unit_id",
            list.join(",")
        );
        for r in sqlx::query(&sql).fetch_all(db.pool()).await? {
            out.entry(r.get(0)).or_default().push(r.get(1));
        }
    }
    Ok(out)
}

pub async fn audience(db: &Db, id: i64) -> sqlx::Result<Vec<i64>> {
    Ok(audiences(db, &[id]).await?.remove(&id).unwrap_or_default())
}

/// Activities a session may manage: admins every one; a secretary those whose audience is
/// non-empty and entirely inside their scope.
fn scope_condition(scope: &OrgScope) -> String {
    match scope {
        OrgScope::All => "1=1".into(),
        _ => format!(
            "EXISTS (SELECT 1 FROM activity_audience aa WHERE aa.activity_id = a.id) AND NOT EXISTS \
             (SELECT 1 FROM activity_audience aa WHERE aa.activity_id = a.id AND NOT ({}))",
            scope.sql_condition("aa.org_unit_id")
        ),
    }
}

/// An activity with its live counts.
#[derive(Debug, Clone)]
pub struct Listed {
    pub activity: ActivityRow,
    pub waitlisted: i64,
    pub checked_in: i64,
}

const COUNTS: &str = "a.waitlisted_count, \
     (SELECT COUNT(*) FROM activity_attendance t WHERE t.activity_id = a.id AND t.checked_in_at IS NOT NULL)";

fn listed(r: &sqlx::any::AnyRow) -> Listed {
    Listed {
        activity: activity(r),
        waitlisted: r.get(24),
        checked_in: r.get(25),
    }
}

/// Narrowing of the activity list (the console's filters and the API's query).
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub kind: Option<Kind>,
    /// open | cancelled
    pub status: Option<&'static str>,
    /// Activities whose audience has one of these org units (a subtree, resolved by the caller).
    pub units: Option<Vec<i64>>,
}

impl ListFilter {
    /// The filter as SQL (kinds and states are fixed words, unit ids integers: inlined safely).
    fn condition(&self) -> String {
        let mut cond = String::new();
        if let Some(k) = self.kind {
            cond.push_str(&format!(" AND a.kind = '{}'", k.as_str()));
        }
        if let Some(s) = self.status {
            cond.push_str(&format!(" AND a.status = '{s}'"));
        }
        if let Some(units) = &self.units {
            cond.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM activity_audience f WHERE f.activity_id = a.id AND {})",
                OrgScope::Units(units.clone()).sql_condition("f.org_unit_id")
            ));
        }
        cond
    }
}

/// One page of the activities in `scope` that pass `filter`, newest start first; with the total.
pub async fn list(
    db: &Db,
    scope: &OrgScope,
    filter: &ListFilter,
    page: Page,
) -> sqlx::Result<(Vec<Listed>, i64)> {
    let cond = format!("{}{}", scope_condition(scope), filter.condition());
    let total: i64 = sqlx::query(&format!("SELECT COUNT(*) FROM activities a WHERE {cond}"))
        .fetch_one(db.pool())
        .await?
        .get(0);
    let sql = format!(
        "SELECT {COLUMNS}, {COUNTS} FROM activities a WHERE {cond} ORDER BY a.starts_at DESC, a.id DESC \
         LIMIT {} OFFSET {}",
        page.size,
        page.offset()
    );
    let rows = sqlx::query(&sql).fetch_all(db.pool()).await?;
    Ok((rows.iter().map(listed).collect(), total))
}

pub async fn listed_one(db: &Db, id: i64) -> sqlx::Result<Option<Listed>> {
    let sql = format!("SELECT {COLUMNS}, {COUNTS} FROM activities a WHERE a.id = $1");
    Ok(sqlx::query(&sql)
        .bind(id)
        .fetch_optional(db.pool())
        .await?
        .as_ref()
        .map(listed))
}

/// Whether `scope` may manage activity `id` (see [`scope_condition`]).
pub async fn in_scope(db: &Db, scope: &OrgScope, id: i64) -> sqlx::Result<bool> {
    let sql = format!(
        "SELECT COUNT(*) FROM activities a WHERE a.id = $1 AND {}",
        scope_condition(scope)
    );
    Ok(sqlx::query(&sql)
        .bind(id)
        .fetch_one(db.pool())
        .await?
        .get::<i64, _>(0)
        == 1)
}

/// Open activities that have not ended (`ends_at`, else start + `default_duration_ms`) by `now`,
/// soonest first, for the mini-program (audiences are filtered by the caller).
pub async fn upcoming(
    db: &Db,
    now: i64,
    default_duration_ms: i64,
) -> sqlx::Result<Vec<ActivityRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM activities WHERE status = 'open' AND COALESCE(ends_at, starts_at + $2) > $1 \
         ORDER BY starts_at, id LIMIT 500"
    );
    Ok(sqlx::query(&sql)
        .bind(now)
        .bind(default_duration_ms)
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(activity)
        .collect())
}

pub async fn cancel(tx: &mut Tx, id: i64, reason: Option<&str>, now: i64) -> sqlx::Result<bool> {
    Ok(sqlx::query(
        "UPDATE activities SET status = 'cancelled', cancelled_at = $1, cancel_reason = $2, updated_at = $1 \
         WHERE id = $3 AND status = 'open'",
    )
    .bind(now)
    .bind(reason)
    .bind(id)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1)
}

pub async fn set_minutes(
    tx: &mut Tx,
    id: i64,
    host: &str,
    recorder: &str,
    minutes: &str,
    photos: &[String],
    now: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE activities SET host = $1, recorder = $2, minutes = $3, photos = $4, minutes_at = $5, \
         updated_at = $5 WHERE id = $6",
    )
    .bind(host)
    .bind(recorder)
    .bind(minutes)
    .bind(serde_json::to_string(photos).unwrap_or_else(|_| "[]".into()))
    .bind(now)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

// ---------------------------------------------------------------- sign-ups

#[derive(Debug, Clone)]
pub struct SignupRow {
    pub id: i64,
    pub activity_id: i64,
    pub member_id: i64,
    pub status: String,
    pub seq: i64,
    pub created_at: i64,
    pub confirmed_at: Option<i64>,
    pub promoted_at: Option<i64>,
}

const SIGNUP: &str =
    "SELECT id, activity_id, member_id, status, seq, created_at, confirmed_at, promoted_at FROM activity_signups";

fn signup(r: &sqlx::any::AnyRow) -> SignupRow {
    SignupRow {
        id: r.get(0),
        activity_id: r.get(1),
        member_id: r.get(2),
        status: r.get(3),
        seq: r.get(4),
        created_at: r.get(5),
        confirmed_at: r.get(6),
        promoted_at: r.get(7),
    }
}

/// The member's confirmed or waitlisted sign-up.
pub async fn active_signup<'c, E>(
    exec: E,
    activity: i64,
    member: i64,
) -> sqlx::Result<Option<SignupRow>>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let sql = format!(
        "{SIGNUP} WHERE activity_id = $1 AND member_id = $2 AND status IN ('confirmed', 'waitlisted')"
    );
    Ok(sqlx::query(&sql)
        .bind(activity)
        .bind(member)
        .fetch_optional(exec)
        .await?
        .as_ref()
        .map(signup))
}

/// Where a new sign-up landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Landed {
    pub seq: i64,
    /// None: confirmed; Some(n): n-th in the waitlist.
    pub position: Option<i64>,
}

/// The one UPDATE that decides a sign-up, on the activity row (so it holds the row lock until
/// commit): the next sequence number, and a place if one is free *and nobody waits*
/// (`waitlisted_count = 0`), else the end of the waitlist. Only while open and in the sign-up
/// window. The CHECK `confirmed_count <= capacity` backs the CASE.
const TAKE: &str = "UPDATE activities SET signup_seq = signup_seq + 1, \
     confirmed_count = confirmed_count + CASE WHEN confirmed_count < capacity AND waitlisted_count = 0 THEN 1 ELSE 0 END, \
     waitlisted_count = waitlisted_count + CASE WHEN confirmed_count < capacity AND waitlisted_count = 0 THEN 0 ELSE 1 END \
     WHERE id = $1 AND status = 'open' AND signup_opens_at <= $2 AND signup_closes_at > $2 \
     RETURNING signup_seq, waitlisted_count";

/// After [`TAKE`]: confirmed exactly when nobody waits (a waitlisted sign-up made the count ≥ 1).
const INSERT_SIGNUP: &str = "INSERT INTO activity_signups (activity_id, member_id, status, seq, created_at, confirmed_at, updated_at) \
     SELECT $1, $3, CASE WHEN t.waitlisted_count = 0 THEN 'confirmed' ELSE 'waitlisted' END, t.signup_seq, $2, \
     CASE WHEN t.waitlisted_count = 0 THEN $2 END, $2 FROM t";

/// Sign `member` up for `activity` at `now` inside `tx` (a write transaction): the activity
/// row's counters and the sign-up row change together or not at all, and the activity row stays
/// locked until `tx` ends. `None` when the activity is not open for sign-up now (or does not
/// exist); a unique violation when the member already has an active sign-up (the transaction is
/// then unusable on PostgreSQL: roll it back).
///
/// PostgreSQL: one statement (a data-modifying CTE); SQLite: the same UPDATE, then the INSERT.
pub async fn sign_up_in(
    tx: &mut Tx,
    backend: Backend,
    activity: i64,
    member: i64,
    now: i64,
) -> sqlx::Result<Option<Landed>> {
    let landed = |r: sqlx::any::AnyRow| {
        let (seq, waiting): (i64, i64) = (r.get(0), r.get(1));
        Landed {
            seq,
            position: (waiting > 0).then_some(waiting),
        }
    };
    match backend {
        Backend::Postgres => {
            let sql = format!(
                "WITH t AS ({TAKE}), i AS ({INSERT_SIGNUP} RETURNING id) \
                 SELECT t.signup_seq, t.waitlisted_count FROM t, i"
            );
            Ok(sqlx::query(&sql)
                .bind(activity)
                .bind(now)
                .bind(member)
                .fetch_optional(&mut **tx)
                .await?
                .map(landed))
        }
        Backend::Sqlite => {
            let Some(row) = sqlx::query(TAKE)
                .bind(activity)
                .bind(now)
                .fetch_optional(&mut **tx)
                .await?
            else {
                return Ok(None);
            };
            let l = landed(row);
            sqlx::query(
                "INSERT INTO activity_signups (activity_id, member_id, status, seq, created_at, confirmed_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $5)",
            )
            .bind(activity)
            .bind(member)
            .bind(if l.position.is_none() { "confirmed" } else { "waitlisted" })
            .bind(l.seq)
            .bind(now)
            .bind(l.position.is_none().then_some(now))
            .execute(&mut **tx)
            .await?;
            Ok(Some(l))
        }
    }
}

/// PostgreSQL: a whole batch of sign-ups (members in arrival order) in one statement, so the
/// activity row is locked for one round trip instead of one per sign-up — what two replicas
/// queue on in a flash crowd. The same rule as [`TAKE`], applied to `k` sign-ups at once: with
/// `m` = the free places if nobody waits (else 0), the first `min(k, m)` are confirmed and the
/// rest join the end of the waitlist, with consecutive sequence numbers. The activity row is read
/// `FOR UPDATE` (the newest committed version, after waiting for any other batch), then updated
/// from that read. Empty when the activity is not open for sign-up at `now`; a unique violation
/// when any member already has an active sign-up (or appears twice): the caller retries each
/// alone.
const TAKE_BATCH: &str = "WITH input AS (\
       SELECT member, ord FROM unnest($3::text::bigint[]) WITH ORDINALITY AS x(member, ord)), \
     old AS (\
       SELECT id, signup_seq, waitlisted_count, cardinality($3::text::bigint[])::bigint AS k, \
              LEAST(cardinality($3::text::bigint[])::bigint, \
                    CASE WHEN waitlisted_count = 0 THEN GREATEST(capacity - confirmed_count, 0) ELSE 0 END)::bigint AS m \
       FROM activities \
       WHERE id = $1 AND status = 'open' AND signup_opens_at <= $2 AND signup_closes_at > $2 \
       FOR UPDATE), \
     upd AS (\
       UPDATE activities a SET signup_seq = a.signup_seq + old.k, \
              confirmed_count = a.confirmed_count + old.m, \
              waitlisted_count = a.waitlisted_count + old.k - old.m \
       FROM old WHERE a.id = old.id RETURNING a.id), \
     ins AS (\
       INSERT INTO activity_signups (activity_id, member_id, status, seq, created_at, confirmed_at, updated_at) \
       SELECT $1, input.member, CASE WHEN input.ord <= old.m THEN 'confirmed' ELSE 'waitlisted' END, \
              old.signup_seq + input.ord, $2, CASE WHEN input.ord <= old.m THEN $2 END, $2 \
       FROM input, old, upd \
       RETURNING member_id, seq) \
     SELECT ins.member_id, ins.seq, \
            CASE WHEN ins.seq - old.signup_seq <= old.m THEN 0 \
                 ELSE old.waitlisted_count + ins.seq - old.signup_seq - old.m END \
     FROM ins, old";

/// [`TAKE_BATCH`]: where each member of `members` (in arrival order) landed, in the same order;
/// `None` when the activity is not open for sign-up at `now`. PostgreSQL only.
pub async fn sign_up_batch_in(
    tx: &mut Tx,
    activity: i64,
    members: &[i64],
    now: i64,
) -> sqlx::Result<Option<Vec<Landed>>> {
    // The `Any` driver has no array binds: the members go as a PostgreSQL array literal of
    // integers (digits and commas only, built here from i64s).
    let literal = format!(
        "{{{}}}",
        members
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
    let rows = sqlx::query(TAKE_BATCH)
        .bind(activity)
        .bind(now)
        .bind(literal)
        .fetch_all(&mut **tx)
        .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let by_member: HashMap<i64, Landed> = rows
        .iter()
        .map(|r| {
            let (member, seq, waiting): (i64, i64, i64) = (r.get(0), r.get(1), r.get(2));
            (
                member,
                Landed {
                    seq,
                    position: (waiting > 0).then_some(waiting),
                },
            )
        })
        .collect();
    members
        .iter()
        .map(|m| by_member.get(m).copied())
        .collect::<Option<Vec<_>>>()
        .map(Some)
        .ok_or_else(|| sqlx::Error::Protocol("sign-up batch: a member's row is missing".into()))
}

/// Withdraw a sign-up that is still `old_status` (the state guard makes a repeat a no-op).
pub async fn withdraw(tx: &mut Tx, id: i64, old_status: &str, now: i64) -> sqlx::Result<bool> {
    Ok(sqlx::query(
        "UPDATE activity_signups SET status = 'cancelled', cancelled_at = $1, updated_at = $1 \
         WHERE id = $2 AND status = $3",
    )
    .bind(now)
    .bind(id)
    .bind(old_status)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1)
}

/// Give back what a withdrawn sign-up held: a place (`confirmed`) or a waitlist slot.
pub async fn release(tx: &mut Tx, activity: i64, old_status: &str) -> sqlx::Result<bool> {
    let sql = if old_status == "confirmed" {
        "UPDATE activities SET confirmed_count = confirmed_count - 1 WHERE id = $1 AND confirmed_count > 0"
    } else {
        "UPDATE activities SET waitlisted_count = waitlisted_count - 1 WHERE id = $1 AND waitlisted_count > 0"
    };
    Ok(sqlx::query(sql)
        .bind(activity)
        .execute(&mut **tx)
        .await?
        .rows_affected()
        == 1)
}

/// Promote the first waitlisted sign-up into a free place: the place is taken first (a
/// conditional UPDATE, so never over capacity), then the sign-up with the lowest sequence moves
/// from waitlisted to confirmed under a state guard. `None` when no place is free or nobody waits.
pub async fn promote_first(
    tx: &mut Tx,
    activity: i64,
    now: i64,
) -> sqlx::Result<Option<(i64, i64)>> {
    let waiting: Option<(i64, i64)> = sqlx::query(
        "SELECT id, member_id FROM activity_signups WHERE activity_id = $1 AND status = 'waitlisted' \
         ORDER BY seq LIMIT 1",
    )
    .bind(activity)
    .fetch_optional(&mut **tx)
    .await?
    .map(|r| (r.get(0), r.get(1)));
    let Some((signup_id, member)) = waiting else {
        return Ok(None);
    };
    let took = sqlx::query(
        "UPDATE activities SET confirmed_count = confirmed_count + 1, waitlisted_count = waitlisted_count - 1 \
         WHERE id = $1 AND status = 'open' AND confirmed_count < capacity AND waitlisted_count > 0",
    )
    .bind(activity)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1;
    if !took {
        return Ok(None);
    }
    let moved = sqlx::query(
        "UPDATE activity_signups SET status = 'confirmed', confirmed_at = $1, promoted_at = $1, updated_at = $1 \
         WHERE id = $2 AND status = 'waitlisted'",
    )
    .bind(now)
    .bind(signup_id)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1;
    if !moved {
        // Only possible without the activity lock; the caller's transaction is rolled back.
        return Err(sqlx::Error::Protocol(
            "waitlisted sign-up changed under the activity lock".into(),
        ));
    }
    Ok(Some((signup_id, member)))
}

/// Confirmed then waitlisted sign-ups, each in sequence order.
pub async fn active_signups(db: &Db, activity: i64) -> sqlx::Result<Vec<SignupRow>> {
    let sql = format!(
        "{SIGNUP} WHERE activity_id = $1 AND status IN ('confirmed', 'waitlisted') \
         ORDER BY CASE status WHEN 'confirmed' THEN 0 ELSE 1 END, seq"
    );
    Ok(sqlx::query(&sql)
        .bind(activity)
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(signup)
        .collect())
}

/// The member's active sign-ups among `activities`, with their waitlist position (None when
/// confirmed).
pub async fn my_signups(
    db: &Db,
    member: i64,
    activities: &[i64],
) -> sqlx::Result<HashMap<i64, (String, Option<i64>)>> {
    let mut out = HashMap::new();
    for chunk in activities.chunks(500) {
        let list: Vec<String> = chunk.iter().map(i64::to_string).collect();
        let sql = format!(
            "SELECT s.activity_id, s.status, CASE WHEN s.status = 'waitlisted' THEN \
             (SELECT COUNT(*) FROM activity_signups w WHERE w.activity_id = s.activity_id \
              AND w.status = 'waitlisted' AND w.seq <= s.seq) END \
             FROM activity_signups s WHERE s.member_id = $1 AND s.status IN ('confirmed', 'waitlisted') \
             AND s.activity_id IN ({})",
            list.join(",")
        );
        for r in sqlx::query(&sql).bind(member).fetch_all(db.pool()).await? {
            out.insert(r.get(0), (r.get(1), r.get(2)));
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------- attendance

#[derive(Debug, Clone)]
pub struct AttendanceRow {
    pub member_id: i64,
    pub status: String,
    pub leave_kind: Option<String>,
    pub reason: Option<String>,
    pub source: String,
    pub checked_in_at: Option<i64>,
    pub marked_by: Option<String>,
    pub updated_at: i64,
}

pub async fn attendance(db: &Db, activity: i64) -> sqlx::Result<Vec<AttendanceRow>> {
    Ok(sqlx::query(
        "SELECT member_id, status, leave_kind, reason, source, checked_in_at, marked_by, updated_at \
         FROM activity_attendance WHERE activity_id = $1 ORDER BY member_id",
    )
    .bind(activity)
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(|r| AttendanceRow {
        member_id: r.get(0),
        status: r.get(1),
        leave_kind: r.get(2),
        reason: r.get(3),
        source: r.get(4),
        checked_in_at: r.get(5),
        marked_by: r.get(6),
        updated_at: r.get(7),
    })
    .collect())
}

/// Give each expected member a default `absent` record (existing records are kept).
pub async fn ensure_expected(
    tx: &mut Tx,
    activity: i64,
    members: &[i64],
    now: i64,
) -> sqlx::Result<u64> {
    let mut n = 0;
    for chunk in members.chunks(200) {
        let values: Vec<String> = chunk
            .iter()
            .map(|m| format!("({activity}, {m}, 'absent', 'default', {now})"))
            .collect();
        let sql = format!(
            "INSERT INTO activity_attendance (activity_id, member_id, status, source, updated_at) VALUES {} \
             ON CONFLICT (activity_id, member_id) DO NOTHING",
            values.join(", ")
        );
        n += sqlx::query(&sql).execute(&mut **tx).await?.rows_affected();
    }
    Ok(n)
}

/// Record a check-in: at most one per member and activity (a second is `false`). A default or a
/// hand-made mark without a check-in is replaced by the check-in.
pub async fn check_in(
    db: &Db,
    activity: i64,
    member: i64,
    status: Attendance,
    now: i64,
) -> sqlx::Result<bool> {
    Ok(sqlx::query(
        "INSERT INTO activity_attendance (activity_id, member_id, status, source, checked_in_at, updated_at) \
         VALUES ($1, $2, $3, 'checkin', $4, $4) ON CONFLICT (activity_id, member_id) DO UPDATE SET \
         status = excluded.status, leave_kind = NULL, reason = NULL, source = 'checkin', \
         checked_in_at = excluded.checked_in_at, updated_at = excluded.updated_at \
         WHERE activity_attendance.checked_in_at IS NULL",
    )
    .bind(activity)
    .bind(member)
    .bind(status.as_str())
    .bind(now)
    .execute(db.pool())
    .await?
    .rows_affected()
        == 1)
}

/// A secretary's mark; a recorded check-in time is kept.
#[allow(clippy::too_many_arguments)]
pub async fn mark(
    tx: &mut Tx,
    activity: i64,
    member: i64,
    status: Attendance,
    leave_kind: Option<LeaveKind>,
    reason: Option<&str>,
    by: &str,
    now: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO activity_attendance (activity_id, member_id, status, leave_kind, reason, source, marked_by, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 'manual', $6, $7) ON CONFLICT (activity_id, member_id) DO UPDATE SET \
         status = excluded.status, leave_kind = excluded.leave_kind, reason = excluded.reason, \
         source = 'manual', marked_by = excluded.marked_by, updated_at = excluded.updated_at",
    )
    .bind(activity)
    .bind(member)
    .bind(status.as_str())
    .bind(leave_kind.map(LeaveKind::as_str))
    .bind(reason)
    .bind(by)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn attendance_of(
    db: &Db,
    activity: i64,
    member: i64,
) -> sqlx::Result<Option<(String, Option<i64>)>> {
    Ok(sqlx::query(
        "SELECT status, checked_in_at FROM activity_attendance WHERE activity_id = $1 AND member_id = $2",
    )
    .bind(activity)
    .bind(member)
    .fetch_optional(db.pool())
    .await?
    .map(|r| (r.get(0), r.get(1))))
}

// ---------------------------------------------------------------- rhythm

/// Per audience org unit and meeting kind: (held before `now`, scheduled at or after), among
/// open meetings starting in `[from, until)`.
pub async fn rhythm(
    db: &Db,
    from: i64,
    until: i64,
    now: i64,
) -> sqlx::Result<HashMap<(i64, Kind), (i64, i64)>> {
    let rows = sqlx::query(
        "SELECT aa.org_unit_id, a.kind, \
         SUM(CASE WHEN a.starts_at < $3 THEN 1 ELSE 0 END), SUM(CASE WHEN a.starts_at >= $3 THEN 1 ELSE 0 END) \
         FROM activities a JOIN activity_audience aa ON aa.activity_id = a.id \
         WHERE a.status = 'open' AND a.starts_at >= $1 AND a.starts_at < $2 AND a.kind <> 'activity' \
         GROUP BY aa.org_unit_id, a.kind",
    )
    .bind(from)
    .bind(until)
    .bind(now)
    .fetch_all(db.pool())
    .await?;
    let mut out = HashMap::new();
    for r in rows {
        let kind: String = r.get(1);
        if let Some(k) = Kind::parse(&kind) {
            out.insert((r.get(0), k), (r.get(2), r.get(3)));
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------- notices and reminders

/// Tell every member with an active sign-up (and, for meetings, every expected member) that the
/// activity is cancelled; once each.
pub async fn notify_cancelled(tx: &mut Tx, activity: i64, now: i64) -> sqlx::Result<u64> {
    let a = sqlx::query(
        "INSERT INTO activity_notices (activity_id, member_id, kind, created_at) \
         SELECT activity_id, member_id, 'cancelled', $2 FROM activity_signups \
         WHERE activity_id = $1 AND status IN ('confirmed', 'waitlisted') \
         UNION SELECT activity_id, member_id, 'cancelled', $2 FROM activity_attendance WHERE activity_id = $1 \
         ON CONFLICT (activity_id, member_id, kind, signup_id) DO NOTHING",
    )
    .bind(activity)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(a.rows_affected())
}

pub async fn notify_promoted(
    tx: &mut Tx,
    activity: i64,
    member: i64,
    signup_id: i64,
    now: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO activity_notices (activity_id, member_id, kind, signup_id, created_at) \
         VALUES ($1, $2, 'promoted', $3, $4) ON CONFLICT (activity_id, member_id, kind, signup_id) DO NOTHING",
    )
    .bind(activity)
    .bind(member)
    .bind(signup_id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Open activities whose reminder time (start − remind_minutes) has come and that have not
/// started yet nor been reminded.
pub async fn due_reminders(db: &Db, now: i64) -> sqlx::Result<Vec<i64>> {
    Ok(sqlx::query(
        "SELECT id FROM activities WHERE status = 'open' AND reminded_at IS NULL AND remind_minutes > 0 \
         AND starts_at > $1 AND starts_at - remind_minutes * 60000 <= $1 ORDER BY starts_at LIMIT 100",
    )
    .bind(now)
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(|r| r.get(0))
    .collect())
}

/// Claim the activity's reminder (state guard: once, whichever worker gets here first) and queue
/// one reminder notice per confirmed member, setting each sign-up's `reminded_at`, in `tx`.
/// `None` when another worker claimed it.
pub async fn queue_reminders(tx: &mut Tx, activity: i64, now: i64) -> sqlx::Result<Option<u64>> {
    let claimed = sqlx::query(
        "UPDATE activities SET reminded_at = $1 WHERE id = $2 AND reminded_at IS NULL AND status = 'open'",
    )
    .bind(now)
    .bind(activity)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1;
    if !claimed {
        return Ok(None);
    }
    let queued = sqlx::query(
        "INSERT INTO activity_notices (activity_id, member_id, kind, created_at) \
         SELECT activity_id, member_id, 'reminder', $2 FROM activity_signups \
         WHERE activity_id = $1 AND status = 'confirmed' AND reminded_at IS NULL \
         ON CONFLICT (activity_id, member_id, kind, signup_id) DO NOTHING",
    )
    .bind(activity)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    sqlx::query(
        "UPDATE activity_signups SET reminded_at = $2 WHERE activity_id = $1 AND status = 'confirmed' \
         AND reminded_at IS NULL",
    )
    .bind(activity)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(Some(queued))
}

#[derive(Debug, Clone)]
pub struct NoticeRow {
    pub id: i64,
    pub activity_id: i64,
    pub member_id: i64,
    pub kind: String,
}

/// Take up to `limit` pending notices, oldest first, for the rest of `tx`: on PostgreSQL their
/// rows are locked (`FOR UPDATE SKIP LOCKED`: another replica takes the next ones); on SQLite
/// `begin_write` already holds the one write lock. Each is then marked [`mark_queued`] or
/// [`mark_skipped`] in the same transaction.
pub async fn claim_pending_notices(
    tx: &mut Tx,
    backend: Backend,
    limit: i64,
) -> sqlx::Result<Vec<NoticeRow>> {
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    Ok(sqlx::query(&format!(
        "SELECT id, activity_id, member_id, kind FROM activity_notices WHERE status = 'pending' \
         ORDER BY id LIMIT $1{lock}"
    ))
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?
    .iter()
    .map(|r| NoticeRow {
        id: r.get(0),
        activity_id: r.get(1),
        member_id: r.get(2),
        kind: r.get(3),
    })
    .collect())
}

/// A pending notice handed to a push: the delivery row that carries it (state guard: once).
pub async fn mark_queued(
    tx: &mut Tx,
    id: i64,
    push_id: i64,
    delivery_id: i64,
    now: i64,
) -> sqlx::Result<bool> {
    Ok(sqlx::query(
        "UPDATE activity_notices SET status = 'queued', push_id = $1, delivery_id = $2, sent_at = $3 \
         WHERE id = $4 AND status = 'pending'",
    )
    .bind(push_id)
    .bind(delivery_id)
    .bind(now)
    .bind(id)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1)
}

/// A pending notice that no push can carry (no channel configured, the activity gone).
pub async fn mark_skipped(tx: &mut Tx, id: i64, reason: &str, now: i64) -> sqlx::Result<bool> {
    Ok(sqlx::query(
        "UPDATE activity_notices SET status = 'skipped', error = $1, sent_at = $2 WHERE id = $3 AND status = 'pending'",
    )
    .bind(reason)
    .bind(now)
    .bind(id)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1)
}

// ---------------------------------------------------------------- minutes photos

/// A photo of a meeting's minutes, without its bytes.
#[derive(Debug, Clone)]
pub struct PhotoRow {
    pub id: i64,
    pub activity_id: i64,
    pub content_type: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub uploaded_by: String,
    pub uploaded_at: i64,
}

const PHOTO: &str =
    "SELECT id, activity_id, content_type, size_bytes, sha256, uploaded_by, uploaded_at FROM activity_photos";

fn photo_row(r: &sqlx::any::AnyRow) -> PhotoRow {
    PhotoRow {
        id: r.get(0),
        activity_id: r.get(1),
        content_type: r.get(2),
        size_bytes: r.get(3),
        sha256: r.get(4),
        uploaded_by: r.get(5),
        uploaded_at: r.get(6),
    }
}

pub struct NewPhoto<'a> {
    pub content_type: &'a str,
    pub size_bytes: i64,
    pub sha256: &'a str,
    pub content_b64: &'a str,
}

pub async fn insert_photo(
    tx: &mut Tx,
    activity: i64,
    p: &NewPhoto<'_>,
    by: &str,
    now: i64,
) -> sqlx::Result<i64> {
    Ok(sqlx::query(
        "INSERT INTO activity_photos (activity_id, content_type, size_bytes, sha256, content_b64, \
         uploaded_by, uploaded_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(activity)
    .bind(p.content_type)
    .bind(p.size_bytes)
    .bind(p.sha256)
    .bind(p.content_b64)
    .bind(by)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?
    .get(0))
}

pub async fn photo_count(tx: &mut Tx, activity: i64) -> sqlx::Result<i64> {
    Ok(
        sqlx::query("SELECT COUNT(*) FROM activity_photos WHERE activity_id = $1")
            .bind(activity)
            .fetch_one(&mut **tx)
            .await?
            .get(0),
    )
}

/// An activity's photos in upload order.
pub async fn photos(db: &Db, activity: i64) -> sqlx::Result<Vec<PhotoRow>> {
    Ok(
        sqlx::query(&format!("{PHOTO} WHERE activity_id = $1 ORDER BY id"))
            .bind(activity)
            .fetch_all(db.pool())
            .await?
            .iter()
            .map(photo_row)
            .collect(),
    )
}

/// One photo of the activity with its bytes (base64).
pub async fn photo(db: &Db, activity: i64, id: i64) -> sqlx::Result<Option<(PhotoRow, String)>> {
    let sql =
        PHOTO.replacen(" FROM", ", content_b64 FROM", 1) + " WHERE activity_id = $1 AND id = $2";
    Ok(sqlx::query(&sql)
        .bind(activity)
        .bind(id)
        .fetch_optional(db.pool())
        .await?
        .map(|r| (photo_row(&r), r.get(7))))
}

pub async fn delete_photo(tx: &mut Tx, activity: i64, id: i64) -> sqlx::Result<bool> {
    Ok(
        sqlx::query("DELETE FROM activity_photos WHERE activity_id = $1 AND id = $2")
            .bind(activity)
            .bind(id)
            .execute(&mut **tx)
            .await?
            .rows_affected()
            == 1,
    )
}
