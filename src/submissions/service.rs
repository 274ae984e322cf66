//! Submissions (投稿) and message-board posts (留言) from members: the chat conversation and the
//! moderated creation shared by chat and the mini-program. Nothing created here is public: it
//! is either in the editors' queue (`pending`) or refused by moderation (`rejected`).

use wechat::message::InboundMessage;

use axum::http::StatusCode;
use serde_json::json;

use crate::{
    app::AppState,
    auth::AdminSession,
    platform::dedup::ReadAlong,
    platform::error::AppResult,
    platform::outbound::CustomMessage,
    platform::{audit, error::AppError},
    submissions::moderation::{self, SCENE_BOARD, SCENE_SUBMISSION},
    submissions::rules::EditorDecision,
    submissions::rules::{
        chat_command, check_length, draft_step, may_continue_draft, stored_moderation, ChatCommand,
        DraftStep, Initial, Moderation, MAX_BOARD_CHARS,
    },
    submissions::store::Table,
    submissions::store::{self as db, Image, NewSubmission},
};

/// A chat draft lives this long after its last message.
pub const DRAFT_TTL_MS: i64 = 10 * 60 * 1000;
pub const MAX_IMAGES: usize = 9;
pub const MAX_CHARS: usize = crate::submissions::rules::MAX_SUBMISSION_CHARS;

const DRAFT_STARTED: &str =
    "已开始投稿：请直接发送文字和图片，发送“完成”提交，发送“取消”放弃。草稿保留10分钟。";
const DRAFT_RESUMED: &str =
    "您有一份未完成的投稿：继续发送文字和图片即可，发送“完成”提交，发送“取消”放弃。";
const DRAFT_EMPTY: &str = "投稿还是空的：请先发送文字或图片，或发送“取消”放弃。";
const DRAFT_CANCELLED: &str = "已取消本次投稿。";
const DRAFT_FULL: &str =
    "投稿内容已达上限（5000字、9张图片），请发送“完成”提交，或发送“取消”放弃。";
const SUBMISSION_REFUSED: &str =
    "抱歉，您的投稿未通过内容安全审核，未能提交。请修改后重新投稿，如有疑问请联系管理员。";
pub const BOARD_RECEIVED: &str = "留言已收到，审核后公开。感谢您的关注！";
const BOARD_REFUSED: &str = "抱歉，您的留言未通过内容安全审核，未能发布。请修改后重新留言。";
const BOARD_HELP: &str = "请发送“留言 + 内容”，例如：留言 希望增加党史学习资料。";
const SUBMISSION_TOO_LONG: &str =
    "投稿内容过长（最多5000字）。请分段发送：先发送“投稿”，再逐段发送内容，最后发送“完成”。";
const BOARD_TOO_LONG: &str = "留言内容过长（最多1000字），请精简后重新留言。";
const SUBMISSION_THROTTLED: &str = "您近一小时的投稿次数已达上限，请稍后再投稿。";
const BOARD_THROTTLED: &str = "您近一小时的留言次数已达上限，请稍后再留言。";

const HOUR_MS: i64 = 3600 * 1000;

fn throttled(what: &str) -> AppError {
    AppError::TooManyRequests(format!(
        "too many {what} from this member in the last hour; try again later"
    ))
}

/// The chat answer for a throttled member instead of the error (chat cannot show a 429).
fn chat_throttle(result: AppResult<String>, reply: &str) -> AppResult<String> {
    match result {
        Err(AppError::TooManyRequests(_)) => Ok(reply.to_owned()),
        other => other,
    }
}

/// Open drafts are marked in the cache, so that an ordinary text message (the hot path) costs no
/// database query: only a sender with a marker is looked up. The database stays authoritative;
/// a lost marker (in-process cache after a restart) only means the member sends `投稿` again,
/// which resumes the same draft.
fn draft_marker(openid: &str) -> String {
    ["chat_draft:", openid].concat()
}

