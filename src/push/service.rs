//! Push use cases shared by the admin API, the workers and the CLI: create (with every channel
//! rule checked up front), start, act (cancel/pause/resume), report, preview, mass send.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wechat::client::{DraftArticle, MassContent, MassFilter, MassMessage};

use super::{
    store::{self, Counts, PushRow, Reservation},
    templates::{self, ArticleView, MassPlan, PushContext, Rendered, Templates},
    Action, Audience, AudienceKind, Channel, Notice, Outcome, PushStatus,
};
use crate::{
    app::AppState,
    platform::config::{AccountType, Settings},
    platform::db::Tx,
    platform::error::AppError,
};

/// The customer-service window: 48 hours after the follower's last message or event.
pub const CUSTOM_WINDOW_MS: i64 = 48 * 3600 * 1000;
/// At most this many articles per push (WeChat's news limit for a draft is 8).
pub const MAX_ARTICLES: usize = 8;

pub fn random_id() -> String {
    hex::encode(rand::random::<[u8; 4]>())
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
pub struct CreatePush {
    #[schemars(length(min = 1, max = 8))]
    pub article_ids: Vec<i64>,
    pub audience: Audience,
    pub channel: Channel,
    #[serde(default)]
    #[schemars(schema_with = "crate::http::doc::date_time")]
    pub scheduled_at: Option<String>,
}

fn invalid(msg: impl Into<String>) -> AppError {
    AppError::Validation(msg.into())
}

/// Mass-send quota by account type: (sends, window start for `now`, wording).
pub fn mass_quota(account: AccountType, now_ms: i64) -> (i64, i64, &'static str) {
    let t = templates::to_shanghai(now_ms);
    let day = t.replace_time(time::Time::MIDNIGHT);
    match account {
        AccountType::Subscription => (1, crate::platform::time::unix_ms(day), "1 per day"),
        AccountType::Service => {
            let month = day.replace_day(1).unwrap_or(day);
            (
                4,
                crate::platform::time::unix_ms(month),
                "4 per calendar month",
            )
        }
    }
}

/// Check a request against the channel rules; the scheduled time in unix ms.
fn validate(st: &AppState, req: &CreatePush, now: i64) -> Result<i64, AppError> {
    if req.article_ids.is_empty() || req.article_ids.len() > MAX_ARTICLES {
        return Err(invalid(format!(
            "article_ids: 1 to {MAX_ARTICLES} articles"
        )));
    }
    let kind = req.audience.kind;
    match (kind, req.audience.ids.is_empty()) {
        (AudienceKind::All, false) => {
            return Err(invalid("audience.ids: must be empty for kind \"all\""))
        }
        (AudienceKind::Tag | AudienceKind::OrgUnit | AudienceKind::Members, true) => {
            return Err(invalid(format!(
                "audience.ids: at least one id for kind \"{}\"",
                kind.as_str()
            )))
        }
        _ => {}
    }
    if req.audience.ids.len() > 10_000 {
        return Err(invalid("audience.ids: at most 10000 ids"));
    }
    match req.channel {
        Channel::Template if st.settings.wechat_account_type != AccountType::Service => {
            return Err(invalid("channel \"template\": template messages need a service account (DANGJIAN_WECHAT_ACCOUNT_TYPE=service)"))
        }
        Channel::Mass => match kind {
            AudienceKind::All => {}
            AudienceKind::Tag if req.audience.ids.len() == 1 => {}
            _ => return Err(invalid("channel \"mass\": audience must be \"all\" or exactly one tag")),
        },
        Channel::Subscribe if kind == AudienceKind::Tag => {
            return Err(invalid("channel \"subscribe\": WeChat tags are official-account followers; use all, org_unit or members"))
        }
        _ => {}
    }
    let at = match req.scheduled_at.as_deref() {
        None | Some("") => now,
        Some(s) => {
            let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map_err(|_| {
                    invalid("scheduled_at: an RFC 3339 time such as 2026-11-01T08:00:00+08:00")
                })?;
            crate::platform::time::unix_ms(t).max(now)
        }
    };
    Ok(at)
}

/// Articles of a push as templates see them; every one must exist and be published.
pub async fn article_views(st: &AppState, ids: &[i64]) -> Result<Vec<ArticleView>, AppError> {
    let rows = store::articles(&st.db, ids).await?;
    for id in ids {
        match rows.iter().find(|a| a.id == *id) {
            None => return Err(invalid(format!("article_ids: article {id} does not exist"))),
            Some(a) if a.status != "published" => {
                return Err(invalid(format!(
                    "article_ids: article {id} is not published"
                )))
            }
            _ => {}
        }
    }
    let base = st.settings.public_url.trim_end_matches('/');
    Ok(rows
        .into_iter()
        .map(|a| {
            let at = a.published_at.unwrap_or(0);
            ArticleView {
                url: format!("{base}/articles/{}", a.id),
                cover_url: a
                    .cover_url
                    .unwrap_or_else(|| format!("{base}/static/cover.png")),
                id: a.id,
                title: a.title,
                summary: a.summary,
                category: a.category,
                author: a.author.unwrap_or_default(),
                published_at: templates::shanghai_datetime(at),
                published_date: templates::shanghai_date(at),
                body_html: a.body_html,
            }
        })
        .collect())
}

/// The templates (read now from the content folder) and the render context of a push.
pub async fn render_inputs(
    st: &AppState,
    push_id: i64,
    article_ids: &[i64],
) -> Result<(Templates, PushContext), AppError> {
    let templates =
        Templates::load(&st.settings.content_dir).map_err(|e| invalid(format!("{e:#}")))?;
    let articles = article_views(st, article_ids).await?;
    let now = templates::shanghai_datetime(st.clock.unix_ms());
    Ok((
        templates,
        PushContext {
            push_id,
            articles,
            now,
        },
    ))
}

fn render_error(e: super::templates::RenderError) -> AppError {
    invalid(format!("the push cannot be rendered: {e}"))
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Created {
    pub id: i64,
    pub status: PushStatus,
}

/// Create a push: everything that can be checked before sending is checked here (channel rules,
/// articles, layouts and WeChat's value limits, the mass quota); a push due now starts at once.
pub async fn create(
    st: &AppState,
    req: &CreatePush,
    actor: Option<&str>,
) -> Result<Created, AppError> {
    let now = st.clock.unix_ms();
    let at = validate(st, req, now)?;
    let (templates, context) = render_inputs(st, 0, &req.article_ids).await?;
    let sample = if req.channel == Channel::Mass {
        ""
    } else {
        "o_preview"
    };
    templates
        .render(
            req.channel,
            &context,
            sample,
            &st.settings.wechat_news_template_id,
        )
        .map_err(render_error)?;
    if req.channel == Channel::Mass {
        let (quota, window, wording) = mass_quota(st.settings.wechat_account_type, at);
        if store::mass_used_since(&st.db, window).await? >= quota {
            return Err(AppError::rejected(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "quota_exhausted",
                format!("the mass-send quota ({wording}, Asia/Shanghai) is used up for that date"),
            ));
        }
    }
    let template_id = match req.channel {
        Channel::Template => Some(
            templates
                .template_id(&st.settings.wechat_news_template_id)
                .to_owned(),
        ),
        Channel::Subscribe | Channel::SubscribeOa => templates
            .consent_template_id(req.channel)
            .map(str::to_owned),
        _ => None,
    };
    let id = store::insert(
        &st.db,
        &store::NewPush {
            channel: req.channel,
            audience: &req.audience,
            article_ids: &req.article_ids,
            notice: None,
            template_id: template_id.as_deref(),
            scheduled_at: at,
            created_by: actor,
        },
        now,
    )
    .await?;
    let status = if at <= now && start(st, id).await? {
        PushStatus::Running
    } else {
        PushStatus::Scheduled
    };
    Ok(Created { id, status })
}

/// Start a scheduled push (materialise its audience). False if it was not scheduled any more.
pub async fn start(st: &AppState, id: i64) -> Result<bool, AppError> {
    let now = st.clock.unix_ms();
    Ok(store::start(&st.db, id, now, now - CUSTOM_WINDOW_MS).await?)
}

/// Cancel, pause or resume; 409 when the push is not in a state that allows it.
pub async fn act(st: &AppState, id: i64, action: Action) -> Result<PushStatus, AppError> {
    let Some(push) = store::get(&st.db, id).await? else {
        return Err(AppError::NotFound(format!("push {id}")));
    };
    match store::apply(&st.db, id, action, st.clock.unix_ms()).await? {
        Some(s) => Ok(s),
        None => Err(AppError::Conflict(format!(
            "cannot {} a push that is {}",
            action.as_str(),
            store::get(&st.db, id)
                .await?
                .map_or(push.status, |p| p.status)
                .as_str()
        ))),
    }
}

/// `GET /api/admin/pushes/{id}`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct PushView {
    #[serde(flatten)]
    pub push: PushRow,
    pub scheduled_at_rfc3339: String,
    pub counts: Counts,
    /// Rows finished per second over the last 10 seconds.
    pub rate: f64,
    /// Seconds until nothing is pending at the current rate; null when unknown or not running.
    pub eta_seconds: Option<i64>,
    pub errors_by_code: BTreeMap<String, i64>,
    /// Why recipients were skipped (`no_account_openid`, `no_mp_openid`, `no_consent`,
    /// `not_following`, `outside_48h`, ...) and how many each: nobody is dropped silently.
    pub skipped_reasons: BTreeMap<String, i64>,
}

const RATE_WINDOW_MS: i64 = 10_000;

pub async fn view(st: &AppState, push: PushRow) -> Result<PushView, AppError> {
    let counts = store::counts(&st.db, push.id).await?;
    let errors_by_code = store::errors_by_code(&st.db, push.id).await?;
    let skipped_reasons = store::skipped_reasons(&st.db, push.id).await?;
    let now = st.clock.unix_ms();
    let rate = if push.status == PushStatus::Running {
        store::finished_since(&st.db, push.id, now - RATE_WINDOW_MS).await? as f64
            / (RATE_WINDOW_MS as f64 / 1000.0)
    } else {
        0.0
    };
    let remaining = counts.pending + counts.in_flight;
    let eta_seconds = match push.status {
        PushStatus::Running if remaining == 0 => Some(0),
        PushStatus::Running if rate > 0.0 => Some((remaining as f64 / rate).ceil() as i64),
        _ => None,
    };
    let scheduled_at_rfc3339 = templates::to_shanghai(push.scheduled_at)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    Ok(PushView {
        push,
        scheduled_at_rfc3339,
        counts,
        rate,
        eta_seconds,
        errors_by_code,
        skipped_reasons,
    })
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
pub struct PreviewPush {
    #[schemars(length(min = 1, max = 8))]
    pub article_ids: Vec<i64>,
    pub channel: Channel,
    /// The recipient to render for (default: a placeholder).
    #[serde(default)]
    pub openid: Option<String>,
}

/// Render a push for one recipient without sending anything.
pub async fn preview(st: &AppState, req: &PreviewPush) -> Result<Rendered, AppError> {
    if req.article_ids.is_empty() || req.article_ids.len() > MAX_ARTICLES {
        return Err(invalid(format!(
            "article_ids: 1 to {MAX_ARTICLES} articles"
        )));
    }
    let (templates, context) = render_inputs(st, 0, &req.article_ids).await?;
    let openid = if req.channel == Channel::Mass {
        String::new()
    } else {
        req.openid.clone().unwrap_or_else(|| "o_preview".into())
    };
    templates
        .render(
            req.channel,
            &context,
            &openid,
            &st.settings.wechat_news_template_id,
        )
        .map_err(render_error)
}

/// The one call of a mass push: reserve the quota, (for mpnews) create the draft, send, record.
pub async fn run_mass(st: &AppState, id: i64) -> anyhow::Result<()> {
    let now = st.clock.unix_ms();
    let Some(push) = store::get(&st.db, id).await? else {
        return Ok(());
    };
    let (quota, window, wording) = mass_quota(st.settings.wechat_account_type, now);
    let lease_until = now + st.settings.push_lease_secs as i64 * 1000;
    match store::reserve_mass(&st.db, id, window, quota, now, lease_until).await? {
        Reservation::NotReady => return Ok(()),
        Reservation::QuotaUsed(used) => {
            let reason = format!("mass-send quota used up ({used} of {wording}, Asia/Shanghai); resume when it is back");
            store::fail(&st.db, id, &reason, now).await?;
            return Ok(());
        }
        Reservation::Reserved => {}
    }
    let finish = |state: &'static str,
                  msg: Option<(i64, Option<i64>)>,
                  reason: Option<String>,
                  retry_at: Option<i64>| {
        let db = st.db.clone();
        let now = st.clock.unix_ms();
        async move { store::mass_result(&db, id, state, msg, reason.as_deref(), retry_at, now).await }
    };
    let content = match render_inputs(st, id, &push.article_ids)
        .await
        .and_then(|(t, cx)| {
            t.render(Channel::Mass, &cx, "", &st.settings.wechat_news_template_id)
                .map(|r| (r, cx))
                .map_err(render_error)
        }) {
        Ok((
            Rendered::Mass {
                plan: MassPlan::Text { text },
            },
            _,
        )) => MassContent::text(text),
        Ok((
            Rendered::Mass {
                plan: MassPlan::Mpnews { thumb_media_id },
            },
            cx,
        )) => {
            let articles: Vec<DraftArticle> = cx
                .articles
                .iter()
                .map(|a| DraftArticle {
                    title: a.title.clone(),
                    author: Some(a.author.clone()).filter(|s| !s.is_empty()),
                    digest: Some(a.summary.clone()),
                    content: a.body_html.clone(),
                    content_source_url: Some(a.url.clone()),
                    thumb_media_id: thumb_media_id.clone(),
                    need_open_comment: 0,
                    only_fans_can_comment: 0,
                })
                .collect();
            // Creating a draft sends nothing: a failure here is safe to report as failed.
            match st.wechat.draft_add(&articles).await {
                Ok(media_id) => MassContent::mpnews(media_id),
                Err(e) => {
                    finish(
                        "failed",
                        None,
                        Some(format!("creating the WeChat draft failed: {e}")),
                        None,
                    )
                    .await?;
                    return Ok(());
                }
            }
        }
        Ok(_) => unreachable!("the mass channel renders a mass plan"),
        Err(e) => {
            finish("failed", None, Some(e.to_string()), None).await?;
            return Ok(());
        }
    };
    let filter = match (push.audience.kind, push.audience.ids.first()) {
        (AudienceKind::Tag, Some(tag)) => MassFilter::tag(*tag),
        _ => MassFilter::all(),
    };
    let msg = MassMessage {
        filter,
        content,
        send_ignore_reprint: 0,
        // WeChat refuses a second sendall with this id within 24 h (45065).
        clientmsgid: Some(format!("dj-push-{id}")),
    };
    let result = st.wechat.mass_send_all(&msg).await;
    let outcome = super::classify(result.as_ref().map(|r| Some(r.msg_id)));
    let (name, code) = outcome.labels();
    st.metrics.push_outcome(Channel::Mass.as_str(), name, code);
    match (outcome, result) {
        (Outcome::Sent { .. }, Ok(r)) => {
            tracing::info!(push_id = id, msg_id = r.msg_id, "mass send submitted");
            finish("sent", Some((r.msg_id, r.msg_data_id)), None, None).await?;
        }
        (Outcome::Retry { code, error }, _) => {
            let retry_at = st.clock.unix_ms() + st.settings.push_retry_base_ms as i64;
            tracing::warn!(push_id = id, %code, %error, "mass send refused for now; will retry");
            finish("retry", None, None, Some(retry_at)).await?;
        }
        (Outcome::Quota { code, error }, _) => {
            finish(
                "failed",
                None,
                Some(format!(
                    "WeChat mass-send quota reached (errcode {code}: {error})"
                )),
                None,
            )
            .await?;
        }
        (Outcome::Unknown { code, error }, _) => {
            let reason = format!("the mass send's outcome is unknown ({code}: {error}); check the WeChat console, it is not resent");
            finish("unknown", None, Some(reason), None).await?;
        }
        (Outcome::Failed { code, error } | Outcome::Skipped { code, error }, _) => {
            finish(
                "failed",
                None,
                Some(format!(
                    "WeChat refused the mass send (errcode {code}: {error})"
                )),
                None,
            )
            .await?;
        }
        (Outcome::Sent { .. }, Err(_)) => unreachable!("classify maps errors to failures"),
    }
    Ok(())
}

// ---------------------------------------------------------------- notices

/// `pushes.created_by` of the activities' notices.
pub const CREATED_BY_ACTIVITIES: &str = "system:activities";
/// `pushes.created_by` of automatic dues reminders.
pub const CREATED_BY_DUES: &str = "system:dues";

/// A notice to members (see [`create_notice`]).
#[derive(Debug, Clone, Copy)]
pub struct NoticeRequest<'a> {
    pub member_ids: &'a [i64],
    /// Channels in order of preference; at most one of them names a template (template messages
    /// and the two subscribe channels each have their own template ids), which is `template_id`.
    pub channels: &'a [Channel],
    pub template_id: Option<&'a str>,
    pub notice: &'a Notice,
    /// Who sends it (`activities`, `dues`, or the administrator), as `pushes.created_by`.
    pub created_by: &'a str,
}

/// The delivery row a member's notice went into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct NoticeDelivery {
    pub member_id: i64,
    pub push_id: i64,
    pub delivery_id: i64,
}

