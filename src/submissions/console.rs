//! `/admin/moderation`: the editors' queues of submissions (投稿) and board posts (留言) with
//! approve / reject (with a reason) and answers to posts, through `submissions::service` — the
//! same decisions the admin API makes.

use axum::{
    extract::{Path, Query, State},
    http::HeaderMap,
    response::Response,
    Form,
};
use serde::{Deserialize, Serialize};

use crate::{
    app::AppState,
    auth::{ConsoleSession, Permission},
    http::console::{self, pager, redirect_error, redirect_flash},
    http::{extract::blank_to_none, page_of},
    platform::error::{AppError, AppResult},
    platform::time::local_minute,
    submissions::rules::EditorDecision,
    submissions::service,
    submissions::store::{self as db, Table},
};

#[derive(Debug, Default, Deserialize)]
pub struct QueueQuery {
    #[serde(default)]
    pub tab: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub page: Option<String>,
}

#[derive(Serialize)]
struct Item {
    id: i64,
    receipt_no: Option<String>,
    title: String,
    content: String,
    images: Vec<String>,
    status: String,
    moderation: Option<String>,
    reason: Option<String>,
    answer: Option<String>,
    created: String,
    article_id: Option<i64>,
}

const STATES: [&str; 3] = ["pending", "approved", "rejected"];

pub async fn queue(
    State(st): State<AppState>,
    headers: HeaderMap,
    session: ConsoleSession,
    Query(q): Query<QueueQuery>,
) -> AppResult<Response> {
    session.require(Permission::Moderate)?;
    let board = q.tab.as_deref() == Some("board");
    let status = match blank_to_none(&q.status) {
        None => Some("pending"),
        Some("all") => None,
        Some(s) => STATES.iter().copied().find(|x| *x == s),
    };
    let page = page_of(&q.page, &None, 100)?;
    let (limit, offset) = (page.size, page.offset());
    let (items, total): (Vec<Item>, i64) = if board {
        let (rows, total) = db::list_posts(&st.db, status, limit, offset).await?;
        let items = rows
            .into_iter()
            .map(|p| Item {
                id: p.id,
                receipt_no: None,
                title: String::new(),
                content: p.content,
                images: Vec::new(),
                status: p.status,
                moderation: p.moderation_label.or(p.moderation_suggest),
                reason: p.reason,
                answer: p.answer,
                created: local_minute(p.created_at),
                article_id: None,
            })
            .collect();
        (items, total)
    } else {
        let (rows, total) = db::list(&st.db, status, None, limit, offset).await?;
        let items = rows
            .into_iter()
            .map(|s| Item {
                id: s.id,
                receipt_no: s.receipt_no,
                title: s.title,
                content: s.content,
                images: s.images.into_iter().map(|i| i.url).collect(),
                status: s.status,
                moderation: s.moderation_label.or(s.moderation_suggest),
                reason: s.reason,
                answer: None,
                created: local_minute(s.created_at),
                article_id: s.article_id,
            })
            .collect();
        (items, total)
    };
    let tab = if board { "board" } else { "submissions" };
    let status_s = status.unwrap_or("all");
    let pager = pager(page, total, &[("tab", tab), ("status", status_s)]);
    console::page(
        &headers,
        "console/moderation/queue.html",
        &session.chrome("moderation"),
        minijinja::context! { items, pager, tab, status => status_s },
    )
}

#[derive(Debug, Default, Deserialize)]
pub struct DecisionForm {
    #[serde(default)]
    pub decision: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub back: String,
}

fn back(to: &str) -> String {
    if to.starts_with("/admin/moderation") && !to.contains("//") {
        to.to_owned()
    } else {
        "/admin/moderation".into()
    }
}

/// `POST /admin/moderation/{submissions|board}/{id}/decision`
pub async fn decide(
    State(st): State<AppState>,
    session: ConsoleSession,
    Path((kind, id)): Path<(String, String)>,
    Form(f): Form<DecisionForm>,
) -> AppResult<Response> {
    session.require(Permission::Moderate)?;
    let table = match kind.as_str() {
        "submissions" => Table::Submissions,
        "board" => Table::BoardPosts,
        _ => return Err(AppError::NotFound("queue".into())),
    };
    let id: i64 = id.parse().map_err(|_| AppError::NotFound("item".into()))?;
    let to = back(&f.back);
    let decision = match f.decision.as_str() {
        "approve" => EditorDecision::Approve,
        "reject" => EditorDecision::Reject,
        _ => return Ok(redirect_flash(&to, false, "请选择通过或驳回")),
    };
    let reason = f.reason.trim();
    if reason.chars().count() > 500 {
        return Ok(redirect_flash(&to, false, "理由最多500字"));
    }
    let reason = (!reason.is_empty()).then_some(reason);
    match service::decide(&st, &session, table, id, decision, reason).await {
        Ok(()) => Ok(redirect_flash(
            &to,
            true,
            if decision == EditorDecision::Approve {
                "已通过"
            } else {
                "已驳回"
            },
        )),
        Err(e) => redirect_error(&to, e),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct AnswerForm {
    #[serde(default)]
    pub answer: String,
    #[serde(default)]
    pub back: String,
}

/// `POST /admin/moderation/board/{id}/answer`
pub async fn answer(
    State(st): State<AppState>,
    session: ConsoleSession,
    crate::http::Id(id): crate::http::Id,
    Form(f): Form<AnswerForm>,
) -> AppResult<Response> {
    session.require(Permission::Moderate)?;
    let to = back(&f.back);
    let text = f.answer.trim();
    if text.is_empty() || text.chars().count() > 2000 {
        return Ok(redirect_flash(&to, false, "回复内容应为1到2000字"));
    }
    match service::answer(&st, &session, id, text).await {
        Ok(Some(false)) => Ok(redirect_flash(
            &to,
            true,
            "已回复（未能通过客服消息送达留言人）",
        )),
        Ok(_) => Ok(redirect_flash(&to, true, "已回复")),
        Err(e) => redirect_error(&to, e),
    }
}

/// `POST /admin/moderation/submissions/{id}/draft`: turn a pending or approved submission into
/// an article draft (or open the one made before) and land on its edit page.
pub async fn to_draft(
    State(st): State<AppState>,
    session: ConsoleSession,
    crate::http::Id(id): crate::http::Id,
    Form(f): Form<AnswerForm>,
) -> AppResult<Response> {
    session.require(Permission::Moderate)?;
    session.require(Permission::ManageArticles)?;
    match service::to_article_draft(&st, &session, id).await {
        Ok(d) => Ok(redirect_flash(
            &format!("/admin/articles/{}", d.article_id),
            true,
            if d.created {
                "已转为文章草稿，请编辑后提交审核"
            } else {
                "此投稿已转为文章草稿，已打开该草稿"
            },
        )),
        Err(e) => redirect_error(&back(&f.back), e),
    }
}