/// The cache key the webhook reads along with a message's de-duplication claim (one round trip
/// to Redis instead of two before the reply): the sender's draft marker, when the message could
/// continue a draft. Its value goes to [`handle_chat`].
pub fn read_along_key(msg: &InboundMessage) -> Option<String> {
    may_continue_draft(msg).then(|| draft_marker(&msg.from_user))
}

/// Whether `msg` is a `投稿`/`留言` command, which [`handle_chat`] answers whatever the draft
/// marker says.
pub fn is_chat_command(msg: &InboundMessage) -> bool {
    chat_command(msg).is_some()
}

async fn mark_draft_open(st: &AppState, openid: &str) {
    let ttl = std::time::Duration::from_millis(DRAFT_TTL_MS as u64);
    if let Err(e) = st.cache.set(&draft_marker(openid), "1", ttl).await {
        tracing::warn!(error = %e, "could not mark an open draft in the cache");
    }
}

async fn clear_draft_mark(st: &AppState, openid: &str) {
    if let Err(e) = st.cache.del(&draft_marker(openid)).await {
        tracing::warn!(error = %e, "could not clear a draft marker");
    }
}

/// `marker`: the draft marker as read along with the claim, if it was.
async fn may_have_draft(st: &AppState, openid: &str, marker: ReadAlong) -> bool {
    match marker {
        ReadAlong::Read(v) => v.is_some(),
        // On a cache error, ask the database rather than lose a draft.
        ReadAlong::NotRead => st
            .cache
            .get(&draft_marker(openid))
            .await
            .map(|v| v.is_some())
            .unwrap_or(true),
    }
}

fn submitted_reply(receipt: &str) -> String {
    format!("投稿已提交，回执编号 {receipt}。编辑审核后会尽快处理，感谢您的来稿！")
}

/// A title from the text: its first non-empty line, at most 30 characters.
pub fn title_of(content: &str) -> String {
    let line = content
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("图片投稿");
    line.chars().take(30).collect()
}

