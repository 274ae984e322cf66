//! Admin accounts in the database, and the first administrator at start-up.

use secrecy::ExposeSecret;
use serde::Serialize;
use sqlx::Row;

use crate::{
    auth::{password, Role},
    platform::audit::{self, AuditEntry},
    platform::config::Settings,
    platform::db::Db,
};

#[derive(Debug, Clone, Serialize)]
pub struct AdminUser {
    pub id: i64,
    pub username: String,
    pub role: Role,
    pub org_unit_id: Option<i64>,
    pub org_unit: Option<String>,
    pub status: String,
    pub locked_until: Option<i64>,
    pub last_login_at: Option<i64>,
    pub created_at: i64,
}

/// The account row plus what only the login path needs.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user: AdminUser,
    pub password_hash: String,
    pub failed_logins: i64,
}

const SELECT: &str =
    "SELECT u.id, u.username, u.role, u.org_unit_id, o.name, u.status, u.locked_until, \
     u.last_login_at, u.created_at, u.password_hash, u.failed_logins \
     FROM admin_users u LEFT JOIN org_units o ON o.id = u.org_unit_id";

fn from_row(r: &sqlx::any::AnyRow) -> Credentials {
    Credentials {
        user: AdminUser {
            id: r.get(0),
            username: r.get(1),
            role: Role::parse(&r.get::<String, _>(2)).unwrap_or(Role::Editor),
            org_unit_id: r.get(3),
            org_unit: r.get(4),
            status: r.get(5),
            locked_until: r.get(6),
            last_login_at: r.get(7),
            created_at: r.get(8),
        },
        password_hash: r.get(9),
        failed_logins: r.get(10),
    }
}

pub async fn by_username(db: &Db, username: &str) -> sqlx::Result<Option<Credentials>> {
    let sql = format!("{SELECT} WHERE u.username = $1");
    Ok(sqlx::query(&sql)
        .bind(username)
        .fetch_optional(db.pool())
        .await?
        .as_ref()
        .map(from_row))
}

pub async fn by_id(db: &Db, id: i64) -> sqlx::Result<Option<Credentials>> {
    let sql = format!("{SELECT} WHERE u.id = $1");
    Ok(sqlx::query(&sql)
        .bind(id)
        .fetch_optional(db.pool())
        .await?
        .as_ref()
        .map(from_row))
}

pub async fn list(db: &Db) -> sqlx::Result<Vec<AdminUser>> {
    let sql = format!("{SELECT} ORDER BY u.id");
    Ok(sqlx::query(&sql)
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|r| from_row(r).user)
        .collect())
}

/// Usernames: 3–64 of letters, digits, `.`, `_`, `-` (they appear in logs and the audit log).
pub fn check_username(u: &str) -> Result<(), String> {
    let ok = (3..=64).contains(&u.len())
        && u.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err("username must be 3-64 letters, digits, '.', '_' or '-'".into())
    }
}

pub async fn insert<'c, E>(
    exec: E,
    username: &str,
    role: Role,
    org_unit_id: Option<i64>,
    hash: &str,
    now: i64,
) -> sqlx::Result<Option<i64>>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    Ok(sqlx::query(
        "INSERT INTO admin_users (username, password_hash, role, org_unit_id, status, failed_logins, \
         password_changed_at, created_at, updated_at) VALUES ($1, $2, $3, $4, 'active', 0, $5, $5, $5) \
         ON CONFLICT (username) DO NOTHING RETURNING id",
    )
    .bind(username)
    .bind(hash)
    .bind(role.as_str())
    .bind(org_unit_id)
    .bind(now)
    .fetch_optional(exec)
    .await?
    .map(|r| r.get(0)))
}

pub async fn set_password<'c, E>(exec: E, id: i64, hash: &str, now: i64) -> sqlx::Result<u64>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    Ok(sqlx::query(
        "UPDATE admin_users SET password_hash = $1, password_changed_at = $2, updated_at = $2, \
         failed_logins = 0, locked_until = NULL WHERE id = $3",
    )
    .bind(hash)
    .bind(now)
    .bind(id)
    .execute(exec)
    .await?
    .rows_affected())
}

