//! Org units: a tree (`parent_id`) of branches. Secretaries act on their unit and its descendants.

use serde::Serialize;
use sqlx::Row;

use crate::platform::db::Db;

#[derive(Debug, Clone, Serialize)]
pub struct OrgUnit {
    pub id: i64,
    pub name: String,
    pub parent_id: Option<i64>,
}

fn from_row(r: &sqlx::any::AnyRow) -> OrgUnit {
    OrgUnit {
        id: r.get(0),
        name: r.get(1),
        parent_id: r.get(2),
    }
}

pub async fn find_by_name<'c, E>(exec: E, name: &str) -> sqlx::Result<Option<OrgUnit>>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    Ok(
        sqlx::query("SELECT id, name, parent_id FROM org_units WHERE name = $1")
            .bind(name)
            .fetch_optional(exec)
            .await?
            .as_ref()
            .map(from_row),
    )
}

pub async fn get(db: &Db, id: i64) -> sqlx::Result<Option<OrgUnit>> {
    Ok(
        sqlx::query("SELECT id, name, parent_id FROM org_units WHERE id = $1")
            .bind(id)
            .fetch_optional(db.pool())
            .await?
            .as_ref()
            .map(from_row),
    )
}

pub async fn list(db: &Db) -> sqlx::Result<Vec<OrgUnit>> {
    Ok(
        sqlx::query("SELECT id, name, parent_id FROM org_units ORDER BY id")
            .fetch_all(db.pool())
            .await?
            .iter()
            .map(from_row)
            .collect(),
    )
}

pub async fn create<'c, E>(
    exec: E,
    name: &str,
    parent_id: Option<i64>,
    now: i64,
) -> sqlx::Result<i64>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    Ok(sqlx::query(
        "INSERT INTO org_units (name, parent_id, created_at) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(name)
    .bind(parent_id)
    .bind(now)
    .fetch_one(exec)
    .await?
    .get(0))
}

/// `root` and all its descendants. UNION (not UNION ALL) stops even on a corrupted cyclic tree.
pub async fn subtree_ids(db: &Db, root: i64) -> sqlx::Result<Vec<i64>> {
    let rows = sqlx::query(
        "WITH RECURSIVE sub(id) AS (SELECT id FROM org_units WHERE id = $1 \
         UNION SELECT o.id FROM org_units o JOIN sub ON o.parent_id = sub.id) SELECT id FROM sub",
    )
    .bind(root)
    .fetch_all(db.pool())
    .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Org units a session may touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrgScope {
    All,
    Units(Vec<i64>),
}

impl OrgScope {
    pub fn contains(&self, unit: i64) -> bool {
        match self {
            OrgScope::All => true,
            OrgScope::Units(ids) => ids.contains(&unit),
        }
    }

    /// 403 unless `unit` is in scope.
    pub fn require(&self, unit: i64) -> crate::platform::error::AppResult<()> {
        if self.contains(unit) {
            Ok(())
        } else {
            Err(crate::platform::error::AppError::Forbidden(
                "outside your org units".into(),
            ))
        }
    }

    /// A SQL condition on `column` (ids are integers from the database, inlined safely):
    /// `format!("SELECT ... WHERE {}", scope.sql_condition("m.org_unit_id"))`.
    pub fn sql_condition(&self, column: &str) -> String {
        match self {
            OrgScope::All => "1=1".into(),
            OrgScope::Units(ids) if ids.is_empty() => "1=0".into(),
            OrgScope::Units(ids) => {
                let list: Vec<String> = ids.iter().map(i64::to_string).collect();
                format!("{column} IN ({})", list.join(","))
            }
        }
    }
}
