//! `/api/admin/activities`: create, list, show, update, cancel; the sign-up list and waitlist;
//! attendance (JSON or CSV) and manual marks; the venue's rotating check-in QR code; meeting
//! minutes; the 三会一课 rhythm per org unit and quarter. `Permission::ManageActivities`
//! (administrators, and secretaries for activities whose audience lies in their subtree).
//! Every write is audited in its transaction.

use std::collections::{BTreeMap, HashMap};

use axum::{
    extract::State,
    extract::{multipart::MultipartRejection, Multipart},
    http::{header, HeaderMap, Method, StatusCode},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;

use super::{
    rules::{self, time_field, Attendance, Fields, Kind, LeaveKind},
    service::{self, AttendanceLine, AttendanceSummary},
    store::{self, ActivityRow, ListFilter, Listed, PhotoRow},
};
use crate::{
    app::AppState,
    auth::{AdminSession, Permission},
    http::{extract::IdPair, page_of, routes::AdminRoutes, AppJson, AppQuery, Id, ListOut},
    members::store as members,
    platform::{
        audit,
        error::{AppError, AppResult},
        org::{self, OrgScope},
        time::rfc3339_shanghai,
    },
};

pub fn routes(r: AdminRoutes) -> AdminRoutes {
    let p = Permission::ManageActivities;
    r.post("/api/admin/activities", p, create)
        .get("/api/admin/activities", p, list)
        .get("/api/admin/activities/rhythm", p, rhythm)
        .get("/api/admin/activities/{id}", p, show)
        .patch("/api/admin/activities/{id}", p, update)
        .post("/api/admin/activities/{id}/cancel", p, cancel)
        .get("/api/admin/activities/{id}/signups", p, signups)
        .get("/api/admin/activities/{id}/attendance", p, attendance)
        .post("/api/admin/activities/{id}/attendance", p, mark)
        .get("/api/admin/activities/{id}/checkin-code", p, checkin_code)
        .post("/api/admin/activities/{id}/minutes", p, minutes)
        .route_with_limit(
            Method::POST,
            "/api/admin/activities/{id}/minutes/photos",
            p,
            Some(PHOTO_REQUEST_LIMIT),
            upload_photos,
        )
        .documented(|op, _| {
            op.body = Some(json!({"required": true, "description": "One or more image files (JPEG, PNG or WebP by their bytes), at most 5 MiB each, at most 20 per meeting.",
                "content": {"multipart/form-data": {"schema": {"type": "object", "properties": {
                    "photo": {"type": "string", "format": "binary"}}}}}}))
        })
        .get("/api/admin/activities/{id}/minutes/photos", p, list_photos)
        .get(
            "/api/admin/activities/{id}/minutes/photos/{photo_id}",
            p,
            get_photo,
        )
        .delete(
            "/api/admin/activities/{id}/minutes/photos/{photo_id}",
            p,
            delete_photo,
        )
}

/// The body of one photo upload: the photo and the multipart framing around it.
pub const PHOTO_REQUEST_LIMIT: usize = rules::MAX_PHOTO_BYTES + 256 * 1024;

// ---------------------------------------------------------------- shapes

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Counts {
    pub confirmed: i64,
    pub waitlisted: i64,
    pub checked_in: i64,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct MinutesOut {
    pub host: Option<String>,
    pub recorder: Option<String>,
    pub minutes: Option<String>,
    pub photos: Vec<String>,
    pub recorded_at: Option<String>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ActivityOut {
    pub id: i64,
    pub title: String,
    pub kind: Kind,
    pub description: String,
    pub location: String,
    pub capacity: i64,
    pub remaining: i64,
    pub starts_at: String,
    pub ends_at: Option<String>,
    pub signup_opens_at: String,
    pub signup_closes_at: String,
    /// open | cancelled
    pub status: String,
    pub cancelled_at: Option<String>,
    pub cancel_reason: Option<String>,
    pub audience_org_units: Vec<i64>,
    pub counts: Counts,
    pub remind_minutes: i64,
    pub reminded_at: Option<String>,
    pub meeting: Option<MinutesOut>,
    pub created_by: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

fn activity_out(l: Listed, audience: Vec<i64>) -> ActivityOut {
    let a = l.activity;
    let meeting = a.kind.is_meeting().then(|| MinutesOut {
        host: a.host,
        recorder: a.recorder,
        minutes: a.minutes,
        photos: a.photos,
        recorded_at: a.minutes_at.map(rfc3339_shanghai),
    });
    ActivityOut {
        id: a.id,
        title: a.title,
        kind: a.kind,
        description: a.description,
        location: a.location,
        capacity: a.capacity,
        remaining: a.capacity - a.confirmed_count,
        starts_at: rfc3339_shanghai(a.starts_at),
        ends_at: a.ends_at.map(rfc3339_shanghai),
        signup_opens_at: rfc3339_shanghai(a.signup_opens_at),
        signup_closes_at: rfc3339_shanghai(a.signup_closes_at),
        status: a.status,
        cancelled_at: a.cancelled_at.map(rfc3339_shanghai),
        cancel_reason: a.cancel_reason,
        audience_org_units: audience,
        counts: Counts {
            confirmed: a.confirmed_count,
            waitlisted: l.waitlisted,
            checked_in: l.checked_in,
        },
        remind_minutes: a.remind_minutes,
        reminded_at: a.reminded_at.map(rfc3339_shanghai),
        meeting,
        created_by: a.created_by,
        created_at: rfc3339_shanghai(a.created_at),
        updated_at: rfc3339_shanghai(a.updated_at),
    }
}

pub(super) async fn one(st: &AppState, id: i64) -> AppResult<ActivityOut> {
    let l = store::listed_one(&st.db, id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("activity {id}")))?;
    let audience = store::audience(&st.db, id).await?;
    Ok(activity_out(l, audience))
}

// ---------------------------------------------------------------- create / update

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct CreateIn {
    #[schemars(length(min = 1, max = 200), regex(pattern = r"\S"))]
    title: String,
    #[schemars(range(min = 1, max = crate::activities::rules::MAX_CAPACITY))]
    capacity: i64,
    #[schemars(schema_with = "crate::http::doc::date_time")]
    starts_at: String,
    #[schemars(schema_with = "crate::http::doc::date_time")]
    signup_opens_at: String,
    #[schemars(schema_with = "crate::http::doc::date_time")]
    signup_closes_at: String,
    #[serde(default)]
    #[schemars(schema_with = "crate::http::doc::date_time")]
    ends_at: Option<String>,
    #[serde(default)]
    #[schemars(length(max = 200))]
    location: Option<String>,
    #[serde(default)]
    #[schemars(length(max = 20000))]
    description: Option<String>,
    #[serde(default)]
    kind: Option<Kind>,
    #[serde(default)]
    audience_org_units: Option<Vec<i64>>,
    /// Minutes before the start at which confirmed members are reminded (0: none; default 60).
    #[serde(default)]
    #[schemars(range(min = 0, max = crate::activities::rules::MAX_REMIND_MINUTES))]
    remind_minutes: Option<i64>,
}

fn opt_time(field: &str, v: Option<&str>) -> AppResult<Option<i64>> {
    match v.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => time_field(field, s).map(Some).map_err(AppError::Validation),
    }
}

fn req_time(field: &str, v: &str) -> AppResult<i64> {
    time_field(field, v).map_err(AppError::Validation)
}

/// `POST /api/admin/activities` → 201 with the activity.
async fn create(
    State(st): State<AppState>,
    session: AdminSession,
    AppJson(body): AppJson<CreateIn>,
) -> AppResult<(StatusCode, AppJson<ActivityOut>)> {
    let fields = Fields {
        title: body.title,
        kind: body.kind.unwrap_or(Kind::Activity),
        description: body.description.unwrap_or_default(),
        location: body.location.unwrap_or_default(),
        capacity: body.capacity,
        starts_at: req_time("starts_at", &body.starts_at)?,
        ends_at: opt_time("ends_at", body.ends_at.as_deref())?,
        signup_opens_at: req_time("signup_opens_at", &body.signup_opens_at)?,
        signup_closes_at: req_time("signup_closes_at", &body.signup_closes_at)?,
        remind_minutes: body.remind_minutes.unwrap_or(60),
        audience: body.audience_org_units.unwrap_or_default(),
    };
    let id = service::create(&st, &session, fields).await?;
    Ok((StatusCode::CREATED, AppJson(one(&st, id).await?)))
}

/// `Some(None)` for an explicit null, `None` when the key is absent.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct UpdateIn {
    title: Option<String>,
    capacity: Option<i64>,
    starts_at: Option<String>,
    signup_opens_at: Option<String>,
    signup_closes_at: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    ends_at: Option<Option<String>>,
    location: Option<String>,
    description: Option<String>,
    kind: Option<Kind>,
    audience_org_units: Option<Vec<i64>>,
    remind_minutes: Option<i64>,
}

/// `PATCH /api/admin/activities/{id}`: the fields given change; capacity may not drop below the
/// confirmed count; a larger capacity promotes from the waitlist.
async fn update(
    State(st): State<AppState>,
    session: AdminSession,
    Id(id): Id,
    AppJson(body): AppJson<UpdateIn>,
) -> AppResult<AppJson<ActivityOut>> {
    service::update(&st, &session, id, |f| {
        if let Some(v) = body.title {
            f.title = v;
        }
        if let Some(v) = body.capacity {
            f.capacity = v;
        }
        if let Some(v) = &body.starts_at {
            f.starts_at = req_time("starts_at", v)?;
        }
        if let Some(v) = &body.signup_opens_at {
            f.signup_opens_at = req_time("signup_opens_at", v)?;
        }
        if let Some(v) = &body.signup_closes_at {
            f.signup_closes_at = req_time("signup_closes_at", v)?;
        }
        if let Some(v) = &body.ends_at {
            f.ends_at = opt_time("ends_at", v.as_deref())?;
        }
        if let Some(v) = body.location {
            f.location = v;
        }
        if let Some(v) = body.description {
            f.description = v;
        }
        if let Some(v) = body.kind {
            f.kind = v;
        }
        if let Some(v) = body.audience_org_units {
            f.audience = v;
        }
        if let Some(v) = body.remind_minutes {
            f.remind_minutes = v;
        }
        Ok(())
    })
    .await?;
    Ok(AppJson(one(&st, id).await?))
}

#[derive(Debug, Default, Deserialize)]
pub struct CancelIn {
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct CancelOut {
    #[serde(flatten)]
    activity: ActivityOut,
    /// Members told of the cancellation (recorded notices).
    notified: u64,
}

/// `POST /api/admin/activities/{id}/cancel {"reason"?}`: every signed-up member is told.
async fn cancel(
    State(st): State<AppState>,
    session: AdminSession,
    Id(id): Id,
    body: axum::body::Bytes,
) -> AppResult<AppJson<CancelOut>> {
    // The body is optional: none, or {"reason"}.
    let body: CancelIn = if body.iter().all(u8::is_ascii_whitespace) {
        CancelIn::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            if e.is_syntax() || e.is_eof() {
                AppError::rejected(
                    StatusCode::BAD_REQUEST,
                    "bad_json",
                    "the body is not valid JSON",
                )
            } else {
                AppError::Validation(crate::http::json::sanitize(&e.to_string()))
            }
        })?
    };
    let reason = body
        .reason
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty());
    if reason.as_ref().is_some_and(|r| r.chars().count() > 500) {
        return Err(AppError::Validation(
            "reason: at most 500 characters".into(),
        ));
    }
    let notified = service::cancel(&st, &session, id, reason.as_deref()).await?;
    Ok(AppJson(CancelOut {
        activity: one(&st, id).await?,
        notified,
    }))
}

