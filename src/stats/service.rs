//! The statistics report: one read of each section, folded by `rules`, shaped once for the JSON
//! API, the CSV exports and the console's charts.
//!
//! Who sees what: a section needs the permission of the work it counts — dues `ManageDues`,
//! attendance `ManageActivities` (both limited to the session's org-unit subtree), followers and
//! pushes `ManagePushes`, moderation `Moderate` (these three are not per org unit, so a secretary
//! does not get them). A section the session may not see is `null`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{
    app::AppState,
    auth::{AdminSession, Permission},
    dues,
    official_account::store as followers,
    platform::{
        error::{AppError, AppResult},
        org::{self, OrgScope},
        time::rfc3339_shanghai,
    },
    stats::rules::{
        self, AttendanceFigures, BillGroup, DeliveryFigures, DuesFigures, FollowerFigures,
        ModerationFigures, Month, Period,
    },
    stats::store::{self, AttendanceKey, ModeratedKind},
};

/// What was asked: the period, an org unit (id or name; its subtree), the per-member list.
#[derive(Debug, Clone, Default)]
pub struct Query<'a> {
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub org_unit: Option<&'a str>,
    pub members: bool,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct UnitRef {
    pub id: i64,
    pub name: String,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub from: Month,
    pub to: Month,
    pub org_unit: Option<UnitRef>,
    pub dues: Option<DuesSection>,
    pub attendance: Option<AttendanceSection>,
    pub followers: Option<FollowersSection>,
    pub pushes: Option<PushesSection>,
    pub moderation: Option<ModerationSection>,
}

#[derive(Debug, Serialize)]
pub struct DuesRow {
    pub month: String,
    pub org_unit_id: i64,
    pub org_unit: String,
    #[serde(flatten)]
    pub figures: DuesFigures,
}

#[derive(Debug, Serialize)]
pub struct DuesSection {
    /// Per org unit (the bill's unit) and month.
    pub by_unit_month: Vec<DuesRow>,
    /// Every unit in scope, per month.
    pub by_month: Vec<MonthRow<DuesFigures>>,
    /// Per org unit over the period.
    pub by_unit: Vec<UnitRow<DuesFigures>>,
}

#[derive(Debug, Serialize)]
pub struct MonthRow<F> {
    pub month: String,
    #[serde(flatten)]
    pub figures: F,
}

#[derive(Debug, Serialize)]
pub struct UnitRow<F> {
    pub org_unit_id: i64,
    pub org_unit: String,
    #[serde(flatten)]
    pub figures: F,
}

#[derive(Debug, Serialize)]
pub struct MemberRow {
    pub member_id: i64,
    pub name: String,
    pub org_unit_id: i64,
    pub org_unit: String,
    #[serde(flatten)]
    pub figures: AttendanceFigures,
}

#[derive(Debug, Serialize)]
pub struct AttendanceSection {
    /// Per member's org unit over the period.
    pub by_unit: Vec<UnitRow<AttendanceFigures>>,
    pub by_month: Vec<MonthRow<AttendanceFigures>>,
    /// Per member, when asked for (`members=true`).
    pub members: Option<Vec<MemberRow>>,
}

#[derive(Debug, Serialize)]
pub struct DayRow {
    pub date: String,
    #[serde(flatten)]
    pub figures: FollowerFigures,
}

