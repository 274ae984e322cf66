//! `/admin/audit`: the audit log, read-only, for administrators (the permission of
//! `GET /api/admin/audit`): filters by actor, action (`member.` for a prefix), target and a date
//! range (Asia/Shanghai days, both ends included), newest first, in pages.

use axum::{
    extract::{Query, State},
    http::HeaderMap,
    response::Response,
};
use serde::{Deserialize, Serialize};

use crate::{
    app::AppState,
    auth::{ConsoleSession, Permission},
    http::console::{self, pager, parse_local},
    http::{extract::blank_to_none, page_of},
    platform::audit::{self, AuditFilter},
    platform::error::AppResult,
    platform::time::local_minute,
};

#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    pub actor: Option<String>,
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub target_type: Option<String>,
    #[serde(default)]
    pub target_id: Option<String>,
    /// `YYYY-MM-DD`, from the start of that day.
    #[serde(default)]
    pub since: Option<String>,
    /// `YYYY-MM-DD`, to the end of that day.
    #[serde(default)]
    pub until: Option<String>,
    #[serde(default)]
    pub page: Option<String>,
}

#[derive(Serialize)]
struct EntryView {
    at: String,
    actor: String,
    action: String,
    target: String,
    ip: String,
    details: String,
}

const DAY_MS: i64 = 86_400_000;

/// The start of a `YYYY-MM-DD` day in Asia/Shanghai.
fn day_start(v: Option<&str>) -> Result<Option<i64>, ()> {
    match v {
        None => Ok(None),
        Some(d) if d.len() == 10 => parse_local(&format!("{d}T00:00")).map_err(|_| ()),
        Some(_) => Err(()),
    }
}

pub async fn list(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
    Query(q): Query<AuditQuery>,
) -> AppResult<Response> {
    session.require(Permission::ReadAudit)?;
    let page = page_of(&q.page, &None, 100)?;
    let mut error = None;
    let since = day_start(blank_to_none(&q.since)).unwrap_or_else(|()| {
        error = Some("开始日期格式应为 2026-07-01");
        None
    });
    let until = day_start(blank_to_none(&q.until))
        .map(|d| d.map(|ms| ms + DAY_MS))
        .unwrap_or_else(|()| {
            error = Some("结束日期格式应为 2026-07-01");
            None
        });
    let own = |v: &Option<String>| blank_to_none(v).map(str::to_owned);
    let filter = AuditFilter {
        actor: own(&q.actor),
        action: own(&q.action),
        target_type: own(&q.target_type),
        target_id: own(&q.target_id),
        since: None,
        until: None,
        page: Some(page.number),
        page_size: Some(page.size),
    };
    let (entries, total) = audit::search(&st.db, &filter, since, until).await?;
    let entries: Vec<EntryView> = entries
        .into_iter()
        .map(|e| {
            let e = e.entry;
            EntryView {
                at: local_minute(e.at),
                actor: e.actor,
                action: e.action,
                target: match e.target_id {
                    Some(id) if !id.is_empty() => format!("{} #{id}", e.target_type),
                    _ => e.target_type,
                },
                ip: e.ip.unwrap_or_default(),
                details: if e.details.as_object().is_some_and(|o| o.is_empty()) {
                    String::new()
                } else {
                    e.details.to_string()
                },
            }
        })
        .collect();
    let s = |v: &Option<String>| v.clone().unwrap_or_default();
    let f = [
        ("actor", s(&q.actor)),
        ("action", s(&q.action)),
        ("target_type", s(&q.target_type)),
        ("target_id", s(&q.target_id)),
        ("since", s(&q.since)),
        ("until", s(&q.until)),
    ];
    let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let pager = pager(page, total, &pairs);
    let form: std::collections::BTreeMap<&str, &str> = pairs.iter().copied().collect();
    console::page(
        &headers,
        "console/audit/list.html",
        &session.chrome("audit"),
        minijinja::context! { entries, pager, f => form, error },
    )
}
