//! The members roster: import (JSON or CSV), list and show — masked unless revealed (audited) —
//! edit, remove (soft: status `left`), unbind a WeChat openid, and transfers of Party relations
//! (组织关系转接) with the printable introduction letter.
//!
//! Phone, ID number and income are encrypted at rest ([`crate::platform::pii::DataCipher`]); the phone also
//! has a blind index (`phone_idx`) for exact matches (re-import, mini-program binding).

use std::collections::HashSet;

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{Html, IntoResponse, Response},
    Json,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{
    rules::{self, ImportError, RowError},
    service::{
        self, CloseTransfer, IncomingRefused, IncomingTransfer, MemberPatch, TransferRequest,
        UnitRef,
    },
    store::{self, MemberRow, TransferRow, PAGE_SIZE},
};
use crate::http::{
    extract::{page_of, ListOut},
    routes::AdminRoutes,
    AppJson, AppQuery, Id,
};
use crate::platform::time::{local_date, rfc3339};
use crate::{
    app::AppState,
    auth::{AdminSession, Permission},
    platform::audit,
    platform::db::sealed,
    platform::error::{AppError, AppResult},
    platform::pii::{self, Column, DataCipher},
    push::service::{FollowerState, Reachable},
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
    .documented(import_doc)
    .get("/api/admin/members", Permission::ReadMembers, list)
    .get(
        "/api/admin/members/transfers",
        Permission::ReadMembers,
        list_transfers,
    )
    .post(
        "/api/admin/members/transfers/incoming",
        Permission::WriteMembers,
        incoming,
    )
    .get(
        "/api/admin/members/transfers/{id}",
        Permission::ReadMembers,
        show_transfer,
    )
    .post(
        "/api/admin/members/transfers/{id}/close",
        Permission::WriteMembers,
        close_transfer,
    )
    .get("/api/admin/members/{id}", Permission::ReadMembers, show)
    .patch("/api/admin/members/{id}", Permission::WriteMembers, update)
    .delete("/api/admin/members/{id}", Permission::WriteMembers, remove)
    .post(
        "/api/admin/members/{id}/unbind",
        Permission::WriteMembers,
        unbind,
    )
    .post(
        "/api/admin/members/{id}/transfers",
        Permission::WriteMembers,
        transfer,
    )
}

/// Which WeChat identities of the member are known.
#[derive(Debug, Clone, Copy, Serialize, schemars::JsonSchema)]
pub struct Bindings {
    /// Bound in the mini-program (`members.openid`).
    pub mp: bool,
    /// The official-account openid is known (`members.oa_openid`).
    pub oa: bool,
    /// The UnionID that links the two is known.
    pub unionid: bool,
}

/// The member as the admin API shows it: masked, or in clear when revealed (callers audit that).
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct MemberOut {
    pub id: i64,
    pub name: String,
    pub phone: String,
    pub id_number: Option<String>,
    pub category: String,
    /// Only when revealed.
    pub monthly_income_fen: Option<i64>,
    pub org_unit: UnitRef,
    pub party_status: String,
    pub joined_at: Option<String>,
    /// 转正.
    pub full_at: Option<String>,
    /// `active`, `transferred_out` or `left`.
    pub status: String,
    pub left_at: Option<String>,
    /// Bound in the mini-program (kept for older clients; see `bindings`).
    pub bound: bool,
    pub bindings: Bindings,
    pub masked: bool,
    pub created_at: String,
    pub updated_at: String,
    /// `GET /api/admin/members/{id}` only: which push channels reach the member now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reachable: Option<Reachable>,
}

/// Shown in place of a masked value that does not open where it is stored.
pub const UNREADABLE: &str = "（无法解密）";

