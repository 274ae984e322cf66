//! The members roster: import (JSON or CSV), list and show — masked unless revealed (audited).
//!
//! Phone, ID number and income are encrypted at rest ([`crate::platform::pii::DataCipher`]); the phone also
//! has a blind index (`phone_idx`) for exact matches (re-import, mini-program binding).

use std::collections::{HashMap, HashSet};

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, Path, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sqlx::Row;

use crate::http::{routes::AdminRoutes, AppJson, AppQuery};
use crate::platform::time::rfc3339;
use crate::{
    app::AppState,
    auth::{org, AdminSession, OrgScope, Permission, Role},
    platform::audit,
    platform::db::Db,
    platform::error::{AppError, AppResult},
    platform::pii::{self, DataCipher},
};

pub fn routes(r: AdminRoutes) -> AdminRoutes {
    let import_limit = r.state().settings.import_max_body_bytes;
    r.route_with_limit(
        axum::http::Method::POST,
        "/api/admin/members",
        Permission::WriteMembers,
        Some(import_limit),
        import,
    )
    .get("/api/admin/members", Permission::ReadMembers, list)
    .get("/api/admin/members/{id}", Permission::ReadMembers, show)
}

pub const CATEGORIES: [&str; 5] = ["employed", "retired", "student", "unemployed", "other"];
pub const PARTY_STATUSES: [&str; 2] = ["full", "probationary"];
const PAGE_SIZE: i64 = 50;

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

/// The member as the API shows it: masked, or in clear when `reveal` (callers audit that).
pub fn member_json(m: &MemberRow, cipher: &DataCipher, reveal: bool) -> AppResult<Value> {
    let dec = |v: &str| {
        cipher
            .decrypt(v)
            .map_err(|e| AppError::Internal(anyhow::anyhow!("member {}: {e}", m.id)))
    };
    let phone = dec(&m.phone_enc)?;
    let id_number = m.id_number_enc.as_deref().map(dec).transpose()?;
    let income = if reveal {
        m.monthly_income_enc
            .as_deref()
            .map(dec)
            .transpose()?
            .and_then(|s| s.parse::<i64>().ok())
    } else {
        None
    };
    Ok(json!({
        "id": m.id,
        "name": m.name,
        "phone": if reveal { phone } else { pii::mask_phone(&phone) },
        "id_number": id_number.map(|v| if reveal { v } else { pii::mask_id_number(&v) }),
        "category": m.category,
        "monthly_income_fen": income,
        "org_unit": {"id": m.org_unit_id, "name": m.org_unit},
        "party_status": m.party_status,
        "joined_at": m.joined_at.map(rfc3339),
        "bound": m.openid.is_some(),
        "masked": !reveal,
        "created_at": rfc3339(m.created_at),
        "updated_at": rfc3339(m.updated_at),
    }))
}

// ---------------------------------------------------------------- list / show

#[derive(Debug, Deserialize)]
struct ListQuery {
    org_unit: Option<String>,
    q: Option<String>,
    page: Option<i64>,
}

async fn list(
    State(st): State<AppState>,
    session: AdminSession,
    AppQuery(q): AppQuery<ListQuery>,
) -> AppResult<AppJson<Value>> {
    let scope = session.org_scope(&st.db).await?;
    let mut cond = vec![scope.sql_condition("m.org_unit_id")];
    let mut args: Vec<String> = Vec::new();
    if let Some(name) = q.org_unit.as_deref().filter(|s| !s.is_empty()) {
        let unit = org::find_by_name(st.db.pool(), name)
            .await?
            .ok_or_else(|| AppError::NotFound("org unit".into()))?;
        cond.push(
            OrgScope::Units(org::subtree_ids(&st.db, unit.id).await?)
                .sql_condition("m.org_unit_id"),
        );
    }
    if let Some(text) = q.q.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        if pii::normalize_phone(text).is_some() {
            let idx = st.cipher.phone_index_candidates(text);
            let mut ph = Vec::new();
            for i in idx {
                args.push(i);
                ph.push(format!("${}", args.len()));
            }
            cond.push(format!("m.phone_idx IN ({})", ph.join(",")));
        } else {
            let escaped = text
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            args.push(format!("%{escaped}%"));
            cond.push(format!("m.name LIKE ${} ESCAPE '\\'", args.len()));
        }
    }
    let page = q.page.unwrap_or(1).max(1);
    let where_ = cond.join(" AND ");
    let count_sql = format!("SELECT COUNT(*) FROM members m WHERE {where_}");
    let mut cq = sqlx::query(&count_sql);
    for a in &args {
        cq = cq.bind(a);
    }
    let total: i64 = cq.fetch_one(st.db.pool()).await?.get(0);
    let sql = format!(
        "{SELECT} WHERE {where_} ORDER BY m.id LIMIT {PAGE_SIZE} OFFSET {}",
        (page - 1) * PAGE_SIZE
    );
    let mut lq = sqlx::query(&sql);
    for a in &args {
        lq = lq.bind(a);
    }
    let rows = lq.fetch_all(st.db.pool()).await?;
    let rows: Vec<MemberRow> = rows.iter().map(from_row).collect();
    // Even masked, a roster read is a read of personal data: who looked at whom is audited
    // (the search text is not repeated: a phone number there would be personal data itself).
    let search =
        q.q.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|t| {
                if pii::normalize_phone(t).is_some() {
                    "phone"
                } else {
                    "name"
                }
            });
    let entry = session.audit("member.list", "member", "").details(json!({
        "org_unit": q.org_unit, "search": search, "page": page,
        "member_ids": rows.iter().map(|m| m.id).collect::<Vec<_>>(),
    }));
    audit::record(st.db.pool(), &entry).await?;
    let members = rows
        .iter()
        .map(|m| member_json(m, &st.cipher, false))
        .collect::<AppResult<Vec<_>>>()?;
    Ok(AppJson(
        json!({"members": members, "page": page, "page_size": PAGE_SIZE, "total": total}),
    ))
}

