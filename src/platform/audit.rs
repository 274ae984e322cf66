//! The audit log: an append-only record of every admin write and every read of unmasked personal
//! data — who, when, what, from where, and before/after values *without secrets or clear personal
//! data* (mask them; `redact` drops the obvious secret keys).
//!
//! Call [`record`] inside the same transaction as the write it describes (`&mut *tx`), or with
//! `st.db.pool()` for reads. Nothing in the code updates or deletes entries except the retention
//! purge ([`purge_older_than`]); on PostgreSQL and SQLite triggers refuse UPDATE, and DELETE (and
//! TRUNCATE) unless the purge marked its own transaction (migration 0011). The purge records
//! itself in the log (`audit.purge`), and the retention has a floor
//! (`config::MIN_AUDIT_RETENTION_DAYS`).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{Any, Executor, Row};

use crate::platform::db::Db;

/// One audit entry. Build it with `AdminSession::audit(..)` in handlers, or [`AuditEntry::system`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at: i64,
    pub actor_id: Option<i64>,
    /// Username at the time (kept when the account is later renamed or disabled), or `cli`/`system`.
    pub actor: String,
    /// `<target_type>.<verb>`, e.g. `member.import`, `member.reveal`, `admin_user.create`.
    pub action: String,
    pub target_type: String,
    pub target_id: Option<String>,
    pub ip: Option<String>,
    /// Before/after and other context as JSON; never passwords, tokens or clear personal data.
    pub details: Value,
}

impl AuditEntry {
    /// An entry for work done outside a request (CLI, start-up, workers).
    pub fn system(
        at: i64,
        actor: &str,
        action: &str,
        target_type: &str,
        target_id: Option<String>,
    ) -> AuditEntry {
        AuditEntry {
            at,
            actor_id: None,
            actor: actor.to_owned(),
            action: action.to_owned(),
            target_type: target_type.to_owned(),
            target_id,
            ip: None,
            details: Value::Object(Default::default()),
        }
    }

    pub fn details(mut self, details: Value) -> AuditEntry {
        self.details = redact(details);
        self
    }
}

/// Keys whose values never enter the audit log, at any depth.
const SECRET_KEYS: [&str; 6] = [
    "password",
    "old_password",
    "new_password",
    "token",
    "password_hash",
    "csrf",
];

/// Replace the values of secret-looking keys with `"[redacted]"`.
pub fn redact(mut v: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(map) => {
                for (k, val) in map.iter_mut() {
                    if SECRET_KEYS.contains(&k.as_str()) {
                        *val = Value::String("[redacted]".into());
                    } else {
                        walk(val);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}

/// Append one entry. `exec` is `&mut *tx` (preferred: the entry commits with the write) or a pool.
pub async fn record<'c, E>(exec: E, entry: &AuditEntry) -> sqlx::Result<()>
where
    E: Executor<'c, Database = Any>,
{
    sqlx::query(
        "INSERT INTO audit_log (at, actor_id, actor, action, target_type, target_id, ip, details) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(entry.at)
    .bind(entry.actor_id)
    .bind(&entry.actor)
    .bind(&entry.action)
    .bind(&entry.target_type)
    .bind(&entry.target_id)
    .bind(&entry.ip)
    .bind(entry.details.to_string())
    .execute(exec)
    .await
    .map(|_| ())
}

/// `since`/`until`: RFC 3339, or unix milliseconds.
fn time_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"anyOf": [
        {"type": "string", "format": "date-time", "example": "2026-11-05T09:30:00+08:00"},
        {"type": "string", "pattern": "^[0-9]{1,15}$"}]})
}

#[derive(Debug, Default, Clone, Deserialize, schemars::JsonSchema)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    /// RFC 3339 or unix milliseconds.
    #[serde(default)]
    #[schemars(schema_with = "time_schema")]
    pub since: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "time_schema")]
    pub until: Option<String>,
    #[schemars(range(min = 1, max = crate::platform::db::MAX_PAGE))]
    pub page: Option<i64>,
    #[schemars(range(min = 1, max = 500))]
    pub page_size: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StoredEntry {
    pub id: i64,
    #[serde(flatten)]
    pub entry: AuditEntry,
}

pub const PAGE_SIZE: i64 = 50;
pub const MAX_PAGE_SIZE: i64 = 500;

