//! Keeping WeChat and our tables in step: the custom menu (content/menu.toml → `menu/create`)
//! and the follower list (`user/get` + `user/info/batchget` → `followers`, `follower_tags`).

use serde::{Deserialize, Serialize};
use wechat::client::{Button, Lang, Menu};

use super::store;
use crate::{
    app::AppState,
    auth::AdminSession,
    platform::audit,
    platform::content,
    platform::db::Db,
    platform::error::{AppError, AppResult},
};

/// Why a menu file can't be sent to WeChat (checked before calling `menu/create`).
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("menu: {0}")]
pub struct MenuError(String);

const TOP_NAME_MAX_BYTES: usize = 16;
const SUB_NAME_MAX_BYTES: usize = 60;
const KEY_MAX_BYTES: usize = 128;
const URL_MAX_BYTES: usize = 1024;

/// Validate content/menu.toml against WeChat's 自定义菜单 limits and convert it.
pub fn build_menu(menu: &content::Menu) -> Result<Menu, MenuError> {
    let err = |m: String| Err(MenuError(m));
    if menu.button.is_empty() || menu.button.len() > 3 {
        return err(format!(
            "1 to 3 top-level buttons allowed, found {}",
            menu.button.len()
        ));
    }
    let mut out = Vec::with_capacity(menu.button.len());
    for top in &menu.button {
        if top.name.is_empty() || top.name.len() > TOP_NAME_MAX_BYTES {
            return err(format!(
                "top-level name `{}` must be 1..={TOP_NAME_MAX_BYTES} bytes",
                top.name
            ));
        }
        if top.sub_button.is_empty() {
            out.push(leaf(top)?);
            continue;
        }
        if top.sub_button.len() > 5 {
            return err(format!(
                "`{}` has {} sub-buttons; at most 5",
                top.name,
                top.sub_button.len()
            ));
        }
        let subs = top
            .sub_button
            .iter()
            .map(|b| {
                if b.name.is_empty() || b.name.len() > SUB_NAME_MAX_BYTES {
                    return Err(MenuError(format!(
                        "sub-button name `{}` must be 1..={SUB_NAME_MAX_BYTES} bytes",
                        b.name
                    )));
                }
                if !b.sub_button.is_empty() {
                    return Err(MenuError(format!(
                        "`{}`: menus nest two levels only",
                        b.name
                    )));
                }
                leaf(b)
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.push(Button::parent(top.name.clone(), subs));
    }
    let mut keys: Vec<&str> = menu.buttons().filter_map(|b| b.key.as_deref()).collect();
    let n = keys.len();
    keys.sort_unstable();
    keys.dedup();
    if keys.len() != n {
        return err("click keys must be unique".into());
    }
    Ok(Menu { button: out })
}

fn leaf(b: &content::MenuButton) -> Result<Button, MenuError> {
    let need = |v: &Option<String>, what: &str, max: usize| -> Result<String, MenuError> {
        match v {
            Some(s) if !s.is_empty() && s.len() <= max => Ok(s.clone()),
            _ => Err(MenuError(format!(
                "`{}` needs `{what}` (1..={max} bytes)",
                b.name
            ))),
        }
    };
    match b.kind.as_deref() {
        Some("click") => Ok(Button::click(
            b.name.clone(),
            need(&b.key, "key", KEY_MAX_BYTES)?,
        )),
        Some("view") => {
            let url = need(&b.url, "url", URL_MAX_BYTES)?;
            if !url.starts_with("http://") && !url.starts_with("https://") {
                return Err(MenuError(format!("`{}`: url must be http(s)", b.name)));
            }
            Ok(Button::view(b.name.clone(), url))
        }
        Some("miniprogram") => Ok(Button::miniprogram(
            b.name.clone(),
            need(&b.url, "url", URL_MAX_BYTES)?,
            need(&b.appid, "appid", 64)?,
            need(&b.pagepath, "pagepath", 1024)?,
        )),
        Some(other) => Err(MenuError(format!(
            "`{}`: unsupported button type `{other}`",
            b.name
        ))),
        None => Err(MenuError(format!(
            "`{}` needs a `type` or sub-buttons",
            b.name
        ))),
    }
}

/// Push the current content/menu.toml to WeChat. Returns the number of leaf buttons.
pub async fn sync_menu(st: &AppState) -> anyhow::Result<usize> {
    let content = st.content.get();
    let menu = build_menu(&content.menu)?;
    st.wechat.menu_create(&menu).await?;
    let leaves = content.menu.buttons().count();
    tracing::info!(buttons = leaves, "custom menu synced to WeChat");
    Ok(leaves)
}

const SYNC_STATE: &str = "follower_sync";

/// Cache key held while a follower sync runs (one at a time across replicas).
pub const FOLLOWER_SYNC_LOCK: &str = "lock:follower_sync";

/// Progress of a follower sync, saved after every page so a crash resumes where it stopped.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SyncCursor {
    /// Start time (unix ms) of the run: also the mark written on every follower it sees.
    pub run: i64,
    pub next_openid: Option<String>,
    pub seen: i64,
    /// WeChat's count of all followers, from the latest page (0 before the first).
    #[serde(default)]
    pub total: i64,
}

/// What the console's progress bar shows of a follower sync.
#[derive(Debug, Clone, Serialize, PartialEq, schemars::JsonSchema)]
pub struct SyncProgress {
    pub running: bool,
    /// Followers read by the current (or interrupted) run.
    pub seen: i64,
    /// WeChat's count of all followers, when known.
    pub total: Option<i64>,
    /// Subscribed followers on record now.
    pub subscribed: i64,
}

/// Push content/menu.toml to WeChat (422 when it breaks one of WeChat's limits), audited; the
/// number of buttons sent.
pub async fn sync_menu_audited(st: &AppState, session: &AdminSession) -> AppResult<usize> {
    let content = st.content.get();
    let menu = build_menu(&content.menu).map_err(|e| AppError::Validation(e.to_string()))?;
    st.wechat.menu_create(&menu).await?;
    let buttons = content.menu.buttons().count();
    let entry = session
        .audit("wechat.menu_sync", "menu", "")
        .details(serde_json::json!({"buttons": buttons}));
    audit::record(st.db.pool(), &entry).await?;
    Ok(buttons)
}

/// Start a follower sync in the background, audited; 409 while one runs on any replica.
pub async fn start_follower_sync(st: &AppState, session: &AdminSession) -> AppResult<()> {
    let lock = hex::encode(rand::random::<[u8; 8]>());
    if !st
        .cache
        .set_nx(
            FOLLOWER_SYNC_LOCK,
            &lock,
            std::time::Duration::from_secs(3600),
        )
        .await?
    {
        return Err(AppError::Conflict(
            "a follower sync is already running".into(),
        ));
    }
    audit::record(
        st.db.pool(),
        &session.audit("wechat.follower_sync", "followers", ""),
    )
    .await?;
    let task_state = st.clone();
    st.tasks.spawn(async move {
        let st = task_state;
        if let Err(e) = sync_followers(&st, None).await {
            tracing::warn!(error = %format!("{e:#}"), "follower sync failed; the next run resumes it");
        }
        let _ = st.cache.del_if_eq(FOLLOWER_SYNC_LOCK, &lock).await;
    });
    Ok(())
}

/// The follower sync's progress (the saved cursor and the cross-replica lock).
pub async fn sync_progress(st: &AppState) -> AppResult<SyncProgress> {
    let running = st.cache.get(FOLLOWER_SYNC_LOCK).await?.is_some();
    let cursor = load_cursor(&st.db).await?;
    Ok(SyncProgress {
        running,
        seen: cursor.as_ref().map_or(0, |c| c.seen),
        total: cursor.as_ref().map(|c| c.total).filter(|t| *t > 0),
        subscribed: store::count_subscribed(&st.db).await?,
    })
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyncReport {
    pub seen: i64,
    pub subscribed: i64,
    pub marked_gone: i64,
    pub resumed: bool,
}

async fn load_cursor(db: &Db) -> sqlx::Result<Option<SyncCursor>> {
    Ok(store::job_state(db, SYNC_STATE)
        .await?
        .and_then(|v| serde_json::from_str(&v).ok()))
}

/// Page through `user/get` and `user/info/batchget`, upsert every follower with their tags,
/// then mark those WeChat no longer lists as unsubscribed. Resumable: an interrupted run
/// continues from its saved cursor. `max_pages` bounds one call (None: to the end).
pub async fn sync_followers(
    st: &AppState,
    max_pages: Option<usize>,
) -> anyhow::Result<Option<SyncReport>> {
    let db = &st.db;
    let (mut cursor, resumed) = match load_cursor(db).await? {
        Some(c) => (c, true),
        None => (
            SyncCursor {
                run: st.clock.unix_ms(),
                next_openid: None,
                seen: 0,
                total: 0,
            },
            false,
        ),
    };
    sync_tags(st).await?;
    let mut pages = 0;
    loop {
        if max_pages.is_some_and(|m| pages >= m) {
            return Ok(None); // more to do; the cursor is saved
        }
        let page = st.wechat.user_get(cursor.next_openid.as_deref()).await?;
        let openids = page.openids().to_vec();
        let mut infos = Vec::with_capacity(openids.len());
        for chunk in openids.chunks(100 /* user/info/batchget limit */) {
            infos.extend(st.wechat.user_info_batchget(chunk, Lang::ZhCn).await?);
        }
        cursor.seen += infos.len() as i64;
        cursor.total = page.total as i64;
        cursor.next_openid = Some(page.next_openid.clone());
        let last = page.is_last() || openids.is_empty();
        let mut tx = db.begin_write().await?;
        let now = st.clock.unix_ms();
        for u in &infos {
            let status = if u.subscribe == 1 {
                "subscribed"
            } else {
                "unsubscribed"
            };
            let f = store::SyncedFollower {
                openid: &u.openid,
                status,
                scene: u.subscribe_scene.as_deref(),
                subscribed_at: u.subscribe_time.map(|s| s * 1000),
                unionid: u.unionid.as_deref(),
                language: u.language.as_deref(),
                tags: &u.tagid_list,
            };
            store::upsert_synced(&mut tx, &f, cursor.run, now).await?;
        }
        // Followers who are members are linked by their UnionID (stored above) in the members
        // feature's link pass, whichever side arrived first.
        let mut marked_gone = 0;
        if last {
            // Gone: subscribed here, not listed by this run, and not (re)subscribed since it began.
            marked_gone = store::mark_unseen_gone(&mut tx, cursor.run, now).await?;
            store::clear_job_state(&mut tx, SYNC_STATE).await?;
        } else {
            store::save_job_state(&mut tx, SYNC_STATE, &serde_json::to_string(&cursor)?, now)
                .await?;
        }
        tx.commit().await?;
        pages += 1;
        if last {
            let subscribed = crate::official_account::store::count_subscribed(db).await?;
            tracing::info!(
                seen = cursor.seen,
                subscribed,
                marked_gone,
                "follower sync finished"
            );
            return Ok(Some(SyncReport {
                seen: cursor.seen,
                subscribed,
                marked_gone,
                resumed,
            }));
        }
    }
}

/// A new follower: ask WeChat who they are (`user/info`) and record the UnionID on the follower;
/// the members feature's link pass then gives the member who is this person their account
/// openid. Runs after the webhook has answered; a failure only delays it until the next sync.
pub async fn identify_follower(st: &AppState, openid: &str) {
    let info = match st.wechat.user_info(openid, Lang::ZhCn).await {
        Ok(info) => info,
        Err(e) => {
            tracing::warn!(error = %e, "user/info for a new follower failed; the follower sync will retry");
            return;
        }
    };
    let Some(unionid) = info.unionid.as_deref().filter(|u| !u.is_empty()) else {
        // The account is not on an open platform with the mini-program: nothing links them.
        return;
    };
    let recorded = async {
        let mut tx = st.db.begin_write().await?;
        store::set_unionid(&mut tx, openid, unionid, st.clock.unix_ms()).await?;
        tx.commit().await
    };
    if let Err(e) = recorded.await {
        tracing::warn!(error = %e, "recording a follower's UnionID failed; the follower sync will retry");
    }
}

async fn sync_tags(st: &AppState) -> anyhow::Result<()> {
    let tags = st.wechat.tags_get().await?;
    let now = st.clock.unix_ms();
    let mut tx = st.db.begin_write().await?;
    for t in tags {
        store::upsert_tag(&mut tx, t.id, &t.name, t.count as i64, now).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Background: sync followers every `follower_sync_interval_hours` (0 = never). One replica runs
/// each round (a cache lock); an interrupted round resumes from its cursor in the next one.
pub async fn follower_sync_loop(st: AppState) {
    let hours = st.settings.follower_sync_interval_hours;
    if hours == 0 {
        return;
    }
    let every = std::time::Duration::from_secs(hours * 3600);
    loop {
        tokio::select! {
            _ = st.shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let lock_value = hex::encode(rand::random::<[u8; 8]>());
        match st
            .cache
            .set_nx(FOLLOWER_SYNC_LOCK, &lock_value, every / 2)
            .await
        {
            Ok(true) => {
                if let Err(e) = sync_followers(&st, None).await {
                    tracing::warn!(error = %format!("{e:#}"), "follower sync failed; it resumes next round");
                }
                let _ = st.cache.del_if_eq(FOLLOWER_SYNC_LOCK, &lock_value).await;
            }
            Ok(false) => tracing::debug!("follower sync runs on another replica"),
            Err(e) => tracing::warn!(error = %e, "follower sync lock unavailable"),
        }
    }
}

/// Write the recorded follower interactions (last-seen times) in one batch.
pub async fn flush_interactions(st: &AppState) -> sqlx::Result<usize> {
    let batch = st.interactions.drain(st.clock.unix_ms());
    let n = batch.len();
    if let Err(e) = crate::official_account::store::touch_many(&st.db, &batch).await {
        st.interactions.restore(batch);
        return Err(e);
    }
    Ok(n)
}

/// Flush interactions every second until shutdown, then once more.
pub async fn interactions_loop(st: AppState) {
    loop {
        tokio::select! {
            _ = st.shutdown.cancelled() => break,
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
        if let Err(e) = flush_interactions(&st).await {
            tracing::warn!(error = %e, "flushing follower interactions failed; will retry");
        }
    }
    if let Err(e) = flush_interactions(&st).await {
        tracing::warn!(error = %e, "final flush of follower interactions failed");
    }
}

/// Dev mode: the built-in fake WeChat gets a dozen demo followers, synced once into `followers`,
/// so that a push composed in the console has recipients to deliver to.
pub async fn load_demo_followers(st: &AppState) -> anyhow::Result<()> {
    let Some(fake) = &st.dev_fake else {
        return Ok(());
    };
    if store::count_subscribed(&st.db).await? > 0 {
        return Ok(());
    }
    let demo: Vec<String> = (1..=12)
        .map(|i| format!("o_demo_follower_{i:02}"))
        .collect();
    fake.add_followers(&demo);
    let report = sync_followers(st, None).await?;
    tracing::info!(
        followers = report.map_or(0, |r| r.subscribed),
        "dev mode: demo followers synced from the built-in fake"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn menu(src: &str) -> content::Menu {
        content::Menu::parse(&format!("categories = [\"A\"]\n{src}")).unwrap()
    }

    #[test]
    fn the_shipped_menu_is_valid_for_wechat() {
        let m = content::Menu::parse(include_str!("../../content/menu.toml")).unwrap();
        let built = build_menu(&m).unwrap();
        assert_eq!(built.button.len(), 3);
        assert!(built.button.iter().all(|b| b.sub_button.len() == 5));
    }

    #[test]
    fn limits_are_checked_before_calling_wechat() {
        let four = (0..4)
            .map(|i| {
                format!(
                    "[[button]]\nname = \"b{i}\"\ntype = \"click\"\nkey = \"k{i}\"\ntext = \"t\"\n"
                )
            })
            .collect::<String>();
        assert!(build_menu(&menu(&four)).unwrap_err().0.contains("1 to 3"));
        let long =
            "[[button]]\nname = \"一二三四五六\"\ntype = \"click\"\nkey = \"k\"\ntext = \"t\"\n";
        assert!(build_menu(&menu(long)).unwrap_err().0.contains("bytes"));
        let six_subs = format!(
            "[[button]]\nname = \"p\"\n{}",
            (0..6).map(|i| format!("[[button.sub_button]]\nname = \"s{i}\"\ntype = \"click\"\nkey = \"k{i}\"\ntext = \"t\"\n")).collect::<String>()
        );
        assert!(build_menu(&menu(&six_subs))
            .unwrap_err()
            .0
            .contains("at most 5"));
        let bad_url = "[[button]]\nname = \"v\"\ntype = \"view\"\nurl = \"javascript:alert(1)\"\n";
        assert!(build_menu(&menu(bad_url)).unwrap_err().0.contains("http"));
        let dup = "[[button]]\nname = \"a\"\ntype = \"click\"\nkey = \"k\"\ntext = \"t\"\n[[button]]\nname = \"b\"\ntype = \"click\"\nkey = \"k\"\ntext = \"t\"\n";
        assert!(build_menu(&menu(dup)).unwrap_err().0.contains("unique"));
    }
}