#[derive(Debug, Deserialize)]
struct ShowQuery {
    #[serde(default)]
    reveal: bool,
}

/// `?reveal=true` returns phone, ID number and income in clear: needs `RevealPersonalData` within
/// the caller's org units, and is written to the audit log before the data leaves.
async fn show(
    State(st): State<AppState>,
    session: AdminSession,
    Path(id): Path<i64>,
    AppQuery(q): AppQuery<ShowQuery>,
) -> AppResult<AppJson<Value>> {
    let m = by_id(&st.db, id)
        .await?
        .ok_or_else(|| AppError::NotFound("member".into()))?;
    // Out-of-scope members are "not found": their existence is itself personal data.
    if !session.org_scope(&st.db).await?.contains(m.org_unit_id) {
        return Err(AppError::NotFound("member".into()));
    }
    if q.reveal {
        session.require(Permission::RevealPersonalData)?;
        let fields: Vec<&str> = std::iter::once("phone")
            .chain(m.id_number_enc.as_ref().map(|_| "id_number"))
            .chain(m.monthly_income_enc.as_ref().map(|_| "monthly_income_fen"))
            .collect();
        let entry = session
            .audit("member.reveal", "member", m.id)
            .details(json!({"fields": fields}));
        audit::record(st.db.pool(), &entry).await?;
    } else {
        audit::record(st.db.pool(), &session.audit("member.read", "member", m.id)).await?;
    }
    Ok(AppJson(
        json!({"member": member_json(&m, &st.cipher, q.reveal)?}),
    ))
}

// ---------------------------------------------------------------- import

/// One invalid row of an import; `row` is 1-based over data rows (the CSV header is not a row).
/// Messages name the problem, never the value.
#[derive(Debug, Clone, Serialize)]
pub struct RowError {
    pub row: usize,
    pub field: &'static str,
    pub message: String,
}

#[derive(Debug, Clone)]
struct ImportRow {
    name: String,
    phone: String,
    category: &'static str,
    income_fen: Option<i64>,
    org_unit: String,
    id_number: Option<String>,
    party_status: &'static str,
    joined_at: Option<i64>,
}

const COLUMNS: [&str; 8] = [
    "name",
    "phone",
    "category",
    "monthly_income_fen",
    "org_unit",
    "id_number",
    "party_status",
    "joined_at",
];

/// Raw cells of one row (JSON values stringified; CSV cells as-is).
type RawRow = HashMap<String, String>;

