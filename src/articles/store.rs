//! Categories, articles and their tags.
//!
//! Status changes are made inside one write transaction: read the status (locked on PostgreSQL),
//! let `domain::articles::next` decide, then write with a `WHERE status = <what was read>` guard,
//! so two editors acting at once can't both win.

use sqlx::Row;

use crate::articles::rules::{Status, ValidArticle};
use crate::platform::db::{Backend, Db, Page, Tx};

#[derive(Debug, Clone, PartialEq)]
pub struct ArticleCard {
    pub id: i64,
    pub title: String,
    pub summary: String,
    pub cover_url: Option<String>,
}

// ---- categories --------------------------------------------------------------------------------

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

#[derive(Debug, Clone, PartialEq)]
pub struct Category {
    pub id: i64,
    pub name: String,
    pub menu_key: Option<String>,
    pub position: i64,
    /// Articles of any status.
    pub article_count: i64,
    /// Published articles.
    pub published_count: i64,
}

const CATEGORY_SELECT: &str = "SELECT c.id, c.name, c.menu_key, c.position,
        (SELECT COUNT(*) FROM articles a WHERE a.category_id = c.id),
        (SELECT COUNT(*) FROM articles a WHERE a.category_id = c.id AND a.status = 'published')
     FROM categories c";

fn category(r: sqlx::any::AnyRow) -> Category {
    Category {
        id: r.get(0),
        name: r.get(1),
        menu_key: r.get(2),
        position: r.get(3),
        article_count: r.get(4),
        published_count: r.get(5),
    }
}

/// All categories in display order.
pub async fn list_categories(db: &Db) -> sqlx::Result<Vec<Category>> {
    let rows = sqlx::query(&format!("{CATEGORY_SELECT} ORDER BY c.position, c.id"))
        .fetch_all(db.pool())
        .await?;
    Ok(rows.into_iter().map(category).collect())
}

