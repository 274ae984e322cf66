//! Activity use cases: transactions, audit entries, the concurrency protocol (see `mod.rs`).
//! Handlers parse and shape; everything that changes data happens here.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use axum::http::StatusCode;
use serde::Serialize;
use serde_json::json;

use super::{
    rules::{self, Attendance, Fields, Kind, LeaveKind, PhotoRefusal, Refusal, Ticket},
    store::{self, ActivityRow, ActivityWrite},
};
use crate::{
    app::AppState,
    auth::{AdminSession, OrgScope, Role},
    members::store::{self as members, MemberRow},
    platform::{
        audit,
        error::{AppError, AppResult},
        org,
    },
};

/// Label of the check-in ticket key derived from the data key.
const TICKET_KEY_LABEL: &str = "dangjian activity checkin v1";

fn refused(r: Refusal) -> AppError {
    AppError::rejected(StatusCode::CONFLICT, r.code(), r.message())
}

fn not_found(id: i64) -> AppError {
    AppError::NotFound(format!("activity {id}"))
}

/// Sign-ups, withdrawals and check-ins of the mini-program user need a bound roster entry.
pub async fn bound_member(st: &AppState, openid: &str) -> AppResult<MemberRow> {
    members::bound_to(&st.db, openid).await?.ok_or_else(|| {
        AppError::rejected(
            StatusCode::FORBIDDEN,
            "not_bound",
            "bind your account to the roster first (POST /api/mp/bind)",
        )
    })
}

/// Every org unit's parent, for audience checks.
pub async fn org_parents(st: &AppState) -> AppResult<HashMap<i64, Option<i64>>> {
    Ok(org::list(&st.db)
        .await?
        .into_iter()
        .map(|u| (u.id, u.parent_id))
        .collect())
}

/// Members expected at a meeting: everyone in the audience units' subtrees.
async fn audience_members(st: &AppState, audience: &[i64]) -> AppResult<Vec<MemberRow>> {
    let mut units = HashSet::new();
    for unit in audience {
        units.extend(org::subtree_ids(&st.db, *unit).await?);
    }
    let mut units: Vec<i64> = units.into_iter().collect();
    units.sort_unstable();
    Ok(members::in_scope(&st.db, &OrgScope::Units(units)).await?)
}

// ---------------------------------------------------------------- admin

/// The activity if this session may manage it: 404 when unknown, 403 outside a secretary's scope.
pub async fn manageable(
    st: &AppState,
    session: &AdminSession,
    id: i64,
) -> AppResult<(ActivityRow, OrgScope)> {
    let a = store::get(&st.db, id).await?.ok_or_else(|| not_found(id))?;
    let scope = session.org_scope(&st.db).await?;
    if !store::in_scope(&st.db, &scope, id).await? {
        return Err(AppError::Forbidden(
            "this activity is not for your org units".into(),
        ));
    }
    Ok((a, scope))
}

/// Audience units must exist; a secretary's must be within their scope (and not empty: an
/// activity for everyone is the administrators').
async fn check_audience(st: &AppState, session: &AdminSession, units: &[i64]) -> AppResult<()> {
    for unit in units {
        if org::get(&st.db, *unit).await?.is_none() {
            return Err(AppError::Validation(format!(
                "audience_org_units: org unit {unit} does not exist"
            )));
        }
    }
    if session.role != Role::Admin {
        if units.is_empty() {
            return Err(AppError::Forbidden(
                "audience_org_units: secretaries create activities for their own org units".into(),
            ));
        }
        let scope = session.org_scope(&st.db).await?;
        for unit in units {
            scope.require(*unit)?;
        }
    }
    Ok(())
}

fn write_of(f: &Fields) -> ActivityWrite<'_> {
    ActivityWrite {
        title: &f.title,
        kind: f.kind,
        description: &f.description,
        location: &f.location,
        capacity: f.capacity,
        starts_at: f.starts_at,
        ends_at: f.ends_at,
        signup_opens_at: f.signup_opens_at,
        signup_closes_at: f.signup_closes_at,
        remind_minutes: f.remind_minutes,
    }
}

