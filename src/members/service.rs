//! Members use cases: the two WeChat identities of a member (mini-program login and binding, the
//! follower found through the UnionID whichever side arrives first), roster edits, unbinding,
//! transfers of Party relations (组织关系转接) and the org-unit tree. Every write is one
//! transaction with its audit entry.
//!
//! Identity: `members.openid` is the mini-program openid (set by binding), `members.oa_openid` the
//! official-account openid, `members.unionid` what links them. WeChat gives the UnionID at
//! code2session and in `user/info` only when both apps are on one open-platform account; without
//! it a member is reachable in the mini-program only and the account's channels skip them with
//! `no_account_openid`.

use axum::http::StatusCode;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{
    rules::{self, ImportRow, RowError},
    store::{self, App, MemberEdit, MemberRow, MemberWrite, NewTransfer, TransferRow},
};
use crate::{
    app::AppState,
    auth::AdminSession,
    platform::{
        audit::{self, AuditEntry},
        db::Tx,
        error::{AppError, AppResult},
        org::{self, OrgKind, OrgScope, OrgUnit},
        pii::{self, DataCipher},
    },
};

/// The actor of links WeChat's identifiers made (no person decided them).
const WECHAT_ACTOR: &str = "wechat";

fn conflict(code: &'static str, message: impl Into<String>) -> AppError {
    AppError::rejected(StatusCode::CONFLICT, code, message)
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

fn is_fk_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_foreign_key_violation())
}

// ---------------------------------------------------------------- identity

/// Link the member holding `unionid` to the follower with that UnionID (if we know one), inside
/// `tx`. The account openid linked, if any.
async fn link_follower_of(tx: &mut Tx, unionid: &str, now: i64) -> AppResult<Option<String>> {
    let Some(oa) = crate::official_account::store::openid_by_unionid(tx, unionid).await? else {
        return Ok(None);
    };
    Ok(store::link_oa_openid(tx, unionid, &oa, now)
        .await?
        .map(|_| oa))
}

/// A mini-program login: remember its UnionID; a bound member who had none gets it, and with it
/// the follower it names. Returns the bound member (active), if any, as it is now.
pub async fn mp_login(
    st: &AppState,
    openid: &str,
    unionid: Option<&str>,
) -> AppResult<Option<MemberRow>> {
    let now = st.clock.unix_ms();
    store::record_mp_login(&st.db, openid, unionid, now).await?;
    let member = store::bound_to(&st.db, openid).await?;
    let (Some(m), Some(u)) = (&member, unionid) else {
        return Ok(member);
    };
    if m.unionid.is_some() {
        return Ok(member);
    }
    let mut tx = st.db.begin_write().await?;
    store::lock_identity(&mut tx, st.db.backend()).await?;
    if !store::set_unionid(&mut tx, m.id, u, now).await? {
        // Another member holds this UnionID (data from before an unbind): leave both alone.
        tracing::warn!(
            member_id = m.id,
            "mini-program login: UnionID held by another member"
        );
        return Ok(member);
    }
    let linked = link_follower_of(&mut tx, u, now).await?;
    let entry = AuditEntry::system(
        now,
        WECHAT_ACTOR,
        "member.link",
        "member",
        Some(m.id.to_string()),
    )
    .details(json!({"via": "code2session", "unionid": true, "oa_openid": linked}));
    audit::record(&mut *tx, &entry).await?;
    tx.commit().await?;
    Ok(store::bound_to(&st.db, openid).await?)
}

/// Why a bind did not happen.
pub enum BindRefused {
    /// The member was bound (to another openid) in between.
    MemberTaken,
    /// This openid is bound to another member.
    OpenidTaken,
}

/// Bind the mini-program user `openid` to member `m` (checked by the caller: found by a
/// WeChat-verified phone and the name, unbound, active). The UnionID of the login links the
/// member's follower too. Audited as `member.bind`.
pub async fn bind(
    st: &AppState,
    m: &MemberRow,
    openid: &str,
    ip: Option<String>,
) -> AppResult<Result<MemberRow, BindRefused>> {
    let now = st.clock.unix_ms();
    let mut tx = st.db.begin_write().await?;
    store::lock_identity(&mut tx, st.db.backend()).await?;
    // `openid IS NULL` and the unique index settle a race between two binds.
    match store::bind_openid(&mut tx, m.id, openid, now).await {
        Ok(true) => {}
        Ok(false) => return Ok(Err(BindRefused::MemberTaken)),
        Err(e) if is_unique_violation(&e) => return Ok(Err(BindRefused::OpenidTaken)),
        Err(e) => return Err(e.into()),
    }
    let unionid = store::mp_unionid(&mut tx, openid).await?;
    let mut linked = None;
    let mut unionid_set = false;
    if let Some(u) = unionid.as_deref() {
        unionid_set =
            m.unionid.as_deref() == Some(u) || store::set_unionid(&mut tx, m.id, u, now).await?;
        if unionid_set {
            linked = link_follower_of(&mut tx, u, now).await?;
        }
    }
    let mut entry = AuditEntry::system(
        now,
        "mini-program",
        "member.bind",
        "member",
        Some(m.id.to_string()),
    )
    .details(json!({
        "openid": openid,
        "verified_by": "getuserphonenumber",
        "unionid": unionid_set,
        "oa_openid": linked,
    }));
    entry.ip = ip;
    audit::record(&mut *tx, &entry).await?;
    tx.commit().await?;
    let m = store::by_id(&st.db, m.id)
        .await?
        .ok_or_else(|| AppError::NotFound("member".into()))?;
    Ok(Ok(m))
}