pub async fn category_by_id(db: &Db, id: i64) -> sqlx::Result<Option<Category>> {
    let row = sqlx::query(&format!("{CATEGORY_SELECT} WHERE c.id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.map(category))
}

/// A category's id from its name, or from its id written as a number (`?category=3`).
pub async fn category_id(db: &Db, name_or_id: &str) -> sqlx::Result<Option<i64>> {
    let row = match name_or_id.parse::<i64>() {
        Ok(id) => {
            sqlx::query("SELECT id FROM categories WHERE id = $1")
                .bind(id)
                .fetch_optional(db.pool())
                .await?
        }
        Err(_) => {
            sqlx::query("SELECT id FROM categories WHERE name = $1")
                .bind(name_or_id)
                .fetch_optional(db.pool())
                .await?
        }
    };
    Ok(row.map(|r| r.get(0)))
}

/// New categories go last unless a position is given.
pub async fn create_category(
    tx: &mut Tx,
    name: &str,
    position: Option<i64>,
    now_ms: i64,
) -> sqlx::Result<i64> {
    let row = sqlx::query(
        "INSERT INTO categories (name, position, created_at)
         SELECT $1, COALESCE($2, (SELECT COALESCE(MAX(position), -1) + 1 FROM categories)), $3
         RETURNING id",
    )
    .bind(name)
    .bind(position)
    .bind(now_ms)
    .fetch_one(&mut **tx)
    .await?;
    Ok(row.get(0))
}

/// Rename and/or move; `false` when there is no such category.
pub async fn update_category(
    tx: &mut Tx,
    id: i64,
    name: Option<&str>,
    position: Option<i64>,
) -> sqlx::Result<bool> {
    let done =
        sqlx::query("UPDATE categories SET name = COALESCE($2, name), position = COALESCE($3, position) WHERE id = $1")
            .bind(id)
            .bind(name)
            .bind(position)
            .execute(&mut **tx)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// Delete a category that has no articles (checked in the same statement, so no race).
pub async fn delete_empty_category(tx: &mut Tx, id: i64) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "DELETE FROM categories WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM articles WHERE category_id = $1)",
    )
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

// ---- reads for readers (webhook, mini-program, public page) -----------------------------------

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
    ArticleCard {
        id: r.get(0),
        title: r.get(1),
        summary: r.get(2),
        cover_url: r.get(3),
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PublicArticle {
    pub id: i64,
    pub title: String,
    pub category: String,
    pub body_html: String,
    pub published_at: Option<i64>,
    pub author: Option<String>,
    pub summary: String,
    pub cover_url: Option<String>,
    pub source: Option<String>,
    pub tags: Vec<String>,
}

pub async fn published_by_id(db: &Db, id: i64) -> sqlx::Result<Option<PublicArticle>> {
    let row = sqlx::query(
        "SELECT a.id, a.title, c.name, a.body_html, a.published_at, a.author, a.summary, a.cover_url, a.source
         FROM articles a JOIN categories c ON c.id = a.category_id
         WHERE a.id = $1 AND a.status = 'published'",
    )
    .bind(id)
    .fetch_optional(db.pool())
    .await?;
    let Some(r) = row else { return Ok(None) };
    Ok(Some(PublicArticle {
        id: r.get(0),
        title: r.get(1),
        category: r.get(2),
        body_html: r.get(3),
        published_at: r.get(4),
        author: r.get(5),
        summary: r.get(6),
        cover_url: r.get(7),
        source: r.get(8),
        tags: tags_of(db, id).await?,
    }))
}

pub async fn count(db: &Db) -> sqlx::Result<i64> {
    sqlx::query("SELECT COUNT(*) FROM articles")
        .fetch_one(db.pool())
        .await
        .map(|r| r.get(0))
}

/// A row of a list: everything but the bodies.
#[derive(Debug, Clone, PartialEq)]
pub struct ArticleListItem {
    pub id: i64,
    pub category: String,
    pub title: String,
    pub summary: String,
    pub cover_url: Option<String>,
    pub author: Option<String>,
    pub status: Status,
    pub published_at: Option<i64>,
    pub publish_at: Option<i64>,
    pub updated_at: i64,
    pub tags: Vec<String>,
}

const LIST_SELECT: &str =
    "SELECT a.id, c.name, a.title, a.summary, a.cover_url, a.author, a.status,
        a.published_at, a.publish_at, a.updated_at
     FROM articles a JOIN categories c ON c.id = a.category_id";

fn list_item(r: sqlx::any::AnyRow) -> ArticleListItem {
    let status: String = r.get(6);
    ArticleListItem {
        id: r.get(0),
        category: r.get(1),
        title: r.get(2),
        summary: r.get(3),
        cover_url: r.get(4),
        author: r.get(5),
        status: Status::parse(&status).unwrap_or(Status::Draft),
        published_at: r.get(7),
        publish_at: r.get(8),
        updated_at: r.get(9),
        tags: Vec::new(),
    }
}

/// Published articles, newest first, optionally of one category.
pub async fn list_published(
    db: &Db,
    category_id: Option<i64>,
    page: Page,
) -> sqlx::Result<(Vec<ArticleListItem>, i64)> {
    let filter = ArticleFilter {
        status: Some(Status::Published),
        category_id,
        ..Default::default()
    };
    list(db, &filter, page, "a.published_at DESC, a.id DESC").await
}

/// Published articles with `tag`, newest first (the portal's 党务公开).
pub async fn list_published_tagged(
    db: &Db,
    tag: &str,
    page: Page,
) -> sqlx::Result<(Vec<ArticleListItem>, i64)> {
    let filter = ArticleFilter {
        status: Some(Status::Published),
        tag: Some(tag.to_owned()),
        ..Default::default()
    };
    list(db, &filter, page, "a.published_at DESC, a.id DESC").await
}

/// What the console filters on. `q` matches title and summary (case-insensitive substring).
#[derive(Debug, Clone, Default)]
pub struct ArticleFilter {
    pub status: Option<Status>,
    pub category_id: Option<i64>,
    pub tag: Option<String>,
    pub q: Option<String>,
}

/// The console's list: most recently changed first.
pub async fn list_admin(
    db: &Db,
    filter: &ArticleFilter,
    page: Page,
) -> sqlx::Result<(Vec<ArticleListItem>, i64)> {
    list(db, filter, page, "a.updated_at DESC, a.id DESC").await
}

enum Arg {
    Int(i64),
    Text(String),
}

fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    args: &'q [Arg],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for a in args {
        query = match a {
            Arg::Int(i) => query.bind(*i),
            Arg::Text(s) => query.bind(s.as_str()),
        };
    }
    query
}

/// `%` and `_` in a search are literal characters, not wildcards.
fn like_pattern(q: &str) -> String {
    let mut p = String::with_capacity(q.len() + 2);
    p.push('%');
    for ch in q.to_lowercase().chars() {
        if matches!(ch, '\\' | '%' | '_') {
            p.push('\\');
        }
        p.push(ch);
    }
    p.push('%');
    p
}

async fn list(
    db: &Db,
    filter: &ArticleFilter,
    page: Page,
    order: &'static str,
) -> sqlx::Result<(Vec<ArticleListItem>, i64)> {
    let mut clauses: Vec<String> = Vec::new();
    let mut args: Vec<Arg> = Vec::new();
    if let Some(s) = filter.status {
        args.push(Arg::Text(s.as_str().to_owned()));
        clauses.push(format!("a.status = ${}", args.len()));
    }
    if let Some(c) = filter.category_id {
        args.push(Arg::Int(c));
        clauses.push(format!("a.category_id = ${}", args.len()));
    }
    if let Some(t) = &filter.tag {
        args.push(Arg::Text(t.clone()));
        clauses.push(format!(
            "EXISTS (SELECT 1 FROM article_tags t WHERE t.article_id = a.id AND t.tag = ${})",
            args.len()
        ));
    }
    if let Some(q) = &filter.q {
        args.push(Arg::Text(like_pattern(q)));
        let n = args.len();
        clauses.push(format!(
            "(LOWER(a.title) LIKE ${n} ESCAPE '\\' OR LOWER(a.summary) LIKE ${n} ESCAPE '\\')"
        ));
    }
    let wher = if clauses.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", clauses.join(" AND "))
    };

    let count_sql = format!("SELECT COUNT(*) FROM articles a{wher}");
    let total: i64 = bind_all(sqlx::query(&count_sql), &args)
        .fetch_one(db.pool())
        .await?
        .get(0);

    let n = args.len();
    let page_sql = format!(
        "{LIST_SELECT}{wher} ORDER BY {order} LIMIT ${} OFFSET ${}",
        n + 1,
        n + 2
    );
    let mut page_args = args;
    page_args.push(Arg::Int(page.size));
    page_args.push(Arg::Int(page.offset()));
    let rows = bind_all(sqlx::query(&page_sql), &page_args)
        .fetch_all(db.pool())
        .await?;
    let mut items: Vec<ArticleListItem> = rows.into_iter().map(list_item).collect();
    attach_tags(db, &mut items).await?;
    Ok((items, total))
}

