//! The mini-program session: login with a `wx.login` code, roster binding by a WeChat-verified
//! phone and the member's name, `me`, and subscribe-message consent — on every backend.

use dangjian_test_macros::backend_test;

use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::Row;

use crate::{each_backend, helpers::Spawn};

fn assert_error(status: StatusCode, v: &Value, want_status: StatusCode, want_code: &str) {
    assert_eq!(status, want_status, "{v}");
    assert_eq!(v["error"]["code"], want_code, "{v}");
    assert!(v["error"]["message"].is_string(), "{v}");
    assert_eq!(
        v.as_object().map(|o| o.len()),
        Some(1),
        "only the error key: {v}"
    );
}

#[backend_test]
async fn login_with_a_valid_code_gives_a_session_and_no_member_yet() {
    each_backend!(|app| {
        let (token, v) = app.mp_login("alice").await;
        assert_eq!(token.len(), 43, "32 random bytes, base64url");
        assert!(v["member"].is_null(), "{v}");
        assert!(v["expires_at"].as_str().unwrap().ends_with("+08:00"), "{v}");
        assert!(
            v.get("session_key").is_none() && !v.to_string().contains("session_key"),
            "{v}"
        );
        assert_eq!(app.fake.count_calls("sns/jscode2session"), 1);

        let (status, me) = app.mp_get("/api/mp/me", Some(&token)).await;
        assert_eq!(status, StatusCode::OK, "{me}");
        assert_eq!(me, json!({"openid_bound": false, "member": null}));

        // The cache (Redis when configured) holds the token's SHA-256, never the token itself.
        let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(token.as_bytes()));
        let stored = app
            .state
            .cache
            .get(&format!("mp_session:{hash}"))
            .await
            .unwrap()
            .expect("session in the cache");
        assert!(
            stored.contains("mp_alice") && !stored.contains(&token),
            "{stored}"
        );
        assert_eq!(
            app.state
                .cache
                .get(&format!("mp_session:{token}"))
                .await
                .unwrap(),
            None
        );

        // Two logins, two independent sessions.
        let (other, _) = app.mp_login("alice").await;
        assert_ne!(other, token);
        assert_eq!(
            app.mp_get("/api/mp/me", Some(&token)).await.0,
            StatusCode::OK
        );
    });
}