/// The link pass: members who have a UnionID (from their mini-program login) but no account
/// openid yet get the follower with that UnionID — the follower side may have arrived after the
/// bind (a follow, `user/info`, the follower sync). Idempotent; every replica may run it.
/// The ids of the members linked.
pub async fn link_followers(st: &AppState) -> AppResult<Vec<i64>> {
    let now = st.clock.unix_ms();
    let mut tx = st.db.begin_write().await?;
    store::lock_identity(&mut tx, st.db.backend()).await?;
    store::adopt_unionids_from_mp_logins(&mut tx, now).await?;
    let unionids = store::unionids_without_oa_openid(&mut tx, 2000).await?;
    let pairs = crate::official_account::store::openids_by_unionids(&mut tx, &unionids).await?;
    let pairs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(u, o)| (u.as_str(), o.as_str()))
        .collect();
    let linked = store::link_oa_openids(&mut tx, &pairs, now).await?;
    if !linked.is_empty() {
        let entry = AuditEntry::system(now, WECHAT_ACTOR, "member.link", "member", None)
            .details(json!({"via": "unionid", "member_ids": linked}));
        audit::record(&mut *tx, &entry).await?;
    }
    tx.commit().await?;
    Ok(linked)
}

// ---------------------------------------------------------------- roster edits

/// A member in the caller's scope, or 404 (out-of-scope members are "not found": their existence
/// is itself personal data).
pub async fn member_in_scope(st: &AppState, scope: &OrgScope, id: i64) -> AppResult<MemberRow> {
    match store::by_id(&st.db, id).await? {
        Some(m) if scope.contains(m.org_unit_id) => Ok(m),
        _ => Err(AppError::NotFound("member".into())),
    }
}

/// What the roster list shows: the filters of `GET /api/admin/members` and the console's list.
#[derive(Debug, Default, Clone, Copy)]
pub struct RosterQuery<'a> {
    /// An org unit by name: that unit and everything under it.
    pub org_unit: Option<&'a str>,
    /// A phone (exact, by blind index) or part of a name.
    pub q: Option<&'a str>,
    /// `active` (default), `transferred_out`, `left` or `all`.
    pub status: Option<&'a str>,
    /// `full` or `probationary`; none: both.
    pub party_status: Option<&'a str>,
    pub page: i64,
}

fn blank(v: Option<&str>) -> Option<&str> {
    v.map(str::trim).filter(|s| !s.is_empty())
}

/// One page of the roster in the caller's scope, with the total. Even masked, a roster read is a
/// read of personal data: who looked at whom is audited (`member.list`; the search text is not
/// repeated: a phone number there would be personal data itself).
pub async fn roster_page(
    st: &AppState,
    session: &AdminSession,
    q: &RosterQuery<'_>,
) -> AppResult<(Vec<MemberRow>, i64)> {
    let status = match blank(q.status) {
        None => Some(store::STATUS_ACTIVE),
        Some("all") => None,
        Some(s) => Some(
            rules::MEMBER_STATUSES
                .iter()
                .copied()
                .find(|x| *x == s)
                .ok_or_else(|| {
                    AppError::Validation(
                        "status must be active, transferred_out, left or all".into(),
                    )
                })?,
        ),
    };
    let party_status = match blank(q.party_status) {
        None => None,
        Some(p) => Some(
            rules::PARTY_STATUSES
                .iter()
                .copied()
                .find(|x| *x == p)
                .ok_or_else(|| {
                    AppError::Validation("party_status must be full or probationary".into())
                })?,
        ),
    };
    let scope = session.org_scope(&st.db).await?;
    let unit_filter = match blank(q.org_unit) {
        Some(name) => {
            let unit = org::find_by_name(st.db.pool(), name)
                .await?
                .ok_or_else(|| AppError::NotFound("org unit".into()))?;
            Some(OrgScope::Units(org::subtree_ids(&st.db, unit.id).await?))
        }
        None => None,
    };
    let text = blank(q.q);
    let search = match text {
        None => store::Search::None,
        Some(t) if pii::normalize_phone(t).is_some() => {
            store::Search::PhoneIndex(st.cipher.phone_index_candidates(t))
        }
        Some(t) => store::Search::Name(t),
    };
    let filter = store::ListFilter {
        scope: &scope,
        units: unit_filter.as_ref(),
        search: &search,
        status,
        party_status,
    };
    let (rows, total) = store::list(&st.db, &filter, q.page).await?;
    let searched_by = text.map(|t| {
        if pii::normalize_phone(t).is_some() {
            "phone"
        } else {
            "name"
        }
    });
    let entry = session.audit("member.list", "member", "").details(json!({
        "org_unit": blank(q.org_unit), "search": searched_by, "page": q.page, "status": status,
        "party_status": party_status,
        "member_ids": rows.iter().map(|m| m.id).collect::<Vec<_>>(),
    }));
    audit::record(st.db.pool(), &entry).await?;
    Ok((rows, total))
}

/// Read member `id` (in the caller's scope, else 404) for showing it. `reveal` (phone, ID number
/// and income in clear) needs `RevealPersonalData` and is written to the audit log
/// (`member.reveal`, the fields named) before the data leaves; a masked read is `member.read`.
pub async fn read(
    st: &AppState,
    session: &AdminSession,
    id: i64,
    reveal: bool,
) -> AppResult<MemberRow> {
    let scope = session.org_scope(&st.db).await?;
    let m = member_in_scope(st, &scope, id).await?;
    let entry = if reveal {
        session.require(crate::auth::Permission::RevealPersonalData)?;
        let fields: Vec<&str> = std::iter::once("phone")
            .chain(m.id_number_enc.as_ref().map(|_| "id_number"))
            .chain(m.monthly_income_enc.as_ref().map(|_| "monthly_income_fen"))
            .collect();
        session
            .audit("member.reveal", "member", m.id)
            .details(json!({"fields": fields}))
    } else {
        session.audit("member.read", "member", m.id)
    };
    audit::record(st.db.pool(), &entry).await?;
    Ok(m)
}