impl MemberOut {
    pub fn of(m: &MemberRow, cipher: &DataCipher, reveal: bool) -> AppResult<MemberOut> {
        // Revealing a value that does not open where it is stored (copied from another row,
        // tampered) is an error; a masked view shows a marker instead, so one damaged row does
        // not take the whole roster list down. Either way the log names the place, not the value.
        let dec = |col: Column, v: &str| -> AppResult<String> {
            match cipher.open(col.at(m.id), v) {
                Ok(clear) => Ok(clear),
                Err(e) if reveal => Err(AppError::Internal(sealed::refused(col.at(m.id), e))),
                Err(e) => {
                    tracing::error!(error = %sealed::refused(col.at(m.id), e), "personal data does not open");
                    Ok(UNREADABLE.to_owned())
                }
            }
        };
        let phone = dec(store::PHONE, &m.phone_enc)?;
        let id_number = m
            .id_number_enc
            .as_deref()
            .map(|v| dec(store::ID_NUMBER, v))
            .transpose()?;
        let income = if reveal {
            m.monthly_income_enc
                .as_deref()
                .map(|v| dec(store::INCOME, v))
                .transpose()?
                .and_then(|s| s.parse::<i64>().ok())
        } else {
            None
        };
        let mask = |v: String, f: fn(&str) -> String| {
            if reveal || v == UNREADABLE {
                v
            } else {
                f(&v)
            }
        };
        Ok(MemberOut {
            id: m.id,
            name: m.name.clone(),
            phone: mask(phone, pii::mask_phone),
            id_number: id_number.map(|v| mask(v, pii::mask_id_number)),
            category: m.category.clone(),
            monthly_income_fen: income,
            org_unit: UnitRef {
                id: m.org_unit_id,
                name: m.org_unit.clone(),
            },
            party_status: m.party_status.clone(),
            joined_at: m.joined_at.map(rfc3339),
            full_at: m.full_at.map(rfc3339),
            status: m.status.clone(),
            left_at: m.left_at.map(rfc3339),
            bound: m.openid.is_some(),
            bindings: Bindings {
                mp: m.openid.is_some(),
                oa: m.oa_openid.is_some(),
                unionid: m.unionid.is_some(),
            },
            masked: !reveal,
            created_at: rfc3339(m.created_at),
            updated_at: rfc3339(m.updated_at),
            reachable: None,
        })
    }
}

/// One step of a transfer of Party relations.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct TransferOut {
    pub id: i64,
    pub member: UnitRef,
    /// `within`, `out` or `in`.
    pub direction: String,
    /// `completed` (within), `issued` → `received` | `returned` (out), `received` (in).
    pub status: String,
    pub from_org_unit: Option<UnitRef>,
    pub to_org_unit: Option<UnitRef>,
    /// Out: the destination organisation; in: where the member comes from.
    pub external_org: Option<String>,
    pub letter_no: Option<String>,
    pub dues_paid_until: Option<String>,
    pub validity_days: Option<i64>,
    pub expires_at: Option<String>,
    /// An issued letter past its validity: the member must be given a new one (return this).
    pub expired: bool,
    pub reason: Option<String>,
    pub outcome_reason: Option<String>,
    pub created_by: String,
    pub created_at: String,
    pub closed_by: Option<String>,
    pub closed_at: Option<String>,
    /// Out: the printable introduction letter (console session or bearer token).
    pub letter_url: Option<String>,
}

fn unit_ref(id: Option<i64>, name: &Option<String>) -> Option<UnitRef> {
    Some(UnitRef {
        id: id?,
        name: name.clone().unwrap_or_default(),
    })
}

impl TransferOut {
    pub fn of(t: &TransferRow, now: i64) -> TransferOut {
        TransferOut {
            id: t.id,
            member: UnitRef {
                id: t.member_id,
                name: t.member_name.clone(),
            },
            direction: t.direction.clone(),
            status: t.status.clone(),
            from_org_unit: unit_ref(t.from_org_unit_id, &t.from_org_unit),
            to_org_unit: unit_ref(t.to_org_unit_id, &t.to_org_unit),
            external_org: t.external_org.clone(),
            letter_no: t.letter_no.clone(),
            dues_paid_until: t.dues_paid_until.clone(),
            validity_days: t.validity_days,
            expires_at: t.expires_at.map(rfc3339),
            expired: t.status == "issued" && t.expires_at.is_some_and(|e| e < now),
            reason: t.reason.clone(),
            outcome_reason: t.outcome_reason.clone(),
            created_by: t.created_by.clone(),
            created_at: rfc3339(t.created_at),
            closed_by: t.closed_by.clone(),
            closed_at: t.closed_at.map(rfc3339),
            letter_url: (t.direction == "out")
                .then(|| format!("/admin/members/transfers/{}/letter", t.id)),
        }
    }
}

