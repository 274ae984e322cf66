//! Submissions (投稿) and the message board (留言): the chat conversation, moderation (local word
//! list, then msgSecCheck), the editors' queue and decisions, answers back in chat, and the
//! mini-program side — on every backend.

use dangjian_test_macros::backend_test;

use std::{sync::Arc, time::Duration};

use dangjian::platform::clock::ManualClock;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{
    each_backend,
    helpers::{image_xml, msg_id, text_xml_at, Spawn},
};

#[backend_test]
async fn draft_collects_text_and_images_and_finish_gives_a_receipt_number() {
    each_backend!(|app| {
        let who = "o_draft_1";
        let r = app.say(who, "投稿", msg_id()).await;
        assert!(r.contains("已开始投稿"), "{r}");
        assert_eq!(app.submissions_in("draft").await, 1);
        // A keyword while drafting joins the draft instead of triggering its rule.
        let r = app.say(who, "帮助", msg_id()).await;
        assert!(r.contains("1段文字，0张图片"), "{r}");
        let r = app.say(who, "支部组织了主题党日活动", msg_id()).await;
        assert!(r.contains("2段文字"), "{r}");
        let r = app
            .chat_xml(&image_xml(
                who,
                "http://mmbiz.qpic.cn/pic1",
                "media_1",
                msg_id(),
                app.chat_now(),
            ))
            .await;
        assert!(r.contains("1张图片"), "{r}");
        let r = app.say(who, "完成", msg_id()).await;
        assert!(r.contains("回执编号 TG"), "{r}");
        let start = r.find("TG").unwrap();
        let receipt: String = r[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        assert_eq!(app.submissions_in("draft").await, 0);
        let admin = app.admin_token().await;
        let (status, v) = app.admin_get(&admin, "/api/admin/submissions").await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["total"], 1, "{v}");
        let s = &v["items"][0];
        assert_eq!(s["receipt_no"], receipt.as_str());
        assert_eq!(s["status"], "pending");
        assert_eq!(s["source"], "chat");
        assert_eq!(s["openid"], who);
        assert_eq!(s["content"], "帮助\n支部组织了主题党日活动");
        assert_eq!(s["images"][0]["url"], "http://mmbiz.qpic.cn/pic1");
        assert_eq!(s["images"][0]["media_id"], "media_1");
        assert_eq!(s["moderation"]["suggest"], "pass");
        // After the draft, keywords work again and 完成 is an ordinary message.
        assert!(app.say(who, "帮助", msg_id()).await.contains("可用关键词"));
        assert!(!app.say(who, "完成", msg_id()).await.contains("回执"));
    });
}

#[backend_test]
async fn cancel_drops_the_draft_and_a_draft_expires_after_ten_minutes() {
    let clock = ManualClock::at(time::OffsetDateTime::now_utc());
    let spawn = || Spawn {
        clock: Some(Arc::new(clock.clone())),
        ..Default::default()
    };
    each_backend!(spawn = spawn(), |app| {
        let who = "o_draft_2";
        app.say(who, "投稿", msg_id()).await;
        app.say(who, "第一段", msg_id()).await;
        assert!(app.say(who, "取消", msg_id()).await.contains("已取消"));
        assert_eq!(app.count("SELECT COUNT(*) FROM submissions").await, 0);

        app.say(who, "投稿", msg_id()).await;
        app.say(who, "写了一半", msg_id()).await;
        // Each message keeps the draft 10 minutes longer; silence for longer ends it.
        clock.advance(Duration::from_secs(9 * 60));
        assert!(app.say(who, "又一段", msg_id()).await.contains("2段文字"));
        clock.advance(Duration::from_secs(10 * 60 + 1));
        let r = app.say(who, "完成", msg_id()).await;
        assert!(!r.contains("回执"), "{r}");
        assert_eq!(app.submissions_in("pending").await, 0);
        // A new 投稿 starts afresh, replacing the expired draft.
        assert!(app.say(who, "投稿", msg_id()).await.contains("已开始投稿"));
        assert_eq!(app.count("SELECT COUNT(*) FROM submissions").await, 1);
        assert!(app.say(who, "完成", msg_id()).await.contains("还是空的"));
        app.say(who, "取消", msg_id()).await;
        clock.advance(Duration::from_secs(3600));
    });
}

