//! The dues pages of the console (`/admin/dues...`) on every backend: opening a month through the
//! form (CSRF) makes its bills once, amounts in yuan, a refused adjustment shows its field error
//! and changes nothing, secretaries see their subtree only, the printable ledger totals the paid
//! bills and marks late payments, and income stays masked unless a reveal (audited) asks for it.

use dangjian_test_macros::backend_test;

use dangjian::dues::rules::Month;
use reqwest::StatusCode;
use serde_json::json;

use crate::{
    each_backend,
    helpers::{Console, Spawn, TestApp, ADMIN_PASSWORD, ADMIN_USER},
};

fn spawn() -> Spawn {
    TestApp::dues_spawn(&[])
}

fn this_month() -> Month {
    Month::of_unix_ms(time::OffsetDateTime::now_utc().unix_timestamp() * 1000)
}

/// 王一 pays 1.5 % of 8123.45 = 121.85, 李一 1 % of his 6000.00 pension, 赵一 the flat 0.20.
async fn roster(app: &TestApp) {
    app.dues_import(json!([
        {"name": "王一", "phone": "13800000001", "category": "employed", "monthly_income_fen": 812_345, "org_unit": "第一党支部"},
        {"name": "李一", "phone": "13800000011", "category": "retired", "monthly_income_fen": 600_000, "org_unit": "第二党支部"},
        {"name": "赵一", "phone": "13800000021", "category": "student", "org_unit": "第二党支部"},
    ]))
    .await;
}

async fn admin(app: &TestApp) -> Console {
    app.console_login(ADMIN_USER, ADMIN_PASSWORD).await
}

async fn html(c: &Console, app: &TestApp, path: &str) -> String {
    let r = c.get(app, path).await;
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    r.text().await.unwrap()
}

