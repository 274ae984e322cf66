//! The message board (留言板) and the member's own submissions (投稿) in the mini-program.
//! Reading the board is public and shows approved posts only; writing goes through moderation
//! and the editors' queue like chat does.

use axum::{extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};

use crate::{
    app::AppState,
    articles::rules::rfc3339_shanghai,
    auth::mp_session::MpSession,
    http::{page_of, AppJson, AppQuery, ListOut},
    platform::error::{AppError, AppResult},
    submissions::service as submissions,
    submissions::store::{self as db, Image, NewSubmission},
};

const MAX_PAGE_SIZE: i64 = 50;

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub struct PageQuery {
    #[serde(default)]
    #[schemars(schema_with = "crate::http::doc::page")]
    pub page: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "crate::http::doc::page_size_50")]
    pub page_size: Option<String>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct PublicPost {
    pub id: i64,
    pub content: String,
    pub answer: Option<String>,
    pub answered_at: Option<String>,
    pub created_at: String,
}

/// `GET /api/mp/board`: approved posts with their answers, newest first. No author identity.
pub async fn list_board(
    State(st): State<AppState>,
    AppQuery(q): AppQuery<PageQuery>,
) -> AppResult<AppJson<ListOut<PublicPost>>> {
    let page = page_of(&q.page, &q.page_size, MAX_PAGE_SIZE)?;
    let (items, total) = db::list_posts(
        &st.db,
        Some("approved"),
        page.size,
        (page.number - 1) * page.size,
    )
    .await?;
    Ok(AppJson(ListOut {
        items: items
            .into_iter()
            .map(|p| PublicPost {
                id: p.id,
                content: p.content,
                answer: p.answer,
                answered_at: p.answered_at.map(rfc3339_shanghai),
                created_at: rfc3339_shanghai(p.created_at),
            })
            .collect(),
        page: page.number,
        page_size: page.size,
        total,
    }))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct PostIn {
    pub content: String,
}

/// The caps shared with the chat path (`rules::check_length`), as a 422.
fn length(field: &str, text: &str, max: usize) -> AppResult<()> {
    crate::submissions::rules::check_length(field, text, max).map_err(AppError::Validation)
}

/// `POST /api/mp/board {"content"}` → 201 `{"id","status"}` (`pending` or `rejected`).
pub async fn create_post(
    State(st): State<AppState>,
    session: MpSession,
    AppJson(b): AppJson<PostIn>,
) -> AppResult<(StatusCode, AppJson<Created>)> {
    length(
        "content",
        &b.content,
        crate::submissions::rules::MAX_BOARD_CHARS,
    )?;
    let (id, m) = submissions::post_board(&st, &session.openid, "mp", b.content.trim()).await?;
    Ok((
        StatusCode::CREATED,
        AppJson(Created {
            id,
            receipt_no: None,
            status: m.initial.as_str(),
        }),
    ))
}

/// A new post or submission: its id, receipt number (submissions) and first moderation state.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Created {
    pub id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt_no: Option<String>,
    pub status: &'static str,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct OwnSubmission {
    pub id: i64,
    pub receipt_no: Option<String>,
    pub source: String,
    pub title: String,
    pub content: String,
    pub images: Vec<Image>,
    pub status: String,
    pub reason: Option<String>,
    pub created_at: String,
    pub decided_at: Option<String>,
}

/// `GET /api/mp/submissions`: the member's own submissions (from the mini-program; chat ones
/// carry the official-account openid, which is a different identity), newest first.
pub async fn list_submissions(
    State(st): State<AppState>,
    session: MpSession,
    AppQuery(q): AppQuery<PageQuery>,
) -> AppResult<AppJson<ListOut<OwnSubmission>>> {
    let page = page_of(&q.page, &q.page_size, MAX_PAGE_SIZE)?;
    let (items, total) = db::list(
        &st.db,
        None,
        Some(&session.openid),
        page.size,
        (page.number - 1) * page.size,
    )
    .await?;
    Ok(AppJson(ListOut {
        items: items
            .into_iter()
            .map(|s| OwnSubmission {
                id: s.id,
                receipt_no: s.receipt_no,
                source: s.source,
                title: s.title,
                content: s.content,
                images: s.images,
                status: s.status,
                reason: s.reason,
                created_at: rfc3339_shanghai(s.created_at),
                decided_at: s.decided_at.map(rfc3339_shanghai),
            })
            .collect(),
        page: page.number,
        page_size: page.size,
        total,
    }))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SubmissionIn {
    #[serde(default)]
    pub title: String,
    pub content: String,
    /// Image URLs (or cloud file ids) uploaded by the mini-program.
    #[serde(default)]
    pub images: Vec<String>,
}

/// `POST /api/mp/submissions {"title","content","images":[]}` → 201
/// `{"id","receipt_no","status"}`.
pub async fn create_submission(
    State(st): State<AppState>,
    session: MpSession,
    AppJson(b): AppJson<SubmissionIn>,
) -> AppResult<(StatusCode, AppJson<Created>)> {
    length("content", &b.content, submissions::MAX_CHARS)?;
    if b.title.chars().count() > 100 {
        return Err(AppError::Validation("title: at most 100 characters".into()));
    }
    if b.images.len() > submissions::MAX_IMAGES
        || b.images
            .iter()
            .any(|u| u.trim().is_empty() || u.len() > 1000)
    {
        return Err(AppError::Validation(format!(
            "images: at most {} non-empty URLs",
            submissions::MAX_IMAGES
        )));
    }
    let images: Vec<Image> = b
        .images
        .iter()
        .map(|u| Image {
            url: u.trim().to_owned(),
            media_id: None,
        })
        .collect();
    let title = match b.title.trim() {
        "" => submissions::title_of(&b.content),
        t => t.to_owned(),
    };
    let (id, receipt, m) = submissions::submit(
        &st,
        &NewSubmission {
            openid: &session.openid,
            source: "mp",
            title: &title,
            content: b.content.trim(),
            images: &images,
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        AppJson(Created {
            id,
            receipt_no: Some(receipt),
            status: m.initial.as_str(),
        }),
    ))
}