/// Of `channels` (in order), those that can carry a notice on this account: template messages
/// only on a service account, and channels that name a template only when `template_id` is set.
/// Mass sends never carry notices.
pub fn usable_channels(
    settings: &Settings,
    channels: &[Channel],
    template_id: Option<&str>,
) -> Vec<Channel> {
    let has_template = template_id.is_some_and(|t| !t.trim().is_empty());
    channels
        .iter()
        .copied()
        .filter(|c| *c != Channel::Mass)
        .filter(|c| !c.needs_template() || has_template)
        .filter(|c| *c != Channel::Template || settings.wechat_account_type == AccountType::Service)
        .collect()
}

/// Send a notice to members: see [`create_notice_in`]; its own transaction.
pub async fn create_notice(
    st: &AppState,
    req: &NoticeRequest<'_>,
) -> Result<Vec<NoticeDelivery>, AppError> {
    let mut tx = st.db.begin_write().await?;
    let out = create_notice_in(st, &mut tx, req).await?;
    tx.commit().await?;
    Ok(out)
}

/// Send a notice to `req.member_ids` inside the caller's transaction: each member goes to the
/// first channel of `req.channels` that reaches them now, the rest to the last channel (where they
/// are `skipped` with its reason: `no_mp_openid`, `no_consent`, `outside_48h`, ...). One running
/// push per channel used, its delivery rows made; the answer names each member's delivery row, so
/// the caller can record it in the same commit. Refused (nothing made) when a channel cannot
/// carry it or the notice breaks WeChat's limits.
pub async fn create_notice_in(
    st: &AppState,
    tx: &mut Tx,
    req: &NoticeRequest<'_>,
) -> Result<Vec<NoticeDelivery>, AppError> {
    if req.channels.is_empty() {
        return Err(invalid("a notice needs at least one channel"));
    }
    let templated = req.channels.iter().filter(|c| c.needs_template()).count();
    if templated > 1 {
        return Err(invalid(
            "a notice names one template: at most one of template, subscribe, subscribe_oa",
        ));
    }
    let mp_app_id = &st.settings.mp_app_id;
    for channel in req.channels {
        if *channel == Channel::Template && st.settings.wechat_account_type != AccountType::Service
        {
            return Err(invalid(
                "channel \"template\": template messages need a service account",
            ));
        }
        templates::render_notice(
            *channel,
            req.notice,
            "o_preview",
            req.template_id,
            mp_app_id,
        )
        .map_err(render_error)?;
    }
    let mut remaining: Vec<i64> = req.member_ids.to_vec();
    remaining.sort_unstable();
    remaining.dedup();
    if remaining.len() > 10_000 {
        return Err(invalid("a notice goes to at most 10000 members at once"));
    }
    let now = st.clock.unix_ms();
    let cutoff = now - CUSTOM_WINDOW_MS;
    let mut out = Vec::with_capacity(remaining.len());
    for (i, &channel) in req.channels.iter().enumerate() {
        if remaining.is_empty() {
            break;
        }
        let template_id = req.template_id.filter(|_| channel.needs_template());
        let take = if i + 1 == req.channels.len() {
            std::mem::take(&mut remaining)
        } else {
            let reached: std::collections::HashSet<i64> =
                store::reachable_members(tx, channel, template_id, &remaining, now, cutoff)
                    .await?
                    .into_iter()
                    .collect();
            let (take, rest) = remaining.into_iter().partition(|m| reached.contains(m));
            remaining = rest;
            take
        };
        if take.is_empty() {
            continue;
        }
        let audience = Audience {
            kind: AudienceKind::Members,
            ids: take,
        };
        let push_id = store::insert_on(
            tx,
            &store::NewPush {
                channel,
                audience: &audience,
                article_ids: &[],
                notice: Some(req.notice),
                template_id,
                scheduled_at: now,
                created_by: Some(req.created_by),
            },
            now,
        )
        .await?;
        store::start_in(tx, push_id, now, cutoff).await?;
        out.extend(
            store::member_deliveries(tx, push_id)
                .await?
                .into_iter()
                .map(|(member_id, delivery_id)| NoticeDelivery {
                    member_id,
                    push_id,
                    delivery_id,
                }),
        );
    }
    Ok(out)
}

