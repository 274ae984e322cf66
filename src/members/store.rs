//! The roster's SQL: members (personal data still encrypted) and their lookups. The only place
//! the `members` table is read or written.

use sqlx::Row;

use crate::platform::{
    db::{Db, Tx},
    org::OrgScope,
    pii::DataCipher,
};

/// Rows per page of the roster list.
pub const PAGE_SIZE: i64 = 50;

/// A member row with personal data still encrypted.
#[derive(Debug, Clone)]
pub struct MemberRow {
    pub id: i64,
    pub name: String,
    pub phone_enc: String,
    pub id_number_enc: Option<String>,
    pub category: String,
    pub monthly_income_enc: Option<String>,
    pub org_unit_id: i64,
    pub org_unit: String,
    pub party_status: String,
    pub joined_at: Option<i64>,
    pub openid: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

const SELECT: &str =
    "SELECT m.id, m.name, m.phone_enc, m.id_number_enc, m.category, m.monthly_income_enc, \
     m.org_unit_id, o.name, m.party_status, m.joined_at, m.openid, m.created_at, m.updated_at \
     FROM members m JOIN org_units o ON o.id = m.org_unit_id";

fn from_row(r: &sqlx::any::AnyRow) -> MemberRow {
    MemberRow {
        id: r.get(0),
        name: r.get(1),
        phone_enc: r.get(2),
        id_number_enc: r.get(3),
        category: r.get(4),
        monthly_income_enc: r.get(5),
        org_unit_id: r.get(6),
        org_unit: r.get(7),
        party_status: r.get(8),
        joined_at: r.get(9),
        openid: r.get(10),
        created_at: r.get(11),
        updated_at: r.get(12),
    }
}

pub async fn by_id(db: &Db, id: i64) -> sqlx::Result<Option<MemberRow>> {
    let sql = format!("{SELECT} WHERE m.id = $1");
    Ok(sqlx::query(&sql)
        .bind(id)
        .fetch_optional(db.pool())
        .await?
        .as_ref()
        .map(from_row))
}

/// Exact lookup by phone through the blind index (for the mini-program binding). Matches rows
/// indexed under an old key too, until `rotate-key` has run.
pub async fn find_by_phone(
    db: &Db,
    cipher: &DataCipher,
    phone: &str,
) -> sqlx::Result<Option<MemberRow>> {
    for idx in cipher.phone_index_candidates(phone) {
        let sql = format!("{SELECT} WHERE m.phone_idx = $1");
        if let Some(r) = sqlx::query(&sql)
            .bind(idx)
            .fetch_optional(db.pool())
            .await?
        {
            return Ok(Some(from_row(&r)));
        }
    }
    Ok(None)
}

/// What the roster list searches by: a phone (exact, through the blind index) or a name part.
pub enum Search<'a> {
    None,
    PhoneIndex(Vec<String>),
    Name(&'a str),
}

/// One page of members within `scope` (and `unit_filter`), by id; with the total count.
pub async fn list(
    db: &Db,
    scope: &OrgScope,
    unit_filter: Option<&OrgScope>,
    search: &Search<'_>,
    page: i64,
) -> sqlx::Result<(Vec<MemberRow>, i64)> {
    let mut cond = vec![scope.sql_condition("m.org_unit_id")];
    if let Some(f) = unit_filter {
        cond.push(f.sql_condition("m.org_unit_id"));
    }
    let mut args: Vec<String> = Vec::new();
    match search {
        Search::None => {}
        Search::PhoneIndex(idx) => {
            let mut ph = Vec::new();
            for i in idx {
                args.push(i.clone());
                ph.push(format!("${}", args.len()));
            }
            cond.push(format!("m.phone_idx IN ({})", ph.join(",")));
        }
        Search::Name(text) => {
            let escaped = text
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            args.push(format!("%{escaped}%"));
            cond.push(format!("m.name LIKE ${} ESCAPE '\\'", args.len()));
        }
    }
    let where_ = cond.join(" AND ");
    let count_sql = format!("SELECT COUNT(*) FROM members m WHERE {where_}");
    let mut cq = sqlx::query(&count_sql);
    for a in &args {
        cq = cq.bind(a);
    }
    let total: i64 = cq.fetch_one(db.pool()).await?.get(0);
    let sql = format!(
        "{SELECT} WHERE {where_} ORDER BY m.id LIMIT {PAGE_SIZE} OFFSET {}",
        (page - 1) * PAGE_SIZE
    );
    let mut lq = sqlx::query(&sql);
    for a in &args {
        lq = lq.bind(a);
    }
    let rows = lq.fetch_all(db.pool()).await?;
    Ok((rows.iter().map(from_row).collect(), total))
}

/// Members whose blind index is one of `indexes`: index → (id, org_unit_id).
pub async fn ids_by_phone_index(
    db: &Db,
    indexes: &[&String],
) -> sqlx::Result<Vec<(String, i64, i64)>> {
    let mut out = Vec::new();
    for chunk in indexes.chunks(500) {
        let ph: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT id, org_unit_id, phone_idx FROM members WHERE phone_idx IN ({})",
            ph.join(",")
        );
        let mut q = sqlx::query(&sql);
        for idx in chunk {
            q = q.bind(idx.as_str());
        }
        for r in q.fetch_all(db.pool()).await? {
            out.push((r.get(2), r.get(0), r.get(1)));
        }
    }
    Ok(out)
}