#[derive(Debug, Serialize)]
pub struct FollowersSection {
    /// Subscribed followers now.
    pub subscribed_now: i64,
    pub daily: Vec<DayRow>,
    pub monthly: Vec<MonthRow<FollowerFigures>>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct PushRow {
    pub id: i64,
    pub channel: String,
    pub status: String,
    /// RFC 3339, Asia/Shanghai.
    pub scheduled_at: String,
    pub month: String,
    #[serde(flatten)]
    pub figures: DeliveryFigures,
}

#[derive(Debug, Serialize)]
pub struct PushesSection {
    pub pushes: Vec<PushRow>,
    pub monthly: Vec<MonthRow<DeliveryFigures>>,
}

#[derive(Debug, Serialize)]
pub struct ModerationRow {
    pub month: String,
    /// `submissions` or `board_posts`.
    pub kind: &'static str,
    #[serde(flatten)]
    pub figures: ModerationFigures,
}

#[derive(Debug, Serialize)]
pub struct ModerationSection {
    pub monthly: Vec<ModerationRow>,
    /// Per kind over the period (`month` is the period, `from..to`).
    pub totals: Vec<ModerationRow>,
}

/// The report for this session.
pub async fn report(st: &AppState, session: &AdminSession, q: &Query<'_>) -> AppResult<Report> {
    let now = st.clock.unix_ms();
    let period =
        Period::parse(q.from, q.to, Month::of_unix_ms(now)).map_err(AppError::Validation)?;
    let mut scope = session.org_scope(&st.db).await?;
    let mut unit_ref = None;
    if let Some(u) = q.org_unit.map(str::trim).filter(|s| !s.is_empty()) {
        let found = match u.parse::<i64>() {
            Ok(id) => org::get(&st.db, id).await?,
            Err(_) => org::find_by_name(st.db.pool(), u).await?,
        }
        .ok_or_else(|| AppError::NotFound("org unit".into()))?;
        scope.require(found.id)?;
        scope = OrgScope::Units(org::subtree_ids(&st.db, found.id).await?);
        unit_ref = Some(UnitRef {
            id: found.id,
            name: found.name,
        });
    }
    let names: BTreeMap<i64, String> = org::list(&st.db)
        .await?
        .into_iter()
        .map(|u| (u.id, u.name))
        .collect();
    let name = |id: i64| names.get(&id).cloned().unwrap_or_default();
    let can = |p| session.can(p);
    Ok(Report {
        from: period.from,
        to: period.to,
        dues: match can(Permission::ManageDues) {
            true => Some(dues_section(st, period, &scope, &name).await?),
            false => None,
        },
        attendance: match can(Permission::ManageActivities) {
            true => Some(attendance_section(st, period, now, &scope, q.members, &name).await?),
            false => None,
        },
        followers: match can(Permission::ManagePushes) {
            true => Some(followers_section(st, period, now).await?),
            false => None,
        },
        pushes: match can(Permission::ManagePushes) {
            true => Some(pushes_section(st, period).await?),
            false => None,
        },
        moderation: match can(Permission::Moderate) {
            true => Some(moderation_section(st, period).await?),
            false => None,
        },
        org_unit: unit_ref,
    })
}

async fn dues_section(
    st: &AppState,
    period: Period,
    scope: &OrgScope,
    name: &impl Fn(i64) -> String,
) -> AppResult<DuesSection> {
    let mut groups = Vec::new();
    for month in period.months() {
        let month = month.to_string();
        for t in dues::store::month_totals(st.db.pool(), &month, scope, None).await? {
            groups.push(BillGroup {
                month: month.clone(),
                org_unit_id: t.org_unit_id,
                status: t.status,
                bills: t.bills,
                amount_fen: t.amount_fen,
                paid_fen: t.paid_fen,
            });
        }
    }
    let f = rules::fold_dues(&groups);
    Ok(DuesSection {
        by_unit_month: f
            .by_unit_month
            .into_iter()
            .map(|((month, unit), figures)| DuesRow {
                month,
                org_unit_id: unit,
                org_unit: name(unit),
                figures,
            })
            .collect(),
        by_month: period
            .months()
            .into_iter()
            .map(|m| {
                let month = m.to_string();
                let figures = f.by_month.get(&month).cloned().unwrap_or_default();
                MonthRow { month, figures }
            })
            .collect(),
        by_unit: f
            .by_unit
            .into_iter()
            .map(|(unit, figures)| UnitRow {
                org_unit_id: unit,
                org_unit: name(unit),
                figures,
            })
            .collect(),
    })
}

async fn attendance_section(
    st: &AppState,
    period: Period,
    now: i64,
    scope: &OrgScope,
    with_members: bool,
    name: &impl Fn(i64) -> String,
) -> AppResult<AttendanceSection> {
    let groups =
        store::attendance_groups(&st.db, period, now, scope, AttendanceKey::OrgUnit).await?;
    let (by_unit, by_month) = rules::fold_attendance(&groups);
    let members = match with_members {
        false => None,
        true => {
            let groups =
                store::attendance_groups(&st.db, period, now, scope, AttendanceKey::Member).await?;
            let (by_member, _) = rules::fold_attendance(&groups);
            let ids: Vec<i64> = by_member.keys().copied().collect();
            let rows = store::member_names(&st.db, &ids).await?;
            Some(
                rows.into_iter()
                    .filter_map(|(id, member, unit)| {
                        Some(MemberRow {
                            member_id: id,
                            name: member,
                            org_unit_id: unit,
                            org_unit: name(unit),
                            figures: by_member.get(&id)?.clone(),
                        })
                    })
                    .collect(),
            )
        }
    };
    Ok(AttendanceSection {
        by_unit: by_unit
            .into_iter()
            .map(|(unit, figures)| UnitRow {
                org_unit_id: unit,
                org_unit: name(unit),
                figures,
            })
            .collect(),
        by_month: period
            .months()
            .into_iter()
            .map(|m| {
                let month = m.to_string();
                let figures = by_month.get(&month).cloned().unwrap_or_default();
                MonthRow { month, figures }
            })
            .collect(),
        members,
    })
}

async fn followers_section(st: &AppState, period: Period, now: i64) -> AppResult<FollowersSection> {
    let groups = store::follower_event_groups(&st.db, period).await?;
    let (daily, monthly) = rules::fold_followers(period, rules::day_of(now), &groups);
    Ok(FollowersSection {
        subscribed_now: followers::count_subscribed(&st.db).await?,
        daily: daily
            .into_iter()
            .map(|(date, figures)| DayRow { date, figures })
            .collect(),
        monthly: monthly
            .into_iter()
            .map(|(month, figures)| MonthRow { month, figures })
            .collect(),
    })
}

async fn pushes_section(st: &AppState, period: Period) -> AppResult<PushesSection> {
    let mut monthly: BTreeMap<String, DeliveryFigures> = period
        .months()
        .into_iter()
        .map(|m| (m.to_string(), DeliveryFigures::default()))
        .collect();
    let mut pushes = Vec::new();
    for p in store::push_rows(&st.db, period).await? {
        let mut figures = DeliveryFigures::default();
        for (status, n) in &p.counts {
            figures.add(status, *n);
        }
        let month = Month::of_unix_ms(p.scheduled_at).to_string();
        monthly.entry(month.clone()).or_default().merge(&figures);
        pushes.push(PushRow {
            id: p.id,
            channel: p.channel,
            status: p.status,
            scheduled_at: rfc3339_shanghai(p.scheduled_at),
            month,
            figures,
        });
    }
    Ok(PushesSection {
        pushes,
        monthly: monthly
            .into_iter()
            .map(|(month, figures)| MonthRow { month, figures })
            .collect(),
    })
}

async fn moderation_section(st: &AppState, period: Period) -> AppResult<ModerationSection> {
    let mut monthly = Vec::new();
    let mut totals = Vec::new();
    for kind in ModeratedKind::ALL {
        let items = store::moderated(&st.db, kind, period).await?;
        for (month, figures) in rules::moderation_by_month(period, &items) {
            monthly.push(ModerationRow {
                month,
                kind: kind.as_str(),
                figures,
            });
        }
        totals.push(ModerationRow {
            month: format!("{}..{}", period.from, period.to),
            kind: kind.as_str(),
            figures: rules::moderation_figures(&items),
        });
    }
    monthly.sort_by(|a, b| a.month.cmp(&b.month));
    Ok(ModerationSection { monthly, totals })
}

// ---------------------------------------------------------------- CSV

/// The CSV exports: one table of the report each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsvSection {
    Dues,
    Attendance,
    AttendanceMembers,
    Followers,
    Pushes,
    Moderation,
}

