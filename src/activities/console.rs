//! `/admin/activities`: the secretaries' pages — the list with filters and counts, the form to
//! create or edit an activity (field errors beside the fields), cancellation, an activity's page
//! (sign-ups, the waitlist in order, the attendance sheet with marks, minutes and their photos,
//! the attendance CSV), the venue's check-in page (the rotating QR code, refreshed by
//! `console.js`) and the 三会一课 rhythm report. Everything goes through `activities::service`
//! and the same scope rules as the admin API (`Permission::ManageActivities`; a secretary only
//! for activities whose audience lies in their subtree).

use std::collections::{BTreeMap, HashMap};

use axum::{
    extract::{multipart::MultipartRejection, Multipart, Path, Query, State},
    http::HeaderMap,
    response::Response,
};
use serde::{Deserialize, Serialize};

use super::{
    admin,
    rules::{self, Attendance, Fields, Kind, LeaveKind},
    service,
    store::ActivityRow,
};
use crate::{
    app::AppState,
    auth::{ConsoleSession, Permission},
    http::console::{
        self, field_errors, local_input, pager, parse_local, redirect_error, redirect_flash,
    },
    http::{page_of, Id},
    platform::error::{AppError, AppResult},
    platform::{org, time::local_minute},
};

const NAV: &str = "activities";

/// Chinese names of the kinds, in the order the forms list them.
const KINDS: [(&str, &str); 6] = [
    ("activity", "一般活动"),
    ("branch_general_meeting", "支部党员大会"),
    ("branch_committee_meeting", "支部委员会会议"),
    ("party_group_meeting", "党小组会"),
    ("party_lecture", "党课"),
    ("theme_day", "主题党日"),
];

fn kind_name(k: Kind) -> &'static str {
    KINDS
        .iter()
        .find(|(key, _)| *key == k.as_str())
        .map_or("", |(_, name)| name)
}

/// The org units a session may choose (a secretary's subtree; everything for administrators).
async fn units_in_scope(st: &AppState, session: &ConsoleSession) -> AppResult<Vec<org::OrgUnit>> {
    let scope = session.org_scope(&st.db).await?;
    Ok(org::list(&st.db)
        .await?
        .into_iter()
        .filter(|u| scope.contains(u.id))
        .collect())
}

/// The activity's id from a two-part path (`{id}/…/{sub}`), anything else not found.
fn ids(p: Path<(String, String)>) -> AppResult<(i64, String)> {
    let Path((id, sub)) = p;
    let id = id
        .parse()
        .map_err(|_| AppError::NotFound("activity".into()))?;
    Ok((id, sub))
}

fn to(id: i64) -> String {
    format!("/admin/activities/{id}")
}

// ---------------------------------------------------------------- list

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub org_unit: Option<String>,
    #[serde(default)]
    pub page: Option<String>,
}

#[derive(Serialize)]
struct Row {
    id: i64,
    title: String,
    kind: &'static str,
    status: String,
    starts: String,
    location: String,
    confirmed: i64,
    capacity: i64,
    waitlisted: i64,
    checked_in: i64,
}

pub async fn list(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
    Query(q): Query<ListQuery>,
) -> AppResult<Response> {
    session.require(Permission::ManageActivities)?;
    let page = page_of(&q.page, &None, 100)?;
    let scope = session.org_scope(&st.db).await?;
    let filter = admin::list_filter(
        &st,
        q.kind.as_deref(),
        q.status.as_deref(),
        q.org_unit.as_deref(),
    )
    .await?;
    let (items, total) = admin::page_of_activities(&st, &scope, &filter, page).await?;
    let rows: Vec<Row> = items
        .into_iter()
        .map(|a| Row {
            id: a.id,
            title: a.title,
            kind: kind_name(a.kind),
            status: a.status,
            starts: local_of(&a.starts_at),
            location: a.location,
            confirmed: a.counts.confirmed,
            capacity: a.capacity,
            waitlisted: a.counts.waitlisted,
            checked_in: a.counts.checked_in,
        })
        .collect();
    let (kind, status, unit) = (
        q.kind.unwrap_or_default(),
        q.status.unwrap_or_default(),
        q.org_unit.unwrap_or_default(),
    );
    let pager = pager(
        page,
        total,
        &[("kind", &kind), ("status", &status), ("org_unit", &unit)],
    );
    let units = units_in_scope(&st, &session).await?;
    console::page(
        &headers,
        "console/activities/list.html",
        &session.chrome(NAV),
        minijinja::context! { rows, pager, kinds => KINDS, units, kind, status, org_unit => unit },
    )
}

