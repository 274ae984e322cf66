//! Articles' background work: scheduled publishing, and the dev mode's demo articles.

use crate::{app::AppState, articles::store as articles};

/// Publish scheduled articles when their time (by `state.clock`) has come. Idempotent, so every
/// replica may run it.
pub async fn scheduled_publishing_loop(st: AppState) {
    loop {
        match articles::publish_due(&st.db, st.clock.unix_ms()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(count = n, "scheduled articles published"),
            Err(e) => tracing::warn!(error = %e, "scheduled publishing failed; retrying"),
        }
        tokio::select! {
            _ = st.shutdown.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
        }
    }
}

/// Dev mode: publish the demo articles when there are none yet.
pub async fn load_demo_articles(st: &AppState) -> anyhow::Result<()> {
    if articles::count(&st.db).await? > 0 {
        return Ok(());
    }
    let content = st.content.get();
    let now = st.clock.unix_ms();
    for (i, a) in content.demo_articles.iter().enumerate() {
        let html = crate::platform::markdown::render(&a.body_md);
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
        let id = articles::insert_published(&st.db, &new, now - i as i64 * 60_000).await?;
        // The first two are the focus banners (横幅焦点).
        if i < 2 && crate::articles::banner_store::count(&st.db).await? < 2 {
            let banner = crate::articles::rules::ValidBanner {
                title: a.title.clone(),
                image_url: format!(
                    "{}/static/banner-{}.svg",
                    st.settings.public_url.trim_end_matches('/'),
                    i + 1
                ),
                article_id: Some(id),
                link_url: None,
                position: i as i64,
                valid_from: None,
                valid_until: None,
            };
            let mut tx = st.db.begin_write().await?;
            crate::articles::banner_store::create(&mut tx, &banner, now).await?;
            tx.commit().await?;
        }
    }
    tracing::info!(
        count = content.demo_articles.len(),
        "dev mode: demo articles published"
    );
    Ok(())
}
