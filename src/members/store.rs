//! The roster's SQL: members (personal data still encrypted) and their lookups. The only place
//! the `members` table is read or written.

use sqlx::Row;

use crate::platform::{
    db::{Db, Tx},
    org::OrgScope,
    pii::{Column, DataCipher},
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
    /// The mini-program openid (`members.openid`).
    pub openid: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// The official-account openid.
    pub oa_openid: Option<String>,
    /// Links the two openids when both apps are on one open-platform account.
    pub unionid: Option<String>,
    /// `active`, `transferred_out` or `left`.
    pub status: String,
    /// 转正: probationary → full member.
    pub full_at: Option<i64>,
    pub left_at: Option<i64>,
}

impl MemberRow {
    pub fn is_active(&self) -> bool {
        self.status == STATUS_ACTIVE
    }
}

pub const STATUS_ACTIVE: &str = "active";
pub const STATUS_TRANSFERRED_OUT: &str = "transferred_out";
pub const STATUS_LEFT: &str = "left";

const SELECT: &str =
    "SELECT m.id, m.name, m.phone_enc, m.id_number_enc, m.category, m.monthly_income_enc, \
     m.org_unit_id, o.name, m.party_status, m.joined_at, m.openid, m.created_at, m.updated_at, \
     m.oa_openid, m.unionid, m.status, m.full_at, m.left_at \
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
        oa_openid: r.get(13),
        unionid: r.get(14),
        status: r.get(15),
        full_at: r.get(16),
        left_at: r.get(17),
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

/// Which members a roster page lists.
pub struct ListFilter<'a> {
    pub scope: &'a OrgScope,
    /// A unit and its subtree (the list's org-unit filter).
    pub units: Option<&'a OrgScope>,
    pub search: &'a Search<'a>,
    /// Roster status (None: any); one of `rules::MEMBER_STATUSES`.
    pub status: Option<&'a str>,
    /// One of `rules::PARTY_STATUSES` (None: any).
    pub party_status: Option<&'a str>,
}

/// One page of the members `f` selects, by id; with the total count.
pub async fn list(db: &Db, f: &ListFilter<'_>, page: i64) -> sqlx::Result<(Vec<MemberRow>, i64)> {
    let mut cond = vec![f.scope.sql_condition("m.org_unit_id")];
    if let Some(s) = f.status {
        // One of the fixed statuses (checked by the caller), never user text.
        debug_assert!(super::rules::MEMBER_STATUSES.contains(&s));
        cond.push(format!("m.status = '{s}'"));
    }
    if let Some(p) = f.party_status {
        debug_assert!(super::rules::PARTY_STATUSES.contains(&p));
        cond.push(format!("m.party_status = '{p}'"));
    }
    if let Some(u) = f.units {
        cond.push(u.sql_condition("m.org_unit_id"));
    }
    let mut args: Vec<String> = Vec::new();
    match f.search {
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

/// The members table's encrypted columns (each value sealed to its row, see `platform::pii`).
pub const PHONE: Column = Column::new("members", "phone_enc");
pub const ID_NUMBER: Column = Column::new("members", "id_number_enc");
pub const INCOME: Column = Column::new("members", "monthly_income_enc");

/// A member's fields as written by an import or an incoming transfer. The personal data is in
/// the clear here: the store seals each value to the row it lands in.
pub struct MemberWrite<'a> {
    pub name: &'a str,
    pub phone: &'a str,
    pub phone_idx: String,
    pub id_number: Option<&'a str>,
    pub category: &'a str,
    /// Monthly income in fen, as text.
    pub income: Option<String>,
    pub org_unit_id: i64,
    pub party_status: &'a str,
    pub joined_at: Option<i64>,
}

/// Seal the personal data of `m` into row `id` (an ID number not given keeps the stored one).
async fn seal_pii(
    tx: &mut Tx,
    cipher: &DataCipher,
    id: i64,
    m: &MemberWrite<'_>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE members SET phone_enc = $1, phone_idx = $2, id_number_enc = COALESCE($3, id_number_enc), \
         monthly_income_enc = $4 WHERE id = $5",
    )
    .bind(cipher.seal(PHONE.at(id), m.phone))
    .bind(&m.phone_idx)
    .bind(cipher.seal_opt(ID_NUMBER.at(id), m.id_number))
    .bind(cipher.seal_opt(INCOME.at(id), m.income.as_deref()))
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Overwrite member `id` (an ID number or join date not given keeps the stored one).
pub async fn update(
    tx: &mut Tx,
    cipher: &DataCipher,
    id: i64,
    m: &MemberWrite<'_>,
    now: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE members SET name = $1, category = $2, org_unit_id = $3, party_status = $4, \
         joined_at = COALESCE($5, joined_at), updated_at = $6 WHERE id = $7",
    )
    .bind(m.name)
    .bind(m.category)
    .bind(m.org_unit_id)
    .bind(m.party_status)
    .bind(m.joined_at)
    .bind(now)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    seal_pii(tx, cipher, id, m).await
}