// ---------------------------------------------------------------- reads

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub struct ListQuery {
    #[serde(default)]
    #[schemars(schema_with = "crate::http::doc::page")]
    page: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "crate::http::doc::page_size_100")]
    page_size: Option<String>,
    #[schemars(extend("enum" = ["activity", "branch_general_meeting", "branch_committee_meeting", "party_group_meeting", "party_lecture", "theme_day"]))]
    kind: Option<String>,
    #[schemars(extend("enum" = ["open", "cancelled"]))]
    status: Option<String>,
    org_unit: Option<String>,
}

/// The list's filters from their query values (blank: no filter): a kind, `open` or
/// `cancelled`, an org unit by name or id (its subtree).
pub(super) async fn list_filter(
    st: &AppState,
    kind: Option<&str>,
    status: Option<&str>,
    org_unit: Option<&str>,
) -> AppResult<ListFilter> {
    fn blank(v: Option<&str>) -> Option<&str> {
        v.map(str::trim).filter(|v| !v.is_empty())
    }
    let kind = match blank(kind) {
        None => None,
        Some(k) => Some(Kind::parse(k).ok_or_else(|| {
            AppError::Validation(
                "kind: activity, branch_general_meeting, branch_committee_meeting, party_group_meeting, party_lecture or theme_day".into(),
            )
        })?),
    };
    let status = match blank(status) {
        None => None,
        Some("open") => Some("open"),
        Some("cancelled") => Some("cancelled"),
        Some(_) => return Err(AppError::Validation("status: open or cancelled".into())),
    };
    let units = match blank(org_unit) {
        None => None,
        Some(u) => {
            let unit = match u.parse::<i64>() {
                Ok(id) => org::get(&st.db, id).await?,
                Err(_) => org::find_by_name(st.db.pool(), u).await?,
            }
            .ok_or_else(|| AppError::Validation(format!("org_unit: no org unit {u}")))?;
            Some(org::subtree_ids(&st.db, unit.id).await?)
        }
    };
    Ok(ListFilter {
        kind,
        status,
        units,
    })
}