async fn assess_api(app: &TestApp, month: Month) {
    let (status, v) = app
        .dues_call(
            reqwest::Method::POST,
            "/api/admin/dues/assessments",
            Some(&app.admin_token().await),
            Some(json!({"month": month.to_string()})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
}

/// The `chars` characters of `page` from `marker` on (where a field's error would be).
fn after(page: &str, marker: &str, chars: usize) -> String {
    let at = page
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} in {page}"));
    page[at..].chars().take(chars).collect()
}

async fn out_trade_no(app: &TestApp, bill: i64) -> String {
    sqlx::query_scalar("SELECT out_trade_no FROM dues_orders WHERE bill_id = $1 ORDER BY id DESC")
        .bind(bill)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap()
}

async fn amount_of(app: &TestApp, bill: i64) -> i64 {
    app.count(&format!(
        "SELECT amount_fen FROM dues_bills WHERE id = {bill}"
    ))
    .await
}

#[backend_test]
async fn opening_a_month_through_the_form_makes_its_bills_once_shown_in_yuan() {
    each_backend!(spawn = spawn(), |app| {
        roster(&app).await;
        let c = admin(&app).await;
        let month = this_month().to_string();
        let page = html(&c, &app, "/admin/dues").await;
        assert!(page.contains("action=\"/admin/dues/assess\""), "{page}");
        assert!(
            page.contains("href=\"/admin/dues\" class=\"active\""),
            "nav link enabled"
        );

        // Without the CSRF token: refused, nothing made.
        let r = c
            .post_raw(&app, "/admin/dues/assess", &[("month", &month)])
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(app.count("SELECT COUNT(*) FROM dues_bills").await, 0);

        let r = c
            .post(&app, "/admin/dues/assess", &[("month", &month)])
            .await;
        let page = c.follow(&app, r).await;
        assert_eq!(app.count("SELECT COUNT(*) FROM dues_bills").await, 3);
        assert!(page.contains("新生成 3 张账单"), "{page}");
        // The second submit makes none, and says so.
        let r = c
            .post(&app, "/admin/dues/assess", &[("month", &month)])
            .await;
        let page = c.follow(&app, r).await;
        assert_eq!(app.count("SELECT COUNT(*) FROM dues_bills").await, 3);
        assert!(
            page.contains("新生成 0 张账单") && page.contains("已有 3 张"),
            "{page}"
        );

        // Amounts in yuan with two decimals, from integer fen.
        let page = html(&c, &app, &format!("/admin/dues/bills?month={month}")).await;
        for yuan in ["121.85", "60.00", "0.20"] {
            assert!(page.contains(&format!("{yuan}</td>")), "{yuan} in {page}");
        }
        assert!(!page.contains("12185"), "no raw fen");
        // Filters: status and name.
        let page = html(&c, &app, &format!("/admin/dues/bills?month={month}&q=赵")).await;
        assert!(page.contains("赵一") && !page.contains("王一"), "{page}");
        let page = html(&c, &app, "/admin/dues/bills?status=paid").await;
        assert!(page.contains("没有符合条件的账单"), "{page}");

        // The months page: the month open, its reconciliation numbers.
        let page = html(&c, &app, "/admin/dues").await;
        let row = &page[page
            .find(&format!("data-month=\"{month}\""))
            .expect("month row")..];
        let row = &row[..row.find("</tr>").unwrap()];
        assert!(row.contains("已开账"), "{row}");
        assert!(
            row.contains("<td class=\"num\">3</td>"),
            "bill count: {row}"
        );
        // Settling asks for confirmation and then closes the month.
        assert!(row.contains("data-confirm="), "{row}");
        let r = c
            .post(&app, &format!("/admin/dues/months/{month}/settle"), &[])
            .await;
        let page = c.follow(&app, r).await;
        assert!(page.contains("已结账"), "{page}");
        assert_eq!(
            app.count("SELECT COUNT(*) FROM dues_months WHERE status = 'settled'")
                .await,
            1
        );
    });
}

#[backend_test]
async fn an_adjustment_without_a_reason_shows_the_field_error_and_changes_nothing() {
    each_backend!(spawn = spawn(), |app| {
        roster(&app).await;
        let month = this_month();
        assess_api(&app, month).await;
        let bill = app.dues_bill_of("王一", &month.to_string()).await;
        let c = admin(&app).await;
        let path = format!("/admin/dues/bills/{bill}/adjust");
        let audits = app.count("SELECT COUNT(*) FROM audit_log").await;

        let r = c
            .post(&app, &path, &[("amount", "100.00"), ("reason", "  ")])
            .await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let page = r.text().await.unwrap();
        let next = after(&page, "id=\"f-reason\"", 300);
        assert!(
            next.contains("class=\"field-error\"") && next.contains("请填写调整原因"),
            "the error sits under the reason field: {next}"
        );
        assert!(page.contains("value=\"100.00\""), "what was typed is kept");
        // A third decimal is refused next to the amount.
        let r = c
            .post(&app, &path, &[("amount", "1.005"), ("reason", "更正")])
            .await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let page = r.text().await.unwrap();
        assert!(
            after(&page, "id=\"f-amount\"", 300).contains("field-error"),
            "amount error"
        );
        assert_eq!(amount_of(&app, bill).await, 12_185);
        assert_eq!(app.count("SELECT COUNT(*) FROM dues_adjustments").await, 0);
        assert_eq!(app.count("SELECT COUNT(*) FROM audit_log").await, audits);

        // A good one is made, audited and shown in yuan; also after the month is settled.
        let r = c
            .post(&app, &path, &[("amount", "100.5"), ("reason", "收入核减")])
            .await;
        let page = c.follow(&app, r).await;
        assert!(page.contains("账单已调整为 100.50 元"), "{page}");
        assert_eq!(amount_of(&app, bill).await, 10_050);
        let (status, _) = app
            .dues_call(
                reqwest::Method::POST,
                &format!("/api/admin/dues/months/{month}/settle"),
                Some(&app.admin_token().await),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let page = html(&c, &app, &format!("/admin/dues/bills/{bill}")).await;
        assert!(page.contains("该月已结账"), "{page}");
        let r = c
            .post(&app, &path, &[("amount", "0"), ("reason", "困难党员免缴")])
            .await;
        c.follow(&app, r).await;
        assert_eq!(amount_of(&app, bill).await, 0);
        assert_eq!(app.count("SELECT COUNT(*) FROM dues_adjustments").await, 2);
        assert_eq!(app.audit_count("dues_bill.adjust").await, 2);
    });
}

#[backend_test]
async fn a_secretary_never_sees_another_branchs_bills() {
    each_backend!(spawn = spawn(), |app| {
        app.create_org_unit("第一党支部", None).await;
        let other = app.create_org_unit("第二党支部", None).await;
        roster(&app).await;
        let month = this_month();
        assess_api(&app, month).await;
        app.user_token("sec1", "secretary", Some("第一党支部"))
            .await;
        let c = app.console_login("sec1", "sec1-password-1").await;
        let foreign = app.dues_bill_of("李一", &month.to_string()).await;
        let foreign_member = app.member_id("李一").await;

        let page = html(&c, &app, &format!("/admin/dues/bills?month={month}")).await;
        assert!(page.contains("王一"), "{page}");
        assert!(!page.contains("李一") && !page.contains("赵一"), "{page}");
        assert!(
            !page.contains("第二党支部"),
            "not even in the filter: {page}"
        );
        let page = html(&c, &app, "/admin/dues/bills?q=李").await;
        assert!(!page.contains("李一"), "{page}");
        let r = c
            .get(&app, &format!("/admin/dues/bills?org_unit={other}"))
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        for path in [
            format!("/admin/dues/bills/{foreign}"),
            format!("/admin/dues/members/{foreign_member}"),
        ] {
            assert_eq!(
                c.get(&app, &path).await.status(),
                StatusCode::NOT_FOUND,
                "{path}"
            );
        }
        let r = c
            .post(
                &app,
                &format!("/admin/dues/bills/{foreign}/adjust"),
                &[("amount", "1.00"), ("reason", "越权")],
            )
            .await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(amount_of(&app, foreign).await, 6_000);

        // The months, the collection and the ledger count their subtree only; no settling.
        let page = html(&c, &app, "/admin/dues").await;
        let row = &page[page.find("data-month=").unwrap()..];
        assert!(row[..row.find("</tr>").unwrap()].contains("<td class=\"num\">1</td>"));
        assert!(!page.contains("/settle"), "settling is the administrators'");
        let page = html(&c, &app, &format!("/admin/dues/collection?month={month}")).await;
        assert!(
            page.contains("第一党支部") && !page.contains("第二党支部"),
            "{page}"
        );
        let page = html(&c, &app, &format!("/admin/dues/ledger?month={month}")).await;
        assert!(
            page.contains("第一党支部 ") && page.contains("王一"),
            "{page}"
        );
        assert!(!page.contains("李一"), "{page}");
        let r = c
            .get(
                &app,
                &format!("/admin/dues/ledger?month={month}&org_unit={other}"),
            )
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    });
}

#[backend_test]
async fn the_printable_ledger_totals_the_paid_bills_and_marks_a_late_payment() {
    each_backend!(spawn = spawn(), |app| {
        roster(&app).await;
        let (this, last) = (this_month(), this_month().plus(-1));
        assess_api(&app, last).await;
        assess_api(&app, this).await;
        let wang = app.dues_member_token("wang1", "王一", "13800000001").await;
        let li = app.dues_member_token("li1", "李一", "13800000011").await;
        // Last month's bill paid now: a late payment (补交) in this month's ledger.
        app.dues_pay_now(&wang, app.dues_bill_of("王一", &last.to_string()).await)
            .await;
        app.dues_pay_now(&wang, app.dues_bill_of("王一", &this.to_string()).await)
            .await;
        app.dues_pay_now(&li, app.dues_bill_of("李一", &this.to_string()).await)
            .await;
        let c = admin(&app).await;
        let page = html(&c, &app, &format!("/admin/dues/ledger?month={this}")).await;

        assert!(
            page.contains(&format!("全部党组织 {} 党费收缴台账", this.label_zh())),
            "title with unit and month"
        );
        let paid: i64 = app
            .count(&format!(
                "SELECT CAST(COALESCE(SUM(paid_fen), 0) AS BIGINT) FROM dues_bills \
                 WHERE month = '{this}' AND status = 'paid'"
            ))
            .await;
        assert!(paid > 0);
        let yuan = dangjian::dues::rules::Fen(paid).yuan();
        assert!(
            page.contains(&format!("data-total=\"paid\">{yuan}</td>")),
            "paid total {yuan} in {page}"
        );
        let due: i64 = app
            .count(&format!(
                "SELECT CAST(SUM(amount_fen) AS BIGINT) FROM dues_bills WHERE month = '{this}'"
            ))
            .await;
        assert!(page.contains(&format!(
            "data-total=\"due\">{}</td>",
            dangjian::dues::rules::Fen(due).yuan()
        )));
        // The late payment for last month, marked as such, with its own total.
        assert!(
            page.contains(&format!("补交{}党费", last.label_zh())),
            "{page}"
        );
        assert!(page.contains("data-total=\"back\">121.85</td>"), "{page}");
        assert!(page.contains("党支部书记签字"), "signature line");
        assert!(page.contains("data-print"), "print button");
        // Last month's own ledger shows the bill as paid late.
        let old = html(&c, &app, &format!("/admin/dues/ledger?month={last}")).await;
        assert!(
            old.contains("<tr class=\"late\">") && old.contains("逾期补交"),
            "{old}"
        );

        // The print stylesheet hides the navigation and the buttons.
        let css = html(&c, &app, "/admin/static/console.css").await;
        let print = &css[css.find("@media print").expect("print stylesheet")..];
        assert!(
            print.contains("header.top") && print.contains("button"),
            "{print}"
        );

        // The CSV link is the admin API's, with the console cookie, and marks the late payment.
        // (minijinja escapes the slashes of an attribute: `&#x2f;api&#x2f;admin...`.)
        let link = format!("dues&#x2f;ledger?month={this}&amp;format=csv");
        assert!(page.contains(&link), "{page}");
        let r = c
            .get(
                &app,
                &format!("/api/admin/dues/ledger?month={this}&format=csv"),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let csv = r.text().await.unwrap();
        let back = csv
            .lines()
            .find(|l| l.starts_with("back_payment,"))
            .expect("a back-payment line");
        assert!(
            back.contains(&last.to_string()) && back.contains(",true,"),
            "{back}"
        );
        assert_eq!(
            app.audit_count("dues_ledger.read").await,
            3,
            "two pages and the CSV"
        );
    });
}

#[backend_test]
async fn income_is_masked_and_only_an_audited_reveal_shows_it() {
    each_backend!(spawn = spawn(), |app| {
        roster(&app).await;
        assess_api(&app, this_month()).await;
        let id = app.member_id("王一").await;
        let c = admin(&app).await;
        let path = format!("/admin/dues/members/{id}");
        let page = html(&c, &app, &path).await;
        assert!(page.contains("●●●●●●"), "{page}");
        for clear in ["8123.45", "812345", "812,345"] {
            assert!(!page.contains(clear), "income {clear} on the page");
        }
        let bills = html(&c, &app, "/admin/dues/bills").await;
        assert!(!bills.contains("8123.45"));
        assert_eq!(app.audit_count("member.reveal").await, 0);

        // A reveal is a POST with the CSRF token, audited before the income is shown.
        let r = c
            .post_raw(&app, &format!("{path}/reveal"), &[("csrf", "")])
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(app.audit_count("member.reveal").await, 0);
        let r = c.post(&app, &format!("{path}/reveal"), &[]).await;
        assert_eq!(r.status(), StatusCode::OK);
        let page = r.text().await.unwrap();
        assert!(page.contains("8123.45 元"), "{page}");
        assert_eq!(app.audit_count("member.reveal").await, 1);
        let details = app.audit_details("member.reveal").await;
        assert!(
            !details[0].to_string().contains("812345"),
            "the audit names fields, not values"
        );
        // The page after is masked again.
        assert!(!html(&c, &app, &path).await.contains("8123.45"));

        // The dues profile, as the API's PUT: a bad amount is a field error; a good one is kept.
        let r = c
            .post(
                &app,
                &format!("{path}/profile"),
                &[("exempt_reason", ""), ("voluntary", "二百")],
            )
            .await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let page = r.text().await.unwrap();
        assert!(
            after(&page, "id=\"f-voluntary\"", 300).contains("field-error"),
            "{page}"
        );
        assert_eq!(app.count("SELECT COUNT(*) FROM dues_profiles").await, 0);
        let r = c
            .post(
                &app,
                &format!("{path}/profile"),
                &[("exempt_reason", ""), ("voluntary", "200.00")],
            )
            .await;
        c.follow(&app, r).await;
        assert_eq!(
            app.count(&format!(
                "SELECT voluntary_fen FROM dues_profiles WHERE member_id = {id}"
            ))
            .await,
            20_000
        );

        // Editors have no dues pages.
        app.user_token("ed1", "editor", None).await;
        let e = app.console_login("ed1", "ed1-password-1").await;
        assert_eq!(
            e.get(&app, "/admin/dues").await.status(),
            StatusCode::FORBIDDEN
        );
    });
}

#[backend_test]
async fn an_incident_is_resolved_with_a_reason_and_the_trade_bill_comparison_is_shown() {
    each_backend!(spawn = spawn(), |app| {
        roster(&app).await;
        let month = this_month();
        assess_api(&app, month).await;
        let yesterday = time::OffsetDateTime::now_utc() - time::Duration::days(1);
        let date = yesterday
            .to_offset(time::macros::offset!(+8))
            .date()
            .to_string();
        // 王一 paid yesterday (credited); 李一's notification claims 0.01 yuan: an incident.
        let wang = app.dues_member_token("wang1", "王一", "13800000001").await;
        let bill = app.dues_bill_of("王一", &month.to_string()).await;
        let (status, _) = app
            .dues_call(
                reqwest::Method::POST,
                &format!("/api/mp/dues/{bill}/pay"),
                Some(&wang),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let no = out_trade_no(&app, bill).await;
        let paid = app.fake.pay_order_at(&no, yesterday).unwrap();
        let n = app
            .fake
            .notification_for(&no, &wechat::fake::NotificationTamper::default())
            .unwrap();
        assert_eq!(
            app.dues_notify(&app.base, &n.headers, &n.body).await.0,
            StatusCode::NO_CONTENT
        );
        let li = app.dues_member_token("li1", "李一", "13800000011").await;
        let li_bill = app.dues_bill_of("李一", &month.to_string()).await;
        app.dues_call(
            reqwest::Method::POST,
            &format!("/api/mp/dues/{li_bill}/pay"),
            Some(&li),
            None,
        )
        .await;
        let li_no = out_trade_no(&app, li_bill).await;
        let tampered = wechat::fake::NotificationTamper {
            amount_total: Some(1),
            ..Default::default()
        };
        let n = app.fake.notification_for(&li_no, &tampered).unwrap();
        app.dues_notify(&app.base, &n.headers, &n.body).await;
        let incident = app
            .count("SELECT id FROM dues_incidents WHERE status = 'open'")
            .await;

        let c = admin(&app).await;
        let page = html(&c, &app, "/admin/dues/incidents").await;
        assert!(
            page.contains("金额不符") && page.contains("实收 0.01 元"),
            "{page}"
        );
        let path = format!("/admin/dues/incidents/{incident}/resolve");
        // Without a reason: refused (a flash error), still open.
        let r = c.post(&app, &path, &[("resolution", " ")]).await;
        assert!(c.follow(&app, r).await.contains("请填写处理结果"));
        assert_eq!(
            app.count("SELECT COUNT(*) FROM dues_incidents WHERE status = 'open'")
                .await,
            1
        );
        let r = c
            .post(
                &app,
                &path,
                &[("resolution", "已联系党员，按原金额重新缴纳")],
            )
            .await;
        assert!(c.follow(&app, r).await.contains("已处理"));
        assert_eq!(
            app.count("SELECT COUNT(*) FROM dues_incidents WHERE status = 'open'")
                .await,
            0
        );
        assert_eq!(app.audit_count("dues_incident.resolve").await, 1);

        // Yesterday's trade bill holds 王一's payment with another amount: shown as a difference.
        let yuan = |fen: i64| dangjian::dues::rules::Fen(fen).yuan();
        app.fake.set_trade_bill(
            &date,
            crate::helpers::dues_trade_bill_csv(&[(
                no.clone(),
                paid.transaction_id.clone().unwrap(),
                yuan(paid.amount.total + 100),
            )]),
        );
        let r = c
            .post(&app, "/admin/dues/tradebill", &[("date", &date)])
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let page = r.text().await.unwrap();
        let result = after(&page, "id=\"tradebill-result\"", 400);
        assert!(
            result.contains("对账单交易<b>1</b>") && result.contains("核对一致<b>0</b>"),
            "{result}"
        );
        assert!(page.contains("对账单金额不符") && page.contains(&yuan(paid.amount.total + 100)));
        // A day that is not over yet: a flash error, no page of numbers.
        let today = time::OffsetDateTime::now_utc()
            .to_offset(time::macros::offset!(+8))
            .date()
            .to_string();
        let r = c
            .post(&app, "/admin/dues/tradebill", &[("date", &today)])
            .await;
        assert!(c.follow(&app, r).await.contains("对账单获取失败"));
    });
}