/// A new member; its personal data is sealed once the row (and so its id) exists.
pub async fn insert(
    tx: &mut Tx,
    cipher: &DataCipher,
    m: &MemberWrite<'_>,
    now: i64,
) -> sqlx::Result<i64> {
    let id: i64 = sqlx::query(
        "INSERT INTO members (name, phone_enc, phone_idx, category, org_unit_id, party_status, \
         joined_at, created_at, updated_at) VALUES ($1, '', $2, $3, $4, $5, $6, $7, $7) RETURNING id",
    )
    .bind(m.name)
    .bind(&m.phone_idx)
    .bind(m.category)
    .bind(m.org_unit_id)
    .bind(m.party_status)
    .bind(m.joined_at)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?
    .get(0);
    seal_pii(tx, cipher, id, m).await?;
    Ok(id)
}

// ---------------------------------------------------------------- identity and organisation
// (both openids, unionid, status, edits, transfers). Kept above `bound_to` so that functions
// other features append at the end of this file merge cleanly.

/// An arbitrary constant: the PostgreSQL advisory-lock id of identity links.
const IDENTITY_LOCK: i64 = 0x00da_691a_0011;

/// Serialise the transactions that link a member's two openids (binding, a follower's UnionID,
/// the follower sync): each reads what the other writes, so two running side by side could each
/// miss the other and leave a pair unlinked. Take it first in the transaction. On SQLite the
/// write transaction already holds the one writer lock.
pub async fn lock_identity(tx: &mut Tx, backend: crate::platform::db::Backend) -> sqlx::Result<()> {
    if backend == crate::platform::db::Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(IDENTITY_LOCK)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// [`by_id`] inside a transaction (what the transaction sees).
pub async fn by_id_in(tx: &mut Tx, id: i64) -> sqlx::Result<Option<MemberRow>> {
    let sql = format!("{SELECT} WHERE m.id = $1");
    Ok(sqlx::query(&sql)
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .as_ref()
        .map(from_row))
}

/// The member (any status) whose official-account openid is `oa_openid`.
pub async fn by_oa_openid(db: &Db, oa_openid: &str) -> sqlx::Result<Option<MemberRow>> {
    let sql = format!("{SELECT} WHERE m.oa_openid = $1");
    Ok(sqlx::query(&sql)
        .bind(oa_openid)
        .fetch_optional(db.pool())
        .await?
        .as_ref()
        .map(from_row))
}

/// A mini-program login: remember the UnionID code2session gave for `openid` (kept when this
/// login gave none).
pub async fn record_mp_login(
    db: &Db,
    openid: &str,
    unionid: Option<&str>,
    now: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO mp_users (openid, unionid, first_login_at, last_login_at) VALUES ($1, $2, $3, $3) \
         ON CONFLICT (openid) DO UPDATE SET unionid = COALESCE(excluded.unionid, mp_users.unionid), \
         last_login_at = excluded.last_login_at",
    )
    .bind(openid)
    .bind(unionid)
    .bind(now)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// The UnionID last seen for the mini-program user `openid`.
pub async fn mp_unionid(tx: &mut Tx, openid: &str) -> sqlx::Result<Option<String>> {
    Ok(
        sqlx::query("SELECT unionid FROM mp_users WHERE openid = $1")
            .bind(openid)
            .fetch_optional(&mut **tx)
            .await?
            .and_then(|r| r.get::<Option<String>, _>(0)),
    )
}

/// Give member `id` its UnionID unless it has one or another member holds it. True if set.
pub async fn set_unionid(tx: &mut Tx, id: i64, unionid: &str, now: i64) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE members SET unionid = $1, updated_at = $2 WHERE id = $3 AND unionid IS NULL \
         AND NOT EXISTS (SELECT 1 FROM members x WHERE x.unionid = $1)",
    )
    .bind(unionid)
    .bind(now)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// A bound member whose UnionID we had not learned yet (bound before it was recorded): the