/// The chat side: `Some(reply text)` when the message was about a submission or the board
/// (routed before the keyword rules), `None` to route it normally. Side effects happen here,
/// once per message (the webhook de-duplicates retries before calling). `marker`: the sender's
/// draft marker ([`read_along_key`]) if the claim read it; `now`: the message's arrival (Unix ms).
pub async fn handle_chat(
    st: &AppState,
    msg: &InboundMessage,
    marker: ReadAlong,
    now: i64,
) -> AppResult<Option<String>> {
    let openid = msg.from_user.as_str();
    if let Some(cmd) = chat_command(msg) {
        let reply = match cmd {
            ChatCommand::StartDraft => {
                let (_, existed) = db::start_draft(&st.db, openid, now, now + DRAFT_TTL_MS).await?;
                mark_draft_open(st, openid).await;
                if existed {
                    DRAFT_RESUMED
                } else {
                    DRAFT_STARTED
                }
                .to_owned()
            }
            ChatCommand::SubmitNow(text) => {
                if check_length("content", &text, MAX_CHARS).is_err() {
                    SUBMISSION_TOO_LONG.to_owned()
                } else {
                    let done = submit(
                        st,
                        &NewSubmission {
                            openid,
                            source: "chat",
                            title: &title_of(&text),
                            content: &text,
                            images: &[],
                        },
                    )
                    .await
                    .map(|(_, receipt, m)| submission_reply(&m, &receipt));
                    chat_throttle(done, SUBMISSION_THROTTLED)?
                }
            }
            ChatCommand::BoardPost(text) => {
                if check_length("content", &text, MAX_BOARD_CHARS).is_err() {
                    BOARD_TOO_LONG.to_owned()
                } else {
                    let done = post_board(st, openid, "chat", &text)
                        .await
                        .map(|(_, m)| board_reply(&m).to_owned());
                    chat_throttle(done, BOARD_THROTTLED)?
                }
            }
            ChatCommand::BoardHelp => BOARD_HELP.to_owned(),
        };
        return Ok(Some(reply));
    }
    let Some(step) = draft_step(msg) else {
        return Ok(None);
    };
    if !may_have_draft(st, openid, marker).await {
        return Ok(None);
    }
    let Some(draft) = db::open_draft(&st.db, openid, now).await? else {
        clear_draft_mark(st, openid).await;
        return Ok(None);
    };
    let reply = match step {
        DraftStep::Cancel => {
            db::cancel_draft(&st.db, openid, now).await?;
            clear_draft_mark(st, openid).await;
            DRAFT_CANCELLED.to_owned()
        }
        DraftStep::Finish => {
            if draft.content.trim().is_empty() && draft.images.is_empty() {
                DRAFT_EMPTY.to_owned()
            } else if db::count_since(&st.db, Table::Submissions, openid, now - HOUR_MS).await?
                >= st.settings.submission_limit_per_hour
            {
                // The draft stays open: it can be sent once the hour has passed.
                SUBMISSION_THROTTLED.to_owned()
            } else {
                let m = moderation::check(st, openid, SCENE_SUBMISSION, &draft.content).await;
                let title = title_of(&draft.content);
                let submitted =
                    db::submit_draft(&st.db, draft.id, &title, &m, st.clock.unix_ms()).await?;
                clear_draft_mark(st, openid).await;
                match submitted {
                    Some(receipt) => submission_reply(&m, &receipt),
                    // Cancelled or expired meanwhile.
                    None => DRAFT_EMPTY.to_owned(),
                }
            }
        }
        DraftStep::AddText(text) => {
            let mut content = draft.content.clone();
            if !content.is_empty() {
                content.push('\n');
            }
            content.push_str(&text);
            if content.chars().count() > MAX_CHARS {
                DRAFT_FULL.to_owned()
            } else {
                db::update_draft(
                    &st.db,
                    draft.id,
                    &content,
                    &draft.images,
                    now,
                    now + DRAFT_TTL_MS,
                )
                .await?;
                mark_draft_open(st, openid).await;
                progress(&content, draft.images.len())
            }
        }
        DraftStep::AddImage { pic_url, media_id } => {
            if draft.images.len() >= MAX_IMAGES {
                DRAFT_FULL.to_owned()
            } else {
                let mut images = draft.images.clone();
                images.push(Image {
                    url: pic_url,
                    media_id: Some(media_id),
                });
                db::update_draft(
                    &st.db,
                    draft.id,
                    &draft.content,
                    &images,
                    now,
                    now + DRAFT_TTL_MS,
                )
                .await?;
                mark_draft_open(st, openid).await;
                progress(&draft.content, images.len())
            }
        }
    };
    Ok(Some(reply))
}

fn progress(content: &str, images: usize) -> String {
    let paragraphs = content.lines().filter(|l| !l.trim().is_empty()).count();
    format!("已加入投稿（{paragraphs}段文字，{images}张图片）。发送“完成”提交，发送“取消”放弃。")
}

fn submission_reply(m: &Moderation, receipt: &str) -> String {
    match m.initial {
        Initial::Pending => submitted_reply(receipt),
        Initial::Rejected => SUBMISSION_REFUSED.to_owned(),
    }
}

fn board_reply(m: &Moderation) -> &'static str {
    match m.initial {
        Initial::Pending => BOARD_RECEIVED,
        Initial::Rejected => BOARD_REFUSED,
    }
}

/// Before anything is created for `openid` in `table`: the same text within the duplicate window
/// is the item made then (`Ok(Some)`); over the member's hourly limit is 429 `rate_limited`
/// (chat turns it into a polite reply). Both are checked before msgSecCheck is called, so neither
/// a repeat nor a flood costs a WeChat call or fills the editors' queue.
async fn guard(
    st: &AppState,
    table: Table,
    openid: &str,
    content: &str,
    now: i64,
) -> AppResult<Option<db::Recent>> {
    let since = now - (st.settings.submission_duplicate_window_secs as i64) * 1000;
    if let Some(r) = db::recent_same(&st.db, table, openid, content, since).await? {
        return Ok(Some(r));
    }
    let (limit, what) = match table {
        Table::Submissions => (st.settings.submission_limit_per_hour, "submissions"),
        Table::BoardPosts => (st.settings.board_post_limit_per_hour, "board posts"),
    };
    if db::count_since(&st.db, table, openid, now - HOUR_MS).await? >= limit {
        return Err(throttled(what));
    }
    Ok(None)
}