#[backend_test]
async fn a_session_expires_after_mp_session_ttl_secs() {
    use dangjian::platform::clock::Clock as _;
    let clock = dangjian::platform::clock::ManualClock::at(time::OffsetDateTime::now_utc());
    let spawn = || Spawn {
        overrides: vec![("mp_session_ttl_secs", "3600".into())],
        clock: Some(std::sync::Arc::new(clock.clone())),
        ..Default::default()
    };
    each_backend!(spawn = spawn(), |app| {
        let (token, v) = app.mp_login("shortlived").await;
        let expires = time::OffsetDateTime::parse(
            v["expires_at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        assert_eq!(
            expires.unix_timestamp(),
            clock.now().unix_timestamp() + 3600
        );
        clock.advance(std::time::Duration::from_secs(3599));
        assert_eq!(
            app.mp_get("/api/mp/me", Some(&token)).await.0,
            StatusCode::OK
        );
        clock.advance(std::time::Duration::from_secs(2));
        let (status, v) = app.mp_get("/api/mp/me", Some(&token)).await;
        assert_error(status, &v, StatusCode::UNAUTHORIZED, "unauthorized");
    });
}

#[backend_test]
async fn invalid_code_is_a_client_error_in_the_one_shape_and_creates_no_session() {
    each_backend!(|app| {
        let (status, v) = app
            .mp_post("/api/mp/login", None, json!({"code": "invalid"}))
            .await;
        assert_error(status, &v, StatusCode::BAD_REQUEST, "invalid_code");

        let (status, v) = app
            .mp_post("/api/mp/login", None, json!({"code": "  "}))
            .await;
        assert_error(
            status,
            &v,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
        let resp = app
            .http
            .post(app.url("/api/mp/login"))
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        let status = resp.status();
        assert_error(
            status,
            &resp.json().await.unwrap(),
            StatusCode::BAD_REQUEST,
            "bad_json",
        );
        assert_eq!(
            app.fake.count_calls("sns/jscode2session"),
            1,
            "blank codes never reach WeChat"
        );
    });
}

#[backend_test]
async fn routes_that_need_the_session_answer_401_without_a_valid_token() {
    each_backend!(|app| {
        let (status, v) = app.mp_get("/api/mp/me", None).await;
        assert_error(status, &v, StatusCode::UNAUTHORIZED, "unauthorized");
        let (status, v) = app.mp_get("/api/mp/me", Some("not-a-session")).await;
        assert_error(status, &v, StatusCode::UNAUTHORIZED, "unauthorized");
        let (status, v) = app.mp_bind("", "张三", "p1").await;
        assert_error(status, &v, StatusCode::UNAUTHORIZED, "unauthorized");
        let (status, v) = app
            .mp_post(
                "/api/mp/subscriptions",
                None,
                json!({"template_ids": ["t"], "results": {"t": "accept"}}),
            )
            .await;
        assert_error(status, &v, StatusCode::UNAUTHORIZED, "unauthorized");
        // An admin token is not a mini-program session.
        let admin = app.admin_token().await;
        let (status, v) = app.mp_get("/api/mp/me", Some(&admin)).await;
        assert_error(status, &v, StatusCode::UNAUTHORIZED, "unauthorized");
    });
}

#[backend_test]
async fn bind_with_the_right_name_and_phone_binds_audits_and_later_logins_see_the_member() {
    each_backend!(|app| {
        app.mp_roster().await;
        let (token, _) = app.mp_login("zhang").await;
        app.fake.set_phone("pc1", "13912340001");
        let (status, v) = app.mp_bind(&token, " 张三 ", "pc1").await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let m = &v["member"];
        assert_eq!(m["name"], "张三");
        assert_eq!(m["phone"], "139****0001");
        assert_eq!(m["org_unit"], "第一党支部");
        assert_eq!(m["category"], "employed");
        assert_eq!(m["party_status"], "full");
        assert!(
            m.get("monthly_income_fen").is_none() && m.get("id_number").is_none(),
            "{m}"
        );
        let id = m["id"].as_i64().unwrap();

        assert_eq!(app.openid_of("张三").await.as_deref(), Some("mp_zhang"));
        let audit = sqlx::query(
            "SELECT actor, target_id, details FROM audit_log WHERE action = 'member.bind'",
        )
        .fetch_all(app.state.db.pool())
        .await
        .unwrap();
        assert_eq!(audit.len(), 1);
        assert_eq!(audit[0].get::<Option<String>, _>(1), Some(id.to_string()));
        let details: String = audit[0].get(2);
        assert!(
            details.contains("mp_zhang") && !details.contains("13912340001"),
            "{details}"
        );

        // The same session now carries the member; so does a new login.
        let (_, me) = app.mp_get("/api/mp/me", Some(&token)).await;
        assert_eq!(me["openid_bound"], true);
        assert_eq!(me["member"]["id"], id);
        let (_, again) = app.mp_login("zhang").await;
        assert_eq!(again["member"]["id"], id, "{again}");
        assert_eq!(again["member"]["phone"], "139****0001");

        // A retry of the same bind answers the same and writes nothing more.
        app.fake.set_phone("pc1b", "13912340001");
        let (status, v) = app.mp_bind(&token, "张三", "pc1b").await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["member"]["id"], id);
        assert_eq!(
            app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'member.bind'")
                .await,
            1
        );
    });
}

#[backend_test]
async fn wrong_name_or_unknown_phone_is_404_with_the_same_answer_and_writes_nothing() {
    each_backend!(|app| {
        app.mp_roster().await;
        let (token, _) = app.mp_login("probe").await;
        app.fake.set_phone("right_phone", "13912340001");
        app.fake.set_phone("wrong_phone", "13900000000");
        let (s1, wrong_name) = app.mp_bind(&token, "张四", "right_phone").await;
        assert_error(s1, &wrong_name, StatusCode::NOT_FOUND, "member_not_found");
        let (s2, wrong_phone) = app.mp_bind(&token, "张三", "wrong_phone").await;
        assert_error(s2, &wrong_phone, StatusCode::NOT_FOUND, "member_not_found");
        assert_eq!(
            wrong_name, wrong_phone,
            "the answer doesn't tell which was wrong"
        );

        assert_eq!(
            app.count("SELECT COUNT(*) FROM members WHERE openid IS NOT NULL")
                .await,
            0
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'member.bind'")
                .await,
            0
        );
        let (_, me) = app.mp_get("/api/mp/me", Some(&token)).await;
        assert_eq!(me["openid_bound"], false);

        // A phone code WeChat rejects: 400, not a 401 that would make the client log in again.
        let (status, v) = app.mp_bind(&token, "张三", "never_issued").await;
        assert_error(status, &v, StatusCode::BAD_REQUEST, "invalid_code");
        let (status, v) = app.mp_bind(&token, "", "right_phone").await;
        assert_error(
            status,
            &v,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
    });
}

#[backend_test]
async fn a_member_bound_to_another_openid_is_409_and_stays_bound() {
    each_backend!(|app| {
        app.mp_roster().await;
        app.fake.set_phone("pa", "13912340001");
        app.fake.set_phone("pb", "13912340001");
        let (first, _) = app.mp_login("first").await;
        assert_eq!(app.mp_bind(&first, "张三", "pa").await.0, StatusCode::OK);

        let (second, _) = app.mp_login("second").await;
        let (status, v) = app.mp_bind(&second, "张三", "pb").await;
        assert_error(status, &v, StatusCode::CONFLICT, "already_bound");
        assert_eq!(app.openid_of("张三").await.as_deref(), Some("mp_first"));

        // One WeChat account binds one member: the first can't take 李四 too.
        app.fake.set_phone("pc", "13912340002");
        let (status, v) = app.mp_bind(&first, "李四", "pc").await;
        assert_error(status, &v, StatusCode::CONFLICT, "already_bound");
        assert_eq!(app.openid_of("李四").await, None);
        assert_eq!(
            app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'member.bind'")
                .await,
            1
        );
    });
}

#[backend_test]
async fn bind_attempts_are_rate_limited_per_openid() {
    each_backend!(|app| {
        app.mp_roster().await;
        let (token, _) = app.mp_login("prober").await;
        app.fake.set_phone("p", "13912340001");
        for i in 0..10 {
            let (status, _) = app.mp_bind(&token, &format!("猜{i}"), "p").await;
            assert_eq!(status, StatusCode::NOT_FOUND);
        }
        let (status, v) = app.mp_bind(&token, "张三", "p").await;
        assert_error(status, &v, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
        assert_eq!(app.openid_of("张三").await, None);
        // Another user is not affected.
        let (other, _) = app.mp_login("other").await;
        assert_eq!(app.mp_bind(&other, "张三", "p").await.0, StatusCode::OK);
    });
}

#[backend_test]
async fn subscription_results_are_recorded_as_grants() {
    each_backend!(|app| {
        let (token, _) = app.mp_login("sub").await;
        let body = json!({
            "template_ids": ["tpl_a", "tpl_b", "tpl_c", "tpl_d"],
            "results": {"errMsg": "requestSubscribeMessage:ok", "tpl_a": "accept", "tpl_b": "reject", "tpl_c": "ban", "tpl_d": "filter"},
        });
        let (status, v) = app
            .mp_post("/api/mp/subscriptions", Some(&token), body.clone())
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(
            v["recorded"],
            json!({"tpl_a": "accept", "tpl_b": "reject", "tpl_c": "ban"})
        );
        // Accepting again adds a credit (one message per acceptance).
        let again = json!({"template_ids": ["tpl_a"], "results": {"tpl_a": "accept"}});
        assert_eq!(
            app.mp_post("/api/mp/subscriptions", Some(&token), again)
                .await
                .0,
            StatusCode::OK
        );

        let rows = sqlx::query("SELECT template_id, status, credits FROM subscribe_grants WHERE openid = $1 ORDER BY template_id")
            .bind("mp_sub")
            .fetch_all(app.state.db.pool())
            .await
            .unwrap();
        let got: Vec<(String, String, i64)> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        assert_eq!(
            got,
            vec![
                ("tpl_a".into(), "accept".into(), 2),
                ("tpl_b".into(), "reject".into(), 0),
                ("tpl_c".into(), "ban".into(), 0),
            ]
        );

        for bad in [
            json!({"template_ids": ["tpl_a"], "results": {"tpl_a": "maybe"}}),
            json!({"template_ids": ["tpl_a"], "results": {"tpl_x": "accept"}}),
            json!({"template_ids": [], "results": {}}),
            json!({"results": {"tpl_a": "accept"}}),
        ] {
            let (status, v) = app
                .mp_post("/api/mp/subscriptions", Some(&token), bad)
                .await;
            assert_error(
                status,
                &v,
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
            );
        }
        assert_eq!(app.count("SELECT COUNT(*) FROM subscribe_grants").await, 3);
    });
}

#[backend_test]
async fn the_new_routes_are_in_the_openapi_document() {
    each_backend!(|app| {
        let (_, doc) = app.mp_get("/api/openapi.json", None).await;
        for (path, method) in [
            ("/api/mp/login", "post"),
            ("/api/mp/bind", "post"),
            ("/api/mp/me", "get"),
            ("/api/mp/subscriptions", "post"),
        ] {
            assert!(doc["paths"][path][method].is_object(), "{path}");
        }
        assert!(doc["paths"]["/api/mp/login"]["post"]
            .get("security")
            .is_none());
        assert!(doc["paths"]["/api/mp/bind"]["post"]["security"].is_array());
    });
}

#[backend_test]
async fn login_and_bind_log_no_phone_number_and_no_session_key() {
    if !crate::helpers::in_a_process_of_its_own() {
        return;
    }
    let logs = crate::admin_console::captured();
    each_backend!(|app| {
        app.mp_roster().await;
        let (token, _) = app.mp_login("logcheck").await;
        app.fake.set_phone("lp1", "13912340001");
        app.fake.set_phone("lp2", "13912340002");
        assert_eq!(app.mp_bind(&token, "张三", "lp1").await.0, StatusCode::OK);
        let (other, _) = app.mp_login("logcheck2").await;
        assert_eq!(
            app.mp_bind(&other, "不对", "lp2").await.0,
            StatusCode::NOT_FOUND
        );
        app.mp_get("/api/mp/me", Some(&token)).await;

        let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
        assert!(
            text.contains("mini-program account bound"),
            "sanity: logs were captured"
        );
        for forbidden in [
            "13912340001",
            "13912340002",
            "不对",
            token.as_str(),
            other.as_str(),
        ] {
            assert!(!text.contains(forbidden), "{forbidden} appears in the logs");
        }
        // The fake's session_key for code `logcheck` (base64 of SHA-256("session_key:logcheck")[..16]).
        use base64::Engine as _;
        use sha2::Digest as _;
        let key = base64::engine::general_purpose::STANDARD
            .encode(&sha2::Sha256::digest(b"session_key:logcheck")[..16]);
        assert!(!text.contains(&key), "session_key appears in the logs");
    });
}

/// Issue 13 item 15 on the mini-program side: a subscription report retried with the same
/// `request_id` (a lost answer, a retry after a partial failure) adds one credit, not two; another
/// request, or another user's request with the same id, counts on its own.
#[backend_test]
async fn a_subscription_report_repeated_with_its_request_id_adds_one_credit() {
    each_backend!(|app| {
        let (token, _) = app.mp_login("rq").await;
        let (other, _) = app.mp_login("rq2").await;
        let report = |rid: &str| json!({"template_ids": ["tpl_a"], "results": {"tpl_a": "accept"}, "request_id": rid});
        let credits = |openid: &'static str| {
            format!("SELECT COALESCE(MAX(credits), 0) FROM subscribe_grants WHERE app = 'mp' AND openid = '{openid}' AND template_id = 'tpl_a'")
        };
        for _ in 0..3 {
            let (status, v) = app
                .mp_post("/api/mp/subscriptions", Some(&token), report("req-0001"))
                .await;
            assert_eq!(status, StatusCode::OK, "{v}");
            assert_eq!(
                v["recorded"],
                json!({"tpl_a": "accept"}),
                "the first answer again"
            );
        }
        assert_eq!(app.count(&credits("mp_rq")).await, 1);
        let (status, _) = app
            .mp_post("/api/mp/subscriptions", Some(&token), report("req-0002"))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            app.count(&credits("mp_rq")).await,
            2,
            "a new request is a new grant"
        );
        let (status, _) = app
            .mp_post("/api/mp/subscriptions", Some(&other), report("req-0001"))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(app.count(&credits("mp_rq2")).await, 1, "ids are per user");
        for bad in ["short", "has space in it", &"x".repeat(65)] {
            let (status, v) = app
                .mp_post("/api/mp/subscriptions", Some(&token), report(bad))
                .await;
            assert_error(
                status,
                &v,
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
            );
        }
        assert_eq!(
            app.count(&credits("mp_rq")).await,
            2,
            "refused reports change nothing"
        );
    });
}