/// A page of activities in the session's scope, with their audiences.
pub(super) async fn page_of_activities(
    st: &AppState,
    scope: &OrgScope,
    filter: &ListFilter,
    page: crate::platform::db::Page,
) -> AppResult<(Vec<ActivityOut>, i64)> {
    let (rows, total) = store::list(&st.db, scope, filter, page).await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.activity.id).collect();
    let mut audiences = store::audiences(&st.db, &ids).await?;
    let items = rows
        .into_iter()
        .map(|l| {
            let audience = audiences.remove(&l.activity.id).unwrap_or_default();
            activity_out(l, audience)
        })
        .collect();
    Ok((items, total))
}

/// `GET /api/admin/activities?page=&page_size=&kind=&status=&org_unit=`: newest start first,
/// with counts.
async fn list(
    State(st): State<AppState>,
    session: AdminSession,
    AppQuery(q): AppQuery<ListQuery>,
) -> AppResult<AppJson<ListOut<ActivityOut>>> {
    let page = page_of(&q.page, &q.page_size, 100)?;
    let scope = session.org_scope(&st.db).await?;
    let filter = list_filter(
        &st,
        q.kind.as_deref(),
        q.status.as_deref(),
        q.org_unit.as_deref(),
    )
    .await?;
    let (items, total) = page_of_activities(&st, &scope, &filter, page).await?;
    Ok(AppJson(ListOut {
        items,
        page: page.number,
        page_size: page.size,
        total,
    }))
}

