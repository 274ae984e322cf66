//! `/api/mp/activities`: what is open to me (my org unit's activities and those for everyone),
//! sign-up, withdrawal, check-in with the venue's ticket. Every route takes the session; sign-up,
//! withdrawal and check-in need a bound roster entry (403 `not_bound`).

use std::sync::Arc;

use axum::{extract::State, Extension};
use serde::{Deserialize, Serialize};

use super::{
    rules::{self, Kind},
    service::{self, CheckedIn, SignupOutcome, SignupQueue},
    store::{self, ActivityRow},
};
use crate::{
    app::AppState,
    auth::mp_session::MpSession,
    http::{AppJson, Id},
    members::store as members,
    platform::{
        error::{AppError, AppResult},
        time::rfc3339_shanghai,
    },
};

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct MySignup {
    /// confirmed | waitlisted
    pub status: String,
    /// 1-based place in the waitlist now; null when confirmed.
    pub position: Option<i64>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct MpActivity {
    pub id: i64,
    pub title: String,
    pub kind: Kind,
    pub description: String,
    pub location: String,
    pub starts_at: String,
    pub ends_at: Option<String>,
    pub signup_opens_at: String,
    pub signup_closes_at: String,
    pub capacity: i64,
    pub remaining: i64,
    /// open | cancelled
    pub status: String,
    /// not_open | open | closed
    pub signup: &'static str,
    pub my_signup: Option<MySignup>,
}

fn out(a: ActivityRow, mine: Option<MySignup>, now: i64) -> MpActivity {
    let signup = match rules::may_sign_up(&a.times(), now) {
        Ok(()) => "open",
        Err(rules::Refusal::SignupNotOpen) => "not_open",
        Err(_) => "closed",
    };
    MpActivity {
        id: a.id,
        title: a.title,
        kind: a.kind,
        description: a.description,
        location: a.location,
        starts_at: rfc3339_shanghai(a.starts_at),
        ends_at: a.ends_at.map(rfc3339_shanghai),
        signup_opens_at: rfc3339_shanghai(a.signup_opens_at),
        signup_closes_at: rfc3339_shanghai(a.signup_closes_at),
        capacity: a.capacity,
        remaining: a.capacity - a.confirmed_count,
        status: a.status,
        signup,
        my_signup: mine,
    }
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ListOut {
    pub items: Vec<MpActivity>,
}

/// `GET /api/mp/activities`: open activities that have not ended, soonest first, for my org
/// units (or everyone), with remaining places and my sign-up. An unbound user sees those for
/// everyone.
pub async fn list(State(st): State<AppState>, session: MpSession) -> AppResult<AppJson<ListOut>> {
    let now = st.clock.unix_ms();
    let member = members::bound_to(&st.db, &session.openid).await?;
    let all = store::upcoming(&st.db, now, rules::DEFAULT_DURATION_MS).await?;
    let ids: Vec<i64> = all.iter().map(|a| a.id).collect();
    let audiences = store::audiences(&st.db, &ids).await?;
    let parents = service::org_parents(&st).await?;
    let open: Vec<ActivityRow> = all
        .into_iter()
        .filter(|a| {
            let audience = audiences.get(&a.id).map(Vec::as_slice).unwrap_or(&[]);
            match &member {
                Some(m) => rules::in_audience(audience, m.org_unit_id, &parents),
                None => audience.is_empty(),
            }
        })
        .collect();
    let mut mine = match &member {
        Some(m) => {
            let ids: Vec<i64> = open.iter().map(|a| a.id).collect();
            store::my_signups(&st.db, m.id, &ids).await?
        }
        None => Default::default(),
    };
    let items = open
        .into_iter()
        .map(|a| {
            let my = mine
                .remove(&a.id)
                .map(|(status, position)| MySignup { status, position });
            out(a, my, now)
        })
        .collect();
    Ok(AppJson(ListOut { items }))
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct DetailOut {
    #[serde(flatten)]
    pub activity: MpActivity,
    /// present | late once checked in, else null.
    pub my_attendance: Option<String>,
    pub checked_in_at: Option<String>,
}

/// `GET /api/mp/activities/{id}` with `"my_signup":{"status","position"}|null`.
pub async fn detail(
    State(st): State<AppState>,
    session: MpSession,
    Id(id): Id,
) -> AppResult<AppJson<DetailOut>> {
    let now = st.clock.unix_ms();
    let member = members::bound_to(&st.db, &session.openid).await?;
    let (a, mine, attendance) = match &member {
        Some(m) => {
            let a = service::visible(&st, m, id).await?;
            let mine = store::my_signups(&st.db, m.id, &[id]).await?.remove(&id);
            (a, mine, store::attendance_of(&st.db, id, m.id).await?)
        }
        None => {
            let not_found = || AppError::NotFound(format!("activity {id}"));
            let a = store::get(&st.db, id).await?.ok_or_else(not_found)?;
            if !store::audience(&st.db, id).await?.is_empty() {
                return Err(not_found());
            }
            (a, None, None)
        }
    };
    let checked_in_at = attendance
        .as_ref()
        .and_then(|(_, at)| *at)
        .map(rfc3339_shanghai);
    let my_attendance = attendance
        .filter(|(_, at)| at.is_some())
        .map(|(status, _)| status);
    Ok(AppJson(DetailOut {
        activity: out(
            a,
            mine.map(|(status, position)| MySignup { status, position }),
            now,
        ),
        my_attendance,
        checked_in_at,
    }))
}

/// `POST /api/mp/activities/{id}/signup` → `{"status":"confirmed"|"waitlisted","position"}`.
pub async fn sign_up(
    State(st): State<AppState>,
    Extension(queue): Extension<Arc<SignupQueue>>,
    session: MpSession,
    Id(id): Id,
) -> AppResult<AppJson<SignupOutcome>> {
    let member = service::bound_member(&st, &session.openid).await?;
    Ok(AppJson(service::sign_up(&st, &queue, &member, id).await?))
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct WithdrawOut {
    pub status: &'static str,
}

/// `DELETE /api/mp/activities/{id}/signup` → `{"status":"cancelled"}`; a confirmed place goes to
/// the first waitlisted member, who is told.
pub async fn withdraw(
    State(st): State<AppState>,
    session: MpSession,
    Id(id): Id,
) -> AppResult<AppJson<WithdrawOut>> {
    let member = service::bound_member(&st, &session.openid).await?;
    service::withdraw(&st, &member, id).await?;
    Ok(AppJson(WithdrawOut {
        status: "cancelled",
    }))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct CheckinIn {
    #[schemars(length(min = 1, max = 512), regex(pattern = r"\S"))]
    ticket: String,
}

/// `POST /api/mp/activities/{id}/checkin {"ticket"}` → `{"status":"present"|"late","checked_in_at"}`.
pub async fn check_in(
    State(st): State<AppState>,
    session: MpSession,
    Id(id): Id,
    AppJson(body): AppJson<CheckinIn>,
) -> AppResult<AppJson<CheckedIn>> {
    let member = service::bound_member(&st, &session.openid).await?;
    Ok(AppJson(
        service::check_in(&st, &member, id, &body.ticket).await?,
    ))
}