fn validate_row(n: usize, raw: &RawRow, errors: &mut Vec<RowError>) -> Option<ImportRow> {
    let before = errors.len();
    let mut err = |field: &'static str, message: &str| {
        errors.push(RowError {
            row: n,
            field,
            message: message.into(),
        })
    };
    let get = |k: &str| raw.get(k).map(|s| s.trim()).filter(|s| !s.is_empty());
    // Column names are not echoed: a CSV without a header makes its first data row the header.
    if raw.keys().any(|k| !COLUMNS.contains(&k.as_str())) {
        err("columns", "unknown column; expected name, phone, category, monthly_income_fen, org_unit, id_number, party_status, joined_at");
    }
    let name = get("name").unwrap_or_default().to_owned();
    if name.is_empty() || name.chars().count() > 64 {
        err("name", "name is required (at most 64 characters)");
    }
    let phone = get("phone").and_then(pii::normalize_phone);
    if phone.is_none() {
        err("phone", "phone must be an 11-digit mainland mobile number");
    }
    let category = get("category").and_then(|c| CATEGORIES.iter().find(|x| **x == c).copied());
    if category.is_none() {
        err(
            "category",
            "category must be one of employed, retired, student, unemployed, other",
        );
    }
    let income_fen = match get("monthly_income_fen") {
        None => None,
        Some(s) => match s.parse::<i64>() {
            Ok(v) if (0..=10_000_000_000).contains(&v) => Some(v),
            _ => {
                err(
                    "monthly_income_fen",
                    "monthly_income_fen must be a whole number of fen, 0 or more",
                );
                None
            }
        },
    };
    if income_fen.is_none()
        && matches!(category, Some("employed" | "retired"))
        && get("monthly_income_fen").is_none()
    {
        err(
            "monthly_income_fen",
            "monthly_income_fen is required for employed and retired members",
        );
    }
    let org_unit = get("org_unit").unwrap_or_default().to_owned();
    if org_unit.is_empty() || org_unit.chars().count() > 100 {
        err("org_unit", "org_unit is required (at most 100 characters)");
    }
    let id_number = match get("id_number") {
        None => None,
        Some(s) => {
            let v = pii::normalize_id_number(s);
            if v.is_none() {
                err(
                    "id_number",
                    "id_number must be an 18-character resident ID number with a valid check digit",
                );
            }
            v
        }
    };
    let party_status = match get("party_status") {
        None => Some("full"),
        Some(s) => PARTY_STATUSES.iter().find(|x| **x == s).copied(),
    };
    if party_status.is_none() {
        err("party_status", "party_status must be full or probationary");
    }
    let joined_at = match get("joined_at") {
        None => None,
        Some(s) => {
            let v = parse_date(s);
            if v.is_none() {
                err(
                    "joined_at",
                    "joined_at must be a date (YYYY-MM-DD) or RFC 3339 time",
                );
            }
            v
        }
    };
    if errors.len() > before {
        return None;
    }
    Some(ImportRow {
        name,
        phone: phone?,
        category: category?,
        income_fen,
        org_unit,
        id_number,
        party_status: party_status?,
        joined_at,
    })
}

/// `YYYY-MM-DD` (midnight, Asia/Shanghai) or RFC 3339 → unix ms.
fn parse_date(s: &str) -> Option<i64> {
    if let Some(ms) = crate::platform::time::parse_time(s) {
        return Some(ms);
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let d = time::Date::parse(s, &fmt).ok()?;
    Some(crate::platform::time::unix_ms(
        d.midnight().assume_offset(time::macros::offset!(+8)),
    ))
}

fn json_rows(body: &[u8]) -> AppResult<Vec<RawRow>> {
    let v: Value = serde_json::from_slice(body).map_err(|_| {
        AppError::rejected(
            StatusCode::BAD_REQUEST,
            "bad_json",
            "the body is not valid JSON",
        )
    })?;
    let Value::Array(items) = v else {
        return Err(AppError::Validation(
            "expected a JSON array of members".into(),
        ));
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::Object(map) => Ok(stringify(map)),
            _ => Err(AppError::Validation(format!(
                "item {} is not an object",
                i + 1
            ))),
        })
        .collect()
}

fn stringify(map: Map<String, Value>) -> RawRow {
    map.into_iter()
        .filter_map(|(k, v)| {
            let s = match v {
                Value::Null => return None,
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                // Kept distinguishable from a valid value so that validation reports it.
                _ => "\u{0}invalid".to_owned(),
            };
            Some((k, s))
        })
        .collect()
}

fn csv_rows(body: &[u8]) -> AppResult<Vec<RawRow>> {
    let text =
        std::str::from_utf8(body).map_err(|_| AppError::Validation("CSV must be UTF-8".into()))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let records = parse_csv(text).map_err(AppError::Validation)?;
    let mut it = records.into_iter();
    let header: Vec<String> = it
        .next()
        .ok_or_else(|| AppError::Validation("empty CSV".into()))?
        .into_iter()
        .map(|h| h.trim().to_lowercase())
        .collect();
    Ok(it
        .filter(|r| !(r.len() == 1 && r[0].trim().is_empty()))
        .map(|r| {
            let mut row: RawRow = header
                .iter()
                .cloned()
                .zip(r.iter().cloned())
                .filter(|(_, v)| !v.trim().is_empty())
                .collect();
            if r.len() > header.len() {
                row.insert("\u{0}extra".into(), String::new());
            }
            row
        })
        .collect())
}

