//! The push workers of one process: `push_workers` senders, and one scheduler that starts due
//! pushes, makes mass calls, expires leases and completes finished pushes.
//!
//! A sender claims a batch of rows (`in_flight` + lease, committed), then sends it in groups of
//! `push_concurrency` rows at the shared rate: each group is marked *sending* (one UPDATE, in the
//! commit that records the group before it) just before its calls start, and its outcomes are
//! recorded in one transaction as soon as they all answered. A crash leaves at most one group per sender (`push_concurrency × push_workers`
//! rows per process) sending — their leases expire and they become `unknown` — while the rest of
//! the claimed batch, never sent, goes back to `pending` and is sent by whoever claims it next.

use std::{collections::HashMap, sync::Arc, time::Duration};

use futures_util::StreamExt;
use tokio_util::task::TaskTracker;

use super::{
    classify,
    rate::RateLimiter,
    service,
    store::{self, Backoff, Claimed},
    templates::{render_notice, PushContext, Rendered, Templates},
    Channel, Outcome,
};
use crate::app::AppState;

/// Everything a sender needs to send one push.
struct Prepared {
    /// An article push's layouts and articles, to render per recipient (None for a notice).
    layouts: Option<(Templates, PushContext)>,
    template_id: Option<String>,
    /// The message rendered once: a notice, or articles when no layout mentions the recipient.
    shared: Option<Rendered>,
}

pub fn spawn(st: &AppState, workers: &TaskTracker) {
    let limiter = Arc::new(RateLimiter::new(
        st.cache.clone(),
        st.settings.push_rate_per_second,
    ));
    let process = format!(
        "{}-{}",
        std::process::id(),
        crate::push::service::random_id()
    );
    if let Some(fake) = &st.dev_fake {
        // Dev mode: the built-in fake knows the demo template, so a push from the console goes out.
        fake.add_template(wechat::client::TemplateInfo {
            template_id: st.settings.wechat_news_template_id.clone(),
            title: "新闻发布提醒".into(),
            ..Default::default()
        });
    }
    for n in 0..st.settings.push_workers {
        let st = st.clone();
        let limiter = limiter.clone();
        let id = format!("{process}-{n}");
        workers.spawn(async move { sender_loop(st, id, limiter).await });
    }
    let st = st.clone();
    workers.spawn(async move { scheduler_loop(st).await });
}

async fn sleep_or_stop(st: &AppState, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = st.shutdown.cancelled() => false,
    }
}

async fn scheduler_loop(st: AppState) {
    let poll = Duration::from_millis(st.settings.push_poll_ms.max(10));
    loop {
        if let Err(e) = scheduler_tick(&st).await {
            tracing::error!(error = %format!("{e:#}"), "push scheduler");
        }
        if !sleep_or_stop(&st, poll).await {
            return;
        }
    }
}

async fn scheduler_tick(st: &AppState) -> anyhow::Result<()> {
    let now = st.clock.unix_ms();
    let reaped = store::reap_expired(&st.db, now).await?;
    if reaped.returned > 0 {
        tracing::warn!(
            rows = reaped.returned,
            "claimed push rows whose worker stopped before sending them are pending again"
        );
    }
    if reaped.unknown > 0 {
        tracing::warn!(
            rows = reaped.unknown,
            "push sends whose worker stopped in flight are now `unknown` (not resent)"
        );
        st.metrics.push_unknown.inc_by(reaped.unknown);
    }
    for id in store::due(&st.db, now).await? {
        if service::start(st, id).await? {
            tracing::info!(push_id = id, "push started");
        }
    }
    for id in store::mass_ready(&st.db, now).await? {
        service::run_mass(st, id).await?;
    }
    let done = store::complete_finished(&st.db, st.clock.unix_ms()).await?;
    if done > 0 {
        tracing::info!(pushes = done, "push completed");
    }
    Ok(())
}

async fn sender_loop(st: AppState, worker: String, limiter: Arc<RateLimiter>) {
    let poll = Duration::from_millis(st.settings.push_poll_ms.max(10));
    let mut prepared: HashMap<i64, Arc<Prepared>> = HashMap::new();
    loop {
        if st.shutdown.is_cancelled() {
            return;
        }
        let sent = match sender_round(&st, &worker, &limiter, &mut prepared).await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), worker = %worker, "push sender");
                0
            }
        };
        if sent == 0 && !sleep_or_stop(&st, poll).await {
            return;
        }
    }
}

/// One pass over the running pushes: a batch of each. Returns how many rows were handled.
async fn sender_round(
    st: &AppState,
    worker: &str,
    limiter: &RateLimiter,
    prepared: &mut HashMap<i64, Arc<Prepared>>,
) -> anyhow::Result<usize> {
    let running = store::running_row_pushes(&st.db).await?;
    prepared.retain(|id, _| running.iter().any(|(r, _)| r == id));
    let mut handled = 0;
    for (push_id, channel) in running {
        if st.shutdown.is_cancelled() {
            break;
        }
        handled += send_batch(st, worker, limiter, prepared, push_id, channel).await?;
    }
    Ok(handled)
}