impl CsvSection {
    pub const ALL: [CsvSection; 6] = [
        CsvSection::Dues,
        CsvSection::Attendance,
        CsvSection::AttendanceMembers,
        CsvSection::Followers,
        CsvSection::Pushes,
        CsvSection::Moderation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CsvSection::Dues => "dues",
            CsvSection::Attendance => "attendance",
            CsvSection::AttendanceMembers => "attendance_members",
            CsvSection::Followers => "followers",
            CsvSection::Pushes => "pushes",
            CsvSection::Moderation => "moderation",
        }
    }

    pub fn parse(s: &str) -> Option<CsvSection> {
        CsvSection::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// A rate as the CSV writes it: four decimals, empty when there is no whole.
fn rate_cell(r: Option<f64>) -> String {
    r.map(|r| format!("{r:.4}")).unwrap_or_default()
}

fn opt_cell(v: Option<i64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// The section as CSV (UTF-8 with a BOM, so spreadsheet programs read the Chinese names);
/// 403 when the report has no such section for this session.
pub fn csv(report: &Report, section: CsvSection) -> AppResult<Vec<u8>> {
    let hidden = || AppError::Forbidden("this statistic is not yours to read".into());
    let mut rows: Vec<Vec<String>> = Vec::new();
    let header: &[&str] = match section {
        CsvSection::Dues => {
            let d = report.dues.as_ref().ok_or_else(hidden)?;
            for r in &d.by_unit_month {
                let f = &r.figures;
                rows.push(vec![
                    r.month.clone(),
                    r.org_unit_id.to_string(),
                    r.org_unit.clone(),
                    f.bills.to_string(),
                    f.paid.to_string(),
                    f.unpaid.to_string(),
                    f.exempt.to_string(),
                    f.due_fen.to_string(),
                    f.paid_fen.to_string(),
                    rate_cell(f.rate),
                ]);
            }
            &[
                "month",
                "org_unit_id",
                "org_unit",
                "bills",
                "paid",
                "unpaid",
                "exempt",
                "due_fen",
                "paid_fen",
                "rate",
            ]
        }
        CsvSection::Attendance | CsvSection::AttendanceMembers => {
            let a = report.attendance.as_ref().ok_or_else(hidden)?;
            let cells = |f: &AttendanceFigures| {
                [
                    f.meetings, f.expected, f.attended, f.present, f.late, f.leave, f.absent,
                ]
                .map(|n| n.to_string())
                .into_iter()
                .chain([rate_cell(f.rate)])
            };
            if section == CsvSection::Attendance {
                for r in &a.by_unit {
                    let mut row = vec![r.org_unit_id.to_string(), r.org_unit.clone()];
                    row.extend(cells(&r.figures));
                    rows.push(row);
                }
                &[
                    "org_unit_id",
                    "org_unit",
                    "meetings",
                    "expected",
                    "attended",
                    "present",
                    "late",
                    "leave",
                    "absent",
                    "rate",
                ]
            } else {
                for r in a.members.iter().flatten() {
                    let mut row = vec![
                        r.member_id.to_string(),
                        r.name.clone(),
                        r.org_unit_id.to_string(),
                        r.org_unit.clone(),
                    ];
                    row.extend(cells(&r.figures));
                    rows.push(row);
                }
                &[
                    "member_id",
                    "name",
                    "org_unit_id",
                    "org_unit",
                    "meetings",
                    "expected",
                    "attended",
                    "present",
                    "late",
                    "leave",
                    "absent",
                    "rate",
                ]
            }
        }
        CsvSection::Followers => {
            let f = report.followers.as_ref().ok_or_else(hidden)?;
            for r in &f.daily {
                let x = &r.figures;
                rows.push(vec![
                    r.date.clone(),
                    x.subscribed.to_string(),
                    x.unsubscribed.to_string(),
                    x.net.to_string(),
                ]);
            }
            &["date", "subscribed", "unsubscribed", "net"]
        }
        CsvSection::Pushes => {
            let p = report.pushes.as_ref().ok_or_else(hidden)?;
            for r in &p.pushes {
                let f = &r.figures;
                rows.push(vec![
                    r.id.to_string(),
                    r.channel.clone(),
                    r.status.clone(),
                    r.scheduled_at.clone(),
                    f.total.to_string(),
                    f.sent.to_string(),
                    f.failed.to_string(),
                    f.unknown.to_string(),
                    f.skipped.to_string(),
                    f.pending.to_string(),
                    rate_cell(f.delivery_rate),
                    rate_cell(f.failure_rate),
                ]);
            }
            &[
                "push_id",
                "channel",
                "status",
                "scheduled_at",
                "total",
                "sent",
                "failed",
                "unknown",
                "skipped",
                "pending",
                "delivery_rate",
                "failure_rate",
            ]
        }
        CsvSection::Moderation => {
            let m = report.moderation.as_ref().ok_or_else(hidden)?;
            for r in m.monthly.iter().chain(&m.totals) {
                let f = &r.figures;
                rows.push(vec![
                    r.month.clone(),
                    r.kind.to_owned(),
                    f.count.to_string(),
                    f.approved.to_string(),
                    f.rejected.to_string(),
                    f.pending.to_string(),
                    opt_cell(f.median_decision_seconds),
                ]);
            }
            &[
                "month",
                "kind",
                "count",
                "approved",
                "rejected",
                "pending",
                "median_decision_seconds",
            ]
        }
    };
    let internal = |e: csv::Error| AppError::Internal(e.into());
    let mut w = csv::Writer::from_writer(b"\xEF\xBB\xBF".to_vec());
    w.write_record(header).map_err(internal)?;
    for r in rows {
        w.write_record(r).map_err(internal)?;
    }
    w.into_inner()
        .map_err(|e| AppError::Internal(anyhow::anyhow!("csv: {e}")))
}
