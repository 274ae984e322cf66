//! Deadline reminders (发展党员): every pass computes each open record's deadlines for today and
//! queues the reminders they call for — to the applicant (a customer-service message to the bound
//! member's openid) and to the branch secretary (the console inbox,
//! `GET /api/admin/development/reminders`).
//!
//! Exactly once: a reminder is a `development_reminders` row, UNIQUE(record, kind, due date,
//! audience), inserted in the pass's transaction (`ON CONFLICT DO NOTHING`), so a second pass, a
//! second replica or a restart queues nothing new. A queued row is claimed (`sending` + lease)
//! before WeChat is called and marked `sent` / `failed` after; a claim whose worker died becomes
//! `unknown` when its lease runs out and is never sent again.

use std::time::Duration;

use super::{rules, service, store};
use crate::{
    app::AppState,
    members::store as members,
    platform::{org::OrgScope, outbound::CustomMessage},
};

/// Deadlines are days apart; a pass every quarter of an hour is plenty.
pub const PASS_INTERVAL: Duration = Duration::from_secs(15 * 60);
/// A send not reported back within this is `unknown`.
const LEASE_MS: i64 = 60_000;
const SEND_BATCH: i64 = 50;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassReport {
    pub queued: usize,
    pub sent: usize,
    pub failed: usize,
    pub skipped: usize,
}

/// The background loop: one pass per interval (the first after one interval, so that instances
/// starting together don't all pass at once), until shutdown.
pub async fn reminder_loop(st: AppState) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(PASS_INTERVAL) => {}
            _ = st.shutdown.cancelled() => return,
        }
        match run_once(&st).await {
            Ok(r) if r != PassReport::default() => tracing::info!(
                queued = r.queued,
                sent = r.sent,
                failed = r.failed,
                skipped = r.skipped,
                "development reminders"
            ),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %format!("{e:#}"), "development reminders"),
        }
    }
}

/// One reminder pass: queue what today calls for, then send what is queued.
pub async fn run_once(st: &AppState) -> anyhow::Result<PassReport> {
    let mut report = PassReport::default();
    let now = st.clock.unix_ms();
    let today = rules::today(now);
    let reaped = store::reap_reminders(&st.db, now).await?;
    if reaped > 0 {
        tracing::warn!(
            reminders = reaped,
            "reminder sends whose worker stopped are `unknown` (not resent)"
        );
    }
    let content = service::content(st);
    let defs = crate::development::definitions(&content);
    let records = store::all_records(&st.db, &OrgScope::All, None, true).await?;
    for l in service::load_many(&st.db, records).await? {
        let c = service::compute(defs, &l, today);
        let due = rules::reminders_due(defs, &c.deadlines, today);
        if due.is_empty() {
            continue;
        }
        let openid = match l.record.member_id {
            // A customer-service message goes to the official-account openid (linked by UnionID).
            Some(m) => members::by_id(&st.db, m).await?.and_then(|m| m.oa_openid),
            None => None,
        };
        let mut tx = st.db.begin_write().await?;
        for r in &due {
            let due_on = rules::format_date(r.due);
            let (status, error) = match openid {
                Some(_) => ("pending", None),
                None => ("skipped", Some("no_account_openid")),
            };
            let to_applicant = rules::reminder_text(r, None);
            if store::queue_reminder(
                &mut tx,
                &store::NewReminder {
                    record_id: l.record.id,
                    kind: &r.kind,
                    due_on: &due_on,
                    audience: "applicant",
                    channel: "custom",
                    openid: openid.as_deref(),
                    status,
                    message: &to_applicant,
                    error,
                },
                now,
            )
            .await?
            {
                report.queued += 1;
                if status == "skipped" {
                    report.skipped += 1;
                }
            }
            let to_secretary = rules::reminder_text(r, Some(&l.record.name));
            if store::queue_reminder(
                &mut tx,
                &store::NewReminder {
                    record_id: l.record.id,
                    kind: &r.kind,
                    due_on: &due_on,
                    audience: "secretary",
                    channel: "console",
                    openid: None,
                    status: "sent",
                    message: &to_secretary,
                    error: None,
                },
                now,
            )
            .await?
            {
                report.queued += 1;
            }
        }
        tx.commit().await?;
    }
    loop {
        let batch = store::pending_reminders(&st.db, SEND_BATCH).await?;
        if batch.is_empty() {
            break;
        }
        for r in batch {
            let now = st.clock.unix_ms();
            if !store::claim_reminder(&st.db, r.id, now + LEASE_MS, now).await? {
                continue;
            }
            let Some(openid) = r.openid.as_deref() else {
                store::finish_reminder(&st.db, r.id, "skipped", Some("no_openid"), now).await?;
                report.skipped += 1;
                continue;
            };
            let outcome = st
                .outbound
                .send_custom(openid, CustomMessage::Text(r.message.clone()))
                .await;
            let now = st.clock.unix_ms();
            match outcome {
                Ok(()) => {
                    store::finish_reminder(&st.db, r.id, "sent", None, now).await?;
                    report.sent += 1;
                }
                Err(wechat::Error::Api { errcode, .. }) => {
                    // 45015: outside the 48-hour window; 43004: unsubscribed. Not retried.
                    store::finish_reminder(&st.db, r.id, "failed", Some(&errcode.to_string()), now)
                        .await?;
                    report.failed += 1;
                }
                Err(e) => {
                    // The request may or may not have reached WeChat: never sent twice.
                    tracing::warn!(error = %e, reminder = r.id, "development reminder outcome unknown");
                    store::finish_reminder(&st.db, r.id, "unknown", Some("transport"), now).await?;
                    report.failed += 1;
                }
            }
        }
    }
    Ok(report)
}