// ---------------------------------------------------------------- list / show

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct ListQuery {
    org_unit: Option<String>,
    q: Option<String>,
    #[schemars(range(min = 1, max = crate::http::MAX_PAGE))]
    page: Option<i64>,
    /// `active` (default), `transferred_out`, `left` or `all`.
    status: Option<String>,
    /// `full` or `probationary`; empty: both.
    party_status: Option<String>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
struct MembersPage {
    members: Vec<MemberOut>,
    page: i64,
    page_size: i64,
    total: i64,
}

async fn list(
    State(st): State<AppState>,
    session: AdminSession,
    AppQuery(q): AppQuery<ListQuery>,
) -> AppResult<AppJson<MembersPage>> {
    let query = service::RosterQuery {
        org_unit: q.org_unit.as_deref(),
        q: q.q.as_deref(),
        status: q.status.as_deref(),
        party_status: q.party_status.as_deref(),
        page: crate::http::extract::page_number(q.page)?,
    };
    let (rows, total) = service::roster_page(&st, &session, &query).await?;
    let members = rows
        .iter()
        .map(|m| MemberOut::of(m, &st.cipher, false))
        .collect::<AppResult<Vec<_>>>()?;
    Ok(AppJson(MembersPage {
        members,
        page: query.page,
        page_size: PAGE_SIZE,
        total,
    }))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct ShowQuery {
    #[serde(default)]
    reveal: bool,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
struct ShowOut {
    member: MemberOut,
    /// The member's transfers of Party relations, oldest first.
    transfers: Vec<TransferOut>,
}

/// `?reveal=true` returns phone, ID number and income in clear: needs `RevealPersonalData` within
/// the caller's org units, and is written to the audit log before the data leaves. The answer
/// says which push channels reach the member (`member.reachable`) and their transfers.
async fn show(
    State(st): State<AppState>,
    session: AdminSession,
    Id(id): Id,
    AppQuery(q): AppQuery<ShowQuery>,
) -> AppResult<AppJson<ShowOut>> {
    let m = service::read(&st, &session, id, q.reveal).await?;
    let mut member = MemberOut::of(&m, &st.cipher, q.reveal)?;
    member.reachable = Some(if m.is_active() {
        let follower = match m.oa_openid.as_deref() {
            Some(oa) => crate::official_account::store::get(&st.db, oa).await?,
            None => None,
        };
        let follower = follower.as_ref().map(|f| FollowerState {
            oa_openid: &f.openid,
            subscribed: f.status == "subscribed",
            last_interaction_at: f.last_interaction_at,
        });
        crate::push::service::reachable(&st, follower, m.openid.as_deref()).await?
    } else {
        Reachable::default()
    });
    let transfers = store::transfers_of(&st.db, m.id)
        .await?
        .iter()
        .map(|t| TransferOut::of(t, session.now))
        .collect();
    Ok(AppJson(ShowOut { member, transfers }))
}

// ---------------------------------------------------------------- edit / remove / unbind

#[derive(Debug, Serialize, schemars::JsonSchema)]
struct MemberEnvelope {
    member: MemberOut,
}

fn envelope(st: &AppState, m: &MemberRow) -> AppResult<AppJson<MemberEnvelope>> {
    Ok(AppJson(MemberEnvelope {
        member: MemberOut::of(m, &st.cipher, false)?,
    }))
}

/// `PATCH /api/admin/members/{id}`: name, category, income, Party status and its dates.
async fn update(
    State(st): State<AppState>,
    session: AdminSession,
    Id(id): Id,
    AppJson(body): AppJson<MemberPatch>,
) -> AppResult<AppJson<MemberEnvelope>> {
    let m = service::edit(&st, &session, id, &body).await?;
    envelope(&st, &m)
}

/// `DELETE /api/admin/members/{id}`: off the roster (status `left`), history kept.
async fn remove(
    State(st): State<AppState>,
    session: AdminSession,
    Id(id): Id,
) -> AppResult<AppJson<MemberEnvelope>> {
    let m = service::remove(&st, &session, id).await?;
    envelope(&st, &m)
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct UnbindIn {
    app: service::UnbindApp,
}

/// `POST /api/admin/members/{id}/unbind {"app":"mp"|"oa"}`.
async fn unbind(
    State(st): State<AppState>,
    session: AdminSession,
    Id(id): Id,
    AppJson(body): AppJson<UnbindIn>,
) -> AppResult<AppJson<MemberEnvelope>> {
    let m = service::unbind(&st, &session, id, body.app).await?;
    envelope(&st, &m)
}

// ---------------------------------------------------------------- transfers

#[derive(Debug, Serialize, schemars::JsonSchema)]
struct TransferEnvelope {
    transfer: TransferOut,
    member: MemberOut,
}

fn transfer_envelope(
    st: &AppState,
    t: &TransferRow,
    m: &MemberRow,
) -> AppResult<AppJson<TransferEnvelope>> {
    Ok(AppJson(TransferEnvelope {
        transfer: TransferOut::of(t, st.clock.unix_ms()),
        member: MemberOut::of(m, &st.cipher, false)?,
    }))
}

/// `POST /api/admin/members/{id}/transfers`: `{"kind":"within","to_org_unit_id"}` or
/// `{"kind":"out","destination","dues_paid_until":"YYYY-MM","validity_days"}`.
async fn transfer(
    State(st): State<AppState>,
    session: AdminSession,
    Id(id): Id,
    AppJson(body): AppJson<TransferRequest>,
) -> AppResult<(StatusCode, AppJson<TransferEnvelope>)> {
    let (t, m) = service::transfer(&st, &session, id, &body).await?;
    Ok((StatusCode::CREATED, transfer_envelope(&st, &t, &m)?))
}

/// `POST /api/admin/members/transfers/{id}/close {"outcome":"received"|"returned","reason"}`.
async fn close_transfer(
    State(st): State<AppState>,
    session: AdminSession,
    Id(id): Id,
    AppJson(body): AppJson<CloseTransfer>,
) -> AppResult<AppJson<TransferEnvelope>> {
    let (t, m) = service::close_transfer(&st, &session, id, &body).await?;
    transfer_envelope(&st, &t, &m)
}

/// `POST /api/admin/members/transfers/incoming`: register a member arriving with a letter.
async fn incoming(
    State(st): State<AppState>,
    session: AdminSession,
    AppJson(body): AppJson<IncomingTransfer>,
) -> AppResult<Response> {
    match service::register_incoming(&st, &session, &body).await? {
        Ok((t, m)) => Ok((StatusCode::CREATED, transfer_envelope(&st, &t, &m)?).into_response()),
        Err(IncomingRefused::Invalid(errors)) => Ok(rows_invalid(errors)),
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct TransfersQuery {
    #[schemars(extend("enum" = ["completed", "issued", "received", "returned"]))]
    status: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "crate::http::doc::page")]
    page: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "crate::http::doc::page_size_100")]
    page_size: Option<String>,
}

/// `GET /api/admin/members/transfers?status=&page=`: transfers touching the caller's units.
async fn list_transfers(
    State(st): State<AppState>,
    session: AdminSession,
    AppQuery(q): AppQuery<TransfersQuery>,
) -> AppResult<AppJson<ListOut<TransferOut>>> {
    let status = match q.status.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(s @ ("completed" | "issued" | "received" | "returned")) => Some(s),
        Some(_) => {
            return Err(AppError::Validation(
                "status must be completed, issued, received or returned".into(),
            ))
        }
    };
    let page = page_of(&q.page, &q.page_size, 100)?;
    let scope = session.org_scope(&st.db).await?;
    let (rows, total) = store::list_transfers(
        &st.db,
        &scope,
        status,
        page.size,
        (page.number - 1) * page.size,
    )
    .await?;
    Ok(AppJson(ListOut {
        items: rows
            .iter()
            .map(|t| TransferOut::of(t, session.now))
            .collect(),
        page: page.number,
        page_size: page.size,
        total,
    }))
}

async fn show_transfer(
    State(st): State<AppState>,
    session: AdminSession,
    Id(id): Id,
) -> AppResult<AppJson<TransferOut>> {
    let scope = session.org_scope(&st.db).await?;
    let t = service::transfer_in_scope(&st, &scope, id).await?;
    Ok(AppJson(TransferOut::of(&t, session.now)))
}

/// `GET /admin/members/transfers/{id}/letter`: the introduction letter (介绍信) of an outgoing
/// transfer as a printable page. It carries the ID number in clear, so it needs
/// `RevealPersonalData` and is audited.
pub async fn letter(
    State(st): State<AppState>,
    session: AdminSession,
    Id(id): Id,
) -> AppResult<Response> {
    session.require(Permission::ReadMembers)?;
    session.require(Permission::RevealPersonalData)?;
    let scope = session.org_scope(&st.db).await?;
    let t = service::transfer_in_scope(&st, &scope, id).await?;
    if t.direction != "out" {
        return Err(AppError::NotFound("introduction letter".into()));
    }
    let m = store::by_id(&st.db, t.member_id)
        .await?
        .ok_or_else(|| AppError::NotFound("member".into()))?;
    let id_number = m
        .id_number_enc
        .as_deref()
        .map(|v| st.cipher.open(store::ID_NUMBER.at(m.id), v))
        .transpose()
        .map_err(|e| AppError::Internal(sealed::refused(store::ID_NUMBER.at(m.id), e)))?;
    let html = super::letter::render(
        &st.settings.content_dir,
        &super::letter::Letter {
            letter_no: t.letter_no.clone().unwrap_or_default(),
            name: m.name.clone(),
            party_status: if m.party_status == "probationary" {
                "预备党员"
            } else {
                "正式党员"
            },
            id_number: id_number.unwrap_or_default(),
            from_org: t.from_org_unit.clone().unwrap_or_default(),
            destination: t.external_org.clone().unwrap_or_default(),
            reason: t.reason.clone().unwrap_or_default(),
            dues_paid_until: t
                .dues_paid_until
                .as_deref()
                .and_then(rules::parse_month)
                .map(|(y, mo)| format!("{y}年{mo}月"))
                .unwrap_or_default(),
            validity_days: t.validity_days.unwrap_or_default(),
            issued_on: local_date(t.created_at),
            expires_on: t.expires_at.map(local_date).unwrap_or_default(),
            status: t.status.clone(),
        },
    )?;
    let entry = session
        .audit("member.transfer.letter", "member", m.id)
        .details(json!({"transfer_id": t.id, "fields": ["id_number"]}));
    audit::record(st.db.pool(), &entry).await?;
    let mut resp = Html(html).into_response();
    let h = resp.headers_mut();
    for (k, v) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    Ok(resp)
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

/// The import's body: the handler reads JSON or CSV itself (`rules::validate_row`), so its
/// rows are described here, with the rules `validate_row` applies.
fn import_doc(op: &mut crate::http::doc::OpDoc, _gen: &mut schemars::SchemaGenerator) {
    // Cells are read as CSV cells are: a number is taken as its digits.
    let text = |max: i64| {
        serde_json::json!({"anyOf": [
        {"type": "string", "minLength": 1, "maxLength": max, "pattern": "\\S"}, {"type": "number"}]})
    };
    let row = serde_json::json!({"type": "object", "additionalProperties": false,
        "required": ["name", "phone", "category", "org_unit"], "properties": {
        "name": text(64),
        "phone": {"anyOf": [{"type": "string", "pattern": "^1[3-9][0-9]{9}$"},
            {"type": "integer", "minimum": 13_000_000_000_i64, "maximum": 19_999_999_999_i64}]},
        "category": {"type": "string", "enum": rules::CATEGORIES},
        "monthly_income_fen": {"anyOf": [
            {"type": "integer", "format": "int64", "minimum": 0, "maximum": 10_000_000_000_i64},
            {"type": "string", "pattern": "^[0-9]{1,11}$"}], "nullable": true},
        "org_unit": text(100),
        "id_number": {"type": "string", "minLength": 18, "maxLength": 18, "nullable": true},
        "party_status": {"type": "string", "enum": ["full", "probationary", null], "nullable": true},
        "joined_at": {"type": "string", "format": "date", "nullable": true}}});
    op.body = Some(
        serde_json::json!({"required": true, "description": "All rows or none; an existing phone updates that member. monthly_income_fen is required for employed and retired members; id_number (an 18-character resident ID with its check digit) may be given too.", "content": {
        "application/json": {"schema": {"type": "array", "items": row}},
        "text/csv": {"schema": {"type": "string"}}}}),
    );
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
    let format = if ctype.starts_with("text/csv") {
        service::ImportFormat::Csv
    } else {
        service::ImportFormat::Json
    };
    match service::import(&st, &session, &raw, format).await? {
        Ok(done) => Ok((StatusCode::OK, AppJson(done)).into_response()),
        Err(errors) => Ok(rows_invalid(errors)),
    }
}