async fn attach_tags(db: &Db, items: &mut [ArticleListItem]) -> sqlx::Result<()> {
    if items.is_empty() {
        return Ok(());
    }
    let placeholders: Vec<String> = (1..=items.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT article_id, tag FROM article_tags WHERE article_id IN ({}) ORDER BY article_id, tag",
        placeholders.join(", ")
    );
    let args: Vec<Arg> = items.iter().map(|i| Arg::Int(i.id)).collect();
    for r in bind_all(sqlx::query(&sql), &args)
        .fetch_all(db.pool())
        .await?
    {
        let id: i64 = r.get(0);
        if let Some(item) = items.iter_mut().find(|i| i.id == id) {
            item.tags.push(r.get(1));
        }
    }
    Ok(())
}

async fn tags_of(db: &Db, id: i64) -> sqlx::Result<Vec<String>> {
    let rows = sqlx::query("SELECT tag FROM article_tags WHERE article_id = $1 ORDER BY tag")
        .bind(id)
        .fetch_all(db.pool())
        .await?;
    Ok(rows.into_iter().map(|r| r.get(0)).collect())
}

// ---- the editor's article ----------------------------------------------------------------------

/// An article as the console sees it, whatever its status.
#[derive(Debug, Clone, PartialEq)]
pub struct Article {
    pub id: i64,
    pub category_id: i64,
    pub category: String,
    pub title: String,
    pub summary: String,
    pub cover_url: Option<String>,
    pub body_md: String,
    pub body_html: String,
    pub author: Option<String>,
    pub source: Option<String>,
    pub status: Status,
    pub published_at: Option<i64>,
    pub publish_at: Option<i64>,
    pub archived_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub tags: Vec<String>,
}

