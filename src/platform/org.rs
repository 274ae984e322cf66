//! Org units: a tree (`parent_id`) of party committees (党委), general branches (党总支),
//! branches (党支部) and the Party groups (党小组) inside a branch. Secretaries act on their unit and
//! its descendants ([`OrgScope`]). The tree rules ([`OrgKind::may_sit_under`], [`placement_error`])
//! are pure; the SQL of `org_units` is here and nowhere else.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::platform::db::{Db, Tx};

/// What an org unit is; decides where it may sit in the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrgKind {
    /// 党委 (a university or school party committee).
    Committee,
    /// 党总支.
    GeneralBranch,
    /// 党支部: where members' Party relations are kept.
    Branch,
    /// 党小组, inside a branch.
    Group,
}

impl OrgKind {
    pub const ALL: [OrgKind; 4] = [
        OrgKind::Committee,
        OrgKind::GeneralBranch,
        OrgKind::Branch,
        OrgKind::Group,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrgKind::Committee => "committee",
            OrgKind::GeneralBranch => "general_branch",
            OrgKind::Branch => "branch",
            OrgKind::Group => "group",
        }
    }

    pub fn parse(s: &str) -> Option<OrgKind> {
        OrgKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether a unit of this kind may sit directly under a unit of kind `parent` (None: at the
    /// top). Committees nest (a school committee under the university's); a general branch sits
    /// under a committee; a branch under a committee or a general branch; a Party group only
    /// inside a branch. Any kind but a group may stand alone at the top (a roster import creates
    /// branches there).
    pub fn may_sit_under(self, parent: Option<OrgKind>) -> bool {
        use OrgKind::*;
        match (self, parent) {
            (Group, Some(Branch)) => true,
            (Group, _) => false,
            (_, None) => true,
            (Committee, Some(Committee)) => true,
            (GeneralBranch, Some(Committee)) => true,
            (Branch, Some(Committee | GeneralBranch)) => true,
            _ => false,
        }
    }

    /// 党委 / 党总支 / 党支部 / 党小组.
    pub fn label(self) -> &'static str {
        match self {
            OrgKind::Committee => "党委",
            OrgKind::GeneralBranch => "党总支",
            OrgKind::Branch => "党支部",
            OrgKind::Group => "党小组",
        }
    }
}

/// Why a unit of `kind` may not sit under `parent` (id and kind; None: the top), or None when it
/// may. `moving`: the unit being moved (or re-kinded), with its subtree (itself included) and the
/// kinds of its direct children, which must still fit under it.
pub fn placement_error(
    kind: OrgKind,
    parent: Option<(i64, OrgKind)>,
    moving: Option<(i64, &[i64], &[OrgKind])>,
) -> Option<String> {
    if let (Some((unit, subtree, _)), Some((p, _))) = (moving, parent) {
        if p == unit {
            return Some("an org unit cannot be its own parent".into());
        }
        if subtree.contains(&p) {
            return Some("an org unit cannot move into its own subtree".into());
        }
    }
    if !kind.may_sit_under(parent.map(|(_, k)| k)) {
        return Some(match parent {
            None => format!("a {} must sit inside a branch", kind.as_str()),
            Some((_, pk)) => format!("a {} cannot sit under a {}", kind.as_str(), pk.as_str()),
        });
    }
    if let Some((_, _, children)) = moving {
        if let Some(c) = children.iter().find(|c| !c.may_sit_under(Some(kind))) {
            return Some(format!(
                "it has a {} inside, which cannot sit under a {}",
                c.as_str(),
                kind.as_str()
            ));
        }
    }
    None
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct OrgUnit {
    pub id: i64,
    pub name: String,
    pub parent_id: Option<i64>,
    pub kind: OrgKind,
}

const UNIT_COLUMNS: &str = "id, name, parent_id, kind";

fn from_row(r: &sqlx::any::AnyRow) -> OrgUnit {
    OrgUnit {
        id: r.get(0),
        name: r.get(1),
        parent_id: r.get(2),
        kind: OrgKind::parse(&r.get::<String, _>(3)).unwrap_or(OrgKind::Branch),
    }
}

pub async fn find_by_name<'c, E>(exec: E, name: &str) -> sqlx::Result<Option<OrgUnit>>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    Ok(sqlx::query(&format!(
        "SELECT {UNIT_COLUMNS} FROM org_units WHERE name = $1"
    ))
    .bind(name)
    .fetch_optional(exec)
    .await?
    .as_ref()
    .map(from_row))
}

pub async fn get(db: &Db, id: i64) -> sqlx::Result<Option<OrgUnit>> {
    get_in(db.pool(), id).await
}

/// [`get`] on any executor (inside a transaction: what the transaction sees).
pub async fn get_in<'c, E>(exec: E, id: i64) -> sqlx::Result<Option<OrgUnit>>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    Ok(sqlx::query(&format!(
        "SELECT {UNIT_COLUMNS} FROM org_units WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(exec)
    .await?
    .as_ref()
    .map(from_row))
}

pub async fn list(db: &Db) -> sqlx::Result<Vec<OrgUnit>> {
    Ok(
        sqlx::query(&format!("SELECT {UNIT_COLUMNS} FROM org_units ORDER BY id"))
            .fetch_all(db.pool())
            .await?
            .iter()
            .map(from_row)
            .collect(),
    )
}