async fn show(
    State(st): State<AppState>,
    session: AdminSession,
    Id(id): Id,
) -> AppResult<AppJson<ActivityOut>> {
    service::manageable(&st, &session, id).await?;
    Ok(AppJson(one(&st, id).await?))
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct SignupLine {
    pub signup_id: i64,
    pub member_id: i64,
    pub name: String,
    pub org_unit: String,
    /// The sign-up's number in arrival order.
    pub seq: i64,
    /// Waitlist only: 1-based place.
    pub position: Option<i64>,
    pub signed_up_at: String,
    pub confirmed_at: Option<String>,
    pub promoted: bool,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct SignupsOut {
    pub activity_id: i64,
    pub capacity: i64,
    pub confirmed: Vec<SignupLine>,
    pub waitlist: Vec<SignupLine>,
}

/// `GET /api/admin/activities/{id}/signups`: confirmed, then the waitlist in order.
async fn signups(
    State(st): State<AppState>,
    session: AdminSession,
    Id(id): Id,
) -> AppResult<AppJson<SignupsOut>> {
    let (a, _) = service::manageable(&st, &session, id).await?;
    Ok(AppJson(signups_of(&st, &a).await?))
}

/// The confirmed sign-ups and the waitlist (in order, with places) of an activity.
pub(super) async fn signups_of(st: &AppState, a: &ActivityRow) -> AppResult<SignupsOut> {
    let id = a.id;
    let rows = store::active_signups(&st.db, id).await?;
    let ids: Vec<i64> = rows.iter().map(|s| s.member_id).collect();
    let people: HashMap<i64, members::MemberRow> = members::by_ids(&st.db, &ids)
        .await?
        .into_iter()
        .map(|m| (m.id, m))
        .collect();
    let mut out = SignupsOut {
        activity_id: id,
        capacity: a.capacity,
        confirmed: Vec::new(),
        waitlist: Vec::new(),
    };
    for s in rows {
        let m = people.get(&s.member_id);
        let mut line = SignupLine {
            signup_id: s.id,
            member_id: s.member_id,
            name: m.map_or_else(|| "(deleted member)".into(), |m| m.name.clone()),
            org_unit: m.map(|m| m.org_unit.clone()).unwrap_or_default(),
            seq: s.seq,
            position: None,
            signed_up_at: rfc3339_shanghai(s.created_at),
            confirmed_at: s.confirmed_at.map(rfc3339_shanghai),
            promoted: s.promoted_at.is_some(),
        };
        if s.status == "confirmed" {
            out.confirmed.push(line);
        } else {
            line.position = Some(out.waitlist.len() as i64 + 1);
            out.waitlist.push(line);
        }
    }
    Ok(out)
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub struct AttendanceQuery {
    #[serde(default)]
    #[schemars(schema_with = "crate::http::doc::json_or_csv")]
    format: Option<String>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct AttendanceOut {
    pub activity_id: i64,
    pub kind: Kind,
    pub summary: AttendanceSummary,
    pub items: Vec<AttendanceLine>,
}

fn wants_csv(q: &AttendanceQuery, headers: &HeaderMap) -> AppResult<bool> {
    match q.format.as_deref().map(str::trim) {
        Some("csv") => Ok(true),
        Some("json") => Ok(false),
        None | Some("") => Ok(headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/csv"))),
        Some(_) => Err(AppError::BadRequest("format: csv or json".into())),
    }
}

/// `GET /api/admin/activities/{id}/attendance` (JSON; CSV with `?format=csv` or
/// `Accept: text/csv`, the export being audited).
async fn attendance(
    State(st): State<AppState>,
    session: AdminSession,
    Id(id): Id,
    AppQuery(q): AppQuery<AttendanceQuery>,
    headers: HeaderMap,
) -> AppResult<Response> {
    let csv = wants_csv(&q, &headers)?;
    let (a, _) = service::manageable(&st, &session, id).await?;
    let (items, summary) = service::attendance_sheet(&st, &a).await?;
    if !csv {
        return Ok(AppJson(AttendanceOut {
            activity_id: id,
            kind: a.kind,
            summary,
            items,
        })
        .into_response());
    }
    let body = attendance_csv(&a, &items)?;
    audit::record(
        st.db.pool(),
        &session
            .audit("activity.attendance_export", "activity", id)
            .details(json!({"rows": items.len()})),
    )
    .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"activity-{id}-attendance.csv\""),
            ),
        ],
        body,
    )
        .into_response())
}

