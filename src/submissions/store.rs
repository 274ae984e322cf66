//! Submissions (投稿) and message-board posts (留言): drafts, the editors' queue, decisions.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::platform::db::{Db, Tx};
use crate::submissions::rules::Moderation;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Image {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Submission {
    pub id: i64,
    pub receipt_no: Option<String>,
    pub openid: String,
    pub source: String,
    pub title: String,
    pub content: String,
    pub images: Vec<Image>,
    pub status: String,
    pub moderation_suggest: Option<String>,
    pub moderation_label: Option<String>,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub reason: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// The article draft an editor turned it into.
    pub article_id: Option<i64>,
}

const SELECT: &str = "SELECT id, receipt_no, openid, source, title, content, images, status, \
     moderation_suggest, moderation_label, decided_by, decided_at, reason, created_at, updated_at, \
     article_id FROM submissions";

fn submission(r: sqlx::any::AnyRow) -> Submission {
    Submission {
        id: r.get(0),
        receipt_no: r.get(1),
        openid: r.get(2),
        source: r.get(3),
        title: r.get(4),
        content: r.get(5),
        images: serde_json::from_str(&r.get::<String, _>(6)).unwrap_or_default(),
        status: r.get(7),
        moderation_suggest: r.get(8),
        moderation_label: r.get(9),
        decided_by: r.get(10),
        decided_at: r.get(11),
        reason: r.get(12),
        created_at: r.get(13),
        updated_at: r.get(14),
        article_id: r.get(15),
    }
}

/// `TG20261123-0042`: the submission day (Asia/Shanghai) and the row id, so unique by construction.
pub fn receipt_no(id: i64, now_ms: i64) -> String {
    let day = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(now_ms) * 1_000_000)
        .map(|t| t.to_offset(time::macros::offset!(+8)))
        .map(|t| format!("{:04}{:02}{:02}", t.year(), u8::from(t.month()), t.day()))
        .unwrap_or_default();
    format!("TG{day}-{id:04}")
}

/// The follower's open (unexpired) draft.
pub async fn open_draft(db: &Db, openid: &str, now_ms: i64) -> sqlx::Result<Option<Submission>> {
    let row = sqlx::query(&format!(
        "{SELECT} WHERE openid = $1 AND status = 'draft' AND draft_expires_at > $2"
    ))
    .bind(openid)
    .bind(now_ms)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(submission))
}

/// Open a draft (or keep the open one alive until `expires_at`). An expired draft is dropped.
/// Returns the draft id and whether it already existed.
pub async fn start_draft(
    db: &Db,
    openid: &str,
    now_ms: i64,
    expires_at: i64,
) -> sqlx::Result<(i64, bool)> {
    let mut tx = db.begin_write().await?;
    sqlx::query(
        "DELETE FROM submissions WHERE openid = $1 AND status = 'draft' AND draft_expires_at <= $2",
    )
    .bind(openid)
    .bind(now_ms)
    .execute(&mut *tx)
    .await?;
    let existing = sqlx::query(
        "UPDATE submissions SET draft_expires_at = $2, updated_at = $3 \
         WHERE openid = $1 AND status = 'draft' RETURNING id",
    )
    .bind(openid)
    .bind(expires_at)
    .bind(now_ms)
    .fetch_optional(&mut *tx)
    .await?;
    let result = match existing {
        Some(r) => (r.get(0), true),
        None => {
            let r = sqlx::query(
                "INSERT INTO submissions (openid, source, status, draft_expires_at, created_at, updated_at) \
                 VALUES ($1, 'chat', 'draft', $2, $3, $3) RETURNING id",
            )
            .bind(openid)
            .bind(expires_at)
            .bind(now_ms)
            .fetch_one(&mut *tx)
            .await?;
            (r.get(0), false)
        }
    };
    tx.commit().await?;
    Ok(result)
}

