//! Party dues end to end, on every backend: assessment (idempotent, scoped, the rules' boundary
//! values), adjustments and settled months, paying through the fake WeChat Pay (paySign
//! verified), notifications counted exactly once under a storm (two app instances on one
//! database), every tampering refused with nothing changed, mismatches as incidents, the
//! re-query and close jobs, reconciliation, the trade bill and the ledger.

use dangjian_test_macros::backend_test;

use std::time::{Duration, Instant};

use base64::Engine as _;
use dangjian::{
    dues::rules::Month,
    platform::clock::{Clock, ManualClock},
};
use futures_util::{stream, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::Row;
use wechat::{
    fake::{test_keys, NotificationTamper},
    pay::{self, MerchantKey, RsaPublicKey, Transaction},
};

use crate::{
    each_backend,
    helpers::{backends, dues_trade_bill_csv, Spawn, TestApp},
};

// ---------------------------------------------------------------- fixtures

fn now_month() -> Month {
    Month::of_unix_ms(time::OffsetDateTime::now_utc().unix_timestamp() * 1000)
}

fn spawn() -> Spawn {
    TestApp::dues_spawn(&[])
}

/// The roster around the brackets' bounds. Returns nothing; names are unique.
async fn roster(app: &TestApp) {
    let m = now_month();
    let first_day = format!("{m}-01");
    let next_month = format!("{}-01", m.plus(1));
    app.dues_import(json!([
        {"name": "王一", "phone": "13800000001", "category": "employed", "monthly_income_fen": 812_345, "org_unit": "第一党支部"},
        {"name": "王二", "phone": "13800000002", "category": "employed", "monthly_income_fen": 300_000, "org_unit": "第一党支部"},
        {"name": "王三", "phone": "13800000003", "category": "employed", "monthly_income_fen": 300_001, "org_unit": "第一党支部"},
        {"name": "王四", "phone": "13800000004", "category": "employed", "monthly_income_fen": 500_000, "org_unit": "第一党支部"},
        {"name": "王五", "phone": "13800000005", "category": "employed", "monthly_income_fen": 1_000_000, "org_unit": "第一党支部"},
        {"name": "李一", "phone": "13800000011", "category": "retired", "monthly_income_fen": 600_000, "org_unit": "第二党支部"},
        {"name": "赵一", "phone": "13800000021", "category": "student", "org_unit": "第二党支部", "party_status": "probationary", "joined_at": first_day},
        {"name": "赵二", "phone": "13800000022", "category": "unemployed", "org_unit": "第二党支部", "party_status": "probationary", "joined_at": next_month},
    ]))
    .await;
}

/// The expected bill of each assessed member this month: (name, amount, rule).
const EXPECTED: [(&str, i64, &str); 7] = [
    ("王一", 12_185, "employed_1_5pct"),
    ("王二", 1_500, "employed_0_5pct"),
    ("王三", 3_000, "employed_1pct"),
    ("王四", 5_000, "employed_1pct"),
    ("王五", 15_000, "employed_1_5pct"),
    ("李一", 6_000, "retired_1pct"),
    ("赵一", 20, "student_flat"),
];

async fn assess(app: &TestApp, token: &str, month: &str) -> (StatusCode, Value) {
    app.dues_call(
        Method::POST,
        "/api/admin/dues/assessments",
        Some(token),
        Some(json!({"month": month})),
    )
    .await
}

async fn get(app: &TestApp, token: &str, path: &str) -> Value {
    let (status, v) = app.dues_call(Method::GET, path, Some(token), None).await;
    assert_eq!(status, StatusCode::OK, "{path}: {v}");
    v
}

fn assert_error(status: StatusCode, v: &Value, want: StatusCode, code: &str) {
    assert_eq!(status, want, "{v}");
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(v["error"]["message"].is_string(), "{v}");
}

/// Counts of every dues table, to prove that a refused request changed nothing.
async fn snapshot(app: &TestApp) -> Vec<i64> {
    let mut v = Vec::new();
    for t in [
        "dues_months",
        "dues_bills",
        "dues_orders",
        "dues_payments",
        "dues_notifications",
        "dues_incidents",
        "dues_adjustments",
        "dues_profiles",
        "dues_tradebills",
    ] {
        v.push(app.count(&format!("SELECT COUNT(*) FROM {t}")).await);
    }
    v.push(
        app.count("SELECT COUNT(*) FROM dues_bills WHERE status = 'paid'")
            .await,
    );
    v.push(
        app.count("SELECT CAST(COALESCE(SUM(amount_fen), 0) AS BIGINT) FROM dues_bills")
            .await,
    );
    v
}

async fn bill_id_of(app: &TestApp, name: &str, month: Month) -> i64 {
    let token = app.admin_token().await;
    let v = get(
        app,
        &token,
        &format!("/api/admin/dues/bills?month={month}&page_size=500"),
    )
    .await;
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["member"] == name)
        .unwrap_or_else(|| panic!("no bill of {name}: {v}"))["id"]
        .as_i64()
        .unwrap()
}

async fn bill_status(app: &TestApp, id: i64) -> String {
    sqlx::query("SELECT status FROM dues_bills WHERE id = $1")
        .bind(id)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap()
        .get(0)
}

async fn out_trade_no(app: &TestApp, bill_id: i64) -> String {
    sqlx::query("SELECT out_trade_no FROM dues_orders WHERE bill_id = $1 ORDER BY id DESC")
        .bind(bill_id)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap()
        .get(0)
}

async fn pay_bill(app: &TestApp, token: &str, bill_id: i64) -> (StatusCode, Value) {
    app.dues_call(
        Method::POST,
        &format!("/api/mp/dues/{bill_id}/pay"),
        Some(token),
        None,
    )
    .await
}

/// Roster, this month assessed, 王一 bound and paying: (member token, bill id, out_trade_no).
async fn paying_member(app: &TestApp) -> (String, i64, String) {
    roster(app).await;
    let admin = app.admin_token().await;
    let (status, v) = assess(app, &admin, &now_month().to_string()).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let token = app.dues_member_token("wang1", "王一", "13800000001").await;
    let bill = bill_id_of(app, "王一", now_month()).await;
    let (status, v) = pay_bill(app, &token, bill).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let no = out_trade_no(app, bill).await;
    (token, bill, no)
}

async fn reconciliation(app: &TestApp, month: Month) -> Value {
    let token = app.admin_token().await;
    get(
        app,
        &token,
        &format!("/api/admin/dues/reconciliation?month={month}"),
    )
    .await
}

/// A notification signed by the fake platform key over `body` at `timestamp`.
fn signed_headers(body: &str, timestamp: i64) -> Vec<(String, String)> {
    let key = MerchantKey::from_pkcs8_pem(test_keys::PLATFORM_PRIVATE_KEY_PEM).unwrap();
    let ts = timestamp.to_string();
    let nonce = "n0nceN0nceN0nceN0nceN0nceN0nce12";
    let sig = key
        .sign(&pay::answer_message(&ts, nonce, body.as_bytes()))
        .unwrap();
    vec![
        ("Wechatpay-Timestamp".into(), ts),
        ("Wechatpay-Nonce".into(), nonce.into()),
        ("Wechatpay-Serial".into(), test_keys::PUB_KEY_ID.into()),
        ("Wechatpay-Signature".into(), sig),
        (
            "Wechatpay-Signature-Type".into(),
            "WECHATPAY2-SHA256-RSA2048".into(),
        ),
        ("Content-Type".into(), "application/json".into()),
    ]
}