fn recent_moderation(r: db::Recent) -> (i64, Option<String>, Moderation) {
    let m = stored_moderation(&r.status, r.suggest.as_deref(), r.label);
    (r.id, r.receipt_no, m)
}

/// A moderated submission in one go: (id, receipt number, moderation). The same text from the
/// same member within `submission_duplicate_window_secs` is that submission again.
pub async fn submit(st: &AppState, s: &NewSubmission<'_>) -> AppResult<(i64, String, Moderation)> {
    let now = st.clock.unix_ms();
    if let Some(r) = guard(st, Table::Submissions, s.openid, s.content, now).await? {
        let (id, receipt, m) = recent_moderation(r);
        return Ok((id, receipt.unwrap_or_default(), m));
    }
    let text = if s.title.is_empty() || s.content.starts_with(s.title) {
        s.content.to_owned()
    } else {
        format!("{}\n{}", s.title, s.content)
    };
    let m = moderation::check(st, s.openid, SCENE_SUBMISSION, &text).await;
    let since = now - (st.settings.submission_duplicate_window_secs as i64) * 1000;
    match db::insert(&st.db, s, &m, st.clock.unix_ms(), since).await? {
        db::Inserted::New { id, receipt_no } => Ok((id, receipt_no.unwrap_or_default(), m)),
        db::Inserted::Existing(r) => {
            let (id, receipt, m) = recent_moderation(r);
            Ok((id, receipt.unwrap_or_default(), m))
        }
    }
}

/// A moderated board post: (id, moderation). The same text from the same member within
/// `submission_duplicate_window_secs` is that post again.
pub async fn post_board(
    st: &AppState,
    openid: &str,
    source: &str,
    content: &str,
) -> AppResult<(i64, Moderation)> {
    let now = st.clock.unix_ms();
    if let Some(r) = guard(st, Table::BoardPosts, openid, content, now).await? {
        let (id, _, m) = recent_moderation(r);
        return Ok((id, m));
    }
    let m = moderation::check(st, openid, SCENE_BOARD, content).await;
    let since = now - (st.settings.submission_duplicate_window_secs as i64) * 1000;
    match db::insert_post(
        &st.db,
        openid,
        source,
        content,
        &m,
        st.clock.unix_ms(),
        since,
    )
    .await?
    {
        db::Inserted::New { id, .. } => Ok((id, m)),
        db::Inserted::Existing(r) => {
            let (id, _, m) = recent_moderation(r);
            Ok((id, m))
        }
    }
}

/// Approve or reject a pending item, audited in the same transaction. 409 `invalid_transition`
/// when it is no longer pending (decided by someone else meanwhile, or never pending).
pub async fn decide(
    st: &AppState,
    session: &AdminSession,
    table: Table,
    id: i64,
    decision: EditorDecision,
    reason: Option<&str>,
) -> AppResult<()> {
    let (kind, what) = match table {
        Table::Submissions => ("submission", "submission"),
        Table::BoardPosts => ("board_post", "board post"),
    };
    // What the editor decides on: its status now (for the audit entry and the 409 message).
    let (before_status, receipt_no) = match table {
        Table::Submissions => match db::get(&st.db, id).await? {
            Some(s) => (s.status, s.receipt_no),
            None => return Err(AppError::NotFound(what.into())),
        },
        Table::BoardPosts => match db::get_post(&st.db, id).await? {
            Some(p) => (p.status, None),
            None => return Err(AppError::NotFound(what.into())),
        },
    };
    let status = decision.status();
    let mut tx = st.db.begin_write().await?;
    let changed = db::decide(
        &mut tx,
        table,
        id,
        status,
        &session.username,
        reason,
        session.now,
    )
    .await?;
    if !changed {
        drop(tx);
        let now = match table {
            Table::Submissions => db::get(&st.db, id).await?.map(|s| s.status),
            Table::BoardPosts => db::get_post(&st.db, id).await?.map(|p| p.status),
        };
        return Err(AppError::rejected(
            StatusCode::CONFLICT,
            "invalid_transition",
            format!(
                "the {what} is {}; only pending items can be decided",
                now.as_deref().unwrap_or(&before_status)
            ),
        ));
    }
    let verb = match decision {
        EditorDecision::Approve => "approve",
        EditorDecision::Reject => "reject",
    };
    let mut details = json!({"before": before_status, "after": status, "reason": reason});
    if let Some(r) = receipt_no {
        details["receipt_no"] = json!(r);
    }
    let entry = session
        .audit(&format!("{kind}.{verb}"), kind, id)
        .details(details);
    audit::record(&mut *tx, &entry).await?;
    tx.commit().await?;
    Ok(())
}