#[backend_test]
async fn one_shot_submission_and_board_post_beat_keyword_rules_and_wait_for_editors() {
    let replies = r#"
        welcome = { text = "hi" }
        default = { text = "默认回复" }
        [[rules]]
        kind = "prefix"
        pattern = "投"
        priority = 1000
        text = "规则吞掉了"
        [[rules]]
        kind = "regex"
        pattern = "留言"
        priority = 1000
        text = "规则吞掉了"
    "#;
    let spawn = || Spawn {
        write_content: vec![("replies.toml", replies.to_owned())],
        ..Default::default()
    };
    each_backend!(spawn = spawn(), |app| {
        let r = app
            .say("o_one_1", "投稿 学习二十大精神心得体会", msg_id())
            .await;
        assert!(r.contains("回执编号 TG"), "{r}");
        let r = app
            .say("o_one_1", "留言：希望多组织志愿活动", msg_id())
            .await;
        assert!(r.contains("已收到，审核后公开"), "{r}");
        assert!(app
            .say("o_one_1", "留言", msg_id())
            .await
            .contains("留言 + 内容"));
        let admin = app.admin_token().await;
        let (_, v) = app
            .admin_get(&admin, "/api/admin/submissions?status=pending")
            .await;
        assert_eq!(v["items"][0]["title"], "学习二十大精神心得体会");
        let (_, v) = app.admin_get(&admin, "/api/admin/board").await;
        assert_eq!(v["total"], 1, "{v}");
        assert_eq!(v["items"][0]["content"], "希望多组织志愿活动");
        assert_eq!(v["items"][0]["status"], "pending");
        // Nothing is public before an editor approves.
        let (_, v) = app.admin_get(&admin, "/api/mp/board").await;
        assert_eq!(v["total"], 0, "{v}");
    });
}

#[backend_test]
async fn a_local_sensitive_word_is_refused_politely_and_never_queued_or_sent_to_wechat() {
    let spawn = || Spawn {
        write_content: vec![(
            "sensitive_words.txt",
            "# test list\n违禁测试词\n".to_owned(),
        )],
        ..Default::default()
    };
    each_backend!(spawn = spawn(), |app| {
        app.fake.clear_calls();
        let r = app.say("o_bad_1", "投稿 这里有违禁 测试词", msg_id()).await;
        assert!(r.contains("未通过内容安全审核"), "{r}");
        assert!(!r.contains("违禁"), "the reply does not echo the word: {r}");
        let r = app.say("o_bad_1", "留言 违禁测试词", msg_id()).await;
        assert!(r.contains("未通过内容安全审核"), "{r}");
        assert_eq!(app.submissions_in("rejected").await, 1);
        assert_eq!(
            app.count("SELECT COUNT(*) FROM board_posts WHERE status = 'rejected'")
                .await,
            1
        );
        assert!(
            !app.fake
                .calls()
                .iter()
                .any(|c| c.api.contains("msg_sec_check")),
            "a local hit needs no remote check"
        );
        let admin = app.admin_token().await;
        let (_, v) = app.admin_get(&admin, "/api/admin/submissions").await;
        assert_eq!(v["total"], 0, "not in the queue: {v}");
        let (_, v) = app
            .admin_get(&admin, "/api/admin/submissions?status=rejected")
            .await;
        assert_eq!(v["items"][0]["moderation"]["suggest"], "local");
        assert_eq!(v["items"][0]["moderation"]["label"], "违禁测试词");
    });
}

#[backend_test]
async fn msg_sec_check_risky_is_refused_and_review_goes_to_the_queue() {
    each_backend!(|app| {
        app.fake
            .set_sec_words(vec!["待复核".into()], vec!["高风险".into()]);
        let r = app.say("o_sec_1", "投稿 一段高风险内容", msg_id()).await;
        assert!(r.contains("未通过内容安全审核"), "{r}");
        let r = app.say("o_sec_1", "投稿 一段待复核内容", msg_id()).await;
        assert!(r.contains("回执编号"), "{r}");
        let r = app.say("o_sec_1", "留言 高风险", msg_id()).await;
        assert!(r.contains("未通过"), "{r}");
        let admin = app.admin_token().await;
        let (_, v) = app.admin_get(&admin, "/api/admin/submissions").await;
        assert_eq!(v["total"], 1, "{v}");
        assert_eq!(v["items"][0]["moderation"]["suggest"], "review");
        assert_eq!(v["items"][0]["moderation"]["label"], "21000");
        let (_, v) = app
            .admin_get(&admin, "/api/admin/submissions?status=rejected")
            .await;
        assert_eq!(v["items"][0]["moderation"]["suggest"], "risky");
        let (status, _) = app
            .admin_get(&admin, "/api/admin/submissions?status=bogus")
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    });
}

