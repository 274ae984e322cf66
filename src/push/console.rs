//! `/admin/pushes`: compose a push (articles, audience kind + ids, channel, time), the list, and a
//! push's page with counts per state and a progress bar that `console.js` keeps current by polling
//! `GET /api/admin/pushes/{id}` (same origin, the console cookie); pause / resume / cancel.
//! Everything goes through `push::service`, as the admin API does.

use std::collections::BTreeMap;

use axum::{
    extract::{Path, Query, State},
    http::HeaderMap,
    response::Response,
};
use serde::{Deserialize, Serialize};

use crate::{
    app::AppState,
    articles,
    auth::{ConsoleSession, Permission},
    http::console::{self, field_errors, parse_local, redirect_error, redirect_flash},
    platform::error::{AppError, AppResult},
    platform::time::{local_minute, rfc3339_shanghai},
    push::{service, store, Action, PushStatus},
};

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub page: Option<i64>,
}

#[derive(Serialize)]
struct Row {
    id: i64,
    channel: &'static str,
    audience: String,
    status: &'static str,
    scheduled: String,
    total: i64,
}

pub async fn list(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
    Query(q): Query<ListQuery>,
) -> AppResult<Response> {
    session.require(Permission::ManagePushes)?;
    let status = q.status.as_deref().and_then(PushStatus::parse);
    let page = q.page.unwrap_or(1).max(1);
    let rows = store::list(&st.db, status, 21, (page - 1) * 20).await?;
    let more = rows.len() > 20;
    let rows: Vec<Row> = rows
        .into_iter()
        .take(20)
        .map(|p| Row {
            id: p.id,
            channel: p.channel.as_str(),
            audience: p.audience.kind.as_str().to_owned(),
            status: p.status.as_str(),
            scheduled: local_minute(p.scheduled_at),
            total: p.total,
        })
        .collect();
    let status_s = status.map(|s| s.as_str()).unwrap_or("");
    let link = |n: i64| format!("?status={status_s}&page={n}");
    console::page(
        &headers,
        "console/pushes/list.html",
        &session.chrome("pushes"),
        minijinja::context! { rows, status => status_s, prev => (page > 1).then(|| link(page - 1)), next => more.then(|| link(page + 1)), page },
    )
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct ComposeForm {
    /// Comma-separated article ids (the checkboxes send one `article` field each; see `parse`).
    #[serde(default)]
    pub articles: String,
    #[serde(default)]
    pub audience_kind: String,
    #[serde(default)]
    pub audience_ids: String,
    #[serde(default)]
    pub channel: String,
    #[serde(default)]
    pub scheduled_at: String,
}

#[derive(Serialize)]
struct ArticleChoice {
    id: i64,
    title: String,
    category: String,
}

async fn compose_page(
    st: &AppState,
    headers: &HeaderMap,
    session: &ConsoleSession,
    form: &ComposeForm,
    chosen: &[i64],
    errors: BTreeMap<String, String>,
) -> AppResult<Response> {
    let filter = articles::store::ArticleFilter {
        status: Some(articles::rules::Status::Published),
        ..Default::default()
    };
    let page = crate::platform::db::Page {
        number: 1,
        size: 50,
    };
    let (items, _) = articles::store::list_admin(&st.db, &filter, page).await?;
    let choices: Vec<ArticleChoice> = items
        .into_iter()
        .map(|a| ArticleChoice {
            id: a.id,
            title: a.title,
            category: a.category,
        })
        .collect();
    console::form_page(
        headers,
        "console/pushes/new.html",
        &session.chrome("pushes"),
        minijinja::context! { form, choices, chosen, errors },
        &errors,
    )
}

pub async fn new_page(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
) -> AppResult<Response> {
    session.require(Permission::ManagePushes)?;
    let form = ComposeForm {
        audience_kind: "all".into(),
        channel: "template".into(),
        ..Default::default()
    };
    compose_page(&st, &headers, &session, &form, &[], BTreeMap::new()).await
}

fn ids(s: &str) -> Result<Vec<i64>, ()> {
    s.split([',', '，', ' ', '\n'])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| t.parse::<i64>().map_err(|_| ()))
        .collect()
}