/// Answer a post (pending or approved; replacing an earlier answer is allowed), audited. A chat
/// post's author gets the answer in chat: `Some(delivered)`; mini-program posts `None`.
pub async fn answer(
    st: &AppState,
    session: &AdminSession,
    id: i64,
    answer: &str,
) -> AppResult<Option<bool>> {
    let answer = answer.trim();
    if answer.is_empty() || answer.chars().count() > 2000 {
        return Err(AppError::Validation("answer: 1 to 2000 characters".into()));
    }
    let before = db::get_post(&st.db, id)
        .await?
        .ok_or_else(|| AppError::NotFound("board post".into()))?;
    let mut tx = st.db.begin_write().await?;
    if !db::answer_post(&mut tx, id, answer, &session.username, session.now).await? {
        return Err(AppError::rejected(
            StatusCode::CONFLICT,
            "invalid_transition",
            "a rejected post cannot be answered",
        ));
    }
    let entry = session
        .audit("board_post.answer", "board_post", id)
        .details(json!({"replaced": before.answer.is_some(), "source": before.source}));
    audit::record(&mut *tx, &entry).await?;
    tx.commit().await?;
    let delivered = if before.source == "chat" {
        let text = format!("您的留言“{}”有了回复：\n{answer}", excerpt(&before.content));
        match st
            .outbound
            .send_custom(&before.openid, CustomMessage::Text(text))
            .await
        {
            Ok(()) => Some(true),
            Err(e) => {
                tracing::warn!(error = %e, post = id, "board answer not delivered in chat");
                Some(false)
            }
        }
    } else {
        None
    };
    Ok(delivered)
}

fn excerpt(s: &str) -> String {
    let mut out: String = s.chars().take(20).collect();
    if s.chars().count() > 20 {
        out.push('…');
    }
    out
}

// ---- submission → article draft -----------------------------------------------------------------

/// The article a submission became: its id, and whether this call created it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drafted {
    pub article_id: i64,
    pub created: bool,
}

/// The byline of a submission: the roster name of the member who sent it (never a phone or ID
/// number), and the attribution line `来稿：<branch> <name>`. A sender not on the roster is a
/// reader: no name.
async fn attribution(st: &AppState, s: &db::Submission) -> AppResult<(Option<String>, String)> {
    Ok(
        match db::sender_byline(&st.db, &s.source, &s.openid).await? {
            Some((name, unit)) => {
                let line = format!("来稿：{unit} {name}");
                (Some(name), line)
            }
            None => (None, "来稿：读者投稿".to_owned()),
        },
    )
}