fn batch_size(st: &AppState, limiter: &RateLimiter) -> i64 {
    let s = &st.settings;
    let mut n = s.push_batch_size.max(1);
    if limiter.per_second() > 0 {
        // A batch must go out well within its lease even when every worker shares the rate.
        let budget = limiter.per_second() as i64 * s.push_lease_secs as i64
            / (2 * s.push_workers.max(1) as i64);
        n = n.min(budget.max(1));
    }
    n
}

async fn send_batch(
    st: &AppState,
    worker: &str,
    limiter: &RateLimiter,
    prepared: &mut HashMap<i64, Arc<Prepared>>,
    push_id: i64,
    channel: Channel,
) -> anyhow::Result<usize> {
    let now = st.clock.unix_ms();
    let lease_until = now + st.settings.push_lease_secs as i64 * 1000;
    let rows = store::claim(
        &st.db,
        push_id,
        worker,
        batch_size(st, limiter),
        now,
        lease_until,
    )
    .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let prep = match prepared.get(&push_id) {
        Some(p) => p.clone(),
        None => match prepare(st, push_id).await {
            Ok(p) => {
                let p = Arc::new(p);
                prepared.insert(push_id, p.clone());
                p
            }
            Err(e) => {
                let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
                store::release(&st.db, worker, &ids, st.clock.unix_ms()).await?;
                store::fail(
                    &st.db,
                    push_id,
                    &format!("cannot render the push: {e}"),
                    st.clock.unix_ms(),
                )
                .await?;
                return Ok(0);
            }
        },
    };
    let concurrency = st.settings.push_concurrency.max(1);
    // A group of `concurrency` rows at a time: marked sending just before their calls start (the
    // first alone, each next one in the commit that records the group before it), recorded as
    // soon as they all answered. A crash leaves at most one group `unknown`; the rest of the batch
    // is only claimed and goes back to `pending`.
    let batch = Batch {
        st,
        worker,
        limiter,
        prep: &prep,
        push_id,
        channel,
    };
    let ids_of = |g: &[Claimed]| g.iter().map(|r| r.id).collect::<Vec<i64>>();
    let groups: Vec<&[Claimed]> = rows.chunks(concurrency).collect();
    let mut marked =
        store::mark_sending(&st.db, worker, &ids_of(groups[0]), st.clock.unix_ms()).await?;
    for (g, group) in groups.iter().enumerate() {
        let next = groups.get(g + 1).map(|n| ids_of(n)).unwrap_or_default();
        match batch.send_group(group, &marked, &next).await? {
            Some(next_marked) => marked = next_marked,
            None => {
                // Shutting down, or the push stopped: the groups not sent are given back untouched.
                let rest: Vec<i64> = groups[g + 1..].iter().flat_map(|n| ids_of(n)).collect();
                if !rest.is_empty() {
                    store::release(&st.db, worker, &rest, st.clock.unix_ms()).await?;
                }
                break;
            }
        }
    }
    Ok(rows.len())
}

/// One claimed batch of a push being sent by one sender.
struct Batch<'a> {
    st: &'a AppState,
    worker: &'a str,
    limiter: &'a RateLimiter,
    prep: &'a Arc<Prepared>,
    push_id: i64,
    channel: Channel,
}