/// A correctly signed and encrypted notification carrying `tx` as WeChat Pay would send it.
fn crafted_notification(tx: &Transaction, id: &str) -> (Vec<(String, String)>, String) {
    let key = pay::ApiV3Key::new(test_keys::API_V3_KEY).unwrap();
    let nonce = "abcdefghijkl";
    let ct = pay::encrypt_aes_256_gcm(&key, nonce, "transaction", &serde_json::to_vec(tx).unwrap())
        .unwrap();
    let body = json!({
        "id": id, "create_time": "2026-11-05T10:00:00+08:00", "resource_type": "encrypt-resource",
        "event_type": "TRANSACTION.SUCCESS", "summary": "支付成功",
        "resource": {"original_type": "transaction", "algorithm": "AEAD_AES_256_GCM",
                     "ciphertext": ct, "associated_data": "transaction", "nonce": nonce},
    })
    .to_string();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    (signed_headers(&body, now), body)
}

async fn wait_until<F, Fut>(what: &str, within: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------- assessment

#[tokio::test]
async fn assessment_makes_one_bill_per_eligible_member_with_its_rule_and_a_second_run_creates_nothing(
) {
    each_backend!(spawn = spawn(), |app| {
        roster(&app).await;
        let token = app.admin_token().await;
        let month = now_month().to_string();
        let (status, v) = assess(&app, &token, &month).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["month"], month);
        assert_eq!(v["created"], 7, "{v}");
        assert_eq!(v["existing"], 0);
        let skipped = v["skipped"].as_array().unwrap();
        assert_eq!(skipped.len(), 1, "{v}");
        assert_eq!(skipped[0]["reason"], "not_yet_member");
        let total: i64 = EXPECTED.iter().map(|e| e.1).sum();
        assert_eq!(v["created_total_fen"], total);

        let bills = get(
            &app,
            &token,
            &format!("/api/admin/dues/bills?month={month}"),
        )
        .await;
        assert_eq!(bills["total"], 7);
        for (name, amount, rule) in EXPECTED {
            let b = bills["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|b| b["member"] == name)
                .unwrap_or_else(|| panic!("{name}: {bills}"));
            assert_eq!(b["amount_fen"], amount, "{name}");
            assert_eq!(b["rule"], rule, "{name}");
            assert_eq!(b["standard_rule"], rule, "{name}");
            assert_eq!(b["status"], "unpaid", "{name}");
            assert!(b.get("base_fen").is_none(), "the base is not shown: {b}");
        }
        // The base is kept, encrypted like the roster's income.
        let bases: Vec<Option<String>> = sqlx::query("SELECT base_enc FROM dues_bills")
            .fetch_all(app.state.db.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(bases.iter().filter(|b| b.is_some()).count(), 6);
        assert!(bases
            .iter()
            .flatten()
            .all(|b| !b.contains("812345") && b.starts_with("v2:")));

        let before = snapshot(&app).await;
        let (status, again) = assess(&app, &token, &month).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            (again["created"].as_i64(), again["existing"].as_i64()),
            (Some(0), Some(7))
        );
        assert_eq!(snapshot(&app).await, before, "a second run changes nothing");
        assert_eq!(
            app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'dues_month.assess'")
                .await,
            2
        );
        let months = get(&app, &token, "/api/admin/dues/months").await;
        assert_eq!(months["months"][0]["month"], month);
        assert_eq!(months["months"][0]["status"], "open");
    });
}

#[backend_test]
async fn assessment_of_a_malformed_or_out_of_window_month_is_refused_and_changes_nothing() {
    each_backend!(spawn = spawn(), |app| {
        roster(&app).await;
        let token = app.admin_token().await;
        let before = snapshot(&app).await;
        for month in ["2026-13", "2026-1", "11-2026", "", "2026-11-01", "abc"] {
            let (status, v) = assess(&app, &token, month).await;
            assert_error(
                status,
                &v,
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
            );
        }
        let too_old = now_month().plus(-7).to_string();
        let (status, v) = assess(&app, &token, &too_old).await;
        assert_error(
            status,
            &v,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
        let too_far = now_month().plus(2).to_string();
        let (status, v) = assess(&app, &token, &too_far).await;
        assert_error(
            status,
            &v,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
        let (status, v) = app
            .dues_call(
                Method::POST,
                "/api/admin/dues/assessments",
                Some(&token),
                Some(json!({"month": 202611})),
            )
            .await;
        assert_error(
            status,
            &v,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
        let resp = app
            .http
            .post(app.url("/api/admin/dues/assessments"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body("{\"month\":")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], "bad_json");
        // Without the permission: editors may not.
        let editor = app.user_token("editor1", "editor", None).await;
        let (status, _) = assess(&app, &editor, &now_month().to_string()).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(snapshot(&app).await, before);
    });
}

#[backend_test]
async fn secretaries_assess_and_see_only_their_subtree() {
    each_backend!(spawn = spawn(), |app| {
        app.create_org_unit("第一党支部", None).await;
        app.create_org_unit("第一党支部一组", Some("第一党支部"))
            .await;
        app.create_org_unit("第二党支部", None).await;
        app.dues_import(json!([
            {"name": "甲", "phone": "13900000001", "category": "student", "org_unit": "第一党支部"},
            {"name": "乙", "phone": "13900000002", "category": "student", "org_unit": "第一党支部一组"},
            {"name": "丙", "phone": "13900000003", "category": "student", "org_unit": "第二党支部"},
        ]))
        .await;
        let sec = app
            .user_token("sec1", "secretary", Some("第一党支部"))
            .await;
        let month = now_month().to_string();
        let (status, v) = assess(&app, &sec, &month).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["created"], 2);
        let bills = get(&app, &sec, &format!("/api/admin/dues/bills?month={month}")).await;
        let names: Vec<&str> = bills["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["member"].as_str().unwrap())
            .collect();
        assert_eq!(names.len(), 2);
        assert!(names.contains(&"甲") && names.contains(&"乙"), "{names:?}");
        let sub = get(
            &app,
            &sec,
            &format!("/api/admin/dues/bills?month={month}&org_unit=第一党支部一组"),
        )
        .await;
        assert_eq!(sub["total"], 1);
        let (status, v) = app
            .dues_call(
                Method::GET,
                &format!("/api/admin/dues/bills?month={month}&org_unit=第二党支部"),
                Some(&sec),
                None,
            )
            .await;
        assert_error(status, &v, StatusCode::FORBIDDEN, "forbidden");
        // The admin's run adds the rest; the secretary's bills are not made twice.
        let admin = app.admin_token().await;
        let (_, v) = assess(&app, &admin, &month).await;
        assert_eq!(
            (v["created"].as_i64(), v["existing"].as_i64()),
            (Some(1), Some(2))
        );
        let r = get(
            &app,
            &sec,
            &format!("/api/admin/dues/reconciliation?month={month}"),
        )
        .await;
        assert_eq!(r["bill_count"], 2, "{r}");
        let r = get(
            &app,
            &admin,
            &format!("/api/admin/dues/reconciliation?month={month}"),
        )
        .await;
        assert_eq!(r["bill_count"], 3, "{r}");
        // Settling is the organisation's: not a secretary's.
        let (status, v) = app
            .dues_call(
                Method::POST,
                &format!("/api/admin/dues/months/{month}/settle"),
                Some(&sec),
                None,
            )
            .await;
        assert_error(status, &v, StatusCode::FORBIDDEN, "forbidden");
    });
}

#[backend_test]
async fn exemptions_and_voluntary_amounts_shape_the_next_assessment() {
    each_backend!(spawn = spawn(), |app| {
        roster(&app).await;
        let token = app.admin_token().await;
        let ids: Vec<(String, i64)> = sqlx::query("SELECT name, id FROM members")
            .fetch_all(app.state.db.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let id = |n: &str| ids.iter().find(|(name, _)| name == n).unwrap().1;
        let put = |member: i64, body: Value| {
            let app = &app;
            let token = token.clone();
            async move {
                app.dues_call(
                    Method::PUT,
                    &format!("/api/admin/dues/members/{member}/profile"),
                    Some(&token),
                    Some(body),
                )
                .await
            }
        };
        let before = snapshot(&app).await;
        for bad in [
            json!({"voluntary_fen": 0}),
            json!({"voluntary_fen": -5}),
            json!({"exempt_reason": "  "}),
            json!({"exempt": true}),
        ] {
            let (status, v) = put(id("王二"), bad.clone()).await;
            assert_error(
                status,
                &v,
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
            );
        }
        let (status, v) = put(999_999, json!({"voluntary_fen": 100})).await;
        assert_error(status, &v, StatusCode::NOT_FOUND, "not_found");
        assert_eq!(snapshot(&app).await, before);

        let (status, v) = put(
            id("王二"),
            json!({"exempt_reason": "重病住院，经支部研究同意免交"}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let (status, _) = put(id("王三"), json!({"voluntary_fen": 10_000})).await;
        assert_eq!(status, StatusCode::OK);
        // The audit keeps that there is an exemption, not its (possibly medical) reason.
        let details: Vec<String> =
            sqlx::query("SELECT details FROM audit_log WHERE action = 'dues_profile.update'")
                .fetch_all(app.state.db.pool())
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
        assert_eq!(details.len(), 2);
        assert!(details.iter().all(|d| !d.contains("重病")), "{details:?}");

        let month = now_month();
        let (_, v) = assess(&app, &token, &month.to_string()).await;
        assert_eq!(v["exempt"], 1, "{v}");
        let bills = get(
            &app,
            &token,
            &format!("/api/admin/dues/bills?month={month}"),
        )
        .await;
        let find = |n: &str| {
            bills["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|b| b["member"] == n)
                .unwrap()
                .clone()
        };
        let exempt = find("王二");
        assert_eq!(
            (
                exempt["amount_fen"].as_i64(),
                exempt["rule"].as_str(),
                exempt["status"].as_str()
            ),
            (Some(0), Some("exempt"), Some("exempt"))
        );
        assert_eq!(exempt["standard_fen"], 1_500);
        assert!(exempt["note"].as_str().unwrap().contains("重病"));
        let voluntary = find("王三");
        assert_eq!(
            (voluntary["amount_fen"].as_i64(), voluntary["rule"].as_str()),
            (Some(10_000), Some("voluntary"))
        );
        assert_eq!(voluntary["standard_rule"], "employed_1pct");
        // The exempt member sees no bill to pay, and cannot pay it.
        let member = app.dues_member_token("wang2", "王二", "13800000002").await;
        let (_, mine) = app
            .dues_call(Method::GET, "/api/mp/dues", Some(&member), None)
            .await;
        assert_eq!(mine["bills"], json!([]));
        let (status, v) = pay_bill(&app, &member, exempt["id"].as_i64().unwrap()).await;
        assert_error(status, &v, StatusCode::CONFLICT, "nothing_to_pay");
        let r = reconciliation(&app, month).await;
        assert_eq!(
            (
                r["bill_count"].as_i64(),
                r["exempt_count"].as_i64(),
                r["unpaid_count"].as_i64()
            ),
            (Some(7), Some(1), Some(6))
        );
    });
}

// ---------------------------------------------------------------- adjustments and months

#[backend_test]
async fn adjustments_need_a_reason_are_audited_and_a_paid_bill_is_never_adjusted() {
    each_backend!(spawn = spawn(), |app| {
        roster(&app).await;
        let token = app.admin_token().await;
        let month = now_month();
        assess(&app, &token, &month.to_string()).await;
        let bill = bill_id_of(&app, "王二", month).await;
        let adjust = |id: i64, body: Value| {
            let app = &app;
            let token = token.clone();
            async move {
                app.dues_call(
                    Method::POST,
                    &format!("/api/admin/dues/bills/{id}/adjust"),
                    Some(&token),
                    Some(body),
                )
                .await
            }
        };
        let before = snapshot(&app).await;
        for (body, want) in [
            (
                json!({"amount_fen": 2000}),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                json!({"amount_fen": 2000, "reason": "   "}),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                json!({"amount_fen": -1, "reason": "x"}),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                json!({"amount_fen": "2000", "reason": "x"}),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                json!({"amount_fen": 100_000_000, "reason": "x"}),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
        ] {
            let (status, v) = adjust(bill, body.clone()).await;
            assert_eq!(status, want, "{body}: {v}");
        }
        let (status, v) = adjust(987_654, json!({"amount_fen": 1, "reason": "x"})).await;
        assert_error(status, &v, StatusCode::NOT_FOUND, "not_found");
        let resp = app
            .http
            .post(app.url("/api/admin/dues/bills/abc/adjust"))
            .bearer_auth(&token)
            .json(&json!({"amount_fen": 1, "reason": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            snapshot(&app).await,
            before,
            "refused adjustments change nothing"
        );

        let (status, v) = adjust(
            bill,
            json!({"amount_fen": 2_000, "reason": "收入更正：补发绩效"}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(
            (
                v["amount_fen"].as_i64(),
                v["rule"].as_str(),
                v["standard_rule"].as_str()
            ),
            (Some(2_000), Some("adjusted"), Some("employed_0_5pct"))
        );
        assert_eq!(v["standard_fen"], 1_500, "the rule's snapshot stays");
        let audit: String =
            sqlx::query("SELECT details FROM audit_log WHERE action = 'dues_bill.adjust'")
                .fetch_one(app.state.db.pool())
                .await
                .unwrap()
                .get(0);
        let audit: Value = serde_json::from_str(&audit).unwrap();
        assert_eq!(audit["before"]["amount_fen"], 1_500);
        assert_eq!(audit["after"]["amount_fen"], 2_000);
        assert_eq!(audit["reason"], "收入更正：补发绩效");
        assert_eq!(app.count("SELECT COUNT(*) FROM dues_adjustments").await, 1);

        // Paid (through the fake, notification and all): no adjustment any more.
        let member = app.dues_member_token("wang2", "王二", "13800000002").await;
        let (status, _) = pay_bill(&app, &member, bill).await;
        assert_eq!(status, StatusCode::OK);
        let n = app
            .fake
            .notification_for(
                &out_trade_no(&app, bill).await,
                &NotificationTamper::default(),
            )
            .unwrap();
        let (status, _) = app.dues_notify(&app.base, &n.headers, &n.body).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(
            n.transaction.amount.total, 2_000,
            "the order carried the adjusted amount"
        );
        let before = snapshot(&app).await;
        let (status, v) = adjust(bill, json!({"amount_fen": 1, "reason": "x"})).await;
        assert_error(status, &v, StatusCode::CONFLICT, "bill_paid");
        assert_eq!(snapshot(&app).await, before);
    });
}

#[backend_test]
async fn a_settled_month_takes_no_new_bills_and_changes_only_by_adjustment() {
    each_backend!(spawn = spawn(), |app| {
        roster(&app).await;
        let token = app.admin_token().await;
        let month = now_month();
        let settle = |m: String| {
            let app = &app;
            let token = token.clone();
            async move {
                app.dues_call(
                    Method::POST,
                    &format!("/api/admin/dues/months/{m}/settle"),
                    Some(&token),
                    None,
                )
                .await
            }
        };
        let (status, v) = settle(month.to_string()).await;
        assert_error(status, &v, StatusCode::NOT_FOUND, "not_found");
        let (status, v) = settle("2026-99".into()).await;
        assert_error(
            status,
            &v,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
        assess(&app, &token, &month.to_string()).await;
        let (status, v) = settle(month.to_string()).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["status"], "settled");
        assert_eq!(v["settled_by"], "admin");
        let (status, v) = settle(month.to_string()).await;
        assert_error(status, &v, StatusCode::CONFLICT, "month_settled");
        // A member added later gets no bill for the settled month.
        app.dues_import(json!([{"name": "钱一", "phone": "13800000031", "category": "student", "org_unit": "第一党支部"}])).await;
        let before = snapshot(&app).await;
        let (status, v) = assess(&app, &token, &month.to_string()).await;
        assert_error(status, &v, StatusCode::CONFLICT, "month_settled");
        assert_eq!(snapshot(&app).await, before);
        let bill = bill_id_of(&app, "王四", month).await;
        let (status, v) = app
            .dues_call(
                Method::POST,
                &format!("/api/admin/dues/bills/{bill}/adjust"),
                Some(&token),
                Some(json!({"amount_fen": 4_000, "reason": "结算后更正"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let r = reconciliation(&app, month).await;
        assert_eq!(r["month_status"], "settled");
    });
}

// ---------------------------------------------------------------- paying

#[backend_test]
async fn paying_answers_exactly_the_request_payment_parameters_and_the_pay_sign_verifies() {
    each_backend!(spawn = spawn(), |app| {
        roster(&app).await;
        let admin = app.admin_token().await;
        let month = now_month();
        assess(&app, &admin, &month.to_string()).await;
        let token = app.dues_member_token("wang1", "王一", "13800000001").await;
        let (status, mine) = app
            .dues_call(Method::GET, "/api/mp/dues", Some(&token), None)
            .await;
        assert_eq!(status, StatusCode::OK);
        let bills = mine["bills"].as_array().unwrap();
        assert_eq!(bills.len(), 1, "{mine}");
        assert_eq!(bills[0]["month"], month.to_string());
        assert_eq!(bills[0]["amount_fen"], 12_185);
        assert_eq!(bills[0]["status"], "unpaid");
        let bill = bills[0]["id"].as_i64().unwrap();

        let (status, p) = pay_bill(&app, &token, bill).await;
        assert_eq!(status, StatusCode::OK, "{p}");
        let mut keys: Vec<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["nonceStr", "package", "paySign", "signType", "timeStamp"]
        );
        assert_eq!(p["signType"], "RSA");
        let package = p["package"].as_str().unwrap();
        assert!(package.starts_with("prepay_id=wx"), "{package}");
        let ts: i64 = p["timeStamp"].as_str().unwrap().parse().unwrap();
        assert!(
            (ts - time::OffsetDateTime::now_utc().unix_timestamp()).abs() < 60,
            "seconds, now"
        );
        // paySign: RSA-SHA256 over appId\ntimeStamp\nnonceStr\npackage\n with the mini-program's AppId.
        let message = format!(
            "wxdemomp000000000\n{}\n{}\n{package}\n",
            p["timeStamp"].as_str().unwrap(),
            p["nonceStr"].as_str().unwrap()
        );
        let sig = base64::engine::general_purpose::STANDARD
            .decode(p["paySign"].as_str().unwrap())
            .unwrap();
        let public = RsaPublicKey::from_spki_pem(test_keys::MERCHANT_PUBLIC_KEY_PEM).unwrap();
        assert!(
            public.verify(message.as_bytes(), &sig),
            "paySign verifies with the merchant key"
        );

        // The fake got one correctly signed order with the bill's amount and a +08:00 expiry.
        let no = out_trade_no(&app, bill).await;
        assert!(dangjian::dues::rules::valid_out_trade_no(&no), "{no}");
        let order = app.fake.pay_order_state(&no).unwrap();
        assert_eq!(order.total_fen, 12_185);
        assert_eq!(order.payer_openid, "mp_wang1");
        assert!(
            order.time_expire.as_deref().unwrap().ends_with("+08:00"),
            "{order:?}"
        );
        assert!(order.description.contains("党费"));
        let calls = app.fake.calls_to(pay::api::JSAPI);
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].query["_signature"], "valid");
        assert_eq!(bill_status(&app, bill).await, "paying");

        // Paying again reuses the order and its prepay id: no second order.
        let (status, again) = pay_bill(&app, &token, bill).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(again["package"], p["package"]);
        assert_eq!(app.fake.calls_to(pay::api::JSAPI).len(), 1);
        assert_eq!(app.count("SELECT COUNT(*) FROM dues_orders").await, 1);

        // The member pays; WeChat Pay notifies; the bill is paid.
        let n = app
            .fake
            .notification_for(&no, &NotificationTamper::default())
            .unwrap();
        let (status, body) = app.dues_notify(&app.base, &n.headers, &n.body).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
        assert!(body.is_empty());
        assert_eq!(bill_status(&app, bill).await, "paid");
        let (_, mine) = app
            .dues_call(Method::GET, "/api/mp/dues", Some(&token), None)
            .await;
        assert_eq!(mine["bills"][0]["status"], "paid");
        assert!(mine["bills"][0]["paid_at"]
            .as_str()
            .unwrap()
            .ends_with("+08:00"));
        let before = snapshot(&app).await;
        let (status, v) = pay_bill(&app, &token, bill).await;
        assert_error(status, &v, StatusCode::CONFLICT, "bill_paid");
        assert_eq!(
            app.fake.calls_to(pay::api::JSAPI).len(),
            1,
            "never a second order for a paid bill"
        );
        assert_eq!(snapshot(&app).await, before);
        let r = reconciliation(&app, month).await;
        assert_eq!(
            (r["paid_count"].as_i64(), r["paid_total_fen"].as_i64()),
            (Some(1), Some(12_185)),
            "{r}"
        );
        assert_eq!(r["unpaid_count"], 6);
        assert_eq!(r["incidents"], 0);
    });
}

#[backend_test]
async fn paying_someone_elses_or_an_unknown_bill_is_404_and_changes_nothing() {
    each_backend!(spawn = spawn(), |app| {
        roster(&app).await;
        let admin = app.admin_token().await;
        let month = now_month();
        assess(&app, &admin, &month.to_string()).await;
        let mine = app.dues_member_token("wang1", "王一", "13800000001").await;
        let other_bill = bill_id_of(&app, "王二", month).await;
        let before = snapshot(&app).await;
        let (status, v) = pay_bill(&app, &mine, other_bill).await;
        assert_error(status, &v, StatusCode::NOT_FOUND, "not_found");
        let (status, v) = pay_bill(&app, &mine, 99_999_999).await;
        assert_error(status, &v, StatusCode::NOT_FOUND, "not_found");
        let (status, _) = app
            .dues_call(Method::POST, "/api/mp/dues/abc/pay", Some(&mine), None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, v) = pay_bill(&app, "no-such-token", other_bill).await;
        assert_error(status, &v, StatusCode::UNAUTHORIZED, "unauthorized");
        // A logged-in user who is not on the roster has no bills and pays none.
        let resp = app
            .http
            .post(app.url("/api/mp/login"))
            .json(&json!({"code": "stranger"}))
            .send()
            .await
            .unwrap();
        let stranger = resp.json::<Value>().await.unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned();
        let (_, list) = app
            .dues_call(Method::GET, "/api/mp/dues", Some(&stranger), None)
            .await;
        assert_eq!(list["bills"], json!([]));
        let (status, v) = pay_bill(&app, &stranger, other_bill).await;
        assert_error(status, &v, StatusCode::NOT_FOUND, "not_found");
        assert_eq!(snapshot(&app).await, before);
        assert_eq!(app.fake.calls_to(pay::api::JSAPI).len(), 0);
    });
}

// ---------------------------------------------------------------- notifications

/// `n` copies of one notification, `in_flight` at a time, spread over `bases`.
async fn storm(
    app: &TestApp,
    bases: &[String],
    headers: &[(String, String)],
    body: &str,
    n: usize,
    in_flight: usize,
) -> Vec<StatusCode> {
    stream::iter(0..n)
        .map(|i| {
            let base = bases[i % bases.len()].clone();
            async move { app.dues_notify(&base, headers, body).await.0 }
        })
        .buffer_unordered(in_flight)
        .collect()
        .await
}

async fn assert_paid_once(app: &TestApp, bill: i64, amount: i64) {
    assert_eq!(app.count("SELECT COUNT(*) FROM dues_payments").await, 1);
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM dues_payments WHERE bill_id = {bill} AND amount_fen = {amount}"
        ))
        .await,
        1
    );
    assert_eq!(bill_status(app, bill).await, "paid");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM dues_notifications").await,
        1,
        "stored once"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'dues_bill.paid'")
            .await,
        1
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM dues_incidents").await, 0);
    let r = reconciliation(app, now_month()).await;
    assert_eq!(r["paid_count"], 1, "{r}");
    assert_eq!(r["paid_total_fen"], amount, "{r}");
}

#[backend_test]
async fn a_thousand_identical_notifications_at_once_make_exactly_one_payment() {
    each_backend!(spawn = spawn(), |app| {
        let (_, bill, no) = paying_member(&app).await;
        let n = app
            .fake
            .notification_for(&no, &NotificationTamper::default())
            .unwrap();
        let statuses = storm(
            &app,
            std::slice::from_ref(&app.base),
            &n.headers,
            &n.body,
            1_000,
            64,
        )
        .await;
        assert!(
            statuses.iter().all(|s| *s == StatusCode::NO_CONTENT),
            "every copy gets success: {:?}",
            statuses
                .iter()
                .filter(|s| **s != StatusCode::NO_CONTENT)
                .collect::<Vec<_>>()
        );
        assert_paid_once(&app, bill, 12_185).await;
    });
}

#[backend_test]
async fn two_app_instances_on_one_database_count_a_notification_storm_once() {
    for backend in backends() {
        let app = TestApp::spawn_with(&backend, spawn()).await;
        let replica = app.dues_replica().await;
        let (_, bill, no) = paying_member(&app).await;
        // The same payment announced under two notification ids too (WeChat Pay may resend so).
        let n1 = app
            .fake
            .notification_for(&no, &NotificationTamper::default())
            .unwrap();
        let n2 = app
            .fake
            .notification_for(&no, &NotificationTamper::default())
            .unwrap();
        assert_ne!(n1.id, n2.id);
        let bases = [app.base.clone(), replica.base.clone()];
        let (a, b) = tokio::join!(
            storm(&app, &bases, &n1.headers, &n1.body, 500, 32),
            storm(&app, &bases, &n2.headers, &n2.body, 500, 32),
        );
        assert!(a.iter().chain(&b).all(|s| *s == StatusCode::NO_CONTENT));
        assert_eq!(app.count("SELECT COUNT(*) FROM dues_payments").await, 1);
        assert_eq!(bill_status(&app, bill).await, "paid");
        assert_eq!(
            app.count("SELECT COUNT(*) FROM dues_notifications").await,
            2
        );
        assert_eq!(app.count("SELECT COUNT(*) FROM dues_incidents").await, 0);
        let r = reconciliation(&app, now_month()).await;
        assert_eq!(
            (r["paid_count"].as_i64(), r["paid_total_fen"].as_i64()),
            (Some(1), Some(12_185))
        );
        replica.stop().await;
        app.stop().await;
    }
}

/// (what, headers, body, expected status)
type Case = (String, Vec<(String, String)>, String, StatusCode);

#[backend_test]
async fn every_tampered_notification_is_refused_and_changes_nothing() {
    each_backend!(spawn = spawn(), |app| {
        let (_, bill, no) = paying_member(&app).await;
        let good = app
            .fake
            .notification_for(&no, &NotificationTamper::default())
            .unwrap();
        let before = snapshot(&app).await;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let fake = |t: NotificationTamper| app.fake.notification_for(&no, &t).unwrap();
        let mut all: Vec<Case> = Vec::new();
        for (what, tamper, want) in [
            (
                "bad signature",
                NotificationTamper {
                    bad_signature: true,
                    ..Default::default()
                },
                StatusCode::UNAUTHORIZED,
            ),
            (
                "probe signature",
                NotificationTamper {
                    probe_signature: true,
                    ..Default::default()
                },
                StatusCode::UNAUTHORIZED,
            ),
            (
                "unknown serial",
                NotificationTamper {
                    serial: Some("PUB_KEY_ID_0000000000000000000000000000000000000".into()),
                    ..Default::default()
                },
                StatusCode::UNAUTHORIZED,
            ),
            // Well outside the 5 minutes either way: the test itself runs for seconds. (The
            // window's exact bounds are the protocol crate's tests.)
            (
                "stale timestamp",
                NotificationTamper {
                    timestamp: Some(now - 400),
                    ..Default::default()
                },
                StatusCode::UNAUTHORIZED,
            ),
            (
                "future timestamp",
                NotificationTamper {
                    timestamp: Some(now + 400),
                    ..Default::default()
                },
                StatusCode::UNAUTHORIZED,
            ),
            (
                "wrong API v3 key",
                NotificationTamper {
                    wrong_api_v3_key: true,
                    ..Default::default()
                },
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ] {
            let n = fake(tamper);
            all.push((what.into(), n.headers, n.body, want));
        }
        // Missing headers: verification is never skipped.
        for missing in [
            "Wechatpay-Signature",
            "Wechatpay-Timestamp",
            "Wechatpay-Nonce",
            "Wechatpay-Serial",
        ] {
            let headers = good
                .headers
                .iter()
                .filter(|(k, _)| k != missing)
                .cloned()
                .collect();
            all.push((
                format!("no {missing}"),
                headers,
                good.body.clone(),
                StatusCode::UNAUTHORIZED,
            ));
        }
        let mut other_type = good.headers.clone();
        other_type.retain(|(k, _)| k != "Wechatpay-Signature-Type");
        other_type.push((
            "Wechatpay-Signature-Type".into(),
            "WECHATPAY2-SM2-WITH-SM3".into(),
        ));
        all.push((
            "other signature type".into(),
            other_type,
            good.body.clone(),
            StatusCode::UNAUTHORIZED,
        ));
        // The body as parsed and re-serialised (pretty) no longer matches the signature.
        let reserialised =
            serde_json::to_string_pretty(&serde_json::from_str::<Value>(&good.body).unwrap())
                .unwrap();
        all.push((
            "re-serialised body".into(),
            good.headers.clone(),
            reserialised,
            StatusCode::UNAUTHORIZED,
        ));
        // A ciphertext changed in transit breaks the signature ...
        let v: Value = serde_json::from_str(&good.body).unwrap();
        let ct = v["resource"]["ciphertext"].as_str().unwrap();
        let flipped = format!(
            "{}{}",
            if ct.starts_with('A') { "B" } else { "A" },
            &ct[1..]
        );
        let tampered = good.body.replace(ct, &flipped);
        all.push((
            "tampered ciphertext".into(),
            good.headers.clone(),
            tampered.clone(),
            StatusCode::UNAUTHORIZED,
        ));
        // ... and re-signed by someone with the platform key it still fails the AES-GCM tag.
        all.push((
            "tampered ciphertext, re-signed".into(),
            signed_headers(&tampered, now),
            tampered,
            StatusCode::INTERNAL_SERVER_ERROR,
        ));
        // Not JSON: unsigned, and signed.
        all.push((
            "not JSON".into(),
            good.headers.clone(),
            "not json".into(),
            StatusCode::UNAUTHORIZED,
        ));
        all.push((
            "not JSON, signed".into(),
            signed_headers("not json", now),
            "not json".into(),
            StatusCode::BAD_REQUEST,
        ));
        all.push((
            "empty".into(),
            Vec::new(),
            String::new(),
            StatusCode::UNAUTHORIZED,
        ));

        for (what, headers, body, want) in &all {
            let (status, answer) = app.dues_notify(&app.base, headers, body).await;
            assert_eq!(status, *want, "{what}: {answer}");
            let answer: Value = serde_json::from_str(answer.as_str())
                .unwrap_or_else(|_| panic!("{what}: not JSON: {answer}"));
            assert_eq!(answer["code"], "FAIL", "{what}");
            assert!(answer["message"].is_string(), "{what}");
            assert_eq!(snapshot(&app).await, before, "{what} changed something");
        }
        assert_eq!(bill_status(&app, bill).await, "paying");
        // The genuine one still works afterwards.
        let (status, _) = app.dues_notify(&app.base, &good.headers, &good.body).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(bill_status(&app, bill).await, "paid");
    });
}

#[backend_test]
async fn a_mismatched_payment_becomes_an_incident_for_a_person_and_is_never_credited() {
    each_backend!(spawn = spawn(), |app| {
        let (_, bill, no) = paying_member(&app).await;
        let admin = app.admin_token().await;
        // WeChat Pay (correctly signed and encrypted) says 1 fen was paid for a 121.85 yuan order.
        let wrong = app
            .fake
            .notification_for(
                &no,
                &NotificationTamper {
                    amount_total: Some(1),
                    ..Default::default()
                },
            )
            .unwrap();
        for _ in 0..3 {
            let (status, body) = app
                .dues_notify(&app.base, &wrong.headers, &wrong.body)
                .await;
            assert_eq!(
                status,
                StatusCode::NO_CONTENT,
                "verified: answered, not retried forever: {body}"
            );
        }
        assert_eq!(app.count("SELECT COUNT(*) FROM dues_payments").await, 0);
        assert_ne!(bill_status(&app, bill).await, "paid");
        let list = get(&app, &admin, "/api/admin/dues/incidents?status=open").await;
        assert_eq!(list["total"], 1, "{list}");
        let inc = &list["items"][0];
        assert_eq!(inc["kind"], "amount_mismatch");
        assert_eq!(
            (inc["expected_fen"].as_i64(), inc["actual_fen"].as_i64()),
            (Some(12_185), Some(1))
        );
        assert_eq!(inc["bill_id"], bill);

        // Crafted transactions: other merchant, other app, other currency, no transaction id.
        let paid = app.fake.pay_order_state(&no).unwrap();
        let base_tx = Transaction {
            appid: "wxdemomp000000000".into(),
            mchid: test_keys::MCH_ID.into(),
            out_trade_no: no.clone(),
            transaction_id: Some(paid.transaction_id.clone().unwrap()),
            trade_type: Some("JSAPI".into()),
            trade_state: pay::TradeState::Success,
            trade_state_desc: "支付成功".into(),
            bank_type: Some("OTHERS".into()),
            attach: None,
            success_time: Some("2026-11-05T10:00:00+08:00".into()),
            payer: Some(pay::Payer {
                openid: "mp_wang1".into(),
            }),
            amount: pay::TransactionAmount {
                total: 12_185,
                payer_total: Some(12_000),
                currency: Some("CNY".into()),
                payer_currency: Some("CNY".into()),
            },
        };
        let cases = [
            (
                "merchant_mismatch",
                Transaction {
                    mchid: "1900000999".into(),
                    ..base_tx.clone()
                },
            ),
            (
                "app_mismatch",
                Transaction {
                    appid: "wxotherapp00000000".into(),
                    ..base_tx.clone()
                },
            ),
            (
                "currency_mismatch",
                Transaction {
                    amount: pay::TransactionAmount {
                        currency: Some("USD".into()),
                        ..base_tx.amount.clone()
                    },
                    ..base_tx.clone()
                },
            ),
            (
                "unknown_order",
                Transaction {
                    out_trade_no: "DJ999999_unknown".into(),
                    ..base_tx.clone()
                },
            ),
        ];
        for (i, (kind, tx)) in cases.iter().enumerate() {
            let (headers, body) = crafted_notification(tx, &format!("EV-CRAFTED-{i}"));
            let (status, answer) = app.dues_notify(&app.base, &headers, &body).await;
            assert_eq!(status, StatusCode::NO_CONTENT, "{kind}: {answer}");
            assert_eq!(
                app.count(&format!(
                    "SELECT COUNT(*) FROM dues_incidents WHERE kind = '{kind}'"
                ))
                .await,
                1,
                "{kind}"
            );
        }
        assert_eq!(
            app.count("SELECT COUNT(*) FROM dues_payments").await,
            0,
            "nothing credited"
        );
        assert_eq!(app.count("SELECT COUNT(*) FROM dues_incidents").await, 5);
        // A repeat of the same problem is one incident seen again, not a new one.
        assert_eq!(
            app.count("SELECT occurrences FROM dues_incidents WHERE kind = 'amount_mismatch'")
                .await,
            1,
            "one notification id, stored once"
        );
        let r = reconciliation(&app, now_month()).await;
        assert!(r["incidents"].as_i64().unwrap() >= 4, "{r}");

        // payer_total below total (a coupon) is still a full payment: total is what counts.
        let (headers, body) = crafted_notification(&base_tx, "EV-CRAFTED-OK");
        let (status, _) = app.dues_notify(&app.base, &headers, &body).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(bill_status(&app, bill).await, "paid");
        assert_eq!(
            app.count("SELECT COUNT(*) FROM dues_payments WHERE amount_fen = 12185")
                .await,
            1
        );

        // A person resolves an incident (audited); twice is a conflict; others' scope hides it.
        let id = inc["id"].as_i64().unwrap();
        let (status, v) = app
            .dues_call(
                Method::POST,
                &format!("/api/admin/dues/incidents/{id}/resolve"),
                Some(&admin),
                Some(json!({"resolution": "已与微信支付核实，金额异常系测试"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["status"], "resolved");
        let (status, v) = app
            .dues_call(
                Method::POST,
                &format!("/api/admin/dues/incidents/{id}/resolve"),
                Some(&admin),
                Some(json!({"resolution": "again"})),
            )
            .await;
        assert_error(status, &v, StatusCode::CONFLICT, "incident_resolved");
        let (status, v) = app
            .dues_call(
                Method::POST,
                &format!("/api/admin/dues/incidents/{id}/resolve"),
                Some(&admin),
                Some(json!({"resolution": " "})),
            )
            .await;
        assert_error(
            status,
            &v,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'dues_incident.resolve'")
                .await,
            1
        );
        let sec = app
            .user_token("sec2", "secretary", Some("第二党支部"))
            .await;
        let theirs = get(&app, &sec, "/api/admin/dues/incidents").await;
        assert_eq!(
            theirs["total"], 0,
            "not their unit's, and unknown orders are administrators': {theirs}"
        );
    });
}

// ---------------------------------------------------------------- jobs

#[backend_test]
async fn the_requery_job_credits_a_paid_order_whose_notification_never_came() {
    each_backend!(
        spawn = TestApp::dues_spawn(&[("dues_requery_after_secs", "1")]),
        |app| {
            let (_, bill, no) = paying_member(&app).await;
            // The member pays; the notification is lost.
            app.fake.pay_order(&no).unwrap();
            wait_until("the re-query job", Duration::from_secs(30), || async {
                bill_status(&app, bill).await == "paid"
            })
            .await;
            let source: String = sqlx::query("SELECT source FROM dues_payments")
                .fetch_one(app.state.db.pool())
                .await
                .unwrap()
                .get(0);
            assert_eq!(source, "query");
            assert!(app
                .fake
                .calls_to(pay::api::QUERY_BY_OUT_TRADE_NO)
                .iter()
                .all(|c| c.query["_signature"] == "valid"));
            // The late notification changes nothing and is answered success.
            let n = app
                .fake
                .notification_for(&no, &NotificationTamper::default())
                .unwrap();
            let (status, _) = app.dues_notify(&app.base, &n.headers, &n.body).await;
            assert_eq!(status, StatusCode::NO_CONTENT);
            assert_eq!(app.count("SELECT COUNT(*) FROM dues_payments").await, 1);
            let r = reconciliation(&app, now_month()).await;
            assert_eq!(r["paid_total_fen"], 12_185);
            // Nothing is left to check.
            let live = app
                .count("SELECT COUNT(*) FROM dues_orders WHERE status IN ('created', 'prepaid')")
                .await;
            assert_eq!(live, 0);
        }
    );
}

#[backend_test]
async fn expired_orders_are_closed_and_the_bill_can_be_paid_again_with_a_new_order() {
    for backend in backends() {
        let clock = ManualClock::at(time::OffsetDateTime::now_utc());
        let spawn = Spawn {
            clock: Some(std::sync::Arc::new(clock.clone())),
            ..TestApp::dues_spawn(&[
                ("dues_requery_after_secs", "1"),
                ("dues_order_ttl_secs", "600"),
            ])
        };
        let app = TestApp::spawn_with(&backend, spawn).await;
        let (token, bill, first) = paying_member(&app).await;
        clock.advance(Duration::from_secs(601));
        wait_until("the close job", Duration::from_secs(30), || async {
            app.fake.pay_order_state(&first).map(|o| o.state) == Some(pay::TradeState::Closed)
        })
        .await;
        wait_until("the bill unpaid again", Duration::from_secs(10), || async {
            bill_status(&app, bill).await == "unpaid"
        })
        .await;
        assert_eq!(
            app.count("SELECT COUNT(*) FROM dues_orders WHERE status = 'closed'")
                .await,
            1
        );
        let (status, _) = pay_bill(&app, &token, bill).await;
        assert_eq!(status, StatusCode::OK);
        let second = out_trade_no(&app, bill).await;
        assert_ne!(second, first, "a new order number after the old one closed");
        // The closed order cannot be paid at WeChat Pay any more.
        assert!(app.fake.pay_order(&first).is_none());
        // WeChat Pay's timestamp follows the app's (moved) clock, or it would be stale.
        let at = NotificationTamper {
            timestamp: Some(clock.now().unix_timestamp()),
            ..Default::default()
        };
        let n = app.fake.notification_for(&second, &at).unwrap();
        let (status, body) = app.dues_notify(&app.base, &n.headers, &n.body).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
        assert_eq!(bill_status(&app, bill).await, "paid");
        app.stop().await;
    }
}

#[backend_test]
async fn closing_an_order_that_was_paid_meanwhile_credits_it_instead() {
    each_backend!(spawn = spawn(), |app| {
        let (_, bill, no) = paying_member(&app).await;
        app.fake.pay_order(&no).unwrap(); // paid, the notification not yet arrived
        let admin = app.admin_token().await;
        // An adjustment closes the live order first: WeChat Pay answers ORDER_PAID → query, credit.
        let (status, v) = app
            .dues_call(
                Method::POST,
                &format!("/api/admin/dues/bills/{bill}/adjust"),
                Some(&admin),
                Some(json!({"amount_fen": 100, "reason": "更正"})),
            )
            .await;
        assert_error(status, &v, StatusCode::CONFLICT, "bill_paid");
        assert_eq!(bill_status(&app, bill).await, "paid");
        assert_eq!(
            app.count("SELECT COUNT(*) FROM dues_payments WHERE amount_fen = 12185")
                .await,
            1
        );
        assert_eq!(app.count("SELECT COUNT(*) FROM dues_adjustments").await, 0);
        assert_eq!(app.fake.count_calls(pay::api::CLOSE), 1);
    });
}

// ---------------------------------------------------------------- reconciliation, ledgers, trade bill

#[backend_test]
async fn the_ledger_lists_members_payments_and_marks_late_payments_for_earlier_months() {
    each_backend!(spawn = spawn(), |app| {
        roster(&app).await;
        let admin = app.admin_token().await;
        let (this, last) = (now_month(), now_month().plus(-1));
        assess(&app, &admin, &last.to_string()).await;
        assess(&app, &admin, &this.to_string()).await;
        let token = app.dues_member_token("wang1", "王一", "13800000001").await;
        // Last month's bill is paid now: a late payment (补交).
        for month in [last, this] {
            let bill = bill_id_of(&app, "王一", month).await;
            let (status, _) = pay_bill(&app, &token, bill).await;
            assert_eq!(status, StatusCode::OK);
            let n = app
                .fake
                .notification_for(
                    &out_trade_no(&app, bill).await,
                    &NotificationTamper::default(),
                )
                .unwrap();
            assert_eq!(
                app.dues_notify(&app.base, &n.headers, &n.body).await.0,
                StatusCode::NO_CONTENT
            );
        }
        let ledger = get(
            &app,
            &admin,
            &format!("/api/admin/dues/ledger?month={this}"),
        )
        .await;
        let lines = ledger["lines"].as_array().unwrap();
        let bills: Vec<&Value> = lines.iter().filter(|l| l["kind"] == "bill").collect();
        assert_eq!(bills.len(), 7);
        let wang = bills.iter().find(|l| l["member"] == "王一").unwrap();
        assert_eq!(
            (
                wang["status"].as_str(),
                wang["paid_fen"].as_i64(),
                wang["late"].as_bool()
            ),
            (Some("paid"), Some(12_185), Some(false))
        );
        assert!(wang["paid_at"].as_str().unwrap().ends_with("+08:00"));
        assert!(wang["transaction_id"].as_str().unwrap().starts_with("4200"));
        let back: Vec<&Value> = lines
            .iter()
            .filter(|l| l["kind"] == "back_payment")
            .collect();
        assert_eq!(back.len(), 1, "{ledger}");
        assert_eq!(
            (back[0]["month"].as_str(), back[0]["late"].as_bool()),
            (Some(last.to_string().as_str()), Some(true))
        );
        let old = get(
            &app,
            &admin,
            &format!("/api/admin/dues/ledger?month={last}"),
        )
        .await;
        let old_wang = old["lines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["member"] == "王一")
            .unwrap()
            .clone();
        assert_eq!(old_wang["late"], true, "paid after its month");

        // CSV, for one org unit, through the csv crate.
        let resp = app
            .http
            .get(app.url(&format!(
                "/api/admin/dues/ledger?month={this}&org_unit=第二党支部&format=csv"
            )))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv"));
        let bytes = resp.bytes().await.unwrap();
        let mut reader =
            csv::Reader::from_reader(bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes));
        let headers = reader.headers().unwrap().clone();
        assert_eq!(&headers[0], "kind");
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 2, "李一 and 赵一");
        let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
        let li = rows.iter().find(|r| &r[col("member")] == "李一").unwrap();
        assert_eq!(
            (
                &li[col("amount_fen")],
                &li[col("amount_yuan")],
                &li[col("status")]
            ),
            ("6000", "60.00", "unpaid")
        );
        let resp = app
            .http
            .get(app.url(&format!("/api/admin/dues/ledger?month={this}")))
            .bearer_auth(&admin)
            .header("accept", "text/csv")
            .send()
            .await
            .unwrap();
        assert!(resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv"));
        for bad in [
            "/api/admin/dues/ledger",
            "/api/admin/dues/ledger?month=2026-13",
            &format!("/api/admin/dues/ledger?month={this}&format=xml"),
        ] {
            let (status, v) = app.dues_call(Method::GET, bad, Some(&admin), None).await;
            assert_error(
                status,
                &v,
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
            );
        }
        let (status, v) = app
            .dues_call(
                Method::GET,
                &format!("/api/admin/dues/ledger?month={this}&org_unit=没有这个支部"),
                Some(&admin),
                None,
            )
            .await;
        assert_error(status, &v, StatusCode::NOT_FOUND, "not_found");

        // Collection per org unit.
        let c = get(
            &app,
            &admin,
            &format!("/api/admin/dues/collection?month={this}"),
        )
        .await;
        let units = c["org_units"].as_array().unwrap();
        let first = units
            .iter()
            .find(|u| u["org_unit"] == "第一党支部")
            .unwrap();
        assert_eq!(
            (first["due_count"].as_i64(), first["paid_count"].as_i64()),
            (Some(5), Some(1))
        );
        assert_eq!(first["collection_rate"], 0.2);
        let second = units
            .iter()
            .find(|u| u["org_unit"] == "第二党支部")
            .unwrap();
        assert_eq!(second["collection_rate"], 0.0);
        let r = reconciliation(&app, this).await;
        assert_eq!(
            (
                r["bill_count"].as_i64(),
                r["paid_count"].as_i64(),
                r["unpaid_count"].as_i64()
            ),
            (Some(7), Some(1), Some(6))
        );
        assert_eq!(
            r["due_total_fen"],
            EXPECTED.iter().map(|e| e.1).sum::<i64>()
        );
    });
}

#[backend_test]
async fn the_trade_bill_is_compared_with_our_payments_and_differences_become_incidents() {
    each_backend!(spawn = spawn(), |app| {
        roster(&app).await;
        let admin = app.admin_token().await;
        let month = now_month();
        assess(&app, &admin, &month.to_string()).await;
        let yesterday = time::OffsetDateTime::now_utc() - time::Duration::days(1);
        let date = yesterday
            .to_offset(time::macros::offset!(+8))
            .date()
            .to_string();
        // Four members pay yesterday; we hear of three (王四 never notifies).
        let mut orders = Vec::new();
        for (code, name, phone) in [
            ("w1", "王一", "13800000001"),
            ("w2", "王二", "13800000002"),
            ("w3", "王三", "13800000003"),
            ("w4", "王四", "13800000004"),
        ] {
            let token = app.dues_member_token(code, name, phone).await;
            let bill = bill_id_of(&app, name, month).await;
            assert_eq!(pay_bill(&app, &token, bill).await.0, StatusCode::OK);
            let no = out_trade_no(&app, bill).await;
            let tx = app.fake.pay_order_at(&no, yesterday).unwrap();
            if name != "王四" {
                let n = app
                    .fake
                    .notification_for(&no, &NotificationTamper::default())
                    .unwrap();
                assert_eq!(
                    app.dues_notify(&app.base, &n.headers, &n.body).await.0,
                    StatusCode::NO_CONTENT
                );
            }
            orders.push((no, tx.transaction_id.unwrap(), tx.amount.total));
        }
        // WeChat Pay's bill: 王一 right, 王二 with another amount, 王三 missing, 王四 present.
        let yuan = |fen: i64| format!("{}.{:02}", fen / 100, fen % 100);
        let csv = dues_trade_bill_csv(&[
            (orders[0].0.clone(), orders[0].1.clone(), yuan(orders[0].2)),
            (
                orders[1].0.clone(),
                orders[1].1.clone(),
                yuan(orders[1].2 + 1),
            ),
            (orders[3].0.clone(), orders[3].1.clone(), yuan(orders[3].2)),
        ]);
        app.fake.set_trade_bill(&date, csv);
        let (status, v) = app
            .dues_call(
                Method::POST,
                "/api/admin/dues/tradebill",
                Some(&admin),
                Some(json!({"date": date})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(
            (
                v["rows"].as_i64(),
                v["matched"].as_i64(),
                v["our_payments"].as_i64()
            ),
            (Some(3), Some(1), Some(3)),
            "{v}"
        );
        let mut kinds: Vec<&str> = v["incidents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["kind"].as_str().unwrap())
            .collect();
        kinds.sort_unstable();
        assert_eq!(
            kinds,
            [
                "tradebill_amount_mismatch",
                "tradebill_missing_ours",
                "tradebill_missing_wechat"
            ]
        );
        assert_eq!(app.count("SELECT COUNT(*) FROM dues_tradebills").await, 1);
        // Importing the same bill again adds no incidents.
        let (_, again) = app
            .dues_call(
                Method::POST,
                "/api/admin/dues/tradebill",
                Some(&admin),
                Some(json!({"date": date})),
            )
            .await;
        assert_eq!(again["incidents"].as_array().unwrap().len(), 3);
        assert_eq!(app.count("SELECT COUNT(*) FROM dues_incidents").await, 3);
        assert_eq!(
            app.count("SELECT COUNT(*) FROM dues_payments").await,
            3,
            "the bill credits nothing"
        );
        let listed = get(&app, &admin, "/api/admin/dues/incidents").await;
        assert_eq!(listed["total"], 3);

        // Bad input changes nothing.
        let before = snapshot(&app).await;
        let today = time::OffsetDateTime::now_utc()
            .to_offset(time::macros::offset!(+8))
            .date()
            .to_string();
        for bad in [
            json!({"date": "2026-13-01"}),
            json!({"date": today}),
            json!({"date": 20261104}),
            json!({}),
        ] {
            let (status, v) = app
                .dues_call(
                    Method::POST,
                    "/api/admin/dues/tradebill",
                    Some(&admin),
                    Some(bad.clone()),
                )
                .await;
            assert_error(
                status,
                &v,
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
            );
        }
        let (status, v) = app
            .dues_call(
                Method::POST,
                "/api/admin/dues/tradebill",
                Some(&admin),
                Some(json!({"date": "2024-02-01"})),
            )
            .await;
        assert_error(status, &v, StatusCode::NOT_FOUND, "no_statement");
        let sec = app
            .user_token("sec3", "secretary", Some("第一党支部"))
            .await;
        let (status, v) = app
            .dues_call(
                Method::POST,
                "/api/admin/dues/tradebill",
                Some(&sec),
                Some(json!({"date": date})),
            )
            .await;
        assert_error(status, &v, StatusCode::FORBIDDEN, "forbidden");
        app.fake.set_bill_hash_corrupt(true);
        let (status, v) = app
            .dues_call(
                Method::POST,
                "/api/admin/dues/tradebill",
                Some(&admin),
                Some(json!({"date": date})),
            )
            .await;
        assert_error(status, &v, StatusCode::BAD_GATEWAY, "pay_refused");
        assert_eq!(snapshot(&app).await, before);
    });
}

#[backend_test]
async fn the_dues_routes_are_in_the_openapi_document() {
    each_backend!(spawn = spawn(), |app| {
        let doc: Value = app
            .http
            .get(app.url("/api/openapi.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for (path, method) in [
            ("/api/mp/dues", "get"),
            ("/api/mp/dues/{id}/pay", "post"),
            ("/api/admin/dues/assessments", "post"),
            ("/api/admin/dues/bills", "get"),
            ("/api/admin/dues/bills/{id}/adjust", "post"),
            ("/api/admin/dues/reconciliation", "get"),
            ("/api/admin/dues/ledger", "get"),
            ("/api/admin/dues/tradebill", "post"),
            ("/api/admin/dues/incidents", "get"),
        ] {
            assert!(doc["paths"][path][method].is_object(), "{method} {path}");
        }
        assert_eq!(
            doc["paths"]["/api/mp/dues"]["get"]["security"][0]["bearer"],
            json!([])
        );
    });
}