/// Replace a draft's content and images, keeping it alive until `expires_at`.
pub async fn update_draft(
    db: &Db,
    id: i64,
    content: &str,
    images: &[Image],
    now_ms: i64,
    expires_at: i64,
) -> sqlx::Result<bool> {
    let images = serde_json::to_string(images).unwrap_or_else(|_| "[]".into());
    let done = sqlx::query(
        "UPDATE submissions SET content = $2, images = $3, draft_expires_at = $4, updated_at = $5 \
         WHERE id = $1 AND status = 'draft'",
    )
    .bind(id)
    .bind(content)
    .bind(images)
    .bind(expires_at)
    .bind(now_ms)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Drop the follower's draft (open or expired). True when there was an open one.
pub async fn cancel_draft(db: &Db, openid: &str, now_ms: i64) -> sqlx::Result<bool> {
    let open = sqlx::query(
        "DELETE FROM submissions WHERE openid = $1 AND status = 'draft' RETURNING draft_expires_at",
    )
    .bind(openid)
    .fetch_all(db.pool())
    .await?;
    Ok(open
        .iter()
        .any(|r| r.get::<Option<i64>, _>(0).unwrap_or(0) > now_ms))
}

/// Turn a draft into a submission in the state moderation chose; returns the receipt number.
pub async fn submit_draft(
    db: &Db,
    id: i64,
    title: &str,
    m: &Moderation,
    now_ms: i64,
) -> sqlx::Result<Option<String>> {
    let receipt = receipt_no(id, now_ms);
    let done = sqlx::query(
        "UPDATE submissions SET status = $2, receipt_no = $3, title = $4, moderation_suggest = $5, \
         moderation_label = $6, draft_expires_at = NULL, created_at = $7, updated_at = $7 \
         WHERE id = $1 AND status = 'draft'",
    )
    .bind(id)
    .bind(m.initial.as_str())
    .bind(&receipt)
    .bind(title)
    .bind(m.suggest)
    .bind(&m.label)
    .bind(now_ms)
    .execute(db.pool())
    .await?;
    Ok((done.rows_affected() == 1).then_some(receipt))
}

pub struct NewSubmission<'a> {
    pub openid: &'a str,
    pub source: &'a str,
    pub title: &'a str,
    pub content: &'a str,
    pub images: &'a [Image],
}

/// An item the same member created with the same text since a moment (the duplicate rule).
#[derive(Debug, Clone)]
pub struct Recent {
    pub id: i64,
    pub receipt_no: Option<String>,
    pub status: String,
    pub suggest: Option<String>,
    pub label: Option<String>,
}

/// Serialise one member's creations (PostgreSQL: a transaction-scoped advisory lock on the openid;
/// SQLite: `begin_write` already holds the one write lock), so the duplicate re-check inside the
/// transaction is exact even for two deliveries at once.
async fn lock_member(db: &Db, tx: &mut Tx, openid: &str) -> sqlx::Result<()> {
    if db.backend() == crate::platform::db::Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("submissions:{openid}"))
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

async fn recent_same_in<'c, E>(
    exec: E,
    table: Table,
    openid: &str,
    content: &str,
    since_ms: i64,
) -> sqlx::Result<Option<Recent>>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let receipt = match table {
        Table::Submissions => "receipt_no",
        Table::BoardPosts => "NULL",
    };
    let row = sqlx::query(&format!(
        "SELECT id, {receipt}, status, moderation_suggest, moderation_label FROM {}          WHERE openid = $1 AND content = $2 AND created_at >= $3 AND status <> 'draft'          ORDER BY id LIMIT 1",
        table.name()
    ))
    .bind(openid)
    .bind(content)
    .bind(since_ms)
    .fetch_optional(exec)
    .await?;
    Ok(row.map(|r| Recent {
        id: r.get(0),
        receipt_no: r.get(1),
        status: r.get(2),
        suggest: r.get(3),
        label: r.get(4),
    }))
}

/// The member's item with this very text created since `since_ms`, if any.
pub async fn recent_same(
    db: &Db,
    table: Table,
    openid: &str,
    content: &str,
    since_ms: i64,
) -> sqlx::Result<Option<Recent>> {
    recent_same_in(db.pool(), table, openid, content, since_ms).await
}

/// How many items (drafts not counted) the member created since `since_ms`.
pub async fn count_since(db: &Db, table: Table, openid: &str, since_ms: i64) -> sqlx::Result<i64> {
    Ok(sqlx::query(&format!(
        "SELECT COUNT(*) FROM {} WHERE openid = $1 AND created_at >= $2 AND status <> 'draft'",
        table.name()
    ))
    .bind(openid)
    .bind(since_ms)
    .fetch_one(db.pool())
    .await?
    .get(0))
}

/// What an insert did: a new row, or the member's identical item of the duplicate window.
#[derive(Debug, Clone)]
pub enum Inserted {
    New { id: i64, receipt_no: Option<String> },
    Existing(Recent),
}