/// Newest first. Returns the page and the total number of matching entries.
pub async fn search(
    db: &Db,
    f: &AuditFilter,
    since: Option<i64>,
    until: Option<i64>,
) -> sqlx::Result<(Vec<StoredEntry>, i64)> {
    let mut cond = vec!["1=1".to_owned()];
    let mut args: Vec<String> = Vec::new();
    let mut push = |sql: &str, v: String| {
        args.push(v);
        cond.push(sql.replace('?', &format!("${}", args.len())));
    };
    if let Some(a) = f.actor.as_deref().filter(|s| !s.is_empty()) {
        push("actor = ?", a.to_owned());
    }
    if let Some(a) = f.action.as_deref().filter(|s| !s.is_empty()) {
        // `member.` matches every member action.
        if let Some(prefix) = a.strip_suffix('.') {
            push("action LIKE ?", format!("{prefix}.%"));
        } else {
            push("action = ?", a.to_owned());
        }
    }
    if let Some(t) = f.target_type.as_deref().filter(|s| !s.is_empty()) {
        push("target_type = ?", t.to_owned());
    }
    if let Some(t) = f.target_id.as_deref().filter(|s| !s.is_empty()) {
        push("target_id = ?", t.to_owned());
    }
    // Times are integers: inlined after parsing, never spliced from input text.
    if let Some(s) = since {
        cond.push(format!("at >= {s}"));
    }
    if let Some(u) = until {
        cond.push(format!("at < {u}"));
    }
    // The handler bounds both (422 otherwise); the store still never computes a negative OFFSET.
    let page = crate::platform::db::Page {
        number: f.page.unwrap_or(1).max(1),
        size: f.page_size.unwrap_or(PAGE_SIZE).clamp(1, MAX_PAGE_SIZE),
    };
    let page_size = page.size;
    let where_ = cond.join(" AND ");
    let count_sql = format!("SELECT COUNT(*) FROM audit_log WHERE {where_}");
    let mut q = sqlx::query(&count_sql);
    for a in &args {
        q = q.bind(a);
    }
    let total: i64 = q.fetch_one(db.pool()).await?.get(0);
    let sql = format!(
        "SELECT id, at, actor_id, actor, action, target_type, target_id, ip, details FROM audit_log \
         WHERE {where_} ORDER BY id DESC LIMIT {page_size} OFFSET {}",
        page.offset()
    );
    let mut q = sqlx::query(&sql);
    for a in &args {
        q = q.bind(a);
    }
    let rows = q.fetch_all(db.pool()).await?;
    let entries = rows
        .iter()
        .map(|r| StoredEntry {
            id: r.get(0),
            entry: AuditEntry {
                at: r.get(1),
                actor_id: r.get(2),
                actor: r.get(3),
                action: r.get(4),
                target_type: r.get(5),
                target_id: r.get(6),
                ip: r.get(7),
                details: serde_json::from_str(&r.get::<String, _>(8)).unwrap_or(Value::Null),
            },
        })
        .collect();
    Ok((entries, total))
}

/// Retention: the one place entries are deleted, at the system time (see [`purge_at`]).
pub async fn purge_older_than(db: &Db, cutoff_ms: i64) -> sqlx::Result<u64> {
    let now = crate::platform::time::unix_ms(time::OffsetDateTime::now_utc());
    purge_at(db, cutoff_ms, now).await
}

/// Delete entries older than `cutoff_ms` in one transaction that marks itself as the purge (the
/// triggers refuse any other DELETE) and records an `audit.purge` entry at `now_ms` when it
/// deleted anything.
pub async fn purge_at(db: &Db, cutoff_ms: i64, now_ms: i64) -> sqlx::Result<u64> {
    use crate::platform::db::Backend;
    let mut tx = db.begin_write().await?;
    match db.backend() {
        Backend::Postgres => {
            sqlx::query("SELECT set_config('dangjian.audit_purge', 'on', true)")
                .execute(&mut *tx)
                .await?;
        }
        Backend::Sqlite => {
            sqlx::query("INSERT INTO audit_purge_marker (active) VALUES (1)")
                .execute(&mut *tx)
                .await?;
        }
    }
    let deleted = sqlx::query("DELETE FROM audit_log WHERE at < $1")
        .bind(cutoff_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    match db.backend() {
        Backend::Postgres => {
            sqlx::query("SELECT set_config('dangjian.audit_purge', 'off', true)")
                .execute(&mut *tx)
                .await?;
        }
        Backend::Sqlite => {
            sqlx::query("DELETE FROM audit_purge_marker")
                .execute(&mut *tx)
                .await?;
        }
    }
    if deleted > 0 {
        let entry = AuditEntry::system(now_ms, "system", "audit.purge", "audit_log", None).details(
            serde_json::json!({"deleted": deleted, "older_than": crate::platform::time::rfc3339(cutoff_ms)}),
        );
        record(&mut *tx, &entry).await?;
    }
    tx.commit().await?;
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_secret_keys_at_any_depth() {
        let v = redact(
            serde_json::json!({"username":"a","password":"p","nested":[{"token":"t","x":1}]}),
        );
        assert_eq!(v["username"], "a");
        assert_eq!(v["password"], "[redacted]");
        assert_eq!(v["nested"][0]["token"], "[redacted]");
        assert_eq!(v["nested"][0]["x"], 1);
    }
}
