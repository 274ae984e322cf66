//! One member, two openids (the mini-program's and the official account's, linked by the UnionID)
//! and the organisation: push channels reach the openid of their app or skip with a reason, the
//! org-unit tree keeps its shape, roster edits / unbinds / transfers are audited, secretaries stay
//! in their subtree, bad input changes nothing — on every backend, through the fake WeChat.

use dangjian_test_macros::backend_test;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::Row;
use wechat::client::api;

use crate::{
    each_backend,
    helpers::{Spawn, TestApp},
};

fn spawn() -> Spawn {
    Spawn {
        overrides: vec![
            ("push_rate_per_second", "0".into()),
            ("push_poll_ms", "20".into()),
            ("push_retry_base_ms", "50".into()),
        ],
        ..Default::default()
    }
}

const MP_TEMPLATE: &str = "demo-subscribe-template";
const OA_TEMPLATE: &str = "demo-oa-subscribe-template";

fn assert_error(status: StatusCode, v: &Value, want: StatusCode, code: &str) {
    assert_eq!(status, want, "{v}");
    assert_eq!(v["error"]["code"], code, "{v}");
    assert_eq!(
        v.as_object().map(|o| o.len()),
        Some(1),
        "one error shape: {v}"
    );
}

fn roster() -> Value {
    json!([
        {"name": "张三", "phone": "13912340001", "category": "employed", "monthly_income_fen": 812_345, "org_unit": "第一党支部"},
        {"name": "李四", "phone": "13912340002", "category": "student", "org_unit": "第一党支部"},
        {"name": "王五", "phone": "13912340003", "category": "student", "org_unit": "第二党支部"},
        {"name": "赵六", "phone": "13912340004", "category": "retired", "monthly_income_fen": 400_000, "org_unit": "第一党支部"},
    ])
}

#[backend_test]
async fn a_member_bound_in_the_mini_program_gets_an_org_unit_template_push_on_the_account_openid() {
    each_backend!(spawn = spawn(), |app| {
        app.accept_news_template();
        app.import_roster(roster()).await;
        app.same_person("zhang", "o_acc_zhang");
        // The mini-program side first: bound, but the account openid is not known yet.
        let bound = app.mini_bind("zhang", "张三", "13912340001").await;
        assert_eq!(bound["member"]["account_linked"], false, "{bound}");
        let id = app.member_id("张三").await;
        let v = app.admin_view(&format!("/api/admin/members/{id}")).await;
        assert_eq!(
            v["member"]["bindings"],
            json!({"mp": true, "oa": false, "unionid": true})
        );
        assert_eq!(v["member"]["reachable"]["template"], false, "{v}");
        assert_eq!(v["member"]["reachable"]["subscribe_mp"], false, "{v}");

        // Then they follow the account: user/info gives the same UnionID, the member is linked.
        app.follows("o_acc_zhang").await;
        app.eventually(
            "SELECT COUNT(*) FROM members WHERE name = '张三' AND oa_openid = 'o_acc_zhang'",
        )
        .await;
        assert_eq!(app.fake.count_calls(api::USER_INFO), 1);
        let v = app.admin_view(&format!("/api/admin/members/{id}")).await;
        assert_eq!(
            v["member"]["bindings"],
            json!({"mp": true, "oa": true, "unionid": true})
        );
        assert_eq!(
            v["member"]["reachable"],
            json!({"template": true, "mass": true, "custom": true, "subscribe_oa": false, "subscribe_mp": false})
        );
        assert_eq!(app.audit_count("member.link").await, 1);

        let article = app.published_article("支部学习通知").await;
        let unit = app.org_unit_id("第一党支部").await;
        let v = app
            .push_to_completion(json!({"article_ids": [article], "audience": {"kind": "org_unit", "ids": [unit]}, "channel": "template"}))
            .await;
        // 张三 on the ACCOUNT openid; 李四 and 赵六 (never bound) skipped and said so.
        assert_eq!(app.sent_to("template"), ["o_acc_zhang"]);
        assert_eq!(v["counts"]["sent"], 1, "{v}");
        assert_eq!(v["counts"]["skipped"], 2, "{v}");
        assert_eq!(v["skipped_reasons"], json!({"no_account_openid": 2}), "{v}");
        assert_eq!(v["total"], 3, "{v}");
        assert_eq!(
            app.count("SELECT COUNT(*) FROM push_deliveries WHERE openid IS NULL AND member_id IS NOT NULL AND status = 'skipped'")
                .await,
            2
        );
    });
}