pub fn fields_of(a: &ActivityRow, audience: Vec<i64>) -> Fields {
    Fields {
        title: a.title.clone(),
        kind: a.kind,
        description: a.description.clone(),
        location: a.location.clone(),
        capacity: a.capacity,
        starts_at: a.starts_at,
        ends_at: a.ends_at,
        signup_opens_at: a.signup_opens_at,
        signup_closes_at: a.signup_closes_at,
        remind_minutes: a.remind_minutes,
        audience,
    }
}

fn audit_fields(f: &Fields) -> serde_json::Value {
    json!({
        "title": f.title, "kind": f.kind, "capacity": f.capacity,
        "starts_at": crate::platform::time::rfc3339(f.starts_at),
        "ends_at": f.ends_at.map(crate::platform::time::rfc3339),
        "signup_opens_at": crate::platform::time::rfc3339(f.signup_opens_at),
        "signup_closes_at": crate::platform::time::rfc3339(f.signup_closes_at),
        "location": f.location, "audience_org_units": f.audience,
        "remind_minutes": f.remind_minutes,
    })
}

/// Create an activity; a meeting's expected members get their (absent) attendance records.
pub async fn create(st: &AppState, session: &AdminSession, fields: Fields) -> AppResult<i64> {
    let f = fields.validate().map_err(AppError::Validation)?;
    check_audience(st, session, &f.audience).await?;
    let expected = if f.kind.is_meeting() {
        audience_members(st, &f.audience).await?
    } else {
        Vec::new()
    };
    let now = st.clock.unix_ms();
    let mut tx = st.db.begin_write().await?;
    let id = store::insert(&mut tx, &write_of(&f), &session.username, now).await?;
    store::set_audience(&mut tx, id, &f.audience).await?;
    let ids: Vec<i64> = expected.iter().map(|m| m.id).collect();
    store::ensure_expected(&mut tx, id, &ids, now).await?;
    audit::record(
        &mut *tx,
        &session
            .audit("activity.create", "activity", id)
            .details(audit_fields(&f)),
    )
    .await?;
    tx.commit().await?;
    Ok(id)
}