/// mini-program user with that UnionID tells which one. True if a member got it.
pub async fn adopt_unionid_from_mp_login(
    tx: &mut Tx,
    unionid: &str,
    now: i64,
) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE members SET unionid = $1, updated_at = $2 WHERE unionid IS NULL \
         AND openid IN (SELECT openid FROM mp_users WHERE unionid = $1) \
         AND NOT EXISTS (SELECT 1 FROM members x WHERE x.unionid = $1)",
    )
    .bind(unionid)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// [`adopt_unionid_from_mp_login`] for every bound member still without a UnionID, in one
/// statement (the follower sync, once per page).
pub async fn adopt_unionids_from_mp_logins(tx: &mut Tx, now: i64) -> sqlx::Result<u64> {
    Ok(sqlx::query(
        "UPDATE members SET unionid = (SELECT u.unionid FROM mp_users u WHERE u.openid = members.openid), \
         updated_at = $1 WHERE unionid IS NULL AND openid IS NOT NULL AND EXISTS (SELECT 1 FROM mp_users u \
         WHERE u.openid = members.openid AND u.unionid IS NOT NULL \
         AND NOT EXISTS (SELECT 1 FROM members x WHERE x.unionid = u.unionid))",
    )
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected())
}

/// The follower `oa_openid` is the member with `unionid`: record it as the member's account
/// openid unless the member already has one or another member holds it. The member's id if set.
pub async fn link_oa_openid(
    tx: &mut Tx,
    unionid: &str,
    oa_openid: &str,
    now: i64,
) -> sqlx::Result<Option<i64>> {
    Ok(sqlx::query(
        "UPDATE members SET oa_openid = $1, updated_at = $2 WHERE unionid = $3 AND oa_openid IS NULL \
         AND NOT EXISTS (SELECT 1 FROM members x WHERE x.oa_openid = $1) RETURNING id",
    )
    .bind(oa_openid)
    .bind(now)
    .bind(unionid)
    .fetch_optional(&mut **tx)
    .await?
    .map(|r| r.get(0)))
}

/// UnionIDs of active members who have no account openid yet (the link pass's candidates).
pub async fn unionids_without_oa_openid(tx: &mut Tx, limit: i64) -> sqlx::Result<Vec<String>> {
    Ok(sqlx::query(
        "SELECT unionid FROM members WHERE unionid IS NOT NULL AND oa_openid IS NULL \
         AND status = 'active' ORDER BY id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?
    .iter()
    .map(|r| r.get(0))
    .collect())
}

/// [`link_oa_openid`] for many followers at once (the follower sync): `(unionid, oa_openid)`
/// pairs. The ids of the members linked.
pub async fn link_oa_openids(
    tx: &mut Tx,
    pairs: &[(&str, &str)],
    now: i64,
) -> sqlx::Result<Vec<i64>> {
    let mut linked = Vec::new();
    for chunk in pairs.chunks(400) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| format!("(${}, ${})", 2 * i + 2, 2 * i + 3))
            .collect();
        // VALUES columns are `column1, column2` on both engines.
        let sql = format!(
            "UPDATE members SET oa_openid = v.column2, updated_at = $1 FROM (VALUES {}) AS v \
             WHERE members.unionid = v.column1 AND members.oa_openid IS NULL \
             AND NOT EXISTS (SELECT 1 FROM members x WHERE x.oa_openid = v.column2) RETURNING id",
            values.join(", ")
        );
        let mut q = sqlx::query(&sql).bind(now);
        for (u, o) in chunk {
            q = q.bind(*u).bind(*o);
        }
        linked.extend(
            q.fetch_all(&mut **tx)
                .await?
                .iter()
                .map(|r| r.get::<i64, _>(0)),
        );
    }
    Ok(linked)
}