/// An RFC 3339 time from an admin view as Asia/Shanghai minutes.
fn local_of(rfc3339: &str) -> String {
    crate::platform::time::parse_rfc3339(rfc3339)
        .map(local_minute)
        .unwrap_or_default()
}

// ---------------------------------------------------------------- create / edit

/// The activity form; every field a string (times `datetime-local`), the audience a list of
/// org-unit ids (one checkbox each).
#[derive(Debug, Default, Serialize)]
pub struct ActivityForm {
    pub title: String,
    pub kind: String,
    pub capacity: String,
    pub starts_at: String,
    pub ends_at: String,
    pub signup_opens_at: String,
    pub signup_closes_at: String,
    pub location: String,
    pub description: String,
    pub remind_minutes: String,
    pub audience: Vec<i64>,
}

impl ActivityForm {
    fn parse(body: &[u8]) -> ActivityForm {
        let mut f = ActivityForm::default();
        for (k, v) in form_urlencoded::parse(body) {
            let v = v.into_owned();
            match &*k {
                "title" => f.title = v,
                "kind" => f.kind = v,
                "capacity" => f.capacity = v,
                "starts_at" => f.starts_at = v,
                "ends_at" => f.ends_at = v,
                "signup_opens_at" => f.signup_opens_at = v,
                "signup_closes_at" => f.signup_closes_at = v,
                "location" => f.location = v,
                "description" => f.description = v,
                "remind_minutes" => f.remind_minutes = v,
                "audience" => f.audience.extend(v.parse::<i64>().ok()),
                _ => {}
            }
        }
        f
    }

    fn of(a: &ActivityRow, audience: Vec<i64>) -> ActivityForm {
        ActivityForm {
            title: a.title.clone(),
            kind: a.kind.as_str().into(),
            capacity: a.capacity.to_string(),
            starts_at: local_input(a.starts_at),
            ends_at: a.ends_at.map(local_input).unwrap_or_default(),
            signup_opens_at: local_input(a.signup_opens_at),
            signup_closes_at: local_input(a.signup_closes_at),
            location: a.location.clone(),
            description: a.description.clone(),
            remind_minutes: a.remind_minutes.to_string(),
            audience,
        }
    }

    /// The fields, or the errors of every field that does not parse (in Chinese, by field).
    fn fields(&self) -> Result<Fields, BTreeMap<String, String>> {
        let mut errors = BTreeMap::new();
        let mut time = |field: &str, v: &str, required: bool| match parse_local(v) {
            Ok(Some(ms)) => Some(ms),
            Ok(None) if !required => None,
            Ok(None) => {
                errors.insert(field.to_owned(), "请填写时间".to_owned());
                None
            }
            Err(_) => {
                errors.insert(field.to_owned(), "时间格式应为 2026-07-01T08:00".to_owned());
                None
            }
        };
        let starts_at = time("starts_at", &self.starts_at, true);
        let ends_at = time("ends_at", &self.ends_at, false);
        let opens = time("signup_opens_at", &self.signup_opens_at, true);
        let closes = time("signup_closes_at", &self.signup_closes_at, true);
        let capacity = self.capacity.trim().parse::<i64>().ok();
        if capacity.is_none() {
            errors.insert(
                "capacity".into(),
                format!("名额应为 1 到 {} 的整数", rules::MAX_CAPACITY),
            );
        }
        let remind = match self.remind_minutes.trim() {
            "" => Some(60),
            v => v.parse::<i64>().ok(),
        };
        if remind.is_none() {
            errors.insert("remind_minutes".into(), "提醒时间应为分钟数".into());
        }
        let kind = Kind::parse(self.kind.trim());
        if kind.is_none() {
            errors.insert("kind".into(), "请选择活动类型".into());
        }
        match (starts_at, opens, closes, capacity, remind, kind) {
            (
                Some(starts_at),
                Some(opens),
                Some(closes),
                Some(capacity),
                Some(remind),
                Some(kind),
            ) if errors.is_empty() => Ok(Fields {
                title: self.title.clone(),
                kind,
                description: self.description.clone(),
                location: self.location.clone(),
                capacity,
                starts_at,
                ends_at,
                signup_opens_at: opens,
                signup_closes_at: closes,
                remind_minutes: remind,
                audience: self.audience.clone(),
            }),
            _ => Err(errors),
        }
    }
}

