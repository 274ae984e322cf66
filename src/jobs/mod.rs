//! Background work: workers, and the outbound channel to WeChat.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio_util::task::TaskTracker;

use crate::{
    cache::Cache,
    config::Settings,
    db::articles,
    outbound::{CustomMessage, Outbound},
    startup::AppState,
};

pub fn spawn_workers(_state: &AppState, _workers: &TaskTracker) {}

/// Records what would be sent (tests).
#[derive(Default)]
pub struct RecordingOutbound {
    pub sent: Mutex<Vec<(String, CustomMessage)>>,
}

#[async_trait]
impl Outbound for RecordingOutbound {
    async fn send_custom(&self, openid: &str, message: CustomMessage) -> Result<(), wechat::Error> {
        self.sent.lock().unwrap_or_else(|e| e.into_inner()).push((openid.to_owned(), message));
        Ok(())
    }
}

pub async fn default_outbound(_settings: &Settings, _cache: &Arc<dyn Cache>) -> anyhow::Result<Arc<dyn Outbound>> {
    Ok(Arc::new(RecordingOutbound::default()))
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
