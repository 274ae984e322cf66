//! Admin accounts, the role matrix over the whole route table, the audit log, the members roster
//! and personal-data protection, on every backend.

use dangjian_test_macros::backend_test;

use std::time::Duration;

use dangjian::{auth::Role, platform::pii::DataCipher};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::Row;

use crate::{
    each_backend,
    helpers::{Spawn, ADMIN_PASSWORD, ADMIN_USER},
};

/// A resident ID number with a valid check character.
pub fn id_number(first17: &str) -> String {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const C: &[u8; 11] = b"10X98765432";
    let sum: u32 = first17
        .bytes()
        .zip(W)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    format!("{first17}{}", C[(sum % 11) as usize] as char)
}

async fn error_of(resp: reqwest::Response) -> (StatusCode, String, Value) {
    let status = resp.status();
    let v: Value = resp
        .json()
        .await
        .expect("error body is the JSON error shape");
    let code = v["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("error.code in {v}"))
        .to_owned();
    assert!(v["error"]["message"].is_string(), "{v}");
    (status, code, v)
}

fn roster() -> Value {
    json!([
        {"name": "张三", "phone": "13912340001", "category": "employed", "monthly_income_fen": 812_345, "org_unit": "第一党支部",
         "id_number": id_number("11010519491231002"), "party_status": "full"},
        {"name": "李四", "phone": "139 1234 0002", "category": "retired", "monthly_income_fen": "456789", "org_unit": "第二党支部"},
        {"name": "王五", "phone": "+8613912340003", "category": "student", "org_unit": "第一党支部", "party_status": "probationary"},
    ])
}

#[backend_test]
async fn login_issues_a_token_that_me_accepts_and_logout_revokes() {
    each_backend!(|app| {
        let resp = app
            .http
            .post(app.url("/api/admin/login"))
            .json(&json!({"username": ADMIN_USER, "password": ADMIN_PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let v: Value = resp.json().await.unwrap();
        let token = v["token"].as_str().unwrap().to_owned();
        assert!(token.len() >= 43, "32 random bytes");
        assert!(v["expires_at"].as_str().unwrap().contains('T'));
        assert_eq!(v["user"]["username"], ADMIN_USER);
        assert_eq!(v["user"]["role"], "admin");
        // Only the hash is stored.
        assert_eq!(
            app.count(&format!(
                "SELECT COUNT(*) FROM admin_tokens WHERE token_hash = '{token}'"
            ))
            .await,
            0
        );

        let me = app.adm_get("/api/admin/me", &token).await;
        assert_eq!(me["user"]["username"], ADMIN_USER);
        assert!(me["permissions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "reveal_personal_data"));

        let out = app
            .adm_req(Method::POST, "/api/admin/logout", &token)
            .send()
            .await
            .unwrap();
        assert_eq!(out.status(), StatusCode::NO_CONTENT);
        let again = app
            .adm_req(Method::GET, "/api/admin/me", &token)
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(again).await.0, StatusCode::UNAUTHORIZED);

        let garbage = app
            .adm_req(Method::GET, "/api/admin/me", "not-a-token")
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(garbage).await.1, "unauthorized");
    });
}

#[backend_test]
async fn repeated_failed_logins_lock_the_account_even_for_the_right_password() {
    // The account lock alone (the per-address throttle, which comes first, is tested in
    // hardening.rs); every failure, the locked one included, gets the same answer (issue 13).
    let spawn = || Spawn {
        overrides: vec![
            ("login_lockout_threshold", "5".into()),
            ("login_ip_max_failures", "1000".into()),
        ],
        ..Default::default()
    };
    each_backend!(spawn = spawn(), |app| {
        let try_login = |pw: &'static str| {
            app.http
                .post(app.url("/api/admin/login"))
                .json(&json!({"username": ADMIN_USER, "password": pw}))
                .send()
        };
        for _ in 0..5 {
            let (status, code, _) = error_of(try_login("wrong-password").await.unwrap()).await;
            assert_eq!(
                (status, code.as_str()),
                (StatusCode::UNAUTHORIZED, "invalid_credentials")
            );
        }
        let (_, code, _) = error_of(try_login(ADMIN_PASSWORD).await.unwrap()).await;
        assert_eq!(
            code, "invalid_credentials",
            "a locked account refuses even the right password, with the same answer"
        );
        // Unknown users look like wrong passwords.
        let r = app
            .http
            .post(app.url("/api/admin/login"))
            .json(&json!({"username": "nobody", "password": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(r).await.1, "invalid_credentials");
        assert_eq!(
            app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'auth.lockout'")
                .await,
            1
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM admin_users WHERE failed_logins = 5 AND locked_until IS NOT NULL").await,
            1
        );
        // After the lock expires, the right password works and resets the counter.
        sqlx::query("UPDATE admin_users SET locked_until = 1")
            .execute(app.state.db.pool())
            .await
            .unwrap();
        app.admin_token().await;
        assert_eq!(
            app.count(
                "SELECT COUNT(*) FROM admin_users WHERE failed_logins = 0 AND locked_until IS NULL"
            )
            .await,
            1
        );
    });
}

#[backend_test]
async fn login_is_rate_limited_per_ip() {
    let spawn = || Spawn {
        overrides: vec![("rate_limit_login_per_minute", "3".into())],
        ..Default::default()
    };
    each_backend!(spawn = spawn(), |app| {
        for i in 0..3 {
            let r = app
                .http
                .post(app.url("/api/admin/login"))
                .json(&json!({"username": format!("u{i}"), "password": "x"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        }
        let r = app
            .http
            .post(app.url("/api/admin/login"))
            .json(&json!({"username": ADMIN_USER, "password": ADMIN_PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(r).await.1, "rate_limited");
    });
}

#[backend_test]
async fn tokens_expire_after_their_ttl() {
    let spawn = || Spawn {
        overrides: vec![("admin_token_ttl_secs", "1".into())],
        ..Default::default()
    };
    each_backend!(spawn = spawn(), |app| {
        let token = app.admin_token().await;
        app.adm_get("/api/admin/me", &token).await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let r = app
            .adm_req(Method::GET, "/api/admin/me", &token)
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(r).await.0, StatusCode::UNAUTHORIZED);
    });
}

#[backend_test]
async fn password_change_checks_the_old_password_and_revokes_other_tokens() {
    each_backend!(|app| {
        let a = app.admin_token().await;
        let b = app.admin_token().await;
        let bad = app
            .adm_req(Method::POST, "/api/admin/password", &a)
            .json(&json!({"old_password": "nope", "new_password": "a-new-password-1"}))
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(bad).await.0, StatusCode::FORBIDDEN);
        let weak = app
            .adm_req(Method::POST, "/api/admin/password", &a)
            .json(&json!({"old_password": ADMIN_PASSWORD, "new_password": "short"}))
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(weak).await.1, "validation_failed");
        let ok = app
            .adm_req(Method::POST, "/api/admin/password", &a)
            .json(&json!({"old_password": ADMIN_PASSWORD, "new_password": "a-new-password-1"}))
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        app.adm_get("/api/admin/me", &a).await;
        let r = app
            .adm_req(Method::GET, "/api/admin/me", &b)
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(r).await.0, StatusCode::UNAUTHORIZED);
        let old = app
            .http
            .post(app.url("/api/admin/login"))
            .json(&json!({"username": ADMIN_USER, "password": ADMIN_PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(old.status(), StatusCode::UNAUTHORIZED);
        app.login(ADMIN_USER, "a-new-password-1").await;
    });
}

#[backend_test]
async fn bad_json_bodies_get_the_one_error_shape() {
    each_backend!(|app| {
        let t = app.admin_token().await;
        let r = app
            .adm_req(Method::POST, "/api/admin/org-units", &t)
            .header("content-type", "application/json")
            .body("{nope")
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(r).await.1, "bad_json");
        let r = app
            .adm_req(Method::POST, "/api/admin/org-units", &t)
            .json(&json!({"name": 13912340009_i64}))
            .send()
            .await
            .unwrap();
        let (status, code, body) = error_of(r).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
        );
        assert!(
            !body.to_string().contains("13912340009"),
            "values are not echoed: {body}"
        );
        let big = "x".repeat(1024 * 1024 + 10);
        let r = app
            .adm_req(Method::POST, "/api/admin/org-units", &t)
            .json(&json!({"name": big}))
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(r).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    });
}

/// Every route of the one route table: no token → 401; a role without the route's permission → 403.
#[backend_test]
async fn every_admin_route_refuses_callers_without_its_permission() {
    each_backend!(|app| {
        app.create_org_unit("矩阵支部", None).await;
        let tokens = [
            (Role::Admin, app.admin_token().await),
            (
                Role::Secretary,
                app.user_token("sec1", "secretary", Some("矩阵支部")).await,
            ),
            (Role::Editor, app.user_token("ed1", "editor", None).await),
        ];
        let table = dangjian::startup::admin_routes(&app.state).table().to_vec();
        assert!(table.len() >= 12, "{table:?}");
        let mut checked_403 = 0;
        for route in &table {
            let path = route.path.replace("{id}", "1");
            let method = Method::from_bytes(route.method.as_str().as_bytes()).unwrap();
            if route.permission == dangjian::auth::Permission::Public {
                continue;
            }
            let r = app
                .http
                .request(method.clone(), app.url(&path))
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            let (status, code, _) = error_of(r).await;
            assert_eq!(
                (status, code.as_str()),
                (StatusCode::UNAUTHORIZED, "unauthorized"),
                "{} {}",
                route.method,
                route.path
            );
            for (role, token) in &tokens {
                if role.allows(route.permission) {
                    continue;
                }
                let r = app
                    .adm_req(method.clone(), &path, token)
                    .json(&json!({}))
                    .send()
                    .await
                    .unwrap();
                let (status, code, _) = error_of(r).await;
                assert_eq!(
                    (status, code.as_str()),
                    (StatusCode::FORBIDDEN, "forbidden"),
                    "{role:?} {} {}",
                    route.method,
                    route.path
                );
                checked_403 += 1;
            }
        }
        assert!(checked_403 >= 10, "{checked_403}");
        // Disabled accounts lose their sessions at once.
        let users = app.adm_get("/api/admin/users", &tokens[0].1).await;
        let ed_id = users["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["username"] == "ed1")
            .unwrap()["id"]
            .as_i64()
            .unwrap();
        let r = app
            .adm_req(
                Method::POST,
                &format!("/api/admin/users/{ed_id}/disable"),
                &tokens[0].1,
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let r = app
            .adm_req(Method::GET, "/api/admin/me", &tokens[2].1)
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(r).await.0, StatusCode::UNAUTHORIZED);
    });
}

#[backend_test]
async fn admin_writes_and_reveals_are_in_the_audit_log_which_is_append_only() {
    each_backend!(|app| {
        let t = app.admin_token().await;
        app.create_org_unit("审计支部", None).await;
        let sec = app.user_token("sec2", "secretary", Some("审计支部")).await;
        assert_eq!(
            app.adm_import_json(&t, roster()).await.status(),
            StatusCode::OK
        );
        let members = app.adm_get("/api/admin/members", &t).await;
        let id = members["members"][0]["id"].as_i64().unwrap();
        app.adm_get(&format!("/api/admin/members/{id}?reveal=true"), &t)
            .await;
        let users = app.adm_get("/api/admin/users", &t).await;
        let sec_id = users["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["username"] == "sec2")
            .unwrap()["id"]
            .as_i64()
            .unwrap();
        app.adm_req(
            Method::POST,
            &format!("/api/admin/users/{sec_id}/reset-password"),
            &t,
        )
        .send()
        .await
        .unwrap();
        app.adm_req(
            Method::POST,
            &format!("/api/admin/users/{sec_id}/disable"),
            &t,
        )
        .send()
        .await
        .unwrap();
        app.adm_req(
            Method::POST,
            &format!("/api/admin/users/{sec_id}/enable"),
            &t,
        )
        .send()
        .await
        .unwrap();
        app.adm_req(Method::POST, "/api/admin/password", &t)
            .json(&json!({"old_password": ADMIN_PASSWORD, "new_password": "another-password-2"}))
            .send()
            .await
            .unwrap();
        // The secretary's session ended with the reset.
        let r = app
            .adm_req(Method::GET, "/api/admin/me", &sec)
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(r).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(
            app.adm_req(Method::POST, "/api/admin/logout", &t)
                .send()
                .await
                .unwrap()
                .status(),
            StatusCode::NO_CONTENT
        );
        let t = app.login(ADMIN_USER, "another-password-2").await;

        let actions = app.adm_audit_actions(&t, "").await;
        for expected in [
            "org_unit.create",
            "admin_user.create",
            "member.import",
            "member.reveal",
            "admin_user.reset_password",
            "admin_user.disable",
            "admin_user.enable",
            "admin_user.password_change",
            "auth.login",
            "auth.logout",
        ] {
            assert!(
                actions.iter().any(|a| a == expected),
                "{expected} missing from {actions:?}"
            );
        }
        // Filters.
        let reveals = app
            .adm_get("/api/admin/audit?action=member.reveal", &t)
            .await;
        assert_eq!(reveals["total"], 1);
        let e = &reveals["entries"][0];
        assert_eq!(e["actor"], ADMIN_USER);
        assert_eq!(e["target_type"], "member");
        assert_eq!(e["target_id"], id.to_string());
        assert_eq!(e["ip"], "127.0.0.1");
        assert!(app
            .adm_audit_actions(&t, "action=admin_user.")
            .await
            .iter()
            .all(|a| a.starts_with("admin_user.")));
        assert!(app.adm_audit_actions(&t, "actor=nobody").await.is_empty());
        assert!(app
            .adm_audit_actions(&t, "since=2999-01-01T00:00:00Z")
            .await
            .is_empty());
        let r = app
            .adm_req(Method::GET, "/api/admin/audit?since=yesterday", &t)
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(r).await.0, StatusCode::BAD_REQUEST);
        // No secrets in the log: the reset password never appears.
        let all = app
            .adm_get("/api/admin/audit?page_size=500", &t)
            .await
            .to_string();
        assert!(!all.contains("another-password-2") && !all.contains("13912340001"));
        // Append-only: the database refuses UPDATE.
        assert!(sqlx::query("UPDATE audit_log SET actor = 'x'")
            .execute(app.state.db.pool())
            .await
            .is_err());
        // Retention purge is the one delete.
        let n = dangjian::platform::audit::purge_older_than(&app.state.db, i64::MAX)
            .await
            .unwrap();
        assert!(n > 5);
    });
}

#[backend_test]
async fn import_json_and_csv_then_reimport_updates_by_phone() {
    each_backend!(|app| {
        let t = app.admin_token().await;
        let r = app.adm_import_json(&t, roster()).await;
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            (v["created"].as_i64(), v["updated"].as_i64()),
            (Some(3), Some(0))
        );
        assert_eq!(v["org_units_created"].as_array().unwrap().len(), 2);

        let csv = format!(
            "\u{feff}name,phone,category,monthly_income_fen,org_unit,id_number\r\n\
             张三丰,13912340001,retired,300000,第一党支部,{}\r\n\
             \"赵, 六\",13912340004,unemployed,,第三党支部,\r\n",
            id_number("11010519800101123")
        );
        let r = app.adm_import_csv(&t, &csv).await;
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            (v["created"].as_i64(), v["updated"].as_i64()),
            (Some(1), Some(1))
        );
        assert_eq!(app.count("SELECT COUNT(*) FROM members").await, 4);

        let list = app.adm_get("/api/admin/members?q=13912340001", &t).await;
        assert_eq!(list["total"], 1);
        let m = &list["members"][0];
        assert_eq!(m["name"], "张三丰");
        assert_eq!(m["phone"], "139****0001");
        assert_eq!(m["category"], "retired");
        assert_eq!(m["monthly_income_fen"], Value::Null);
        assert_eq!(
            m["id_number"],
            format!("1101**********{}", &id_number("11010519800101123")[14..])
        );
        assert_eq!(m["masked"], true);
        let id = m["id"].as_i64().unwrap();

        let clear = app
            .adm_get(&format!("/api/admin/members/{id}?reveal=true"), &t)
            .await;
        assert_eq!(clear["member"]["phone"], "13912340001");
        assert_eq!(clear["member"]["monthly_income_fen"], 300000);
        assert_eq!(clear["member"]["id_number"], id_number("11010519800101123"));
        assert_eq!(clear["member"]["masked"], false);
        let masked = app.adm_get(&format!("/api/admin/members/{id}"), &t).await;
        assert_eq!(masked["member"]["phone"], "139****0001");
        // Roster reads are audited too, without the search text (a phone number).
        let reads = app.adm_get("/api/admin/audit?action=member.list", &t).await;
        assert_eq!(reads["total"], 1);
        let details = reads["entries"][0]["details"].to_string();
        assert!(
            details.contains("\"search\":\"phone\"") && !details.contains("13912340001"),
            "{details}"
        );
        assert!(details.contains(&id.to_string()));
        let one = app.adm_get("/api/admin/audit?action=member.read", &t).await;
        assert_eq!(one["total"], 1);

        let by_name = app.adm_get("/api/admin/members?q=%E8%B5%B5", &t).await; // 赵
        assert_eq!(by_name["total"], 1);
        let by_unit = app
            .adm_get(
                "/api/admin/members?org_unit=%E7%AC%AC%E4%B8%80%E5%85%9A%E6%94%AF%E9%83%A8",
                &t,
            )
            .await; // 第一党支部
        assert_eq!(by_unit["total"], 2);
        // The mini-program binding's lookup.
        let found = dangjian::members::store::find_by_phone(
            &app.state.db,
            &app.state.cipher,
            "13912340004",
        )
        .await
        .unwrap();
        assert_eq!(found.unwrap().name, "赵, 六");
    });
}

#[backend_test]
async fn bad_rows_are_listed_with_422_and_nothing_is_written() {
    each_backend!(|app| {
        let t = app.admin_token().await;
        let rows = json!([
            {"name": "好人", "phone": "13912340011", "category": "employed", "monthly_income_fen": 500000, "org_unit": "新支部"},
            {"name": "坏号码", "phone": "12345678901", "category": "employed", "monthly_income_fen": 500000, "org_unit": "新支部"},
            {"name": "坏类别", "phone": "13912340013", "category": "boss", "monthly_income_fen": 1, "org_unit": "新支部"},
            {"name": "重复", "phone": "13912340011", "category": "student", "org_unit": "新支部"},
            {"name": "坏身份证", "phone": "13912340015", "category": "student", "org_unit": "新支部", "id_number": "110105194912310021"},
            {"name": "缺收入", "phone": "13912340016", "category": "employed", "org_unit": "新支部"},
        ]);
        let r = app.adm_import_json(&t, rows).await;
        let (status, code, body) = error_of(r).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
        );
        let bad: Vec<i64> = body["error"]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["row"].as_i64().unwrap())
            .collect();
        assert_eq!(bad, vec![2, 3, 4, 5, 6], "{body}");
        let text = body.to_string();
        for secret in ["12345678901", "13912340011", "110105194912310021", "500000"] {
            assert!(!text.contains(secret), "{secret} echoed in {text}");
        }
        assert_eq!(app.count("SELECT COUNT(*) FROM members").await, 0);
        assert_eq!(app.count("SELECT COUNT(*) FROM org_units").await, 0);

        let r = app
            .adm_import_csv(&t, "name,phone,category,org_unit\n甲,13912340021,student,新支部\n乙,139,student,新支部\n")
            .await;
        let (_, code, body) = error_of(r).await;
        assert_eq!(code, "validation_failed");
        assert_eq!(body["error"]["rows"][0]["row"], 2);
        assert_eq!(body["error"]["rows"][0]["field"], "phone");
        assert_eq!(app.count("SELECT COUNT(*) FROM members").await, 0);

        let r = app
            .adm_req(Method::POST, "/api/admin/members", &t)
            .header("content-type", "text/plain")
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(r).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        // CSV may be larger than the 1 MiB JSON limit (5 MiB).
        let mut big = String::from("name,phone,category,org_unit\n");
        let mut i = 0;
        while big.len() < 1_100_000 {
            big.push_str(&format!(
                "成员{i}{},139{:08},student,大支部\n",
                "名".repeat(30),
                i
            ));
            i += 1;
        }
        let r = app.adm_import_csv(&t, &big).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(app.count("SELECT COUNT(*) FROM members").await, i);
    });
}

#[backend_test]
async fn secretaries_see_and_change_only_their_subtree() {
    each_backend!(|app| {
        let t = app.admin_token().await;
        app.create_org_unit("党委", None).await;
        app.create_org_unit("一支部", Some("党委")).await;
        app.create_org_unit("一支部学生组", Some("一支部")).await;
        app.create_org_unit("二支部", Some("党委")).await;
        let rows = json!([
            {"name": "甲", "phone": "13912340031", "category": "student", "org_unit": "一支部"},
            {"name": "乙", "phone": "13912340032", "category": "student", "org_unit": "一支部学生组"},
            {"name": "丙", "phone": "13912340033", "category": "employed", "monthly_income_fen": 600000, "org_unit": "二支部"},
        ]);
        assert_eq!(app.adm_import_json(&t, rows).await.status(), StatusCode::OK);
        let sec = app.user_token("sec_one", "secretary", Some("一支部")).await;

        let list = app.adm_get("/api/admin/members", &sec).await;
        let names: Vec<&str> = list["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["甲", "乙"]);
        let units = app.adm_get("/api/admin/org-units", &sec).await;
        assert_eq!(units["org_units"].as_array().unwrap().len(), 2);

        let all = app.adm_get("/api/admin/members", &t).await;
        let other = all["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "丙")
            .unwrap()["id"]
            .as_i64()
            .unwrap();
        let own = all["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "乙")
            .unwrap()["id"]
            .as_i64()
            .unwrap();
        let r = app
            .adm_req(
                Method::GET,
                &format!("/api/admin/members/{other}?reveal=true"),
                &sec,
            )
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(r).await.0, StatusCode::NOT_FOUND);
        let clear = app
            .adm_get(&format!("/api/admin/members/{own}?reveal=true"), &sec)
            .await;
        assert_eq!(clear["member"]["phone"], "13912340032");

        // Writes outside the subtree, to unknown units, or over an outside member: refused, nothing written.
        let r = app
            .adm_import_json(
                &sec,
                json!([{"name": "丁", "phone": "13912340034", "category": "student", "org_unit": "二支部"}]),
            )
            .await;
        assert_eq!(error_of(r).await.2["error"]["rows"][0]["field"], "org_unit");
        let r = app
            .adm_import_json(
                &sec,
                json!([{"name": "丁", "phone": "13912340034", "category": "student", "org_unit": "不存在"}]),
            )
            .await;
        assert_eq!(error_of(r).await.1, "validation_failed");
        let r = app
            .adm_import_json(
                &sec,
                json!([{"name": "丙", "phone": "13912340033", "category": "student", "org_unit": "一支部"}]),
            )
            .await;
        // The answer must not reveal that this phone is a Party member's elsewhere.
        let refused = error_of(r).await.2;
        assert_eq!(refused["error"]["rows"][0]["field"], "row", "{refused}");
        assert_eq!(
            refused["error"]["rows"][0]["message"],
            "this row needs an administrator"
        );
        assert!(!refused.to_string().contains("member"), "{refused}");
        assert_eq!(
            app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'member.import_refused'")
                .await,
            1
        );
        let r = app
            .adm_import_json(
                &sec,
                json!([{"name": "戊", "phone": "13912340035", "category": "student", "org_unit": "一支部学生组"}]),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(app.count("SELECT COUNT(*) FROM members").await, 4);
        assert_eq!(app.count("SELECT COUNT(*) FROM org_units").await, 4);
    });
}

fn cell_strings(row: &sqlx::any::AnyRow) -> Vec<String> {
    (0..row.len())
        .map(|i| {
            row.try_get::<Option<String>, _>(i)
                .map(|v| v.unwrap_or_default())
                .or_else(|_| {
                    row.try_get::<Option<i64>, _>(i)
                        .map(|v| v.map(|n| n.to_string()).unwrap_or_default())
                })
                .unwrap_or_default()
        })
        .collect()
}

#[backend_test]
async fn raw_tables_hold_no_clear_personal_data() {
    each_backend!(|app| {
        let t = app.admin_token().await;
        assert_eq!(
            app.adm_import_json(&t, roster()).await.status(),
            StatusCode::OK
        );
        let id = id_number("11010519491231002");
        let phones = ["13912340001", "13912340002", "13912340003"];
        for table in ["members", "audit_log"] {
            let rows = sqlx::query(&format!("SELECT * FROM {table}"))
                .fetch_all(app.state.db.pool())
                .await
                .unwrap();
            assert!(!rows.is_empty());
            for row in &rows {
                for cell in cell_strings(row) {
                    for p in phones {
                        assert!(!cell.contains(p), "{table}: clear phone");
                    }
                    assert!(!cell.contains(&id), "{table}: clear ID number");
                    assert!(
                        cell != "812345" && cell != "456789" && !cell.contains("\"812345\""),
                        "{table}: clear income"
                    );
                }
            }
        }
        let rows = sqlx::query("SELECT phone_enc, id_number_enc, monthly_income_enc FROM members")
            .fetch_all(app.state.db.pool())
            .await
            .unwrap();
        for r in &rows {
            let enc: String = r.get(0);
            assert!(enc.starts_with(&format!("v2:{}:", app.state.cipher.current_key_id())));
        }
        if matches!(app.backend, crate::helpers::Backend::Sqlite) {
            // The SQLite file and its WAL, byte for byte.
            let dir = app.state.settings.database_url.clone();
            let path = secrecy::ExposeSecret::expose_secret(&dir)
                .trim_start_matches("sqlite://")
                .split('?')
                .next()
                .unwrap()
                .to_owned();
            let mut bytes = std::fs::read(&path).unwrap();
            bytes.extend(std::fs::read(format!("{path}-wal")).unwrap_or_default());
            let text = String::from_utf8_lossy(&bytes);
            assert!(text.contains("张三"), "sanity: the file holds the roster");
            for p in phones {
                assert!(!text.contains(p), "clear phone in the SQLite file");
            }
            assert!(!text.contains(&id));
        }
    });
}

#[backend_test]
async fn rotate_key_reencrypts_every_value_under_the_new_key() {
    use base64::Engine;
    let k1 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let spawn = || Spawn {
        overrides: vec![("data_key", k1.clone())],
        ..Default::default()
    };
    each_backend!(spawn = spawn(), |app| {
        let t = app.admin_token().await;
        assert_eq!(
            app.adm_import_json(&t, roster()).await.status(),
            StatusCode::OK
        );
        let new = DataCipher::new(&[9u8; 32], &[[7u8; 32]]);
        assert_ne!(new.current_key_id(), app.state.cipher.current_key_id());
        // During the rotation window lookups still match through the old index.
        assert!(
            dangjian::members::store::find_by_phone(&app.state.db, &new, "13912340002")
                .await
                .unwrap()
                .is_some()
        );
        let columns = dangjian::startup::sealed_columns();
        let values = app
            .count(
                "SELECT COUNT(phone_enc) + COUNT(id_number_enc) + COUNT(monthly_income_enc) FROM members",
            )
            .await as u64;
        assert!(values > 3, "phones and incomes: {values}");
        assert_eq!(
            dangjian::members::cli::rotate_key(&app.state.db, &new, &columns)
                .await
                .unwrap(),
            (values, 3),
            "every value re-sealed, every phone index rewritten"
        );
        assert_eq!(
            dangjian::members::cli::rotate_key(&app.state.db, &new, &columns)
                .await
                .unwrap(),
            (0, 0),
            "idempotent"
        );
        let only_new = DataCipher::new(&[9u8; 32], &[]);
        let rows =
            sqlx::query("SELECT id, phone_enc, id_number_enc, monthly_income_enc FROM members")
                .fetch_all(app.state.db.pool())
                .await
                .unwrap();
        use dangjian::members::store::{ID_NUMBER, INCOME, PHONE};
        for r in &rows {
            let id: i64 = r.get(0);
            for (i, col) in [(1, PHONE), (2, ID_NUMBER), (3, INCOME)] {
                if let Some(v) = r.get::<Option<String>, _>(i) {
                    assert!(!only_new.needs_rotation(&v));
                    only_new.open(col.at(id), &v).unwrap();
                }
            }
        }
        let m = dangjian::members::store::find_by_phone(&app.state.db, &only_new, "13912340002")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.name, "李四");
        assert_eq!(
            app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'pii.rotate_key'")
                .await,
            2
        );
    });
}

#[backend_test]
async fn cors_is_closed_unless_configured() {
    each_backend!(|app| {
        let r = app
            .http
            .request(Method::OPTIONS, app.url("/api/admin/me"))
            .header("origin", "https://evil.example")
            .header("access-control-request-method", "GET")
            .send()
            .await
            .unwrap();
        assert!(r.headers().get("access-control-allow-origin").is_none());
    });
    let spawn = || Spawn {
        overrides: vec![("cors_allowed_origins", "https://console.example.edu".into())],
        ..Default::default()
    };
    each_backend!(spawn = spawn(), |app| {
        let r = app
            .http
            .request(Method::OPTIONS, app.url("/api/admin/me"))
            .header("origin", "https://console.example.edu")
            .header("access-control-request-method", "GET")
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.headers().get("access-control-allow-origin").unwrap(),
            "https://console.example.edu"
        );
        // The preflight is answered by the CORS layer, and still counted.
        let metrics = app.metrics_text().await;
        assert!(
            metrics.contains(r#"dangjian_http_requests_total{method="OPTIONS",route="/api/admin/me",status="200"} 1"#),
            "{metrics}"
        );
    });
}

#[backend_test]
async fn mp_api_is_rate_limited_per_client_ip_behind_trusted_proxies_only() {
    let spawn = |trusted: &str| Spawn {
        overrides: vec![
            ("rate_limit_mp_per_minute", "3".into()),
            ("trusted_proxies", trusted.into()),
        ],
        ..Default::default()
    };
    // Untrusted peer: X-Forwarded-For is ignored, so rotating it does not escape the limit.
    each_backend!(spawn = spawn(""), |app| {
        let mut statuses = Vec::new();
        for i in 0..4 {
            let r = app
                .http
                .get(app.url("/api/mp/banners"))
                .header("x-forwarded-for", format!("198.51.100.{i}"))
                .send()
                .await
                .unwrap();
            statuses.push(r.status());
        }
        assert_eq!(statuses[3], StatusCode::TOO_MANY_REQUESTS, "{statuses:?}");
        assert!(statuses[..3]
            .iter()
            .all(|s| *s != StatusCode::TOO_MANY_REQUESTS));
    });
    // Trusted proxy: each forwarded client has its own window.
    each_backend!(spawn = spawn("127.0.0.1/32"), |app| {
        for i in 0..4 {
            let r = app
                .http
                .get(app.url("/api/mp/banners"))
                .header("x-forwarded-for", format!("198.51.100.{i}"))
                .send()
                .await
                .unwrap();
            assert_ne!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        }
        for _ in 0..3 {
            app.http
                .get(app.url("/api/mp/banners"))
                .header("x-forwarded-for", "203.0.113.5")
                .send()
                .await
                .unwrap();
        }
        let r = app
            .http
            .get(app.url("/api/mp/banners"))
            .header("x-forwarded-for", "203.0.113.5")
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(r).await.1, "rate_limited");
    });
}

#[tokio::test]
async fn first_admin_is_created_once_and_the_dev_data_key_is_generated_once() {
    let dir = tempfile::tempdir().unwrap();
    let settings = dangjian::platform::config::Settings::with_overrides([
        (
            "database_url",
            format!("sqlite://{}/f.db?mode=rwc", dir.path().display()),
        ),
        ("data_dir", dir.path().join("data").display().to_string()),
    ])
    .unwrap();
    assert!(settings.admin_password.is_none() && settings.data_key.is_none());
    let db = dangjian::platform::db::Db::connect(&settings.database_url)
        .await
        .unwrap();
    db.migrate().await.unwrap();
    dangjian::auth::store::ensure_first_admin(&db, &settings, 1)
        .await
        .unwrap();
    dangjian::auth::store::ensure_first_admin(&db, &settings, 2)
        .await
        .unwrap();
    let n: i64 =
        sqlx::query("SELECT COUNT(*) FROM admin_users WHERE username = 'admin' AND role = 'admin'")
            .fetch_one(db.pool())
            .await
            .unwrap()
            .get(0);
    assert_eq!(n, 1);
    let hash: String = sqlx::query("SELECT password_hash FROM admin_users")
        .fetch_one(db.pool())
        .await
        .unwrap()
        .get(0);
    assert!(hash.starts_with("$argon2id$"));

    let a = DataCipher::from_settings(&settings).unwrap();
    let b = DataCipher::from_settings(&settings).unwrap();
    assert_eq!(
        a.current_key_id(),
        b.current_key_id(),
        "the generated key is reused"
    );
    let slot = dangjian::members::store::PHONE.at(1);
    assert_eq!(b.open(slot, &a.seal(slot, "x")).unwrap(), "x");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("data/data.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    db.close().await;
}

#[backend_test]
async fn key_rotation_never_reverts_an_edit_made_after_it_read_the_row() {
    each_backend!(|app| {
        let t = app.admin_token().await;
        let r = app.adm_import_json(&t, roster()).await;
        assert_eq!(r.status(), StatusCode::OK);
        // The re-seal pass reads a value (here: one still in the legacy unbound format) ...
        use dangjian::members::store::INCOME;
        let (id, seen): (i64, String) = {
            let r = sqlx::query("SELECT id, monthly_income_enc FROM members WHERE monthly_income_enc IS NOT NULL ORDER BY id LIMIT 1")
                .fetch_one(app.state.db.pool())
                .await
                .unwrap();
            (r.get(0), r.get(1))
        };
        // ... an import changes the same member meanwhile ...
        let edited = json!([{"name": "张三", "phone": "13912340001", "category": "employed",
                             "monthly_income_fen": 999_999, "org_unit": "第一党支部"}]);
        assert_eq!(
            app.adm_import_json(&t, edited).await.status(),
            StatusCode::OK
        );
        // ... and the pass's write of what it read is refused, so the edit stays.
        let fresh = app.state.cipher.reseal(INCOME.at(id), &seen).unwrap();
        let mut tx = app.state.db.begin_write().await.unwrap();
        let written =
            dangjian::platform::db::sealed::rewrite_one(&mut tx, INCOME, id, &seen, &fresh)
                .await
                .unwrap();
        tx.commit().await.unwrap();
        assert!(
            !written,
            "a row changed since the read must not be overwritten"
        );
        let before = dangjian::members::store::by_id(&app.state.db, id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(before.name, "张三");
        let now = dangjian::members::store::by_id(&app.state.db, before.id)
            .await
            .unwrap()
            .unwrap();
        let income = app
            .state
            .cipher
            .open(INCOME.at(id), now.monthly_income_enc.as_deref().unwrap())
            .unwrap();
        assert_eq!(income, "999999");
    });
}

async fn member_id_of(app: &crate::helpers::TestApp, name: &str) -> i64 {
    sqlx::query("SELECT id FROM members WHERE name = $1")
        .bind(name)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap()
        .get(0)
}

async fn raw_column(app: &crate::helpers::TestApp, column: &str, id: i64) -> Option<String> {
    sqlx::query(&format!("SELECT {column} FROM members WHERE id = $1"))
        .bind(id)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap()
        .get(0)
}

async fn set_raw_column(app: &crate::helpers::TestApp, column: &str, id: i64, value: Option<&str>) {
    sqlx::query(&format!("UPDATE members SET {column} = $1 WHERE id = $2"))
        .bind(value)
        .bind(id)
        .execute(app.state.db.pool())
        .await
        .unwrap();
}

/// Issue 13 item 13: someone with write access to the database swaps ciphertexts between rows
/// or columns; the swapped values no longer open, and nothing of them is shown.
#[backend_test]
async fn personal_data_ciphertexts_are_bound_to_table_column_and_row() {
    each_backend!(|app| {
        let t = app.admin_token().await;
        assert_eq!(
            app.adm_import_json(&t, roster()).await.status(),
            StatusCode::OK
        );
        let (zhang, li) = (
            member_id_of(&app, "张三").await,
            member_id_of(&app, "李四").await,
        );
        let reveal = |id: i64| {
            app.adm_req(
                Method::GET,
                &format!("/api/admin/members/{id}?reveal=true"),
                &t,
            )
            .send()
        };
        let r = reveal(zhang).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "untouched rows open");
        // Li's phone copied into Zhang's row: refused, and Li's number is not shown as Zhang's.
        let li_phone = raw_column(&app, "phone_enc", li).await;
        set_raw_column(&app, "phone_enc", zhang, li_phone.as_deref()).await;
        let r = reveal(zhang).await.unwrap();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = r.text().await.unwrap();
        assert!(body.contains("\"code\":\"internal\""), "{body}");
        assert!(
            !body.contains("13912340002") && !body.contains("0002"),
            "{body}"
        );
        assert_eq!(
            reveal(li).await.unwrap().status(),
            StatusCode::OK,
            "Li's own row still opens"
        );
        // Zhang's ID number moved into his income column of the same row: refused as well.
        let id_number = raw_column(&app, "id_number_enc", zhang).await;
        set_raw_column(&app, "monthly_income_enc", li, id_number.as_deref()).await;
        assert_eq!(
            reveal(li).await.unwrap().status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        // The server keeps serving; the masked list marks the damaged value instead of failing.
        let list = app.adm_get("/api/admin/members", &t).await;
        let items = list["members"].as_array().unwrap();
        let zhang_row = items.iter().find(|m| m["id"] == zhang).unwrap();
        assert_eq!(zhang_row["phone"], dangjian::members::admin::UNREADABLE);
        let li_row = items.iter().find(|m| m["id"] == li).unwrap();
        assert_eq!(li_row["phone"], "139****0002");
    });
}

/// Issue 13 item 13, the migration path: values written before the binding (`v1`, no associated
/// data) are read, and the re-seal pass (run by `rotate-key` and by each worker at start)
/// rewrites them bound to their rows, in place.
#[backend_test]
async fn values_written_before_the_binding_are_resealed_in_place() {
    each_backend!(|app| {
        let t = app.admin_token().await;
        assert_eq!(
            app.adm_import_json(&t, roster()).await.status(),
            StatusCode::OK
        );
        let zhang = member_id_of(&app, "张三").await;
        let cipher = &app.state.cipher;
        let legacy_phone = cipher.legacy_unbound("13912340001");
        let legacy_income = cipher.legacy_unbound("812345");
        set_raw_column(&app, "phone_enc", zhang, Some(&legacy_phone)).await;
        set_raw_column(&app, "monthly_income_enc", zhang, Some(&legacy_income)).await;
        let columns = dangjian::startup::sealed_columns();
        let db = &app.state.db;
        use dangjian::platform::db::sealed;
        assert_eq!(sealed::stale_count(db, cipher, &columns).await.unwrap(), 2);
        // Still readable before the pass.
        let m = app
            .adm_get(&format!("/api/admin/members/{zhang}?reveal=true"), &t)
            .await;
        assert_eq!(m["member"]["phone"], "13912340001");
        assert_eq!(m["member"]["monthly_income_fen"], 812_345);
        let r = sealed::reseal_all(db, cipher, &columns).await.unwrap();
        assert_eq!(r.rewritten, 2);
        assert_eq!(sealed::stale_count(db, cipher, &columns).await.unwrap(), 0);
        let phone = raw_column(&app, "phone_enc", zhang).await.unwrap();
        assert!(phone.starts_with("v2:"), "{phone}");
        use dangjian::members::store::{ID_NUMBER, PHONE};
        assert_eq!(cipher.open(PHONE.at(zhang), &phone).unwrap(), "13912340001");
        assert!(
            cipher.open(PHONE.at(zhang + 1), &phone).is_err(),
            "now bound to its row"
        );
        assert!(
            cipher.open(ID_NUMBER.at(zhang), &phone).is_err(),
            "and to its column"
        );
        let m = app
            .adm_get(&format!("/api/admin/members/{zhang}?reveal=true"), &t)
            .await;
        assert_eq!(m["member"]["phone"], "13912340001");
        assert_eq!(m["member"]["monthly_income_fen"], 812_345);
        assert_eq!(
            sealed::reseal_all(db, cipher, &columns)
                .await
                .unwrap()
                .rewritten,
            0
        );
    });
}