#[backend_test]
async fn a_failed_msg_sec_check_never_approves_and_queues_unchecked() {
    each_backend!(|app| {
        // 40003: what real WeChat may say for an official-account openid.
        app.fake
            .inject("wxa/msg_sec_check", wechat::fake::Fault::Errcode(40003), 10);
        let r = app.say("o_sec_2", "投稿 网络不好时的投稿", msg_id()).await;
        assert!(r.contains("回执编号"), "{r}");
        let admin = app.admin_token().await;
        let (_, v) = app.admin_get(&admin, "/api/admin/submissions").await;
        assert_eq!(v["items"][0]["status"], "pending");
        assert_eq!(v["items"][0]["moderation"]["suggest"], "unchecked");
    });
}

#[backend_test]
async fn duplicate_msgid_gets_same_reply_and_one_submission() {
    each_backend!(|app| {
        let id = msg_id();
        let xml = text_xml_at("o_dup_1", "投稿 重复投递的内容", id, app.chat_now());
        let first = app.chat_xml(&xml).await;
        let second = app.chat_xml(&xml).await;
        let third = app.chat_xml(&xml).await;
        assert!(first.contains("回执编号"), "{first}");
        assert_eq!(first, second);
        assert_eq!(first, third);
        assert_eq!(app.count("SELECT COUNT(*) FROM submissions").await, 1);
        let xml = text_xml_at("o_dup_1", "留言 重复的留言", id + 1, app.chat_now());
        app.chat_xml(&xml).await;
        app.chat_xml(&xml).await;
        assert_eq!(app.count("SELECT COUNT(*) FROM board_posts").await, 1);
    });
}