/// `POST /admin/pushes/new`: repeated `article` fields (checkboxes) plus the other fields.
pub async fn create(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
    body: axum::body::Bytes,
) -> AppResult<Response> {
    session.require(Permission::ManagePushes)?;
    let mut form = ComposeForm::default();
    let mut chosen = Vec::new();
    for (k, v) in form_urlencoded::parse(&body) {
        match &*k {
            "article" => chosen.extend(v.parse::<i64>().ok()),
            "audience_kind" => form.audience_kind = v.into_owned(),
            "audience_ids" => form.audience_ids = v.into_owned(),
            "channel" => form.channel = v.into_owned(),
            "scheduled_at" => form.scheduled_at = v.into_owned(),
            _ => {}
        }
    }
    let mut errors = BTreeMap::new();
    let audience_ids = ids(&form.audience_ids).unwrap_or_else(|()| {
        errors.insert("audience".into(), "对象编号应为逗号分隔的数字".into());
        Vec::new()
    });
    let at = parse_local(&form.scheduled_at).unwrap_or_else(|_| {
        errors.insert(
            "scheduled_at".into(),
            "时间格式应为 2026-07-01T08:00".into(),
        );
        None
    });
    if chosen.is_empty() {
        errors.insert("article_ids".into(), "请至少选择一篇文章".into());
    }
    if !errors.is_empty() {
        return compose_page(&st, &headers, &session, &form, &chosen, errors).await;
    }
    let body = serde_json::json!({
        "article_ids": chosen,
        "audience": {"kind": form.audience_kind, "ids": audience_ids},
        "channel": form.channel,
        "scheduled_at": at.map(rfc3339_shanghai),
    });
    let req: service::CreatePush = match serde_json::from_value(body) {
        Ok(r) => r,
        Err(e) => {
            let errors = BTreeMap::from([(String::new(), format!("输入有误：{e}"))]);
            return compose_page(&st, &headers, &session, &form, &chosen, errors).await;
        }
    };
    match service::create_audited(&st, &session, &req).await {
        Ok(c) => Ok(redirect_flash(
            &format!("/admin/pushes/{}", c.id),
            true,
            "推送已创建",
        )),
        Err(e) if e.status().is_client_error() => {
            let mut errors = field_errors(&e);
            if let Some(v) = errors.remove("audience.ids") {
                errors.insert("audience".into(), v);
            }
            compose_page(&st, &headers, &session, &form, &chosen, errors).await
        }
        Err(e) => Err(e),
    }
}

pub async fn detail(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
    crate::http::Id(id): crate::http::Id,
) -> AppResult<Response> {
    session.require(Permission::ManagePushes)?;
    let push = store::get(&st.db, id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("push {id}")))?;
    let view = service::view(&st, push).await?;
    let c = &view.counts;
    let total = c.pending + c.in_flight + c.sent + c.failed + c.unknown + c.skipped;
    let finished = total - c.pending - c.in_flight;
    let pct = if total > 0 {
        finished * 100 / total
    } else if matches!(
        view.push.status,
        PushStatus::Completed | PushStatus::Cancelled | PushStatus::Failed
    ) {
        100
    } else {
        0
    };
    let status = view.push.status.as_str();
    console::page(
        &headers,
        "console/pushes/detail.html",
        &session.chrome("pushes"),
        minijinja::context! {
            id,
            status,
            channel => view.push.channel.as_str(),
            audience => view.push.audience.kind.as_str(),
            scheduled => local_minute(view.push.scheduled_at),
            articles => view.push.article_ids,
            reason => view.push.status_reason,
            counts => view.counts,
            errors => view.errors_by_code,
            skipped => view.skipped_reasons,
            rate => view.rate,
            eta => view.eta_seconds,
            pct,
        },
    )
}

/// `POST /admin/pushes/{id}/{pause|resume|cancel}`
pub async fn act(
    State(st): State<AppState>,
    session: ConsoleSession,
    Path((id, action)): Path<(String, String)>,
) -> AppResult<Response> {
    session.require(Permission::ManagePushes)?;
    let id: i64 = id.parse().map_err(|_| AppError::NotFound("push".into()))?;
    let (action, done) = match action.as_str() {
        "pause" => (Action::Pause, "已暂停"),
        "resume" => (Action::Resume, "已恢复发送"),
        "cancel" => (Action::Cancel, "已取消"),
        _ => return Err(AppError::NotFound("action".into())),
    };
    let to = format!("/admin/pushes/{id}");
    match service::act_audited(&st, &session, id, action).await {
        Ok(_) => Ok(redirect_flash(&to, true, done)),
        Err(e) => redirect_error(&to, e),
    }
}