/// A submission made in one go; a new row with its receipt number, unless the member created the
/// same text since `duplicate_since` (then that item).
pub async fn insert(
    db: &Db,
    s: &NewSubmission<'_>,
    m: &Moderation,
    now_ms: i64,
    duplicate_since: i64,
) -> sqlx::Result<Inserted> {
    let images = serde_json::to_string(s.images).unwrap_or_else(|_| "[]".into());
    let mut tx = db.begin_write().await?;
    lock_member(db, &mut tx, s.openid).await?;
    if let Some(r) = recent_same_in(
        &mut *tx,
        Table::Submissions,
        s.openid,
        s.content,
        duplicate_since,
    )
    .await?
    {
        return Ok(Inserted::Existing(r));
    }
    let id: i64 = sqlx::query(
        "INSERT INTO submissions (openid, source, title, content, images, status, moderation_suggest, \
         moderation_label, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) \
         RETURNING id",
    )
    .bind(s.openid)
    .bind(s.source)
    .bind(s.title)
    .bind(s.content)
    .bind(images)
    .bind(m.initial.as_str())
    .bind(m.suggest)
    .bind(&m.label)
    .bind(now_ms)
    .fetch_one(&mut *tx)
    .await?
    .get(0);
    let receipt = receipt_no(id, now_ms);
    sqlx::query("UPDATE submissions SET receipt_no = $2 WHERE id = $1")
        .bind(id)
        .bind(&receipt)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Inserted::New {
        id,
        receipt_no: Some(receipt),
    })
}

pub async fn get(db: &Db, id: i64) -> sqlx::Result<Option<Submission>> {
    let row = sqlx::query(&format!("{SELECT} WHERE id = $1 AND status <> 'draft'"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.map(submission))
}

/// A submission read for turning it into an article, inside the write transaction (locked on
/// PostgreSQL; on SQLite `begin_write` already holds the write lock): (status, article_id).
pub async fn draft_state_for_update(
    tx: &mut Tx,
    backend: crate::platform::db::Backend,
    id: i64,
) -> sqlx::Result<Option<(String, Option<i64>)>> {
    let sql = match backend {
        crate::platform::db::Backend::Postgres => {
            "SELECT status, article_id FROM submissions WHERE id = $1 AND status <> 'draft' FOR UPDATE"
        }
        crate::platform::db::Backend::Sqlite => {
            "SELECT status, article_id FROM submissions WHERE id = $1 AND status <> 'draft'"
        }
    };
    let row = sqlx::query(sql).bind(id).fetch_optional(&mut **tx).await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// Record the article a submission became (only once: `false` when one is recorded already).
pub async fn set_article(tx: &mut Tx, id: i64, article_id: i64, now: i64) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE submissions SET article_id = $2, updated_at = $3 WHERE id = $1 AND article_id IS NULL",
    )
    .bind(id)
    .bind(article_id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The sender's byline for an article made from their submission: (roster name, org unit name)
/// of the member whose account openid (`chat`) or mini-program openid (`mp`, active members) sent
/// it; only those two columns, never a phone or ID number. Read here rather than through
/// `members::store` because the roster sits above this feature (members → official_account →
/// submissions), as push's audience store reads `members` too.
pub async fn sender_byline(
    db: &Db,
    source: &str,
    openid: &str,
) -> sqlx::Result<Option<(String, String)>> {
    let sql = if source == "chat" {
        "SELECT m.name, o.name FROM members m JOIN org_units o ON o.id = m.org_unit_id
         WHERE m.oa_openid = $1"
    } else {
        "SELECT m.name, o.name FROM members m JOIN org_units o ON o.id = m.org_unit_id
         WHERE m.openid = $1 AND m.status = 'active'"
    };
    let row = sqlx::query(sql)
        .bind(openid)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// Forget a recorded article (its row is gone).
pub async fn clear_article(tx: &mut Tx, id: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE submissions SET article_id = NULL WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await
        .map(|_| ())
}

/// Newest first; drafts never. `status` None = every state; `openid` limits to one author.
pub async fn list(
    db: &Db,
    status: Option<&str>,
    openid: Option<&str>,
    limit: i64,
    offset: i64,
) -> sqlx::Result<(Vec<Submission>, i64)> {
    let where_ = "status <> 'draft' AND ($1 = '' OR status = $1) AND ($2 = '' OR openid = $2)";
    let total: i64 = sqlx::query(&format!("SELECT COUNT(*) FROM submissions WHERE {where_}"))
        .bind(status.unwrap_or_default())
        .bind(openid.unwrap_or_default())
        .fetch_one(db.pool())
        .await?
        .get(0);
    let rows = sqlx::query(&format!(
        "{SELECT} WHERE {where_} ORDER BY id DESC LIMIT {limit} OFFSET {offset}"
    ))
    .bind(status.unwrap_or_default())
    .bind(openid.unwrap_or_default())
    .fetch_all(db.pool())
    .await?;
    Ok((rows.into_iter().map(submission).collect(), total))
}

/// An editor's decision, only from `pending`. False when the item is not pending (any more).
pub async fn decide(
    tx: &mut Tx,
    table: Table,
    id: i64,
    status: &str,
    by: &str,
    reason: Option<&str>,
    now_ms: i64,
) -> sqlx::Result<bool> {
    let done = sqlx::query(&format!(
        "UPDATE {} SET status = $2, decided_by = $3, decided_at = $4, reason = $5, updated_at = $4 \
         WHERE id = $1 AND status = 'pending'",
        table.name()
    ))
    .bind(id)
    .bind(status)
    .bind(by)
    .bind(now_ms)
    .bind(reason)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The two moderated tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Submissions,
    BoardPosts,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Submissions => "submissions",
            Table::BoardPosts => "board_posts",
        }
    }
}

// ---- the message board ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct BoardPost {
    pub id: i64,
    pub openid: String,
    pub source: String,
    pub content: String,
    pub status: String,
    pub moderation_suggest: Option<String>,
    pub moderation_label: Option<String>,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub reason: Option<String>,
    pub answer: Option<String>,
    pub answered_by: Option<String>,
    pub answered_at: Option<i64>,
    pub created_at: i64,
}