fn double_option<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// `PATCH /api/admin/members/{id}`: the fields given change; `null` clears a nullable one. The
/// phone is changed by a roster import (it is the member's key); the org unit by a transfer.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberPatch {
    pub name: Option<String>,
    pub category: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    pub monthly_income_fen: Option<Option<i64>>,
    pub party_status: Option<String>,
    /// Date of admission (YYYY-MM-DD or RFC 3339).
    #[serde(default, deserialize_with = "double_option")]
    pub joined_at: Option<Option<String>>,
    /// Date of 转正 (full membership).
    #[serde(default, deserialize_with = "double_option")]
    pub full_at: Option<Option<String>>,
}

fn date_field(
    v: &Option<Option<String>>,
    current: Option<i64>,
    field: &str,
) -> AppResult<Option<i64>> {
    match v {
        None => Ok(current),
        Some(None) => Ok(None),
        Some(Some(s)) => rules::parse_date(s.trim()).map(Some).ok_or_else(|| {
            AppError::Validation(format!(
                "{field} must be a date (YYYY-MM-DD) or RFC 3339 time"
            ))
        }),
    }
}

/// Edit member `id`; 422 naming the rule when a value is wrong (nothing written).
pub async fn edit(
    st: &AppState,
    session: &AdminSession,
    id: i64,
    patch: &MemberPatch,
) -> AppResult<MemberRow> {
    let scope = session.org_scope(&st.db).await?;
    let m = member_in_scope(st, &scope, id).await?;
    let mut changed = Vec::new();
    let name = match &patch.name {
        None => m.name.clone(),
        Some(n) => {
            changed.push("name");
            rules::member_name(n)
                .ok_or_else(|| AppError::Validation("name: 1 to 64 characters".into()))?
                .to_owned()
        }
    };
    let category = match &patch.category {
        None => m.category.clone(),
        Some(c) => {
            changed.push("category");
            rules::CATEGORIES
                .iter()
                .find(|x| **x == c.trim())
                .ok_or_else(|| {
                    AppError::Validation(
                        "category must be one of employed, retired, student, unemployed, other"
                            .into(),
                    )
                })?
                .to_string()
        }
    };
    let income_enc = match patch.monthly_income_fen {
        None => m.monthly_income_enc.clone(),
        Some(None) => {
            changed.push("monthly_income_fen");
            None
        }
        Some(Some(fen)) => {
            changed.push("monthly_income_fen");
            if !rules::income_ok(fen) {
                return Err(AppError::Validation(
                    "monthly_income_fen must be a whole number of fen, 0 or more".into(),
                ));
            }
            Some(st.cipher.seal(store::INCOME.at(m.id), &fen.to_string()))
        }
    };
    if rules::needs_income(&category) && income_enc.is_none() {
        return Err(AppError::Validation(
            "monthly_income_fen is required for employed and retired members".into(),
        ));
    }
    let party_status = match &patch.party_status {
        None => m.party_status.clone(),
        Some(p) => {
            changed.push("party_status");
            rules::PARTY_STATUSES
                .iter()
                .find(|x| **x == p.trim())
                .ok_or_else(|| {
                    AppError::Validation("party_status must be full or probationary".into())
                })?
                .to_string()
        }
    };
    if patch.joined_at.is_some() {
        changed.push("joined_at");
    }
    let joined_at = date_field(&patch.joined_at, m.joined_at, "joined_at")?;
    // A member set back to probationary keeps no stale 转正 date.
    let full_at = match (&patch.full_at, party_status.as_str()) {
        (None, "probationary") => None,
        _ => date_field(&patch.full_at, m.full_at, "full_at")?,
    };
    if patch.full_at.is_some() || full_at != m.full_at {
        changed.push("full_at");
    }
    if let Some(rule) = rules::party_dates_error(&party_status, joined_at, full_at, session.now) {
        return Err(AppError::Validation(rule.into()));
    }
    if changed.is_empty() {
        return Err(AppError::Validation("nothing to change".into()));
    }
    let mut tx = st.db.begin_write().await?;
    let edit = MemberEdit {
        name: &name,
        category: &category,
        monthly_income_enc: income_enc.as_deref(),
        party_status: &party_status,
        joined_at,
        full_at,
    };
    if !store::edit(&mut tx, m.id, &edit, m.updated_at, session.now).await? {
        return Err(conflict(
            "edit_conflict",
            "the member was changed in the meantime; reload and try again",
        ));
    }
    // Field names only: the values are personal data.
    let entry = session
        .audit("member.update", "member", m.id)
        .details(json!({"changed": changed}));
    audit::record(&mut *tx, &entry).await?;
    tx.commit().await?;
    store::by_id(&st.db, m.id)
        .await?
        .ok_or_else(|| AppError::NotFound("member".into()))
}