fn clip(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// The category a submission's draft starts in: one named for submissions (投稿) if there is
/// one, else the first; the editor moves it.
async fn draft_category(st: &AppState) -> AppResult<String> {
    let cats = crate::articles::store::list_categories(&st.db).await?;
    cats.iter()
        .find(|c| c.name.contains("投稿") || c.name.contains("来稿"))
        .or_else(|| cats.first())
        .map(|c| c.name.clone())
        .ok_or_else(|| {
            AppError::Conflict("there is no article category to put the draft in".into())
        })
}

/// The draft's Markdown: the text as written, then the pictures.
fn draft_body(s: &db::Submission) -> String {
    let mut body = s.content.trim().to_owned();
    for img in &s.images {
        if !body.is_empty() {
            body.push_str("\n\n");
        }
        body.push_str(&format!("![]({})", img.url.replace(')', "%29")));
    }
    if body.is_empty() {
        body.push_str(&s.title);
    }
    body
}

/// Turn a pending or approved submission into an article draft with the sender's attribution
/// (author: the roster name; source: `来稿：<branch> <name>`), audited `submission.draft` and
/// `article.create` in one transaction. Idempotent: a submission already turned gives the same
/// article (`created: false`) and writes nothing.
pub async fn to_article_draft(
    st: &AppState,
    session: &AdminSession,
    id: i64,
) -> AppResult<Drafted> {
    use crate::articles::{rules::ArticleInput, store as articles};
    let s = db::get(&st.db, id)
        .await?
        .ok_or_else(|| AppError::NotFound("submission".into()))?;
    if let Some(article_id) = s.article_id {
        if articles::get(&st.db, article_id).await?.is_some() {
            return Ok(Drafted {
                article_id,
                created: false,
            });
        }
    }
    if !matches!(s.status.as_str(), "pending" | "approved") {
        return Err(AppError::rejected(
            StatusCode::CONFLICT,
            "invalid_transition",
            format!(
                "the submission is {}; only pending or approved submissions become articles",
                s.status
            ),
        ));
    }
    let (author, source) = attribution(st, &s).await?;
    let title = if s.title.trim().is_empty() {
        title_of(&s.content)
    } else {
        s.title.clone()
    };
    let summary: String = s.content.split_whitespace().collect::<Vec<_>>().join(" ");
    let input = ArticleInput {
        title: clip(title.trim(), crate::articles::rules::TITLE_MAX),
        summary: clip(&summary, crate::articles::rules::SUMMARY_MAX),
        body_md: draft_body(&s),
        category: draft_category(st).await?,
        cover_url: None,
        author: author.map(|a| clip(&a, crate::articles::rules::AUTHOR_MAX)),
        source: Some(clip(&source, crate::articles::rules::SOURCE_MAX)),
        tags: vec!["来稿".to_owned()],
    };
    let a = input
        .validate()
        .map_err(|e| AppError::Validation(e.to_string()))?;
    let html = crate::platform::markdown::render(&a.body_md);

    let mut tx = st.db.begin_write().await?;
    // Re-read under the lock: another editor may have turned it meanwhile.
    let (status, existing) = db::draft_state_for_update(&mut tx, st.db.backend(), id)
        .await?
        .ok_or_else(|| AppError::NotFound("submission".into()))?;
    if let Some(article_id) = existing {
        if s.article_id != Some(article_id) {
            return Ok(Drafted {
                article_id,
                created: false,
            });
        }
    }
    if !matches!(status.as_str(), "pending" | "approved") {
        return Err(AppError::rejected(
            StatusCode::CONFLICT,
            "invalid_transition",
            format!(
                "the submission is {status}; only pending or approved submissions become articles"
            ),
        ));
    }
    let article_id = articles::create_draft(&mut tx, &a, &html, session.now)
        .await?
        .ok_or_else(|| AppError::Conflict("the draft's category was removed meanwhile".into()))?;
    // A recorded id whose article is gone (deleted without the column being cleared) is replaced.
    if existing.is_some() {
        db::clear_article(&mut tx, id).await?;
    }
    if !db::set_article(&mut tx, id, article_id, session.now).await? {
        return Err(AppError::Conflict(
            "the submission changed meanwhile; reload and retry".into(),
        ));
    }
    let entry = session
        .audit("article.create", "article", article_id)
        .details(
            json!({"after": {"title": a.title, "category": a.category, "tags": a.tags},
                        "from_submission": id}),
        );
    audit::record(&mut *tx, &entry).await?;
    let mut details = json!({"article_id": article_id, "status": status});
    if let Some(r) = &s.receipt_no {
        details["receipt_no"] = json!(r);
    }
    let entry = session
        .audit("submission.draft", "submission", id)
        .details(details);
    audit::record(&mut *tx, &entry).await?;
    tx.commit().await?;
    Ok(Drafted {
        article_id,
        created: true,
    })
}
