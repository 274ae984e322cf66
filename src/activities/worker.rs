//! The activities' background work: reminders before the start, and handing every recorded
//! notice (cancellation, waitlist promotion, reminder) to the push machinery.
//!
//! **Reminders.** Once an activity's reminder time (start − `remind_minutes`) has come, one
//! reminder notice per confirmed member is queued, exactly once — the activity's `reminded_at` (a
//! state-guarded claim) and each sign-up's `reminded_at` are set in the same transaction that
//! records the notices, so replicas polling together or a crash between polls never queue a
//! second one.
//!
//! **Delivery.** [`deliver_notices`] takes pending notices (row locks, `SKIP LOCKED` on
//! PostgreSQL), turns each (activity, kind) group into a notice push
//! ([`push::service::create_notice_in`]: the channels of `activity_notice_channels` in order, the
//! kind's template id) and marks every notice `queued` with its push and delivery row — all in one
//! transaction. A crash before the commit leaves the notices pending and no push; after it, the
//! delivery rows carry every push guarantee (leased, never sent twice, `unknown` not resent). Two
//! replicas never take the same notice.

use std::{collections::BTreeMap, collections::HashMap, time::Duration};

use super::{
    rules::{self, NoticeKind},
    store,
};
use crate::{
    app::AppState,
    platform::error::AppError,
    push::{
        self,
        service::{NoticeRequest, CREATED_BY_ACTIVITIES},
        Channel,
    },
};

/// Notices handed to pushes per transaction.
const NOTICE_BATCH: i64 = 500;

/// Queue the reminders that are due now; the number of notices queued.
pub async fn queue_due_reminders(st: &AppState) -> anyhow::Result<u64> {
    let now = st.clock.unix_ms();
    let mut queued = 0;
    for id in store::due_reminders(&st.db, now).await? {
        let mut tx = st.db.begin_write().await?;
        match store::queue_reminders(&mut tx, id, now).await? {
            Some(n) => {
                tx.commit().await?;
                tracing::info!(activity_id = id, reminders = n, "activity reminders queued");
                queued += n;
            }
            None => tx.rollback().await?,
        }
    }
    Ok(queued)
}

/// The template id configured for a kind of notice (None when unset).
fn template_id(st: &AppState, kind: NoticeKind) -> Option<&str> {
    let s = &st.settings;
    let id = match kind {
        NoticeKind::Cancelled => &s.activity_cancelled_template_id,
        NoticeKind::Promoted => &s.activity_promoted_template_id,
        NoticeKind::Reminder => &s.activity_reminder_template_id,
    };
    Some(id.trim()).filter(|t| !t.is_empty())
}

/// Hand every pending notice to a notice push; the number of notices taken.
pub async fn deliver_notices(st: &AppState) -> anyhow::Result<u64> {
    let mut total = 0;
    loop {
        let n = deliver_batch(st).await?;
        total += n;
        if n < NOTICE_BATCH as u64 || st.shutdown.is_cancelled() {
            return Ok(total);
        }
    }
}

async fn deliver_batch(st: &AppState) -> anyhow::Result<u64> {
    let now = st.clock.unix_ms();
    let mut tx = st.db.begin_write().await?;
    let rows = store::claim_pending_notices(&mut tx, st.db.backend(), NOTICE_BATCH).await?;
    if rows.is_empty() {
        tx.rollback().await?;
        return Ok(0);
    }
    let mut groups: BTreeMap<(i64, String), Vec<&store::NoticeRow>> = BTreeMap::new();
    for r in &rows {
        groups
            .entry((r.activity_id, r.kind.clone()))
            .or_default()
            .push(r);
    }
    let order = Channel::parse_list(&st.settings.activity_notice_channels);
    for ((activity_id, kind), notices) in groups {
        let kind = NoticeKind::parse(&kind);
        let activity = store::get_in(&mut tx, activity_id).await?;
        let (Some(kind), Some(a)) = (kind, activity) else {
            skip(&mut tx, &notices, "unknown_activity", now).await?;
            continue;
        };
        let template_id = template_id(st, kind);
        let channels = push::service::usable_channels(&st.settings, &order, template_id);
        let notice = rules::notice(
            kind,
            &rules::NoticeFacts {
                activity_id,
                title: &a.title,
                starts_at: a.starts_at,
                location: &a.location,
                cancel_reason: a.cancel_reason.as_deref(),
            },
        );
        let members: Vec<i64> = notices.iter().map(|n| n.member_id).collect();
        let made = if channels.is_empty() {
            Err(AppError::Validation("no_channel".into()))
        } else {
            push::service::create_notice_in(
                st,
                &mut tx,
                &NoticeRequest {
                    member_ids: &members,
                    channels: &channels,
                    template_id,
                    notice: &notice,
                    created_by: CREATED_BY_ACTIVITIES,
                },
            )
            .await
        };
        match made {
            Ok(deliveries) => {
                let by_member: HashMap<i64, (i64, i64)> = deliveries
                    .iter()
                    .map(|d| (d.member_id, (d.push_id, d.delivery_id)))
                    .collect();
                for n in &notices {
                    match by_member.get(&n.member_id) {
                        Some((push_id, delivery_id)) => {
                            store::mark_queued(&mut tx, n.id, *push_id, *delivery_id, now).await?
                        }
                        None => store::mark_skipped(&mut tx, n.id, "not_on_roster", now).await?,
                    };
                }
            }
            // Nothing was written for this group: the notice cannot be sent as configured.
            Err(AppError::Validation(why)) => {
                tracing::warn!(activity_id, kind = kind.push_kind(), %why, "activity notices not sendable");
                skip(&mut tx, &notices, &why, now).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    tx.commit().await?;
    let n = rows.len() as u64;
    tracing::info!(notices = n, "activity notices handed to pushes");
    Ok(n)
}

async fn skip(
    tx: &mut crate::platform::db::Tx,
    notices: &[&store::NoticeRow],
    reason: &str,
    now: i64,
) -> sqlx::Result<()> {
    for n in notices {
        store::mark_skipped(tx, n.id, reason, now).await?;
    }
    Ok(())
}

/// The loop every instance with workers runs: due reminders, then pending notices.
pub async fn reminder_loop(st: AppState) {
    let poll = Duration::from_millis(st.settings.notice_poll_ms.max(10));
    loop {
        if let Err(e) = queue_due_reminders(&st).await {
            tracing::warn!(error = %format!("{e:#}"), "activity reminders failed; retrying");
        }
        if let Err(e) = deliver_notices(&st).await {
            tracing::warn!(error = %format!("{e:#}"), "activity notices not handed over; retrying");
        }
        tokio::select! {
            _ = st.shutdown.cancelled() => return,
            _ = tokio::time::sleep(poll) => {}
        }
    }
}