/// What an edit writes (personal data already encrypted).
pub struct MemberEdit<'a> {
    pub name: &'a str,
    pub category: &'a str,
    pub monthly_income_enc: Option<&'a str>,
    pub party_status: &'a str,
    pub joined_at: Option<i64>,
    pub full_at: Option<i64>,
}

/// Overwrite the editable fields of member `id` if it was last updated at `seen_updated_at`
/// (false: someone changed it in between).
pub async fn edit(
    tx: &mut Tx,
    id: i64,
    e: &MemberEdit<'_>,
    seen_updated_at: i64,
    now: i64,
) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE members SET name = $1, category = $2, monthly_income_enc = $3, party_status = $4, \
         joined_at = $5, full_at = $6, updated_at = $7 WHERE id = $8 AND updated_at = $9",
    )
    .bind(e.name)
    .bind(e.category)
    .bind(e.monthly_income_enc)
    .bind(e.party_status)
    .bind(e.joined_at)
    .bind(e.full_at)
    .bind(now)
    .bind(id)
    .bind(seen_updated_at)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Remove member `id` from the roster (status `left`), dropping its WeChat bindings; the row and
/// its history stay. False if it had left already.
pub async fn mark_left(tx: &mut Tx, id: i64, now: i64) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE members SET status = 'left', left_at = $1, openid = NULL, oa_openid = NULL, unionid = NULL, \
         updated_at = $1 WHERE id = $2 AND status <> 'left'",
    )
    .bind(now)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Which app's openid an unbind removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum App {
    /// The mini-program (`members.openid`).
    Mp,
    /// The official account (`members.oa_openid`).
    Oa,
}

/// Remove member `id`'s openid for `app` if it is still `current`, and the UnionID with it (the
/// link between the two apps is what an unbind breaks; WeChat re-links a genuine pair at the
/// next login or follow). False if it changed in between.
pub async fn unbind(tx: &mut Tx, id: i64, app: App, current: &str, now: i64) -> sqlx::Result<bool> {
    let column = match app {
        App::Mp => "openid",
        App::Oa => "oa_openid",
    };
    let r = sqlx::query(&format!(
        "UPDATE members SET {column} = NULL, unionid = NULL, updated_at = $1 WHERE id = $2 AND {column} = $3"
    ))
    .bind(now)
    .bind(id)
    .bind(current)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Move member `id` from `from` to org unit `to` (a transfer within the organisation). False if
/// the member is not active in `from` any more.
pub async fn move_to_unit(
    tx: &mut Tx,
    id: i64,
    from: i64,
    to: i64,
    now: i64,
) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE members SET org_unit_id = $1, updated_at = $2 WHERE id = $3 AND org_unit_id = $4 AND status = 'active'",
    )
    .bind(to)
    .bind(now)
    .bind(id)
    .bind(from)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Set member `id`'s status from `from` to `to` (transfers out and back). False if it was not
/// `from`.
pub async fn change_status(
    tx: &mut Tx,
    id: i64,
    from: &str,
    to: &str,
    now: i64,
) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE members SET status = $1, left_at = CASE WHEN $1 = 'active' THEN NULL ELSE $2 END, updated_at = $2 \
         WHERE id = $3 AND status = $4",
    )
    .bind(to)
    .bind(now)
    .bind(id)
    .bind(from)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// A member who comes back (an incoming transfer of someone once on our roster): active again in
