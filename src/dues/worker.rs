//! Background work for dues: unpaid-member reminders ([`service::remind_due`], once per
//! `dues_reminder_interval_days` per bill, claimed in the transaction that queues the notice
//! push, so replicas and crashes never remind twice), orders whose notification may never come are queried at WeChat Pay
//! (a paid one is credited through the same idempotent path as notifications), expired unpaid
//! orders are closed (`ORDER_PAID` on close → query and credit), and in certificate mode the
//! platform certificates are refreshed.
//!
//! Once-only across replicas: an order check is claimed with a lease (a conditional UPDATE,
//! `FOR UPDATE SKIP LOCKED` on PostgreSQL); a replica that dies mid-check leaves a lease that
//! expires, and the next check repeats only idempotent calls (query, close, credit).

use std::time::Duration;

use tokio_util::task::TaskTracker;

use super::{service, store};
use crate::app::AppState;

/// Orders one replica checks per round.
const BATCH: i64 = 20;

/// Start the dues workers: reminders (when `dues_reminder_auto`), and the order checks and
/// certificate refresh (only when online payment is on).
pub fn spawn(state: &AppState, workers: &TaskTracker) {
    if state.settings.dues_reminder_auto {
        workers.spawn(reminder_loop(state.clone()));
    }
    let Some(pay) = &state.pay else {
        return;
    };
    workers.spawn(order_check_loop(state.clone()));
    let certificate_mode = pay.platform_keys().public_key_id().is_none();
    if certificate_mode && state.settings.pay_certificate_refresh_hours > 0 {
        workers.spawn(certificate_refresh_loop(state.clone()));
    }
}

async fn order_check_loop(st: AppState) {
    let owner = format!(
        "{}-{}",
        std::process::id(),
        &wechat::pay::random_nonce()[..8]
    );
    let poll = Duration::from_millis(st.settings.dues_poll_ms);
    loop {
        tokio::select! {
            _ = st.shutdown.cancelled() => return,
            _ = tokio::time::sleep(poll) => {}
        }
        if let Err(e) = check_round(&st, &owner).await {
            tracing::warn!(error = %e, "dues order checks failed; retrying next round");
        }
    }
}

async fn reminder_loop(st: AppState) {
    let poll = Duration::from_millis(st.settings.notice_poll_ms.max(10));
    loop {
        match service::remind_due(&st).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(bills = n, "dues reminders queued"),
            Err(e) => tracing::warn!(error = %e, "dues reminders failed; retrying next round"),
        }
        tokio::select! {
            _ = st.shutdown.cancelled() => return,
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

/// One round: claim due orders and check each.
pub async fn check_round(st: &AppState, owner: &str) -> anyhow::Result<usize> {
    let orders = store::orders_claim(
        st.db.pool(),
        st.db.backend(),
        owner,
        st.clock.unix_ms(),
        service::CHECK_LEASE_MS,
        BATCH,
    )
    .await?;
    for order in &orders {
        if st.shutdown.is_cancelled() {
            break;
        }
        // A failed check keeps its lease until it expires; then any replica tries again.
        if let Err(e) = service::check_order(st, order, owner).await {
            tracing::warn!(out_trade_no = %order.out_trade_no, error = %e, "dues order check failed");
        }
    }
    Ok(orders.len())
}

/// Certificate mode: download the platform certificates now and every
/// `pay_certificate_refresh_hours` (old and new ones overlap for months; every valid one is
/// kept). A failure is retried after a minute.
async fn certificate_refresh_loop(st: AppState) {
    let Some(pay) = st.pay.clone() else {
        return;
    };
    let every = Duration::from_secs(st.settings.pay_certificate_refresh_hours * 3600);
    loop {
        let wait = match pay.refresh_certificates().await {
            Ok(certs) => {
                tracing::info!(
                    count = certs.len(),
                    "WeChat Pay platform certificates loaded"
                );
                every
            }
            Err(e) => {
                tracing::error!(error = %e, "WeChat Pay platform certificates could not be loaded");
                Duration::from_secs(60)
            }
        };
        tokio::select! {
            _ = st.shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