/// Whether a member can be reached on each channel now: their openid for the channel's app, a
/// follower who follows (and, for customer-service messages, was active in the last 48 hours),
/// and consent left for the subscribe templates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Reachable {
    pub template: bool,
    pub mass: bool,
    pub custom: bool,
    pub subscribe_oa: bool,
    pub subscribe_mp: bool,
}

/// What the account knows of a member's follower (read by the caller from the followers).
pub struct FollowerState<'a> {
    pub oa_openid: &'a str,
    pub subscribed: bool,
    pub last_interaction_at: Option<i64>,
}

/// [`Reachable`] for a member whose account openid's follower is `follower` and whose
/// mini-program openid is `mp_openid`.
pub async fn reachable(
    st: &AppState,
    follower: Option<FollowerState<'_>>,
    mp_openid: Option<&str>,
) -> Result<Reachable, AppError> {
    let now = st.clock.unix_ms();
    // A broken template file must not hide a member: no consent can be checked then.
    let templates = Templates::load(&st.settings.content_dir).ok();
    let consent = |channel: Channel, openid: String| {
        let db = st.db.clone();
        let template = templates
            .as_ref()
            .and_then(|t| t.consent_template_id(channel))
            .map(str::to_owned);
        async move {
            match template {
                Some(t) => Ok::<_, AppError>(
                    store::consent_credits(&db, channel.app(), &openid, &t).await? > 0,
                ),
                None => Ok(false),
            }
        }
    };
    let mut r = Reachable::default();
    if let Some(f) = follower.filter(|f| f.subscribed) {
        r.template = st.settings.wechat_account_type == AccountType::Service;
        r.mass = true;
        r.custom = f
            .last_interaction_at
            .is_some_and(|t| t >= now - CUSTOM_WINDOW_MS);
        r.subscribe_oa = consent(Channel::SubscribeOa, f.oa_openid.to_owned()).await?;
    }
    if let Some(mp) = mp_openid {
        r.subscribe_mp = consent(Channel::Subscribe, mp.to_owned()).await?;
    }
    Ok(r)
}

/// [`create`] by a signed-in editor, audited `push.create` (the admin API and the console).
pub async fn create_audited(
    st: &AppState,
    session: &crate::auth::AdminSession,
    body: &CreatePush,
) -> Result<Created, AppError> {
    let created = create(st, body, Some(&session.username)).await?;
    let entry = session
        .audit("push.create", "push", created.id)
        .details(serde_json::json!({
            "after": {
                "channel": body.channel,
                "audience": body.audience,
                "article_ids": body.article_ids,
                "scheduled_at": body.scheduled_at,
                "status": created.status,
            }
        }));
    crate::platform::audit::record(st.db.pool(), &entry).await?;
    Ok(created)
}

/// [`act`] by a signed-in editor, audited `push.<action>`.
pub async fn act_audited(
    st: &AppState,
    session: &crate::auth::AdminSession,
    id: i64,
    action: Action,
) -> Result<PushStatus, AppError> {
    let status = act(st, id, action).await?;
    let entry = session
        .audit(&format!("push.{}", action.as_str()), "push", id)
        .details(serde_json::json!({"after": {"status": status}}));
    crate::platform::audit::record(st.db.pool(), &entry).await?;
    Ok(status)
}
