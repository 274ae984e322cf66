//! `GET /api/admin/audit` (admins only).

use axum::extract::State;
use serde::Serialize;
use serde_json::Value;

use crate::http::{routes::AdminRoutes, AppJson, AppQuery};
use crate::platform::time::{parse_time, rfc3339};
use crate::{
    app::AppState,
    auth::Permission,
    platform::audit::{self, AuditFilter},
    platform::error::{AppError, AppResult},
};

pub fn routes(r: AdminRoutes) -> AdminRoutes {
    r.get("/api/admin/audit", Permission::ReadAudit, search)
}

#[derive(Serialize, schemars::JsonSchema)]
struct AuditOut {
    id: i64,
    at: String,
    actor_id: Option<i64>,
    actor: String,
    action: String,
    target_type: String,
    target_id: Option<String>,
    ip: Option<String>,
    details: Value,
}

#[derive(Serialize, schemars::JsonSchema)]
struct AuditPage {
    entries: Vec<AuditOut>,
    page: i64,
    page_size: i64,
    total: i64,
}

async fn search(
    State(st): State<AppState>,
    AppQuery(f): AppQuery<AuditFilter>,
) -> AppResult<AppJson<AuditPage>> {
    let time = |v: &Option<String>, name: &str| -> AppResult<Option<i64>> {
        match v.as_deref().filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => parse_time(s).map(Some).ok_or_else(|| {
                AppError::BadRequest(format!("{name} must be RFC 3339 or unix milliseconds"))
            }),
        }
    };
    let since = time(&f.since, "since")?;
    let until = time(&f.until, "until")?;
    let page = crate::http::page_number(f.page)?;
    let page_size = match f.page_size {
        None => audit::PAGE_SIZE,
        Some(n) if (1..=audit::MAX_PAGE_SIZE).contains(&n) => n,
        Some(_) => {
            return Err(AppError::Validation(format!(
                "page_size: must be a whole number from 1 to {}",
                audit::MAX_PAGE_SIZE
            )))
        }
    };
    let f = AuditFilter {
        page: Some(page),
        page_size: Some(page_size),
        ..f
    };
    let (entries, total) = audit::search(&st.db, &f, since, until).await?;
    let entries = entries
        .into_iter()
        .map(|e| AuditOut {
            id: e.id,
            at: rfc3339(e.entry.at),
            actor_id: e.entry.actor_id,
            actor: e.entry.actor,
            action: e.entry.action,
            target_type: e.entry.target_type,
            target_id: e.entry.target_id,
            ip: e.entry.ip,
            details: e.entry.details,
        })
        .collect();
    Ok(AppJson(AuditPage {
        entries,
        page,
        page_size,
        total,
    }))
}