const SELECT_POST: &str = "SELECT id, openid, source, content, status, moderation_suggest, \
     moderation_label, decided_by, decided_at, reason, answer, answered_by, answered_at, created_at \
     FROM board_posts";

fn post(r: sqlx::any::AnyRow) -> BoardPost {
    BoardPost {
        id: r.get(0),
        openid: r.get(1),
        source: r.get(2),
        content: r.get(3),
        status: r.get(4),
        moderation_suggest: r.get(5),
        moderation_label: r.get(6),
        decided_by: r.get(7),
        decided_at: r.get(8),
        reason: r.get(9),
        answer: r.get(10),
        answered_by: r.get(11),
        answered_at: r.get(12),
        created_at: r.get(13),
    }
}

/// A board post, unless the member posted the same text since `duplicate_since` (then that post).
pub async fn insert_post(
    db: &Db,
    openid: &str,
    source: &str,
    content: &str,
    m: &Moderation,
    now_ms: i64,
    duplicate_since: i64,
) -> sqlx::Result<Inserted> {
    let mut tx = db.begin_write().await?;
    lock_member(db, &mut tx, openid).await?;
    if let Some(r) = recent_same_in(
        &mut *tx,
        Table::BoardPosts,
        openid,
        content,
        duplicate_since,
    )
    .await?
    {
        return Ok(Inserted::Existing(r));
    }
    let id: i64 = sqlx::query(
        "INSERT INTO board_posts (openid, source, content, status, moderation_suggest, moderation_label, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING id",
    )
    .bind(openid)
    .bind(source)
    .bind(content)
    .bind(m.initial.as_str())
    .bind(m.suggest)
    .bind(&m.label)
    .bind(now_ms)
    .fetch_one(&mut *tx)
    .await?
    .get(0);
    tx.commit().await?;
    Ok(Inserted::New {
        id,
        receipt_no: None,
    })
}

pub async fn get_post(db: &Db, id: i64) -> sqlx::Result<Option<BoardPost>> {
    let row = sqlx::query(&format!("{SELECT_POST} WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.map(post))
}

/// Newest first. `status` None = every state.
pub async fn list_posts(
    db: &Db,
    status: Option<&str>,
    limit: i64,
    offset: i64,
) -> sqlx::Result<(Vec<BoardPost>, i64)> {
    let where_ = "($1 = '' OR status = $1)";
    let total: i64 = sqlx::query(&format!("SELECT COUNT(*) FROM board_posts WHERE {where_}"))
        .bind(status.unwrap_or_default())
        .fetch_one(db.pool())
        .await?
        .get(0);
    let rows = sqlx::query(&format!(
        "{SELECT_POST} WHERE {where_} ORDER BY id DESC LIMIT {limit} OFFSET {offset}"
    ))
    .bind(status.unwrap_or_default())
    .fetch_all(db.pool())
    .await?;
    Ok((rows.into_iter().map(post).collect(), total))
}

/// Set (or replace) the editor's answer; refused (false) for a rejected post.
pub async fn answer_post(
    tx: &mut Tx,
    id: i64,
    answer: &str,
    by: &str,
    now_ms: i64,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE board_posts SET answer = $2, answered_by = $3, answered_at = $4, updated_at = $4 \
         WHERE id = $1 AND status <> 'rejected'",
    )
    .bind(id)
    .bind(answer)
    .bind(by)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

#[cfg(test)]
mod tests {
    #[test]
    fn receipt_numbers_use_the_shanghai_day() {
        // 2026-11-22T16:16:40Z is already the 23rd in Shanghai.
        let ms = 1_795_364_200_000;
        assert_eq!(super::receipt_no(7, ms), "TG20261123-0007");
        assert_eq!(super::receipt_no(12345, ms), "TG20261123-12345");
    }
}