#[backend_test]
async fn a_member_who_only_follows_the_account_is_matched_when_they_later_bind() {
    each_backend!(spawn = spawn(), |app| {
        app.accept_news_template();
        app.import_roster(roster()).await;
        // The account side first: a follower nobody knows is a member.
        app.same_person("li", "o_acc_li");
        app.follows("o_acc_li").await;
        app.eventually(
            "SELECT COUNT(*) FROM followers WHERE openid = 'o_acc_li' AND unionid = 'u_li'",
        )
        .await;
        assert_eq!(app.oa_openid_of("李四").await, None);
        // Binding in the mini-program brings the UnionID: the follower is found.
        let bound = app.mini_bind("li", "李四", "13912340002").await;
        assert_eq!(bound["member"]["account_linked"], true, "{bound}");
        assert_eq!(app.oa_openid_of("李四").await.as_deref(), Some("o_acc_li"));
        let bind = app.audit_details("member.bind").await;
        assert_eq!(bind[0]["oa_openid"], "o_acc_li", "{bind:?}");

        // A follower seen only by the follower sync (user/info/batchget) is matched too.
        app.same_person("zhao", "o_acc_zhao");
        app.mini_bind("zhao", "赵六", "13912340004").await;
        app.fake.add_followers(&["o_acc_zhao".to_owned()]);
        dangjian::official_account::service::sync_followers(&app.state, None)
            .await
            .unwrap();
        // The sync records the follower's UnionID; the members' link pass (every 2 s) links it.
        app.linked("赵六", "o_acc_zhao").await;
        assert_eq!(
            app.oa_openid_of("赵六").await.as_deref(),
            Some("o_acc_zhao")
        );

        // Apps not on one open platform: WeChat gives no UnionID, nothing links the account openid.
        app.fake.set_unionid("mp_wang", None);
        app.fake.set_unionid("o_acc_wang", None);
        app.follows("o_acc_wang").await;
        let bound = app.mini_bind("wang", "王五", "13912340003").await;
        assert_eq!(bound["member"]["account_linked"], false);
        let id = app.member_id("王五").await;
        let v = app.admin_view(&format!("/api/admin/members/{id}")).await;
        assert_eq!(
            v["member"]["bindings"],
            json!({"mp": true, "oa": false, "unionid": false})
        );

        let article = app.published_article("主题党日").await;
        let ids = [app.member_id("李四").await, app.member_id("赵六").await, id];
        let v = app
            .push_to_completion(json!({"article_ids": [article], "audience": {"kind": "members", "ids": ids}, "channel": "template"}))
            .await;
        let mut to = app.sent_to("template");
        to.sort();
        assert_eq!(to, ["o_acc_li", "o_acc_zhao"]);
        assert_eq!(v["skipped_reasons"], json!({"no_account_openid": 1}), "{v}");
    });
}

#[backend_test]
async fn subscribe_pushes_use_each_apps_openid_token_and_consent_and_spend_it_once() {
    each_backend!(spawn = spawn(), |app| {
        app.import_roster(roster()).await;
        app.same_person("zhang", "o_acc_zhang");
        app.follows("o_acc_zhang").await;
        app.mini_bind("zhang", "张三", "13912340001").await;
        app.mini_bind("li", "李四", "13912340002").await;
        app.linked("张三", "o_acc_zhang").await;
        // 张三 accepts in the mini-program and in the account's popup; 李四 nowhere.
        app.grant_mp("zhang", MP_TEMPLATE).await;
        app.grant_oa("o_acc_zhang", OA_TEMPLATE).await;
        assert_eq!(
            app.count("SELECT COUNT(*) FROM subscribe_grants WHERE app = 'mp' AND openid = 'mp_zhang' AND credits = 1")
                .await,
            1
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM subscribe_grants WHERE app = 'oa' AND openid = 'o_acc_zhang' AND credits = 1")
                .await,
            1
        );
        let zhang = app.member_id("张三").await;
        let v = app.admin_view(&format!("/api/admin/members/{zhang}")).await;
        assert_eq!(v["member"]["reachable"]["subscribe_mp"], true, "{v}");
        assert_eq!(v["member"]["reachable"]["subscribe_oa"], true, "{v}");
        let members = json!([zhang, app.member_id("李四").await]);
        let article = app.published_article("党课提醒").await;

        // The mini-program's subscribe message: mini-program openid, mini-program token
        // (the fake refuses the account's token there with 48001).
        let v = app
            .push_to_completion(json!({"article_ids": [article], "audience": {"kind": "members", "ids": members}, "channel": "subscribe"}))
            .await;
        assert_eq!(app.sent_to("subscribe"), ["mp_zhang"]);
        assert_eq!(v["counts"]["sent"], 1, "{v}");
        assert_eq!(v["skipped_reasons"], json!({"no_consent": 1}), "{v}");
        assert_eq!(app.fake.count_calls(api::SUBSCRIBE_BIZSEND), 0);
        // One grant, one message: the next push finds no consent left.
        let v = app
            .push_to_completion(json!({"article_ids": [article], "audience": {"kind": "members", "ids": [zhang]}, "channel": "subscribe"}))
            .await;
        assert_eq!(v["counts"]["sent"], 0, "{v}");
        assert_eq!(v["skipped_reasons"], json!({"no_consent": 1}), "{v}");
        assert_eq!(app.fake.count_calls(api::SUBSCRIBE_SEND), 1);

        // The account's subscribe notice: account openid, account token, the account's consent.
        let v = app
            .push_to_completion(json!({"article_ids": [article], "audience": {"kind": "members", "ids": members}, "channel": "subscribe_oa"}))
            .await;
        assert_eq!(v["channel"], "subscribe_oa", "{v}");
        assert_eq!(app.sent_to("bizsend"), ["o_acc_zhang"]);
        assert_eq!(v["skipped_reasons"], json!({"no_account_openid": 1}), "{v}");
        assert_eq!(
            app.count("SELECT COUNT(*) FROM subscribe_grants WHERE app = 'oa' AND credits = 0")
                .await,
            1
        );

        // WeChat says the grant is used up (43101): the row is skipped and the credit is gone.
        app.grant_mp("zhang", MP_TEMPLATE).await;
        app.fake.fail_openid("mp_zhang", 43101);
        let v = app
            .push_to_completion(json!({"article_ids": [article], "audience": {"kind": "members", "ids": [zhang]}, "channel": "subscribe"}))
            .await;
        assert_eq!(v["skipped_reasons"], json!({"43101": 1}), "{v}");
        assert_eq!(
            app.count("SELECT COUNT(*) FROM subscribe_grants WHERE app = 'mp' AND openid = 'mp_zhang' AND credits = 0")
                .await,
            1
        );
    });
}

