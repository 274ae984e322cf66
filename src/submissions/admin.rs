//! `/api/admin` review of member submissions (投稿) and message-board posts (留言): the editors'
//! queue, decisions (only from `pending`; a second decision is a 409) and answers to posts. Every
//! write is audited in its transaction. Needs `Permission::Moderate` (editors and admins).

use axum::{extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};

use crate::{
    app::AppState,
    auth::{AdminSession, Permission},
    http::{page_of, routes::AdminRoutes, AppJson, AppQuery, Id, ListOut},
    platform::error::{AppError, AppResult},
    platform::time::rfc3339_shanghai,
    submissions::rules::EditorDecision,
    submissions::service,
    submissions::store::{self as db, BoardPost, Image, Submission, Table},
};

pub fn routes(r: AdminRoutes) -> AdminRoutes {
    let p = Permission::Moderate;
    r.get("/api/admin/submissions", p, list_submissions)
        .get("/api/admin/submissions/{id}", p, get_submission)
        .post("/api/admin/submissions/{id}/decision", p, decide_submission)
        .post("/api/admin/submissions/{id}/draft", p, draft_submission)
        .get("/api/admin/board", p, list_posts)
        .post("/api/admin/board/{id}/decision", p, decide_post)
        .post("/api/admin/board/{id}/answer", p, answer_post)
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct SubmissionOut {
    pub id: i64,
    pub receipt_no: Option<String>,
    pub openid: String,
    pub source: String,
    pub title: String,
    pub content: String,
    pub images: Vec<Image>,
    pub status: String,
    pub moderation: ModerationOut,
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
    pub reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// The article draft an editor turned it into (`POST .../draft`).
    pub article_id: Option<i64>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ModerationOut {
    /// `local` (sensitive-word list), `pass`/`review`/`risky` (msgSecCheck) or `unchecked`.
    pub suggest: Option<String>,
    pub label: Option<String>,
}

pub fn submission_out(s: Submission) -> SubmissionOut {
    SubmissionOut {
        id: s.id,
        receipt_no: s.receipt_no,
        openid: s.openid,
        source: s.source,
        title: s.title,
        content: s.content,
        images: s.images,
        status: s.status,
        moderation: ModerationOut {
            suggest: s.moderation_suggest,
            label: s.moderation_label,
        },
        decided_by: s.decided_by,
        decided_at: s.decided_at.map(rfc3339_shanghai),
        reason: s.reason,
        created_at: rfc3339_shanghai(s.created_at),
        updated_at: rfc3339_shanghai(s.updated_at),
        article_id: s.article_id,
    }
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct PostOut {
    pub id: i64,
    pub openid: String,
    pub source: String,
    pub content: String,
    pub status: String,
    pub moderation: ModerationOut,
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
    pub reason: Option<String>,
    pub answer: Option<String>,
    pub answered_by: Option<String>,
    pub answered_at: Option<String>,
    pub created_at: String,
}

fn post_out(p: BoardPost) -> PostOut {
    PostOut {
        id: p.id,
        openid: p.openid,
        source: p.source,
        content: p.content,
        status: p.status,
        moderation: ModerationOut {
            suggest: p.moderation_suggest,
            label: p.moderation_label,
        },
        decided_by: p.decided_by,
        decided_at: p.decided_at.map(rfc3339_shanghai),
        reason: p.reason,
        answer: p.answer,
        answered_by: p.answered_by,
        answered_at: p.answered_at.map(rfc3339_shanghai),
        created_at: rfc3339_shanghai(p.created_at),
    }
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub struct ListQuery {
    #[schemars(extend("enum" = ["pending", "approved", "rejected", "all"]))]
    pub status: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "crate::http::doc::page")]
    pub page: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "crate::http::doc::page_size_100")]
    pub page_size: Option<String>,
}

