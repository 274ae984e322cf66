//! Menu and follower sync against the fake WeChat, and the shared access token in Redis.

use dangjian_test_macros::backend_test;

use std::sync::Arc;

use dangjian::official_account::service;
use secrecy::ExposeSecret;

use crate::{each_backend, helpers::APP_ID};

#[backend_test]
async fn menu_toml_is_pushed_with_menu_create() {
    each_backend!(|app| {
        let leaves = service::sync_menu(&app.state).await.unwrap();
        assert_eq!(leaves, 15);
        let menu = app.fake.menu().expect("menu created at the fake");
        let buttons = menu["button"].as_array().unwrap();
        assert_eq!(buttons.len(), 3);
        assert_eq!(buttons[0]["name"], "党建动态");
        assert_eq!(buttons[0]["sub_button"][2]["key"], "CAT_LILUN_YANJIU");
        assert_eq!(buttons[0]["sub_button"][2]["type"], "click");
    });
}

#[backend_test]
async fn follower_sync_pages_upserts_tags_and_marks_the_gone_resumably() {
    each_backend!(|app| {
        let openids: Vec<String> = (0..250).map(|i| format!("o_sync_{i:03}")).collect();
        app.fake.add_followers(&openids);
        app.fake.set_user_page_size(100);
        let tag = app.state.wechat.tags_create("支部委员").await.unwrap();
        app.state
            .wechat
            .tags_members_batchtagging(tag.id, &openids[..10])
            .await
            .unwrap();
        // Known to us, no longer a follower at WeChat.
        dangjian::official_account::store::subscribe(&app.state.db, "o_gone", None, 1)
            .await
            .unwrap();

        // One page, then "crash": the cursor is saved.
        assert_eq!(
            service::sync_followers(&app.state, Some(1)).await.unwrap(),
            None
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM job_state WHERE name = 'follower_sync'")
                .await,
            1
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM followers WHERE seen_by_sync IS NOT NULL")
                .await,
            100
        );

        let report = service::sync_followers(&app.state, None)
            .await
            .unwrap()
            .expect("finished");
        assert!(report.resumed);
        assert_eq!(report.seen, 250);
        assert_eq!(report.marked_gone, 1);
        assert_eq!(report.subscribed, 250);
        assert_eq!(app.count("SELECT COUNT(*) FROM followers WHERE openid = 'o_gone' AND status = 'unsubscribed'").await, 1);
        assert_eq!(app.count("SELECT COUNT(*) FROM job_state").await, 0);
        assert_eq!(
            app.count(&format!(
                "SELECT COUNT(*) FROM follower_tags WHERE tag_id = {}",
                tag.id
            ))
            .await,
            10
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM wechat_tags WHERE name = '支部委员'")
                .await,
            1
        );
        // Pages of 100, 100 and 50, then the empty page that ends the list (WeChat keeps
        // returning the last OpenID as next_openid until a page comes back empty).
        assert_eq!(app.fake.count_calls(wechat::client::api::USER_GET), 4);
    });
}

#[backend_test(postgres)]
async fn two_replicas_sharing_redis_fetch_the_token_once() {
    for backend in crate::helpers::backends() {
        let crate::helpers::Backend::Postgres {
            redis_url: Some(_), ..
        } = &backend
        else {
            continue;
        };
        let app = crate::helpers::TestApp::spawn_with(&backend, Default::default()).await;
        let settings = &app.state.settings;
        let redis = dangjian::platform::cache::RedisCache::connect(
            settings.redis_url.as_ref().unwrap().expose_secret(),
            &settings.redis_prefix,
            std::time::Duration::from_millis(settings.redis_timeout_ms),
        )
        .await
        .unwrap();
        // A second replica: its own client, the same Redis token store.
        let store = Arc::new(dangjian::platform::wechat::RedisTokenStore::new(&redis));
        let other = wechat::client::Client::new(
            wechat::client::ClientConfig::new(
                app.fake_base(),
                APP_ID,
                "demo-app-secret-not-for-production",
            ),
            store,
        )
        .unwrap();
        let mut calls = Vec::new();
        for i in 0..100 {
            let c = if i % 2 == 0 {
                app.state.wechat.clone()
            } else {
                other.clone()
            };
            calls.push(tokio::spawn(async move { c.tags_get().await }));
        }
        for c in calls {
            c.await.unwrap().unwrap();
        }
        assert_eq!(
            app.fake.token_fetches(),
            1,
            "one token fetch across both replicas"
        );
        // WeChat revokes the token: exactly one more fetch, and the calls succeed.
        app.fake.revoke_tokens();
        let (a, b) = tokio::join!(app.state.wechat.tags_get(), other.tags_get());
        a.unwrap();
        b.unwrap();
        assert_eq!(app.fake.token_fetches(), 2);
        app.stop().await;
    }
}