fn attendance_csv(a: &ActivityRow, items: &[AttendanceLine]) -> AppResult<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let csv_err = |e: csv::Error| AppError::Internal(e.into());
    w.write_record([
        "activity_id",
        "member_id",
        "name",
        "org_unit",
        "status",
        "leave_kind",
        "reason",
        "source",
        "checked_in_at",
        "marked_by",
    ])
    .map_err(csv_err)?;
    let activity_id = a.id.to_string();
    for l in items {
        let member_id = l.member_id.to_string();
        w.write_record([
            activity_id.as_str(),
            member_id.as_str(),
            &neutralise(&l.name),
            &neutralise(&l.org_unit),
            l.status.as_str(),
            l.leave_kind.as_deref().unwrap_or(""),
            &neutralise(l.reason.as_deref().unwrap_or("")),
            l.source.as_str(),
            l.checked_in_at.as_deref().unwrap_or(""),
            &neutralise(l.marked_by.as_deref().unwrap_or("")),
        ])
        .map_err(csv_err)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| AppError::Internal(anyhow::anyhow!("csv: {e}")))?;
    // A BOM, so that spreadsheet programs read the Chinese names as UTF-8.
    Ok(format!("\u{feff}{}", String::from_utf8_lossy(&bytes)))
}

/// A cell a spreadsheet would run as a formula gets a leading quote (CSV injection).
fn neutralise(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct MarkIn {
    member_id: i64,
    status: Attendance,
    #[serde(default)]
    leave_kind: Option<LeaveKind>,
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /api/admin/activities/{id}/attendance {"member_id","status","leave_kind"?,"reason"?}`.
async fn mark(
    State(st): State<AppState>,
    session: AdminSession,
    Id(id): Id,
    AppJson(body): AppJson<MarkIn>,
) -> AppResult<AppJson<AttendanceOut>> {
    service::mark_attendance(
        &st,
        &session,
        id,
        body.member_id,
        body.status,
        body.leave_kind,
        body.reason.as_deref(),
    )
    .await?;
    let (a, _) = service::manageable(&st, &session, id).await?;
    let (items, summary) = service::attendance_sheet(&st, &a).await?;
    Ok(AppJson(AttendanceOut {
        activity_id: id,
        kind: a.kind,
        summary,
        items,
    }))
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct CheckinCodeOut {
    pub activity_id: i64,
    /// What the QR code holds; the mini-program posts it to `/api/mp/activities/{id}/checkin`.
    pub ticket: String,
    /// Show the next code from this time (a new code every `window_seconds`).
    pub refresh_at: String,
    /// This ticket is refused from this time on.
    pub expires_at: String,
    pub window_seconds: i64,
    /// The QR code as an SVG document.
    pub svg: String,
}

/// `GET /api/admin/activities/{id}/checkin-code`: the venue's rotating QR code.
async fn checkin_code(
    State(st): State<AppState>,
    session: AdminSession,
    Id(id): Id,
) -> AppResult<AppJson<CheckinCodeOut>> {
    let (a, _) = service::manageable(&st, &session, id).await?;
    if a.status == "cancelled" {
        return Err(AppError::rejected(
            StatusCode::CONFLICT,
            "activity_cancelled",
            "the activity has been cancelled",
        ));
    }
    let t = service::ticket(&st, id);
    let svg = service::qr_svg(&t.text)?;
    Ok(AppJson(CheckinCodeOut {
        activity_id: id,
        ticket: t.text,
        refresh_at: rfc3339_shanghai(t.refresh_at),
        expires_at: rfc3339_shanghai(t.expires_at),
        window_seconds: rules::TICKET_WINDOW_MS / 1000,
        svg,
    }))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct MinutesIn {
    #[schemars(length(min = 1, max = 50), regex(pattern = r"\S"))]
    host: String,
    #[schemars(length(min = 1, max = 50), regex(pattern = r"\S"))]
    recorder: String,
    #[schemars(length(min = 1, max = 50000), regex(pattern = r"\S"))]
    minutes: String,
    #[serde(default)]
    #[schemars(length(min = 0, max = 20))]
    #[schemars(inner(length(max = 1000), regex(pattern = r"^https?://")))]
    photos: Vec<String>,
}

/// `POST /api/admin/activities/{id}/minutes {"host","recorder","minutes","photos"?:[url]}`.
async fn minutes(
    State(st): State<AppState>,
    session: AdminSession,
    Id(id): Id,
    AppJson(body): AppJson<MinutesIn>,
) -> AppResult<AppJson<ActivityOut>> {
    let m = rules::validate_minutes(&body.host, &body.recorder, &body.minutes, &body.photos)
        .map_err(AppError::Validation)?;
    service::record_minutes(
        &st,
        &session,
        id,
        &m.host,
        &m.recorder,
        &m.minutes,
        &body.photos,
    )
    .await?;
    Ok(AppJson(one(&st, id).await?))
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub struct RhythmQuery {
    #[schemars(regex(pattern = r"^[0-9]{4}Q[1-4]$"))]
    quarter: Option<String>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct KindCount {
    /// Open meetings of this kind for the unit that started before now in the quarter.
    pub held: i64,
    /// Open meetings still to come in the quarter.
    pub scheduled: i64,
    /// What the rhythm asks per quarter.
    pub required: i64,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct UnitRhythm {
    pub org_unit: crate::platform::org::OrgUnit,
    pub kinds: BTreeMap<&'static str, KindCount>,
    /// Every kind held at least as often as required.
    pub complete: bool,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct RhythmOut {
    pub quarter: String,
    pub from: String,
    pub until: String,
    pub units: Vec<UnitRhythm>,
}

/// `GET /api/admin/activities/rhythm?quarter=2026Q4` (default: the current quarter): per org
/// unit, meetings held against the 三会一课 rhythm (counted on each meeting's audience units).
async fn rhythm(
    State(st): State<AppState>,
    session: AdminSession,
    AppQuery(q): AppQuery<RhythmQuery>,
) -> AppResult<AppJson<RhythmOut>> {
    Ok(AppJson(
        rhythm_report(&st, &session, q.quarter.as_deref()).await?,
    ))
}

/// The rhythm of `quarter` (`2026Q4`; blank: the current one) for the session's org units.
pub(super) async fn rhythm_report(
    st: &AppState,
    session: &AdminSession,
    quarter: Option<&str>,
) -> AppResult<RhythmOut> {
    let quarter = match quarter.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => s.to_ascii_uppercase(),
        None => rules::quarter_of(st.clock.unix_ms()),
    };
    let (from, until) = rules::parse_quarter(&quarter)
        .ok_or_else(|| AppError::Validation("quarter: a year and quarter such as 2026Q4".into()))?;
    let scope = session.org_scope(&st.db).await?;
    let units = service::rhythm(st, &scope, from, until)
        .await?
        .into_iter()
        .map(|(unit, counts)| {
            let mut complete = true;
            let kinds = Kind::RHYTHM
                .iter()
                .map(|k| {
                    let (held, scheduled) = counts.get(k).copied().unwrap_or((0, 0));
                    let required = k.required_per_quarter().unwrap_or(0);
                    complete &= held >= required;
                    (
                        k.as_str(),
                        KindCount {
                            held,
                            scheduled,
                            required,
                        },
                    )
                })
                .collect();
            UnitRhythm {
                org_unit: unit,
                kinds,
                complete,
            }
        })
        .collect();
    Ok(RhythmOut {
        quarter,
        from: rfc3339_shanghai(from),
        until: rfc3339_shanghai(until),
        units,
    })
}

// ---------------------------------------------------------------- minutes photos

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct PhotoOut {
    pub id: i64,
    pub activity_id: i64,
    pub content_type: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub uploaded_by: String,
    pub uploaded_at: String,
    /// Where the image is served (signed-in console users and API clients only).
    pub url: String,
}

pub(super) fn photo_out(p: PhotoRow) -> PhotoOut {
    PhotoOut {
        url: format!(
            "/api/admin/activities/{}/minutes/photos/{}",
            p.activity_id, p.id
        ),
        id: p.id,
        activity_id: p.activity_id,
        content_type: p.content_type,
        size_bytes: p.size_bytes,
        sha256: p.sha256,
        uploaded_by: p.uploaded_by,
        uploaded_at: rfc3339_shanghai(p.uploaded_at),
    }
}

/// The files of a `multipart/form-data` upload (every part with a file name; other fields such
/// as the console's `csrf` are skipped). A body over the route's limit is 413, anything that is
/// not multipart 415, a broken body 400 — all in the one error shape.
pub(super) async fn photo_files(
    multipart: Result<Multipart, MultipartRejection>,
) -> AppResult<Vec<Vec<u8>>> {
    let too_large = |status: StatusCode| status == StatusCode::PAYLOAD_TOO_LARGE;
    let mut multipart = multipart.map_err(|e| {
        if too_large(e.status()) {
            AppError::PayloadTooLarge
        } else {
            AppError::rejected(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the photo as multipart/form-data",
            )
        }
    })?;
    let broken = |e: axum::extract::multipart::MultipartError| {
        if too_large(e.status()) {
            AppError::PayloadTooLarge
        } else {
            AppError::BadRequest("could not read the multipart body".into())
        }
    };
    let mut files = Vec::new();
    while let Some(field) = multipart.next_field().await.map_err(broken)? {
        if field.file_name().is_none() {
            continue;
        }
        let bytes = field.bytes().await.map_err(broken)?;
        if bytes.len() > rules::MAX_PHOTO_BYTES {
            return Err(AppError::PayloadTooLarge);
        }
        files.push(bytes.to_vec());
    }
    Ok(files)
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct PhotosOut {
    pub items: Vec<PhotoOut>,
    pub total: usize,
    pub max: i64,
}

/// `POST /api/admin/activities/{id}/minutes/photos` (multipart, one or more image files, each
/// JPEG, PNG or WebP by its bytes, at most 5 MiB; at most 20 per meeting) → 201 with the
/// meeting's photos.
async fn upload_photos(
    State(st): State<AppState>,
    session: AdminSession,
    Id(id): Id,
    multipart: Result<Multipart, MultipartRejection>,
) -> AppResult<(StatusCode, AppJson<PhotosOut>)> {
    // Unknown or foreign activity first: nothing of the body matters then.
    service::manageable(&st, &session, id).await?;
    let files = photo_files(multipart).await?;
    service::add_photos(&st, &session, id, &files).await?;
    Ok((
        StatusCode::CREATED,
        AppJson(photos_out(&st, &session, id).await?),
    ))
}

async fn photos_out(st: &AppState, session: &AdminSession, id: i64) -> AppResult<PhotosOut> {
    let items: Vec<PhotoOut> = service::photos(st, session, id)
        .await?
        .into_iter()
        .map(photo_out)
        .collect();
    Ok(PhotosOut {
        total: items.len(),
        items,
        max: rules::MAX_PHOTOS,
    })
}

/// `GET /api/admin/activities/{id}/minutes/photos`
async fn list_photos(
    State(st): State<AppState>,
    session: AdminSession,
    Id(id): Id,
) -> AppResult<AppJson<PhotosOut>> {
    Ok(AppJson(photos_out(&st, &session, id).await?))
}

/// A photo as an HTTP response: its own content type, never sniffed, never cached by others.
pub(super) fn photo_response(meta: &PhotoRow, bytes: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, meta.content_type.clone()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
            (header::CACHE_CONTROL, "private, no-store".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "inline; filename=\"activity-{}-photo-{}\"",
                    meta.activity_id, meta.id
                ),
            ),
        ],
        bytes,
    )
        .into_response()
}

/// `GET /api/admin/activities/{id}/minutes/photos/{photo_id}`: the image.
async fn get_photo(
    State(st): State<AppState>,
    session: AdminSession,
    IdPair(id, photo_id): IdPair,
) -> AppResult<Response> {
    let (meta, bytes) = service::photo(&st, &session, id, photo_id).await?;
    Ok(photo_response(&meta, bytes))
}

/// `DELETE /api/admin/activities/{id}/minutes/photos/{photo_id}` → 204.
async fn delete_photo(
    State(st): State<AppState>,
    session: AdminSession,
    IdPair(id, photo_id): IdPair,
) -> AppResult<StatusCode> {
    service::delete_photo(&st, &session, id, photo_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