/// Create a unit of `kind` (callers check [`placement_error`] first).
pub async fn create_kind(
    tx: &mut Tx,
    name: &str,
    parent_id: Option<i64>,
    kind: OrgKind,
    now: i64,
) -> sqlx::Result<i64> {
    Ok(sqlx::query(
        "INSERT INTO org_units (name, parent_id, kind, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) RETURNING id",
    )
    .bind(name)
    .bind(parent_id)
    .bind(kind.as_str())
    .bind(now)
    .fetch_one(&mut **tx)
    .await?
    .get(0))
}

/// Rename, re-kind and/or move unit `id` (callers check [`placement_error`] first).
pub async fn update(
    tx: &mut Tx,
    id: i64,
    name: &str,
    parent_id: Option<i64>,
    kind: OrgKind,
    now: i64,
) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE org_units SET name = $1, parent_id = $2, kind = $3, updated_at = $4 WHERE id = $5",
    )
    .bind(name)
    .bind(parent_id)
    .bind(kind.as_str())
    .bind(now)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// The kinds of `id`'s direct children.
pub async fn child_kinds(tx: &mut Tx, id: i64) -> sqlx::Result<Vec<OrgKind>> {
    let rows = sqlx::query("SELECT kind FROM org_units WHERE parent_id = $1")
        .bind(id)
        .fetch_all(&mut **tx)
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| OrgKind::parse(&r.get::<String, _>(0)))
        .collect())
}

/// `root` and all its descendants, as a transaction sees them.
pub async fn subtree_ids_in(tx: &mut Tx, root: i64) -> sqlx::Result<Vec<i64>> {
    let rows = sqlx::query(SUBTREE).bind(root).fetch_all(&mut **tx).await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Delete unit `id`. Refused by the database (a foreign-key violation) while anything still
/// refers to it: child units, members (former ones included), accounts, other features' rows.
pub async fn delete(tx: &mut Tx, id: i64) -> sqlx::Result<bool> {
    let r = sqlx::query("DELETE FROM org_units WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Serialise changes to the tree: two concurrent moves could otherwise each pass the cycle check
/// and together make a cycle. On PostgreSQL an advisory transaction lock; SQLite's write
/// transaction already holds the one writer lock.
pub async fn lock_tree(tx: &mut Tx, backend: crate::platform::db::Backend) -> sqlx::Result<()> {
    if backend == crate::platform::db::Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(ORG_TREE_LOCK)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// An arbitrary constant: the PostgreSQL advisory-lock id of org-tree changes.
const ORG_TREE_LOCK: i64 = 0x00da_691a_0010;

const SUBTREE: &str = "WITH RECURSIVE sub(id) AS (SELECT id FROM org_units WHERE id = $1 \
     UNION SELECT o.id FROM org_units o JOIN sub ON o.parent_id = sub.id) SELECT id FROM sub";

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
        "INSERT INTO org_units (name, parent_id, created_at, updated_at) VALUES ($1, $2, $3, $3) RETURNING id",
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
    let rows = sqlx::query(SUBTREE).bind(root).fetch_all(db.pool()).await?;
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

#[cfg(test)]
mod tests {
    use super::OrgKind::*;
    use super::*;

    #[test]
    fn kinds_sit_where_the_party_constitution_puts_them() {
        let cases = [
            (Committee, None, true),
            (Committee, Some(Committee), true),
            (Committee, Some(Branch), false),
            (GeneralBranch, Some(Committee), true),
            (GeneralBranch, Some(GeneralBranch), false),
            (Branch, None, true),
            (Branch, Some(Committee), true),
            (Branch, Some(GeneralBranch), true),
            (Branch, Some(Branch), false),
            (Group, Some(Branch), true),
            (Group, None, false),
            (Group, Some(GeneralBranch), false),
            (Group, Some(Group), false),
        ];
        for (kind, parent, ok) in cases {
            assert_eq!(kind.may_sit_under(parent), ok, "{kind:?} under {parent:?}");
        }
        for k in OrgKind::ALL {
            assert_eq!(OrgKind::parse(k.as_str()), Some(k));
        }
    }

    #[test]
    fn a_move_into_its_own_subtree_or_that_strands_a_child_is_refused() {
        // 1 → 2 → 3: moving 1 under 3 (or under itself) would make a cycle.
        let subtree = [1, 2, 3];
        let kids = [GeneralBranch];
        let moving = Some((1, &subtree[..], &kids[..]));
        assert!(placement_error(Committee, Some((3, Branch)), moving)
            .unwrap()
            .contains("own subtree"));
        assert!(placement_error(Committee, Some((1, Committee)), moving)
            .unwrap()
            .contains("own parent"));
        assert_eq!(
            placement_error(Committee, Some((9, Committee)), moving),
            None
        );
        // Re-kinding a committee with a general branch inside into a branch strands the child.
        assert!(placement_error(Branch, None, moving)
            .unwrap()
            .contains("general_branch inside"));
        assert!(placement_error(Group, None, None)
            .unwrap()
            .contains("inside a branch"));
        assert_eq!(placement_error(Group, Some((5, Branch)), None), None);
    }
}