/// Remove member `id` from the roster: status `left`, WeChat bindings dropped, history kept.
pub async fn remove(st: &AppState, session: &AdminSession, id: i64) -> AppResult<MemberRow> {
    let scope = session.org_scope(&st.db).await?;
    let m = member_in_scope(st, &scope, id).await?;
    if m.status == store::STATUS_LEFT {
        return Err(conflict(
            "already_left",
            "this member has already left the roster",
        ));
    }
    let mut tx = st.db.begin_write().await?;
    if !store::mark_left(&mut tx, m.id, session.now).await? {
        return Err(conflict(
            "already_left",
            "this member has already left the roster",
        ));
    }
    let unbound: Vec<&str> = [
        m.openid.as_ref().map(|_| "mp"),
        m.oa_openid.as_ref().map(|_| "oa"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let entry = session
        .audit("member.delete", "member", m.id)
        .details(json!({
            "before": {"status": m.status, "org_unit_id": m.org_unit_id},
            "after": {"status": store::STATUS_LEFT},
            "unbound": unbound,
        }));
    audit::record(&mut *tx, &entry).await?;
    tx.commit().await?;
    store::by_id(&st.db, m.id)
        .await?
        .ok_or_else(|| AppError::NotFound("member".into()))
}

/// Which openid an unbind removes, as the API names it.
#[derive(Debug, Clone, Copy, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum UnbindApp {
    Mp,
    Oa,
}

/// Unbind member `id` from the mini-program or the official account (a wrong or changed WeChat
/// account). 409 `not_bound` when there is nothing to unbind.
pub async fn unbind(
    st: &AppState,
    session: &AdminSession,
    id: i64,
    app: UnbindApp,
) -> AppResult<MemberRow> {
    let scope = session.org_scope(&st.db).await?;
    let m = member_in_scope(st, &scope, id).await?;
    let (app, current, name) = match app {
        UnbindApp::Mp => (App::Mp, m.openid.clone(), "mp"),
        UnbindApp::Oa => (App::Oa, m.oa_openid.clone(), "oa"),
    };
    let Some(current) = current else {
        return Err(conflict(
            "not_bound",
            format!("this member has no {name} openid to unbind"),
        ));
    };
    let mut tx = st.db.begin_write().await?;
    if !store::unbind(&mut tx, m.id, app, &current, session.now).await? {
        return Err(conflict(
            "edit_conflict",
            "the binding changed in the meantime; reload and try again",
        ));
    }
    let entry = session
        .audit("member.unbind", "member", m.id)
        .details(json!({
            "app": name,
            "openid": current,
            "unionid_cleared": m.unionid.is_some(),
        }));
    audit::record(&mut *tx, &entry).await?;
    tx.commit().await?;
    tracing::info!(member_id = m.id, app = name, "member unbound");
    store::by_id(&st.db, m.id)
        .await?
        .ok_or_else(|| AppError::NotFound("member".into()))
}

// ---------------------------------------------------------------- transfers

/// `POST /api/admin/members/{id}/transfers`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TransferRequest {
    /// Between two of our org units (both in the caller's scope): done at once.
    Within {
        to_org_unit_id: i64,
        #[serde(default)]
        reason: Option<String>,
    },
    /// To another organisation: an introduction letter is issued; the member leaves the active
    /// roster until the letter is received (done) or returned (back on the roster).
    Out {
        destination: String,
        /// YYYY-MM: Party dues paid up to this month.
        dues_paid_until: String,
        #[serde(default)]
        validity_days: Option<i64>,
        #[serde(default)]
        reason: Option<String>,
    },
}

fn reason_of(r: &Option<String>) -> AppResult<Option<&str>> {
    rules::short_text(r.as_deref(), 200)
        .map_err(|_| AppError::Validation("reason: at most 200 characters".into()))
}

fn dues_month(s: &str) -> AppResult<&str> {
    rules::parse_month(s)
        .map(|_| s.trim())
        .ok_or_else(|| AppError::Validation("dues_paid_until must be a month, YYYY-MM".into()))
}

/// An org unit the caller may put members in: 422 when unknown, 403 outside their scope.
async fn target_unit(st: &AppState, scope: &OrgScope, id: i64) -> AppResult<OrgUnit> {
    let unit = org::get(&st.db, id)
        .await?
        .ok_or_else(|| AppError::Validation("unknown org unit".into()))?;
    scope.require(unit.id)?;
    Ok(unit)
}