/// `org_unit_id`, with the fields of the arrival.
pub async fn reactivate(
    tx: &mut Tx,
    cipher: &DataCipher,
    id: i64,
    m: &MemberWrite<'_>,
    now: i64,
) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE members SET name = $1, category = $2, org_unit_id = $3, party_status = $4, \
         joined_at = COALESCE($5, joined_at), status = 'active', \
         left_at = NULL, updated_at = $6 WHERE id = $7 AND status <> 'active'",
    )
    .bind(m.name)
    .bind(m.category)
    .bind(m.org_unit_id)
    .bind(m.party_status)
    .bind(m.joined_at)
    .bind(now)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    if r.rows_affected() != 1 {
        return Ok(false);
    }
    seal_pii(tx, cipher, id, m).await?;
    Ok(true)
}

/// Members (of any status) whose Party relation is in org unit `unit`.
pub async fn count_in_unit(tx: &mut Tx, unit: i64) -> sqlx::Result<i64> {
    Ok(
        sqlx::query("SELECT COUNT(*) FROM members WHERE org_unit_id = $1")
            .bind(unit)
            .fetch_one(&mut **tx)
            .await?
            .get(0),
    )
}

/// Active members per org unit (directly in it).
pub async fn active_counts_by_unit(db: &Db) -> sqlx::Result<Vec<(i64, i64)>> {
    Ok(sqlx::query(
        "SELECT org_unit_id, COUNT(*) FROM members WHERE status = 'active' GROUP BY org_unit_id",
    )
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect())
}

// ---- transfers (组织关系转接)

/// One step of a member's transfer history.
#[derive(Debug, Clone)]
pub struct TransferRow {
    pub id: i64,
    pub member_id: i64,
    pub member_name: String,
    pub direction: String,
    pub status: String,
    pub from_org_unit_id: Option<i64>,
    pub from_org_unit: Option<String>,
    pub to_org_unit_id: Option<i64>,
    pub to_org_unit: Option<String>,
    pub external_org: Option<String>,
    pub letter_no: Option<String>,
    pub dues_paid_until: Option<String>,
    pub validity_days: Option<i64>,
    pub expires_at: Option<i64>,
    pub reason: Option<String>,
    pub outcome_reason: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    pub closed_by: Option<String>,
    pub closed_at: Option<i64>,
}

const TRANSFER_SELECT: &str = "SELECT t.id, t.member_id, m.name, t.direction, t.status, t.from_org_unit_id, fo.name, \
     t.to_org_unit_id, too.name, t.external_org, t.letter_no, t.dues_paid_until, t.validity_days, t.expires_at, \
     t.reason, t.outcome_reason, t.created_by, t.created_at, t.closed_by, t.closed_at \
     FROM member_transfers t JOIN members m ON m.id = t.member_id \
     LEFT JOIN org_units fo ON fo.id = t.from_org_unit_id LEFT JOIN org_units too ON too.id = t.to_org_unit_id";

fn transfer_of(r: &sqlx::any::AnyRow) -> TransferRow {
    TransferRow {
        id: r.get(0),
        member_id: r.get(1),
        member_name: r.get(2),
        direction: r.get(3),
        status: r.get(4),
        from_org_unit_id: r.get(5),
        from_org_unit: r.get(6),
        to_org_unit_id: r.get(7),
        to_org_unit: r.get(8),
        external_org: r.get(9),
        letter_no: r.get(10),
        dues_paid_until: r.get(11),
        validity_days: r.get(12),
        expires_at: r.get(13),
        reason: r.get(14),
        outcome_reason: r.get(15),
        created_by: r.get(16),
        created_at: r.get(17),
        closed_by: r.get(18),
        closed_at: r.get(19),
    }
}