/// A refused write's errors for the form: `audience_org_units` is shown beside the audience.
fn form_errors(e: &AppError) -> BTreeMap<String, String> {
    let mut errors = field_errors(e);
    if let AppError::Forbidden(m) = e {
        errors.clear();
        let text = m.strip_prefix("audience_org_units: ").unwrap_or(m);
        errors.insert("audience".into(), format!("无权执行此操作：{text}"));
    }
    if let Some(v) = errors.remove("audience_org_units") {
        errors.insert("audience".into(), v);
    }
    errors
}

async fn editor(
    st: &AppState,
    headers: &HeaderMap,
    session: &ConsoleSession,
    id: Option<i64>,
    form: &ActivityForm,
    errors: BTreeMap<String, String>,
) -> AppResult<Response> {
    let units = units_in_scope(st, session).await?;
    console::form_page(
        headers,
        "console/activities/edit.html",
        &session.chrome(NAV),
        minijinja::context! { id, form, errors, units, kinds => KINDS },
        &errors,
    )
}

pub async fn new_page(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
) -> AppResult<Response> {
    session.require(Permission::ManageActivities)?;
    let form = ActivityForm {
        kind: "activity".into(),
        remind_minutes: "60".into(),
        ..Default::default()
    };
    editor(&st, &headers, &session, None, &form, BTreeMap::new()).await
}

/// `POST /admin/activities/new`
pub async fn create(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
    body: axum::body::Bytes,
) -> AppResult<Response> {
    session.require(Permission::ManageActivities)?;
    let form = ActivityForm::parse(&body);
    let fields = match form.fields() {
        Ok(f) => f,
        Err(errors) => return editor(&st, &headers, &session, None, &form, errors).await,
    };
    match service::create(&st, &session, fields).await {
        Ok(id) => Ok(redirect_flash(&to(id), true, "活动已创建")),
        Err(e) if e.status().is_client_error() => {
            editor(&st, &headers, &session, None, &form, form_errors(&e)).await
        }
        Err(e) => Err(e),
    }
}

pub async fn edit_page(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
    Id(id): Id,
) -> AppResult<Response> {
    session.require(Permission::ManageActivities)?;
    let (a, _) = service::manageable(&st, &session, id).await?;
    let audience = super::store::audience(&st.db, id).await?;
    let form = ActivityForm::of(&a, audience);
    editor(&st, &headers, &session, Some(id), &form, BTreeMap::new()).await
}

/// `POST /admin/activities/{id}/edit`
pub async fn update(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
    Id(id): Id,
    body: axum::body::Bytes,
) -> AppResult<Response> {
    session.require(Permission::ManageActivities)?;
    service::manageable(&st, &session, id).await?;
    let form = ActivityForm::parse(&body);
    let fields = match form.fields() {
        Ok(f) => f,
        Err(errors) => return editor(&st, &headers, &session, Some(id), &form, errors).await,
    };
    match service::update(&st, &session, id, |f| {
        *f = fields;
        Ok(())
    })
    .await
    {
        Ok(()) => Ok(redirect_flash(&to(id), true, "已保存")),
        Err(e) if e.status().is_client_error() => {
            editor(&st, &headers, &session, Some(id), &form, form_errors(&e)).await
        }
        Err(e) => Err(e),
    }
}

