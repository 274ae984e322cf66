//! Reminders before the start: once an activity's reminder time (start − `remind_minutes`) has
//! come, one reminder notice per confirmed member is queued, exactly once — the activity's
//! `reminded_at` (a state-guarded claim) and each sign-up's `reminded_at` are set in the same
//! transaction that records the notices, so replicas polling together or a crash between polls
//! never queue a second one.

use std::time::Duration;

use super::store;
use crate::app::AppState;

/// How often due reminders are looked for.
pub const POLL: Duration = Duration::from_secs(15);

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

/// The reminder loop every instance with workers runs.
pub async fn reminder_loop(st: AppState) {
    loop {
        if let Err(e) = queue_due_reminders(&st).await {
            tracing::warn!(error = %format!("{e:#}"), "activity reminders failed; retrying");
        }
        tokio::select! {
            _ = st.shutdown.cancelled() => return,
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}