/// Transfer member `id` within the organisation or out of it.
pub async fn transfer(
    st: &AppState,
    session: &AdminSession,
    id: i64,
    req: &TransferRequest,
) -> AppResult<(TransferRow, MemberRow)> {
    let scope = session.org_scope(&st.db).await?;
    let m = member_in_scope(st, &scope, id).await?;
    if !m.is_active() {
        return Err(conflict(
            "member_not_active",
            "only members on the active roster can be transferred",
        ));
    }
    let now = session.now;
    let mut tx = st.db.begin_write().await?;
    let transfer_id = match req {
        TransferRequest::Within {
            to_org_unit_id,
            reason,
        } => {
            let reason = reason_of(reason)?;
            let to = target_unit(st, &scope, *to_org_unit_id).await?;
            if to.id == m.org_unit_id {
                return Err(AppError::Validation(
                    "the member is already in this org unit".into(),
                ));
            }
            if !store::move_to_unit(&mut tx, m.id, m.org_unit_id, to.id, now).await? {
                return Err(conflict(
                    "edit_conflict",
                    "the member was changed in the meantime; reload and try again",
                ));
            }
            let tid = store::insert_transfer(
                &mut tx,
                &NewTransfer {
                    member_id: m.id,
                    direction: "within",
                    status: "completed",
                    from_org_unit_id: Some(m.org_unit_id),
                    to_org_unit_id: Some(to.id),
                    external_org: None,
                    letter_no: None,
                    dues_paid_until: None,
                    validity_days: None,
                    expires_at: None,
                    reason,
                    created_by: &session.username,
                },
                now,
            )
            .await?;
            let entry = session
                .audit("member.transfer.within", "member", m.id)
                .details(json!({
                    "transfer_id": tid,
                    "before": {"org_unit_id": m.org_unit_id},
                    "after": {"org_unit_id": to.id},
                    "reason": reason,
                }));
            audit::record(&mut *tx, &entry).await?;
            tid
        }
        TransferRequest::Out {
            destination,
            dues_paid_until,
            validity_days,
            reason,
        } => {
            let destination = rules::organisation_name(destination).ok_or_else(|| {
                AppError::Validation(
                    "destination: the receiving organisation, 1 to 100 characters".into(),
                )
            })?;
            let dues = dues_month(dues_paid_until)?;
            let (days, expires_at) =
                rules::letter_validity(*validity_days, now).map_err(AppError::Validation)?;
            let reason = reason_of(reason)?;
            if !store::change_status(
                &mut tx,
                m.id,
                store::STATUS_ACTIVE,
                store::STATUS_TRANSFERRED_OUT,
                now,
            )
            .await?
            {
                return Err(conflict(
                    "edit_conflict",
                    "the member was changed in the meantime; reload and try again",
                ));
            }
            let tid = match store::insert_transfer(
                &mut tx,
                &NewTransfer {
                    member_id: m.id,
                    direction: "out",
                    status: "issued",
                    from_org_unit_id: Some(m.org_unit_id),
                    to_org_unit_id: None,
                    external_org: Some(destination),
                    letter_no: None,
                    dues_paid_until: Some(dues),
                    validity_days: Some(days),
                    expires_at: Some(expires_at),
                    reason,
                    created_by: &session.username,
                },
                now,
            )
            .await
            {
                Ok(tid) => tid,
                Err(e) if is_unique_violation(&e) => {
                    return Err(conflict(
                        "transfer_open",
                        "this member already has an open introduction letter",
                    ))
                }
                Err(e) => return Err(e.into()),
            };
            let year = crate::platform::time::from_unix_ms(now)
                .to_offset(crate::platform::time::SHANGHAI)
                .year();
            let letter_no = rules::letter_no(year, tid);
            store::set_letter_no(&mut tx, tid, &letter_no).await?;
            let entry = session
                .audit("member.transfer.out", "member", m.id)
                .details(json!({
                    "transfer_id": tid,
                    "letter_no": letter_no,
                    "destination": destination,
                    "dues_paid_until": dues,
                    "validity_days": days,
                    "before": {"status": store::STATUS_ACTIVE},
                    "after": {"status": store::STATUS_TRANSFERRED_OUT},
                }));
            audit::record(&mut *tx, &entry).await?;
            tid
        }
    };
    let t = store::transfer_in(&mut tx, transfer_id)
        .await?
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("transfer {transfer_id} vanished")))?;
    tx.commit().await?;
    let m = store::by_id(&st.db, m.id)
        .await?
        .ok_or_else(|| AppError::NotFound("member".into()))?;
    Ok((t, m))
}

/// A transfer the caller may see: either side in their scope (404 otherwise).
pub async fn transfer_in_scope(st: &AppState, scope: &OrgScope, id: i64) -> AppResult<TransferRow> {
    match store::transfer(&st.db, id).await? {
        Some(t)
            if t.from_org_unit_id.is_some_and(|u| scope.contains(u))
                || t.to_org_unit_id.is_some_and(|u| scope.contains(u)) =>
        {
            Ok(t)
        }
        _ => Err(AppError::NotFound("transfer".into())),
    }
}

/// How the other side answered an introduction letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The receipt (回执) came back: the transfer is done.
    Received,
    /// The letter came back unused: the member is on our active roster again.
    Returned,
}

/// `POST /api/admin/members/transfers/{id}/close`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseTransfer {
    pub outcome: Outcome,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Close an issued letter: received, or returned with the reason.
pub async fn close_transfer(
    st: &AppState,
    session: &AdminSession,
    id: i64,
    req: &CloseTransfer,
) -> AppResult<(TransferRow, MemberRow)> {
    let scope = session.org_scope(&st.db).await?;
    let t = transfer_in_scope(st, &scope, id).await?;
    if t.direction != "out" || t.status != "issued" {
        return Err(conflict(
            "transfer_closed",
            format!("this transfer is {} and cannot be closed", t.status),
        ));
    }
    let reason = reason_of(&req.reason)?;
    if req.outcome == Outcome::Returned && reason.is_none() {
        return Err(AppError::Validation(
            "reason: say why the letter was returned".into(),
        ));
    }
    let outcome = match req.outcome {
        Outcome::Received => "received",
        Outcome::Returned => "returned",
    };
    let now = session.now;
    let mut tx = st.db.begin_write().await?;
    if !store::close_transfer(&mut tx, t.id, outcome, reason, &session.username, now).await? {
        return Err(conflict(
            "transfer_closed",
            "this transfer was closed in the meantime",
        ));
    }
    if req.outcome == Outcome::Returned {
        store::change_status(
            &mut tx,
            t.member_id,
            store::STATUS_TRANSFERRED_OUT,
            store::STATUS_ACTIVE,
            now,
        )
        .await?;
    }
    let entry = session
        .audit(&format!("member.transfer.{outcome}"), "member", t.member_id)
        .details(json!({"transfer_id": t.id, "letter_no": t.letter_no, "reason": reason}));
    audit::record(&mut *tx, &entry).await?;
    let t = store::transfer_in(&mut tx, t.id)
        .await?
        .ok_or_else(|| AppError::NotFound("transfer".into()))?;
    tx.commit().await?;
    let m = store::by_id(&st.db, t.member_id)
        .await?
        .ok_or_else(|| AppError::NotFound("member".into()))?;
    Ok((t, m))
}

