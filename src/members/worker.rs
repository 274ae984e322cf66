//! The members feature's background work: linking members to their followers by UnionID.

use std::time::Duration;

use crate::app::AppState;

/// Run the link pass every two seconds (and once more at shutdown is not needed: it is
/// idempotent and the next start catches up).
pub async fn link_loop(st: AppState) {
    loop {
        match super::service::link_followers(&st).await {
            Ok(ids) if !ids.is_empty() => {
                tracing::info!(count = ids.len(), "members linked to their followers")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "linking members to followers failed; retrying"),
        }
        tokio::select! {
            _ = st.shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}
