//! Categories and articles (the parts the webhook needs; the editor's CRUD builds on these).

use sqlx::Row;

use super::Db;

#[derive(Debug, Clone, PartialEq)]
pub struct ArticleCard {
    pub id: i64,
    pub title: String,
    pub summary: String,
    pub cover_url: Option<String>,
}

/// Insert the categories named in content/menu.toml that don't exist yet, in menu order.
pub async fn seed_categories(db: &Db, names: &[String], now_ms: i64) -> sqlx::Result<()> {
    let mut tx = db.begin_write().await?;
    for (i, name) in names.iter().enumerate() {
        sqlx::query(
            "INSERT INTO categories (name, position, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(i as i64)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// The newest published article of a category, for menu clicks and keyword replies.
pub async fn newest_in_category(db: &Db, category: &str) -> sqlx::Result<Option<ArticleCard>> {
    let row = sqlx::query(
        "SELECT a.id, a.title, a.summary, a.cover_url FROM articles a
         JOIN categories c ON c.id = a.category_id
         WHERE c.name = $1 AND a.status = 'published'
         ORDER BY a.published_at DESC, a.id DESC LIMIT 1",
    )
    .bind(category)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(card))
}

/// The newest published article of any category (welcome card).
pub async fn newest(db: &Db) -> sqlx::Result<Option<ArticleCard>> {
    let row = sqlx::query(
        "SELECT id, title, summary, cover_url FROM articles WHERE status = 'published'
         ORDER BY published_at DESC, id DESC LIMIT 1",
    )
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(card))
}

fn card(r: sqlx::any::AnyRow) -> ArticleCard {
    ArticleCard { id: r.get(0), title: r.get(1), summary: r.get(2), cover_url: r.get(3) }
}

#[derive(Debug, Clone)]
pub struct PublicArticle {
    pub id: i64,
    pub title: String,
    pub category: String,
    pub body_html: String,
    pub published_at: Option<i64>,
    pub author: Option<String>,
}

pub async fn published_by_id(db: &Db, id: i64) -> sqlx::Result<Option<PublicArticle>> {
    let row = sqlx::query(
        "SELECT a.id, a.title, c.name, a.body_html, a.published_at, a.author FROM articles a
         JOIN categories c ON c.id = a.category_id WHERE a.id = $1 AND a.status = 'published'",
    )
    .bind(id)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(|r| PublicArticle {
        id: r.get(0),
        title: r.get(1),
        category: r.get(2),
        body_html: r.get(3),
        published_at: r.get(4),
        author: r.get(5),
    }))
}

pub async fn count(db: &Db) -> sqlx::Result<i64> {
    sqlx::query("SELECT COUNT(*) FROM articles").fetch_one(db.pool()).await.map(|r| r.get(0))
}

pub struct NewArticle<'a> {
    pub category: &'a str,
    pub title: &'a str,
    pub summary: &'a str,
    pub body_md: &'a str,
    pub body_html: &'a str,
    pub cover_url: Option<&'a str>,
    pub author: Option<&'a str>,
}

/// Insert and publish at once (demo content, tests).
pub async fn insert_published(db: &Db, a: &NewArticle<'_>, now_ms: i64) -> sqlx::Result<i64> {
    let row = sqlx::query(
        "INSERT INTO articles (category_id, title, summary, cover_url, body_md, body_html, author, status,
                               published_at, created_at, updated_at)
         SELECT id, $2, $3, $4, $5, $6, $7, 'published', $8, $8, $8 FROM categories WHERE name = $1
         RETURNING id",
    )
    .bind(a.category)
    .bind(a.title)
    .bind(a.summary)
    .bind(a.cover_url)
    .bind(a.body_md)
    .bind(a.body_html)
    .bind(a.author)
    .bind(now_ms)
    .fetch_optional(db.pool())
    .await?;
    row.map(|r| r.get(0)).ok_or(sqlx::Error::RowNotFound)
}
