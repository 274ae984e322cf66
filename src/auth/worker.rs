//! Auth's background work: the audit log's retention and expired tokens.

use std::time::Duration;

use crate::{app::AppState, platform::audit};

/// Background loop: purge audit entries past `audit_retention_days` (at least
/// `MIN_AUDIT_RETENTION_DAYS`, checked at start-up) and expired admin tokens, hourly (and once at
/// start). The purge records itself in the audit log.
pub async fn retention_loop(st: AppState) {
    loop {
        let now = st.clock.unix_ms();
        let cutoff = now - (st.settings.audit_retention_days as i64) * 86_400_000;
        match audit::purge_at(&st.db, cutoff, now).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "audit entries past retention purged"),
            Err(e) => tracing::warn!(error = %e, "audit retention purge failed"),
        }
        if let Err(e) = super::token_store::purge_expired(&st.db, now).await {
            tracing::warn!(error = %e, "expired admin token purge failed");
        }
        tokio::select! {
            _ = st.shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
        }
    }
}