/// `?status=` one of `states`, or `all`; default `pending` (the queue).
fn status_filter(q: &ListQuery, states: &[&'static str]) -> AppResult<Option<&'static str>> {
    match q.status.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(Some("pending")),
        Some("all") => Ok(None),
        Some(s) => states
            .iter()
            .find(|x| **x == s)
            .map(|x| Some(*x))
            .ok_or_else(|| {
                AppError::Validation(format!("status: one of {}, all", states.join(", ")))
            }),
    }
}

const STATES: [&str; 3] = ["pending", "approved", "rejected"];

async fn list_submissions(
    State(st): State<AppState>,
    AppQuery(q): AppQuery<ListQuery>,
) -> AppResult<AppJson<ListOut<SubmissionOut>>> {
    let status = status_filter(&q, &STATES)?;
    let page = page_of(&q.page, &q.page_size, 100)?;
    let (items, total) = db::list(
        &st.db,
        status,
        None,
        page.size,
        (page.number - 1) * page.size,
    )
    .await?;
    Ok(AppJson(ListOut {
        items: items.into_iter().map(submission_out).collect(),
        page: page.number,
        page_size: page.size,
        total,
    }))
}

async fn get_submission(
    State(st): State<AppState>,
    Id(id): Id,
) -> AppResult<AppJson<SubmissionOut>> {
    db::get(&st.db, id)
        .await?
        .map(|s| AppJson(submission_out(s)))
        .ok_or_else(|| AppError::NotFound("submission".into()))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct DecisionBody {
    pub decision: EditorDecision,
    #[serde(default)]
    pub reason: Option<String>,
}

fn reason_of(b: &DecisionBody) -> AppResult<Option<String>> {
    let reason = b.reason.as_deref().map(str::trim).filter(|r| !r.is_empty());
    if reason.is_some_and(|r| r.chars().count() > 500) {
        return Err(AppError::Validation(
            "reason: at most 500 characters".into(),
        ));
    }
    Ok(reason.map(str::to_owned))
}

async fn decide_submission(
    State(st): State<AppState>,
    session: AdminSession,
    Id(id): Id,
    AppJson(b): AppJson<DecisionBody>,
) -> AppResult<AppJson<SubmissionOut>> {
    let reason = reason_of(&b)?;
    service::decide(
        &st,
        &session,
        Table::Submissions,
        id,
        b.decision,
        reason.as_deref(),
    )
    .await?;
    let after = db::get(&st.db, id).await?;
    Ok(AppJson(submission_out(
        after.ok_or_else(|| AppError::NotFound("submission".into()))?,
    )))
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct DraftOut {
    pub article_id: i64,
    /// False when the submission had been turned already (the same draft, nothing written).
    pub created: bool,
}

/// Turn a pending or approved submission into an article draft with the sender's attribution;
/// 201 with the new article's id, or 200 with the one made before. Needs `Moderate`, and the
/// article is written as `ManageArticles` would (the same roles hold both).
async fn draft_submission(
    State(st): State<AppState>,
    session: AdminSession,
    Id(id): Id,
) -> AppResult<(StatusCode, AppJson<DraftOut>)> {
    session.require(Permission::ManageArticles)?;
    let d = service::to_article_draft(&st, &session, id).await?;
    let status = if d.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        AppJson(DraftOut {
            article_id: d.article_id,
            created: d.created,
        }),
    ))
}

async fn list_posts(
    State(st): State<AppState>,
    AppQuery(q): AppQuery<ListQuery>,
) -> AppResult<AppJson<ListOut<PostOut>>> {
    let status = status_filter(&q, &STATES)?;
    let page = page_of(&q.page, &q.page_size, 100)?;
    let (items, total) =
        db::list_posts(&st.db, status, page.size, (page.number - 1) * page.size).await?;
    Ok(AppJson(ListOut {
        items: items.into_iter().map(post_out).collect(),
        page: page.number,
        page_size: page.size,
        total,
    }))
}

async fn decide_post(
    State(st): State<AppState>,
    session: AdminSession,
    Id(id): Id,
    AppJson(b): AppJson<DecisionBody>,
) -> AppResult<AppJson<PostOut>> {
    let reason = reason_of(&b)?;
    service::decide(
        &st,
        &session,
        Table::BoardPosts,
        id,
        b.decision,
        reason.as_deref(),
    )
    .await?;
    let after = db::get_post(&st.db, id).await?;
    Ok(AppJson(post_out(
        after.ok_or_else(|| AppError::NotFound("board post".into()))?,
    )))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct AnswerBody {
    #[schemars(length(min = 1, max = 2000), regex(pattern = r"\S"))]
    pub answer: String,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct AnsweredOut {
    #[serde(flatten)]
    pub post: PostOut,
    /// Chat posts: whether the answer reached the member as a customer-service message (it can
    /// fail, e.g. outside WeChat's 48-hour window). None for mini-program posts.
    pub delivered: Option<bool>,
}

/// Answer a post (pending or approved; replacing an earlier answer is allowed). A chat post's
/// author gets the answer in chat.
async fn answer_post(
    State(st): State<AppState>,
    session: AdminSession,
    Id(id): Id,
    AppJson(b): AppJson<AnswerBody>,
) -> AppResult<AppJson<AnsweredOut>> {
    let delivered = service::answer(&st, &session, id, &b.answer).await?;
    let after = db::get_post(&st.db, id)
        .await?
        .ok_or_else(|| AppError::NotFound("board post".into()))?;
    Ok(AppJson(AnsweredOut {
        post: post_out(after),
        delivered,
    }))
}
