//! The applicant's view in the mini-program: my stage, the next step and its deadline, what is
//! due, and thought reports (思想汇报), for the roster member bound to the session.

use axum::{extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};

use super::{
    rules::{self, DeadlineStatus},
    service::{
        self, deadline_out, reports_summary, DeadlineOut, DevResult, NextStepOut, Reporter,
        ReportsSummary, StageOut,
    },
    store,
};
use crate::{
    app::AppState,
    auth::mp_session::MpSession,
    http::AppJson,
    members::store::{self as members, MemberRow},
    platform::error::{AppError, AppResult},
};

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct MyDevelopmentOut {
    pub record_id: i64,
    pub name: String,
    pub org_unit: String,
    pub stage: StageOut,
    pub stage_since: Option<String>,
    pub next_step: Option<NextStepOut>,
    /// What is still to do, soonest first (met items are left out).
    pub deadlines: Vec<DeadlineOut>,
    pub reports: ReportsSummary,
    pub probation_end: Option<String>,
    pub full_member_since: Option<String>,
}

async fn bound_member(st: &AppState, session: &MpSession) -> AppResult<MemberRow> {
    members::bound_to(&st.db, &session.openid)
        .await?
        .ok_or_else(|| {
            AppError::rejected(
                StatusCode::FORBIDDEN,
                "not_bound",
                "bind this WeChat account to the roster first (POST /api/mp/bind)",
            )
        })
}

fn no_record() -> AppError {
    AppError::NotFound("development record".into())
}

/// `GET /api/mp/development`.
pub async fn mine(
    State(st): State<AppState>,
    session: MpSession,
) -> AppResult<AppJson<MyDevelopmentOut>> {
    let member = bound_member(&st, &session).await?;
    let record = store::by_member(&st.db, member.id)
        .await?
        .ok_or_else(no_record)?;
    let l = service::load(&st.db, record).await?;
    let today = rules::today(st.clock.unix_ms());
    let content = service::content(&st);
    let c = service::compute(crate::development::definitions(&content), &l, today);
    let r = &l.record;
    Ok(AppJson(MyDevelopmentOut {
        record_id: r.id,
        name: r.name.clone(),
        org_unit: r.org_unit.clone(),
        stage: c.stage.into(),
        stage_since: r.stage_since.clone(),
        next_step: c.next.as_ref().map(NextStepOut::from),
        deadlines: c
            .deadlines
            .iter()
            .filter(|d| d.status(today) != DeadlineStatus::Met)
            .map(|d| deadline_out(d, today))
            .collect(),
        reports: reports_summary(&l),
        probation_end: c.probation_end.map(rules::format_date),
        full_member_since: r.full_member_since.clone(),
    }))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ReportIn {
    content: String,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ReportCreatedOut {
    pub id: i64,
    pub date: String,
}

/// `POST /api/mp/development/reports {"content"}` → 201, dated today (Asia/Shanghai).
pub async fn report(
    State(st): State<AppState>,
    session: MpSession,
    AppJson(body): AppJson<ReportIn>,
) -> DevResult<(StatusCode, AppJson<ReportCreatedOut>)> {
    let member = bound_member(&st, &session).await?;
    let record = store::by_member(&st.db, member.id)
        .await?
        .ok_or_else(no_record)?;
    let date = rules::today(st.clock.unix_ms());
    let id = service::add_report(
        &st,
        record.id,
        date,
        &body.content,
        Reporter::Member {
            member_id: member.id,
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        AppJson(ReportCreatedOut {
            id,
            date: rules::format_date(date),
        }),
    ))
}