/// `POST /api/admin/members/transfers/incoming`: a member arriving from another organisation with
/// their introduction letter.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IncomingTransfer {
    pub name: String,
    pub phone: String,
    pub category: String,
    #[serde(default)]
    pub monthly_income_fen: Option<i64>,
    #[serde(default)]
    pub id_number: Option<String>,
    pub org_unit_id: i64,
    #[serde(default)]
    pub party_status: Option<String>,
    #[serde(default)]
    pub joined_at: Option<String>,
    /// The organisation the member comes from.
    pub origin: String,
    /// The number on the letter the member brought.
    #[serde(default)]
    pub letter_no: Option<String>,
    #[serde(default)]
    pub dues_paid_until: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Why an incoming transfer can't be registered: field errors (422 with the rows' shape) or a
/// rule.
pub enum IncomingRefused {
    Invalid(Vec<RowError>),
}

/// Register an arrival: a new roster entry (or a former member back on the roster) in
/// `org_unit_id`, with the transfer row.
pub async fn register_incoming(
    st: &AppState,
    session: &AdminSession,
    req: &IncomingTransfer,
) -> AppResult<Result<(TransferRow, MemberRow), IncomingRefused>> {
    let scope = session.org_scope(&st.db).await?;
    let unit = target_unit(st, &scope, req.org_unit_id).await?;
    let origin = rules::organisation_name(&req.origin).ok_or_else(|| {
        AppError::Validation("origin: the sending organisation, 1 to 100 characters".into())
    })?;
    let their_letter = rules::short_text(req.letter_no.as_deref(), 64)
        .map_err(|_| AppError::Validation("letter_no: at most 64 characters".into()))?;
    let dues = req.dues_paid_until.as_deref().map(dues_month).transpose()?;
    let reason = reason_of(&req.reason)?;
    // The same checks as a roster row.
    let mut raw = rules::RawRow::new();
    raw.insert("name".into(), req.name.clone());
    raw.insert("phone".into(), req.phone.clone());
    raw.insert("category".into(), req.category.clone());
    raw.insert("org_unit".into(), unit.name.clone());
    if let Some(v) = req.monthly_income_fen {
        raw.insert("monthly_income_fen".into(), v.to_string());
    }
    for (k, v) in [
        ("id_number", &req.id_number),
        ("party_status", &req.party_status),
        ("joined_at", &req.joined_at),
    ] {
        if let Some(v) = v {
            raw.insert(k.into(), v.clone());
        }
    }
    let mut errors = Vec::new();
    let Some(row) = rules::validate_row(1, &raw, &mut errors) else {
        return Ok(Err(IncomingRefused::Invalid(errors)));
    };
    if let Some(rule) = rules::party_dates_error(row.party_status, row.joined_at, None, session.now)
    {
        return Err(AppError::Validation(rule.into()));
    }
    let existing = store::find_by_phone(&st.db, &st.cipher, &row.phone).await?;
    if existing.as_ref().is_some_and(|m| m.is_active()) {
        return Err(conflict(
            "already_on_roster",
            "a member with this phone is already on the active roster",
        ));
    }
    let now = session.now;
    let cipher = &st.cipher;
    let write = member_write(cipher, &row, unit.id);
    let mut tx = st.db.begin_write().await?;
    let (member_id, returning) = match &existing {
        Some(m) => {
            if !store::reactivate(&mut tx, cipher, m.id, &write, now).await? {
                return Err(conflict(
                    "already_on_roster",
                    "a member with this phone is already on the active roster",
                ));
            }
            (m.id, true)
        }
        None => match store::insert(&mut tx, cipher, &write, now).await {
            Ok(id) => (id, false),
            Err(e) if is_unique_violation(&e) => {
                return Err(conflict(
                    "already_on_roster",
                    "a member with this phone was registered in the meantime",
                ))
            }
            Err(e) => return Err(e.into()),
        },
    };
    let tid = store::insert_transfer(
        &mut tx,
        &NewTransfer {
            member_id,
            direction: "in",
            status: "received",
            from_org_unit_id: None,
            to_org_unit_id: Some(unit.id),
            external_org: Some(origin),
            letter_no: their_letter,
            dues_paid_until: dues,
            validity_days: None,
            expires_at: None,
            reason,
            created_by: &session.username,
        },
        now,
    )
    .await?;
    // No personal data in the log: ids, the units and the letter.
    let entry = session
        .audit("member.transfer.in", "member", member_id)
        .details(json!({
            "transfer_id": tid,
            "origin": origin,
            "letter_no": their_letter,
            "org_unit_id": unit.id,
            "returning_member": returning,
        }));
    audit::record(&mut *tx, &entry).await?;
    let t = store::transfer_in(&mut tx, tid)
        .await?
        .ok_or_else(|| AppError::NotFound("transfer".into()))?;
    tx.commit().await?;
    let m = store::by_id(&st.db, member_id)
        .await?
        .ok_or_else(|| AppError::NotFound("member".into()))?;
    Ok(Ok((t, m)))
}

// ---------------------------------------------------------------- org units

/// `POST /api/admin/org-units`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUnit {
    #[schemars(length(min = 1, max = 100), regex(pattern = r"\S"))]
    pub name: String,
    /// Parent by name (or `parent_id`).
    #[serde(default)]
    pub parent: Option<String>,
    #[serde(default)]
    pub parent_id: Option<i64>,
    /// Default: a committee at the top, a branch under a committee or general branch, a Party
    /// group inside a branch.
    #[serde(default)]
    pub kind: Option<OrgKind>,
}

/// `PATCH /api/admin/org-units/{id}`: rename, re-kind, move (`parent_id: null` = to the top).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UnitPatch {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub kind: Option<OrgKind>,
    #[serde(default, deserialize_with = "double_option")]
    pub parent_id: Option<Option<i64>>,
}

