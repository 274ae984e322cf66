//! `/admin/stats` (统计): the report's figures as server-rendered SVG charts and tables, with a
//! CSV download link per table (the admin API's `format=csv`, which the console cookie reaches).
//! Same permission and scoping as `GET /api/admin/stats`: sections the user may not read are
//! not shown.

use axum::{extract::State, http::HeaderMap, response::Response};
use serde::Serialize;

use crate::{
    app::AppState,
    auth::{ConsoleSession, Permission},
    http::{console, AppQuery},
    platform::{error::AppResult, org},
    stats::{
        admin::StatsQuery,
        chart::{self, Scale, Series},
        service::{self, Report},
    },
};

#[derive(Serialize)]
struct Unit {
    id: i64,
    name: String,
}

/// One chart: its title and its markup (escaped by `chart`, printed as is).
#[derive(Serialize)]
struct Chart {
    title: &'static str,
    svg: String,
}

fn charts(r: &Report) -> Vec<(&'static str, Vec<Chart>)> {
    let mut out = Vec::new();
    if let Some(d) = &r.dues {
        let units: Vec<String> = d.by_unit.iter().map(|u| u.org_unit.clone()).collect();
        let months: Vec<String> = d.by_month.iter().map(|m| m.month.clone()).collect();
        out.push((
            "dues",
            vec![
                Chart {
                    title: "党费收缴率（按组织）",
                    svg: chart::bars(
                        "党费收缴率（按组织）",
                        &units,
                        &[Series {
                            name: "收缴率",
                            values: d.by_unit.iter().map(|u| u.figures.rate).collect(),
                        }],
                        Scale::Rate,
                    ),
                },
                Chart {
                    title: "党费收缴率（按月）",
                    svg: chart::lines(
                        "党费收缴率（按月）",
                        &months,
                        &[Series {
                            name: "收缴率",
                            values: d.by_month.iter().map(|m| m.figures.rate).collect(),
                        }],
                        Scale::Rate,
                    ),
                },
            ],
        ));
    }
    if let Some(a) = &r.attendance {
        let units: Vec<String> = a.by_unit.iter().map(|u| u.org_unit.clone()).collect();
        let months: Vec<String> = a.by_month.iter().map(|m| m.month.clone()).collect();
        out.push((
            "attendance",
            vec![
                Chart {
                    title: "三会一课出勤率（按组织）",
                    svg: chart::bars(
                        "三会一课出勤率（按组织）",
                        &units,
                        &[Series {
                            name: "出勤率",
                            values: a.by_unit.iter().map(|u| u.figures.rate).collect(),
                        }],
                        Scale::Rate,
                    ),
                },
                Chart {
                    title: "三会一课出勤率（按月）",
                    svg: chart::lines(
                        "三会一课出勤率（按月）",
                        &months,
                        &[Series {
                            name: "出勤率",
                            values: a.by_month.iter().map(|m| m.figures.rate).collect(),
                        }],
                        Scale::Rate,
                    ),
                },
            ],
        ));
    }
    if let Some(f) = &r.followers {
        let days: Vec<String> = f.daily.iter().map(|d| d.date[5..].to_owned()).collect();
        let count = |g: fn(&crate::stats::rules::FollowerFigures) -> i64| {
            f.daily.iter().map(|d| Some(g(&d.figures) as f64)).collect()
        };
        out.push((
            "followers",
            vec![Chart {
                title: "粉丝关注与取关（按日）",
                svg: chart::lines(
                    "粉丝关注与取关（按日）",
                    &days,
                    &[
                        Series {
                            name: "新关注",
                            values: count(|x| x.subscribed),
                        },
                        Series {
                            name: "取消关注",
                            values: count(|x| x.unsubscribed),
                        },
                    ],
                    Scale::Count,
                ),
            }],
        ));
    }
    if let Some(p) = &r.pushes {
        let months: Vec<String> = p.monthly.iter().map(|m| m.month.clone()).collect();
        out.push((
            "pushes",
            vec![Chart {
                title: "推送送达率与失败率（按月）",
                svg: chart::bars(
                    "推送送达率与失败率（按月）",
                    &months,
                    &[
                        Series {
                            name: "送达率",
                            values: p.monthly.iter().map(|m| m.figures.delivery_rate).collect(),
                        },
                        Series {
                            name: "失败率",
                            values: p.monthly.iter().map(|m| m.figures.failure_rate).collect(),
                        },
                    ],
                    Scale::Rate,
                ),
            }],
        ));
    }
    if let Some(m) = &r.moderation {
        let rows = |kind: &str| -> Vec<Option<f64>> {
            m.monthly
                .iter()
                .filter(|x| x.kind == kind)
                .map(|x| Some(x.figures.count as f64))
                .collect()
        };
        let months: Vec<String> = m
            .monthly
            .iter()
            .filter(|x| x.kind == "submissions")
            .map(|x| x.month.clone())
            .collect();
        out.push((
            "moderation",
            vec![Chart {
                title: "审核量（按月）",
                svg: chart::bars(
                    "审核量（按月）",
                    &months,
                    &[
                        Series {
                            name: "投稿",
                            values: rows("submissions"),
                        },
                        Series {
                            name: "留言",
                            values: rows("board_posts"),
                        },
                    ],
                    Scale::Count,
                ),
            }],
        ));
    }
    out
}

pub async fn page(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
    AppQuery(q): AppQuery<StatsQuery>,
) -> AppResult<Response> {
    session.require(Permission::ReadStats)?;
    let scope = session.org_scope(&st.db).await?;
    let units: Vec<Unit> = org::list(&st.db)
        .await?
        .into_iter()
        .filter(|u| scope.contains(u.id))
        .map(|u| Unit {
            id: u.id,
            name: u.name,
        })
        .collect();
    let (report, errors) = match service::report(&st, &session, &q.query(None)?).await {
        Ok(r) => (Some(r), Default::default()),
        Err(e) if !e.status().is_server_error() => (None, console::field_errors(&e)),
        Err(e) => return Err(e),
    };
    // The filters again, for the CSV links.
    let mut link = form_urlencoded::Serializer::new(String::new());
    if let Some(r) = &report {
        link.append_pair("from", &r.from.to_string());
        link.append_pair("to", &r.to.to_string());
        if let Some(u) = &r.org_unit {
            link.append_pair("org_unit", &u.id.to_string());
        }
    }
    let charts = report.as_ref().map(charts).unwrap_or_default();
    let charts: std::collections::BTreeMap<&str, Vec<Chart>> = charts.into_iter().collect();
    console::page(
        &headers,
        "console/stats/index.html",
        &session.chrome("stats"),
        minijinja::context! {
            r => report,
            charts,
            units,
            errors,
            q_from => q.from,
            q_to => q.to,
            q_unit => q.org_unit,
            filters => link.finish(),
        },
    )
}