/// Apply `change` to the activity and save it: capacity may not drop below the confirmed count;
/// places freed by a larger capacity go to the waitlist, first come first served.
pub async fn update(
    st: &AppState,
    session: &AdminSession,
    id: i64,
    change: impl FnOnce(&mut Fields) -> AppResult<()>,
) -> AppResult<()> {
    let (current, _) = manageable(st, session, id).await?;
    if current.status == "cancelled" {
        return Err(refused(Refusal::Cancelled));
    }
    let audience = store::audience(&st.db, id).await?;
    let before = fields_of(&current, audience.clone());
    let mut f = before.clone();
    change(&mut f)?;
    let f = f.validate().map_err(AppError::Validation)?;
    if f.audience != audience {
        check_audience(st, session, &f.audience).await?;
    }
    let expected = if f.kind.is_meeting() {
        audience_members(st, &f.audience).await?
    } else {
        Vec::new()
    };
    let now = st.clock.unix_ms();
    let mut tx = st.db.begin_write().await?;
    let locked = store::lock(&mut tx, st.db.backend(), id)
        .await?
        .ok_or_else(|| not_found(id))?;
    if locked.status == "cancelled" {
        return Err(refused(Refusal::Cancelled));
    }
    if f.capacity < locked.confirmed_count {
        return Err(AppError::Validation(format!(
            "capacity: {} members are already confirmed; cancel sign-ups before lowering it below that",
            locked.confirmed_count
        )));
    }
    store::update(&mut tx, id, &write_of(&f), now).await?;
    if f.audience != audience {
        store::set_audience(&mut tx, id, &f.audience).await?;
    }
    let ids: Vec<i64> = expected.iter().map(|m| m.id).collect();
    store::ensure_expected(&mut tx, id, &ids, now).await?;
    let promoted = fill_from_waitlist(&mut tx, id, now).await?;
    audit::record(
        &mut *tx,
        &session
            .audit("activity.update", "activity", id)
            .details(json!({
                "before": audit_fields(&before), "after": audit_fields(&f), "promoted": promoted,
            })),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Promote waitlisted members, in order, into every free place; each is told once.
async fn fill_from_waitlist(
    tx: &mut crate::platform::db::Tx,
    id: i64,
    now: i64,
) -> AppResult<Vec<i64>> {
    let mut promoted = Vec::new();
    while let Some((signup_id, member)) = store::promote_first(tx, id, now).await? {
        store::notify_promoted(tx, id, member, signup_id, now).await?;
        promoted.push(member);
    }
    Ok(promoted)
}

/// Cancel an activity; everyone signed up (and a meeting's audience) is told.
pub async fn cancel(
    st: &AppState,
    session: &AdminSession,
    id: i64,
    reason: Option<&str>,
) -> AppResult<u64> {
    manageable(st, session, id).await?;
    let now = st.clock.unix_ms();
    let mut tx = st.db.begin_write().await?;
    store::lock(&mut tx, st.db.backend(), id)
        .await?
        .ok_or_else(|| not_found(id))?;
    if !store::cancel(&mut tx, id, reason, now).await? {
        return Err(refused(Refusal::Cancelled));
    }
    let told = store::notify_cancelled(&mut tx, id, now).await?;
    audit::record(
        &mut *tx,
        &session
            .audit("activity.cancel", "activity", id)
            .details(json!({"reason": reason, "notified": told})),
    )
    .await?;
    tx.commit().await?;
    Ok(told)
}

/// A meeting's minutes, host and recorder (and photo URLs).
pub async fn record_minutes(
    st: &AppState,
    session: &AdminSession,
    id: i64,
    host: &str,
    recorder: &str,
    minutes: &str,
    photos: &[String],
) -> AppResult<()> {
    let (a, _) = manageable(st, session, id).await?;
    require_meeting(&a)?;
    let now = st.clock.unix_ms();
    let mut tx = st.db.begin_write().await?;
    store::set_minutes(&mut tx, id, host, recorder, minutes, photos, now).await?;
    audit::record(
        &mut *tx,
        &session
            .audit("activity.minutes", "activity", id)
            .details(json!({"host": host, "recorder": recorder, "chars": minutes.chars().count(), "photos": photos.len()})),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Minutes (and their photos) belong to meetings.
fn require_meeting(a: &ActivityRow) -> AppResult<()> {
    if a.kind.is_meeting() {
        Ok(())
    } else {
        Err(AppError::Validation(
            "minutes are recorded for meetings (三会一课 and 主题党日), not for a plain activity"
                .into(),
        ))
    }
}

/// The error for a file that is not taken as a photo.
pub fn photo_refused(r: PhotoRefusal) -> AppError {
    match r {
        PhotoRefusal::Empty => AppError::Validation("photo: the file is empty".into()),
        PhotoRefusal::TooLarge => AppError::PayloadTooLarge,
        PhotoRefusal::NotAnImage => AppError::rejected(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "photo: JPEG, PNG or WebP images only",
        ),
    }
}

/// Attach photos to a meeting's minutes: every file is checked (magic bytes, size) and the
/// meeting's limit kept before anything is stored; all or none are stored, in one audited
/// transaction under the activity's lock. Returns the new photos' ids.
pub async fn add_photos(
    st: &AppState,
    session: &AdminSession,
    id: i64,
    files: &[Vec<u8>],
) -> AppResult<Vec<i64>> {
    use base64::{engine::general_purpose::STANDARD as B64, Engine};
    use sha2::{Digest, Sha256};
    let (a, _) = manageable(st, session, id).await?;
    require_meeting(&a)?;
    if files.is_empty() {
        return Err(AppError::Validation("photo: choose an image file".into()));
    }
    let types = files
        .iter()
        .map(|f| rules::photo_type(f))
        .collect::<Result<Vec<_>, _>>()
        .map_err(photo_refused)?;
    let now = st.clock.unix_ms();
    let mut tx = st.db.begin_write().await?;
    store::lock(&mut tx, st.db.backend(), id)
        .await?
        .ok_or_else(|| not_found(id))?;
    let have = store::photo_count(&mut tx, id).await?;
    if have + files.len() as i64 > rules::MAX_PHOTOS {
        return Err(AppError::Validation(format!(
            "photo: a meeting keeps at most {} photos ({have} already)",
            rules::MAX_PHOTOS
        )));
    }
    let mut ids = Vec::with_capacity(files.len());
    for (bytes, content_type) in files.iter().zip(types) {
        let sha = hex::encode(Sha256::digest(bytes));
        let photo = store::NewPhoto {
            content_type,
            size_bytes: bytes.len() as i64,
            sha256: &sha,
            content_b64: &B64.encode(bytes),
        };
        let pid = store::insert_photo(&mut tx, id, &photo, &session.username, now).await?;
        audit::record(
            &mut *tx,
            &session
                .audit("activity.photo.upload", "activity", id)
                .details(json!({"photo_id": pid, "content_type": content_type, "size_bytes": bytes.len(), "sha256": sha})),
        )
        .await?;
        ids.push(pid);
    }
    tx.commit().await?;
    Ok(ids)
}

/// A meeting's photos (metadata), for a session that may manage it.
pub async fn photos(
    st: &AppState,
    session: &AdminSession,
    id: i64,
) -> AppResult<Vec<store::PhotoRow>> {
    manageable(st, session, id).await?;
    Ok(store::photos(&st.db, id).await?)
}

/// One photo's bytes.
pub async fn photo(
    st: &AppState,
    session: &AdminSession,
    id: i64,
    photo_id: i64,
) -> AppResult<(store::PhotoRow, Vec<u8>)> {
    use base64::{engine::general_purpose::STANDARD as B64, Engine};
    manageable(st, session, id).await?;
    let (meta, b64) = store::photo(&st.db, id, photo_id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("photo {photo_id}")))?;
    let bytes = B64
        .decode(b64)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("photo {photo_id}: {e}")))?;
    Ok((meta, bytes))
}

/// Remove a photo from the minutes (audited).
pub async fn delete_photo(
    st: &AppState,
    session: &AdminSession,
    id: i64,
    photo_id: i64,
) -> AppResult<()> {
    manageable(st, session, id).await?;
    let mut tx = st.db.begin_write().await?;
    if !store::delete_photo(&mut tx, id, photo_id).await? {
        return Err(AppError::NotFound(format!("photo {photo_id}")));
    }
    audit::record(
        &mut *tx,
        &session
            .audit("activity.photo.delete", "activity", id)
            .details(json!({"photo_id": photo_id})),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Who is expected at an activity: its confirmed sign-ups, or a meeting's audience.
async fn is_expected(st: &AppState, a: &ActivityRow, member: &MemberRow) -> AppResult<bool> {
    if a.kind.is_meeting() {
        let audience = store::audience(&st.db, a.id).await?;
        if rules::in_audience(&audience, member.org_unit_id, &org_parents(st).await?) {
            return Ok(true);
        }
    }
    let s = store::active_signup(st.db.pool(), a.id, member.id).await?;
    Ok(s.is_some_and(|s| s.status == "confirmed"))
}

/// A secretary's attendance mark for one member (audited).
pub async fn mark_attendance(
    st: &AppState,
    session: &AdminSession,
    id: i64,
    member_id: i64,
    status: Attendance,
    leave_kind: Option<LeaveKind>,
    reason: Option<&str>,
) -> AppResult<()> {
    let (a, _) = manageable(st, session, id).await?;
    if a.status == "cancelled" {
        return Err(refused(Refusal::Cancelled));
    }
    let reason = rules::validate_mark(status, leave_kind, reason).map_err(AppError::Validation)?;
    let member = members::by_ids(&st.db, &[member_id])
        .await?
        .pop()
        .ok_or_else(|| {
            AppError::Validation(format!("member_id: member {member_id} does not exist"))
        })?;
    let has_record = store::attendance_of(&st.db, id, member_id).await?.is_some();
    if !has_record && !is_expected(st, &a, &member).await? {
        return Err(AppError::rejected(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_expected",
            "this member is neither signed up for the activity nor in the meeting's audience",
        ));
    }
    let now = st.clock.unix_ms();
    let mut tx = st.db.begin_write().await?;
    store::mark(
        &mut tx,
        id,
        member_id,
        status,
        leave_kind,
        reason.as_deref(),
        &session.username,
        now,
    )
    .await?;
    audit::record(
        &mut *tx,
        &session
            .audit("activity.attendance_mark", "activity", id)
            // The reason may be about health: the entry says only that there is one.
            .details(json!({"member_id": member_id, "status": status, "leave_kind": leave_kind, "reason_given": reason.is_some()})),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// One line of the attendance sheet.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct AttendanceLine {
    pub member_id: i64,
    pub name: String,
    pub org_unit: String,
    /// present | late | absent | leave
    pub status: String,
    pub leave_kind: Option<String>,
    pub reason: Option<String>,
    /// default (expected, not seen) | checkin | manual
    pub source: String,
    pub checked_in_at: Option<String>,
    pub marked_by: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct AttendanceSummary {
    pub expected: i64,
    pub present: i64,
    pub late: i64,
    pub absent: i64,
    pub leave: i64,
}

/// The attendance sheet: every expected member (confirmed sign-ups; a meeting's audience, whose
/// records are created now for members who joined since) and everyone who checked in.
pub async fn attendance_sheet(
    st: &AppState,
    a: &ActivityRow,
) -> AppResult<(Vec<AttendanceLine>, AttendanceSummary)> {
    if a.kind.is_meeting() && a.status == "open" {
        let audience = store::audience(&st.db, a.id).await?;
        let expected = audience_members(st, &audience).await?;
        let recorded: HashSet<i64> = store::attendance(&st.db, a.id)
            .await?
            .iter()
            .map(|r| r.member_id)
            .collect();
        let missing: Vec<i64> = expected
            .iter()
            .map(|m| m.id)
            .filter(|m| !recorded.contains(m))
            .collect();
        if !missing.is_empty() {
            let mut tx = st.db.begin_write().await?;
            store::ensure_expected(&mut tx, a.id, &missing, st.clock.unix_ms()).await?;
            tx.commit().await?;
        }
    }
    let records = store::attendance(&st.db, a.id).await?;
    let mut by_member: HashMap<i64, store::AttendanceRow> =
        records.into_iter().map(|r| (r.member_id, r)).collect();
    if !a.kind.is_meeting() {
        for s in store::active_signups(&st.db, a.id).await? {
            if s.status == "confirmed" {
                by_member
                    .entry(s.member_id)
                    .or_insert_with(|| store::AttendanceRow {
                        member_id: s.member_id,
                        status: "absent".into(),
                        leave_kind: None,
                        reason: None,
                        source: "default".into(),
                        checked_in_at: None,
                        marked_by: None,
                        updated_at: s.created_at,
                    });
            }
        }
    }
    let mut ids: Vec<i64> = by_member.keys().copied().collect();
    ids.sort_unstable();
    let people: HashMap<i64, MemberRow> = members::by_ids(&st.db, &ids)
        .await?
        .into_iter()
        .map(|m| (m.id, m))
        .collect();
    let mut summary = AttendanceSummary::default();
    let mut lines = Vec::with_capacity(ids.len());
    for id in ids {
        let r = &by_member[&id];
        summary.expected += 1;
        match r.status.as_str() {
            "present" => summary.present += 1,
            "late" => summary.late += 1,
            "leave" => summary.leave += 1,
            _ => summary.absent += 1,
        }
        let m = people.get(&id);
        lines.push(AttendanceLine {
            member_id: id,
            name: m.map_or_else(|| "(deleted member)".into(), |m| m.name.clone()),
            org_unit: m.map(|m| m.org_unit.clone()).unwrap_or_default(),
            status: r.status.clone(),
            leave_kind: r.leave_kind.clone(),
            reason: r.reason.clone(),
            source: r.source.clone(),
            checked_in_at: r.checked_in_at.map(crate::platform::time::rfc3339_shanghai),
            marked_by: r.marked_by.clone(),
        });
    }
    Ok((lines, summary))
}

/// The venue's current check-in ticket.
pub fn ticket(st: &AppState, id: i64) -> Ticket {
    rules::issue_ticket(
        &st.cipher.derive_key(TICKET_KEY_LABEL),
        id,
        st.clock.unix_ms(),
    )
}

/// The ticket as a QR code (SVG).
pub fn qr_svg(text: &str) -> AppResult<String> {
    use qrcode::{render::svg, EcLevel, QrCode};
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("QR code: {e}")))?;
    Ok(code
        .render::<svg::Color<'_>>()
        .min_dimensions(240, 240)
        .quiet_zone(true)
        .build())
}

/// Per org unit in scope: meeting kind → (held, scheduled) in `[from, until)`.
pub async fn rhythm(
    st: &AppState,
    scope: &OrgScope,
    from: i64,
    until: i64,
) -> AppResult<Vec<(org::OrgUnit, HashMap<Kind, (i64, i64)>)>> {
    let counts = store::rhythm(&st.db, from, until, st.clock.unix_ms()).await?;
    let mut out = Vec::new();
    for unit in org::list(&st.db).await? {
        if !scope.contains(unit.id) {
            continue;
        }
        let kinds = Kind::RHYTHM
            .iter()
            .map(|k| (*k, counts.get(&(unit.id, *k)).copied().unwrap_or((0, 0))))
            .collect();
        out.push((unit, kinds));
    }
    Ok(out)
}

// ---------------------------------------------------------------- mini-program

/// The answer to a sign-up.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct SignupOutcome {
    /// confirmed | waitlisted
    pub status: &'static str,
    /// 1-based place in the waitlist; null when confirmed.
    pub position: Option<i64>,
}

/// The activity if it is open to this member (its audience contains the member's org unit or
/// an ancestor, or it has no audience); 404 otherwise, so other branches' activities stay unseen.
pub async fn visible(st: &AppState, member: &MemberRow, id: i64) -> AppResult<ActivityRow> {
    let a = store::get(&st.db, id).await?.ok_or_else(|| not_found(id))?;
    let audience = store::audience(&st.db, id).await?;
    if !audience.is_empty()
        && !rules::in_audience(&audience, member.org_unit_id, &org_parents(st).await?)
    {
        return Err(not_found(id));
    }
    Ok(a)
}

/// Sign up: confirmed while places are free and nobody waits, else waitlisted. The decision is
/// one conditional UPDATE of the activity row (which holds its row lock, or SQLite's write lock,
/// until the sign-up row is in and committed), so counts, sequence and rows change together; the
/// partial unique index refuses a second active sign-up whatever happens. Concurrent sign-ups for
/// one activity on this instance share a transaction ([`SignupQueue`]).
pub async fn sign_up(
    st: &AppState,
    queue: &Arc<SignupQueue>,
    member: &MemberRow,
    id: i64,
) -> AppResult<SignupOutcome> {
    let a = visible(st, member, id).await?;
    let now = st.clock.unix_ms();
    rules::may_sign_up(&a.times(), now).map_err(refused)?;
    if store::active_signup(st.db.pool(), id, member.id)
        .await?
        .is_some()
    {
        return Err(already_signed_up());
    }
    match queue.submit(st, id, member.id, now).await? {
        Some(l) => Ok(SignupOutcome {
            status: if l.position.is_none() {
                "confirmed"
            } else {
                "waitlisted"
            },
            position: l.position,
        }),
        None => {
            // Cancelled or closed since it was read: say which.
            let a = store::get(&st.db, id).await?.ok_or_else(|| not_found(id))?;
            rules::may_sign_up(&a.times(), now).map_err(refused)?;
            Err(AppError::Conflict("the activity changed; try again".into()))
        }
    }
}

/// Most sign-ups one transaction takes.
const MAX_BATCH: usize = 200;

type Reply = tokio::sync::oneshot::Sender<AppResult<Option<store::Landed>>>;

struct Job {
    member: i64,
    now: i64,
    reply: Reply,
}

#[derive(Default)]
struct Lane {
    jobs: Vec<Job>,
    draining: bool,
}

/// Group commit for a flash crowd: sign-ups for one activity that arrive while a transaction is
/// committing wait and then go together into the next one (in arrival order), so the activity
/// row is locked once — and the WAL flushed once — per batch instead of per sign-up. The
/// database still decides everything (each sign-up is its own conditional UPDATE + INSERT);
/// nobody is answered before the transaction that holds their sign-up has committed. One queue
/// per app instance (replicas serialise on the row lock as before); it lives in the activities
/// router, so it holds no state beyond the waiting requests.
#[derive(Default)]
pub struct SignupQueue {
    lanes: std::sync::Mutex<HashMap<i64, Lane>>,
}

impl SignupQueue {
    async fn submit(
        self: &Arc<SignupQueue>,
        st: &AppState,
        activity: i64,
        member: i64,
        now: i64,
    ) -> AppResult<Option<store::Landed>> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let lead = {
            let mut lanes = self.lanes.lock().expect("sign-up queue lock");
            let lane = lanes.entry(activity).or_default();
            lane.jobs.push(Job { member, now, reply });
            !std::mem::replace(&mut lane.draining, true)
        };
        if lead {
            // The first to arrive drains the lane in a task of its own: a client that hangs up
            // must not strand the others.
            let (st, queue) = (st.clone(), self.clone());
            st.tasks
                .clone()
                .spawn(async move { queue.drain(&st, activity).await });
        }
        answer
            .await
            .map_err(|_| AppError::Internal(anyhow::anyhow!("sign-up queue dropped a request")))?
    }

    /// Run batches until the lane is empty.
    async fn drain(&self, st: &AppState, activity: i64) {
        loop {
            let batch: Vec<Job> = {
                let mut lanes = self.lanes.lock().expect("sign-up queue lock");
                let Some(lane) = lanes.get_mut(&activity) else {
                    return;
                };
                if lane.jobs.is_empty() {
                    lanes.remove(&activity);
                    return;
                }
                let n = lane.jobs.len().min(MAX_BATCH);
                lane.jobs.drain(..n).collect()
            };
            run_batch(st, activity, batch).await;
        }
    }
}

/// One transaction for the batch; if anything in it fails (a member signing up twice at once
/// through two replicas, a database error), it is rolled back and each sign-up is retried in a
/// transaction of its own, so one bad request costs the others nothing.
async fn run_batch(st: &AppState, activity: i64, batch: Vec<Job>) {
    let backend = st.db.backend();
    let together = async {
        let mut tx = st.db.begin_write().await?;
        let out = match backend {
            // One statement for the whole batch: the row lock is held for one round trip.
            crate::platform::db::Backend::Postgres => {
                let members: Vec<i64> = batch.iter().map(|j| j.member).collect();
                // The jobs were queued moments apart; the batch is taken at the latest of them
                // (the truest "now" for the window check, which each passed on its own too).
                let now = batch.iter().map(|j| j.now).max().unwrap_or_default();
                match store::sign_up_batch_in(&mut tx, activity, &members, now).await? {
                    Some(landed) => landed.into_iter().map(Some).collect(),
                    None => vec![None; batch.len()],
                }
            }
            crate::platform::db::Backend::Sqlite => {
                let mut out = Vec::with_capacity(batch.len());
                for job in &batch {
                    out.push(
                        store::sign_up_in(&mut tx, backend, activity, job.member, job.now).await?,
                    );
                }
                out
            }
        };
        tx.commit().await?;
        Ok::<_, sqlx::Error>(out)
    };
    if batch.len() > 1 {
        if let Ok(landed) = together.await {
            for (job, l) in batch.into_iter().zip(landed) {
                let _ = job.reply.send(Ok(l));
            }
            return;
        }
    } else {
        drop(together);
    }
    for job in batch {
        let alone = async {
            let mut tx = st.db.begin_write().await?;
            let l = store::sign_up_in(&mut tx, backend, activity, job.member, job.now).await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(l)
        };
        let answer = match alone.await {
            Ok(l) => Ok(l),
            Err(sqlx::Error::Database(d)) if d.is_unique_violation() => Err(already_signed_up()),
            Err(e) => Err(e.into()),
        };
        let _ = job.reply.send(answer);
    }
}

fn already_signed_up() -> AppError {
    AppError::rejected(
        StatusCode::CONFLICT,
        "already_signed_up",
        "you are already signed up for this activity",
    )
}

/// Withdraw: a confirmed member's place goes to the first waitlisted member (exactly once: the
/// withdrawal and the promotion are one transaction under the activity's lock, each UPDATE
/// guarded by the state it expects).
pub async fn withdraw(st: &AppState, member: &MemberRow, id: i64) -> AppResult<Option<i64>> {
    visible(st, member, id).await?;
    let now = st.clock.unix_ms();
    let mut tx = st.db.begin_write().await?;
    let a = store::lock(&mut tx, st.db.backend(), id)
        .await?
        .ok_or_else(|| not_found(id))?;
    rules::may_withdraw(&a.times(), now).map_err(refused)?;
    let Some(s) = store::active_signup(&mut *tx, id, member.id).await? else {
        return Err(AppError::rejected(
            StatusCode::NOT_FOUND,
            "not_signed_up",
            "you are not signed up for this activity",
        ));
    };
    if !store::withdraw(&mut tx, s.id, &s.status, now).await? {
        return Err(AppError::Conflict("the sign-up changed; try again".into()));
    }
    store::release(&mut tx, id, &s.status).await?;
    let promoted = fill_from_waitlist(&mut tx, id, now).await?.first().copied();
    tx.commit().await?;
    Ok(promoted)
}

/// The outcome of a check-in.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct CheckedIn {
    /// present | late
    pub status: &'static str,
    pub checked_in_at: String,
}

