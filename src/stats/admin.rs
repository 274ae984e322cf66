//! `GET /api/admin/stats`: the statistics report as JSON, or one of its tables as CSV
//! (`format=csv&section=dues|attendance|attendance_members|followers|pushes|moderation`).
//! CSV exports are in the audit log, like the dues ledger.

use axum::{
    extract::State,
    http::header,
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::json;

use crate::{
    app::AppState,
    auth::{AdminSession, Permission},
    http::{extract::blank_to_none, routes::AdminRoutes, AppJson, AppQuery},
    platform::{audit, error::AppError, error::AppResult},
    stats::service::{self, CsvSection},
};

pub fn routes(r: AdminRoutes) -> AdminRoutes {
    r.get("/api/admin/stats", Permission::ReadStats, stats)
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub struct StatsQuery {
    #[serde(default)]
    #[schemars(schema_with = "crate::http::doc::query_month")]
    pub from: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "crate::http::doc::query_month")]
    pub to: Option<String>,
    pub org_unit: Option<String>,
    /// `true`: attendance per member too.
    #[serde(default)]
    #[schemars(schema_with = "crate::http::doc::boolean")]
    pub members: Option<String>,
    /// `json` (default) or `csv`.
    #[serde(default)]
    #[schemars(schema_with = "crate::http::doc::json_or_csv")]
    pub format: Option<String>,
    /// With `format=csv`: which table.
    #[schemars(extend("enum" = ["dues", "attendance", "attendance_members", "followers", "pushes", "moderation"]))]
    pub section: Option<String>,
}

impl StatsQuery {
    /// The CSV section asked for (None: JSON); bad values are a 422.
    pub fn csv_section(&self) -> AppResult<Option<CsvSection>> {
        // A section is checked whenever given, also when JSON ignores it.
        if let Some(s) = blank_to_none(&self.section) {
            if CsvSection::parse(s).is_none() {
                return Err(AppError::Validation(format!(
                    "section: unknown section {s}"
                )));
            }
        }
        match blank_to_none(&self.format) {
            None | Some("json") => Ok(None),
            Some("csv") => {
                let s = blank_to_none(&self.section).ok_or_else(|| {
                    AppError::Validation(
                        "section: dues, attendance, attendance_members, followers, pushes or moderation".into(),
                    )
                })?;
                CsvSection::parse(s)
                    .map(Some)
                    .ok_or_else(|| AppError::Validation(format!("section: unknown section {s}")))
            }
            Some(_) => Err(AppError::Validation("format: json or csv".into())),
        }
    }

    pub fn query(&self, csv: Option<CsvSection>) -> AppResult<service::Query<'_>> {
        let members = match blank_to_none(&self.members) {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(_) => return Err(AppError::Validation("members: true or false".into())),
        };
        Ok(service::Query {
            from: blank_to_none(&self.from),
            to: blank_to_none(&self.to),
            org_unit: blank_to_none(&self.org_unit),
            members: members || csv == Some(CsvSection::AttendanceMembers),
        })
    }
}

/// The CSV download of one section (also the console's download links).
pub async fn csv_response(
    st: &AppState,
    session: &AdminSession,
    report: &service::Report,
    section: CsvSection,
) -> AppResult<Response> {
    let body = service::csv(report, section)?;
    let entry = session
        .audit("stats.export", "stats", section.as_str())
        .details(json!({"from": report.from, "to": report.to, "org_unit": report.org_unit.as_ref().map(|u| u.id)}));
    audit::record(st.db.pool(), &entry).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"stats-{}-{}-{}.csv\"",
                    section.as_str(),
                    report.from,
                    report.to
                ),
            ),
        ],
        body,
    )
        .into_response())
}

async fn stats(
    State(st): State<AppState>,
    session: AdminSession,
    AppQuery(q): AppQuery<StatsQuery>,
) -> AppResult<Response> {
    let csv = q.csv_section()?;
    let report = service::report(&st, &session, &q.query(csv)?).await?;
    match csv {
        None => Ok(AppJson(report).into_response()),
        Some(section) => csv_response(&st, &session, &report, section).await,
    }
}