#[backend_test]
async fn editors_decide_once_with_audit_and_other_roles_get_403() {
    each_backend!(|app| {
        app.say("o_dec_1", "投稿 第一篇", msg_id()).await;
        app.say("o_dec_1", "投稿 第二篇", msg_id()).await;
        app.say("o_dec_1", "留言 第一条留言", msg_id()).await;
        let editor = app.user_token("editor1", "editor", None).await;
        let (_, v) = app.admin_get(&editor, "/api/admin/submissions").await;
        let ids: Vec<i64> = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_i64().unwrap())
            .collect();
        assert_eq!(ids.len(), 2);
        let (status, v) = app
            .admin_post(
                &editor,
                &format!("/api/admin/submissions/{}/decision", ids[0]),
                json!({"decision": "approve"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["status"], "approved");
        assert_eq!(v["decided_by"], "editor1");
        let (status, v) = app
            .admin_post(
                &editor,
                &format!("/api/admin/submissions/{}/decision", ids[1]),
                json!({"decision": "reject", "reason": "与主题无关"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(
            (v["status"].as_str(), v["reason"].as_str()),
            (Some("rejected"), Some("与主题无关"))
        );
        // A second decision is a conflict, whichever it is.
        let (status, v) = app
            .admin_post(
                &editor,
                &format!("/api/admin/submissions/{}/decision", ids[0]),
                json!({"decision": "reject"}),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{v}");
        assert_eq!(v["error"]["code"], "invalid_transition");
        let (status, _) = app
            .admin_post(
                &editor,
                "/api/admin/submissions/999999/decision",
                json!({"decision": "approve"}),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = app
            .admin_post(
                &editor,
                &format!("/api/admin/submissions/{}/decision", ids[0]),
                json!({"decision": "maybe"}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

        let (_, v) = app.admin_get(&editor, "/api/admin/board").await;
        let post = v["items"][0]["id"].as_i64().unwrap();
        let (status, _) = app
            .admin_post(
                &editor,
                &format!("/api/admin/board/{post}/decision"),
                json!({"decision": "approve"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = app
            .admin_post(
                &editor,
                &format!("/api/admin/board/{post}/decision"),
                json!({"decision": "approve"}),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT);

        assert_eq!(
            app.count("SELECT COUNT(*) FROM audit_log WHERE action IN ('submission.approve', 'submission.reject') AND actor = 'editor1'")
                .await,
            2
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'board_post.approve'")
                .await,
            1
        );

        app.create_org_unit("投稿支部", None).await;
        let sec = app
            .user_token("sec_sub", "secretary", Some("投稿支部"))
            .await;
        for path in ["/api/admin/submissions", "/api/admin/board"] {
            let (status, _) = app.admin_get(&sec, path).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        }
        let (status, _) = app
            .admin_post(
                &sec,
                &format!("/api/admin/board/{post}/answer"),
                json!({"answer": "x"}),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = app.admin_get("not-a-token", "/api/admin/submissions").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    });
}

#[backend_test]
async fn an_answer_to_a_chat_post_reaches_the_member_and_shows_on_the_public_board() {
    each_backend!(|app| {
        app.say("o_ans_1", "留言 党费可以在小程序缴纳吗", msg_id())
            .await;
        let admin = app.admin_token().await;
        let (_, v) = app.admin_get(&admin, "/api/admin/board").await;
        let post = v["items"][0]["id"].as_i64().unwrap();
        let before = app.fake.outbox_len();
        let (status, v) = app
            .admin_post(
                &admin,
                &format!("/api/admin/board/{post}/answer"),
                json!({"answer": "可以，在“党费缴纳”页面支付。"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["delivered"], true, "{v}");
        assert_eq!(v["answered_by"], "admin");
        let out = app.fake.outbox();
        assert_eq!(out.len(), before + 1);
        let msg = out.last().unwrap();
        assert_eq!(msg.channel, "custom");
        assert_eq!(msg.to_user.as_deref(), Some("o_ans_1"));
        let text = msg.body["text"]["content"].as_str().unwrap();
        assert!(text.contains("党费缴纳"), "{text}");
        assert_eq!(
            app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'board_post.answer'")
                .await,
            1
        );
        // Answered but still pending: not public until approved.
        let (_, v) = app.admin_get(&admin, "/api/mp/board").await;
        assert_eq!(v["total"], 0);
        app.admin_post(
            &admin,
            &format!("/api/admin/board/{post}/decision"),
            json!({"decision": "approve"}),
        )
        .await;
        let resp = app.http.get(app.url("/api/mp/board")).send().await.unwrap();
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["total"], 1, "{v}");
        assert_eq!(v["items"][0]["content"], "党费可以在小程序缴纳吗");
        assert_eq!(v["items"][0]["answer"], "可以，在“党费缴纳”页面支付。");
        assert!(
            v["items"][0].get("openid").is_none(),
            "no author identity in public"
        );
        // A rejected post cannot be answered.
        app.say("o_ans_1", "留言 另一条", msg_id()).await;
        let (_, v) = app.admin_get(&admin, "/api/admin/board").await;
        let other = v["items"][0]["id"].as_i64().unwrap();
        app.admin_post(
            &admin,
            &format!("/api/admin/board/{other}/decision"),
            json!({"decision": "reject"}),
        )
        .await;
        let (status, _) = app
            .admin_post(
                &admin,
                &format!("/api/admin/board/{other}/answer"),
                json!({"answer": "好"}),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT);
    });
}

#[backend_test]
async fn mini_program_members_post_on_the_board_and_follow_their_own_submissions() {
    each_backend!(|app| {
        let (status, _) = app
            .admin_post("bad", "/api/mp/board", json!({"content": "x"}))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let a = app.mp_token("sub_a").await;
        let b = app.mp_token("sub_b").await;
        let (status, v) = app
            .admin_post(&a, "/api/mp/submissions", json!({"title": "标题", "content": "正文内容", "images": ["https://img.example/1.jpg"]}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        assert_eq!(v["status"], "pending");
        assert!(v["receipt_no"].as_str().unwrap().starts_with("TG"));
        let (status, _) = app
            .admin_post(
                &a,
                "/api/mp/submissions",
                json!({"title": "", "content": "  "}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        let (_, mine) = app.admin_get(&a, "/api/mp/submissions").await;
        assert_eq!(mine["total"], 1, "{mine}");
        assert_eq!(
            mine["items"][0]["images"][0]["url"],
            "https://img.example/1.jpg"
        );
        let (_, theirs) = app.admin_get(&b, "/api/mp/submissions").await;
        assert_eq!(theirs["total"], 0);
        let (status, v) = app
            .admin_post(&b, "/api/mp/board", json!({"content": "小程序留言"}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        assert_eq!(v["status"], "pending");
        let admin = app.admin_token().await;
        let (_, v) = app.admin_get(&admin, "/api/admin/board").await;
        assert_eq!(v["items"][0]["source"], "mp");
        let post = v["items"][0]["id"].as_i64().unwrap();
        let before = app.fake.outbox_len();
        let (_, v) = app
            .admin_post(
                &admin,
                &format!("/api/admin/board/{post}/answer"),
                json!({"answer": "收到"}),
            )
            .await;
        assert_eq!(
            v["delivered"],
            Value::Null,
            "mini-program posts are answered on the board"
        );
        assert_eq!(app.fake.outbox_len(), before);
        let (_, doc) = app.admin_get(&admin, "/api/openapi.json").await;
        assert!(doc["paths"]["/api/mp/board"]["post"].is_object());
        assert!(doc["paths"]["/api/mp/submissions"]["get"].is_object());
        assert!(doc["paths"]["/api/admin/submissions/{id}/decision"]["post"].is_object());
    });
}