/// RFC 4180: quoted fields with `""` escapes, commas and newlines inside quotes, CRLF or LF.
pub fn parse_csv(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut in_quotes = false;
    let mut line = 1usize;
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => in_quotes = true,
            ',' => record.push(std::mem::take(&mut field)),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
                line += 1;
            }
            _ => field.push(c),
        }
    }
    if in_quotes {
        return Err(format!(
            "unterminated quoted field starting before line {line}"
        ));
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    Ok(records)
}

fn rows_invalid(errors: Vec<RowError>) -> Response {
    let bad: HashSet<usize> = errors.iter().map(|e| e.row).collect();
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({"error": {
            "code": "validation_failed",
            "message": format!("{} row(s) are invalid; nothing was imported", bad.len()),
            "rows": errors,
        }})),
    )
        .into_response()
}

/// `POST /api/admin/members`: a JSON array, or CSV with a header row (`Content-Type: text/csv`).
/// All rows or none: any invalid row → 422 listing them. An existing phone updates that member.
async fn import(
    State(st): State<AppState>,
    session: AdminSession,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> AppResult<Response> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::PayloadTooLarge
        } else {
            AppError::BadRequest("could not read the body".into())
        }
    })?;
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let raw = if ctype.starts_with("text/csv") {
        csv_rows(&body)?
    } else if ctype.starts_with("application/json") {
        if body.len() > st.settings.admin_max_body_bytes {
            return Err(AppError::PayloadTooLarge);
        }
        json_rows(&body)?
    } else {
        return Err(AppError::rejected(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send application/json or text/csv",
        ));
    };
    if raw.is_empty() {
        return Err(AppError::Validation("no members in the import".into()));
    }

    let mut errors = Vec::new();
    let mut rows: Vec<(usize, ImportRow)> = Vec::new();
    let mut seen_phones: HashMap<String, usize> = HashMap::new();
    for (i, r) in raw.iter().enumerate() {
        let n = i + 1;
        if let Some(row) = validate_row(n, r, &mut errors) {
            if let Some(first) = seen_phones.insert(row.phone.clone(), n) {
                errors.push(RowError {
                    row: n,
                    field: "phone",
                    message: format!("same phone as row {first}"),
                });
                continue;
            }
            rows.push((n, row));
        }
    }

    let scope = session.org_scope(&st.db).await?;
    let may_create_units = session.role == Role::Admin;
    let mut units: HashMap<String, Option<i64>> = HashMap::new();
    for (n, row) in &rows {
        if !units.contains_key(&row.org_unit) {
            let found = org::find_by_name(st.db.pool(), &row.org_unit)
                .await?
                .map(|u| u.id);
            units.insert(row.org_unit.clone(), found);
        }
        match units[&row.org_unit] {
            Some(id) if !scope.contains(id) => errors.push(RowError {
                row: *n,
                field: "org_unit",
                message: "org_unit is outside your org units".into(),
            }),
            None if !may_create_units => errors.push(RowError {
                row: *n,
                field: "org_unit",
                message: "unknown org_unit (only administrators create them)".into(),
            }),
            _ => {}
        }
    }

    // Existing members by blind index (any configured key), in chunks.
    let mut existing: HashMap<String, (i64, i64)> = HashMap::new(); // phone -> (id, org_unit_id)
    let mut by_idx: HashMap<String, String> = HashMap::new();
    for (_, row) in &rows {
        for idx in st.cipher.phone_index_candidates(&row.phone) {
            by_idx.insert(idx, row.phone.clone());
        }
    }
    let all_idx: Vec<&String> = by_idx.keys().collect();
    for chunk in all_idx.chunks(500) {
        let ph: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT id, org_unit_id, phone_idx FROM members WHERE phone_idx IN ({})",
            ph.join(",")
        );
        let mut q = sqlx::query(&sql);
        for idx in chunk {
            q = q.bind(idx.as_str());
        }
        for r in q.fetch_all(st.db.pool()).await? {
            let idx: String = r.get(2);
            if let Some(phone) = by_idx.get(&idx) {
                existing.insert(phone.clone(), (r.get(0), r.get(1)));
            }
        }
    }
    for (n, row) in &rows {
        if let Some((_, unit)) = existing.get(&row.phone) {
            if !scope.contains(*unit) {
                errors.push(RowError {
                    row: *n,
                    field: "phone",
                    message: "this phone belongs to a member outside your org units".into(),
                });
            }
        }
    }
    if !errors.is_empty() {
        errors.sort_by_key(|e| e.row);
        return Ok(rows_invalid(errors));
    }

    let now = session.now;
    let cipher = &st.cipher;
    let mut tx = st.db.begin_write().await?;
    let mut units_created = Vec::new();
    for (name, id) in units.iter_mut() {
        if id.is_none() {
            let new_id = match org::find_by_name(&mut *tx, name).await? {
                Some(u) => u.id,
                None => org::create(&mut *tx, name, None, now).await?,
            };
            *id = Some(new_id);
            units_created.push(json!({"id": new_id, "name": name}));
            let entry = session
                .audit("org_unit.create", "org_unit", new_id)
                .details(json!({"after": {"name": name}, "via": "member.import"}));
            audit::record(&mut *tx, &entry).await?;
        }
    }
    let (mut created, mut updated) = (Vec::new(), Vec::new());
    for (_, row) in &rows {
        let unit = units[&row.org_unit].expect("resolved above");
        let phone_enc = cipher.encrypt(&row.phone);
        let phone_idx = cipher.phone_index(&row.phone);
        let id_enc = cipher.encrypt_opt(row.id_number.as_deref());
        let income_enc = cipher.encrypt_opt(row.income_fen.map(|v| v.to_string()).as_deref());
        match existing.get(&row.phone) {
            Some((id, _)) => {
                sqlx::query(
                    "UPDATE members SET name = $1, phone_enc = $2, phone_idx = $3, id_number_enc = COALESCE($4, id_number_enc), \
                     category = $5, monthly_income_enc = $6, org_unit_id = $7, party_status = $8, \
                     joined_at = COALESCE($9, joined_at), updated_at = $10 WHERE id = $11",
                )
                .bind(&row.name)
                .bind(&phone_enc)
                .bind(&phone_idx)
                .bind(&id_enc)
                .bind(row.category)
                .bind(&income_enc)
                .bind(unit)
                .bind(row.party_status)
                .bind(row.joined_at)
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                updated.push(*id);
            }
            None => {
                let id: i64 = sqlx::query(
                    "INSERT INTO members (name, phone_enc, phone_idx, id_number_enc, category, monthly_income_enc, \
                     org_unit_id, party_status, joined_at, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING id",
                )
                .bind(&row.name)
                .bind(&phone_enc)
                .bind(&phone_idx)
                .bind(&id_enc)
                .bind(row.category)
                .bind(&income_enc)
                .bind(unit)
                .bind(row.party_status)
                .bind(row.joined_at)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?
                .get(0);
                created.push(id);
            }
        }
    }
    // Personal data is not repeated in the audit log: ids and counts only.
    let entry = session.audit("member.import", "member", "").details(json!({
        "format": if ctype.starts_with("text/csv") { "csv" } else { "json" },
        "created": created,
        "updated": updated,
        "org_units_created": units_created,
    }));
    audit::record(&mut *tx, &entry).await?;
    tx.commit().await?;
    tracing::info!(
        created = created.len(),
        updated = updated.len(),
        "members imported"
    );
    Ok((
        StatusCode::OK,
        AppJson(json!({"created": created.len(), "updated": updated.len(), "total": rows.len(), "org_units_created": units_created})),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_parser_handles_quotes_crlf_and_embedded_commas() {
        let r = parse_csv("a,b,c\r\n\"x, y\",\"he said \"\"hi\"\"\",3\r\nlast,,\n").unwrap();
        assert_eq!(
            r,
            vec![
                vec!["a", "b", "c"],
                vec!["x, y", "he said \"hi\"", "3"],
                vec!["last", "", ""]
            ]
        );
        assert!(parse_csv("a,\"b").is_err());
    }

    #[test]
    fn row_validation_reports_fields_without_values() {
        let mut errors = Vec::new();
        let raw: RawRow = [
            ("name", ""),
            ("phone", "12345"),
            ("category", "boss"),
            ("org_unit", "一支部"),
            ("monthly_income_fen", "-5"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert!(validate_row(7, &raw, &mut errors).is_none());
        let fields: Vec<_> = errors.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["name", "phone", "category", "monthly_income_fen"]);
        assert!(errors
            .iter()
            .all(|e| e.row == 7 && !e.message.contains("12345")));
    }
}