pub async fn set_status<'c, E>(exec: E, id: i64, status: &str, now: i64) -> sqlx::Result<u64>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    Ok(
        sqlx::query("UPDATE admin_users SET status = $1, updated_at = $2 WHERE id = $3")
            .bind(status)
            .bind(now)
            .bind(id)
            .execute(exec)
            .await?
            .rows_affected(),
    )
}

pub async fn set_role<'c, E>(
    exec: E,
    id: i64,
    role: Role,
    org_unit_id: Option<i64>,
    now: i64,
) -> sqlx::Result<u64>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    Ok(sqlx::query(
        "UPDATE admin_users SET role = $1, org_unit_id = $2, updated_at = $3 WHERE id = $4",
    )
    .bind(role.as_str())
    .bind(org_unit_id)
    .bind(now)
    .bind(id)
    .execute(exec)
    .await?
    .rows_affected())
}

/// Create the first administrator when no active admin exists: from `DANGJIAN_ADMIN_USER` /
/// `DANGJIAN_ADMIN_PASSWORD`, else `admin` with a random password.
pub async fn ensure_first_admin(db: &Db, settings: &Settings, now: i64) -> anyhow::Result<()> {
    let admins: i64 =
        sqlx::query("SELECT COUNT(*) FROM admin_users WHERE role = 'admin' AND status = 'active'")
            .fetch_one(db.pool())
            .await?
            .get(0);
    if admins > 0 {
        return Ok(());
    }
    let username = settings
        .admin_user
        .clone()
        .unwrap_or_else(|| "admin".to_owned());
    check_username(&username).map_err(|e| anyhow::anyhow!("DANGJIAN_ADMIN_USER: {e}"))?;
    let (pw, generated) = match &settings.admin_password {
        Some(p) => (p.expose_secret().to_owned(), false),
        None => (password::generate(), true),
    };
    if !generated {
        if let Err(e) = password::check_policy(&username, &pw) {
            tracing::warn!(
                "DANGJIAN_ADMIN_PASSWORD is weak ({e}); change it after the first login"
            );
        }
    }
    let hash = password::hash_blocking(pw.clone()).await?;
    let mut tx = db.begin_write().await?;
    let Some(id) = insert(&mut *tx, &username, Role::Admin, None, &hash, now).await? else {
        // The name exists (another replica won the race, or a non-admin/disabled account): leave it.
        tracing::warn!(username = %username, "no active administrator, and the first-admin username is taken; use `dangjian admin create`");
        return Ok(());
    };
    let entry = AuditEntry::system(
        now,
        "system",
        "admin_user.create",
        "admin_user",
        Some(id.to_string()),
    )
    .details(
        serde_json::json!({"username": username, "role": "admin", "reason": "first administrator"}),
    );
    audit::record(&mut *tx, &entry).await?;
    tx.commit().await?;
    if generated {
        // The ONLY place a secret is ever logged: the generated first-admin password, once, so that
        // a fresh install can be opened. Set DANGJIAN_ADMIN_PASSWORD to avoid it; change it at once.
        tracing::warn!(username = %username, password = %pw, "first administrator created with a generated password; change it after logging in");
    } else {
        tracing::info!(username = %username, "first administrator created from DANGJIAN_ADMIN_USER/DANGJIAN_ADMIN_PASSWORD");
    }
    Ok(())
}

/// A failed password: the new count of consecutive failures.
pub async fn record_failed_login(db: &Db, id: i64) -> sqlx::Result<i64> {
    Ok(sqlx::query(
        "UPDATE admin_users SET failed_logins = failed_logins + 1 WHERE id = $1 RETURNING failed_logins",
    )
    .bind(id)
    .fetch_one(db.pool())
    .await?
    .get(0))
}

pub async fn lock_until(db: &Db, id: i64, until: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE admin_users SET locked_until = $1 WHERE id = $2")
        .bind(until)
        .bind(id)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// A successful login: failures reset, lock lifted.
pub async fn record_login(db: &Db, id: i64, now: i64) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE admin_users SET failed_logins = 0, locked_until = NULL, last_login_at = $1 WHERE id = $2",
    )
    .bind(now)
    .bind(id)
    .execute(db.pool())
    .await?;
    Ok(())
}