// ---------------------------------------------------------------- an activity's page

#[derive(Serialize)]
struct Summary {
    id: i64,
    title: String,
    kind: &'static str,
    meeting: bool,
    status: String,
    starts: String,
    ends: Option<String>,
    signup_opens: String,
    signup_closes: String,
    location: String,
    description: String,
    capacity: i64,
    cancel_reason: Option<String>,
    audience: Vec<String>,
    host: String,
    recorder: String,
    minutes: String,
    minutes_at: Option<String>,
    photo_urls: Vec<String>,
}

#[derive(Serialize)]
struct Photo {
    id: i64,
    url: String,
    content_type: String,
    size_kib: i64,
    uploaded_by: String,
    uploaded_at: String,
}

/// The minutes form's values after a refused save.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct MinutesForm {
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub recorder: String,
    #[serde(default)]
    pub minutes: String,
}

async fn detail_page(
    st: &AppState,
    headers: &HeaderMap,
    session: &ConsoleSession,
    id: i64,
    minutes_form: Option<&MinutesForm>,
    errors: BTreeMap<String, String>,
) -> AppResult<Response> {
    let (a, _) = service::manageable(st, session, id).await?;
    let audience_ids = super::store::audience(&st.db, id).await?;
    let names: HashMap<i64, String> = org::list(&st.db)
        .await?
        .into_iter()
        .map(|u| (u.id, u.name))
        .collect();
    let signups = admin::signups_of(st, &a).await?;
    let (sheet, summary) = service::attendance_sheet(st, &a).await?;
    let photos: Vec<Photo> = service::photos(st, session, id)
        .await?
        .into_iter()
        .map(|p| Photo {
            url: format!("/admin/activities/{id}/photos/{}", p.id),
            id: p.id,
            content_type: p.content_type,
            size_kib: (p.size_bytes + 1023) / 1024,
            uploaded_by: p.uploaded_by,
            uploaded_at: local_minute(p.uploaded_at),
        })
        .collect();
    let form = match minutes_form {
        Some(f) => MinutesForm {
            host: f.host.clone(),
            recorder: f.recorder.clone(),
            minutes: f.minutes.clone(),
        },
        None => MinutesForm {
            host: a.host.clone().unwrap_or_default(),
            recorder: a.recorder.clone().unwrap_or_default(),
            minutes: a.minutes.clone().unwrap_or_default(),
        },
    };
    let activity = Summary {
        id,
        kind: kind_name(a.kind),
        meeting: a.kind.is_meeting(),
        status: a.status.clone(),
        starts: local_minute(a.starts_at),
        ends: a.ends_at.map(local_minute),
        signup_opens: local_minute(a.signup_opens_at),
        signup_closes: local_minute(a.signup_closes_at),
        location: a.location.clone(),
        description: a.description.clone(),
        capacity: a.capacity,
        cancel_reason: a.cancel_reason.clone(),
        audience: audience_ids
            .iter()
            .map(|u| names.get(u).cloned().unwrap_or_else(|| format!("#{u}")))
            .collect(),
        host: a.host.clone().unwrap_or_default(),
        recorder: a.recorder.clone().unwrap_or_default(),
        minutes: a.minutes.clone().unwrap_or_default(),
        minutes_at: a.minutes_at.map(local_minute),
        photo_urls: a.photos.clone(),
        title: a.title,
    };
    console::form_page(
        headers,
        "console/activities/detail.html",
        &session.chrome(NAV),
        minijinja::context! {
            activity, signups, sheet, summary, photos, form, errors,
            max_photos => rules::MAX_PHOTOS,
            max_photo_mib => rules::MAX_PHOTO_BYTES / (1024 * 1024),
        },
        &errors,
    )
}