/// Check in with the venue's ticket: genuine, this activity's, current or previous window; in
/// the check-in time; by a confirmed member (or, for a meeting, an audience member); once.
pub async fn check_in(
    st: &AppState,
    member: &MemberRow,
    id: i64,
    ticket: &str,
) -> AppResult<CheckedIn> {
    let a = visible(st, member, id).await?;
    let now = st.clock.unix_ms();
    rules::verify_ticket(&st.cipher.derive_key(TICKET_KEY_LABEL), ticket, id, now)
        .map_err(|e| AppError::rejected(StatusCode::UNPROCESSABLE_ENTITY, e.code(), e.message()))?;
    let status = rules::may_check_in(&a.times(), now).map_err(refused)?;
    if !is_expected(st, &a, member).await? {
        return Err(AppError::rejected(
            StatusCode::FORBIDDEN,
            "not_signed_up",
            "only confirmed sign-ups (or, for a meeting, its audience) check in",
        ));
    }
    if !store::check_in(&st.db, id, member.id, status, now).await? {
        return Err(AppError::rejected(
            StatusCode::CONFLICT,
            "already_checked_in",
            "you have already checked in",
        ));
    }
    Ok(CheckedIn {
        status: status.as_str(),
        checked_in_at: crate::platform::time::rfc3339_shanghai(now),
    })
}
