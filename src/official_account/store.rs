//! Followers of the official account.

use sqlx::Row;

use crate::platform::db::{Db, Tx};

/// A `subscribe` event: the follower's state, and a row in the event log (the statistics' history).
pub async fn subscribe(
    db: &Db,
    openid: &str,
    scene: Option<&str>,
    now_ms: i64,
) -> sqlx::Result<()> {
    let mut tx = db.begin_write().await?;
    sqlx::query(
        "INSERT INTO followers (openid, status, scene, subscribed_at, last_interaction_at, created_at, updated_at)
         VALUES ($1, 'subscribed', $2, $3, $3, $3, $3)
         ON CONFLICT (openid) DO UPDATE SET status = 'subscribed', scene = excluded.scene,
             subscribed_at = excluded.subscribed_at, unsubscribed_at = NULL,
             last_interaction_at = excluded.last_interaction_at, updated_at = excluded.updated_at",
    )
    .bind(openid)
    .bind(scene)
    .bind(now_ms)
    .execute(&mut *tx)
    .await?;
    log_event(&mut tx, openid, "subscribe", now_ms).await?;
    tx.commit().await
}

/// An `unsubscribe` event: the follower's state, and a row in the event log.
pub async fn unsubscribe(db: &Db, openid: &str, now_ms: i64) -> sqlx::Result<()> {
    let mut tx = db.begin_write().await?;
    sqlx::query(
        "INSERT INTO followers (openid, status, unsubscribed_at, created_at, updated_at)
         VALUES ($1, 'unsubscribed', $2, $2, $2)
         ON CONFLICT (openid) DO UPDATE SET status = 'unsubscribed',
             unsubscribed_at = excluded.unsubscribed_at, updated_at = excluded.updated_at",
    )
    .bind(openid)
    .bind(now_ms)
    .execute(&mut *tx)
    .await?;
    log_event(&mut tx, openid, "unsubscribe", now_ms).await?;
    tx.commit().await
}

async fn log_event(tx: &mut Tx, openid: &str, kind: &str, at: i64) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO follower_events (openid, kind, at) VALUES ($1, $2, $3)")
        .bind(openid)
        .bind(kind)
        .bind(at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Record last-interaction times in one transaction (the 48-hour customer-service window), up to
/// [`TOUCH_ROWS`] followers a statement. A follower we have not seen yet (followed before this
/// system existed) is recorded as subscribed. `seen` holds each openid once.
///
/// Statements come in power-of-two sizes only (300 rows: 128 + 128 + 32 + 8 + 4), so each
/// connection prepares at most eight texts once and reuses them: parsing a many-row statement
/// costs more than running it.
pub async fn touch_many(db: &Db, seen: &[(String, i64)]) -> sqlx::Result<()> {
    if seen.is_empty() {
        return Ok(());
    }
    let mut tx = db.begin_write().await?;
    let mut rest = seen;
    while !rest.is_empty() {
        let rows = if rest.len() >= TOUCH_ROWS {
            TOUCH_ROWS
        } else {
            1 << rest.len().ilog2()
        };
        let (chunk, tail) = rest.split_at(rows);
        rest = tail;
        let sql = touch_sql(rows);
        let mut q = sqlx::query(&sql);
        for (openid, at) in chunk {
            q = q.bind(openid).bind(*at);
        }
        q.execute(&mut *tx).await?;
    }
    tx.commit().await
}

/// Most rows per statement of [`touch_many`] (a power of two): two parameters each, well under
/// both engines' limits.
pub const TOUCH_ROWS: usize = 128;

fn touch_sql(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|i| {
            format!(
                "(${o}, 'subscribed', ${t}, ${t}, ${t})",
                o = 2 * i + 1,
                t = 2 * i + 2
            )
        })
        .collect();
    format!(
        "INSERT INTO followers (openid, status, last_interaction_at, created_at, updated_at)
         VALUES {}
         ON CONFLICT (openid) DO UPDATE SET last_interaction_at = excluded.last_interaction_at,
             updated_at = excluded.updated_at
         WHERE followers.last_interaction_at IS NULL OR followers.last_interaction_at < excluded.last_interaction_at",
        values.join(", ")
    )
}

#[derive(Debug, Clone, PartialEq)]
pub struct Follower {
    pub openid: String,
    pub status: String,
    pub scene: Option<String>,
    pub last_interaction_at: Option<i64>,
}

pub async fn get(db: &Db, openid: &str) -> sqlx::Result<Option<Follower>> {
    let row = sqlx::query(
        "SELECT openid, status, scene, last_interaction_at FROM followers WHERE openid = $1",
    )
    .bind(openid)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(|r| Follower {
        openid: r.get(0),
        status: r.get(1),
        scene: r.get(2),
        last_interaction_at: r.get(3),
    }))
}