/// A new transfer step.
pub struct NewTransfer<'a> {
    pub member_id: i64,
    pub direction: &'a str,
    pub status: &'a str,
    pub from_org_unit_id: Option<i64>,
    pub to_org_unit_id: Option<i64>,
    pub external_org: Option<&'a str>,
    pub letter_no: Option<&'a str>,
    pub dues_paid_until: Option<&'a str>,
    pub validity_days: Option<i64>,
    pub expires_at: Option<i64>,
    pub reason: Option<&'a str>,
    pub created_by: &'a str,
}

pub async fn insert_transfer(tx: &mut Tx, t: &NewTransfer<'_>, now: i64) -> sqlx::Result<i64> {
    Ok(sqlx::query(
        "INSERT INTO member_transfers (member_id, direction, status, from_org_unit_id, to_org_unit_id, external_org, \
         letter_no, dues_paid_until, validity_days, expires_at, reason, created_by, created_at, updated_at, \
         closed_by, closed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13, \
         CASE WHEN $3 = 'issued' THEN NULL ELSE $12 END, CASE WHEN $3 = 'issued' THEN NULL ELSE $13 END) RETURNING id",
    )
    .bind(t.member_id)
    .bind(t.direction)
    .bind(t.status)
    .bind(t.from_org_unit_id)
    .bind(t.to_org_unit_id)
    .bind(t.external_org)
    .bind(t.letter_no)
    .bind(t.dues_paid_until)
    .bind(t.validity_days)
    .bind(t.expires_at)
    .bind(t.reason)
    .bind(t.created_by)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?
    .get(0))
}