pub async fn detail(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
    Id(id): Id,
) -> AppResult<Response> {
    session.require(Permission::ManageActivities)?;
    detail_page(&st, &headers, &session, id, None, BTreeMap::new()).await
}

#[derive(Debug, Default, Deserialize)]
pub struct ActForm {
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub member_id: String,
    /// present | late | absent | leave_sick | leave_official | leave_personal
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub recorder: String,
    #[serde(default)]
    pub minutes: String,
}

/// A mark's status and leave kind from the sheet's select.
fn mark_of(v: &str) -> Option<(Attendance, Option<LeaveKind>)> {
    Some(match v {
        "present" => (Attendance::Present, None),
        "late" => (Attendance::Late, None),
        "absent" => (Attendance::Absent, None),
        "leave_sick" => (Attendance::Leave, Some(LeaveKind::Sick)),
        "leave_official" => (Attendance::Leave, Some(LeaveKind::Official)),
        "leave_personal" => (Attendance::Leave, Some(LeaveKind::Personal)),
        _ => return None,
    })
}

/// `POST /admin/activities/{id}/{cancel|attendance|minutes}`
pub async fn act(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
    path: Path<(String, String)>,
    axum::Form(form): axum::Form<ActForm>,
) -> AppResult<Response> {
    session.require(Permission::ManageActivities)?;
    let (id, action) = ids(path)?;
    let back = to(id);
    let result = match action.as_str() {
        "cancel" => {
            let reason = form.reason.trim();
            if reason.chars().count() > 500 {
                Err(AppError::Validation("reason: 最多 500 字".into()))
            } else {
                let reason = (!reason.is_empty()).then_some(reason);
                service::cancel(&st, &session, id, reason)
                    .await
                    .map(|n| format!("活动已取消，已通知 {n} 人"))
            }
        }
        "attendance" => {
            let member = form.member_id.trim().parse::<i64>().ok();
            match (member, mark_of(form.status.trim())) {
                (Some(member), Some((status, leave))) => {
                    let reason = Some(form.reason.as_str());
                    service::mark_attendance(&st, &session, id, member, status, leave, reason)
                        .await
                        .map(|()| "考勤已记录".to_owned())
                }
                _ => Err(AppError::Validation("status: 请选择考勤状态".into())),
            }
        }
        "minutes" => {
            let (a, _) = service::manageable(&st, &session, id).await?;
            let checked =
                rules::validate_minutes(&form.host, &form.recorder, &form.minutes, &a.photos);
            let saved = match checked {
                Ok(m) => {
                    service::record_minutes(
                        &st,
                        &session,
                        id,
                        &m.host,
                        &m.recorder,
                        &m.minutes,
                        &a.photos,
                    )
                    .await
                }
                Err(e) => Err(AppError::Validation(e)),
            };
            return match saved {
                Ok(()) => Ok(redirect_flash(&back, true, "会议记录已保存")),
                Err(e) if e.status().is_client_error() => {
                    let values = MinutesForm {
                        host: form.host,
                        recorder: form.recorder,
                        minutes: form.minutes,
                    };
                    detail_page(&st, &headers, &session, id, Some(&values), field_errors(&e)).await
                }
                Err(e) => Err(e),
            };
        }
        _ => return Err(AppError::NotFound("action".into())),
    };
    match result {
        Ok(msg) => Ok(redirect_flash(&back, true, &msg)),
        Err(e) => redirect_error(&back, e),
    }
}

// ---------------------------------------------------------------- minutes photos

