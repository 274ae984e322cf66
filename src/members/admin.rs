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
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    rules::{self, ImportError, ImportRow, RowError},
    store::{self, MemberRow, MemberWrite, Search, PAGE_SIZE},
};
use crate::http::{routes::AdminRoutes, AppJson, AppQuery};
use crate::platform::time::rfc3339;
use crate::{
    app::AppState,
    auth::{AdminSession, Permission, Role},
    platform::audit,
    platform::error::{AppError, AppResult},
    platform::org::{self, OrgScope},
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
    let unit_filter = match q.org_unit.as_deref().filter(|s| !s.is_empty()) {
        Some(name) => {
            let unit = org::find_by_name(st.db.pool(), name)
                .await?
                .ok_or_else(|| AppError::NotFound("org unit".into()))?;
            Some(OrgScope::Units(org::subtree_ids(&st.db, unit.id).await?))
        }
        None => None,
    };
    let search = match q.q.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => Search::None,
        Some(text) if pii::normalize_phone(text).is_some() => {
            Search::PhoneIndex(st.cipher.phone_index_candidates(text))
        }
        Some(text) => Search::Name(text),
    };
    let page = q.page.unwrap_or(1).max(1);
    let (rows, total) = store::list(&st.db, &scope, unit_filter.as_ref(), &search, page).await?;
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
    let m = store::by_id(&st.db, id)
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
        rules::csv_rows(&body)
    } else if ctype.starts_with("application/json") {
        if body.len() > st.settings.admin_max_body_bytes {
            return Err(AppError::PayloadTooLarge);
        }
        rules::json_rows(&body)
    } else {
        return Err(AppError::rejected(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send application/json or text/csv",
        ));
    }
    .map_err(|e| match e {
        ImportError::BadJson => AppError::rejected(
            StatusCode::BAD_REQUEST,
            "bad_json",
            "the body is not valid JSON",
        ),
        ImportError::Invalid(m) => AppError::Validation(m),
    })?;
    if raw.is_empty() {
        return Err(AppError::Validation("no members in the import".into()));
    }

    let mut errors = Vec::new();
    let mut rows: Vec<(usize, ImportRow)> = Vec::new();
    let mut seen_phones: HashMap<String, usize> = HashMap::new();
    for (i, r) in raw.iter().enumerate() {
        let n = i + 1;
        if let Some(row) = rules::validate_row(n, r, &mut errors) {
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
    for (idx, id, unit) in store::ids_by_phone_index(&st.db, &all_idx).await? {
        if let Some(phone) = by_idx.get(&idx) {
            existing.insert(phone.clone(), (id, unit));
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
        let write = MemberWrite {
            name: &row.name,
            phone_enc: &phone_enc,
            phone_idx: &phone_idx,
            id_number_enc: id_enc.as_deref(),
            category: row.category,
            monthly_income_enc: income_enc.as_deref(),
            org_unit_id: unit,
            party_status: row.party_status,
            joined_at: row.joined_at,
        };
        match existing.get(&row.phone) {
            Some((id, _)) => {
                store::update(&mut tx, *id, &write, now).await?;
                updated.push(*id);
            }
            None => created.push(store::insert(&mut tx, &write, now).await?),
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