/// A member's fields as written by an import, personal data already encrypted.
pub struct MemberWrite<'a> {
    pub name: &'a str,
    pub phone_enc: &'a str,
    pub phone_idx: &'a str,
    pub id_number_enc: Option<&'a str>,
    pub category: &'a str,
    pub monthly_income_enc: Option<&'a str>,
    pub org_unit_id: i64,
    pub party_status: &'a str,
    pub joined_at: Option<i64>,
}

/// Overwrite member `id` (an ID number or join date not given keeps the stored one).
pub async fn update(tx: &mut Tx, id: i64, m: &MemberWrite<'_>, now: i64) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE members SET name = $1, phone_enc = $2, phone_idx = $3, id_number_enc = COALESCE($4, id_number_enc), \
         category = $5, monthly_income_enc = $6, org_unit_id = $7, party_status = $8, \
         joined_at = COALESCE($9, joined_at), updated_at = $10 WHERE id = $11",
    )
    .bind(m.name)
    .bind(m.phone_enc)
    .bind(m.phone_idx)
    .bind(m.id_number_enc)
    .bind(m.category)
    .bind(m.monthly_income_enc)
    .bind(m.org_unit_id)
    .bind(m.party_status)
    .bind(m.joined_at)
    .bind(now)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn insert(tx: &mut Tx, m: &MemberWrite<'_>, now: i64) -> sqlx::Result<i64> {
    Ok(sqlx::query(
        "INSERT INTO members (name, phone_enc, phone_idx, id_number_enc, category, monthly_income_enc, \
         org_unit_id, party_status, joined_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING id",
    )
    .bind(m.name)
    .bind(m.phone_enc)
    .bind(m.phone_idx)
    .bind(m.id_number_enc)
    .bind(m.category)
    .bind(m.monthly_income_enc)
    .bind(m.org_unit_id)
    .bind(m.party_status)
    .bind(m.joined_at)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?
    .get(0))
}

/// The roster entry bound to the mini-program `openid`, if any.
pub async fn bound_to(db: &Db, openid: &str) -> sqlx::Result<Option<MemberRow>> {
    let sql = format!("{SELECT} WHERE m.openid = $1");
    Ok(sqlx::query(&sql)
        .bind(openid)
        .fetch_optional(db.pool())
        .await?
        .as_ref()
        .map(from_row))
}

/// Bind `openid` to member `id` if the member is unbound. `Ok(false)`: someone bound it first;
/// a unique violation: the openid is bound to another member.
pub async fn bind_openid(tx: &mut Tx, id: i64, openid: &str, now: i64) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE members SET openid = $1, updated_at = $2 WHERE id = $3 AND openid IS NULL",
    )
    .bind(openid)
    .bind(now)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Every member within `scope`, by id (the dues assessment reads category, encrypted income,
/// Party status and joining date from these).
pub async fn all_in_scope(db: &Db, scope: &OrgScope) -> sqlx::Result<Vec<MemberRow>> {
    let sql = format!(
        "{SELECT} WHERE {} ORDER BY m.id",
        scope.sql_condition("m.org_unit_id")
    );
    Ok(sqlx::query(&sql)
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(from_row)
        .collect())
}

/// Names of the members `ids` (those that exist): id → name.
pub async fn names_by_ids(
    db: &Db,
    ids: &[i64],
) -> sqlx::Result<std::collections::HashMap<i64, String>> {
    let mut out = std::collections::HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        // Integer ids from the database, inlined.
        let list: Vec<String> = chunk.iter().map(i64::to_string).collect();
        let sql = format!(
            "SELECT id, name FROM members WHERE id IN ({})",
            list.join(",")
        );
        for r in sqlx::query(&sql).fetch_all(db.pool()).await? {
            out.insert(r.get(0), r.get(1));
        }
    }
    Ok(out)
}
