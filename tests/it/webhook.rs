//! `GET/POST /wechat` end to end: signatures, the three message modes, bad input, retries.

use dangjian_test_macros::backend_test;

use std::time::Duration;

use reqwest::StatusCode;
use wechat::{crypto::MessageCrypto, signature};

use crate::{
    each_backend,
    helpers::{
        event_xml, field, now, signed_query, text_xml, Spawn, ACCOUNT, AES_KEY, APP_ID, TOKEN,
    },
};

async fn error_code(resp: reqwest::Response) -> (StatusCode, String) {
    let status = resp.status();
    let v: serde_json::Value = resp
        .json()
        .await
        .expect("error body is the JSON error shape");
    (
        status,
        v["error"]["code"].as_str().expect("error.code").to_owned(),
    )
}

#[backend_test]
async fn url_verification_echoes_echostr_only_with_a_valid_signature() {
    each_backend!(|app| {
        let ok = app
            .http
            .get(app.url(&format!(
                "/wechat?{}&echostr=hello123",
                signed_query(now(), "abc")
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.text().await.unwrap(), "hello123");

        let ts = now().to_string();
        let bad = app
            .http
            .get(app.url(&format!(
                "/wechat?signature=deadbeef&timestamp={ts}&nonce=abc&echostr=hello123"
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(
            error_code(bad).await,
            (StatusCode::FORBIDDEN, "bad_signature".into())
        );
    });
}

#[backend_test]
async fn keyword_text_gets_the_configured_reply_in_plaintext() {
    let spawn = || Spawn {
        overrides: vec![("wechat_message_mode", "plaintext".into())],
        ..Default::default()
    };
    each_backend!(spawn = spawn(), |app| {
        let body = app
            .reply_of(app.post_plain(&text_xml("o_user1", "帮助", 1001)).await)
            .await;
        assert_eq!(field(&body, "MsgType").as_deref(), Some("text"));
        assert_eq!(field(&body, "ToUserName").as_deref(), Some("o_user1"));
        assert_eq!(field(&body, "FromUserName").as_deref(), Some(ACCOUNT));
        assert!(field(&body, "Content").unwrap().contains("可用关键词"));

        let other = app
            .reply_of(app.post_plain(&text_xml("o_user1", "随便说说", 1002)).await)
            .await;
        assert!(field(&other, "Content").unwrap().contains("回复“帮助”"));
    });
}

#[backend_test]
async fn encrypted_message_gets_an_encrypted_reply_with_a_valid_msg_signature() {
    each_backend!(
        spawn = Spawn {
            overrides: vec![("wechat_message_mode", "safe".into())],
            ..Default::default()
        },
        |app| {
            let resp = app.post_encrypted(&text_xml("o_enc", "党费", 2001)).await;
            let body = app.raw_of(resp).await;
            let encrypt = field(&body, "Encrypt").expect("encrypted reply");
            let ts = field(&body, "TimeStamp").unwrap();
            let nonce = field(&body, "Nonce").unwrap();
            assert_eq!(nonce, "98765");
            assert!(signature::verify_msg_signature(
                TOKEN,
                &ts,
                &nonce,
                &encrypt,
                &field(&body, "MsgSignature").unwrap()
            ));
            let clear = MessageCrypto::new(AES_KEY, APP_ID)
                .unwrap()
                .decrypt(&encrypt)
                .unwrap();
            let clear = String::from_utf8(clear).unwrap();
            assert!(
                field(&clear, "Content")
                    .unwrap()
                    .contains("中组发〔2008〕3号"),
                "{clear}"
            );
        }
    );
}

#[backend_test]
async fn bad_input_is_rejected_with_4xx_and_changes_nothing() {
    each_backend!(
        spawn = Spawn {
            overrides: vec![("wechat_message_mode", "safe".into())],
            ..Default::default()
        },
        |app| {
            let subscribe = event_xml("o_evil", "subscribe", "", now());
            // Safe mode never accepts a plaintext body, even correctly signed.
            assert_eq!(
                error_code(app.post_plain(&subscribe).await).await,
                (StatusCode::BAD_REQUEST, "encryption_required".into())
            );
            // Wrong signature.
            let url = format!(
                "/wechat?signature=0000&timestamp={}&nonce=1&encrypt_type=aes&msg_signature=00",
                now()
            );
            let r = app
                .http
                .post(app.url(&url))
                .body("<xml/>")
                .send()
                .await
                .unwrap();
            assert_eq!(
                error_code(r).await,
                (StatusCode::FORBIDDEN, "bad_signature".into())
            );
            // Stale timestamp (10 minutes old), otherwise perfect.
            let crypto = MessageCrypto::new(AES_KEY, APP_ID).unwrap();
            let r = app
                .post_encrypted_with(&crypto, &subscribe, now() - 600)
                .await;
            assert_eq!(
                error_code(r).await,
                (StatusCode::FORBIDDEN, "stale_timestamp".into())
            );
            // Encrypted for another AppId.
            let other = MessageCrypto::new(AES_KEY, "wxsomeoneelse000").unwrap();
            let r = app.post_encrypted_with(&other, &subscribe, now()).await;
            assert_eq!(
                error_code(r).await,
                (StatusCode::FORBIDDEN, "decrypt_failed".into())
            );
            // Bad msg_signature.
            let encrypt = crypto.encrypt(subscribe.as_bytes());
            let ts = now();
            let url = format!(
                "/wechat?{}&encrypt_type=aes&msg_signature=ffff",
                signed_query(ts, "n")
            );
            let r = app
                .http
                .post(app.url(&url))
                .body(format!(
                    "<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
                ))
                .send()
                .await
                .unwrap();
            assert_eq!(
                error_code(r).await,
                (StatusCode::FORBIDDEN, "bad_msg_signature".into())
            );
            // A DOCTYPE with an entity, inside a correctly encrypted and signed message.
            let doctype =
                format!("<?xml version=\"1.0\"?><!DOCTYPE xml [<!ENTITY x \"boom\">]>{subscribe}");
            let r = app.post_encrypted(&doctype).await;
            assert_eq!(
                error_code(r).await,
                (StatusCode::BAD_REQUEST, "bad_xml".into())
            );
            // Malformed XML.
            let r = app.post_encrypted("<xml><ToUserName>").await;
            assert_eq!(
                error_code(r).await,
                (StatusCode::BAD_REQUEST, "bad_xml".into())
            );
            // Oversize body (limit 64 KiB).
            let big = format!("<xml><Encrypt>{}</Encrypt></xml>", "A".repeat(70 * 1024));
            let url = format!(
                "/wechat?{}&encrypt_type=aes&msg_signature=00",
                signed_query(now(), "n")
            );
            let r = app.http.post(app.url(&url)).body(big).send().await.unwrap();
            assert_eq!(
                error_code(r).await,
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large".into())
            );

            app.flush().await;
            assert_eq!(
                app.count("SELECT COUNT(*) FROM followers").await,
                0,
                "no side effect from rejected input"
            );
            assert_eq!(app.fake.outbox_len(), 0);
            // Still serving.
            let r = app.post_encrypted(&text_xml("o_ok", "帮助", 3001)).await;
            assert_eq!(r.status(), StatusCode::OK);
        }
    );
}

#[backend_test]
async fn retried_subscribe_gets_the_same_reply_and_one_side_effect() {
    each_backend!(|app| {
        let xml = event_xml("o_new", "subscribe", "qrscene_42", now());
        let first = app.reply_of(app.post_msg(&xml).await).await;
        assert!(field(&first, "Content").unwrap().contains("欢迎关注"));
        // WeChat's three retries, one of them concurrent with another.
        let (a, b) = tokio::join!(app.post_msg(&xml), app.post_msg(&xml));
        let third = app.reply_of(app.post_msg(&xml).await).await;
        assert_eq!(app.reply_of(a).await, first);
        assert_eq!(app.reply_of(b).await, first);
        assert_eq!(third, first);
        assert_eq!(app.count("SELECT COUNT(*) FROM followers WHERE openid = 'o_new' AND status = 'subscribed' AND scene = '42'").await, 1);
        // No published article yet: no welcome card; nothing was sent at all.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(app.fake.outbox_len(), 0);
    });
}

#[backend_test]
async fn same_msgid_from_two_users_is_two_messages() {
    each_backend!(|app| {
        let a = app
            .reply_of(app.post_msg(&text_xml("o_a", "帮助", 777)).await)
            .await;
        let b = app
            .reply_of(app.post_msg(&text_xml("o_b", "帮助", 777)).await)
            .await;
        assert_eq!(field(&a, "ToUserName").as_deref(), Some("o_a"));
        assert_eq!(field(&b, "ToUserName").as_deref(), Some("o_b"));
        app.flush().await;
        assert_eq!(
            app.count("SELECT COUNT(*) FROM followers WHERE openid IN ('o_a', 'o_b')")
                .await,
            2
        );
    });
}

#[backend_test]
async fn interactions_are_written_in_batches_and_coalesced() {
    each_backend!(|app| {
        // More followers than one statement takes, one of them known already.
        app.reply_of(app.post_msg(&text_xml("o_touch_0", "帮助", 9000)).await)
            .await;
        app.flush().await;
        let base = app.state.clock.unix_ms();
        let last_seen = |openid: String| {
            format!("SELECT last_interaction_at FROM followers WHERE openid = '{openid}'")
        };
        let n = dangjian::official_account::store::TOUCH_ROWS * 2 + 7;
        for i in 0..n {
            app.state
                .interactions
                .record(&format!("o_touch_{i}"), base + i as i64);
        }
        app.flush().await;
        assert_eq!(
            app.count("SELECT COUNT(*) FROM followers WHERE openid LIKE 'o_touch_%' AND status = 'subscribed'")
                .await,
            n as i64
        );
        assert_eq!(
            app.count(&last_seen(format!("o_touch_{}", n - 1))).await,
            base + n as i64 - 1
        );
        // A newer interaction inside the minute is not written again; one past it is.
        app.state
            .interactions
            .record("o_touch_3", base + 3 + 30_000);
        app.flush().await;
        assert_eq!(app.count(&last_seen("o_touch_3".into())).await, base + 3);
        app.state
            .interactions
            .record("o_touch_3", base + 3 + 61_000);
        app.flush().await;
        assert_eq!(
            app.count(&last_seen("o_touch_3".into())).await,
            base + 3 + 61_000
        );
    });
}

#[backend_test]
async fn unsubscribe_marks_the_follower() {
    each_backend!(|app| {
        app.reply_of(
            app.post_msg(&event_xml("o_leave", "subscribe", "", now()))
                .await,
        )
        .await;
        let r = app
            .reply_of(
                app.post_msg(&event_xml("o_leave", "unsubscribe", "", now() + 1))
                    .await,
            )
            .await;
        assert_eq!(r, "success");
        assert_eq!(app.count("SELECT COUNT(*) FROM followers WHERE openid = 'o_leave' AND status = 'unsubscribed'").await, 1);
    });
}

#[backend_test]
async fn menu_click_answers_with_the_newest_article_card() {
    each_backend!(|app| {
        let empty = app
            .reply_of(
                app.post_msg(&event_xml("o_c", "CLICK", "CAT_LILUN_YANJIU", now()))
                    .await,
            )
            .await;
        assert!(field(&empty, "Content").unwrap().contains("暂无文章"));
        let st = &app.state;
        for (title, at) in [("旧文章", 1_000), ("新文章", 2_000)] {
            let a = dangjian::articles::store::NewArticle {
                category: "理论研究",
                title,
                summary: "摘要",
                body_md: "正文",
                body_html: "<p>正文</p>",
                cover_url: None,
                author: None,
            };
            dangjian::articles::store::insert_published(&st.db, &a, at)
                .await
                .unwrap();
        }
        let body = app
            .reply_of(
                app.post_msg(&event_xml("o_c", "CLICK", "CAT_LILUN_YANJIU", now() + 1))
                    .await,
            )
            .await;
        assert_eq!(field(&body, "MsgType").as_deref(), Some("news"));
        assert_eq!(field(&body, "ArticleCount").as_deref(), Some("1"));
        assert!(
            body.contains("新文章") && !body.contains("旧文章"),
            "{body}"
        );
        // The card links to the public article page, which serves the article.
        let url = wechat::xml::parse_flat(&body)
            .unwrap()
            .get("Articles.item.Url")
            .unwrap()
            .to_owned();
        let path = url
            .split_once("/articles/")
            .map(|(_, id)| format!("/articles/{id}"))
            .unwrap();
        let page = app.http.get(app.url(&path)).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        assert!(page.text().await.unwrap().contains("新文章"));
    });
}

#[backend_test]
async fn slow_reply_answers_success_then_follows_up_by_customer_service() {
    each_backend!(
        spawn = Spawn {
            overrides: vec![("reply_budget_ms", "300".into())],
            ..Default::default()
        },
        |app| {
            // Hold the followers table so the subscribe handler's write waits past the budget.
            let mut lock = app.state.db.begin_write().await.unwrap();
            if app.state.db.backend() == dangjian::platform::db::Backend::Postgres {
                sqlx::query("LOCK TABLE followers IN EXCLUSIVE MODE")
                    .execute(&mut *lock)
                    .await
                    .unwrap();
            }
            let xml = event_xml("o_slow", "subscribe", "", now());
            let first = app.reply_of(app.post_msg(&xml).await).await;
            assert_eq!(first, "success", "budget exceeded: answer success at once");
            assert_eq!(app.fake.outbox_len(), 0);
            lock.commit().await.unwrap();
            let sent = app.wait_outbox(1).await;
            assert_eq!(sent.len(), 1, "exactly one follow-up");
            assert_eq!(sent[0].channel, "custom");
            assert_eq!(sent[0].to_user.as_deref(), Some("o_slow"));
            assert_eq!(sent[0].body["msgtype"], "text");
            assert!(sent[0].body["text"]["content"]
                .as_str()
                .unwrap()
                .contains("欢迎关注"));
            // The retry gets what the follower got, and nothing is sent or stored twice.
            assert_eq!(app.reply_of(app.post_msg(&xml).await).await, "success");
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert_eq!(app.fake.outbox_len(), 1);
            assert_eq!(
                app.count("SELECT COUNT(*) FROM followers WHERE openid = 'o_slow'")
                    .await,
                1
            );
        }
    );
}

#[backend_test]
async fn content_changes_apply_without_a_restart() {
    each_backend!(|app| {
        let dir = &app.state.settings.content_dir;
        std::fs::write(
            dir.join("replies.toml"),
            "[welcome]\ntext = \"新版欢迎词\"\n[default]\ntext = \"默认\"\n[[rules]]\nkind = \"exact\"\npattern = \"测试\"\ntext = \"已更新\"\n",
        )
        .unwrap();
        // The app's content watch notices the edit (no reload call, no restart); the binary's
        // SIGHUP is tested in `cli::a_running_server_picks_up_content_edits_and_rereads_on_sighup`.
        let start = std::time::Instant::now();
        let mut msg_id = 5001;
        loop {
            let body = app
                .reply_of(app.post_msg(&text_xml("o_r", "测试", msg_id)).await)
                .await;
            if field(&body, "Content").as_deref() == Some("已更新") {
                break;
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(15),
                "the edit was never picked up: {body}"
            );
            msg_id += 1;
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    });
}

#[backend_test]
async fn operators_endpoints_report_health_and_metrics() {
    each_backend!(|app| {
        app.reply_of(app.post_msg(&text_xml("o_m", "帮助", 6001)).await)
            .await;
        let ready: serde_json::Value = app
            .http
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(ready["status"], "ok");
        assert_eq!(
            app.http
                .get(app.url("/healthz"))
                .send()
                .await
                .unwrap()
                .status(),
            StatusCode::OK
        );
        let metrics = app
            .http
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains("dangjian_wechat_messages_total{msg_type=\"text\",event=\"\"} 1"),
            "{metrics}"
        );
        assert!(
            metrics.contains(
                "dangjian_http_requests_total{method=\"POST\",route=\"/wechat\",status=\"200\"}"
            ),
            "{metrics}"
        );
        assert!(metrics.contains("dangjian_http_request_duration_seconds_bucket"));
        let missing = app.http.get(app.url("/nope")).send().await.unwrap();
        assert_eq!(
            error_code(missing).await,
            (StatusCode::NOT_FOUND, "not_found".into())
        );
    });
}

#[backend_test]
async fn welcome_is_followed_by_the_newest_article_card_once() {
    each_backend!(|app| {
        let a = dangjian::articles::store::NewArticle {
            category: "党建动态",
            title: "最新动态",
            summary: "摘要",
            body_md: "",
            body_html: "",
            cover_url: None,
            author: None,
        };
        dangjian::articles::store::insert_published(&app.state.db, &a, 5_000)
            .await
            .unwrap();
        let xml = event_xml("o_welcome", "subscribe", "", now());
        let first = app.reply_of(app.post_msg(&xml).await).await;
        assert_eq!(app.reply_of(app.post_msg(&xml).await).await, first);
        let sent = app.wait_outbox(1).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            app.fake.outbox_len(),
            1,
            "the card is sent once, retries included"
        );
        assert_eq!(sent[0].to_user.as_deref(), Some("o_welcome"));
        assert_eq!(sent[0].body["msgtype"], "news");
        assert_eq!(sent[0].body["news"]["articles"][0]["title"], "最新动态");
    });
}

#[backend_test]
async fn openapi_lists_every_admin_route_with_its_permission() {
    each_backend!(|app| {
        let doc: serde_json::Value = app
            .http
            .get(app.url("/api/openapi.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(doc["openapi"], "3.0.3");
        let table = dangjian::startup::admin_routes(&app.state);
        assert!(table.table().len() > 10);
        for spec in table.table() {
            let op = &doc["paths"][spec.path][spec.method.as_str().to_ascii_lowercase()];
            assert!(
                op.is_object(),
                "{} {} missing from the OpenAPI document",
                spec.method,
                spec.path
            );
            assert_eq!(
                op["x-permission"],
                serde_json::to_value(spec.permission).unwrap()
            );
        }
        let mp = dangjian::startup::mp_routes();
        assert!(mp.table().len() > 10);
        for spec in mp.table() {
            let op = &doc["paths"][spec.path][spec.method.as_str().to_ascii_lowercase()];
            assert_eq!(op["summary"], spec.summary, "{} {}", spec.method, spec.path);
        }
        // Generated from the handlers' types: the body with its limits, typed query and path
        // parameters, and the bearer token where a session extractor is taken.
        let push = &doc["paths"]["/api/admin/pushes"]["post"];
        assert_eq!(
            push["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/CreatePush"
        );
        let create = &doc["components"]["schemas"]["CreatePush"];
        assert_eq!(create["properties"]["article_ids"]["minItems"], 1);
        assert_eq!(create["properties"]["article_ids"]["maxItems"], 8);
        assert_eq!(
            create["required"],
            serde_json::json!(["article_ids", "audience", "channel"])
        );
        let params = doc["paths"]["/api/mp/articles"]["get"]["parameters"]
            .as_array()
            .unwrap();
        let page = params.iter().find(|p| p["name"] == "page_size").unwrap();
        assert_eq!(page["in"], "query");
        assert_eq!(page["schema"]["anyOf"][0]["maximum"], 50, "{page}");
        let signup = &doc["paths"]["/api/mp/activities/{id}/signup"]["post"];
        assert_eq!(signup["parameters"][0]["schema"]["type"], "integer");
        assert_eq!(signup["security"], serde_json::json!([{"bearer": []}]));
        assert!(doc["paths"]["/api/mp/articles"]["get"]["security"].is_null());
    });
}

/// The request below was produced by Python `wechatpy` (wechat/testdata/gen_vectors.py), an
/// implementation independent of ours: it must be accepted, and our encrypted reply must be what
/// WeChat's algorithm decrypts (checked with the same key and the msg_signature rule).
#[backend_test]
async fn a_message_encrypted_by_wechatpy_is_accepted_and_answered_encrypted() {
    let vectors: serde_json::Value =
        serde_json::from_str(include_str!("../../wechat/testdata/crypto_vectors.json")).unwrap();
    let req = &vectors["encrypted_request"];
    let s = |v: &serde_json::Value| v.as_str().unwrap().to_owned();
    let ts: i64 = s(&req["query"]["timestamp"]).parse().unwrap();
    let clock = dangjian::platform::clock::ManualClock::at(
        time::OffsetDateTime::from_unix_timestamp(ts + 2).unwrap(),
    );
    let spawn = || Spawn {
        overrides: vec![
            ("wechat_message_mode", "safe".into()),
            ("wechat_token", s(&req["token"])),
            ("wechat_aes_key", s(&req["encoding_aes_key"])),
            ("wechat_app_id", s(&req["app_id"])),
        ],
        clock: Some(std::sync::Arc::new(clock.clone())),
        ..Default::default()
    };
    each_backend!(spawn = spawn(), |app| {
        let q = &req["query"];
        let url = format!(
            "/wechat?signature={}&timestamp={}&nonce={}&openid={}&encrypt_type=aes&msg_signature={}",
            s(&q["signature"]), s(&q["timestamp"]), s(&q["nonce"]), s(&q["openid"]), s(&q["msg_signature"])
        );
        let resp = app
            .http
            .post(app.url(&url))
            .body(s(&req["body"]))
            .send()
            .await
            .unwrap();
        let body = app.raw_of(resp).await;
        let encrypt = field(&body, "Encrypt").expect("encrypted reply");
        let token = s(&req["token"]);
        assert!(signature::verify_msg_signature(
            &token,
            &field(&body, "TimeStamp").unwrap(),
            &field(&body, "Nonce").unwrap(),
            &encrypt,
            &field(&body, "MsgSignature").unwrap()
        ));
        let crypto = MessageCrypto::new(&s(&req["encoding_aes_key"]), &s(&req["app_id"])).unwrap();
        let clear = String::from_utf8(crypto.decrypt(&encrypt).unwrap()).unwrap();
        assert_eq!(field(&clear, "ToUserName"), Some(s(&q["openid"])));
        assert_eq!(field(&clear, "MsgType").as_deref(), Some("text"));
        // Replayed as WeChat retries it (same query string): same reply, no error.
        let again = app
            .http
            .post(app.url(&url))
            .body(s(&req["body"]))
            .send()
            .await
            .unwrap();
        let again = app.raw_of(again).await;
        let clear_again =
            String::from_utf8(crypto.decrypt(&field(&again, "Encrypt").unwrap()).unwrap()).unwrap();
        assert_eq!(clear_again, clear);
    });
}

#[backend_test]
async fn subscribe_message_consent_is_recorded_for_subscribe_pushes() {
    each_backend!(|app| {
        let xml = format!(
            "<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><FromUserName><![CDATA[o_consent]]></FromUserName>\
             <CreateTime>{}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe_msg_popup_event]]></Event>\
             <SubscribeMsgPopupEvent><List><TemplateId><![CDATA[tpl_news]]></TemplateId>\
             <SubscribeStatusString><![CDATA[accept]]></SubscribeStatusString><PopupScene>2</PopupScene></List>\
             <List><TemplateId><![CDATA[tpl_other]]></TemplateId><SubscribeStatusString><![CDATA[reject]]></SubscribeStatusString>\
             <PopupScene>2</PopupScene></List></SubscribeMsgPopupEvent></xml>",
            now()
        );
        assert_eq!(app.reply_of(app.post_msg(&xml).await).await, "success");
        assert_eq!(app.count("SELECT COUNT(*) FROM subscribe_grants WHERE openid = 'o_consent' AND template_id = 'tpl_news' AND status = 'accept'").await, 1);
        assert_eq!(app.count("SELECT COUNT(*) FROM subscribe_grants WHERE openid = 'o_consent' AND template_id = 'tpl_other' AND status = 'reject'").await, 1);
    });
}

/// WeChat's retry of a message whose first delivery is still being handled, landing on another
/// replica: the replica waits (polling the shared Redis record) and answers with the first
/// delivery's reply; it never handles the message itself.
#[backend_test(postgres)]
async fn a_retry_on_another_replica_waits_for_the_first_delivery_and_replays_its_reply() {
    each_backend!(|app| {
        assert_eq!(app.state.cache.kind(), "redis", "replicas share Redis");
        let replica = app.sibling().await;
        let from = "o_retry_replica";
        let msg_id = crate::helpers::msg_id();
        // The first delivery is in the middle of its handling on this instance: it holds the claim.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
        let dangjian::platform::dedup::Claim::First(ticket) = app
            .state
            .dedup
            .claim(&format!("{from}:{msg_id}"), deadline)
            .await
        else {
            panic!("a fresh message is a first delivery");
        };
        // WeChat gives up waiting and retries; the retry lands on the replica.
        let (path, body) = app.wechat_request(&text_xml(from, "投稿 跨副本的重试", msg_id));
        let http = app.http.clone();
        let url = format!("{}{path}", replica.base);
        let retry = tokio::spawn(async move { http.post(url).body(body).send().await.unwrap() });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            !retry.is_finished(),
            "the replica waits for the first delivery"
        );
        assert_eq!(app.count("SELECT COUNT(*) FROM submissions").await, 0);
        // The first delivery finishes with its reply.
        let first = "<xml><ToUserName><![CDATA[o_retry_replica]]></ToUserName><FromUserName><![CDATA[gh_demo_account]]></FromUserName><CreateTime>1</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[第一次投递的回复]]></Content></xml>";
        app.state.dedup.complete(ticket, first).await;
        let answer = crate::helpers::TestApp::wechat_reply(retry.await.unwrap()).await;
        assert_eq!(
            field(&answer, "Content").as_deref(),
            Some("第一次投递的回复"),
            "{answer}"
        );
        // The replica handled nothing: no submission from the retry, and a later retry on either
        // instance gets the same reply.
        assert_eq!(app.count("SELECT COUNT(*) FROM submissions").await, 0);
        let again = app
            .reply_of(
                app.post_msg(&text_xml(from, "投稿 跨副本的重试", msg_id))
                    .await,
            )
            .await;
        assert_eq!(
            field(&again, "Content").as_deref(),
            Some("第一次投递的回复")
        );
        replica.stop().await;
    });
}