pub async fn get(db: &Db, id: i64) -> sqlx::Result<Option<Article>> {
    let row = sqlx::query(
        "SELECT a.id, a.category_id, c.name, a.title, a.summary, a.cover_url, a.body_md, a.body_html, a.author,
                a.source, a.status, a.published_at, a.publish_at, a.archived_at, a.created_at, a.updated_at
         FROM articles a JOIN categories c ON c.id = a.category_id WHERE a.id = $1",
    )
    .bind(id)
    .fetch_optional(db.pool())
    .await?;
    let Some(r) = row else { return Ok(None) };
    let status: String = r.get(10);
    Ok(Some(Article {
        id: r.get(0),
        category_id: r.get(1),
        category: r.get(2),
        title: r.get(3),
        summary: r.get(4),
        cover_url: r.get(5),
        body_md: r.get(6),
        body_html: r.get(7),
        author: r.get(8),
        source: r.get(9),
        status: Status::parse(&status).unwrap_or(Status::Draft),
        published_at: r.get(11),
        publish_at: r.get(12),
        archived_at: r.get(13),
        created_at: r.get(14),
        updated_at: r.get(15),
        tags: tags_of(db, id).await?,
    }))
}

/// The category id for a name, inside a write transaction.
pub async fn category_id_tx(tx: &mut Tx, name: &str) -> sqlx::Result<Option<i64>> {
    let row = sqlx::query("SELECT id FROM categories WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// A new draft with its tags; `None` when the category doesn't exist (nothing written).
pub async fn create_draft(
    tx: &mut Tx,
    a: &ValidArticle,
    body_html: &str,
    now_ms: i64,
) -> sqlx::Result<Option<i64>> {
    let Some(category_id) = category_id_tx(tx, &a.category).await? else {
        return Ok(None);
    };
    let row = sqlx::query(
        "INSERT INTO articles (category_id, title, summary, cover_url, body_md, body_html, author, source, status,
                               created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'draft', $9, $9) RETURNING id",
    )
    .bind(category_id)
    .bind(&a.title)
    .bind(&a.summary)
    .bind(a.cover_url.as_deref())
    .bind(&a.body_md)
    .bind(body_html)
    .bind(a.author.as_deref())
    .bind(a.source.as_deref())
    .bind(now_ms)
    .fetch_one(&mut **tx)
    .await?;
    let id: i64 = row.get(0);
    replace_tags(tx, id, &a.tags).await?;
    Ok(Some(id))
}

/// The status, read for a change; on PostgreSQL the row stays locked until the transaction ends
/// (on SQLite `begin_write` already holds the database's write lock).
pub async fn status_for_update(db: &Db, tx: &mut Tx, id: i64) -> sqlx::Result<Option<Status>> {
    let sql = match db.backend() {
        Backend::Postgres => "SELECT status FROM articles WHERE id = $1 FOR UPDATE",
        Backend::Sqlite => "SELECT status FROM articles WHERE id = $1",
    };
    let row = sqlx::query(sql).bind(id).fetch_optional(&mut **tx).await?;
    Ok(row.map(|r| Status::parse(&r.get::<String, _>(0)).unwrap_or(Status::Draft)))
}

/// Replace the editable fields; the status and publish time stay.
pub async fn update_fields(
    tx: &mut Tx,
    id: i64,
    category_id: i64,
    a: &ValidArticle,
    body_html: &str,
    now_ms: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE articles SET category_id = $2, title = $3, summary = $4, cover_url = $5, body_md = $6,
                body_html = $7, author = $8, source = $9, updated_at = $10
         WHERE id = $1",
    )
    .bind(id)
    .bind(category_id)
    .bind(&a.title)
    .bind(&a.summary)
    .bind(a.cover_url.as_deref())
    .bind(&a.body_md)
    .bind(body_html)
    .bind(a.author.as_deref())
    .bind(a.source.as_deref())
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    replace_tags(tx, id, &a.tags).await
}

