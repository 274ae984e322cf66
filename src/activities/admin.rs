//! `/api/admin/activities`: create, list, show, update, cancel; the sign-up list and waitlist;
//! attendance (JSON or CSV) and manual marks; the venue's rotating check-in QR code; meeting
//! minutes; the 三会一课 rhythm per org unit and quarter. `Permission::ManageActivities`
//! (administrators, and secretaries for activities whose audience lies in their subtree).
//! Every write is audited in its transaction.

use std::collections::{BTreeMap, HashMap};

use axum::{
    extract::State,
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;

use super::{
    rules::{self, time_field, Attendance, Fields, Kind, LeaveKind},
    service::{self, AttendanceLine, AttendanceSummary},
    store::{self, ActivityRow, Listed},
};
use crate::{
    app::AppState,
    auth::{AdminSession, Permission},
    http::{page_of, routes::AdminRoutes, AppJson, AppQuery, Id, ListOut},
    members::store as members,
    platform::{
        audit,
        error::{AppError, AppResult},
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
}

// ---------------------------------------------------------------- shapes

#[derive(Debug, Serialize)]
pub struct Counts {
    pub confirmed: i64,
    pub waitlisted: i64,
    pub checked_in: i64,
}

#[derive(Debug, Serialize)]
pub struct MinutesOut {
    pub host: Option<String>,
    pub recorder: Option<String>,
    pub minutes: Option<String>,
    pub photos: Vec<String>,
    pub recorded_at: Option<String>,
}

#[derive(Debug, Serialize)]
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

async fn one(st: &AppState, id: i64) -> AppResult<ActivityOut> {
    let l = store::listed_one(&st.db, id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("activity {id}")))?;
    let audience = store::audience(&st.db, id).await?;
    Ok(activity_out(l, audience))
}

// ---------------------------------------------------------------- create / update

#[derive(Debug, Deserialize)]
pub struct CreateIn {
    title: String,
    capacity: i64,
    starts_at: String,
    signup_opens_at: String,
    signup_closes_at: String,
    #[serde(default)]
    ends_at: Option<String>,
    #[serde(default)]
    location: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    kind: Option<Kind>,
    #[serde(default)]
    audience_org_units: Option<Vec<i64>>,
    /// Minutes before the start at which confirmed members are reminded (0: none; default 60).
    #[serde(default)]
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

#[derive(Debug, Deserialize)]
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

#[derive(Debug, Serialize)]
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

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    page: Option<String>,
    page_size: Option<String>,
}

/// `GET /api/admin/activities?page=&page_size=`: newest start first, with counts.
async fn list(
    State(st): State<AppState>,
    session: AdminSession,
    AppQuery(q): AppQuery<ListQuery>,
) -> AppResult<AppJson<ListOut<ActivityOut>>> {
    let page = page_of(&q.page, &q.page_size, 100)?;
    let scope = session.org_scope(&st.db).await?;
    let (rows, total) = store::list(&st.db, &scope, page).await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.activity.id).collect();
    let mut audiences = store::audiences(&st.db, &ids).await?;
    let items = rows
        .into_iter()
        .map(|l| {
            let audience = audiences.remove(&l.activity.id).unwrap_or_default();
            activity_out(l, audience)
        })
        .collect();
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

#[derive(Debug, Serialize)]
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

#[derive(Debug, Serialize)]
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
    Ok(AppJson(out))
}

#[derive(Debug, Default, Deserialize)]
pub struct AttendanceQuery {
    format: Option<String>,
}

#[derive(Debug, Serialize)]
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

#[derive(Debug, Deserialize)]
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

#[derive(Debug, Serialize)]
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

#[derive(Debug, Deserialize)]
pub struct MinutesIn {
    host: String,
    recorder: String,
    minutes: String,
    #[serde(default)]
    photos: Vec<String>,
}

/// `POST /api/admin/activities/{id}/minutes {"host","recorder","minutes","photos"?:[url]}`.
async fn minutes(
    State(st): State<AppState>,
    session: AdminSession,
    Id(id): Id,
    AppJson(body): AppJson<MinutesIn>,
) -> AppResult<AppJson<ActivityOut>> {
    let short = |field: &str, v: &str| -> AppResult<String> {
        let v = v.trim();
        if v.is_empty() || v.chars().count() > 50 {
            return Err(AppError::Validation(format!(
                "{field}: a name of 1 to 50 characters"
            )));
        }
        Ok(v.to_owned())
    };
    let host = short("host", &body.host)?;
    let recorder = short("recorder", &body.recorder)?;
    let text = body.minutes.trim();
    if text.is_empty() || text.chars().count() > 50_000 {
        return Err(AppError::Validation(
            "minutes: 1 to 50000 characters".into(),
        ));
    }
    if body.photos.len() > 20
        || body
            .photos
            .iter()
            .any(|p| !(p.starts_with("https://") || p.starts_with("http://")) || p.len() > 1000)
    {
        return Err(AppError::Validation(
            "photos: at most 20 http(s) URLs".into(),
        ));
    }
    service::record_minutes(&st, &session, id, &host, &recorder, text, &body.photos).await?;
    Ok(AppJson(one(&st, id).await?))
}

#[derive(Debug, Default, Deserialize)]
pub struct RhythmQuery {
    quarter: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct KindCount {
    /// Open meetings of this kind for the unit that started before now in the quarter.
    pub held: i64,
    /// Open meetings still to come in the quarter.
    pub scheduled: i64,
    /// What the rhythm asks per quarter.
    pub required: i64,
}

#[derive(Debug, Serialize)]
pub struct UnitRhythm {
    pub org_unit: crate::platform::org::OrgUnit,
    pub kinds: BTreeMap<&'static str, KindCount>,
    /// Every kind held at least as often as required.
    pub complete: bool,
}

#[derive(Debug, Serialize)]
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
    let quarter = match q
        .quarter
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        Some(s) => s.to_ascii_uppercase(),
        None => rules::quarter_of(st.clock.unix_ms()),
    };
    let (from, until) = rules::parse_quarter(&quarter)
        .ok_or_else(|| AppError::Validation("quarter: a year and quarter such as 2026Q4".into()))?;
    let scope = session.org_scope(&st.db).await?;
    let units = service::rhythm(&st, &scope, from, until)
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
    Ok(AppJson(RhythmOut {
        quarter,
        from: rfc3339_shanghai(from),
        until: rfc3339_shanghai(until),
        units,
    }))
}