fn unit_name(s: &str) -> AppResult<&str> {
    let s = s.trim();
    if s.is_empty() || s.chars().count() > 100 {
        return Err(AppError::Validation(
            "name must have 1-100 characters".into(),
        ));
    }
    Ok(s)
}

fn default_kind(parent: Option<OrgKind>) -> OrgKind {
    match parent {
        None => OrgKind::Committee,
        Some(OrgKind::Branch | OrgKind::Group) => OrgKind::Group,
        Some(_) => OrgKind::Branch,
    }
}

/// A parent the caller may put units under: 422 when unknown, 403 outside their scope.
async fn parent_unit(tx: &mut Tx, scope: &OrgScope, id: i64) -> AppResult<OrgUnit> {
    let p = org::get_in(&mut **tx, id)
        .await?
        .ok_or_else(|| AppError::Validation("unknown parent".into()))?;
    scope.require(p.id)?;
    Ok(p)
}

/// Create an org unit. Secretaries create inside their subtree only.
pub async fn create_unit(
    st: &AppState,
    session: &AdminSession,
    req: &NewUnit,
) -> AppResult<OrgUnit> {
    let scope = session.org_scope(&st.db).await?;
    let name = unit_name(&req.name)?;
    let mut tx = st.db.begin_write().await?;
    org::lock_tree(&mut tx, st.db.backend()).await?;
    let parent = match (&req.parent, req.parent_id) {
        (Some(_), Some(_)) => {
            return Err(AppError::Validation(
                "give parent or parent_id, not both".into(),
            ))
        }
        (Some(p), None) => {
            let u = org::find_by_name(&mut *tx, p)
                .await?
                .ok_or_else(|| AppError::Validation("unknown parent".into()))?;
            scope.require(u.id)?;
            Some(u)
        }
        (None, Some(id)) => Some(parent_unit(&mut tx, &scope, id).await?),
        (None, None) => None,
    };
    if parent.is_none() && scope != OrgScope::All {
        return Err(AppError::Forbidden(
            "only administrators create org units at the top of the tree".into(),
        ));
    }
    let kind = req
        .kind
        .unwrap_or_else(|| default_kind(parent.as_ref().map(|p| p.kind)));
    if let Some(rule) = org::placement_error(kind, parent.as_ref().map(|p| (p.id, p.kind)), None) {
        return Err(AppError::Validation(rule));
    }
    if org::find_by_name(&mut *tx, name).await?.is_some() {
        return Err(AppError::Conflict(
            "an org unit with this name exists".into(),
        ));
    }
    let parent_id = parent.as_ref().map(|p| p.id);
    let id = org::create_kind(&mut tx, name, parent_id, kind, session.now).await?;
    let entry = session
        .audit("org_unit.create", "org_unit", id)
        .details(json!({"after": {"name": name, "parent_id": parent_id, "kind": kind}}));
    audit::record(&mut *tx, &entry).await?;
    tx.commit().await?;
    Ok(OrgUnit {
        id,
        name: name.to_owned(),
        parent_id,
        kind,
    })
}

/// A unit in the caller's scope, or 404.
async fn unit_in_scope(tx: &mut Tx, scope: &OrgScope, id: i64) -> AppResult<OrgUnit> {
    match org::get_in(&mut **tx, id).await? {
        Some(u) if scope.contains(u.id) => Ok(u),
        _ => Err(AppError::NotFound("org unit".into())),
    }
}

/// Rename, re-kind and/or move an org unit; a move into its own subtree (a cycle) or to where its
/// kind may not sit is refused.
pub async fn update_unit(
    st: &AppState,
    session: &AdminSession,
    id: i64,
    req: &UnitPatch,
) -> AppResult<OrgUnit> {
    if req.name.is_none() && req.kind.is_none() && req.parent_id.is_none() {
        return Err(AppError::Validation("nothing to change".into()));
    }
    let scope = session.org_scope(&st.db).await?;
    let mut tx = st.db.begin_write().await?;
    org::lock_tree(&mut tx, st.db.backend()).await?;
    let unit = unit_in_scope(&mut tx, &scope, id).await?;
    let name = match &req.name {
        Some(n) => unit_name(n)?.to_owned(),
        None => unit.name.clone(),
    };
    let kind = req.kind.unwrap_or(unit.kind);
    let parent = match req.parent_id {
        None => match unit.parent_id {
            // Unchanged: the parent may lie outside a secretary's scope (their own unit's).
            Some(p) => org::get_in(&mut *tx, p).await?,
            None => None,
        },
        Some(None) => {
            if scope != OrgScope::All {
                return Err(AppError::Forbidden(
                    "only administrators move org units to the top of the tree".into(),
                ));
            }
            None
        }
        Some(Some(p)) => Some(parent_unit(&mut tx, &scope, p).await?),
    };
    let subtree = org::subtree_ids_in(&mut tx, unit.id).await?;
    let children = org::child_kinds(&mut tx, unit.id).await?;
    if let Some(rule) = org::placement_error(
        kind,
        parent.as_ref().map(|p| (p.id, p.kind)),
        Some((unit.id, &subtree, &children)),
    ) {
        return Err(AppError::Validation(rule));
    }
    if name != unit.name && org::find_by_name(&mut *tx, &name).await?.is_some() {
        return Err(AppError::Conflict(
            "an org unit with this name exists".into(),
        ));
    }
    let parent_id = parent.as_ref().map(|p| p.id);
    org::update(&mut tx, unit.id, &name, parent_id, kind, session.now).await?;
    let entry = session
        .audit("org_unit.update", "org_unit", unit.id)
        .details(json!({
            "before": {"name": unit.name, "parent_id": unit.parent_id, "kind": unit.kind},
            "after": {"name": name, "parent_id": parent_id, "kind": kind},
        }));
    audit::record(&mut *tx, &entry).await?;
    tx.commit().await?;
    Ok(OrgUnit {
        id: unit.id,
        name,
        parent_id,
        kind,
    })
}