/// Number our own introduction letter once its id is known.
pub async fn set_letter_no(tx: &mut Tx, id: i64, letter_no: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE member_transfers SET letter_no = $1 WHERE id = $2")
        .bind(letter_no)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn transfer(db: &Db, id: i64) -> sqlx::Result<Option<TransferRow>> {
    Ok(sqlx::query(&format!("{TRANSFER_SELECT} WHERE t.id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?
        .as_ref()
        .map(transfer_of))
}

pub async fn transfer_in(tx: &mut Tx, id: i64) -> sqlx::Result<Option<TransferRow>> {
    Ok(sqlx::query(&format!("{TRANSFER_SELECT} WHERE t.id = $1"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .as_ref()
        .map(transfer_of))
}

/// A member's transfer history, oldest first.
pub async fn transfers_of(db: &Db, member_id: i64) -> sqlx::Result<Vec<TransferRow>> {
    Ok(sqlx::query(&format!(
        "{TRANSFER_SELECT} WHERE t.member_id = $1 ORDER BY t.id"
    ))
    .bind(member_id)
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(transfer_of)
    .collect())
}

/// Transfers touching `scope` (either side), newest first, optionally of one status.
pub async fn list_transfers(
    db: &Db,
    scope: &OrgScope,
    status: Option<&str>,
    limit: i64,
    offset: i64,
) -> sqlx::Result<(Vec<TransferRow>, i64)> {
    let mut cond = format!(
        "({} OR {})",
        scope.sql_condition("t.from_org_unit_id"),
        scope.sql_condition("t.to_org_unit_id")
    );
    if status.is_some() {
        cond.push_str(" AND t.status = $1");
    }
    let count_sql = format!("SELECT COUNT(*) FROM member_transfers t WHERE {cond}");
    let list_sql =
        format!("{TRANSFER_SELECT} WHERE {cond} ORDER BY t.id DESC LIMIT {limit} OFFSET {offset}");
    let mut cq = sqlx::query_scalar::<_, i64>(&count_sql);
    let mut lq = sqlx::query(&list_sql);
    if let Some(s) = status {
        cq = cq.bind(s);
        lq = lq.bind(s);
    }
    let total = cq.fetch_one(db.pool()).await?;
    let rows = lq.fetch_all(db.pool()).await?;
    Ok((rows.iter().map(transfer_of).collect(), total))
}

/// Close an issued letter as `received` or `returned` (with the other side's reason). False if
/// it was not open any more.
pub async fn close_transfer(
    tx: &mut Tx,
    id: i64,
    outcome: &str,
    reason: Option<&str>,
    by: &str,
    now: i64,
) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE member_transfers SET status = $1, outcome_reason = $2, closed_by = $3, closed_at = $4, updated_at = $4 \
         WHERE id = $5 AND status = 'issued'",
    )
    .bind(outcome)
    .bind(reason)
    .bind(by)
    .bind(now)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// The active roster entry bound to the mini-program `openid`, if any (a member who left or
/// whose Party relation moved away is no longer on the roster).
pub async fn bound_to(db: &Db, openid: &str) -> sqlx::Result<Option<MemberRow>> {
    let sql = format!("{SELECT} WHERE m.openid = $1 AND m.status = 'active'");
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

/// One member's encrypted fields and blind index, for re-encryption under a new key.
#[derive(Debug, Clone)]
/// A member's phone and its blind index, as the index pass reads them.
pub struct PhoneIndexRow {
    pub id: i64,
    pub phone_enc: String,
    pub phone_idx: String,
}

/// Up to `limit` members after id `after`, by id (the index pass walks the roster in batches).
pub async fn phone_index_batch(
    db: &Db,
    after: i64,
    limit: i64,
) -> sqlx::Result<Vec<PhoneIndexRow>> {
    let rows = sqlx::query(
        "SELECT id, phone_enc, phone_idx FROM members WHERE id > $1 ORDER BY id LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .iter()
        .map(|r| PhoneIndexRow {
            id: r.get(0),
            phone_enc: r.get(1),
            phone_idx: r.get(2),
        })
        .collect())
}

/// Write the phone's new blind index only if the row still holds the phone and index the pass
/// read: an edit or import that ran in between is never reverted (its index is current anyway).
pub async fn rewrite_phone_index(
    tx: &mut Tx,
    old: &PhoneIndexRow,
    idx: &str,
) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE members SET phone_idx = $1 WHERE id = $2 AND phone_enc = $3 AND phone_idx = $4",
    )
    .bind(idx)
    .bind(old.id)
    .bind(&old.phone_enc)
    .bind(&old.phone_idx)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// The member-development workflow (发展党员) moved member `id` to `party_status`
/// (`probationary` on admission, `full` on confirmation). `joined_at` (入党时间: the branch
/// meeting that admitted them) fills the join date when the roster has none.
pub async fn set_party_status(
    tx: &mut Tx,
    id: i64,
    party_status: &str,
    joined_at: Option<i64>,
    now: i64,
) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE members SET party_status = $1, joined_at = COALESCE(joined_at, $2), \
         updated_at = $3 WHERE id = $4",
    )
    .bind(party_status)
    .bind(joined_at)
    .bind(now)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

// ---- for other features (activities): members by id and by org unit, in one query per chunk.

/// The members with these ids (unknown ids are left out), by id.
pub async fn by_ids(db: &Db, ids: &[i64]) -> sqlx::Result<Vec<MemberRow>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let list: Vec<String> = chunk.iter().map(i64::to_string).collect();
        let sql = format!("{SELECT} WHERE m.id IN ({}) ORDER BY m.id", list.join(","));
        out.extend(
            sqlx::query(&sql)
                .fetch_all(db.pool())
                .await?
                .iter()
                .map(from_row),
        );
    }
    Ok(out)
}

/// Every member whose org unit is in `scope`, by id.
pub async fn in_scope(db: &Db, scope: &OrgScope) -> sqlx::Result<Vec<MemberRow>> {
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

/// Every member within `scope`, by id (the dues assessment reads category, encrypted income,
/// Party status and joining date from these).
pub async fn all_in_scope(db: &Db, scope: &OrgScope) -> sqlx::Result<Vec<MemberRow>> {
    let sql = format!(
        // Active members only: those who left or transferred out owe nothing here.
        "{SELECT} WHERE {} AND m.status = 'active' ORDER BY m.id",
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
