//! Focus banners (横幅焦点): image, title, a link to an article or a URL, order, validity window.

use sqlx::Row;

use crate::articles::rules::ValidBanner;
use crate::platform::db::{Db, Tx};

#[derive(Debug, Clone, PartialEq)]
pub struct Banner {
    pub id: i64,
    pub title: String,
    pub image_url: String,
    pub article_id: Option<i64>,
    pub link_url: Option<String>,
    pub position: i64,
    pub valid_from: Option<i64>,
    pub valid_until: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

const SELECT: &str =
    "SELECT b.id, b.title, b.image_url, b.article_id, b.link_url, b.position, b.valid_from,
        b.valid_until, b.created_at, b.updated_at FROM banners b";

fn banner(r: sqlx::any::AnyRow) -> Banner {
    Banner {
        id: r.get(0),
        title: r.get(1),
        image_url: r.get(2),
        article_id: r.get(3),
        link_url: r.get(4),
        position: r.get(5),
        valid_from: r.get(6),
        valid_until: r.get(7),
        created_at: r.get(8),
        updated_at: r.get(9),
    }
}

/// Every banner, in display order (the console).
pub async fn list_all(db: &Db) -> sqlx::Result<Vec<Banner>> {
    let rows = sqlx::query(&format!("{SELECT} ORDER BY b.position, b.id"))
        .fetch_all(db.pool())
        .await?;
    Ok(rows.into_iter().map(banner).collect())
}

/// What readers see at `now_ms`: inside the window `[valid_from, valid_until)`, and a banner that
/// links to an article only while that article is published.
pub async fn list_valid(db: &Db, now_ms: i64) -> sqlx::Result<Vec<Banner>> {
    let rows = sqlx::query(&format!(
        "{SELECT} LEFT JOIN articles a ON a.id = b.article_id
         WHERE (b.valid_from IS NULL OR b.valid_from <= $1) AND (b.valid_until IS NULL OR b.valid_until > $1)
           AND (b.article_id IS NULL OR a.status = 'published')
         ORDER BY b.position, b.id"
    ))
    .bind(now_ms)
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(banner).collect())
}

pub async fn get(db: &Db, id: i64) -> sqlx::Result<Option<Banner>> {
    let row = sqlx::query(&format!("{SELECT} WHERE b.id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.map(banner))
}

/// Whether an article exists (a banner may link to a draft that is published later).
pub async fn article_exists(db: &Db, article_id: i64) -> sqlx::Result<bool> {
    let row = sqlx::query("SELECT 1 FROM articles WHERE id = $1")
        .bind(article_id)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.is_some())
}

pub async fn create(tx: &mut Tx, b: &ValidBanner, now_ms: i64) -> sqlx::Result<i64> {
    let row = sqlx::query(
        "INSERT INTO banners (title, image_url, article_id, link_url, position, valid_from, valid_until,
                              created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING id",
    )
    .bind(&b.title)
    .bind(&b.image_url)
    .bind(b.article_id)
    .bind(b.link_url.as_deref())
    .bind(b.position)
    .bind(b.valid_from)
    .bind(b.valid_until)
    .bind(now_ms)
    .fetch_one(&mut **tx)
    .await?;
    Ok(row.get(0))
}

/// Replace every field; `false` when there is no such banner.
pub async fn update(tx: &mut Tx, id: i64, b: &ValidBanner, now_ms: i64) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE banners SET title = $2, image_url = $3, article_id = $4, link_url = $5, position = $6,
                valid_from = $7, valid_until = $8, updated_at = $9
         WHERE id = $1",
    )
    .bind(id)
    .bind(&b.title)
    .bind(&b.image_url)
    .bind(b.article_id)
    .bind(b.link_url.as_deref())
    .bind(b.position)
    .bind(b.valid_from)
    .bind(b.valid_until)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn delete(tx: &mut Tx, id: i64) -> sqlx::Result<bool> {
    let done = sqlx::query("DELETE FROM banners WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn count(db: &Db) -> sqlx::Result<i64> {
    sqlx::query("SELECT COUNT(*) FROM banners")
        .fetch_one(db.pool())
        .await
        .map(|r| r.get(0))
}