async fn replace_tags(tx: &mut Tx, id: i64, tags: &[String]) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM article_tags WHERE article_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    for t in tags {
        sqlx::query("INSERT INTO article_tags (article_id, tag) VALUES ($1, $2)")
            .bind(id)
            .bind(t)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Move an article from `from` to `to` (already allowed by the status machine). Publishing sets
/// `published_at` to `publish_time`; leaving draft/review drops a pending schedule.
pub async fn set_status(
    tx: &mut Tx,
    id: i64,
    from: Status,
    to: Status,
    publish_time: i64,
    now_ms: i64,
) -> sqlx::Result<bool> {
    let query = match to {
        Status::Published => sqlx::query(
            "UPDATE articles SET status = 'published', published_at = $3, publish_at = NULL, updated_at = $4
             WHERE id = $1 AND status = $2",
        )
        .bind(id)
        .bind(from.as_str())
        .bind(publish_time)
        .bind(now_ms),
        Status::Archived => sqlx::query(
            "UPDATE articles SET status = 'archived', archived_at = $3, publish_at = NULL, updated_at = $3
             WHERE id = $1 AND status = $2",
        )
        .bind(id)
        .bind(from.as_str())
        .bind(now_ms),
        Status::Review => {
            sqlx::query("UPDATE articles SET status = 'review', updated_at = $3 WHERE id = $1 AND status = $2")
                .bind(id)
                .bind(from.as_str())
                .bind(now_ms)
        }
        Status::Draft => sqlx::query(
            "UPDATE articles SET status = 'draft', publish_at = NULL, updated_at = $3 WHERE id = $1 AND status = $2",
        )
        .bind(id)
        .bind(from.as_str())
        .bind(now_ms),
    };
    let done = query.execute(&mut **tx).await?;
    Ok(done.rows_affected() == 1)
}

/// Publish at `at` (a later time) unless it changes status first.
pub async fn schedule(tx: &mut Tx, id: i64, at: i64, now_ms: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE articles SET publish_at = $2, updated_at = $3 WHERE id = $1")
        .bind(id)
        .bind(at)
        .bind(now_ms)
        .execute(&mut **tx)
        .await
        .map(|_| ())
}

/// Publish every scheduled article whose time has come; their publish time is the scheduled one.
pub async fn publish_due(db: &Db, now_ms: i64) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "UPDATE articles SET status = 'published', published_at = publish_at, publish_at = NULL, updated_at = $1
         WHERE publish_at IS NOT NULL AND publish_at <= $1 AND status IN ('draft', 'review')",
    )
    .bind(now_ms)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected())
}

/// How many banners link to the article (they would dangle if it were deleted).
pub async fn banner_links(tx: &mut Tx, id: i64) -> sqlx::Result<i64> {
    sqlx::query("SELECT COUNT(*) FROM banners WHERE article_id = $1")
        .bind(id)
        .fetch_one(&mut **tx)
        .await
        .map(|r| r.get(0))
}

/// Delete a draft and its tags.
pub async fn delete_draft(tx: &mut Tx, id: i64) -> sqlx::Result<bool> {
    sqlx::query("DELETE FROM article_tags WHERE article_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    let done = sqlx::query("DELETE FROM articles WHERE id = $1 AND status = 'draft'")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
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

#[cfg(test)]
mod tests {
    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(super::like_pattern("50%_A\\"), "%50\\%\\_a\\\\%");
    }
}
