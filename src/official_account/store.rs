//! Followers of the official account.

use sqlx::Row;

use crate::platform::db::{Db, Tx};

pub async fn subscribe(
    db: &Db,
    openid: &str,
    scene: Option<&str>,
    now_ms: i64,
) -> sqlx::Result<()> {
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
    .execute(db.pool())
    .await?;
    Ok(())
}

pub async fn unsubscribe(db: &Db, openid: &str, now_ms: i64) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO followers (openid, status, unsubscribed_at, created_at, updated_at)
         VALUES ($1, 'unsubscribed', $2, $2, $2)
         ON CONFLICT (openid) DO UPDATE SET status = 'unsubscribed',
             unsubscribed_at = excluded.unsubscribed_at, updated_at = excluded.updated_at",
    )
    .bind(openid)
    .bind(now_ms)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Record last-interaction times in one transaction (the 48-hour customer-service window).
/// A follower we have not seen yet (followed before this system existed) is recorded as subscribed.
pub async fn touch_many(db: &Db, seen: &[(String, i64)]) -> sqlx::Result<()> {
    if seen.is_empty() {
        return Ok(());
    }
    let mut tx = db.begin_write().await?;
    for (openid, at) in seen {
        sqlx::query(
            "INSERT INTO followers (openid, status, last_interaction_at, created_at, updated_at)
             VALUES ($1, 'subscribed', $2, $2, $2)
             ON CONFLICT (openid) DO UPDATE SET last_interaction_at = excluded.last_interaction_at,
                 updated_at = excluded.updated_at
             WHERE followers.last_interaction_at IS NULL OR followers.last_interaction_at < excluded.last_interaction_at",
        )
        .bind(openid)
        .bind(*at)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
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
