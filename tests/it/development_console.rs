//! The 发展党员 console (`/admin/development`): the pipeline and list, a record's page, the step
//! form (a date that breaks a time rule is refused naming the rule, beside the date; a valid one
//! is recorded), the deadlines page, and secretaries kept to their subtree — on every backend.

use dangjian_test_macros::backend_test;

use reqwest::{header, Method, StatusCode};
use serde_json::json;

use crate::{
    admin::id_number,
    each_backend,
    helpers::{TestApp, ADMIN_PASSWORD, ADMIN_USER},
};

const PDF: &[u8] = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\n%%EOF\n";

/// 学院党委 › 第一党支部 / 第二党支部 and a record for 王小明 (born 2000-05-01) of 第一党支部
/// with his application letter uploaded: (record id, document id).
async fn setup(app: &TestApp) -> (i64, i64) {
    app.create_org_unit("学院党委", None).await;
    app.create_org_unit("第一党支部", Some("学院党委")).await;
    app.create_org_unit("第二党支部", Some("学院党委")).await;
    let admin = app.admin_token().await;
    let rows = json!([
        {"name": "王小明", "phone": "13912345678", "category": "student", "org_unit": "第一党支部",
         "id_number": id_number("11010120000501123")},
    ]);
    let (s, v) = app
        .dev_call(Method::POST, "/api/admin/members", &admin, Some(rows))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let member = app.member_id("王小明").await;
    let (s, v) = app
        .dev_call(
            Method::POST,
            "/api/admin/development",
            &admin,
            Some(json!({"member_id": member})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let rec = v["record"]["id"].as_i64().unwrap();
    let (s, v) = app
        .dev_upload(&admin, rec, "入党申请书", "application/pdf", PDF.to_vec())
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    (rec, v["id"].as_i64().unwrap())
}

/// The markup from the date field to the end of its grid cell.
fn date_field(html: &str) -> &str {
    let at = html.find("id=\"f-date\"").expect("the date field");
    let rest = &html[at..];
    &rest[..rest.find("</div>").unwrap()]
}

#[backend_test]
async fn the_step_form_refuses_a_date_that_breaks_a_rule_and_records_a_valid_one() {
    each_backend!(|app| {
        let (rec, doc) = setup(&app).await;
        let c = app.console_login(ADMIN_USER, ADMIN_PASSWORD).await;
        let page = format!("/admin/development/{rec}");
        let r = c.get(&app, &page).await;
        assert_eq!(r.status(), StatusCode::OK);
        let html = r.text().await.unwrap();
        assert!(html.contains("王小明") && html.contains("递交入党申请书"));

        // At 17 he may not apply: refused, the rule named beside the date, nothing recorded.
        let doc_s = doc.to_string();
        let steps = format!("{page}/steps");
        let r = c
            .post(
                &app,
                &steps,
                &[
                    ("step", "application"),
                    ("date", "2017-09-10"),
                    ("document", &doc_s),
                ],
            )
            .await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let html = r.text().await.unwrap();
        let field = date_field(&html);
        assert!(field.contains("field-error"), "{field}");
        assert!(field.contains("applicant_min_age_18"), "{field}");
        assert!(html.contains("value=\"2017-09-10\""), "the date is kept");
        assert_eq!(app.count("SELECT COUNT(*) FROM development_steps").await, 0);
        // A date that is no date is refused beside the field too.
        let r = c
            .post(&app, &steps, &[("step", "application"), ("date", "明天")])
            .await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(date_field(&r.text().await.unwrap()).contains("field-error"));

        let r = c
            .post(
                &app,
                &steps,
                &[
                    ("step", "application"),
                    ("date", "2021-09-10"),
                    ("document", &doc_s),
                ],
            )
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(r.headers()[header::LOCATION], page.as_str());
        assert_eq!(
            app.count(
                "SELECT COUNT(*) FROM development_steps WHERE step = 'application' AND step_on = '2021-09-10' \
                 AND recorded_by = 'admin' AND status = 'recorded'"
            )
            .await,
            1
        );
        let html = c.get(&app, &page).await.text().await.unwrap();
        let steps_table = &html[html.find("id=\"steps\"").unwrap()..];
        assert!(steps_table.contains("2021-09-10"), "the step is listed");
        assert!(steps_table.contains(&format!("/api/admin/development/{rec}/documents/{doc}")));

        // The talk is due within a month: the deadlines page lists it (overdue by now).
        let r = c.get(&app, "/admin/development/deadlines").await;
        assert_eq!(r.status(), StatusCode::OK);
        let html = r.text().await.unwrap();
        assert!(html.contains("talk_within_one_month"), "deadline listed");
        // The list: the pipeline counts him as an applicant; the overdue filter keeps him.
        let html = c
            .get(&app, "/admin/development?overdue=1")
            .await
            .text()
            .await
            .unwrap();
        assert!(
            html.contains("data-stage=\"applicant\">1<"),
            "pipeline count"
        );
        assert!(html.contains(&format!("/admin/development/{rec}\"")));
        let html = c
            .get(&app, "/admin/development?stage=full")
            .await
            .text()
            .await
            .unwrap();
        assert!(!html.contains(&format!("/admin/development/{rec}\"")));
    });
}

#[backend_test]
async fn a_secretary_sees_only_records_of_the_own_subtree() {
    each_backend!(|app| {
        let (rec, _) = setup(&app).await;
        app.user_token("sec_second", "secretary", Some("第二党支部"))
            .await;
        let c = app
            .console_login("sec_second", "sec_second-password-1")
            .await;
        let html = c
            .get(&app, "/admin/development")
            .await
            .text()
            .await
            .unwrap();
        assert!(!html.contains("王小明"));
        let r = c.get(&app, &format!("/admin/development/{rec}")).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let r = c
            .post(
                &app,
                &format!("/admin/development/{rec}/steps"),
                &[("step", "application"), ("date", "2021-09-10")],
            )
            .await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(app.count("SELECT COUNT(*) FROM development_steps").await, 0);
    });
}