#[backend_test]
async fn editors_push_the_menu_and_admins_start_a_follower_sync_from_the_api() {
    each_backend!(|app| {
        let editor = app.user_token("menu_editor", "editor", None).await;
        let shown: serde_json::Value = app
            .http
            .get(app.url("/api/admin/wechat/menu"))
            .bearer_auth(&editor)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(shown["valid"], true);
        assert_eq!(shown["menu"]["button"].as_array().unwrap().len(), 3);
        assert!(app.fake.menu().is_none());

        let r = app
            .http
            .post(app.url("/api/admin/wechat/menu/sync"))
            .bearer_auth(&editor)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::OK);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["buttons"], 15);
        assert_eq!(app.fake.menu().unwrap()["button"][1]["name"], "时代先锋");
        assert_eq!(
            app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'wechat.menu_sync'")
                .await,
            1
        );

        // A menu that breaks WeChat's limits is refused before WeChat is called.
        let calls = app.fake.count_calls(wechat::client::api::MENU_CREATE);
        std::fs::write(
            app.state.settings.content_dir.join("menu.toml"),
            "categories = [\"党建动态\"]\n[[button]]\nname = \"一个非常非常长的菜单名称\"\ntype = \"click\"\nkey = \"K\"\ntext = \"t\"\n",
        )
        .unwrap();
        app.state.content.reload().unwrap();
        let r = app
            .http
            .post(app.url("/api/admin/wechat/menu/sync"))
            .bearer_auth(&editor)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::UNPROCESSABLE_ENTITY);
        let err: serde_json::Value = r.json().await.unwrap();
        assert_eq!(err["error"]["code"], "validation_failed");
        assert_eq!(
            app.fake.count_calls(wechat::client::api::MENU_CREATE),
            calls
        );

        app.fake
            .add_followers(&(0..30).map(|i| format!("o_api_{i}")).collect::<Vec<_>>());
        let admin = app.admin_token().await;
        let r = app
            .http
            .post(app.url("/api/admin/wechat/followers/sync"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
        let mut synced = 0;
        for _ in 0..200 {
            synced = app.count("SELECT COUNT(*) FROM followers WHERE openid LIKE 'o_api_%' AND status = 'subscribed'").await;
            if synced == 30 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(synced, 30);
        assert_eq!(
            app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'wechat.follower_sync'")
                .await,
            1
        );
    });
}

/// Issue 16: the menu and the follower sync in the console, with the sync's progress read by the
/// page's poller from `GET /api/admin/wechat/followers/sync`.
#[backend_test]
async fn the_console_shows_the_menu_syncs_it_and_follows_a_follower_sync() {
    each_backend!(|app| {
        use crate::helpers::{ADMIN_PASSWORD, ADMIN_USER};
        let c = app.console_login(ADMIN_USER, ADMIN_PASSWORD).await;
        let page = c.get(&app, "/admin/wechat").await;
        assert_eq!(page.status(), reqwest::StatusCode::OK);
        let html = page.text().await.unwrap();
        assert!(
            html.contains("id=\"menu\"") && html.contains("同步菜单到微信"),
            "{html}"
        );
        assert!(
            html.contains(&format!("value=\"{}\"", c.csrf)),
            "CSRF in the forms"
        );
        // Without the CSRF field nothing is sent to WeChat.
        let calls = app.fake.count_calls(wechat::client::api::MENU_CREATE);
        let r = c.post_raw(&app, "/admin/wechat/menu/sync", &[]).await;
        assert_eq!(r.status(), reqwest::StatusCode::FORBIDDEN);
        assert_eq!(
            app.fake.count_calls(wechat::client::api::MENU_CREATE),
            calls
        );
        let r = c.post(&app, "/admin/wechat/menu/sync", &[]).await;
        let html = c.follow(&app, r).await;
        assert!(html.contains("菜单已同步到微信"), "{html}");
        assert_eq!(
            app.fake.count_calls(wechat::client::api::MENU_CREATE),
            calls + 1
        );
        assert!(app.fake.menu().is_some());

        app.fake
            .add_followers(&(0..25).map(|i| format!("o_con_{i}")).collect::<Vec<_>>());
        let r = c.post(&app, "/admin/wechat/followers/sync", &[]).await;
        let html = c.follow(&app, r).await;
        assert!(
            html.contains("粉丝同步已开始") && html.contains("id=\"follower-sync\""),
            "{html}"
        );
        let mut progress = serde_json::Value::Null;
        for _ in 0..300 {
            progress = c
                .get(&app, "/api/admin/wechat/followers/sync")
                .await
                .json()
                .await
                .unwrap();
            if progress["running"] == false {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(progress["running"], false, "{progress}");
        let subscribed = app
            .count("SELECT COUNT(*) FROM followers WHERE status = 'subscribed'")
            .await;
        assert!(subscribed >= 25);
        assert_eq!(progress["subscribed"], subscribed);
    });
}