pub async fn count_subscribed(db: &Db) -> sqlx::Result<i64> {
    sqlx::query("SELECT COUNT(*) FROM followers WHERE status = 'subscribed'")
        .fetch_one(db.pool())
        .await
        .map(|r| r.get(0))
}

/// A follower as `user/info` reports it during a sync.
pub struct SyncedFollower<'a> {
    pub openid: &'a str,
    pub status: &'a str,
    pub scene: Option<&'a str>,
    pub subscribed_at: Option<i64>,
    pub unionid: Option<&'a str>,
    pub language: Option<&'a str>,
    pub tags: &'a [i64],
}

/// Upsert a follower seen by sync run `run`, with their tags replaced.
pub async fn upsert_synced(
    tx: &mut Tx,
    f: &SyncedFollower<'_>,
    run: i64,
    now: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO followers (openid, status, scene, subscribed_at, unionid, language, seen_by_sync, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
         ON CONFLICT (openid) DO UPDATE SET status = excluded.status,
             subscribed_at = COALESCE(excluded.subscribed_at, followers.subscribed_at),
             unionid = COALESCE(excluded.unionid, followers.unionid),
             language = COALESCE(excluded.language, followers.language),
             seen_by_sync = excluded.seen_by_sync, updated_at = excluded.updated_at",
    )
    .bind(f.openid)
    .bind(f.status)
    .bind(f.scene)
    .bind(f.subscribed_at)
    .bind(f.unionid)
    .bind(f.language)
    .bind(run)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM follower_tags WHERE openid = $1")
        .bind(f.openid)
        .execute(&mut **tx)
        .await?;
    for tag in f.tags {
        sqlx::query(
            "INSERT INTO follower_tags (openid, tag_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(f.openid)
        .bind(*tag)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Gone: subscribed here, not listed by sync run `run`, and not (re)subscribed since it began.
pub async fn mark_unseen_gone(tx: &mut Tx, run: i64, now: i64) -> sqlx::Result<i64> {
    Ok(sqlx::query(
        "UPDATE followers SET status = 'unsubscribed', unsubscribed_at = $2, updated_at = $2
         WHERE status = 'subscribed' AND (seen_by_sync IS NULL OR seen_by_sync <> $1)
           AND (subscribed_at IS NULL OR subscribed_at < $1)",
    )
    .bind(run)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected() as i64)
}

pub async fn upsert_tag(
    tx: &mut Tx,
    id: i64,
    name: &str,
    count: i64,
    now: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO wechat_tags (id, name, count, updated_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, count = excluded.count, updated_at = excluded.updated_at",
    )
    .bind(id)
    .bind(name)
    .bind(count)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A resumable job's saved state (`job_state`), e.g. the follower sync's cursor.
pub async fn job_state(db: &Db, name: &str) -> sqlx::Result<Option<String>> {
    Ok(sqlx::query("SELECT value FROM job_state WHERE name = $1")
        .bind(name)
        .fetch_optional(db.pool())
        .await?
        .map(|r| r.get(0)))
}

pub async fn save_job_state(tx: &mut Tx, name: &str, value: &str, now: i64) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO job_state (name, value, updated_at) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
    )
    .bind(name)
    .bind(value)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn clear_job_state(tx: &mut Tx, name: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM job_state WHERE name = $1")
        .bind(name)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Record the UnionID `user/info` gave for follower `openid`.
pub async fn set_unionid(
    tx: &mut Tx,
    openid: &str,
    unionid: &str,
    now_ms: i64,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE followers SET unionid = $1, updated_at = $2 WHERE openid = $3")
        .bind(unionid)
        .bind(now_ms)
        .bind(openid)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The follower (their account openid) with `unionid`, if we know one.
pub async fn openid_by_unionid(tx: &mut Tx, unionid: &str) -> sqlx::Result<Option<String>> {
    Ok(sqlx::query(
        "SELECT openid FROM followers WHERE unionid = $1 ORDER BY updated_at DESC, openid LIMIT 1",
    )
    .bind(unionid)
    .fetch_optional(&mut **tx)
    .await?
    .map(|r| r.get(0)))
}

/// Followers (account openids) for these UnionIDs: `(unionid, openid)`, the newest per UnionID.
pub async fn openids_by_unionids(
    tx: &mut Tx,
    unionids: &[String],
) -> sqlx::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for chunk in unionids.chunks(500) {
        let ph: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT unionid, openid FROM followers WHERE unionid IN ({}) \
             ORDER BY unionid, updated_at DESC, openid",
            ph.join(",")
        );
        let mut q = sqlx::query(&sql);
        for u in chunk {
            q = q.bind(u.as_str());
        }
        let mut last: Option<String> = None;
        for r in q.fetch_all(&mut **tx).await? {
            let (u, o): (String, String) = (r.get(0), r.get(1));
            if last.as_deref() != Some(u.as_str()) {
                last = Some(u.clone());
                out.push((u, o));
            }
        }
    }
    Ok(out)
}