#[backend_test]
async fn members_without_an_openid_or_consent_for_the_channel_are_skipped_with_a_reason() {
    each_backend!(spawn = spawn(), |app| {
        app.accept_news_template();
        app.import_roster(roster()).await;
        app.same_person("zhang", "o_acc_zhang");
        app.follows("o_acc_zhang").await;
        app.mini_bind("zhang", "张三", "13912340001").await;
        app.linked("张三", "o_acc_zhang").await;
        app.fake.set_unionid("mp_li", None);
        app.mini_bind("li", "李四", "13912340002").await; // mini-program only
        let ids = [
            app.member_id("张三").await,
            app.member_id("李四").await,
            app.member_id("王五").await, // bound nowhere
            app.member_id("赵六").await, // removed from the roster
        ];
        let (status, _) = app
            .json_call(
                Some(&app.admin_token().await),
                Method::DELETE,
                &format!("/api/admin/members/{}", ids[3]),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let article = app.published_article("通知").await;
        let v = app
            .push_to_completion(json!({"article_ids": [article], "audience": {"kind": "members", "ids": ids}, "channel": "template"}))
            .await;
        assert_eq!(v["counts"]["sent"], 1, "{v}");
        assert_eq!(
            v["skipped_reasons"],
            json!({"no_account_openid": 2, "not_active": 1}),
            "{v}"
        );
        app.grant_mp("zhang", MP_TEMPLATE).await;
        let v = app
            .push_to_completion(json!({"article_ids": [article], "audience": {"kind": "members", "ids": &ids[..3]}, "channel": "subscribe"}))
            .await;
        assert_eq!(v["counts"]["sent"], 1, "{v}");
        assert_eq!(
            v["skipped_reasons"],
            json!({"no_consent": 1, "no_mp_openid": 1}),
            "{v}"
        );
        // A member whose follower left the account: not_following, on the account channels.
        app.account_event(
            "o_acc_zhang",
            "<Event><![CDATA[unsubscribe]]></Event><EventKey><![CDATA[]]></EventKey>",
        )
        .await;
        let v = app
            .push_to_completion(json!({"article_ids": [article], "audience": {"kind": "members", "ids": [ids[0]]}, "channel": "custom"}))
            .await;
        assert_eq!(v["skipped_reasons"], json!({"not_following": 1}), "{v}");
        assert_eq!(
            app.fake.count_calls(api::CUSTOM_SEND),
            0,
            "nothing sent to anyone who can't receive it"
        );
    });
}

#[backend_test]
async fn the_org_tree_refuses_cycles_misplaced_kinds_and_deleting_units_that_are_not_empty() {
    each_backend!(|app| {
        let t = app.admin_token().await;
        let post = |body: Value| {
            let t = t.clone();
            let app = &app;
            async move {
                app.json_call(Some(&t), Method::POST, "/api/admin/org-units", Some(body))
                    .await
            }
        };
        let (s, root) = post(json!({"name": "校党委"})).await;
        assert_eq!(s, StatusCode::CREATED, "{root}");
        assert_eq!(root["kind"], "committee");
        let root = root["id"].as_i64().unwrap();
        let (s, gb) =
            post(json!({"name": "计算机学院党总支", "parent_id": root, "kind": "general_branch"}))
                .await;
        assert_eq!(s, StatusCode::CREATED, "{gb}");
        let gb = gb["id"].as_i64().unwrap();
        let (_, branch) = post(json!({"name": "计算机一支部", "parent_id": gb})).await;
        assert_eq!(branch["kind"], "branch", "{branch}");
        let branch = branch["id"].as_i64().unwrap();
        let (_, group) = post(json!({"name": "第一党小组", "parent": "计算机一支部"})).await;
        assert_eq!(group["kind"], "group", "{group}");
        let group = group["id"].as_i64().unwrap();

        let units = app.count("SELECT COUNT(*) FROM org_units").await;
        let audits = app
            .count("SELECT COUNT(*) FROM audit_log WHERE action LIKE 'org_unit.%'")
            .await;
        // Kinds where they do not belong, bad input: 4xx, nothing written.
        for (body, want) in [
            (
                json!({"name": "孤立小组", "kind": "group"}),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                json!({"name": "错位小组", "kind": "group", "parent_id": root}),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                json!({"name": "支部下党委", "kind": "committee", "parent_id": branch}),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                json!({"name": "未知上级", "parent_id": 999_999}),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                json!({"name": "怪类", "kind": "club"}),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (json!({"name": "校党委"}), StatusCode::CONFLICT),
            (json!({"name": "  "}), StatusCode::UNPROCESSABLE_ENTITY),
        ] {
            let (s, v) = post(body.clone()).await;
            assert_eq!(s, want, "{body}: {v}");
            assert!(v["error"]["code"].is_string(), "{v}");
        }
        let patch = |id: i64, body: Value| {
            let t = t.clone();
            let app = &app;
            async move {
                app.json_call(
                    Some(&t),
                    Method::PATCH,
                    &format!("/api/admin/org-units/{id}"),
                    Some(body),
                )
                .await
            }
        };
        // A move into its own subtree would make a cycle.
        let (s, v) = patch(root, json!({"parent_id": group})).await;
        assert_error(s, &v, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("own subtree"),
            "{v}"
        );
        let (s, v) = patch(gb, json!({"parent_id": gb})).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        // A kind where it can't sit (a general branch under a general branch).
        let (s, v) = patch(branch, json!({"kind": "general_branch"})).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        let (s, v) = patch(branch, json!({})).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        let (s, v) = patch(999_999, json!({"name": "无"})).await;
        assert_error(s, &v, StatusCode::NOT_FOUND, "not_found");
        let r = app
            .http
            .patch(app.url(&format!("/api/admin/org-units/{branch}")))
            .bearer_auth(&t)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(app.count("SELECT COUNT(*) FROM org_units").await, units);
        assert_eq!(
            app.count("SELECT COUNT(*) FROM audit_log WHERE action LIKE 'org_unit.%'")
                .await,
            audits
        );
        assert_eq!(
            app.count(&format!(
                "SELECT COUNT(*) FROM org_units WHERE id = {root} AND parent_id IS NULL"
            ))
            .await,
            1
        );

        // Rename and move: fine, audited with before and after.
        let (s, v) = patch(branch, json!({"name": "软件工程支部", "parent_id": root})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(
            (v["name"].as_str(), v["parent_id"].as_i64()),
            (Some("软件工程支部"), Some(root))
        );
        let upd = app.audit_details("org_unit.update").await;
        assert_eq!(upd[0]["before"]["parent_id"], gb, "{upd:?}");
        assert_eq!(upd[0]["after"]["name"], "软件工程支部");

        // Delete only when empty: sub-units, members (even former ones) keep a unit alive.
        let del = |id: i64| {
            let t = t.clone();
            let app = &app;
            async move {
                app.json_call(
                    Some(&t),
                    Method::DELETE,
                    &format!("/api/admin/org-units/{id}"),
                    None,
                )
                .await
            }
        };
        let (s, v) = del(branch).await;
        assert_error(s, &v, StatusCode::CONFLICT, "org_unit_not_empty");
        let (s, v) = del(group).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        app.import_roster(json!([{"name": "甲", "phone": "13912340041", "category": "student", "org_unit": "软件工程支部"}]))
            .await;
        let (s, v) = del(branch).await;
        assert_error(s, &v, StatusCode::CONFLICT, "org_unit_not_empty");
        let (s, _) = del(999_999).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, v) = del(gb).await;
        assert_eq!(s, StatusCode::OK, "an empty general branch: {v}");
        assert_eq!(app.audit_count("org_unit.delete").await, 2);
        let list = app.admin_view("/api/admin/org-units").await;
        let soft = list["org_units"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["id"] == branch)
            .unwrap()
            .clone();
        assert_eq!(soft["active_members"], 1, "{soft}");
        assert_eq!(soft["kind_label"], "党支部");
    });
}

#[backend_test]
async fn secretaries_see_and_manage_only_their_own_subtree() {
    each_backend!(|app| {
        app.create_org_unit("党委", None).await;
        let one = app.create_org_unit("一支部", Some("党委")).await;
        let group = app.create_org_unit("一支部一组", Some("一支部")).await;
        let two = app.create_org_unit("二支部", Some("党委")).await;
        app.import_roster(json!([
            {"name": "甲", "phone": "13912340051", "category": "student", "org_unit": "一支部"},
            {"name": "丙", "phone": "13912340053", "category": "student", "org_unit": "二支部"},
        ]))
        .await;
        let own = app.member_id("甲").await;
        let other = app.member_id("丙").await;
        let sec = app.user_token("sec_org", "secretary", Some("一支部")).await;
        let call = |m: Method, path: String, body: Option<Value>| {
            let sec = sec.clone();
            let app = &app;
            async move { app.json_call(Some(&sec), m, &path, body).await }
        };
        let (_, units) = call(Method::GET, "/api/admin/org-units".into(), None).await;
        let names: Vec<&str> = units["org_units"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["一支部", "一支部一组"]);
        // Inside the subtree: allowed.
        let (s, v) = call(
            Method::POST,
            "/api/admin/org-units".into(),
            Some(json!({"name": "一支部二组", "parent_id": one})),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let (s, v) = call(
            Method::PATCH,
            format!("/api/admin/org-units/{group}"),
            Some(json!({"name": "一支部学生组"})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");

        let before = (
            app.count("SELECT COUNT(*) FROM org_units").await,
            app.count("SELECT COUNT(*) FROM audit_log").await,
            app.count("SELECT COUNT(*) FROM member_transfers").await,
        );
        for (m, path, body, want) in [
            (
                Method::POST,
                "/api/admin/org-units".to_owned(),
                Some(json!({"name": "顶层"})),
                StatusCode::FORBIDDEN,
            ),
            (
                Method::POST,
                "/api/admin/org-units".to_owned(),
                Some(json!({"name": "越界组", "parent_id": two})),
                StatusCode::FORBIDDEN,
            ),
            (
                Method::PATCH,
                format!("/api/admin/org-units/{two}"),
                Some(json!({"name": "改名"})),
                StatusCode::NOT_FOUND,
            ),
            (
                Method::PATCH,
                format!("/api/admin/org-units/{group}"),
                Some(json!({"parent_id": two})),
                StatusCode::FORBIDDEN,
            ),
            (
                Method::PATCH,
                format!("/api/admin/org-units/{one}"),
                Some(json!({"parent_id": null})),
                StatusCode::FORBIDDEN,
            ),
            (
                Method::DELETE,
                format!("/api/admin/org-units/{one}"),
                None,
                StatusCode::FORBIDDEN,
            ),
            (
                Method::DELETE,
                format!("/api/admin/org-units/{two}"),
                None,
                StatusCode::NOT_FOUND,
            ),
            (
                Method::PATCH,
                format!("/api/admin/members/{other}"),
                Some(json!({"name": "改"})),
                StatusCode::NOT_FOUND,
            ),
            (
                Method::DELETE,
                format!("/api/admin/members/{other}"),
                None,
                StatusCode::NOT_FOUND,
            ),
            (
                Method::POST,
                format!("/api/admin/members/{other}/unbind"),
                Some(json!({"app": "mp"})),
                StatusCode::NOT_FOUND,
            ),
            (
                Method::POST,
                format!("/api/admin/members/{other}/transfers"),
                Some(json!({"kind": "within", "to_org_unit_id": one})),
                StatusCode::NOT_FOUND,
            ),
            (
                Method::POST,
                format!("/api/admin/members/{own}/transfers"),
                Some(json!({"kind": "within", "to_org_unit_id": two})),
                StatusCode::FORBIDDEN,
            ),
        ] {
            let (s, v) = call(m.clone(), path.clone(), body).await;
            assert_eq!(s, want, "{m} {path}: {v}");
            assert!(v["error"]["code"].is_string(), "{v}");
        }
        let after = (
            app.count("SELECT COUNT(*) FROM org_units").await,
            app.count("SELECT COUNT(*) FROM audit_log").await,
            app.count("SELECT COUNT(*) FROM member_transfers").await,
        );
        assert_eq!(before, after, "nothing written");
        // An editor has no business here at all.
        let ed = app.user_token("ed_org", "editor", None).await;
        let (s, _) = app
            .json_call(
                Some(&ed),
                Method::PATCH,
                &format!("/api/admin/org-units/{one}"),
                Some(json!({"name": "x"})),
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        // Within the subtree a transfer works.
        let (s, v) = call(
            Method::POST,
            format!("/api/admin/members/{own}/transfers"),
            Some(json!({"kind": "within", "to_org_unit_id": group})),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert_eq!(v["member"]["org_unit"]["id"], group);
    });
}

#[backend_test]
async fn edits_unbinds_and_removals_are_audited_and_bad_input_changes_nothing() {
    each_backend!(|app| {
        app.import_roster(roster()).await;
        app.same_person("zhang", "o_acc_zhang");
        app.follows("o_acc_zhang").await;
        app.mini_bind("zhang", "张三", "13912340001").await;
        app.linked("张三", "o_acc_zhang").await;
        let t = app.admin_token().await;
        let id = app.member_id("张三").await;
        let path = format!("/api/admin/members/{id}");
        let (s, v) = app
            .json_call(
                Some(&t),
                Method::PATCH,
                &path,
                Some(json!({
                "name": "张三丰", "monthly_income_fen": 1_000_000, "party_status": "full",
                "joined_at": "2020-06-01", "full_at": "2021-06-01"})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["member"]["name"], "张三丰");
        assert_eq!(v["member"]["full_at"], "2021-05-31T16:00:00Z");
        assert_eq!(v["member"]["monthly_income_fen"], Value::Null, "masked");
        let (_, clear) = app
            .json_call(Some(&t), Method::GET, &format!("{path}?reveal=true"), None)
            .await;
        assert_eq!(clear["member"]["monthly_income_fen"], 1_000_000);
        let upd = app.audit_details("member.update").await;
        assert_eq!(upd.len(), 1);
        assert_eq!(
            upd[0]["changed"],
            json!([
                "name",
                "monthly_income_fen",
                "party_status",
                "joined_at",
                "full_at"
            ])
        );
        assert!(
            !upd[0].to_string().contains("1000000"),
            "no income in the log: {}",
            upd[0]
        );

        let updated_at = |app: &TestApp| {
            let pool = app.state.db.pool().clone();
            async move {
                sqlx::query("SELECT updated_at FROM members WHERE id = $1")
                    .bind(id)
                    .fetch_one(&pool)
                    .await
                    .unwrap()
                    .get::<i64, _>(0)
            }
        };
        let stamp = updated_at(&app).await;
        let audits = app.count("SELECT COUNT(*) FROM audit_log WHERE action LIKE 'member.%' AND action NOT IN ('member.read', 'member.reveal', 'member.list')").await;
        for body in [
            json!({"monthly_income_fen": -1}),
            json!({"monthly_income_fen": null}),
            json!({"party_status": "probationary", "full_at": "2021-06-01"}),
            json!({"full_at": "2019-01-01"}),
            json!({"joined_at": "2999-01-01"}),
            json!({"joined_at": "yesterday"}),
            json!({"category": "boss"}),
            json!({"phone": "13900000000"}),
            json!({"org_unit": "第二党支部"}),
            json!({"name": ""}),
            json!({}),
        ] {
            let (s, v) = app
                .json_call(Some(&t), Method::PATCH, &path, Some(body.clone()))
                .await;
            assert_error(s, &v, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
            let _ = body;
        }
        let r = app
            .http
            .patch(app.url(&path))
            .bearer_auth(&t)
            .header("content-type", "application/json")
            .body("{oops")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let (s, _) = app
            .json_call(
                Some(&t),
                Method::PATCH,
                "/api/admin/members/999999",
                Some(json!({"name": "x"})),
            )
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _) = app
            .json_call(
                Some(&t),
                Method::PATCH,
                "/api/admin/members/abc",
                Some(json!({"name": "x"})),
            )
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(updated_at(&app).await, stamp, "nothing changed");
        assert_eq!(
            app.count("SELECT COUNT(*) FROM audit_log WHERE action LIKE 'member.%' AND action NOT IN ('member.read', 'member.reveal', 'member.list')").await,
            audits
        );

        // Unbind the mini-program: the session's user is no longer the member; audited.
        let token = app.mini_login("zhang").await;
        let unbind = format!("{path}/unbind");
        let (s, v) = app
            .json_call(Some(&t), Method::POST, &unbind, Some(json!({"app": "wx"})))
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        let (s, v) = app
            .json_call(Some(&t), Method::POST, &unbind, Some(json!({"app": "mp"})))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(
            v["member"]["bindings"],
            json!({"mp": false, "oa": true, "unionid": false})
        );
        let (_, me) = app
            .json_call(Some(&token), Method::GET, "/api/mp/me", None)
            .await;
        assert_eq!(me["openid_bound"], false, "{me}");
        let (s, v) = app
            .json_call(Some(&t), Method::POST, &unbind, Some(json!({"app": "mp"})))
            .await;
        assert_error(s, &v, StatusCode::CONFLICT, "not_bound");
        let (s, _) = app
            .json_call(Some(&t), Method::POST, &unbind, Some(json!({"app": "oa"})))
            .await;
        assert_eq!(s, StatusCode::OK);
        let unbinds = app.audit_details("member.unbind").await;
        assert_eq!(unbinds.len(), 2);
        assert_eq!(
            (unbinds[0]["app"].as_str(), unbinds[0]["openid"].as_str()),
            (Some("mp"), Some("mp_zhang"))
        );
        assert_eq!(unbinds[1]["openid"], "o_acc_zhang");
        // Bound again by the member themselves.
        app.mini_bind("zhang", "张三丰", "13912340001").await;

        // Remove: off the active roster (and its counts), kept with its history.
        let (s, v) = app.json_call(Some(&t), Method::DELETE, &path, None).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["member"]["status"], "left");
        assert_eq!(v["member"]["bindings"]["mp"], false);
        let (s, v) = app.json_call(Some(&t), Method::DELETE, &path, None).await;
        assert_error(s, &v, StatusCode::CONFLICT, "already_left");
        assert_eq!(app.audit_count("member.delete").await, 1);
        let active = app.admin_view("/api/admin/members").await;
        assert!(active["members"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["id"] != id));
        let left = app.admin_view("/api/admin/members?status=left").await;
        assert_eq!(left["members"][0]["id"], id);
        let (s, _) = app
            .json_call(
                Some(&t),
                Method::GET,
                "/api/admin/members?status=gone",
                None,
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        let shown = app.admin_view(&path).await;
        assert_eq!(shown["member"]["reachable"]["template"], false);
        // A removed member cannot bind again.
        let token = app.mini_login("zhang").await;
        app.fake.set_phone("pc_again", "13912340001");
        let (s, _) = app
            .json_call(
                Some(&token),
                Method::POST,
                "/api/mp/bind",
                Some(json!({"name": "张三丰", "phone_code": "pc_again"})),
            )
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    });
}

#[backend_test]
async fn transfers_within_and_out_keep_history_and_print_an_escaped_introduction_letter() {
    each_backend!(|app| {
        app.import_roster(json!([
            {"name": "周<b>七</b>", "phone": "13912340061", "category": "student", "org_unit": "第一党支部",
             "id_number": "11010519491231002X", "party_status": "probationary", "joined_at": "2025-07-01"},
            {"name": "吴八", "phone": "13912340062", "category": "student", "org_unit": "第一党支部"},
        ]))
        .await;
        let t = app.admin_token().await;
        let first = app.org_unit_id("第一党支部").await;
        let second = app.create_org_unit("第二党支部", None).await;
        let zhou = app.member_id("周<b>七</b>").await;
        let wu = app.member_id("吴八").await;
        let tr = |id: i64, body: Value| {
            let t = t.clone();
            let app = &app;
            async move {
                app.json_call(
                    Some(&t),
                    Method::POST,
                    &format!("/api/admin/members/{id}/transfers"),
                    Some(body),
                )
                .await
            }
        };

        // Within: moved, with a history row.
        let (s, v) = tr(
            wu,
            json!({"kind": "within", "to_org_unit_id": second, "reason": "换专业"}),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert_eq!(v["transfer"]["status"], "completed");
        assert_eq!(v["transfer"]["from_org_unit"]["id"], first);
        assert_eq!(v["member"]["org_unit"]["id"], second);
        assert_eq!(app.audit_count("member.transfer.within").await, 1);

        let before = (
            app.count("SELECT COUNT(*) FROM member_transfers").await,
            app.count("SELECT COUNT(*) FROM audit_log WHERE action LIKE 'member.transfer%'")
                .await,
        );
        for (body, want) in [
            (
                json!({"kind": "within", "to_org_unit_id": second}),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                json!({"kind": "within", "to_org_unit_id": 999_999}),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                json!({"kind": "sideways"}),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                json!({"kind": "out", "destination": "某大学党委", "dues_paid_until": "2026-13"}),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                json!({"kind": "out", "destination": "某大学党委", "dues_paid_until": "2026-10", "validity_days": 0}),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                json!({"kind": "out", "destination": " ", "dues_paid_until": "2026-10"}),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
        ] {
            let (s, v) = tr(wu, body.clone()).await;
            assert_eq!(s, want, "{body}: {v}");
        }
        let (s, _) = tr(999_999, json!({"kind": "within", "to_org_unit_id": second})).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let after = (
            app.count("SELECT COUNT(*) FROM member_transfers").await,
            app.count("SELECT COUNT(*) FROM audit_log WHERE action LIKE 'member.transfer%'")
                .await,
        );
        assert_eq!(before, after, "nothing written");

        // Out: a letter; the member leaves the active roster but keeps their history.
        let (s, v) = tr(zhou, json!({"kind": "out", "destination": "某某大学<script>党委</script>", "dues_paid_until": "2026-10", "validity_days": 60})).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let out = v["transfer"].clone();
        assert_eq!(out["status"], "issued");
        assert_eq!(out["validity_days"], 60);
        assert_eq!(v["member"]["status"], "transferred_out");
        let letter_no = out["letter_no"].as_str().unwrap().to_owned();
        let out_id = out["id"].as_i64().unwrap();
        let (s, v) = tr(
            zhou,
            json!({"kind": "out", "destination": "别处", "dues_paid_until": "2026-10"}),
        )
        .await;
        assert_error(s, &v, StatusCode::CONFLICT, "member_not_active");
        let roster = app.admin_view("/api/admin/members").await;
        assert_eq!(roster["total"], 1, "{roster}");
        let units = app.admin_view("/api/admin/org-units").await;
        let first_unit = units["org_units"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["id"] == first)
            .unwrap()
            .clone();
        assert_eq!(first_unit["active_members"], 0, "{first_unit}");
        let shown = app.admin_view(&format!("/api/admin/members/{zhou}")).await;
        assert_eq!(shown["transfers"][0]["letter_no"], letter_no.as_str());

        // The letter: printable, escaped, with the ID number (a read of personal data: audited).
        let letter_path = format!("/admin/members/transfers/{out_id}/letter");
        let r = app.http.get(app.url(&letter_path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let r = app
            .http
            .get(app.url(&letter_path))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        assert!(r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'"));
        let html = r.text().await.unwrap();
        assert!(html.contains(&letter_no), "{html}");
        assert!(html.contains("周&lt;b&gt;七"), "{html}");
        assert!(
            !html.contains("<script>") && !html.contains("<b>七"),
            "{html}"
        );
        assert!(html.contains("11010519491231002X") && html.contains("预备党员"));
        assert!(html.contains("党费已交到 2026年10月") && html.contains("有效期 60 天"));
        assert_eq!(app.audit_count("member.transfer.letter").await, 1);
        let within_id = app
            .count(&format!(
                "SELECT MIN(id) FROM member_transfers WHERE member_id = {wu}"
            ))
            .await;
        let r = app
            .http
            .get(app.url(&format!("/admin/members/transfers/{within_id}/letter")))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::NOT_FOUND,
            "no letter for a move within"
        );
        let ed = app.user_token("ed_letter", "editor", None).await;
        let r = app
            .http
            .get(app.url(&letter_path))
            .bearer_auth(&ed)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);

        // Returned (needs a reason): back on the active roster. Issued again and received: done.
        let close = |id: i64, body: Value| {
            let t = t.clone();
            let app = &app;
            async move {
                app.json_call(
                    Some(&t),
                    Method::POST,
                    &format!("/api/admin/members/transfers/{id}/close"),
                    Some(body),
                )
                .await
            }
        };
        let (s, v) = close(out_id, json!({"outcome": "returned"})).await;
        assert_error(s, &v, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        let (s, v) = close(out_id, json!({"outcome": "lost"})).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        let (s, v) = close(
            out_id,
            json!({"outcome": "returned", "reason": "接收单位名称有误"}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["transfer"]["status"], "returned");
        assert_eq!(v["member"]["status"], "active");
        let (s, v) = close(out_id, json!({"outcome": "received"})).await;
        assert_error(s, &v, StatusCode::CONFLICT, "transfer_closed");
        let (s, v) = tr(
            zhou,
            json!({"kind": "out", "destination": "某某大学党委", "dues_paid_until": "2026-11"}),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let again = v["transfer"]["id"].as_i64().unwrap();
        let (s, v) = close(again, json!({"outcome": "received"})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["member"]["status"], "transferred_out");
        for action in [
            "member.transfer.out",
            "member.transfer.returned",
            "member.transfer.received",
        ] {
            assert!(app.audit_count(action).await >= 1, "{action}");
        }
        let list = app
            .admin_view("/api/admin/members/transfers?status=received")
            .await;
        assert_eq!(list["total"], 1, "{list}");
        let history = app.admin_view(&format!("/api/admin/members/{zhou}")).await;
        assert_eq!(history["transfers"].as_array().unwrap().len(), 2);

        // Incoming: registered on arrival; the same person coming back is reactivated.
        let inc = |body: Value| {
            let t = t.clone();
            let app = &app;
            async move {
                app.json_call(
                    Some(&t),
                    Method::POST,
                    "/api/admin/members/transfers/incoming",
                    Some(body),
                )
                .await
            }
        };
        let (s, v) = inc(json!({"name": "郑九", "phone": "13912340069", "category": "employed", "monthly_income_fen": 500_000,
            "org_unit_id": second, "origin": "某某研究所党委", "letter_no": "所党字12号", "dues_paid_until": "2026-09"})).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert_eq!(v["transfer"]["direction"], "in");
        assert_eq!(v["member"]["status"], "active");
        assert_eq!(v["member"]["org_unit"]["id"], second);
        let members = app.count("SELECT COUNT(*) FROM members").await;
        for (body, want) in [
            (
                json!({"name": "郑九", "phone": "13912340069", "category": "student", "org_unit_id": second, "origin": "x"}),
                StatusCode::CONFLICT,
            ),
            (
                json!({"name": "坏号", "phone": "12345", "category": "student", "org_unit_id": second, "origin": "x"}),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                json!({"name": "无收入", "phone": "13912340070", "category": "employed", "org_unit_id": second, "origin": "x"}),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                json!({"name": "无来处", "phone": "13912340071", "category": "student", "org_unit_id": second, "origin": ""}),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                json!({"name": "无单位", "phone": "13912340072", "category": "student", "org_unit_id": 999_999, "origin": "x"}),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
        ] {
            let (s, v) = inc(body.clone()).await;
            assert_eq!(s, want, "{body}: {v}");
            assert!(
                !v.to_string().contains("12345"),
                "values are not echoed: {v}"
            );
        }
        assert_eq!(app.count("SELECT COUNT(*) FROM members").await, members);
        let (s, v) = inc(json!({"name": "周七", "phone": "13912340061", "category": "student", "org_unit_id": second, "origin": "某某大学党委"})).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert_eq!(v["member"]["id"], zhou, "the same roster entry, back");
        assert_eq!(v["member"]["status"], "active");
        assert_eq!(app.audit_count("member.transfer.in").await, 2);
    });
}