impl Batch<'_> {
    /// Send the rows of `group` that were marked sending (`marked`; the others were taken back) and
    /// record their outcomes, marking `next` sending in the same commit. The ids of `next` marked, or
    /// None when the push must not go on (quota reached, or shutting down): then `next` is not marked
    /// and the caller gives the rest of the batch back.
    async fn send_group(
        &self,
        group: &[Claimed],
        marked: &[i64],
        next: &[i64],
    ) -> anyhow::Result<Option<Vec<i64>>> {
        let Batch {
            st,
            worker,
            limiter,
            prep,
            push_id,
            channel,
        } = *self;
        // A row not marked was taken back (lease expired): someone else may send it.
        let rows: Vec<Claimed> = group
            .iter()
            .filter(|r| marked.binary_search(&r.id).is_ok())
            .cloned()
            .collect();
        // Owned items: a stream of closures over borrowed rows trips the `Send` check of the task.
        let outcomes: Vec<(usize, Outcome)> =
            futures_util::stream::iter(rows.clone().into_iter().enumerate())
                .map(|(i, row)| {
                    let prep = prep.clone();
                    async move {
                        if !limiter.acquire(&st.shutdown).await {
                            // Shutting down before the call: nothing was sent.
                            return (i, None);
                        }
                        (i, Some(send_one(st, &prep, channel, push_id, &row).await))
                    }
                })
                .buffer_unordered(rows.len().max(1))
                .filter_map(|(i, o)| std::future::ready(o.map(|o| (i, o))))
                .collect()
                .await;
        let not_sent: Vec<i64> = rows
            .iter()
            .enumerate()
            .filter(|(i, _)| !outcomes.iter().any(|(j, _)| j == i))
            .map(|(_, r)| r.id)
            .collect();
        let results: Vec<store::Result_<'_>> = outcomes
            .iter()
            .map(|(i, o)| store::Result_ {
                row: &rows[*i],
                outcome: o,
            })
            .collect();
        let backoff = Backoff {
            base_ms: st.settings.push_retry_base_ms as i64,
            max_attempts: st.settings.push_max_attempts,
        };
        let quota = outcomes.iter().find_map(|(_, o)| match o {
            Outcome::Quota { code, error } => Some((code, error)),
            _ => None,
        });
        let stop = quota.is_some() || !not_sent.is_empty() || st.shutdown.is_cancelled();
        let now = st.clock.unix_ms();
        let next_marked = store::record(
            &st.db,
            worker,
            channel,
            prep.template_id.as_deref(),
            &results,
            backoff,
            now,
            if stop { &[] } else { next },
        )
        .await?;
        if !not_sent.is_empty() {
            store::release(&st.db, worker, &not_sent, now).await?;
        }
        for (_, o) in &outcomes {
            let (name, code) = o.labels();
            st.metrics.push_outcome(channel.as_str(), name, code);
        }
        if let Some((code, error)) = quota {
            let reason = format!(
                "WeChat quota reached (errcode {code}: {error}); resume when the quota is back"
            );
            if store::fail(&st.db, push_id, &reason, now).await? {
                tracing::warn!(push_id, errcode = %code, "push stopped: WeChat quota reached");
            }
        }
        Ok((!stop).then_some(next_marked))
    }
}

async fn prepare(st: &AppState, push_id: i64) -> anyhow::Result<Prepared> {
    let push = store::get(&st.db, push_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("push {push_id} is gone"))?;
    if let Some(notice) = &push.notice {
        let shared = render_notice(
            push.channel,
            notice,
            "",
            push.template_id.as_deref(),
            &st.settings.mp_app_id,
        )?;
        return Ok(Prepared {
            layouts: None,
            template_id: push.template_id,
            shared: Some(shared),
        });
    }
    let (templates, context) = service::render_inputs(st, push_id, &push.article_ids).await?;
    let shared = if templates.is_personal() {
        None
    } else {
        Some(templates.render(
            push.channel,
            &context,
            "",
            &st.settings.wechat_news_template_id,
        )?)
    };
    Ok(Prepared {
        layouts: Some((templates, context)),
        template_id: push.template_id,
        shared,
    })
}

async fn send_one(
    st: &AppState,
    prep: &Prepared,
    channel: Channel,
    push_id: i64,
    row: &Claimed,
) -> Outcome {
    let rendered = match (&prep.shared, &prep.layouts) {
        (Some(shared), _) => with_recipient(shared.clone(), &row.openid),
        (None, Some((templates, context))) => match templates.render(
            channel,
            context,
            &row.openid,
            &st.settings.wechat_news_template_id,
        ) {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Failed {
                    code: "render".into(),
                    error: e.to_string(),
                }
            }
        },
        (None, None) => unreachable!("a prepared push has a message or its layouts"),
    };
    let result = match rendered {
        Rendered::Template { mut message } => {
            // WeChat's 防重入 id: belt and braces, since a row is never sent twice by us anyway.
            message.client_msg_id = Some(format!("dj{push_id}-{}", row.id));
            st.wechat.template_send(&message).await.map(Some)
        }
        Rendered::Custom { message } => st.wechat.custom_send(&message).await.map(|_| None),
        // Each app's sends go through that app's API and token.
        Rendered::Subscribe { message } => st.mp.subscribe_send(&message).await.map(|_| None),
        Rendered::SubscribeOa { message } => {
            st.wechat.subscribe_bizsend(&message).await.map(|_| None)
        }
        Rendered::Mass { .. } => {
            return Outcome::Failed {
                code: "local".into(),
                error: "mass sends have no rows".into(),
            }
        }
    };
    classify(result.as_ref().map(|m| *m))
}

fn with_recipient(mut r: Rendered, openid: &str) -> Rendered {
    match &mut r {
        Rendered::Template { message } => message.touser = openid.to_owned(),
        Rendered::Custom { message } => message.touser = openid.to_owned(),
        Rendered::Subscribe { message } => message.touser = openid.to_owned(),
        Rendered::SubscribeOa { message } => message.touser = openid.to_owned(),
        Rendered::Mass { .. } => {}
    }
    r
}
