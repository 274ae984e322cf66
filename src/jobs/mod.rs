//! Background work: workers, and the outbound channel to WeChat.

use tokio_util::task::TaskTracker;

use crate::{db::articles, startup::AppState};

pub fn spawn_workers(state: &AppState, workers: &TaskTracker) {
    workers.spawn(crate::wechat_sync::follower_sync_loop(state.clone()));
}

/// Dev mode: publish the demo articles when there are none yet.
pub async fn load_demo_articles(st: &AppState) -> anyhow::Result<()> {
    if articles::count(&st.db).await? > 0 {
        return Ok(());
    }
    let content = st.content.get();
    let now = st.clock.unix_ms();
    for (i, a) in content.demo_articles.iter().enumerate() {
        let html = crate::markdown::render(&a.body_md);
        let new = articles::NewArticle {
            category: &a.category,
            title: &a.title,
            summary: &a.summary,
            body_md: &a.body_md,
            body_html: &html,
            cover_url: None,
            author: Some("党委宣传部"),
        };
        // Older first, so the first demo article is the newest.
        articles::insert_published(&st.db, &new, now - i as i64 * 60_000).await?;
    }
    tracing::info!(count = content.demo_articles.len(), "dev mode: demo articles published");
    Ok(())
}