/// `POST /admin/activities/{id}/photos` (multipart: the `csrf` field first, then the file).
pub async fn upload_photo(
    State(st): State<AppState>,
    session: ConsoleSession,
    Id(id): Id,
    multipart: Result<Multipart, MultipartRejection>,
) -> AppResult<Response> {
    session.require(Permission::ManageActivities)?;
    service::manageable(&st, &session, id).await?;
    let saved = match admin::photo_files(multipart).await {
        Ok(files) => service::add_photos(&st, &session, id, &files).await,
        Err(e) => Err(e),
    };
    match saved {
        Ok(ids) => Ok(redirect_flash(
            &to(id),
            true,
            &format!("已上传 {} 张照片", ids.len()),
        )),
        Err(e) => {
            let text = match e.code() {
                "payload_too_large" => format!(
                    "照片过大：每张不超过 {} MiB",
                    rules::MAX_PHOTO_BYTES / (1024 * 1024)
                ),
                "unsupported_media_type" => "只接受 JPEG、PNG 或 WebP 图片".to_owned(),
                _ => return redirect_error(&to(id), e),
            };
            Ok(redirect_flash(&to(id), false, &text))
        }
    }
}

/// `GET /admin/activities/{id}/photos/{photo_id}`: the image, for signed-in users only.
pub async fn photo(
    State(st): State<AppState>,
    session: ConsoleSession,
    path: Path<(String, String)>,
) -> AppResult<Response> {
    session.require(Permission::ManageActivities)?;
    let (id, photo) = ids(path)?;
    let photo: i64 = photo
        .parse()
        .map_err(|_| AppError::NotFound("photo".into()))?;
    let (meta, bytes) = service::photo(&st, &session, id, photo).await?;
    Ok(admin::photo_response(&meta, bytes))
}

/// `POST /admin/activities/{id}/photos/{photo_id}/delete`
pub async fn delete_photo(
    State(st): State<AppState>,
    session: ConsoleSession,
    path: Path<(String, String)>,
) -> AppResult<Response> {
    session.require(Permission::ManageActivities)?;
    let (id, photo) = ids(path)?;
    let photo: i64 = photo
        .parse()
        .map_err(|_| AppError::NotFound("photo".into()))?;
    match service::delete_photo(&st, &session, id, photo).await {
        Ok(()) => Ok(redirect_flash(&to(id), true, "照片已删除")),
        Err(e) => redirect_error(&to(id), e),
    }
}

// ---------------------------------------------------------------- check-in, rhythm

/// `GET /admin/activities/{id}/checkin`: the venue's QR code, full screen; `console.js` fetches
/// a fresh one from `GET /api/admin/activities/{id}/checkin-code` every 20 seconds.
pub async fn checkin(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
    Id(id): Id,
) -> AppResult<Response> {
    session.require(Permission::ManageActivities)?;
    let (a, _) = service::manageable(&st, &session, id).await?;
    if a.status == "cancelled" {
        return Ok(redirect_flash(&to(id), false, "活动已取消，不能签到"));
    }
    let t = service::ticket(&st, id);
    let svg = service::qr_svg(&t.text)?;
    // Inline in HTML: the SVG element without its XML prolog.
    let svg = svg.find("<svg").map_or(svg.as_str(), |i| &svg[i..]);
    console::page(
        &headers,
        "console/activities/checkin.html",
        &session.chrome(NAV),
        minijinja::context! {
            id, title => a.title, svg,
            expires => local_minute(t.expires_at),
            window => rules::TICKET_WINDOW_MS / 1000,
        },
    )
}

#[derive(Debug, Default, Deserialize)]
pub struct RhythmQuery {
    #[serde(default)]
    pub quarter: Option<String>,
}

/// `GET /admin/activities/rhythm?quarter=2026Q4`
pub async fn rhythm(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
    Query(q): Query<RhythmQuery>,
) -> AppResult<Response> {
    session.require(Permission::ManageActivities)?;
    let (report, error) = match admin::rhythm_report(&st, &session, q.quarter.as_deref()).await {
        Ok(r) => (Some(r), None),
        Err(AppError::Validation(_)) => (None, Some("季度格式应为 2026Q4")),
        Err(e) => return Err(e),
    };
    let kinds: Vec<(&str, &str)> = Kind::RHYTHM
        .iter()
        .map(|k| (k.as_str(), kind_name(*k)))
        .collect();
    console::page(
        &headers,
        "console/activities/rhythm.html",
        &session.chrome(NAV),
        minijinja::context! { report, error, kinds, quarter => q.quarter.unwrap_or_default() },
    )
}