/// Delete an empty org unit: no sub-units, no members (former ones included: their history
/// points here), no accounts and nothing of another feature refers to it.
pub async fn delete_unit(st: &AppState, session: &AdminSession, id: i64) -> AppResult<OrgUnit> {
    let scope = session.org_scope(&st.db).await?;
    let mut tx = st.db.begin_write().await?;
    org::lock_tree(&mut tx, st.db.backend()).await?;
    let unit = unit_in_scope(&mut tx, &scope, id).await?;
    if session.org_unit_id == Some(unit.id) && scope != OrgScope::All {
        return Err(AppError::Forbidden(
            "a secretary cannot delete their own org unit".into(),
        ));
    }
    let not_empty = |what: &str| {
        conflict(
            "org_unit_not_empty",
            format!("the org unit still has {what}; move or remove them first"),
        )
    };
    if !org::child_kinds(&mut tx, unit.id).await?.is_empty() {
        return Err(not_empty("sub-units"));
    }
    if store::count_in_unit(&mut tx, unit.id).await? > 0 {
        return Err(not_empty("members (or former members' history)"));
    }
    match org::delete(&mut tx, unit.id).await {
        Ok(_) => {}
        // Accounts, activities, bills... of this unit: the database refuses.
        Err(e) if is_fk_violation(&e) => return Err(not_empty("records that refer to it")),
        Err(e) => return Err(e.into()),
    }
    let entry = session
        .audit("org_unit.delete", "org_unit", unit.id)
        .details(
            json!({"before": {"name": unit.name, "parent_id": unit.parent_id, "kind": unit.kind}}),
        );
    audit::record(&mut *tx, &entry).await?;
    tx.commit().await?;
    Ok(unit)
}

// ---------------------------------------------------------------- roster import

/// An org unit as a member refers to it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct UnitRef {
    pub id: i64,
    pub name: String,
}

/// How the rows of an import arrived (recorded in the audit entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportFormat {
    Json,
    Csv,
}

/// A committed import.
#[derive(Debug, Serialize)]
pub struct ImportDone {
    pub created: usize,
    pub updated: usize,
    pub total: usize,
    pub org_units_created: Vec<UnitRef>,
}

/// Import roster rows: all or none. Any invalid row (a field, a phone twice, an org unit outside
/// the caller's scope or unknown to a secretary, a phone of a member outside the scope) → the row
/// errors, sorted by row, and nothing is written. An existing phone updates that member; unknown
/// org units are created (administrators only).
pub async fn import(
    st: &AppState,
    session: &AdminSession,
    raw: &[rules::RawRow],
    format: ImportFormat,
) -> AppResult<Result<ImportDone, Vec<RowError>>> {
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
    let may_create_units = session.role == crate::auth::Role::Admin;
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
    // A phone held by a member outside the caller's units must not tell the caller that this
    // phone is a Party member's: the row only "needs an administrator", and the attempt is audited.
    let mut needs_admin = Vec::new();
    for (n, row) in &rows {
        if let Some((id, unit)) = existing.get(&row.phone) {
            if !scope.contains(*unit) {
                needs_admin.push(*id);
                errors.push(RowError {
                    row: *n,
                    field: "row",
                    message: "this row needs an administrator".into(),
                });
            }
        }
    }
    if !needs_admin.is_empty() {
        let entry = session
            .audit("member.import_refused", "member", "")
            .details(json!({"reason": "out_of_scope_rows", "rows": needs_admin.len()}));
        audit::record(st.db.pool(), &entry).await?;
    }
    if !errors.is_empty() {
        errors.sort_by_key(|e| e.row);
        return Ok(Err(errors));
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
            units_created.push(UnitRef {
                id: new_id,
                name: name.clone(),
            });
            let entry = session
                .audit("org_unit.create", "org_unit", new_id)
                .details(json!({"after": {"name": name}, "via": "member.import"}));
            audit::record(&mut *tx, &entry).await?;
        }
    }
    let (mut created, mut updated) = (Vec::new(), Vec::new());
    for (_, row) in &rows {
        let unit = units[&row.org_unit].expect("resolved above");
        let write = member_write(cipher, row, unit);
        match existing.get(&row.phone) {
            Some((id, _)) => {
                store::update(&mut tx, cipher, *id, &write, now).await?;
                updated.push(*id);
            }
            None => created.push(store::insert(&mut tx, cipher, &write, now).await?),
        }
    }
    // Personal data is not repeated in the audit log: ids and counts only.
    let entry = session.audit("member.import", "member", "").details(json!({
        "format": if format == ImportFormat::Csv { "csv" } else { "json" },
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
    Ok(Ok(ImportDone {
        created: created.len(),
        updated: updated.len(),
        total: rows.len(),
        org_units_created: units_created,
    }))
}

/// The member write of a roster row in org unit `unit` (its phone's blind index computed; the
/// store seals the personal data to the row), shared by the import and the registration of an
/// incoming transfer.
pub fn member_write<'a>(cipher: &DataCipher, row: &'a ImportRow, unit: i64) -> MemberWrite<'a> {
    MemberWrite {
        name: &row.name,
        phone: &row.phone,
        phone_idx: cipher.phone_index(&row.phone),
        id_number: row.id_number.as_deref(),
        category: row.category,
        income: row.income_fen.map(|v| v.to_string()),
        org_unit_id: unit,
        party_status: row.party_status,
        joined_at: row.joined_at,
    }
}
